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
    def enqueue(self, uid: str, event_id: str, endpoint_id: str, delay_s: float, task_id: str | None = None) -> None:
        """Queue one attempt. With a `task_id`, a task of that name queued before makes this a no-op (Cloud
        Tasks de-duplicates names), so a fan-out that runs twice queues one first attempt."""


class CloudTasksQueue:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._queue: Any = None
        self._lock = threading.Lock()

    def _task_queue(self) -> Any:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    from firebase_admin import functions

                    from gateway.firebase_app import default_app

                    app = default_app(self._settings.project_id)
                    self._queue = functions.task_queue(
                        f"locations/{self._settings.region}/functions/{DELIVERY_FUNCTION}", app=app
                    )
        return self._queue

    def enqueue(self, uid: str, event_id: str, endpoint_id: str, delay_s: float, task_id: str | None = None) -> None:
        from firebase_admin import exceptions, functions

        options = None
        if delay_s >= 1 or task_id is not None:
            options = functions.TaskOptions(
                schedule_delay_seconds=math.ceil(delay_s) if delay_s >= 1 else None, task_id=task_id
            )
        queue = self._task_queue()  # outside the try: a ValueError building the queue is never the echo below
        try:
            queue.enqueue({"data": {"uid": uid, "event_id": event_id, "endpoint_id": endpoint_id}}, options)
        except (exceptions.AlreadyExistsError, exceptions.ConflictError):
            # Cloud Tasks answers ALREADY_EXISTS, the Tasks emulator a bare 409: that task is queued already.
            if task_id is None:
                raise
        except ValueError as unparsed:
            # firebase-admin 7.7.0 drops the first character of the name the Tasks emulator echoes back, expecting
            # the "/" of a name the emulator made up; a name we chose has none, so reading the answer fails *after*
            # the task was queued. Only on the local stack, and only that failure: anything else is real.
            if not (
                task_id is not None
                and self._settings.local_stack_trusted
                and str(unparsed) == "Invalid resource name format."
            ):
                raise
