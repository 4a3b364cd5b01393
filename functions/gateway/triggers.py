"""A Firestore `on_document_created` trigger that imports its event machinery on the first event, not at import.

`firebase_functions.firestore_fn` imports google-cloud-firestore and with it gRPC and protobuf: about 400 ms of a
cold `import main`, paid by every function of the codebase (each runs in its own instance and imports all of
main.py), although only the trigger's instances need it at that moment. This decorator declares exactly the
endpoint `firestore_fn.on_document_created` declares (a unit test compares the two), and builds the real handler
on the trigger's first event. firebase-functions is pinned; the test fails if a new version changes what is
declared.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from firebase_functions.options import FirestoreOptions
from firebase_functions.private import path_pattern, util

# firestore_fn._event_type_created, spelled out so that declaring the trigger does not import firestore_fn.
DOCUMENT_CREATED = "google.cloud.firestore.document.v1.created"


def on_document_created(*, document: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Like `firestore_fn.on_document_created(document=...)`; the function receives the same
    `firestore_fn.Event[DocumentSnapshot | None]`."""
    options = FirestoreOptions(document=document)
    pattern = path_pattern.PathPattern(util.normalize_path(document))

    def decorator(func: Callable[[Any], None]) -> Callable[[Any], None]:
        handler: list[Callable[[Any], None]] = []

        @functools.wraps(func)
        def on_document_created_wrapped(raw: Any) -> None:
            if not handler:
                from firebase_functions import firestore_fn  # the heavy import, once per instance

                handler.append(firestore_fn.on_document_created(document=document)(func))
            handler[0](raw)

        util.set_func_endpoint_attr(
            on_document_created_wrapped,
            options._endpoint(event_type=DOCUMENT_CREATED, func_name=func.__name__, document_pattern=pattern),
        )
        return on_document_created_wrapped

    return decorator
