"""One contract for the ApiKeyStore port, run against the unit tests' MemoryApiKeyStore and against
FirestoreApiKeyStore on the emulator, so the fake the API key use case is tested with cannot drift from Firestore.

What the contract says: a record round-trips unchanged under its key's SHA-256; an unknown hash finds nothing;
listing is by owner only; a save carries the version the record was read at and is refused (False, nothing
written) when anyone wrote since, which is what keeps `last_used_at` to one write per interval across instances
and keeps a use mark from undoing a revocation.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.api_key_store import ApiKeyStore, FirestoreApiKeyStore
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


def test_a_record_round_trips_under_its_hash(store: ApiKeyStore) -> None:
    sha, record = new_record(owner(), email=None, environment="production", last_used_at=T0 + timedelta(seconds=5))
    store.create(sha, record)
    found = store.find(sha)
    assert found is not None
    assert (found.key_sha256, found.record) == (sha, record)
    assert store.find(hashlib.sha256(b"never made").hexdigest()) is None


def test_listing_is_by_owner_only(store: ApiKeyStore) -> None:
    alice, bob = owner(), owner()
    made = [new_record(alice), new_record(alice), new_record(bob)]
    for sha, record in made:
        store.create(sha, record)
    assert {stored.key_sha256 for stored in store.list_for(alice)} == {made[0][0], made[1][0]}
    assert [stored.record for stored in store.list_for(bob)] == [made[2][1]]
    assert store.list_for(owner()) == []


def test_a_save_needs_the_version_it_was_read_at(store: ApiKeyStore) -> None:
    sha, record = new_record(owner())
    store.create(sha, record)
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
