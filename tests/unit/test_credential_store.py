"""CredentialStore against an in-memory SecretBackend and a fake clock: cache hits, TTL, LRU bound, write-through,
no negative caching, tenant isolation and single flight under threads, secret ids, and failure mapping."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from gateway import errors
from gateway.secrets import CredentialStore, DarajaSecret, SecretVersionUnavailable
from gateway.settings import Settings

SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryBackend:
    """SecretBackend in dicts; counts accesses (the store's backend reads, seen from outside); optionally slow, or
    down. `secrets` is each secret's latest payload (tests seed it directly); `versions` the numbered versions added
    through the port (None once destroyed)."""

    def __init__(self, read_delay_s: float = 0.0) -> None:
        self.secrets: dict[str, bytes] = {}
        self.versions: dict[str, dict[int, bytes | None]] = {}
        self.accesses: Counter[str] = Counter()
        self.read_delay_s = read_delay_s
        self.down = False
        self._lock = threading.Lock()

    def access_latest(self, secret_id: str) -> bytes | None:
        return self._read(secret_id, lambda: self.secrets.get(secret_id))

    def access_version(self, secret_id: str, version: str) -> bytes | None:
        return self._read(secret_id, lambda: self.versions.get(secret_id, {}).get(int(version)))

    def _read(self, secret_id: str, answer: Callable[[], bytes | None]) -> bytes | None:
        with self._lock:
            self.accesses[secret_id] += 1
        # The answer is decided when the read starts and arrives after the delay, like a response in flight.
        data = answer()
        if self.read_delay_s:
            time.sleep(self.read_delay_s)  # an outage is slow too: it ends in a timeout
        if self.down:
            raise errors.ServiceUnavailable("secret_store_unavailable", "down")
        return data

    def add_version(self, secret_id: str, data: bytes) -> str:
        if self.down:
            raise errors.ServiceUnavailable("secret_store_unavailable", "down")
        with self._lock:
            versions = self.versions.setdefault(secret_id, {})
            number = max(versions, default=0) + 1
            versions[number] = data
            self.secrets[secret_id] = data
            return str(number)

    def latest_version(self, secret_id: str) -> str | None:
        versions = self.versions.get(secret_id)
        return str(max(versions)) if versions else None

    def destroy_versions(self, secret_id: str, before: str | None = None) -> bool:
        with self._lock:
            versions = self.versions.get(secret_id, {})
            doomed = [n for n, data in versions.items() if data is not None and (before is None or n < int(before))]
            for number in doomed:
                versions[number] = None
            latest_gone = before is None and self.secrets.pop(secret_id, None) is not None
            return bool(doomed) or latest_gone

    def destroy_version(self, secret_id: str, version: str) -> None:
        with self._lock:
            versions = self.versions.get(secret_id, {})
            if int(version) in versions:
                versions[int(version)] = None

    def live(self, secret_id: str) -> list[int]:
        return sorted(n for n, data in self.versions.get(secret_id, {}).items() if data is not None)

    @property
    def total_accesses(self) -> int:
        return sum(self.accesses.values())


def secret_for(uid: str) -> DarajaSecret:
    # The consumer key is the canary: it names its developer, so any mix-up is visible.
    return DarajaSecret(consumer_key=f"key-{uid}", consumer_secret=f"secret-{uid}", passkey=f"passkey-{uid}")


def make_store(
    backend: MemoryBackend, clock: FakeClock | None = None, ttl_s: float = 300.0, max_entries: int = 5_000
) -> CredentialStore:
    settings = Settings(project_id="demo-test", credential_cache_ttl_s=ttl_s, credential_cache_max_entries=max_entries)
    return CredentialStore(settings, backend, clock or FakeClock())


def seed(backend: MemoryBackend, *uids: str) -> None:
    for uid in uids:
        backend.secrets[CredentialStore.secret_id(uid)] = secret_for(uid).to_json()


def test_a_thousand_lookups_within_the_ttl_read_the_backend_once() -> None:
    backend = MemoryBackend()
    seed(backend, "dev-1")
    clock = FakeClock()
    store = make_store(backend, clock)
    for _ in range(1_000):
        assert store.get("dev-1") == secret_for("dev-1")
        clock.advance(0.1)  # 100 s in all: still inside the 300 s TTL
    assert backend.total_accesses == 1


def test_an_expired_entry_is_read_again() -> None:
    backend = MemoryBackend()
    seed(backend, "dev-1")
    clock = FakeClock()
    store = make_store(backend, clock, ttl_s=300.0)
    store.get("dev-1")
    clock.advance(299.0)
    store.get("dev-1")
    assert backend.total_accesses == 1
    clock.advance(1.0)
    store.get("dev-1")
    assert backend.total_accesses == 2


def test_a_put_is_seen_at_once_on_the_same_instance() -> None:
    backend = MemoryBackend()
    seed(backend, "dev-1")
    store = make_store(backend)
    assert store.get("dev-1").consumer_key == "key-dev-1"
    rotated = DarajaSecret("rotated-key", "rotated-secret", "rotated-passkey")
    version = store.put("dev-1", rotated)
    assert version == "1"
    assert store.get("dev-1", version) == rotated
    assert backend.secrets[CredentialStore.secret_id("dev-1")] == rotated.to_json()
    assert backend.total_accesses == 1


def test_a_first_put_is_served_from_the_cache() -> None:
    backend = MemoryBackend()
    store = make_store(backend)
    version = store.put("dev-1", secret_for("dev-1"))
    assert store.get("dev-1", version) == secret_for("dev-1")
    assert backend.total_accesses == 0


def test_the_cache_never_holds_more_than_its_bound_and_evicts_the_least_recently_used() -> None:
    backend = MemoryBackend()
    uids = [f"dev-{n}" for n in range(10)]
    seed(backend, *uids)
    store = make_store(backend, max_entries=3)
    for uid in uids[:3]:
        store.get(uid)
    store.get("dev-0")  # dev-0 is now the most recently used; dev-1 the least
    store.get("dev-3")
    assert len(store) == 3
    reads = backend.total_accesses
    store.get("dev-0")
    store.get("dev-2")
    store.get("dev-3")
    assert backend.total_accesses == reads, "the three most recently used stayed cached"
    store.get("dev-1")
    assert backend.total_accesses == reads + 1, "the least recently used was evicted"
    for uid in uids:
        store.get(uid)
        assert len(store) <= 3


def test_not_configured_raises_and_is_not_cached() -> None:
    backend = MemoryBackend()
    store = make_store(backend)
    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        store.get("dev-1")
    assert raised.value.http_status == 404
    assert raised.value.code == "credentials_not_configured"
    assert isinstance(raised.value, errors.InvalidRequest)
    # Another instance stores the credentials: this one must see them on the next request, not after a TTL.
    seed(backend, "dev-1")
    assert store.get("dev-1") == secret_for("dev-1")
    assert backend.total_accesses == 2


def test_delete_destroys_and_evicts() -> None:
    backend = MemoryBackend()
    seed(backend, "dev-1")
    store = make_store(backend)
    store.get("dev-1")
    assert store.delete("dev-1") is True
    assert len(store) == 0
    with pytest.raises(errors.CredentialsNotConfigured):
        store.get("dev-1")
    assert store.delete("dev-1") is False


def test_concurrent_lookups_never_mix_developers() -> None:
    backend = MemoryBackend(read_delay_s=0.001)
    uids = [f"dev-{n}" for n in range(50)]
    seed(backend, *uids)
    clock = FakeClock()
    # A small cache and a short TTL keep entries churning, so reads, writes and evictions interleave.
    store = make_store(backend, clock, ttl_s=0.5, max_entries=20)
    mixups: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(len(uids) * 8)

    def look_up(uid: str) -> None:
        try:
            start.wait()
            for round_number in range(40):
                seen = store.get(uid)
                if seen != secret_for(uid):
                    mixups.append(f"{uid} saw {seen.consumer_key}")
                if round_number % 10 == 0:
                    clock.advance(0.2)
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=look_up, args=(uid,)) for uid in uids for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert not mixups
    assert len(store) <= 20


def test_concurrent_misses_for_one_developer_make_one_backend_read() -> None:
    backend = MemoryBackend(read_delay_s=0.2)
    seed(backend, "dev-1")
    store = make_store(backend)
    start = threading.Barrier(32)
    seen: list[DarajaSecret] = []

    def look_up() -> None:
        start.wait()
        seen.append(store.get("dev-1"))

    threads = [threading.Thread(target=look_up) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert seen == [secret_for("dev-1")] * 32
    assert backend.total_accesses == 1


def test_a_read_that_started_before_a_put_does_not_overwrite_it() -> None:
    backend = MemoryBackend(read_delay_s=0.2)
    seed(backend, "dev-1")
    store = make_store(backend)
    reader = threading.Thread(target=store.get, args=("dev-1",))
    reader.start()
    time.sleep(0.05)  # the reader now holds the old payload in flight
    rotated = DarajaSecret("rotated-key", "rotated-secret", "rotated-passkey")
    store.put("dev-1", rotated)
    reader.join(timeout=10)
    assert store.get("dev-1") == rotated


def test_a_delete_during_a_read_keeps_the_deleted_secret_out_of_the_cache() -> None:
    backend = MemoryBackend(read_delay_s=0.2)
    seed(backend, "dev-1")
    store = make_store(backend)
    reader = threading.Thread(target=store.get, args=("dev-1",))
    reader.start()
    time.sleep(0.05)
    assert store.delete("dev-1") is True
    reader.join(timeout=10)
    assert len(store) == 0
    with pytest.raises(errors.CredentialsNotConfigured):
        store.get("dev-1")


def test_concurrent_callers_share_one_failed_read() -> None:
    backend = MemoryBackend(read_delay_s=0.2)
    seed(backend, "dev-1")
    backend.down = True
    store = make_store(backend)
    start = threading.Barrier(16)
    outcomes: list[str] = []

    def look_up() -> None:
        start.wait()
        try:
            store.get("dev-1")
            outcomes.append("ok")
        except errors.ServiceUnavailable as failure:
            outcomes.append(failure.code)

    threads = [threading.Thread(target=look_up) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # One outage costs one timeout for everyone waiting, not one per caller.
    assert outcomes == ["secret_store_unavailable"] * 16
    assert backend.total_accesses == 1
    backend.down = False
    assert store.get("dev-1") == secret_for("dev-1")


@pytest.mark.parametrize(
    "uid",
    ["dev-1", "../x", "a/b", "a b", "", "ü-ñ-日本", "x" * 1_000, "projects/p/secrets/s", "--", "🙂"],
)
def test_secret_ids_are_valid_sha256_names(uid: str) -> None:
    secret_id = CredentialStore.secret_id(uid)
    assert SECRET_ID.fullmatch(secret_id)
    assert secret_id.startswith("daraja-credentials-")
    assert re.fullmatch(r"[0-9a-f]{64}", secret_id.removeprefix("daraja-credentials-"))


def test_secret_ids_differ_per_uid_and_use_the_configured_prefix() -> None:
    uids = ["dev-1", "dev-2", "../x", "a/b", "A/B", "ü", "u", "", " ", "dev-1 "]
    assert len({CredentialStore.secret_id(uid) for uid in uids}) == len(uids)
    backend = MemoryBackend()
    settings = Settings(project_id="demo-test", secret_id_prefix="tenant_")
    store = CredentialStore(settings, backend, FakeClock())
    store.put("dev-1", secret_for("dev-1"))
    assert list(backend.secrets) == [CredentialStore.secret_id("dev-1", "tenant_")]


def test_an_unusable_prefix_is_refused() -> None:
    with pytest.raises(ValueError):
        CredentialStore(Settings(project_id="demo-test", secret_id_prefix="bad/prefix"), MemoryBackend())


def test_repr_hides_the_secret_and_the_passkey() -> None:
    secret = DarajaSecret("visible-key", "hidden-consumer-secret", "hidden-passkey")
    for text in (repr(secret), str(secret), repr([secret])):
        assert "visible-key" in text
        assert "hidden-consumer-secret" not in text
        assert "hidden-passkey" not in text


def test_a_backend_outage_is_service_unavailable_and_not_cached() -> None:
    backend = MemoryBackend()
    seed(backend, "dev-1")
    store = make_store(backend)
    backend.down = True
    with pytest.raises(errors.ServiceUnavailable) as raised:
        store.get("dev-1")
    assert raised.value.http_status == 503
    backend.down = False
    assert store.get("dev-1") == secret_for("dev-1")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"consumer_key": "k"}',
        b'{"consumer_key": "k", "consumer_secret": 1, "passkey": "p"}',
    ],
)
def test_a_malformed_secret_is_a_server_error_that_never_quotes_it(
    payload: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = MemoryBackend()
    backend.secrets[CredentialStore.secret_id("dev-1")] = payload
    store = make_store(backend)
    with pytest.raises(errors.ServerError) as raised:
        store.get("dev-1")
    assert raised.value.code == "secret_malformed"
    assert raised.value.http_status >= 500
    logged = capsys.readouterr().out
    assert "secret_access_failed" in logged
    assert "not json" not in logged and "not json" not in raised.value.message


def test_the_payload_round_trips_as_json() -> None:
    secret = DarajaSecret("k", "s", "p")
    assert DarajaSecret.from_json(secret.to_json()) == secret
    assert secret.to_json() == b'{"consumer_key":"k","consumer_secret":"s","passkey":"p"}'


# ---------------------------------------------------------------------------------------- versions (rotation)
def test_each_version_is_its_own_entry_so_another_instances_put_is_used_at_once() -> None:
    backend = MemoryBackend()
    clock = FakeClock()
    here, elsewhere = make_store(backend, clock), make_store(backend, clock)
    old = here.put("dev-1", secret_for("old"))
    assert here.get("dev-1", old) == secret_for("old")
    new = elsewhere.put("dev-1", secret_for("new"))
    # The registry now names `new`: this instance misses on it at once instead of serving its cached `old`.
    assert here.get("dev-1", new) == secret_for("new")
    assert here.get("dev-1", old) == secret_for("old")
    assert backend.total_accesses == 1


def test_a_retired_version_is_unavailable_and_never_cached() -> None:
    backend = MemoryBackend()
    store = make_store(backend)
    first = store.put("dev-1", secret_for("first"))
    second = store.put("dev-1", secret_for("second"))
    assert first is not None and second is not None
    store.retire("dev-1", second)
    assert backend.live(CredentialStore.secret_id("dev-1")) == [2]
    with pytest.raises(SecretVersionUnavailable) as raised:
        store.get("dev-1", first)
    assert isinstance(raised.value, errors.CredentialsNotConfigured)
    with pytest.raises(SecretVersionUnavailable):
        store.get("dev-1", first)
    assert backend.total_accesses == 2, "a retired version is asked for again, never remembered"
    assert store.get("dev-1", second) == secret_for("second")


def test_retire_keeps_newer_versions_and_discard_only_its_own() -> None:
    backend = MemoryBackend()
    store = make_store(backend)
    secret_id = CredentialStore.secret_id("dev-1")
    versions = [store.put("dev-1", secret_for(f"v{n}")) for n in range(1, 5)]
    store.retire("dev-1", "2")  # a PUT whose set-up (version 2) landed while 3 and 4 are still landing
    assert backend.live(secret_id) == [2, 3, 4]
    store.discard("dev-1", "3")  # the PUT of version 3 lost against 4
    assert backend.live(secret_id) == [2, 4]
    store.retire("dev-1", "4")
    assert backend.live(secret_id) == [4]
    assert store.get("dev-1", versions[-1]) == secret_for("v4")


def test_delete_through_a_version_leaves_newer_ones() -> None:
    backend = MemoryBackend()
    store = make_store(backend)
    secret_id = CredentialStore.secret_id("dev-1")
    for n in range(3):
        store.put("dev-1", secret_for(f"v{n}"))
    assert store.latest_version("dev-1") == "3"
    assert store.delete("dev-1", through="2") is True
    assert backend.live(secret_id) == [3]
    assert store.delete("dev-1", through="2") is False
    assert store.delete("dev-1") is True
    assert backend.live(secret_id) == []
