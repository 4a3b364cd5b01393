"""One contract for the ApiKeyStore port, run against the unit tests' MemoryApiKeyStore and against
FirestoreApiKeyStore on the emulator, so the fake the API key use case is tested with cannot drift from Firestore.

What the contract says: a record round-trips unchanged under its key's SHA-256; an unknown hash finds nothing;
listing is by owner only; a save carries the version the record was read at and is refused (False, nothing
written) when anyone wrote since, which is what keeps `last_used_at` to one write per interval across instances
and keeps a use mark from undoing a revocation. A create or a revocation commits the owner's count of active keys
with it, under the version the count was read at (or only if no count exists yet): a stale count refuses the
whole commit, so two racing creates cannot both take the last place.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.api_key_store import ActiveKeyCount, ApiKeyStore, FirestoreApiKeyStore
from gateway.domain.api_key import ApiKeyRecord
from gateway.settings import Settings
from tests import support
from tests.unit.fakes import MemoryApiKeyStore

# Whole milliseconds: what both stores keep exactly.
T0 = datetime(2026, 12, 1, 9, 30, 0, 123000, tzinfo=UTC)


@pytest.fixture(params=["fake", "firestore"])
def store(request: pytest.FixtureRequest) -> Iterator[ApiKeyStore]:
    if request.param == "fake":
        yield MemoryApiKeyStore()
    else:
        yield FirestoreApiKeyStore(Settings(project_id=support.PROJECT_ID))


def new_record(uid: str, **changes: object) -> tuple[str, ApiKeyRecord]:
    fields: dict[str, object] = {
        "key_id": "key_" + secrets.token_hex(12),
        "uid": uid,
        "email": "dev@example.com",
        "name": "shop server",
        "environment": "sandbox",
        "hint": "mpg_test_...Ab3x",
        "created_at": T0,
        **changes,
    }
    return hashlib.sha256(secrets.token_bytes(16)).hexdigest(), ApiKeyRecord(**fields)  # type: ignore[arg-type]


def owner() -> str:
    return "contract-" + secrets.token_hex(6)


def add(store: ApiKeyStore, sha: str, record: ApiKeyRecord) -> None:
    """Create a record with its owner's count moved on by one, as the use case does."""
    counted = store.load_active_count(record.uid) or ActiveKeyCount(record.uid, 0)
    assert store.create(sha, record, ActiveKeyCount(record.uid, counted.count + 1, counted.version)) is True


def test_a_record_round_trips_under_its_hash(store: ApiKeyStore) -> None:
    sha, record = new_record(owner(), email=None, environment="production", last_used_at=T0 + timedelta(seconds=5))
    add(store, sha, record)
    found = store.find(sha)
    assert found is not None
    assert (found.key_sha256, found.record) == (sha, record)
    assert store.find(hashlib.sha256(b"never made").hexdigest()) is None


def test_listing_is_by_owner_only(store: ApiKeyStore) -> None:
    alice, bob = owner(), owner()
    made = [new_record(alice), new_record(alice), new_record(bob)]
    for sha, record in made:
        add(store, sha, record)
    assert {stored.key_sha256 for stored in store.list_for(alice)} == {made[0][0], made[1][0]}
    assert [stored.record for stored in store.list_for(bob)] == [made[2][1]]
    assert store.list_for(owner()) == []


def test_a_save_needs_the_version_it_was_read_at(store: ApiKeyStore) -> None:
    sha, record = new_record(owner())
    add(store, sha, record)
    first = store.find(sha)
    second = store.find(sha)  # another instance read the same version
    assert first is not None and second is not None

    used = record.used(T0 + timedelta(minutes=1))
    assert store.save(first, used) is True
    revoked = record.revoke(T0 + timedelta(minutes=2))
    assert store.save(second, revoked) is False  # stale: the use mark landed since
    current = store.find(sha)
    assert current is not None and current.record == used

    assert store.save(current, used.revoke(T0 + timedelta(minutes=2))) is True
    after = store.find(sha)
    assert after is not None and after.record.revoked
    assert store.save(current, used) is False  # a late use mark cannot undo the revocation
    final = store.find(sha)
    assert final is not None and final.record.revoked


def test_a_record_is_found_by_its_id_only_by_its_owner(store: ApiKeyStore) -> None:
    alice, bob = owner(), owner()
    sha, record = new_record(alice)
    add(store, sha, record)
    add(store, *new_record(alice))
    found = store.find_by_id(alice, record.key_id)
    assert found is not None and (found.key_sha256, found.record) == (sha, record)
    assert store.find_by_id(bob, record.key_id) is None
    assert store.find_by_id(alice, "key_" + "0" * 24) is None


def test_a_create_needs_the_count_at_the_version_it_was_read_at(store: ApiKeyStore) -> None:
    uid = owner()
    assert store.load_active_count(uid) is None
    first_sha, first = new_record(uid)
    assert store.create(first_sha, first, ActiveKeyCount(uid, 1)) is True  # creates the count
    counted = store.load_active_count(uid)
    assert counted is not None and counted.count == 1

    # A second create that also saw no count loses, and writes neither its record nor a count.
    sha, record = new_record(uid)
    assert store.create(sha, record, ActiveKeyCount(uid, 1)) is False
    assert store.find(sha) is None
    second_sha, second = new_record(uid)
    assert store.create(second_sha, second, ActiveKeyCount(uid, 2, counted.version)) is True
    sha, record = new_record(uid)
    assert store.create(sha, record, ActiveKeyCount(uid, 2, counted.version)) is False  # the count moved on
    assert store.find(sha) is None
    after = store.load_active_count(uid)
    assert after is not None and after.count == 2
    # A record under a hash that exists already is refused whole too (the count stays), never overwritten.
    assert store.create(first_sha, record, ActiveKeyCount(uid, 3, after.version)) is False
    unchanged = store.find(first_sha)
    assert unchanged is not None and unchanged.record == first
    assert store.load_active_count(uid) == after
    assert {stored.key_sha256 for stored in store.list_for(uid)} == {first_sha, second_sha}


def test_a_revocation_moves_the_count_in_the_same_commit_or_not_at_all(store: ApiKeyStore) -> None:
    uid = owner()
    sha, record = new_record(uid)
    add(store, sha, record)
    add(store, *new_record(uid))
    stored, counted = store.find(sha), store.load_active_count(uid)
    assert stored is not None and counted is not None and counted.count == 2
    revoked = record.revoke(T0 + timedelta(minutes=1))

    add(store, *new_record(uid))  # the count moved on since it was read: the revocation loses, whole
    assert store.save(stored, revoked, ActiveKeyCount(uid, 1, counted.version)) is False
    unchanged = store.find(sha)
    assert unchanged is not None and not unchanged.record.revoked

    current = store.load_active_count(uid)
    assert current is not None and current.count == 3
    assert store.save(unchanged, revoked, ActiveKeyCount(uid, 2, current.version)) is True
    final, count = store.find(sha), store.load_active_count(uid)
    assert final is not None and final.record.revoked and count is not None and count.count == 2
