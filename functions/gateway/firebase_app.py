"""The instance's default firebase_admin App, shared by the ID-token check (gateway.auth) and the webhook delivery
queue (gateway.delivery_queue): made once, on first use (firebase_admin is heavy to import), under one lock, so two
first requests racing cannot both try to create it."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()


def default_app(project_id: str) -> Any:
    import firebase_admin

    with _lock:
        try:
            return firebase_admin.get_app()
        except ValueError:  # not made yet
            return firebase_admin.initialize_app(options={"projectId": project_id})
