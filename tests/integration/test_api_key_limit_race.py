"""The limit on active API keys holds when creates race, against the Firestore emulator: threads create keys for one
developer at the same moment, through the real use case (gateway.services.api_keys) and FirestoreApiKeyStore.

Before the count of active keys was committed with each key, a create listed the keys, counted them and then wrote
its own, so racing creates all saw room for one more. Now of two creates that read the same count, one loses its
commit and reads again. Also shown: revocations racing creates leave the stored count equal to the keys really
active; a developer whose keys predate the count is counted from the records once; a revoked key's record carries
the TTL field and leaves the list after 30 days. Every developer here is new; nothing is deleted.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway import errors
from gateway.api_key_store import API_KEYS, ActiveKeyCount, FirestoreApiKeyStore, record_to_document
from gateway.domain.api_key import REVOKED_KEYS_KEPT_FOR, ApiKeyRecord
from gateway.http import Developer
from gateway.repository import utcnow
from gateway.services.api_keys import ApiKeys
from gateway.settings import Settings
from tests import support

LIMIT = Settings(project_id=support.PROJECT_ID).max_api_keys_per_developer


class CountingStore(FirestoreApiKeyStore):
    """The real adapter, counting from outside how many creates lost their commit to another change."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.lost = 0
        self._lock = threading.Lock()

    def create(self, key_sha256: str, record: ApiKeyRecord, active: ActiveKeyCount) -> bool:
        won = super().create(key_sha256, record, active)
        if not won:
            with self._lock:
                self.lost += 1
        return won


@dataclass
class Race:
    outcomes: Counter[str] = field(default_factory=Counter)
    created: list[str] = field(default_factory=list)
    seconds: float = 0.0


def race(calls: list[Callable[[], Any]]) -> Race:
    """Run every call at once (a barrier releases the threads together); tally created keys and error codes."""
    result, lock, barrier = Race(), threading.Lock(), threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            made = call()
            outcome = "ok"
        except errors.GatewayError as refused:
            made, outcome = None, refused.code
        with lock:
            result.outcomes[outcome] += 1
            if made is not None and hasattr(made, "key"):
                result.created.append(made.record.key_id)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    result.seconds = time.perf_counter() - started
    return result


def developer() -> Developer:
    return Developer("race-" + secrets.token_hex(6), "race@example.com")


def service() -> tuple[ApiKeys, CountingStore]:
    settings = Settings(project_id=support.PROJECT_ID)
    store = CountingStore(settings)
    return ApiKeys(settings, store, utcnow), store


def active_in_firestore(store: FirestoreApiKeyStore, uid: str) -> int:
    return sum(1 for stored in store.list_for(uid) if not stored.record.revoked)


def create(keys: ApiKeys, dev: Developer, name: str) -> Callable[[], Any]:
    return lambda: keys.create(dev, {"name": name, "environment": "sandbox"})


def test_racing_creates_never_exceed_the_limit() -> None:
    keys, store = service()
    dev = developer()
    attempts = 2 * LIMIT
    result = race([create(keys, dev, f"racer {n}") for n in range(attempts)])

    print(
        f"\n{attempts} racing creates: {dict(result.outcomes)} in {result.seconds:.2f} s; "
        f"{store.lost} commits lost to another create and retried"
    )
    assert result.outcomes == Counter({"ok": LIMIT, "too_many_api_keys": attempts - LIMIT})
    assert active_in_firestore(store, dev.uid) == LIMIT
    counted = store.load_active_count(dev.uid)
    assert counted is not None and counted.count == LIMIT
    assert store.lost > 0, "the creates did not race: the test shows nothing"


def test_racing_revocations_and_creates_leave_the_count_true() -> None:
    keys, store = service()
    dev = developer()
    # Room for 5 more at the start, 10 freed while 20 creates race them: anywhere from 5 to 15 creates may win.
    made = [keys.create(dev, {"name": f"k{n}", "environment": "sandbox"}) for n in range(LIMIT - 5)]
    revokers = [lambda key_id=m.record.key_id: keys.revoke(dev, key_id) for m in made[:10]]
    creators = [create(keys, dev, f"new {n}") for n in range(LIMIT)]
    result = race(revokers + creators)

    active = active_in_firestore(store, dev.uid)
    counted = store.load_active_count(dev.uid)
    print(f"\n{len(revokers)} revocations racing {len(creators)} creates: {dict(result.outcomes)}; {active} active")
    assert counted is not None and counted.count == active <= LIMIT
    assert result.outcomes["ok"] == len(revokers) + len(result.created)
    assert active == LIMIT - 5 - len(revokers) + len(result.created)
    assert 5 <= len(result.created) <= 15


