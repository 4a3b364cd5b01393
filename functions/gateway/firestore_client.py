"""The one way a Firestore adapter gets its client: built on first use (deploy discovery imports every module, so
nothing may touch the network at import), once per instance, or taken from `client_factory` (the container hands
every adapter the same client, so an instance opens one gRPC channel)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gateway.settings import Settings


class FirestoreAdapter:
    def __init__(self, settings: Settings, client_factory: Callable[[], Any] | None = None) -> None:
        self._settings = settings
        self._client_factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    if self._client_factory is not None:
                        self._client = self._client_factory()
                    else:
                        from google.cloud import firestore

                        self._client = firestore.Client(project=self._settings.project_id)
        return self._client
