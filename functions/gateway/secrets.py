"""Each developer's Daraja secret, by verified uid: the Secret Manager adapter and a per-instance cache in front of it.

    CredentialStore            (owner, version) -> DarajaSecret; TTL- and size-bounded LRU cache, single flight
      └── SecretBackend        the port: access a version (or the latest), add one, destroy some; bytes in and out
            └── SecretManagerBackend   google-cloud-secret-manager (real service, or the local emulator over REST)

The secret name is derived from the verified owner alone (a sha256 of "{uid}#{environment}"), so no request field
ever reaches a resource name. Payloads are never logged nor put in exception messages.

Rotation is instant because the cache is keyed by version: each stored set-up names the version it belongs to
(gateway.domain.daraja_setup), so after a PUT every instance asks for the new version on its next push and never
serves the old one from its cache. Versions are never reused: a DELETE destroys versions but keeps the (empty)
secret, because a deleted and re-created secret would count its versions from 1 again.
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
# A Secret Manager call sits on the request path: give up well before the function's own deadline.
_SECRET_CALL_TIMEOUT_S = 10.0
# Secret Manager's version ids: positive integers that only grow.
_VERSION_ID = re.compile(r"[1-9][0-9]{0,18}")


def _version_id(version_name: str) -> str:
    """The id at the end of a version's name: ".../versions/7" -> "7"."""
    return version_name.rsplit("/", 1)[-1]


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


class SecretVersionUnavailable(errors.CredentialsNotConfigured):
    """The version a set-up names is destroyed, disabled or gone: a newer PUT or a DELETE retired it meanwhile.
    Whoever loaded that set-up should load it again (once); if it still names it, the credentials are unusable."""

    def __init__(self) -> None:
        super().__init__(
            message="the stored Daraja credentials were replaced or removed meanwhile; retry, or PUT them again"
        )


class SecretBackend(Protocol):
    """Where secrets are kept. Implementations raise errors.ServiceUnavailable when the store cannot be reached.
    Versions are Secret Manager's version ids ("1", "2", ...): they only ever grow for one secret."""

    def access_latest(self, secret_id: str) -> bytes | None:
        """The latest version's payload; None when the secret or an enabled latest version does not exist."""
        ...

    def access_version(self, secret_id: str, version: str) -> bytes | None:
        """That version's payload; None when it does not exist or is disabled or destroyed."""
        ...

    def add_version(self, secret_id: str, data: bytes) -> str | None:
        """Store a new version, creating the secret first when needed; its version id. Older versions stay."""
        ...

    def latest_version(self, secret_id: str) -> str | None:
        """The newest version's id, whatever its state; None when the secret has no versions."""
        ...

    def destroy_versions(self, secret_id: str, before: str | None = None) -> bool:
        """Destroy every version numbered below `before` (every version when None); the secret itself stays, so
        version ids are never reused. True when at least one version was destroyed by this call."""
        ...

    def destroy_version(self, secret_id: str, version: str) -> None:
        """Destroy that one version; nothing happens when it is already destroyed or gone."""
        ...


