"""Each developer's Daraja secret, by verified uid: the Secret Manager adapter and a per-instance cache in front of it.

    CredentialStore            uid -> DarajaSecret; TTL- and size-bounded LRU cache, single flight per uid
      └── SecretBackend        the port: access_latest / add_version / destroy, bytes in and out
            └── SecretManagerBackend   google-cloud-secret-manager (real service, or the local emulator over REST)

The secret name is derived from the verified uid alone (a sha256), so no request field ever reaches a resource
name. Payloads are never logged nor put in exception messages.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway import errors
from gateway.logs import Event, log_event
from gateway.settings import Settings

DEFAULT_SECRET_ID_PREFIX = "daraja-credentials-"
SECRET_LABELS = {"app": "mpesa-gateway"}
# Secret Manager's own rule for secret ids; the prefix is checked against it once, at construction.
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
# Fixed, so memory stays the same whether there are ten developers or a million.
_WRITE_STRIPES = 16
# A Secret Manager call sits on the request path: give up well before the function's own deadline.
_SECRET_CALL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DarajaSecret:
    """What lives in Secret Manager, as JSON ``{consumer_key, consumer_secret, passkey}``."""

    consumer_key: str
    consumer_secret: str = field(repr=False)
    passkey: str = field(repr=False)

    def to_json(self) -> bytes:
        body = {"consumer_key": self.consumer_key, "consumer_secret": self.consumer_secret, "passkey": self.passkey}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> DarajaSecret:
        """Parse a stored payload; ValueError (whose text never quotes the payload) when it is not one."""
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ValueError("the secret payload is not UTF-8 JSON") from None
        if not isinstance(parsed, dict):
            raise ValueError("the secret payload is not a JSON object")
        return cls(
            _required_text(parsed, "consumer_key"),
            _required_text(parsed, "consumer_secret"),
            _required_text(parsed, "passkey"),
        )


def _required_text(parsed: dict[str, Any], name: str) -> str:
    value = parsed.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"the secret payload lacks a non-empty {name}")  # names the field, never its value
    return value


class SecretBackend(Protocol):
    """Where secrets are kept. Implementations raise errors.ServiceUnavailable when the store cannot be reached."""

    def access_latest(self, secret_id: str) -> bytes | None:
        """The latest version's payload; None when the secret or an enabled latest version does not exist."""
        ...

    def add_version(self, secret_id: str, data: bytes) -> None:
        """Store a new version, creating the secret first when needed."""
        ...

    def destroy(self, secret_id: str) -> bool:
        """Destroy every version and delete the secret; False when it did not exist."""
        ...


