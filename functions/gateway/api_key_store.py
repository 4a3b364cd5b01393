"""Firestore adapter for API keys: load, list and save key records. No business rule: the use case decides.

    api_keys/{sha256(key)}    server-only: one key's record (owner uid, id, name, environment, hint, times)

The document id is the key's SHA-256, so authenticating a key is one document read, and the key itself is never
stored. Listing and revoking go by the owner's uid (one equality query; a developer holds a few dozen keys at most).
firestore.rules deny every client access to the collection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from gateway import errors
from gateway.domain.api_key import ApiKeyRecord, Environment
from gateway.firestore_client import FirestoreAdapter
from gateway.logs import Event, log_event
from gateway.repository import _utc, _utc_or_none
from gateway.settings import Settings

API_KEYS = "api_keys"


@dataclass(frozen=True)
class StoredKey:
    """A record, the SHA-256 it is filed under, and the version (`update_time`) a save must find."""

    key_sha256: str
    record: ApiKeyRecord
    version: Any


class ApiKeyStore(Protocol):
    """The port the API key use case needs: `FirestoreApiKeyStore` here, a dict in unit tests."""

    def create(self, key_sha256: str, record: ApiKeyRecord) -> None: ...
    def find(self, key_sha256: str) -> StoredKey | None: ...
    def list_for(self, uid: str) -> list[StoredKey]: ...
    def save(self, stored: StoredKey, record: ApiKeyRecord) -> bool:
        """Write `record` if the document is still at `stored.version`; False when someone wrote since."""
        ...


def record_to_document(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "uid": record.uid,
        "email": record.email,
        "name": record.name,
        "environment": record.environment,
        "hint": record.hint,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
    }


def record_from_document(data: Mapping[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=data["key_id"],
        uid=data["uid"],
        email=data.get("email"),
        name=data.get("name") or "",
        environment=cast(Environment, data["environment"]),
        hint=data.get("hint") or "",
        created_at=_utc(data["created_at"]),
        last_used_at=_utc_or_none(data.get("last_used_at")),
        revoked_at=_utc_or_none(data.get("revoked_at")),
    )


class FirestoreApiKeyStore(FirestoreAdapter):
    def __init__(self, settings: Settings, client: Callable[[], Any] | None = None) -> None:
        """`client` returns the Firestore client to use (the container shares the payment repository's, so an
        instance opens one channel); by default one is created on first use."""
        super().__init__(settings, client)

    def _ref(self, key_sha256: str) -> Any:
        return self.client.collection(API_KEYS).document(key_sha256)

    def create(self, key_sha256: str, record: ApiKeyRecord) -> None:
        self._ref(key_sha256).create(record_to_document(record))

    def find(self, key_sha256: str) -> StoredKey | None:
        from google.api_core import exceptions as api_exceptions

        try:
            snapshot = self._ref(key_sha256).get()
        except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError) as failure:
            # The caller's key may be fine: our store is down, so this is a 503, not a 401.
            log_event(Event.AUTH_REJECTED, "ERROR", code="api_key_store_unavailable", exception=type(failure).__name__)
            raise errors.ServiceUnavailable("auth_unavailable", "could not check the API key; retry shortly") from None
        if not snapshot.exists:
            return None
        return StoredKey(key_sha256, record_from_document(snapshot.to_dict() or {}), snapshot.update_time)

    def list_for(self, uid: str) -> list[StoredKey]:
        from google.cloud import firestore

        query = self.client.collection(API_KEYS).where(filter=firestore.FieldFilter("uid", "==", uid))
        return [StoredKey(doc.id, record_from_document(doc.to_dict() or {}), doc.update_time) for doc in query.stream()]

    def save(self, stored: StoredKey, record: ApiKeyRecord) -> bool:
        from google.api_core import exceptions as api_exceptions

        try:
            self._ref(stored.key_sha256).update(
                record_to_document(record), option=self.client.write_option(last_update_time=stored.version)
            )
        except (api_exceptions.FailedPrecondition, api_exceptions.Conflict, api_exceptions.NotFound):
            return False
        return True
