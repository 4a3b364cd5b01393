"""The bench's hello world: the smallest firebase-functions app, one HTTP function, same venv as functions/main.py.

Two floors use it (bench/coldstart.py, bench/warm_push.py): its import time is the cold-start baseline, and a request
to it through the Functions emulator is the cost of that path with no work behind it. The local stack serves it as
the codebase "local-bench" (scripts/stack.py LOCAL_ONLY_CODEBASES, at /<project>/us-central1/hello); firebase.json,
which `firebase deploy` reads, does not list it, so it is never deployed with the product.
"""

from firebase_functions import https_fn


@https_fn.on_request()
def hello(req: https_fn.Request) -> https_fn.Response:
    return https_fn.Response("hello")
