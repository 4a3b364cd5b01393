"""Enqueues webhook delivery attempts on the Cloud Tasks queue of the `webhookdelivery` task function.

A task is durable once enqueued: if the instance running an attempt dies, Cloud Tasks retries it (the delivery's
lease in Firestore keeps two attempts from overlapping). The payload is wrapped in {"data": ...}: the Python
firebase-admin SDK sends the dict as is, and firebase-functions' task handler reads its "data" member.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Protocol

from gateway.settings import Settings

# Task function names may not contain "_" (the queue id is derived from it).
DELIVERY_FUNCTION = "webhookdelivery"


class DeliveryQueue(Protocol):
    def enqueue(self, uid: str, event_id: str, endpoint_id: str, delay_s: float) -> None: ...


class CloudTasksQueue:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._queue: Any = None
        self._lock = threading.Lock()

    def _task_queue(self) -> Any:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    import firebase_admin
                    from firebase_admin import functions

                    try:
                        app = firebase_admin.get_app()
                    except ValueError:
                        app = firebase_admin.initialize_app(options={"projectId": self._settings.project_id})
                    self._queue = functions.task_queue(
                        f"locations/{self._settings.region}/functions/{DELIVERY_FUNCTION}", app=app
                    )
        return self._queue

    def enqueue(self, uid: str, event_id: str, endpoint_id: str, delay_s: float) -> None:
        from firebase_admin import functions

        options = None
        if delay_s >= 1:
            options = functions.TaskOptions(schedule_delay_seconds=math.ceil(delay_s))
        self._task_queue().enqueue({"data": {"uid": uid, "event_id": event_id, "endpoint_id": endpoint_id}}, options)
