"""The one way a Firestore adapter gets its client: built on first use (deploy discovery imports every module, so
nothing may touch the network at import), once per instance, or taken from `client_factory` (the container hands
every adapter the same client, so an instance opens one gRPC channel)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway import errors
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


# ------------------------------------------------------------- what every store maps and checks the same way
def utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError("expected a timestamp")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def utc_or_none(value: Any) -> datetime | None:
    return None if value is None else utc(value)


def usable_document_id(value: str) -> bool:
    # Firestore rejects "/", "." / "..", and reserved __x__ ids with an error; such ids can never exist here.
    return (
        0 < len(value) <= 200
        and "/" not in value
        and value not in (".", "..")
        and not (value.startswith("__") and value.endswith("__"))
    )


def encode_page_token(payment_id: str) -> str:
    return base64.urlsafe_b64encode(payment_id.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token") from None