class SecretManagerBackend:
    """SecretBackend over google-cloud-secret-manager. The client is built on first use, once per instance."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- the port

    def access_latest(self, secret_id: str) -> bytes | None:
        return self._access(secret_id, "latest")

    def access_version(self, secret_id: str, version: str) -> bytes | None:
        if not _VERSION_ID.fullmatch(version):
            return None  # never a resource name built from anything but a version number
        return self._access(secret_id, version)

    def _access(self, secret_id: str, version: str) -> bytes | None:
        from google.api_core import exceptions as google_errors

        name = f"{self._secret_name(secret_id)}/versions/{version}"
        try:
            # Inside the try: building the client looks up credentials, which can fail like any call.
            client = self._client_or_create()
            response = client.access_secret_version(request={"name": name}, timeout=_SECRET_CALL_TIMEOUT_S)
        except google_errors.NotFound:
            return None
        except _store_failures() as failure:
            if _is_failed_precondition(failure):
                # The version is disabled or destroyed: these credentials are not usable any more.
                return None
            raise _unavailable("access", secret_id, failure) from None
        data = bytes(response.payload.data)
        # As Google's access_secret_version sample does: a payload corrupted in transit must not become a
        # consumer secret that Daraja then rejects for reasons nobody can see.
        if "data_crc32c" not in response.payload or response.payload.data_crc32c != _crc32c(data):
            raise _unavailable("access", secret_id, None, reason="crc32c_mismatch")
        return data

    def add_version(self, secret_id: str, data: bytes) -> str | None:
        from google.api_core import exceptions as google_errors

        name = self._secret_name(secret_id)
        request = {"parent": name, "payload": {"data": data, "data_crc32c": _crc32c(data)}}
        try:
            client = self._client_or_create()
            try:
                # Adding first saves a round trip on every update; only a developer's first PUT creates. Older
                # versions stay until the caller knows its set-up is the one stored (see CredentialStore.retire).
                added = client.add_secret_version(request=request, timeout=_SECRET_CALL_TIMEOUT_S)
                return _version_id(added.name)
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
                # two calls; versions are numbered by the store, so both are kept apart and ordered.
                pass
            return _version_id(client.add_secret_version(request=request, timeout=_SECRET_CALL_TIMEOUT_S).name)
        except _store_failures() as failure:
            raise _unavailable("add_version", secret_id, failure) from None

    def latest_version(self, secret_id: str) -> str | None:
        try:
            versions = self._versions(secret_id)
        except _store_failures() as failure:
            raise _unavailable("list_versions", secret_id, failure) from None
        numbers = [int(_version_id(version.name)) for version in versions]
        return str(max(numbers)) if numbers else None

    def destroy_versions(self, secret_id: str, before: str | None = None) -> bool:
        from google.cloud import secretmanager

        destroyed_state = secretmanager.SecretVersion.State.DESTROYED
        limit = None if before is None else int(before)
        destroyed = False
        try:
            for version in self._versions(secret_id):
                if version.state == destroyed_state:
                    continue
                if limit is not None and int(_version_id(version.name)) >= limit:
                    continue
                destroyed = self._destroy(version.name) or destroyed
        except _store_failures() as failure:
            raise _unavailable("destroy", secret_id, failure) from None
        return destroyed

    def destroy_version(self, secret_id: str, version: str) -> None:
        if not _VERSION_ID.fullmatch(version):
            return
        try:
            self._destroy(f"{self._secret_name(secret_id)}/versions/{version}")
        except _store_failures() as failure:
            raise _unavailable("destroy", secret_id, failure) from None

    # -- plumbing

    def _versions(self, secret_id: str) -> list[Any]:
        """Every version of the secret, newest first; none when the secret does not exist."""
        from google.api_core import exceptions as google_errors

        client = self._client_or_create()
        request = {"parent": self._secret_name(secret_id)}
        try:
            return list(client.list_secret_versions(request=request, timeout=_SECRET_CALL_TIMEOUT_S))
        except google_errors.NotFound:
            return []

    def _destroy(self, version_name: str) -> bool:
        """Destroy one version; False when it was destroyed or deleted concurrently (the goal is already met)."""
        from google.api_core import exceptions as google_errors

        client = self._client_or_create()
        try:
            client.destroy_secret_version(request={"name": version_name}, timeout=_SECRET_CALL_TIMEOUT_S)
        except google_errors.NotFound:
            return False
        except _store_failures() as failure:
            if not _is_failed_precondition(failure):
                raise
            return False
        return True

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


# (owner, version): version None is "the latest", for set-ups stored before versions were recorded.
_CacheKey = tuple[str, str | None]


class _Flight:
    """One backend read in progress for a key; callers that miss meanwhile wait for its outcome instead of reading."""

    __slots__ = ("done", "error", "secret", "superseded")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.secret: DarajaSecret | None = None
        self.error: BaseException | None = None
        self.superseded = False  # a PUT or DELETE landed meanwhile: what this read returns must not be cached


class CredentialStore:
    """Developers' Daraja secrets with a per-instance cache, so a busy developer costs one Secret Manager read per TTL.

    Entries are keyed by (owner, version). A version never changes, so a cached one is never stale: a PUT on another
    instance stores a set-up naming a new version, and the next push here asks for that version and misses. Only the
    version-less "latest" (set-ups from before versions were recorded) is stale for up to ``credential_cache_ttl_s``.
    "Not configured" is never cached. Memory is bounded by ``credential_cache_max_entries`` plus one small record per
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
        self._entries: OrderedDict[_CacheKey, _CacheEntry] = OrderedDict()
        self._flights: dict[_CacheKey, _Flight] = {}

    @staticmethod
    def secret_id(owner: str, prefix: str = DEFAULT_SECRET_ID_PREFIX) -> str:
        """The Secret Manager id for an owner: a digest, so any uid (slashes, dots, unicode) gives a fixed name."""
        return prefix + hashlib.sha256(owner.encode("utf-8")).hexdigest()

    def get(self, owner: str, version: str | None = None) -> DarajaSecret:
        """That version of the owner's secret (the latest when None). SecretVersionUnavailable when the version was
        retired; CredentialsNotConfigured when there is no latest one."""
        key: _CacheKey = (owner, version)
        with self._lock:
            cached = self._cached_locked(key)
            if cached is not None:
                return cached
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leading:
            # Waiting for the leader's outcome, error included: during an outage N callers fail together after
            # one timeout instead of queueing up N timeouts.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.secret is not None
            return flight.secret
        try:
            secret = self._load(owner, version)
            flight.secret = secret
            with self._lock:
                if not flight.superseded:
                    self._remember_locked(key, secret)
            return secret
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def put(self, owner: str, secret: DarajaSecret) -> str | None:
        """Add the secret as a new version and return its id. Older versions stay readable until `retire`: the
        set-up naming this version may still lose against a newer one."""
        version = self._backend.add_version(self.secret_id(owner, self._prefix), secret.to_json())
        with self._lock:
            # Only "the latest" changed; the versions other set-ups name stay what they were.
            self._supersede_locked(owner, latest_only=True)
            self._entries.pop((owner, None), None)
            if version is not None:
                self._remember_locked((owner, version), secret)
        return version

    def retire(self, owner: str, version: str | None) -> None:
        """The set-up naming `version` is stored: destroy every older version (replaced consumer secrets and passkeys
        must not stay readable, nor billed). Only older ones: a newer version may belong to a PUT still landing."""
        if version is None:
            return  # a backend that numbers no versions: nothing can be told apart
        self._backend.destroy_versions(self.secret_id(owner, self._prefix), before=version)
        with self._lock:
            self._forget_locked(owner, keep=version)

    def discard(self, owner: str, version: str | None) -> None:
        """A PUT whose set-up lost against a newer one destroys its own version, and only that."""
        if version is None:
            return
        with self._lock:
            self._entries.pop((owner, version), None)
        self._backend.destroy_version(self.secret_id(owner, self._prefix), version)

    def latest_version(self, owner: str) -> str | None:
        return self._backend.latest_version(self.secret_id(owner, self._prefix))

    def delete(self, owner: str, through: str | None = None) -> bool:
        """Destroy the owner's versions up to `through` (all when None); True when one was destroyed."""
        before = None if through is None else str(int(through) + 1)
        try:
            return self._backend.destroy_versions(self.secret_id(owner, self._prefix), before=before)
        finally:
            # Even if destroying failed half way, this instance must stop using what the developer removed.
            with self._lock:
                self._supersede_locked(owner)
                self._forget_locked(owner, keep=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- plumbing

    def _load(self, owner: str, version: str | None) -> DarajaSecret:
        secret_id = self.secret_id(owner, self._prefix)
        if version is None:
            data = self._backend.access_latest(secret_id)
            if data is None:
                raise errors.CredentialsNotConfigured()
        else:
            data = self._backend.access_version(secret_id, version)
            if data is None:
                log_event(
                    Event.SECRET_ACCESS_FAILED,
                    "WARNING",
                    operation="access",
                    secret_id=secret_id,
                    version=version,
                    reason="version_retired",
                )
                raise SecretVersionUnavailable()
        try:
            return DarajaSecret.from_json(data)
        except ValueError as malformed:
            reason = str(malformed)  # our own wording from from_json, which never quotes the payload
            log_event(Event.SECRET_ACCESS_FAILED, "ERROR", operation="parse", secret_id=secret_id, reason=reason)
            raise errors.ServerError(
                "secret_malformed", "the stored Daraja credentials are unreadable; PUT developer_credentials again"
            ) from None

    def _cached_locked(self, key: _CacheKey) -> DarajaSecret | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]  # expired entries free their slot at once instead of waiting for LRU
            return None
        self._entries.move_to_end(key)
        return entry.secret

    def _remember_locked(self, key: _CacheKey, secret: DarajaSecret) -> None:
        self._entries[key] = _CacheEntry(secret, self._clock() + self._ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _forget_locked(self, owner: str, keep: str | None) -> None:
        """Drop the owner's other cached versions (and its "latest"): writes are rare, so a scan is fine."""
        for key in [key for key in self._entries if key[0] == owner and (keep is None or key[1] != keep)]:
            del self._entries[key]

    def _supersede_locked(self, owner: str, latest_only: bool = False) -> None:
        for key, flight in self._flights.items():
            if key[0] == owner and (key[1] is None or not latest_only):
                flight.superseded = True
