"""Secret API keys for developers' servers: create, list, revoke, and authenticate a call made with one.

Keys are minted only for a caller signed in with a Firebase ID token: a key cannot mint keys, so a leaked key
cannot make itself permanent. The key is shown once, at creation; only its SHA-256 is stored (gateway.api_key_store).

Authenticating a key costs nothing for a malformed one (the checksum is checked before any read) and at most one
Firestore read per key per `api_key_cache_ttl_s` per instance otherwise. That TTL is also the bound on how long a
revoked key keeps working on an instance that had just accepted it; the instance that revokes forgets it at once.
`last_used_at` is written at most once per `api_key_use_mark_interval_s` per key, whatever the number of instances:
the write carries the read version as a precondition, so of several instances only one wins each interval.

The limit on active keys holds under racing creates: a create reads the developer's count of active keys (one
document, not a listing of every key) and commits the new key with the count plus one, under the version it read;
a revocation commits the revoked record with the count minus one the same way. A change that loses the race reads
again and decides again, so two creates can never both take the last place. The list shows active keys and keys
revoked in the last 30 days (REVOKED_KEYS_KEPT_FOR); older revoked records expire through a Firestore TTL.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from gateway import errors
from gateway.api_key_store import ActiveKeyCount, ApiKeyStore, StoredKey
from gateway.domain.api_key import (
    BASE62,
    KEY_ID_PREFIX,
    KEY_ID_RANDOM_CHARS,
    RANDOM_CHARS,
    ApiKeyRecord,
    format_key,
    is_key_id,
    parse_create_request,
    parse_key,
)
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.services.common import sha256_hex
from gateway.settings import Settings

# A change to the set of active keys that keeps losing its commit to others gives up after this many attempts (503).
# Every loss means another change landed, so it takes a developer changing their keys this many times at once.
MAX_CHANGE_ATTEMPTS = 30


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKeyRecord
    key: str  # shown to the caller once, never stored or logged


@dataclass
class _Cached:
    stored: StoredKey
    expires_at: float


class ApiKeys:
    def __init__(
        self,
        settings: Settings,
        store: ApiKeyStore,
        now: Callable[[], datetime],
        clock: Callable[[], float] = time.monotonic,
        random_text: Callable[[int], str] = random_base62,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._store = store
        self._now = now
        self._clock = clock
        self._random_text = random_text
        self._sleep = sleep
        self._lock = threading.Lock()  # guards the cache; never held across I/O
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    # ------------------------------------------------------------------------------------------ management
    @staticmethod
    def check_may_manage(developer: Developer) -> None:
        """403 `api_key_not_allowed` for a caller authenticated by an API key: only a signed-in developer manages
        keys, so a leaked key can neither make itself permanent nor revoke its owner's other keys."""
        _require_signed_in(developer)

    def create(self, developer: Developer, body: object) -> CreatedKey:
        _require_signed_in(developer)
        request = parse_create_request(body)
        limit = self._settings.max_api_keys_per_developer
        for attempt in range(MAX_CHANGE_ATTEMPTS):
            active = self._active_count(developer.uid)
            if active.count >= limit:
                raise errors.Unprocessable(
                    "too_many_api_keys", f"a developer may hold at most {limit} active API keys; revoke one first"
                )
            key = format_key(request.environment, self._random_text(RANDOM_CHARS))
            record = ApiKeyRecord(
                key_id=KEY_ID_PREFIX + self._random_text(KEY_ID_RANDOM_CHARS),
                uid=developer.uid,
                email=developer.email,
                name=request.name,
                environment=request.environment,
                hint=key.hint,
                created_at=self._now(),
            )
            if self._store.create(sha256_hex(key.text), record, replace(active, count=active.count + 1)):
                log_event(
                    Event.API_KEY_CREATED, uid=developer.uid, api_key_id=record.key_id, environment=record.environment
                )
                return CreatedKey(record, key.text)
            self._back_off(attempt)  # another create or a revocation changed the count: read it again
        raise _busy()

    def list(self, developer: Developer) -> list[ApiKeyRecord]:
        """Active keys and keys revoked in the last REVOKED_KEYS_KEPT_FOR, newest first."""
        _require_signed_in(developer)
        now = self._now()
        records = [stored.record for stored in self._store.list_for(developer.uid) if stored.record.listed(now)]
        return sorted(records, key=lambda record: (record.created_at, record.key_id), reverse=True)

    def _active_count(self, uid: str) -> ActiveKeyCount:
        stored = self._store.load_active_count(uid)
        if stored is not None:
            return stored
        # No count yet (a new developer, or keys made before the count existed): count the records this once. The
        # write that follows creates the count, and loses if another change created it first.
        return ActiveKeyCount(uid, sum(1 for key in self._store.list_for(uid) if not key.record.revoked))

    def _back_off(self, attempt: int) -> None:
        # Jittered, so that racing changes of one developer's keys do not collide again in lockstep.
        self._sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))

    def get(self, developer: Developer, key_id: str) -> ApiKeyRecord:
        _require_signed_in(developer)
        return self._find_own(developer, key_id).record

    def revoke(self, developer: Developer, key_id: str) -> ApiKeyRecord:
        """Revoke one of the caller's keys; revoking it again answers the same. Another developer's key id is
        not found, exactly like one that never existed."""
        _require_signed_in(developer)
        for attempt in range(MAX_CHANGE_ATTEMPTS):
            stored = self._find_own(developer, key_id)
            if stored.record.revoked:
                return stored.record
            active = self._active_count(developer.uid)
            revoked = stored.record.revoke(self._now())
            if self._store.save(stored, revoked, replace(active, count=max(0, active.count - 1))):
                break
            # A last_used_at mark, a create or another revocation landed meanwhile: read again and decide again.
            self._back_off(attempt)
        else:
            raise _busy()
        with self._lock:
            self._cache.pop(stored.key_sha256, None)
        log_event(Event.API_KEY_REVOKED, uid=developer.uid, api_key_id=key_id)
        return revoked

    def _find_own(self, developer: Developer, key_id: str) -> StoredKey:
        stored = self._store.find_by_id(developer.uid, key_id) if is_key_id(key_id) else None
        if stored is None:
            raise errors.NotFound("api_key_not_found", "no API key with this id belongs to you", "id")
        return stored

    # ------------------------------------------------------------------------------------------ authentication
    def authenticate(self, credential: str) -> Developer:
        """The developer a key acts for, in the key's environment; 401 `invalid_api_key` for a malformed,
        mistyped or unknown key (no read for the first two), 401 `api_key_revoked` for a revoked one."""
        key = parse_key(credential)
        if key is None:
            raise _rejected(
                "invalid_api_key", "the API key is malformed or mistyped; copy it again from where you saved it"
            )
        key_sha256 = sha256_hex(key.text)
        stored = self._cached(key_sha256) or self._load(key_sha256)
        if stored is None:
            raise _rejected("invalid_api_key", "this API key does not exist")
        record = stored.record
        if record.revoked:
            raise _rejected("api_key_revoked", "this API key has been revoked; create a new one", record.key_id)
        if record.environment != key.environment:  # a record is filed under its key's hash: cannot happen
            raise _rejected("invalid_api_key", "this API key does not exist", record.key_id)
        self._mark_used(stored)
        return Developer(uid=record.uid, email=record.email, environment=record.environment, api_key_id=record.key_id)

    def _cached(self, key_sha256: str) -> StoredKey | None:
        with self._lock:
            entry = self._cache.get(key_sha256)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                del self._cache[key_sha256]
                return None
            self._cache.move_to_end(key_sha256)
            return entry.stored

    def _load(self, key_sha256: str) -> StoredKey | None:
        stored = self._store.find(key_sha256)
        if stored is not None:  # unknown keys are not cached: a key created a moment ago must work at once
            self._remember(stored)
        return stored

    def _remember(self, stored: StoredKey) -> None:
        with self._lock:
            self._cache[stored.key_sha256] = _Cached(stored, self._clock() + self._settings.api_key_cache_ttl_s)
            self._cache.move_to_end(stored.key_sha256)
            while len(self._cache) > self._settings.api_key_cache_max_entries:
                self._cache.popitem(last=False)

    def _mark_used(self, stored: StoredKey) -> None:
        now = self._now()
        if not stored.record.due_for_use_mark(now, self._settings.api_key_use_mark_interval_s):
            return
        used = stored.record.used(now)
        # Remember the mark first, so this instance's concurrent calls do not all try to write it.
        self._remember_if_current(stored, StoredKey(stored.key_sha256, used, stored.version))
        try:
            self._store.save(stored, used)  # False: another instance (or a revocation) wrote first, which is fine
        except Exception as failure:  # noqa: BLE001 - bookkeeping must never fail the caller's request
            log_event(
                Event.API_KEY_USE_MARK_FAILED,
                "WARNING",
                api_key_id=stored.record.key_id,
                exception=type(failure).__name__,
            )

    def _remember_if_current(self, loaded: StoredKey, replacement: StoredKey) -> None:
        with self._lock:
            entry = self._cache.get(loaded.key_sha256)
            if entry is not None and entry.stored is loaded:
                entry.stored = replacement


def _require_signed_in(developer: Developer) -> None:
    if developer.api_key_id is not None:
        log_event(Event.AUTH_REJECTED, "INFO", code="api_key_not_allowed", api_key_id=developer.api_key_id)
        raise errors.PermissionDenied(
            "api_key_not_allowed",
            "API keys cannot manage API keys; sign in and call api_keys with a Firebase ID token",
        )


def _busy() -> errors.ServiceUnavailable:
    return errors.ServiceUnavailable("api_keys_busy", "too many changes to your API keys at once; retry in a moment")


def _rejected(code: str, message: str, key_id: str | None = None) -> errors.AuthenticationError:
    log_event(Event.AUTH_REJECTED, "INFO", code=code, api_key_id=key_id)
    return errors.AuthenticationError(code, message)
