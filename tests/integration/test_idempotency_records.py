"""Idempotency records through the real PaymentRepository against the Firestore emulator: claim, replay,
conflict, in-progress, and the 24 h expiry that the `expires_at` TTL field declared in firestore.indexes.json
enforces (the repository also treats an expired record as absent, because TTL deletion is not immediate)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import errors
from gateway.repository import PaymentRepository, utcnow
from gateway.settings import Settings
from tests import support


@pytest.fixture
def repository() -> PaymentRepository:
    support.firestore_client()  # points FIRESTORE_EMULATOR_HOST at the stack's emulator
    return PaymentRepository(Settings(project_id=support.PROJECT_ID))


def fresh_key() -> tuple[str, str]:
    return "it-" + secrets.token_hex(8), secrets.token_hex(32)


def test_claim_then_replay_the_stored_answer(repository: PaymentRepository) -> None:
    uid, key = fresh_key()
    assert repository.claim_idempotency_key(uid, key, "fingerprint-a", wait_s=0).fresh
    repository.store_idempotent_answer(uid, key, 201, {"id": "pay_x"})

    replay = repository.claim_idempotency_key(uid, key, "fingerprint-a", wait_s=0)
    assert (replay.fresh, replay.replay_status, replay.replay_body) == (False, 201, {"id": "pay_x"})


def test_another_body_with_the_same_key_conflicts(repository: PaymentRepository) -> None:
    uid, key = fresh_key()
    repository.claim_idempotency_key(uid, key, "fingerprint-a", wait_s=0)
    with pytest.raises(errors.IdempotencyConflict) as conflict:
        repository.claim_idempotency_key(uid, key, "fingerprint-b", wait_s=0)
    assert conflict.value.code == "idempotency_conflict"


def test_a_key_still_in_progress_is_reported_after_the_wait(repository: PaymentRepository) -> None:
    uid, key = fresh_key()
    repository.claim_idempotency_key(uid, key, "fingerprint-a", wait_s=0)
    with pytest.raises(errors.IdempotencyConflict) as busy:
        repository.claim_idempotency_key(uid, key, "fingerprint-a", wait_s=0.3)
    assert busy.value.code == "idempotency_in_progress"


def test_records_expire_after_24_hours(repository: PaymentRepository) -> None:
    uid, key = fresh_key()
    before = utcnow()
    repository.claim_idempotency_key(uid, key, "fingerprint-a", wait_s=0)
    repository.store_idempotent_answer(uid, key, 201, {"id": "pay_old"})
    ref = repository.client.collection("developers").document(uid).collection("idempotency_keys").document(key)
    expires_at = ref.get().to_dict()["expires_at"]
    assert timedelta(hours=23, minutes=59) < expires_at - before < timedelta(hours=24, minutes=1)

    # A day later the record is expired; even before Firestore's TTL sweep deletes it, the key is usable again,
    # with any body.
    ref.update({"expires_at": utcnow() - timedelta(seconds=1)})
    assert repository.claim_idempotency_key(uid, key, "fingerprint-b", wait_s=0).fresh


def test_the_ttl_policy_is_declared_on_expires_at() -> None:
    indexes = json.loads(Path("firestore.indexes.json").read_text())
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in indexes["fieldOverrides"]}
    assert overrides[("idempotency_keys", "expires_at")]["ttl"] is True