def test_racing_revocations_of_one_key_move_the_count_once() -> None:
    keys, store = service()
    dev = developer()
    made = [keys.create(dev, {"name": f"k{n}", "environment": "sandbox"}) for n in range(3)]
    key_id = made[0].record.key_id
    result = race([lambda: keys.revoke(dev, key_id) for _ in range(10)])

    assert result.outcomes == Counter({"ok": 10})
    counted = store.load_active_count(dev.uid)
    assert counted is not None and counted.count == 2 == active_in_firestore(store, dev.uid)


def test_keys_made_before_the_count_existed_are_counted_once_from_their_records() -> None:
    keys, store = service()
    dev = developer()
    client = store.client
    now = datetime.now(UTC)
    for n in range(LIMIT + 2):  # what the old code left: records, no count; the last two revoked
        record = ApiKeyRecord(
            key_id="key_" + secrets.token_hex(12),
            uid=dev.uid,
            email=dev.email,
            name=f"old {n}",
            environment="sandbox",
            hint="mpg_test_...old1",
            created_at=now,
            revoked_at=now if n >= LIMIT - 1 else None,
        )
        client.collection(API_KEYS).document(secrets.token_hex(32)).create(record_to_document(record))
    assert store.load_active_count(dev.uid) is None

    result = race([create(keys, dev, f"after {n}") for n in range(8)])  # LIMIT - 1 active: room for one
    assert result.outcomes == Counter({"ok": 1, "too_many_api_keys": 7})
    counted = store.load_active_count(dev.uid)
    assert counted is not None and counted.count == LIMIT == active_in_firestore(store, dev.uid)


def test_a_revoked_key_carries_the_ttl_field_and_leaves_the_list_after_30_days() -> None:
    keys, store = service()
    dev = developer()
    made = keys.create(dev, {"name": "to revoke", "environment": "sandbox"})
    kept = keys.create(dev, {"name": "kept", "environment": "production"})
    revoked = keys.revoke(dev, made.record.key_id)

    stored = store.find_by_id(dev.uid, made.record.key_id)
    assert stored is not None
    document = store.client.collection(API_KEYS).document(stored.key_sha256).get().to_dict()
    assert revoked.revoked_at is not None
    assert document["expires_at"] == revoked.revoked_at + REVOKED_KEYS_KEPT_FOR
    active = store.client.collection(API_KEYS).document(store.find_by_id(dev.uid, kept.record.key_id).key_sha256)
    assert active.get().to_dict()["expires_at"] is None  # an active key never expires

    assert {r.key_id for r in keys.list(dev)} == {made.record.key_id, kept.record.key_id}
    later = ApiKeys(Settings(project_id=support.PROJECT_ID), store, lambda: utcnow() + timedelta(days=30, seconds=1))
    assert [r.key_id for r in later.list(dev)] == [kept.record.key_id]

    # Firestore deletes the record through the TTL policy that firestore.indexes.json declares (the emulator has no
    # TTL sweep; firebase deploy creates the policy).
    indexes = json.loads((Path(__file__).resolve().parents[2] / "firestore.indexes.json").read_text())
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in indexes["fieldOverrides"]}
    assert overrides[(API_KEYS, "expires_at")]["ttl"] is True


def test_each_developer_has_its_own_count_under_its_own_document() -> None:
    keys, store = service()
    alice, bob = developer(), developer()
    for n in range(3):
        keys.create(alice, {"name": f"a{n}", "environment": "sandbox"})
    keys.create(bob, {"name": "b", "environment": "production"})
    for dev, expected in ((alice, 3), (bob, 1)):
        path = store.client.collection("developers").document(dev.uid).collection("counters").document(API_KEYS)
        assert path.get().to_dict()["active"] == expected
