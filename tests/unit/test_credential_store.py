"""CredentialStore against an in-memory SecretBackend and a fake clock: cache hits, TTL, LRU bound, write-through,
no negative caching, tenant isolation and single flight under threads, secret ids, and failure mapping."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest

from gateway import errors
from gateway.secrets import CredentialStore, DarajaSecret
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
    """SecretBackend in a dict; counts accesses (the store's backend reads, seen from outside); optionally slow, or
    down."""

    def __init__(self, read_delay_s: float = 0.0) -> None:
        self.secrets: dict[str, bytes] = {}
        self.accesses: Counter[str] = Counter()
        self.read_delay_s = read_delay_s
        self.down = False
        self._lock = threading.Lock()

    def access_latest(self, secret_id: str) -> bytes | None:
        with self._lock:
            self.accesses[secret_id] += 1
        # The answer is decided when the read starts and arrives after the delay, like a response in flight.
        data = self.secrets.get(secret_id)
        if self.read_delay_s:
            time.sleep(self.read_delay_s)  # an outage is slow too: it ends in a timeout
        if self.down:
            raise errors.ServiceUnavailable("secret_store_unavailable", "down")
        return data

    def add_version(self, secret_id: str, data: bytes) -> None:
        if self.down:
            raise errors.ServiceUnavailable("secret_store_unavailable", "down")
        self.secrets[secret_id] = data

    def destroy(self, secret_id: str) -> bool:
        return self.secrets.pop(secret_id, None) is not None

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
    store.put("dev-1", rotated)
    assert store.get("dev-1") == rotated
    assert backend.secrets[CredentialStore.secret_id("dev-1")] == rotated.to_json()
    assert backend.total_accesses == 1


def test_a_first_put_is_served_from_the_cache() -> None:
    backend = MemoryBackend()
    store = make_store(backend)
    store.put("dev-1", secret_for("dev-1"))
    assert store.get("dev-1") == secret_for("dev-1")
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
