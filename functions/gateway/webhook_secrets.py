"""Webhook signing secrets (`whsec_…`) in Secret Manager, one secret per endpoint, one version per rotation.

    WebhookSecrets              (endpoint -> version) -> whsec_ string; per-instance LRU keyed by version
      └── VersionedSecretBackend  the port: add_version (returns the version id) / access_version / destroy*
            └── SecretManagerVersions  google-cloud-secret-manager (real service, or the local emulator over REST)

Versions never change once written, so a cached version is never stale: the cache needs no TTL, only a size
bound. The endpoint document in Firestore names the versions in use; it never holds a secret. Payloads are never
logged nor put in exception messages.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections import OrderedDict
from typing import Protocol

from gateway import errors
from gateway.secrets import (
    _SECRET_CALL_TIMEOUT_S,
    SecretManagerBackend,
    _store_failures,
    _unavailable,
)

SECRET_ID_PREFIX = "webhook-signing-"
_CACHE_MAX_ENTRIES = 5_000


def new_signing_secret() -> str:
    """`whsec_` + base64 of 32 random bytes, as Standard Webhooks describes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_id(uid: str, endpoint_id: str) -> str:
    """Derived from the verified uid and our own endpoint id alone: no request field reaches a resource name."""
    return SECRET_ID_PREFIX + hashlib.sha256(f"{uid}/{endpoint_id}".encode()).hexdigest()


class VersionedSecretBackend(Protocol):
    def add_version(self, secret_id: str, data: bytes) -> str:
        """Store a new version (creating the secret first when needed) and return its version id."""
        ...

    def access_version(self, secret_id: str, version: str) -> bytes | None: ...

    def destroy_version(self, secret_id: str, version: str) -> None: ...

    def destroy(self, secret_id: str) -> bool: ...


class SecretManagerVersions(SecretManagerBackend):
    """VersionedSecretBackend over google-cloud-secret-manager: the Daraja credentials' adapter (same lazily built
    client, emulator wiring and local-stack guard), keeping every version it adds (during a rotation's overlap two
    versions sign) and deleting the whole secret when its endpoint goes (an endpoint id is never reused)."""

    def add_version(self, secret_id: str, data: bytes) -> str:
        version = super().add_version(secret_id, data)
        if version is None:  # pragma: no cover - Secret Manager always names the version it added
            raise _unavailable("add_version", secret_id, None, reason="no_version_id")
        return version

    def destroy(self, secret_id: str) -> bool:
        """Delete the secret, and with it every version (one call); False when it did not exist."""
        from google.api_core import exceptions as google_errors

        try:
            self._client_or_create().delete_secret(
                request={"name": self._secret_name(secret_id)}, timeout=_SECRET_CALL_TIMEOUT_S
            )
        except google_errors.NotFound:
            return False
        except _store_failures() as failure:
            raise _unavailable("destroy", secret_id, failure) from None
        return True


class WebhookSecrets:
    """Signing secrets by (endpoint, version), cached per instance. A delivery reads at most two versions (the
    current one, and the previous one during a rotation's overlap); each is read from Secret Manager once per
    instance."""

    def __init__(self, backend: VersionedSecretBackend, max_entries: int = _CACHE_MAX_ENTRIES) -> None:
        self._backend = backend
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()

    def create(self, uid: str, endpoint_id: str) -> tuple[str, str]:
        """A new secret version for the endpoint: (version id, whsec_ secret)."""
        secret = new_signing_secret()
        sid = secret_id(uid, endpoint_id)
        version = self._backend.add_version(sid, secret.encode("ascii"))
        self._remember((sid, version), secret)
        return version, secret

    def get(self, uid: str, endpoint_id: str, version: str) -> str:
        sid = secret_id(uid, endpoint_id)
        key = (sid, version)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
        data = self._backend.access_version(sid, version)
        if data is None:
            raise errors.ServerError("webhook_secret_missing", "the endpoint's signing secret cannot be found")
        secret = data.decode("ascii", errors="replace")
        self._remember(key, secret)
        return secret

    def destroy_version(self, uid: str, endpoint_id: str, version: str) -> None:
        sid = secret_id(uid, endpoint_id)
        with self._lock:
            self._entries.pop((sid, version), None)
        self._backend.destroy_version(sid, version)

    def destroy(self, uid: str, endpoint_id: str) -> None:
        sid = secret_id(uid, endpoint_id)
        with self._lock:
            for key in [key for key in self._entries if key[0] == sid]:
                del self._entries[key]
        self._backend.destroy(sid)

    def _remember(self, key: tuple[str, str], secret: str) -> None:
        with self._lock:
            self._entries[key] = secret
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
