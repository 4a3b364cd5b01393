"""Firestore adapter for API keys: load, list and save key records. No business rule: the use case decides.

    api_keys/{sha256(key)}                  server-only: one key's record (owner uid, id, name, environment, hint,
                                            times; `expires_at`, a TTL field, once it is revoked)
    developers/{uid}/counters/api_keys      server-only: how many of the developer's keys are active

The document id is the key's SHA-256, so authenticating a key is one document read, and the key itself is never
stored. Listing goes by the owner's uid and finding one key by (uid, key id): equality queries, so another
developer's key is never found. The count is written in the same commit as every change to the set of active keys
(a create, a revocation), under the version it was read at: of two racing creates one loses and reads again, so
the limit holds without a transaction and without listing the keys. firestore.rules deny clients both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from gateway import errors
from gateway.domain.api_key import ApiKeyRecord, Environment
from gateway.firestore_client import FirestoreAdapter, utc, utc_or_none
from gateway.logs import Event, log_event
from gateway.settings import Settings

API_KEYS = "api_keys"


@dataclass(frozen=True)
class StoredKey:
    """A record, the SHA-256 it is filed under, and the version (`update_time`) a save must find."""

    key_sha256: str
    record: ApiKeyRecord
    version: Any


@dataclass(frozen=True)
class ActiveKeyCount:
    """How many of a developer's keys are active, and the version (`update_time`) the count was read at: a write of
    a new count needs the stored one still at that version. None: no count is stored yet (keys made before the
    count existed are counted from their records), so the write creates it, and loses if another write did first."""

    uid: str
    count: int
    version: Any = None


class ApiKeyStore(Protocol):
    """The port the API key use case needs: `FirestoreApiKeyStore` here, a dict in unit tests."""

    def create(self, key_sha256: str, record: ApiKeyRecord, active: ActiveKeyCount) -> bool:
        """The record and the new count `active.count`, in one commit, if the count is still at `active.version`;
        False (nothing written) when someone changed it since."""
        ...

    def find(self, key_sha256: str) -> StoredKey | None: ...
    def find_by_id(self, uid: str, key_id: str) -> StoredKey | None: ...
    def list_for(self, uid: str) -> list[StoredKey]: ...
    def load_active_count(self, uid: str) -> ActiveKeyCount | None: ...
    def save(self, stored: StoredKey, record: ApiKeyRecord, active: ActiveKeyCount | None = None) -> bool:
        """Write `record` if the document is still at `stored.version` (and, given `active`, the new count if it is
        still at `active.version`, in the same commit); False, nothing written, when someone wrote since."""
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
        "expires_at": record.expires_at,  # the TTL field (firestore.indexes.json): None while the key is active
    }


def record_from_document(data: Mapping[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=data["key_id"],
        uid=data["uid"],
        email=data.get("email"),
        name=data.get("name") or "",
        environment=cast(Environment, data["environment"]),
        hint=data.get("hint") or "",
        created_at=utc(data["created_at"]),
        last_used_at=utc_or_none(data.get("last_used_at")),
        revoked_at=utc_or_none(data.get("revoked_at")),
    )


class FirestoreApiKeyStore(FirestoreAdapter):
    def __init__(self, settings: Settings, client: Callable[[], Any] | None = None) -> None:
        """`client` returns the Firestore client to use (the container shares the payment repository's, so an
        instance opens one channel); by default one is created on first use."""
        super().__init__(settings, client)

    def _ref(self, key_sha256: str) -> Any:
        return self.client.collection(API_KEYS).document(key_sha256)

    def _count_ref(self, uid: str) -> Any:
        return self.client.collection("developers").document(uid).collection("counters").document(API_KEYS)

    def create(self, key_sha256: str, record: ApiKeyRecord, active: ActiveKeyCount) -> bool:
        batch = self.client.batch()
        batch.create(self._ref(key_sha256), record_to_document(record))
        self._write_count(batch, active)
        return self._commit(batch)

    def _write_count(self, batch: Any, active: ActiveKeyCount) -> None:
        from google.cloud import firestore

        # The server's time makes every write change the document, so its update_time (the version) always moves.
        document = {"active": active.count, "updated_at": firestore.SERVER_TIMESTAMP}
        if active.version is None:
            batch.create(self._count_ref(active.uid), document)
        else:
            option = self.client.write_option(last_update_time=active.version)
            batch.update(self._count_ref(active.uid), document, option=option)

    @staticmethod
    def _commit(batch: Any) -> bool:
        from google.api_core import exceptions as api_exceptions

        try:
            batch.commit()
        except (api_exceptions.FailedPrecondition, api_exceptions.Conflict, api_exceptions.NotFound):
            # FAILED_PRECONDITION: a version no longer matches; ALREADY_EXISTS: another write created the count
            # first; NOT_FOUND: a document saved with a version is gone.
            return False
        return True

    def load_active_count(self, uid: str) -> ActiveKeyCount | None:
        snapshot = self._count_ref(uid).get()
        if not snapshot.exists:
            return None
        return ActiveKeyCount(uid, int((snapshot.to_dict() or {}).get("active") or 0), snapshot.update_time)

    def find_by_id(self, uid: str, key_id: str) -> StoredKey | None:
        from google.cloud import firestore

        query = (
            self.client.collection(API_KEYS)
            .where(filter=firestore.FieldFilter("uid", "==", uid))
            .where(filter=firestore.FieldFilter("key_id", "==", key_id))
            .limit(1)
        )
        for doc in query.stream():
            return StoredKey(doc.id, record_from_document(doc.to_dict() or {}), doc.update_time)
        return None

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

    def save(self, stored: StoredKey, record: ApiKeyRecord, active: ActiveKeyCount | None = None) -> bool:
        batch = self.client.batch()
        option = self.client.write_option(last_update_time=stored.version)
        batch.update(self._ref(stored.key_sha256), record_to_document(record), option=option)
        if active is not None:
            self._write_count(batch, active)
        return self._commit(batch)
