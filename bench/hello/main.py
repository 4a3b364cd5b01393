"""The cold-start baseline: the smallest firebase-functions app, one HTTP function, same venv as functions/main.py."""

from firebase_functions import https_fn


@https_fn.on_request()
def hello(req: https_fn.Request) -> https_fn.Response:
    return https_fn.Response("hello")
