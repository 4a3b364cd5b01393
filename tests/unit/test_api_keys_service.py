"""gateway.services.api_keys over a dict store: create / list / revoke, the key-cannot-mint rule, the per-developer
limit, authentication (checksum before any read, revoked keys, the cache TTL), last_used_at at most once a minute,
and the Authorization dispatch in FirebaseAuthenticator. No emulator."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from gateway import errors
from gateway.auth import FirebaseAuthenticator
from gateway.domain.api_key import parse_key
from gateway.http import Developer
from gateway.services.api_keys import ApiKeys
from gateway.services.common import sha256_hex
from gateway.settings import Settings
from tests.unit.fakes import FakeClock, MemoryApiKeyStore

ALICE = Developer("alice", "alice@example.com")
BOB = Developer("bob", "bob@example.com")


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Keys:
    service: ApiKeys
    store: MemoryApiKeyStore
    clock: FakeClock
    ticker: Ticker


def make(**changes: object) -> Keys:
    settings = dataclasses.replace(Settings(project_id="unit"), **changes)  # type: ignore[arg-type]
    store, clock, ticker = MemoryApiKeyStore(), FakeClock(), Ticker()
    return Keys(ApiKeys(settings, store, clock, ticker), store, clock, ticker)


@pytest.fixture
def keys() -> Keys:
    return make()


def test_create_returns_the_key_once_and_stores_only_its_hash(keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    assert created.key.startswith("mpg_test_") and parse_key(created.key) is not None
    assert created.record.key_id.startswith("key_")
    assert created.record.hint == f"mpg_test_...{created.key[-4:]}"
    assert list(keys.store.documents) == [sha256_hex(created.key)]
    stored_text = repr(keys.store.documents)
    assert created.key not in stored_text
    logs = capsys.readouterr().out
    assert created.key not in logs and created.record.key_id in logs


def test_live_keys_are_for_production(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "production"})
    assert created.key.startswith("mpg_live_")
    assert keys.service.authenticate(created.key).environment == "production"


def test_a_key_cannot_mint_list_or_revoke_keys(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    as_key = keys.service.authenticate(created.key)
    for attempt in (
        lambda: keys.service.create(as_key, {"name": "more", "environment": "production"}),
        lambda: keys.service.list(as_key),
        lambda: keys.service.revoke(as_key, created.record.key_id),
    ):
        with pytest.raises(errors.PermissionDenied) as caught:
            attempt()
        assert caught.value.code == "api_key_not_allowed"
    assert len(keys.store.documents) == 1


def test_list_newest_first_and_only_ones_own(keys: Keys) -> None:
    first = keys.service.create(ALICE, {"name": "one", "environment": "sandbox"})
    keys.clock.advance(1)
    second = keys.service.create(ALICE, {"name": "two", "environment": "production"})
    keys.service.create(BOB, {"name": "bob's", "environment": "sandbox"})
    listed = keys.service.list(ALICE)
    assert [record.key_id for record in listed] == [second.record.key_id, first.record.key_id]


def test_the_number_of_active_keys_is_limited(keys: Keys) -> None:
    limited = make(max_api_keys_per_developer=2)
    one = limited.service.create(ALICE, {"name": "1", "environment": "sandbox"})
    limited.service.create(ALICE, {"name": "2", "environment": "sandbox"})
    with pytest.raises(errors.Unprocessable) as caught:
        limited.service.create(ALICE, {"name": "3", "environment": "sandbox"})
    assert caught.value.code == "too_many_api_keys"
    limited.service.revoke(ALICE, one.record.key_id)
    limited.service.create(ALICE, {"name": "3", "environment": "sandbox"})
    assert limited.store.counts["alice"][0] == 2


def test_a_create_reads_the_count_and_never_lists_the_keys(keys: Keys) -> None:
    for n in range(5):
        keys.service.create(ALICE, {"name": str(n), "environment": "sandbox"})
    assert keys.store.reads["list_for"] == 1  # the first create only: no count stored yet for a new developer
    assert keys.store.reads["load_active_count"] == 5
    created = keys.service.create(ALICE, {"name": "x", "environment": "sandbox"})
    keys.service.revoke(ALICE, created.record.key_id)  # finds the key by id, not by listing
    assert keys.store.reads["list_for"] == 1
    assert keys.store.counts["alice"][0] == 5


def test_keys_made_before_the_count_existed_are_counted_from_their_records(keys: Keys) -> None:
    limited = make(max_api_keys_per_developer=3)
    made = [limited.service.create(ALICE, {"name": str(n), "environment": "sandbox"}) for n in range(3)]
    limited.service.revoke(ALICE, made[0].record.key_id)
    limited.store.counts.clear()  # as the code before the count left them: records only
    limited.service.create(ALICE, {"name": "fills the place", "environment": "sandbox"})
    with pytest.raises(errors.Unprocessable):
        limited.service.create(ALICE, {"name": "one too many", "environment": "sandbox"})
    assert limited.store.counts["alice"][0] == 3


def test_revoking_twice_or_first_after_the_old_code_moves_the_count_once(keys: Keys) -> None:
    made = [keys.service.create(ALICE, {"name": str(n), "environment": "sandbox"}) for n in range(3)]
    keys.store.counts.clear()  # as the code before the count left them: records only
    keys.service.revoke(ALICE, made[0].record.key_id)  # the first change counts the records: 3 active, then 2
    assert keys.store.counts["alice"][0] == 2
    keys.service.revoke(ALICE, made[0].record.key_id)  # already revoked: answers the same, the count stays
    assert keys.store.counts["alice"][0] == 2
    keys.service.revoke(ALICE, made[1].record.key_id)
    assert keys.store.counts["alice"][0] == 1


def test_a_create_that_keeps_losing_its_commit_reads_again_then_gives_up_with_503() -> None:
    class AlwaysRaced(MemoryApiKeyStore):
        def create(self, key_sha256: str, record: Any, active: Any) -> bool:
            self.counts[active.uid] = (0, -len(self.counts))  # someone else moved the count on meanwhile
            return False

    store, slept = AlwaysRaced(), []
    service = ApiKeys(Settings(project_id="unit"), store, FakeClock(), Ticker(), sleep=slept.append)
    with pytest.raises(errors.ServiceUnavailable) as caught:
        service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    assert caught.value.code == "api_keys_busy"
    assert store.reads["load_active_count"] == len(slept) == 30 and max(slept) <= 0.2
    assert store.documents == {}


def test_a_revocation_that_loses_to_a_create_reads_the_count_again(keys: Keys) -> None:
    class CreateLandsFirst(MemoryApiKeyStore):
        raced = False

        def save(self, stored: Any, record: Any, active: Any = None) -> bool:
            if active is not None and not self.raced:
                self.raced = True
                other = ApiKeys(Settings(project_id="unit"), self, keys.clock, keys.ticker)
                other.create(ALICE, {"name": "new", "environment": "sandbox"})
            return super().save(stored, record, active)

    store = CreateLandsFirst()
    service = ApiKeys(Settings(project_id="unit"), store, keys.clock, keys.ticker, sleep=lambda _: None)
    created = service.create(ALICE, {"name": "old", "environment": "sandbox"})
    service.revoke(ALICE, created.record.key_id)
    assert store.raced
    active = [record for record, _ in store.documents.values() if not record.revoked]
    assert len(active) == 1 and store.counts["alice"][0] == 1


def test_the_list_shows_revoked_keys_for_30_days(keys: Keys) -> None:
    old = keys.service.create(ALICE, {"name": "old", "environment": "sandbox"})
    kept = keys.service.create(ALICE, {"name": "kept", "environment": "sandbox"})
    revoked = keys.service.revoke(ALICE, old.record.key_id)
    assert revoked.expires_at == revoked.revoked_at + timedelta(days=30)
    assert kept.record.expires_at is None
    keys.clock.advance(30 * 86400 - 1)
    assert {record.key_id for record in keys.service.list(ALICE)} == {old.record.key_id, kept.record.key_id}
    keys.clock.advance(1)
    assert [record.key_id for record in keys.service.list(ALICE)] == [kept.record.key_id]


def test_another_developers_key_id_is_not_found(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    for key_id in (created.record.key_id, "key_" + "x" * 24, "nonsense", "../x"):
        with pytest.raises(errors.NotFound):
            keys.service.revoke(BOB, key_id)
        with pytest.raises(errors.NotFound):
            keys.service.get(BOB, key_id)
    assert keys.service.authenticate(created.key).uid == "alice"


def test_authentication_resolves_the_same_developer(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    developer = keys.service.authenticate(created.key)
    assert developer == Developer("alice", "alice@example.com", "sandbox", created.record.key_id)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("a" if key[-1] != "a" else "b"),
        lambda key: key[:-1],
        lambda key: key + "x",
        lambda key: "mpg_" + "z" * 10,
    ],
)
def test_a_wrong_checksum_is_refused_without_any_read(keys: Keys, mangle: object) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    reads_before = sum(keys.store.reads.values())
    with pytest.raises(errors.AuthenticationError) as caught:
        keys.service.authenticate(mangle(created.key))  # type: ignore[operator]
    assert caught.value.code == "invalid_api_key"
    assert sum(keys.store.reads.values()) == reads_before


def test_an_unknown_well_formed_key_is_invalid_after_one_read(keys: Keys) -> None:
    other = make()
    stranger = other.service.create(ALICE, {"name": "elsewhere", "environment": "sandbox"}).key
    with pytest.raises(errors.AuthenticationError) as caught:
        keys.service.authenticate(stranger)
    assert caught.value.code == "invalid_api_key"
    assert keys.store.reads["find"] == 1


def test_a_revoked_key_is_refused_at_once_on_the_revoking_instance(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    keys.service.authenticate(created.key)
    revoked = keys.service.revoke(ALICE, created.record.key_id)
    assert revoked.revoked_at == keys.clock.now
    with pytest.raises(errors.AuthenticationError) as caught:
        keys.service.authenticate(created.key)
    assert caught.value.code == "api_key_revoked"
    # Revoking again answers the same record.
    keys.clock.advance(10)
    assert keys.service.revoke(ALICE, created.record.key_id).revoked_at == revoked.revoked_at


def test_another_instance_refuses_a_revoked_key_once_its_cache_expires(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    ttl = Settings(project_id="unit").api_key_cache_ttl_s
    assert ttl <= 5
    warm = ApiKeys(Settings(project_id="unit"), keys.store, keys.clock, keys.ticker)
    warm.authenticate(created.key)
    keys.service.revoke(ALICE, created.record.key_id)
    warm.authenticate(created.key)  # still cached: this is the window the TTL bounds
    keys.ticker.now += ttl
    with pytest.raises(errors.AuthenticationError) as caught:
        warm.authenticate(created.key)
    assert caught.value.code == "api_key_revoked"


def test_the_cache_saves_reads_within_its_ttl(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    for _ in range(5):
        keys.service.authenticate(created.key)
    assert keys.store.reads["find"] == 1
    keys.ticker.now += 4.0
    keys.service.authenticate(created.key)
    assert keys.store.reads["find"] == 2


def test_last_used_at_is_written_at_most_once_a_minute(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    sha = sha256_hex(created.key)
    first_version = keys.store.documents[sha][1]
    keys.service.authenticate(created.key)
    used_at = keys.store.documents[sha][0].last_used_at
    assert used_at == keys.clock.now
    writes_after_first = keys.store.documents[sha][1]
    assert writes_after_first != first_version
    for _ in range(10):  # 59 s of calls, cache expiring every few seconds: no further write
        keys.clock.advance(5.9)
        keys.ticker.now += 5.9
        keys.service.authenticate(created.key)
    assert keys.store.documents[sha][1] == writes_after_first
    keys.clock.advance(1.1)
    keys.ticker.now += 5
    keys.service.authenticate(created.key)
    assert keys.store.documents[sha][0].last_used_at == keys.clock.now


def test_two_instances_mark_use_once_between_them(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    sha = sha256_hex(created.key)
    other = ApiKeys(Settings(project_id="unit"), keys.store, keys.clock, keys.ticker)
    stale = keys.store.find(sha)
    keys.service.authenticate(created.key)
    version_after = keys.store.documents[sha][1]
    # The other instance read the same version before the first mark landed; its mark loses the precondition.
    assert not keys.store.save(stale, stale.record.used(keys.clock.now))
    other.authenticate(created.key)  # reads the marked version: not due
    assert keys.store.documents[sha][1] == version_after


def test_of_two_instances_that_read_the_same_version_only_one_writes_the_mark(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    sha = sha256_hex(created.key)
    read_before_the_mark = keys.store.find(sha)

    class ReadBeforeTheOtherMarked(MemoryApiKeyStore):
        first_read = True

        def find(self, key_sha256: str) -> Any:
            if self.first_read:
                self.first_read = False
                return read_before_the_mark
            return keys.store.find(key_sha256)

        def save(self, stored: Any, record: Any) -> bool:
            return keys.store.save(stored, record)

    keys.service.authenticate(created.key)  # this instance's mark lands first
    marked = keys.store.documents[sha]
    other = ApiKeys(Settings(project_id="unit"), ReadBeforeTheOtherMarked(), keys.clock, keys.ticker)
    other.authenticate(created.key)  # due, by what it read; its write must lose the precondition
    assert keys.store.documents[sha] == marked


def test_a_use_mark_never_undoes_a_revocation(keys: Keys) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    sha = sha256_hex(created.key)
    loaded = keys.store.find(sha)
    keys.service.revoke(ALICE, created.record.key_id)
    assert not keys.store.save(loaded, loaded.record.used(keys.clock.now))
    assert keys.store.documents[sha][0].revoked


def test_an_instance_whose_read_raced_a_revocation_does_not_undo_it_with_its_use_mark(keys: Keys) -> None:
    """The same rule through the use case: another instance reads the key, the revocation lands, and only then does
    that instance write its last_used_at mark (from the version it read)."""
    created = keys.service.create(ALICE, {"name": "shop", "environment": "sandbox"})
    sha = sha256_hex(created.key)

    class RevokedRightAfterTheRead(MemoryApiKeyStore):
        def find(self, key_sha256: str) -> Any:
            found = keys.store.find(key_sha256)
            keys.service.revoke(ALICE, created.record.key_id)
            return found

        def save(self, stored: Any, record: Any) -> bool:
            return keys.store.save(stored, record)

    racing = ApiKeys(Settings(project_id="unit"), RevokedRightAfterTheRead(), keys.clock, keys.ticker)
    racing.authenticate(created.key)  # accepted: it read the key before the revocation (the TTL-bounded window)
    stored = keys.store.documents[sha][0]
    assert stored.revoked
    assert stored.last_used_at is None
    with pytest.raises(errors.AuthenticationError) as caught:
        keys.service.authenticate(created.key)
    assert caught.value.code == "api_key_revoked"


# ---------------------------------------------------------------------------------------------- Authorization dispatch
class NoFirebase:
    def __call__(self) -> object:
        raise AssertionError("an API key must never reach Firebase token verification")


def test_bearer_mpg_goes_to_the_key_path_and_never_to_firebase(keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    created = keys.service.create(ALICE, {"name": "shop", "environment": "production"})
    authenticate = FirebaseAuthenticator(
        Settings(project_id="unit"), app_factory=NoFirebase(), api_keys=keys.service.authenticate
    )
    assert authenticate(f"Bearer {created.key}").environment == "production"
    assert authenticate(f"bearer   {created.key}  ").uid == "alice"
    for header in (f"Bearer {created.key[:-1]}", f"Bearer {created.key} extra", "Bearer mpg_", "Bearer mpg_test_x.y.z"):
        with pytest.raises(errors.AuthenticationError) as caught:
            authenticate(header)
        assert caught.value.code == "invalid_api_key", header
    keys.service.revoke(ALICE, created.record.key_id)
    with pytest.raises(errors.AuthenticationError) as caught:
        authenticate(f"Bearer {created.key}")
    assert caught.value.code == "api_key_revoked"
    logs = capsys.readouterr().out
    assert created.key not in logs
    rejected = [
        json.loads(line) for line in logs.splitlines() if '"api_key_revoked"' in line and "auth_rejected" in line
    ]
    assert rejected and rejected[-1]["api_key_id"] == created.record.key_id


def test_without_a_key_resolver_keys_are_refused() -> None:
    authenticate = FirebaseAuthenticator(Settings(project_id="unit"), app_factory=NoFirebase())
    with pytest.raises(errors.AuthenticationError) as caught:
        authenticate("Bearer mpg_test_whatever")
    assert caught.value.code == "invalid_api_key"


# ---------------------------------------------------------------------------------------------- settings and paths
def test_the_cache_ttl_is_settable_up_to_5_seconds() -> None:
    from gateway.settings import SettingsError

    env = {"GCLOUD_PROJECT": "unit"}
    assert Settings.from_env(env).api_key_cache_ttl_s == 4.0
    assert Settings.from_env({**env, "API_KEY_CACHE_TTL_SECONDS": "1.5"}).api_key_cache_ttl_s == 1.5
    with pytest.raises(SettingsError, match="API_KEY_CACHE_TTL_SECONDS"):
        Settings.from_env({**env, "API_KEY_CACHE_TTL_SECONDS": "5.1"})
    assert Settings.from_env({**env, "MAX_API_KEYS_PER_DEVELOPER": "3"}).max_api_keys_per_developer == 3


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/demo-mpesa-gateway/us-central1/api_keys/key_abc", "key_abc"),  # the emulator
        ("/demo-mpesa-gateway/us-central1/api_keys", None),
        ("/demo-mpesa-gateway/us-central1/api_keys/", None),
        ("/key_abc", "key_abc"),  # deployed: the function sees only what follows its name
        ("/", None),
        ("", None),
        ("/api_keys/key_abc", "key_abc"),  # behind a Hosting rewrite
    ],
)
def test_the_key_id_comes_from_the_path(path: str, expected: str | None) -> None:
    from gateway.api import path_id

    assert path_id(path, "api_keys") == expected


def test_a_deeper_path_names_nothing() -> None:
    from gateway.api import path_id

    with pytest.raises(errors.NotFound):
        path_id("/x/us-central1/api_keys/key_abc/more", "api_keys")


def test_every_log_line_of_a_request_made_with_a_key_names_the_key_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import flask

    from gateway import http
    from gateway.http import ApiResponse, Call, serve
    from gateway.logs import Event, log_event

    monkeypatch.setattr(http, "get_settings", lambda: Settings(project_id="unit"))
    app = flask.Flask(__name__)

    def handler(call: Call) -> ApiResponse:
        log_event(Event.STK_PUSH_SENT, uid=call.developer.uid)
        return ApiResponse(200, {})

    callers = [
        Developer("alice", None, "sandbox", "key_" + "A" * 24),
        Developer("alice", None),  # an ID token: the next request must not inherit the key id
    ]
    for developer in callers:
        with app.test_request_context("/fn", method="GET"):
            serve(flask.request, methods=("GET",), handler=handler, max_body_bytes=64, authenticate=lambda _: developer)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "stk_push_sent" in line]
    assert [line.get("api_key_id") for line in lines] == ["key_" + "A" * 24, None]