class SecretManagerBackend:
    """SecretBackend over google-cloud-secret-manager. The client is built on first use, once per instance."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- the port

    def access_latest(self, secret_id: str) -> bytes | None:
        from google.api_core import exceptions as google_errors

        name = f"{self._secret_name(secret_id)}/versions/latest"
        try:
            # Inside the try: building the client looks up credentials, which can fail like any call.
            client = self._client_or_create()
            response = client.access_secret_version(request={"name": name}, timeout=_SECRET_CALL_TIMEOUT_S)
        except google_errors.NotFound:
            return None
        except _store_failures() as failure:
            if _is_failed_precondition(failure):
                # The latest version is disabled or destroyed: the developer has no usable credentials.
                return None
            raise _unavailable("access", secret_id, failure) from None
        data = bytes(response.payload.data)
        # As Google's access_secret_version sample does: a payload corrupted in transit must not become a
        # consumer secret that Daraja then rejects for reasons nobody can see.
        if "data_crc32c" not in response.payload or response.payload.data_crc32c != _crc32c(data):
            raise _unavailable("access", secret_id, None, reason="crc32c_mismatch")
        return data

    def add_version(self, secret_id: str, data: bytes) -> None:
        from google.api_core import exceptions as google_errors

        name = self._secret_name(secret_id)
        request = {"parent": name, "payload": {"data": data, "data_crc32c": _crc32c(data)}}
        try:
            client = self._client_or_create()
            try:
                # Adding first saves a round trip on every update; only a developer's first PUT creates.
                added = client.add_secret_version(request=request, timeout=_SECRET_CALL_TIMEOUT_S)
                self._destroy_older_versions(client, name, added.name)
                return
            except google_errors.NotFound:
                pass
            try:
                client.create_secret(
                    request={
                        "parent": f"projects/{self._settings.project_id}",
                        "secret_id": secret_id,
                        "secret": {"replication": {"automatic": {}}, "labels": dict(SECRET_LABELS)},
                    },
                    timeout=_SECRET_CALL_TIMEOUT_S,
                )
            except google_errors.Conflict:
                # ALREADY_EXISTS (a 409, which REST surfaces as Conflict): another instance created it between our
                # two calls; its version or ours, latest wins.
                pass
            client.add_secret_version(request=request, timeout=_SECRET_CALL_TIMEOUT_S)
        except _store_failures() as failure:
            raise _unavailable("add_version", secret_id, failure) from None

    def destroy(self, secret_id: str) -> bool:
        from google.api_core import exceptions as google_errors
        from google.cloud import secretmanager

        name = self._secret_name(secret_id)
        destroyed_state = secretmanager.SecretVersion.State.DESTROYED
        try:
            client = self._client_or_create()
            try:
                versions = list(client.list_secret_versions(request={"parent": name}, timeout=_SECRET_CALL_TIMEOUT_S))
            except google_errors.NotFound:
                return False
            # Destroying first makes the payloads unrecoverable even if deleting the secret then fails.
            for version in versions:
                if version.state == destroyed_state:
                    continue
                try:
                    client.destroy_secret_version(request={"name": version.name}, timeout=_SECRET_CALL_TIMEOUT_S)
                except google_errors.NotFound:
                    pass  # deleted concurrently: the goal is already met
                except _store_failures() as failure:
                    if not _is_failed_precondition(failure):
                        raise
                    # destroyed concurrently: the goal is already met
            try:
                client.delete_secret(request={"name": name}, timeout=_SECRET_CALL_TIMEOUT_S)
            except google_errors.NotFound:
                pass  # a concurrent delete finished the job
        except _store_failures() as failure:
            raise _unavailable("destroy", secret_id, failure) from None
        return True

    # -- plumbing

    def _destroy_older_versions(self, client: Any, secret_name: str, keep: str) -> None:
        """Replaced consumer secrets and passkeys must not stay readable (or billed): destroy every older version."""
        from google.cloud import secretmanager

        destroyed = secretmanager.SecretVersion.State.DESTROYED
        for version in client.list_secret_versions(request={"parent": secret_name}, timeout=_SECRET_CALL_TIMEOUT_S):
            if version.name != keep and version.state != destroyed:
                client.destroy_secret_version(request={"name": version.name}, timeout=_SECRET_CALL_TIMEOUT_S)

    def _secret_name(self, secret_id: str) -> str:
        return f"projects/{self._settings.project_id}/secrets/{secret_id}"

    def _client_or_create(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._create_client()
        return self._client

    def _create_client(self) -> Any:
        # The HTTP boundary already refuses an unsafe configuration, but the scheduled reconcile has no boundary: no
        # secret is read (and so none reaches a plain-HTTP Daraja URL) unless the configuration is safe.
        self._settings.assert_safe()
        # Imported here, not at module load: the client library costs hundreds of milliseconds of cold start,
        # and deploy-time discovery imports this module without ever needing it.
        from google.cloud import secretmanager

        host = self._settings.secret_manager_emulator_host
        if not host:
            return secretmanager.SecretManagerServiceClient()
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        # The emulator speaks REST over plain HTTP and checks no credentials; gRPC would need TLS.
        return secretmanager.SecretManagerServiceClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=f"http://{host}"),
            credentials=AnonymousCredentials(),
        )


def _store_failures() -> tuple[type[BaseException], ...]:
    """Everything that means "the store could not answer" rather than a bug of ours."""
    import requests
    from google.api_core import exceptions as google_errors
    from google.auth import exceptions as auth_errors

    # GoogleAPIError covers every API status and RetryError; auth errors cover missing or broken ADC; the REST
    # transport lets connection failures through as requests exceptions.
    return (google_errors.GoogleAPIError, auth_errors.GoogleAuthError, requests.RequestException, OSError)


def _is_failed_precondition(failure: BaseException) -> bool:
    from google.api_core import exceptions as google_errors

    if isinstance(failure, google_errors.FailedPrecondition):
        return True
    # Over REST the client picks the exception class from the HTTP status alone, and FAILED_PRECONDITION is a 400:
    # only the status in Google's error body tells it apart from INVALID_ARGUMENT.
    if not isinstance(failure, google_errors.BadRequest) or failure.response is None:
        return False
    try:
        body = failure.response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("status") == "FAILED_PRECONDITION"


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


def _unavailable(
    operation: str, secret_id: str, failure: BaseException | None, reason: str | None = None
) -> errors.ServiceUnavailable:
    # The exception's type is enough to diagnose; its text could echo a request, so it is not logged.
    log_event(
        Event.SECRET_ACCESS_FAILED,
        "ERROR",
        operation=operation,
        secret_id=secret_id,
        exception=type(failure).__name__ if failure is not None else None,
        reason=reason,
    )
    return errors.ServiceUnavailable(
        "secret_store_unavailable", "the credential store is unavailable; retry in a few seconds"
    )


@dataclass(frozen=True)
class _CacheEntry:
    secret: DarajaSecret
    expires_at: float


class _Flight:
    """One backend read in progress for a uid; callers that miss meanwhile wait for its outcome instead of reading."""

    __slots__ = ("done", "error", "secret", "superseded")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.secret: DarajaSecret | None = None
        self.error: BaseException | None = None
        self.superseded = False  # a PUT or DELETE landed meanwhile: what this read returns must not be cached


class CredentialStore:
    """Developers' Daraja secrets with a per-instance cache, so a busy developer costs one Secret Manager read per TTL.

    Staleness is bounded by ``credential_cache_ttl_s``: a PUT or DELETE on another instance is seen here within
    that time (a PUT on this instance at once). "Not configured" is never cached, so a first PUT elsewhere is
    picked up on the next request. Memory is bounded by ``credential_cache_max_entries`` plus one small record per
    read in progress, whatever the number of developers.
    """

    def __init__(self, settings: Settings, backend: SecretBackend, clock: Callable[[], float] = time.monotonic) -> None:
        if not _SECRET_ID.fullmatch(settings.secret_id_prefix + "0" * 64):
            raise ValueError("secret_id_prefix must be at most 191 of [A-Za-z0-9_-]")
        self._prefix = settings.secret_id_prefix
        self._ttl_s = settings.credential_cache_ttl_s
        self._max_entries = settings.credential_cache_max_entries
        self._backend = backend
        self._clock = clock
        # One lock guards the cache and the reads in flight; it is never held across I/O.
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        # Writes are rare, so a few striped locks are enough to keep two PUTs for one uid from interleaving.
        self._write_stripes = tuple(threading.Lock() for _ in range(_WRITE_STRIPES))

    @staticmethod
    def secret_id(uid: str, prefix: str = DEFAULT_SECRET_ID_PREFIX) -> str:
        """The Secret Manager id for a uid: a digest, so any uid (slashes, dots, unicode) gives a valid, fixed name."""
        return prefix + hashlib.sha256(uid.encode("utf-8")).hexdigest()

    def get(self, uid: str) -> DarajaSecret:
        with self._lock:
            cached = self._cached_locked(uid)
            if cached is not None:
                return cached
            flight = self._flights.get(uid)
            leading = flight is None
            if flight is None:
                flight = self._flights[uid] = _Flight()
        if not leading:
            # Waiting for the leader's outcome, error included: during an outage N callers fail together after
            # one timeout instead of queueing up N timeouts.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.secret is not None
            return flight.secret
        try:
            secret = self._load(uid)
            flight.secret = secret
            with self._lock:
                if not flight.superseded:
                    self._remember_locked(uid, secret)
            return secret
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[uid]
            flight.done.set()

    def put(self, uid: str, secret: DarajaSecret) -> None:
        with self._write_stripe(uid):
            self._backend.add_version(self.secret_id(uid, self._prefix), secret.to_json())
            with self._lock:
                self._supersede_locked(uid)
                self._remember_locked(uid, secret)

    def delete(self, uid: str) -> bool:
        with self._write_stripe(uid):
            try:
                return self._backend.destroy(self.secret_id(uid, self._prefix))
            finally:
                # Even if destroying failed half way, this instance must stop using what the developer removed.
                with self._lock:
                    self._supersede_locked(uid)
                    self._entries.pop(uid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- plumbing

    def _write_stripe(self, uid: str) -> threading.Lock:
        return self._write_stripes[hash(uid) % len(self._write_stripes)]

    def _load(self, uid: str) -> DarajaSecret:
        secret_id = self.secret_id(uid, self._prefix)
        data = self._backend.access_latest(secret_id)
        if data is None:
            raise errors.CredentialsNotConfigured()
        try:
            return DarajaSecret.from_json(data)
        except ValueError as malformed:
            reason = str(malformed)  # our own wording from from_json, which never quotes the payload
            log_event(Event.SECRET_ACCESS_FAILED, "ERROR", operation="parse", secret_id=secret_id, reason=reason)
            raise errors.ServerError(
                "secret_malformed", "the stored Daraja credentials are unreadable; PUT developer_credentials again"
            ) from None

    def _cached_locked(self, uid: str) -> DarajaSecret | None:
        entry = self._entries.get(uid)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[uid]  # expired entries free their slot at once instead of waiting for LRU
            return None
        self._entries.move_to_end(uid)
        return entry.secret

    def _remember_locked(self, uid: str, secret: DarajaSecret) -> None:
        self._entries[uid] = _CacheEntry(secret, self._clock() + self._ttl_s)
        self._entries.move_to_end(uid)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _supersede_locked(self, uid: str) -> None:
        flight = self._flights.get(uid)
        if flight is not None:
            flight.superseded = True
