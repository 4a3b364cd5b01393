"""gateway.domain.events: which events a payment's change means (the outbox rule), over every status pair."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from gateway.domain.errors import ValidationError
from gateway.domain.events import EVENT_TYPES, EventType, events_for, parse_event_types, subscribed
from gateway.domain.payment import (
    FLAG_AMOUNT_MISMATCH,
    FLAG_OUTCOME_UNKNOWN,
    FLAG_SETTLED_BY_QUERY,
    FLAG_SUCCESS_AFTER_TERMINAL,
    FLAGS_NEEDING_A_HUMAN,
    Payment,
    PaymentPolicy,
    PaymentStatus,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def intent() -> Payment:
    return Payment.initiate(
        payment_id="pay_1",
        msisdn="254712345678",
        amount=10,
        account_reference="INV-1",
        description="Order 1",
        metadata={},
        environment="sandbox",
        shortcode="174379",
        now=NOW,
        policy=PaymentPolicy(),
    )


def with_status(payment: Payment, status: PaymentStatus, *flags: str) -> Payment:
    return dataclasses.replace(payment, status=status, flags=tuple(sorted(set(payment.flags) | set(flags))))


def test_a_new_payment_is_created() -> None:
    assert events_for(None, intent()) == [EventType.PAYMENT_CREATED]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (PaymentStatus.SUCCEEDED, EventType.PAYMENT_SUCCEEDED),
        (PaymentStatus.FAILED, EventType.PAYMENT_FAILED),
        (PaymentStatus.CANCELLED, EventType.PAYMENT_CANCELLED),
        (PaymentStatus.TIMED_OUT, EventType.PAYMENT_TIMED_OUT),
        (PaymentStatus.UNCONFIRMED, EventType.PAYMENT_UNCONFIRMED),
    ],
)
def test_each_terminal_status_has_its_event(status: PaymentStatus, expected: EventType) -> None:
    pending = intent()
    assert events_for(pending, with_status(pending, status)) == [expected]


def test_every_status_pair_gives_one_event_exactly_when_the_status_changes() -> None:
    base = intent()
    for before_status in PaymentStatus:
        for after_status in PaymentStatus:
            before, after = with_status(base, before_status), with_status(base, after_status)
            found = events_for(before, after)
            if before_status is after_status or after_status is PaymentStatus.PENDING:
                assert found == [], (before_status, after_status)
            else:
                assert len(found) == 1 and found[0].value == f"payment.{after_status.value}"


def test_bookkeeping_changes_have_no_event() -> None:
    pending = intent()
    accepted = pending.accept("ws_CO_1", "m-1", NOW, PaymentPolicy())
    unknown = pending.mark_outcome_unknown(NOW, PaymentPolicy())
    assert events_for(pending, accepted) == []
    assert events_for(pending, unknown) == []
    assert FLAG_OUTCOME_UNKNOWN in unknown.flags
    assert events_for(pending, pending) == []


@pytest.mark.parametrize("flag", sorted(FLAGS_NEEDING_A_HUMAN))
def test_a_flag_for_a_human_is_flagged(flag: str) -> None:
    pending = intent()
    assert events_for(pending, with_status(pending, PaymentStatus.PENDING, flag)) == [EventType.PAYMENT_FLAGGED]
    # A flag that was already there is no news.
    flagged = with_status(pending, PaymentStatus.PENDING, flag)
    assert events_for(flagged, dataclasses.replace(flagged, updated_at=NOW)) == []


def test_descriptive_flags_are_not_flagged() -> None:
    pending = intent()
    settled = with_status(pending, PaymentStatus.SUCCEEDED, FLAG_SETTLED_BY_QUERY)
    assert events_for(pending, settled) == [EventType.PAYMENT_SUCCEEDED]


def test_late_money_for_an_unconfirmed_payment_succeeds_and_is_flagged_in_that_order() -> None:
    unconfirmed = with_status(intent(), PaymentStatus.UNCONFIRMED)
    late = with_status(unconfirmed, PaymentStatus.SUCCEEDED, FLAG_SUCCESS_AFTER_TERMINAL)
    assert events_for(unconfirmed, late) == [EventType.PAYMENT_SUCCEEDED, EventType.PAYMENT_FLAGGED]


def test_a_success_that_does_not_match_stays_pending_and_is_flagged() -> None:
    pending = intent()
    assert events_for(pending, with_status(pending, PaymentStatus.PENDING, FLAG_AMOUNT_MISMATCH)) == [
        EventType.PAYMENT_FLAGGED
    ]


def test_enabled_events_are_parsed_strictly() -> None:
    assert parse_event_types(["payment.succeeded", "payment.failed"], "enabled_events") == (
        "payment.failed",
        "payment.succeeded",
    )
    assert parse_event_types(["*", "payment.failed"], "enabled_events") == ("*",)
    for bad in ([], "payment.failed", ["payment.paid"], [1], None, ["*"] * 20):
        with pytest.raises(ValidationError):
            parse_event_types(bad, "enabled_events")
    assert subscribed(("*",), "payment.created")
    assert not subscribed(("payment.failed",), "payment.created")
    assert len(EVENT_TYPES) == 7
