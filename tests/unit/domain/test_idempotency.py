"""Idempotency records: the claim, its answer, and what a stored claim means for a request with the same key."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.idempotency import IdempotencyRecord, Verdict

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
LEASE_S = 30.0
TTL_S = 24 * 3600.0
FINGERPRINT = "f" * 64
OTHER_FINGERPRINT = "0" * 64


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def claimed() -> IdempotencyRecord:
    return IdempotencyRecord.claim(FINGERPRINT, "pay_123", NOW, LEASE_S, TTL_S)


def answered(status: int = 201) -> IdempotencyRecord:
    return claimed().answered(status)


def test_verdict_values() -> None:
    assert {verdict.value for verdict in Verdict} == {
        "expired",
        "conflict",
        "in_progress",
        "lease_expired",
        "replay",
    }
    assert Verdict("replay") is Verdict.REPLAY


def test_claim() -> None:
    assert claimed() == IdempotencyRecord(
        fingerprint=FINGERPRINT,
        payment_id="pay_123",
        state="in_progress",
        created_at=NOW,
        expires_at=at(TTL_S),
        lease_expires_at=at(LEASE_S),
        status=None,
    )


@pytest.mark.parametrize(("lease_s", "ttl_s"), [(0.0, 1.0), (1.5, 60.0), (30.0, 86_400.0)])
def test_claim_counts_lease_and_life_from_now(lease_s: float, ttl_s: float) -> None:
    record = IdempotencyRecord.claim(FINGERPRINT, "p", at(100), lease_s, ttl_s)
    assert record.created_at == at(100)
    assert record.lease_expires_at == at(100 + lease_s)
    assert record.expires_at == at(100 + ttl_s)


@pytest.mark.parametrize("status", [201, 202])
def test_answered_records_the_status_and_keeps_the_rest(status: int) -> None:
    before = claimed()
    after = before.answered(status)
    assert after == dataclasses.replace(before, state="done", status=status)
    assert after is not before
    assert before == claimed()
    assert (before.state, before.status) == ("in_progress", None)


def test_answered_twice_keeps_the_latest_status() -> None:
    assert answered(202).answered(201).status == 201


VERDICTS = [
    # In progress: the first request still holds its lease.
    pytest.param(claimed(), FINGERPRINT, NOW, Verdict.IN_PROGRESS, id="in-progress-at-claim"),
    pytest.param(claimed(), FINGERPRINT, at(LEASE_S - 0.001), Verdict.IN_PROGRESS, id="in-progress-before-lease-end"),
    pytest.param(claimed(), FINGERPRINT, at(LEASE_S), Verdict.LEASE_EXPIRED, id="lease-expired-at-lease-end"),
    pytest.param(claimed(), FINGERPRINT, at(3600), Verdict.LEASE_EXPIRED, id="lease-expired-later"),
    pytest.param(claimed(), FINGERPRINT, at(TTL_S - 0.001), Verdict.LEASE_EXPIRED, id="lease-expired-just-alive"),
    # Answered: the same payment again, whether or not the lease has run out.
    pytest.param(answered(), FINGERPRINT, at(1), Verdict.REPLAY, id="replay-within-lease"),
    pytest.param(answered(202), FINGERPRINT, at(3600), Verdict.REPLAY, id="replay-after-lease"),
    pytest.param(answered(), FINGERPRINT, at(TTL_S - 0.001), Verdict.REPLAY, id="replay-just-alive"),
    # Another body under the same key: a conflict, whatever the state.
    pytest.param(claimed(), OTHER_FINGERPRINT, at(1), Verdict.CONFLICT, id="conflict-in-progress"),
    pytest.param(claimed(), OTHER_FINGERPRINT, at(3600), Verdict.CONFLICT, id="conflict-lease-expired"),
    pytest.param(answered(), OTHER_FINGERPRINT, at(1), Verdict.CONFLICT, id="conflict-answered"),
    pytest.param(claimed(), FINGERPRINT.upper(), at(1), Verdict.CONFLICT, id="conflict-case-matters"),
    pytest.param(claimed(), "", at(1), Verdict.CONFLICT, id="conflict-empty"),
    # Expired beats everything: the record is as good as absent.
    pytest.param(claimed(), FINGERPRINT, at(TTL_S), Verdict.EXPIRED, id="expired-in-progress-at-ttl"),
    pytest.param(answered(), FINGERPRINT, at(TTL_S), Verdict.EXPIRED, id="expired-answered-at-ttl"),
    pytest.param(answered(), FINGERPRINT, at(TTL_S * 3), Verdict.EXPIRED, id="expired-answered-later"),
    pytest.param(answered(), OTHER_FINGERPRINT, at(TTL_S), Verdict.EXPIRED, id="expired-beats-conflict"),
    pytest.param(
        IdempotencyRecord.claim(FINGERPRINT, "p", NOW, lease_s=600, ttl_s=60),
        FINGERPRINT,
        at(60),
        Verdict.EXPIRED,
        id="expired-beats-a-lease-still-held",
    ),
]


@pytest.mark.parametrize(("record", "fingerprint", "now", "verdict"), VERDICTS)
def test_verdict(record: IdempotencyRecord, fingerprint: str, now: datetime, verdict: Verdict) -> None:
    snapshot = copy.deepcopy(record)
    assert record.verdict(fingerprint, now) is verdict
    assert record == snapshot


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        (NOW, 5),  # 30 s left: capped at 5
        (at(LEASE_S - 10), 5),
        (at(LEASE_S - 5), 5),
        (at(LEASE_S - 4.5), 4),
        (at(LEASE_S - 3.6), 3),  # whole seconds, rounded down
        (at(LEASE_S - 3), 3),
        (at(LEASE_S - 2), 2),
        (at(LEASE_S - 1), 1),
        (at(LEASE_S - 0.5), 1),  # never less than 1
        (at(LEASE_S), 1),
        (at(LEASE_S + 60), 1),  # the lease is over
    ],
)
def test_retry_after_s(now: datetime, seconds: int) -> None:
    retry = claimed().retry_after_s(now)
    assert retry == seconds
    assert isinstance(retry, int)


@pytest.mark.parametrize("offset", [-1000.0, -1.0, 0.0, 0.25, 1.0, 2.7, 5.0, 5.1, 29.0, 1e6])
def test_retry_after_s_is_always_between_1_and_5(offset: float) -> None:
    retry = claimed().retry_after_s(at(LEASE_S - offset))
    assert 1 <= retry <= 5


def test_record_is_frozen() -> None:
    record = claimed()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.state = "done"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = 201  # type: ignore[misc]
