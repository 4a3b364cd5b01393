"""The typed payment entity: every transition of ``Payment``, the query schedule, ``Settlement`` and ``Payer``.

Pure values, no I/O. The policy below gives every timing a different value, so a rule that reads the wrong one
fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.domain.payment import (
    FINAL_QUERY_RESULT_CODES,
    FLAG_AMOUNT_MISMATCH,
    FLAG_CHECKOUT_MISMATCH,
    FLAG_MISSING_AMOUNT,
    FLAG_MISSING_RECEIPT,
    FLAG_OUTCOME_UNKNOWN,
    FLAG_PHONE_MISMATCH,
    FLAG_SETTLED_BY_QUERY,
    FLAG_SUCCESS_AFTER_TERMINAL,
    FLAGS_NEEDING_A_HUMAN,
    Payer,
    Payment,
    PaymentOutcome,
    PaymentPolicy,
    PaymentStatus,
    PushState,
    ReportedOutcome,
    Settlement,
    SettlementDecision,
    is_final_query_code,
    is_legal_transition,
    status_for_result_code,
)
from gateway.domain.phone import mask_msisdn

PENDING = PaymentStatus.PENDING
SUCCEEDED = PaymentStatus.SUCCEEDED
FAILED = PaymentStatus.FAILED
CANCELLED = PaymentStatus.CANCELLED
TIMED_OUT = PaymentStatus.TIMED_OUT
UNCONFIRMED = PaymentStatus.UNCONFIRMED

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
AMOUNT = 150
MSISDN = "254708374149"
OTHER_MSISDN = "254712345678"
CHECKOUT = "ws_CO_010320241200001234"
OTHER_CHECKOUT = "ws_CO_010320241200009999"
MERCHANT = "29115-34620561-1"
RECEIPT = "NLJ7RT61SV"
INT64_MAX = 2**63 - 1

# Every timing distinct, so swapping two of them in the code fails a test.
POLICY = PaymentPolicy(
    push_lease_s=45.0,
    reconcile_after_s=100.0,
    query_interval_s=20.0,
    pending_query_after_s=50.0,
    unconfirmed_after_s=1800.0,
    max_backoff_s=1000.0,
)
LEASE_END = NOW + timedelta(seconds=45)
DEADLINE = NOW + timedelta(seconds=1800)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --- builders -------------------------------------------------------------------------------------------------------


def new_payment(**changes: Any) -> Payment:
    """A freshly initiated payment: pending, push sending, no CheckoutRequestID."""
    payment = Payment.initiate(
        payment_id="pay_123",
        msisdn=MSISDN,
        amount=AMOUNT,
        account_reference="INV-42",
        description="Order 42",
        metadata={"order": "42"},
        environment="sandbox",
        shortcode="174379",
        now=NOW,
        policy=POLICY,
    )
    return dataclasses.replace(payment, **changes)


def accepted_payment(**changes: Any) -> Payment:
    """Daraja accepted the push two seconds after the intent was stored."""
    return dataclasses.replace(new_payment().accept(CHECKOUT, MERCHANT, at(2), POLICY), **changes)


def unknown_payment() -> Payment:
    """The push's lease ran out without an answer."""
    return new_payment().mark_outcome_unknown(at(60), POLICY)


def unconfirmed_payment() -> Payment:
    """No answer and no callback by the deadline."""
    payment = new_payment().without_answer(DEADLINE, POLICY)
    assert payment is not None
    assert payment.status is UNCONFIRMED
    return payment


def settled_payment(status: PaymentStatus) -> Payment:
    """An accepted payment that a callback already settled with ``status``."""
    return accepted_payment(status=status, settled_at=at(10), settled_by="callback", next_check_at=None)


def success(**changes: Any) -> PaymentOutcome:
    outcome = PaymentOutcome(
        result_code="0",
        result_desc="The service request is processed successfully.",
        amount=AMOUNT,
        mpesa_receipt_number=RECEIPT,
        transaction_date="20240301120105",
        phone=MSISDN,
    )
    return dataclasses.replace(outcome, **changes)


def failure(code: str, desc: str = "Request cancelled by user") -> PaymentOutcome:
    return PaymentOutcome(result_code=code, result_desc=desc)


def query_answer(code: str) -> PaymentOutcome:
    """What an STK Push Query carries: a code and a description, nothing about amount, phone or receipt."""
    return PaymentOutcome(result_code=code, result_desc=f"query says {code}")


FAILURES = [
    ("1032", CANCELLED),
    ("1031", CANCELLED),
    ("1037", TIMED_OUT),
    ("1019", TIMED_OUT),
    ("1", FAILED),
    ("17", FAILED),
    ("2001", FAILED),
    ("9999", FAILED),
    ("SFC_IC0003", FAILED),
]

SUSPICIOUS_SUCCESSES = [
    (success(amount=AMOUNT - 1), (FLAG_AMOUNT_MISMATCH,)),
    (success(amount=AMOUNT + 1), (FLAG_AMOUNT_MISMATCH,)),
    (success(amount=2**64), (FLAG_AMOUNT_MISMATCH,)),
    (success(amount=None), (FLAG_MISSING_AMOUNT,)),
    (success(phone=OTHER_MSISDN), (FLAG_PHONE_MISMATCH,)),
    (success(mpesa_receipt_number=None), (FLAG_MISSING_RECEIPT,)),
    (success(amount=1, phone=OTHER_MSISDN), (FLAG_AMOUNT_MISMATCH, FLAG_PHONE_MISMATCH)),
]


# --- statuses, push states and the policy ---------------------------------------------------------------------------


def test_unconfirmed_is_terminal_and_may_only_become_succeeded() -> None:
    assert UNCONFIRMED.value == "unconfirmed"
    assert UNCONFIRMED.is_terminal
    assert [new for new in PaymentStatus if is_legal_transition(UNCONFIRMED, new)] == [SUCCEEDED]


def test_push_state_values() -> None:
    assert [state.value for state in PushState] == ["sending", "accepted", "refused", "unknown"]
    assert PushState("unknown") is PushState.UNKNOWN


def test_policy_defaults() -> None:
    assert PaymentPolicy() == PaymentPolicy(
        push_lease_s=60.0,
        reconcile_after_s=90.0,
        query_interval_s=30.0,
        pending_query_after_s=30.0,
        unconfirmed_after_s=3600.0,
        max_backoff_s=21600.0,
    )


# --- initiate -------------------------------------------------------------------------------------------------------


def test_initiate_stores_the_intent_before_daraja_is_called() -> None:
    payment = new_payment()
    assert payment == Payment(
        id="pay_123",
        status=PENDING,
        amount=AMOUNT,
        msisdn=MSISDN,
        phone=MSISDN[:4] + "******" + MSISDN[-2:],
        account_reference="INV-42",
        description="Order 42",
        metadata={"order": "42"},
        environment="sandbox",
        shortcode="174379",
        created_at=NOW,
        updated_at=NOW,
        push_state=PushState.SENDING,
        push_lease_until=LEASE_END,
        currency="KES",
        checkout_request_id=None,
        merchant_request_id=None,
        result_code=None,
        result_desc=None,
        mpesa_receipt_number=None,
        transaction_date=None,
        paid_phone=None,
        flags=(),
        reported_outcome=None,
        settled_at=None,
        settled_by=None,
        next_check_at=LEASE_END,
        query_attempts=0,
        last_queried_at=None,
    )


@pytest.mark.parametrize("lease_s", [0.0, 1.5, 60.0, 600.0])
def test_initiate_leases_the_push_and_first_checks_when_the_lease_ends(lease_s: float) -> None:
    payment = Payment.initiate(
        payment_id="p",
        msisdn=MSISDN,
        amount=1,
        account_reference="a",
        description="d",
        metadata={},
        environment="production",
        shortcode="600000",
        now=NOW,
        policy=PaymentPolicy(push_lease_s=lease_s),
    )
    assert payment.push_lease_until == at(lease_s)
    assert payment.next_check_at == at(lease_s)
    assert payment.environment == "production"
    assert payment.checkout_request_id is None


def test_initiate_copies_the_metadata() -> None:
    metadata = {"order": "42"}
    payment = Payment.initiate(
        payment_id="p",
        msisdn=MSISDN,
        amount=1,
        account_reference="a",
        description="d",
        metadata=metadata,
        environment="sandbox",
        shortcode="174379",
        now=NOW,
        policy=POLICY,
    )
    metadata["order"] = "changed"
    metadata["extra"] = "x"
    assert payment.metadata == {"order": "42"}


# --- accept ---------------------------------------------------------------------------------------------------------


def test_accept_records_the_ids_and_schedules_the_first_look() -> None:
    before = new_payment()
    payment = before.accept(CHECKOUT, MERCHANT, at(2), POLICY)
    assert payment == dataclasses.replace(
        before,
        push_state=PushState.ACCEPTED,
        push_lease_until=None,
        checkout_request_id=CHECKOUT,
        merchant_request_id=MERCHANT,
        next_check_at=at(2 + 100),
        updated_at=at(2),
    )
    assert payment.status is PENDING
    assert before.push_state is PushState.SENDING


def test_accept_after_the_lease_ran_out_clears_outcome_unknown_but_keeps_other_flags() -> None:
    before = dataclasses.replace(unknown_payment(), flags=(FLAG_AMOUNT_MISMATCH, FLAG_OUTCOME_UNKNOWN))
    payment = before.accept(CHECKOUT, MERCHANT, at(70), POLICY)
    assert payment.push_state is PushState.ACCEPTED
    assert payment.flags == (FLAG_AMOUNT_MISMATCH,)
    assert payment.next_check_at == at(170)
    assert payment.status is PENDING


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, UNCONFIRMED])
def test_accept_keeps_a_status_a_callback_already_settled(status: PaymentStatus) -> None:
    before = dataclasses.replace(
        new_payment(),
        status=status,
        checkout_request_id=CHECKOUT,
        result_code="0",
        settled_at=at(1),
        settled_by="callback",
        next_check_at=None,
    )
    payment = before.accept(CHECKOUT, MERCHANT, at(2), POLICY)
    assert payment.status is status
    assert payment.next_check_at is None
    assert (payment.settled_at, payment.settled_by, payment.result_code) == (at(1), "callback", "0")
    assert payment.push_state is PushState.ACCEPTED
    assert payment.checkout_request_id == CHECKOUT
    assert FLAG_CHECKOUT_MISMATCH not in payment.flags


def test_accept_with_the_same_id_the_callback_recorded_is_not_a_mismatch() -> None:
    before = new_payment(checkout_request_id=CHECKOUT)
    payment = before.accept(CHECKOUT, MERCHANT, at(2), POLICY)
    assert payment.checkout_request_id == CHECKOUT
    assert payment.flags == ()
    assert not payment.needs_a_human


def test_accept_keeps_a_different_id_the_callback_recorded_and_flags_it() -> None:
    before = new_payment(checkout_request_id=OTHER_CHECKOUT, flags=(FLAG_OUTCOME_UNKNOWN,))
    payment = before.accept(CHECKOUT, MERCHANT, at(2), POLICY)
    assert payment.checkout_request_id == OTHER_CHECKOUT
    assert payment.flags == (FLAG_CHECKOUT_MISMATCH,)
    assert payment.needs_a_human
    assert payment.push_state is PushState.ACCEPTED


@pytest.mark.parametrize(
    ("stored", "given", "expected"),
    [(None, MERCHANT, MERCHANT), (None, "", None), ("first", MERCHANT, "first"), ("first", "", "first")],
)
def test_accept_merchant_request_id(stored: str | None, given: str, expected: str | None) -> None:
    payment = new_payment(merchant_request_id=stored).accept(CHECKOUT, given, at(2), POLICY)
    assert payment.merchant_request_id == expected


def test_accept_flags_are_sorted_and_unique() -> None:
    before = new_payment(
        checkout_request_id=OTHER_CHECKOUT, flags=(FLAG_PHONE_MISMATCH, FLAG_CHECKOUT_MISMATCH, FLAG_AMOUNT_MISMATCH)
    )
    payment = before.accept(CHECKOUT, MERCHANT, at(2), POLICY)
    assert payment.flags == (FLAG_AMOUNT_MISMATCH, FLAG_CHECKOUT_MISMATCH, FLAG_PHONE_MISMATCH)


# --- refuse ---------------------------------------------------------------------------------------------------------


def test_refuse_fails_a_sending_pending_payment() -> None:
    before = new_payment()
    payment = before.refuse("400.002.02", "Bad Request - Invalid PhoneNumber", at(1))
    assert payment == dataclasses.replace(
        before,
        status=FAILED,
        push_state=PushState.REFUSED,
        push_lease_until=None,
        result_code="400.002.02",
        result_desc="Bad Request - Invalid PhoneNumber",
        settled_at=at(1),
        settled_by="push",
        next_check_at=None,
        updated_at=at(1),
    )
    assert is_legal_transition(before.status, payment.status)
    assert payment.without_answer(at(10_000), POLICY) is None
    assert not payment.query_due(at(10_000), POLICY)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(accepted_payment(), id="accepted"),
        pytest.param(unknown_payment(), id="unknown"),
        pytest.param(new_payment().refuse("1", "refused", at(1)), id="refused"),
        pytest.param(new_payment(status=SUCCEEDED), id="sending-but-settled-by-callback"),
        pytest.param(new_payment(status=CANCELLED), id="sending-but-cancelled-by-callback"),
        pytest.param(unconfirmed_payment(), id="unconfirmed"),
    ],
)
def test_refuse_is_a_no_op_otherwise(before: Payment) -> None:
    assert before.refuse("500.001.1001", "Unable to lock subscriber", at(5)) is before


# --- mark_outcome_unknown -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1, 45, 600, 5000])
def test_mark_outcome_unknown_flags_the_payment_and_waits_for_the_confirmation_deadline(seconds: int) -> None:
    before = new_payment()
    payment = before.mark_outcome_unknown(at(seconds), POLICY)
    assert payment == dataclasses.replace(
        before,
        push_state=PushState.UNKNOWN,
        push_lease_until=None,
        flags=(FLAG_OUTCOME_UNKNOWN,),
        next_check_at=DEADLINE,
        updated_at=at(seconds),
    )
    assert payment.status is PENDING
    assert payment.next_check_at == before.created_at + timedelta(seconds=POLICY.unconfirmed_after_s)


def test_mark_outcome_unknown_merges_flags_sorted() -> None:
    before = new_payment(flags=(FLAG_PHONE_MISMATCH, FLAG_AMOUNT_MISMATCH))
    payment = before.mark_outcome_unknown(at(50), POLICY)
    assert payment.flags == (FLAG_AMOUNT_MISMATCH, FLAG_OUTCOME_UNKNOWN, FLAG_PHONE_MISMATCH)


def test_mark_outcome_unknown_after_a_callback_settled_keeps_the_status_and_schedule() -> None:
    before = new_payment(status=SUCCEEDED, checkout_request_id=CHECKOUT, next_check_at=None)
    payment = before.mark_outcome_unknown(at(50), POLICY)
    assert payment.status is SUCCEEDED
    assert payment.next_check_at is None
    assert payment.push_state is PushState.UNKNOWN
    assert FLAG_OUTCOME_UNKNOWN in payment.flags


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(accepted_payment(), id="accepted"),
        pytest.param(unknown_payment(), id="already-unknown"),
        pytest.param(new_payment().refuse("1", "refused", at(1)), id="refused"),
    ],
)
def test_mark_outcome_unknown_only_from_sending(before: Payment) -> None:
    assert before.mark_outcome_unknown(at(100), POLICY) is before


# --- lease and deadline ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payment", "now", "expired"),
    [
        pytest.param(new_payment(), NOW, False, id="sending-at-start"),
        pytest.param(new_payment(), at(44.999), False, id="sending-just-before-lease-end"),
        pytest.param(new_payment(), LEASE_END, True, id="sending-at-lease-end"),
        pytest.param(new_payment(), at(3600), True, id="sending-long-after"),
        pytest.param(new_payment(push_lease_until=None), at(3600), False, id="sending-without-lease"),
        pytest.param(accepted_payment(), at(3600), False, id="accepted"),
        pytest.param(accepted_payment(push_lease_until=LEASE_END), at(3600), False, id="accepted-with-stale-lease"),
        pytest.param(unknown_payment(), at(3600), False, id="unknown"),
        pytest.param(new_payment().refuse("1", "x", at(1)), at(3600), False, id="refused"),
    ],
)
def test_lease_expired(payment: Payment, now: datetime, expired: bool) -> None:
    assert payment.lease_expired(now) is expired


@pytest.mark.parametrize("payment", [new_payment(), accepted_payment(), unknown_payment(), unconfirmed_payment()])
def test_unconfirmed_deadline_counts_from_creation(payment: Payment) -> None:
    assert payment.unconfirmed_deadline(POLICY) == DEADLINE
    assert payment.unconfirmed_deadline(PaymentPolicy(unconfirmed_after_s=10)) == at(10)


# --- apply: callbacks -----------------------------------------------------------------------------------------------


def test_matching_success_callback_settles_as_succeeded() -> None:
    before = accepted_payment()
    settlement = before.apply(success(), "callback", at(30), CHECKOUT)
    assert settlement.decision == SettlementDecision("settle", SUCCEEDED, (), "callback result code 0 -> succeeded")
    assert settlement.before is before
    assert settlement.after == dataclasses.replace(
        before,
        status=SUCCEEDED,
        result_code="0",
        result_desc="The service request is processed successfully.",
        mpesa_receipt_number=RECEIPT,
        transaction_date="20240301120105",
        paid_phone=MSISDN[:4] + "******" + MSISDN[-2:],
        settled_at=at(30),
        settled_by="callback",
        next_check_at=None,
        updated_at=at(30),
    )
    assert settlement.changed
    assert settlement.counts_for_payer
    assert not settlement.after.needs_a_human


def test_success_callback_without_a_phone_settles_with_no_paid_phone() -> None:
    settlement = accepted_payment().apply(success(phone=None), "callback", at(30))
    assert settlement.after.status is SUCCEEDED
    assert settlement.after.paid_phone is None


@pytest.mark.parametrize(("code", "status"), FAILURES)
def test_failure_callback_settles_with_the_mapped_status(code: str, status: PaymentStatus) -> None:
    before = accepted_payment()
    settlement = before.apply(failure(code), "callback", at(30), CHECKOUT)
    after = settlement.after
    assert settlement.decision.action == "settle"
    assert after.status is status
    assert (after.result_code, after.result_desc) == (code, "Request cancelled by user")
    assert (after.settled_at, after.settled_by, after.next_check_at, after.updated_at) == (
        at(30),
        "callback",
        None,
        at(30),
    )
    assert (after.mpesa_receipt_number, after.transaction_date, after.paid_phone) == (None, None, None)
    assert after.flags == ()
    assert settlement.counts_for_payer


def test_failure_callback_ignores_amount_and_phone() -> None:
    outcome = dataclasses.replace(failure("1032"), amount=1, phone=OTHER_MSISDN, mpesa_receipt_number="X")
    settlement = accepted_payment().apply(outcome, "callback", at(30))
    assert settlement.after.status is CANCELLED
    assert settlement.after.flags == ()
    assert settlement.after.paid_phone is None
    assert settlement.after.mpesa_receipt_number is None


@pytest.mark.parametrize(("outcome", "flags"), SUSPICIOUS_SUCCESSES)
def test_suspicious_success_callback_is_flagged_and_kept_for_a_human(
    outcome: PaymentOutcome, flags: tuple[str, ...]
) -> None:
    before = accepted_payment()
    settlement = before.apply(outcome, "callback", at(30), CHECKOUT)
    after = settlement.after
    assert settlement.decision.action == "flag"
    assert settlement.decision.new_status is None
    assert after.status is PENDING
    assert after.flags == tuple(sorted(flags))
    assert after.reported_outcome == ReportedOutcome(
        source="callback",
        result_code="0",
        result_desc=outcome.result_desc,
        amount=None if outcome.amount is None else str(outcome.amount),
        mpesa_receipt_number=outcome.mpesa_receipt_number,
        at=at(30),
    )
    assert after.updated_at == at(30)
    # Nothing about the result is applied; the reconciler still looks at it.
    assert (after.result_code, after.mpesa_receipt_number, after.paid_phone, after.settled_at) == (
        None,
        None,
        None,
        None,
    )
    assert after.next_check_at == before.next_check_at
    assert after.needs_a_human
    assert settlement.changed
    assert not settlement.counts_for_payer


def test_an_amount_too_large_for_firestore_is_reported_as_text() -> None:
    settlement = accepted_payment().apply(success(amount=2**64), "callback", at(30))
    reported = settlement.after.reported_outcome
    assert reported is not None
    assert reported.amount == "18446744073709551616"
    assert isinstance(reported.amount, str)


def test_a_missing_amount_is_reported_as_none() -> None:
    reported = accepted_payment().apply(success(amount=None), "callback", at(30)).after.reported_outcome
    assert reported is not None
    assert reported.amount is None


def test_flags_from_a_result_merge_with_flags_already_there() -> None:
    before = accepted_payment(flags=(FLAG_OUTCOME_UNKNOWN, FLAG_PHONE_MISMATCH))
    after = before.apply(success(amount=1), "callback", at(30)).after
    assert after.flags == (FLAG_AMOUNT_MISMATCH, FLAG_OUTCOME_UNKNOWN, FLAG_PHONE_MISMATCH)


def test_a_second_suspicious_callback_replaces_the_report() -> None:
    first = accepted_payment().apply(success(amount=1), "callback", at(30)).after
    second = first.apply(success(phone=OTHER_MSISDN), "callback", at(40)).after
    assert second.flags == (FLAG_AMOUNT_MISMATCH, FLAG_PHONE_MISMATCH)
    assert second.reported_outcome is not None
    assert (second.reported_outcome.amount, second.reported_outcome.at) == (str(AMOUNT), at(40))


def test_a_matching_success_after_a_suspicious_one_still_settles() -> None:
    flagged = accepted_payment().apply(success(amount=1), "callback", at(30)).after
    settled = flagged.apply(success(), "callback", at(40)).after
    assert settled.status is SUCCEEDED
    assert settled.flags == (FLAG_AMOUNT_MISMATCH,)
    assert settled.reported_outcome == flagged.reported_outcome


@pytest.mark.parametrize("source", ["callback", "query"])
@pytest.mark.parametrize(
    "outcome",
    [success(), success(amount=1), success(mpesa_receipt_number=None), failure("1032"), failure("1")],
    ids=["success", "wrong-amount", "no-receipt", "cancelled", "failed"],
)
def test_duplicates_for_a_succeeded_payment_are_ignored(outcome: PaymentOutcome, source: str) -> None:
    before = accepted_payment().apply(success(), "callback", at(30)).after
    settlement = before.apply(outcome, source, at(40), CHECKOUT)  # type: ignore[arg-type]
    assert settlement.decision == SettlementDecision("ignore", None, (), "already settled as succeeded")
    assert settlement.after is before
    assert not settlement.changed
    assert not settlement.counts_for_payer


@pytest.mark.parametrize("source", ["callback", "query"])
@pytest.mark.parametrize(
    ("status", "code"), list(itertools.product([FAILED, CANCELLED, TIMED_OUT], ["1032", "1", "1037"]))
)
def test_failures_after_a_failed_status_are_ignored(status: PaymentStatus, code: str, source: str) -> None:
    before = settled_payment(status)
    settlement = before.apply(failure(code), source, at(40))  # type: ignore[arg-type]
    assert settlement.decision.action == "ignore"
    assert settlement.after is before


@pytest.mark.parametrize("source", ["callback", "query"])
@pytest.mark.parametrize("status", [FAILED, CANCELLED, TIMED_OUT])
def test_success_after_a_failed_status_is_flagged_not_applied(status: PaymentStatus, source: str) -> None:
    before = settled_payment(status)
    settlement = before.apply(success(), source, at(40))  # type: ignore[arg-type]
    after = settlement.after
    assert settlement.decision.action == "flag"
    assert after.status is status
    assert after.flags == (FLAG_SUCCESS_AFTER_TERMINAL,)
    assert after.reported_outcome is not None
    assert after.reported_outcome.source == source
    assert after.reported_outcome.mpesa_receipt_number == RECEIPT
    assert (after.settled_at, after.settled_by) == (at(10), "callback")
    assert after.needs_a_human
    assert not settlement.counts_for_payer


# --- apply: the CheckoutRequestID a callback names ------------------------------------------------------------------


def test_a_callback_before_the_push_answer_records_its_checkout_request_id() -> None:
    before = new_payment()
    settlement = before.apply(success(), "callback", at(5), CHECKOUT)
    assert settlement.after.checkout_request_id == CHECKOUT
    assert settlement.after.status is SUCCEEDED
    assert before.checkout_request_id is None
    # The push's answer arriving afterwards agrees with the callback, keeps the result and asks no more questions.
    accepted = settlement.after.accept(CHECKOUT, MERCHANT, at(6), POLICY)
    assert (accepted.status, accepted.flags, accepted.next_check_at) == (SUCCEEDED, (), None)
    assert accepted.push_state is PushState.ACCEPTED


def test_a_suspicious_callback_before_the_push_answer_records_its_checkout_request_id() -> None:
    after = unknown_payment().apply(success(amount=1), "callback", at(90), CHECKOUT).after
    assert after.checkout_request_id == CHECKOUT
    assert after.status is PENDING
    # The callback proves Daraja accepted the push: the outcome is no longer unknown.
    assert after.flags == (FLAG_AMOUNT_MISMATCH,)
    assert after.push_state is PushState.ACCEPTED


def test_an_ignored_callback_still_records_the_checkout_request_id_it_names() -> None:
    before = unconfirmed_payment()
    settlement = before.apply(failure("1032"), "callback", at(4000), CHECKOUT)
    after = settlement.after
    assert settlement.decision.action == "ignore"
    assert after == dataclasses.replace(
        before,
        checkout_request_id=CHECKOUT,
        push_state=PushState.ACCEPTED,
        flags=(),
        updated_at=at(4000),
    )
    assert after.status is UNCONFIRMED
    assert settlement.changed
    assert not settlement.counts_for_payer


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(new_payment(), id="sending"),
        pytest.param(new_payment(flags=(FLAG_PHONE_MISMATCH,)), id="sending-flagged"),
        pytest.param(unknown_payment(), id="unknown"),
        pytest.param(dataclasses.replace(unknown_payment(), checkout_request_id=CHECKOUT), id="unknown-with-id"),
        pytest.param(unconfirmed_payment(), id="unconfirmed"),
    ],
)
@pytest.mark.parametrize(
    "outcome", [success(), success(amount=1), failure("1032")], ids=["success", "wrong-amount", "cancelled"]
)
def test_a_callback_naming_its_request_proves_the_push_was_accepted(before: Payment, outcome: PaymentOutcome) -> None:
    after = before.apply(outcome, "callback", at(100), CHECKOUT).after
    assert after.push_state is PushState.ACCEPTED
    assert after.push_lease_until is None
    assert FLAG_OUTCOME_UNKNOWN not in after.flags
    assert set(before.flags) - {FLAG_OUTCOME_UNKNOWN} <= set(after.flags)
    assert after.checkout_request_id == CHECKOUT
    assert after.updated_at == at(100)
    assert not after.lease_expired(at(10_000))


@pytest.mark.parametrize(
    ("before", "checkout_request_id", "source"),
    [
        pytest.param(new_payment(), None, "callback", id="sending-callback-without-id"),
        pytest.param(unknown_payment(), None, "callback", id="unknown-callback-without-id"),
        pytest.param(dataclasses.replace(unknown_payment(), checkout_request_id=CHECKOUT), None, "query", id="query"),
    ],
)
def test_a_result_that_names_no_request_leaves_the_push_state_alone(
    before: Payment, checkout_request_id: str | None, source: str
) -> None:
    after = before.apply(success(amount=1), source, at(100), checkout_request_id).after  # type: ignore[arg-type]
    assert after.push_state is before.push_state
    assert after.push_lease_until == before.push_lease_until
    assert (FLAG_OUTCOME_UNKNOWN in after.flags) is (FLAG_OUTCOME_UNKNOWN in before.flags)


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(accepted_payment(), id="accepted"),
        pytest.param(new_payment().refuse("1", "refused", at(1)), id="refused"),
    ],
)
def test_a_callback_does_not_change_a_push_state_already_known(before: Payment) -> None:
    after = before.apply(success(), "callback", at(100), OTHER_CHECKOUT).after
    assert after.push_state is before.push_state


def test_after_an_early_callback_a_late_push_timeout_or_refusal_changes_nothing() -> None:
    # A suspicious callback leaves the payment pending; the push's own answer (or its absence) must not then
    # fail it or call its outcome unknown.
    flagged = new_payment().apply(success(amount=1), "callback", at(5), CHECKOUT).after
    assert flagged.status is PENDING
    assert flagged.refuse("500.001.1001", "refused", at(6)) is flagged
    assert flagged.mark_outcome_unknown(at(60), POLICY) is flagged
    assert flagged.without_answer(DEADLINE, POLICY) is None
    assert flagged.query_due(at(60), POLICY)


def test_an_ignored_result_that_changes_nothing_keeps_the_payment_as_it_was() -> None:
    before = settled_payment(SUCCEEDED)
    settlement = before.apply(success(), "callback", at(100), CHECKOUT)
    assert settlement.decision.action == "ignore"
    assert settlement.after == before
    assert settlement.after.updated_at == before.updated_at
    assert not settlement.changed


def test_a_callback_never_overwrites_a_stored_checkout_request_id() -> None:
    after = accepted_payment().apply(success(), "callback", at(30), OTHER_CHECKOUT).after
    assert after.checkout_request_id == CHECKOUT


def test_without_a_checkout_request_id_nothing_is_recorded() -> None:
    after = new_payment().apply(failure("1032"), "callback", at(5)).after
    assert after.checkout_request_id is None
    assert after.status is CANCELLED


# --- apply: query answers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["500.001.1001", "4999", "", "   ", "00", "1036", "-1", "0.0", "sfc_ic0003"])
def test_a_non_final_query_answer_leaves_the_payment_pending(code: str) -> None:
    before = accepted_payment()
    settlement = before.apply(query_answer(code), "query", at(130), CHECKOUT)
    assert settlement.decision.action == "ignore"
    assert settlement.decision.new_status is None
    assert "not final" in settlement.decision.reason
    assert settlement.after is before
    assert not settlement.changed
    assert not settlement.counts_for_payer


@pytest.mark.parametrize("code", sorted(FINAL_QUERY_RESULT_CODES))
def test_a_final_query_answer_settles_and_says_so(code: str) -> None:
    before = accepted_payment()
    settlement = before.apply(query_answer(code), "query", at(130))
    after = settlement.after
    assert settlement.decision.action == "settle"
    assert after.status is status_for_result_code(code)
    assert after.flags == (FLAG_SETTLED_BY_QUERY,)
    assert (after.result_code, after.result_desc) == (code, f"query says {code}")
    assert (after.settled_at, after.settled_by, after.next_check_at) == (at(130), "query", None)
    assert not after.needs_a_human
    assert settlement.counts_for_payer


def test_a_query_success_has_no_receipt_or_phone() -> None:
    after = accepted_payment().apply(query_answer("0"), "query", at(130)).after
    assert after.status is SUCCEEDED
    assert (after.mpesa_receipt_number, after.transaction_date, after.paid_phone) == (None, None, None)


def test_a_final_query_code_with_spaces_still_settles() -> None:
    after = accepted_payment().apply(query_answer(" 1032 "), "query", at(130)).after
    assert after.status is CANCELLED


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, UNCONFIRMED])
@pytest.mark.parametrize("code", ["500.001.1001", "4999", ""])
def test_a_non_final_query_answer_never_touches_a_settled_payment(status: PaymentStatus, code: str) -> None:
    before = settled_payment(status)
    settlement = before.apply(query_answer(code), "query", at(130))
    assert settlement.decision.action == "ignore"
    assert settlement.after is before


@pytest.mark.parametrize(
    ("code", "final"),
    [
        ("0", True),
        (" 0 ", True),
        ("1032\n", True),
        ("1", True),
        ("17", True),
        ("1001", True),
        ("1019", True),
        ("1025", True),
        ("1031", True),
        ("1037", True),
        ("2001", True),
        ("9999", True),
        ("SFC_IC0003", True),
        ("500.001.1001", False),
        ("4999", False),
        ("", False),
        ("   ", False),
        ("00", False),
        ("sfc_ic0003", False),
        ("10", False),
    ],
)
def test_is_final_query_code(code: str, final: bool) -> None:
    assert is_final_query_code(code) is final


def test_every_code_that_maps_to_a_non_failure_status_is_final() -> None:
    for code in ["0", "1031", "1032", "1019", "1037"]:
        assert status_for_result_code(code) is not FAILED
        assert code in FINAL_QUERY_RESULT_CODES


# --- apply: unconfirmed payments ------------------------------------------------------------------------------------


def test_a_late_success_callback_turns_unconfirmed_into_succeeded() -> None:
    before = unconfirmed_payment()
    settlement = before.apply(success(), "callback", at(5000), CHECKOUT)
    after = settlement.after
    assert settlement.decision.action == "settle"
    assert settlement.decision.new_status is SUCCEEDED
    assert settlement.decision.flags == (FLAG_SUCCESS_AFTER_TERMINAL,)
    assert "unconfirmed" in settlement.decision.reason
    assert after.status is SUCCEEDED
    assert is_legal_transition(before.status, after.status)
    assert after.flags == (FLAG_SUCCESS_AFTER_TERMINAL,)
    assert after.push_state is PushState.ACCEPTED
    assert (after.mpesa_receipt_number, after.paid_phone, after.result_code) == (RECEIPT, mask_msisdn(MSISDN), "0")
    assert (after.settled_at, after.settled_by, after.next_check_at) == (at(5000), "callback", None)
    assert after.checkout_request_id == CHECKOUT
    assert after.needs_a_human
    assert settlement.counts_for_payer


def test_a_late_success_query_answer_turns_unconfirmed_into_succeeded() -> None:
    before = dataclasses.replace(unconfirmed_payment(), checkout_request_id=CHECKOUT)
    after = before.apply(query_answer("0"), "query", at(5000)).after
    assert after.status is SUCCEEDED
    assert after.flags == (FLAG_OUTCOME_UNKNOWN, FLAG_SETTLED_BY_QUERY, FLAG_SUCCESS_AFTER_TERMINAL)
    assert after.settled_by == "query"


@pytest.mark.parametrize("source", ["callback", "query"])
@pytest.mark.parametrize("code", [code for code, _ in FAILURES] + ["500.001.1001", ""])
def test_a_failure_for_an_unconfirmed_payment_is_ignored(code: str, source: str) -> None:
    before = unconfirmed_payment()
    settlement = before.apply(failure(code), source, at(5000))  # type: ignore[arg-type]
    assert settlement.decision == SettlementDecision("ignore", None, (), "already settled as unconfirmed")
    assert settlement.after is before
    assert not settlement.counts_for_payer


@pytest.mark.parametrize(("outcome", "flags"), SUSPICIOUS_SUCCESSES)
def test_a_mismatching_success_for_an_unconfirmed_payment_is_flagged_and_stays_unconfirmed(
    outcome: PaymentOutcome, flags: tuple[str, ...]
) -> None:
    before = unconfirmed_payment()
    settlement = before.apply(outcome, "callback", at(5000))
    after = settlement.after
    assert settlement.decision.action == "flag"
    assert settlement.decision.new_status is None
    assert settlement.decision.flags == tuple(sorted({*flags, FLAG_SUCCESS_AFTER_TERMINAL}))
    assert after.status is UNCONFIRMED
    assert after.flags == tuple(sorted({*flags, FLAG_SUCCESS_AFTER_TERMINAL, FLAG_OUTCOME_UNKNOWN}))
    assert after.reported_outcome is not None
    assert after.reported_outcome.amount == (None if outcome.amount is None else str(outcome.amount))
    assert (after.settled_at, after.settled_by) == (before.settled_at, "reconcile")
    assert after.needs_a_human
    assert not settlement.counts_for_payer


# --- apply: invariants over every state, outcome and source ---------------------------------------------------------

STATES = {
    "sending": new_payment(),
    "accepted": accepted_payment(),
    "unknown": unknown_payment(),
    "flagged": accepted_payment().apply(success(amount=1), "callback", at(30)).after,
    "succeeded": settled_payment(SUCCEEDED),
    "failed": settled_payment(FAILED),
    "cancelled": settled_payment(CANCELLED),
    "timed_out": settled_payment(TIMED_OUT),
    "refused": new_payment().refuse("1", "refused", at(1)),
    "unconfirmed": unconfirmed_payment(),
}
OUTCOMES = {
    "success": success(),
    "success-no-phone": success(phone=None),
    "wrong-amount": success(amount=1),
    "huge-amount": success(amount=2**64),
    "no-receipt": success(mpesa_receipt_number=None),
    "cancelled": failure("1032"),
    "timed-out": failure("1037"),
    "failed": failure("2001"),
    "processing": failure("500.001.1001"),
    "empty": failure(""),
}


@pytest.mark.parametrize("source", ["callback", "query"])
@pytest.mark.parametrize("outcome_name", list(OUTCOMES))
@pytest.mark.parametrize("state", list(STATES))
def test_every_result_is_consistent_and_leaves_the_original_alone(state: str, outcome_name: str, source: str) -> None:
    before = STATES[state]
    snapshot = copy.deepcopy(before)
    # As the services call it: a callback names its CheckoutRequestID, a query answer does not.
    named = OTHER_CHECKOUT if source == "callback" else None
    settlement = before.apply(OUTCOMES[outcome_name], source, at(5000), named)  # type: ignore[arg-type]
    after = settlement.after
    assert before == snapshot
    assert settlement.before is before
    if settlement.decision.action == "settle":
        assert is_legal_transition(before.status, after.status)
        assert after.status is settlement.decision.new_status
        assert (after.settled_at, after.settled_by, after.next_check_at) == (at(5000), source, None)
        assert settlement.counts_for_payer
    else:
        assert after.status is before.status
        assert settlement.decision.new_status is None
        assert not settlement.counts_for_payer
    if settlement.decision.action == "flag":
        assert after.reported_outcome is not None
        assert after.reported_outcome.at == at(5000)
    if settlement.decision.action == "ignore":
        assert after.reported_outcome == before.reported_outcome
        assert set(after.flags) == set(before.flags) - {FLAG_OUTCOME_UNKNOWN} or after.flags == before.flags
    assert after.updated_at == (at(5000) if settlement.changed else before.updated_at)
    # Only outcome_unknown ever goes away: a callback proves the push was accepted.
    assert set(before.flags) - {FLAG_OUTCOME_UNKNOWN} <= set(after.flags)
    if named is not None and before.push_state in (PushState.SENDING, PushState.UNKNOWN):
        assert after.push_state is PushState.ACCEPTED
        assert FLAG_OUTCOME_UNKNOWN not in after.flags
    else:
        assert after.push_state is before.push_state
        assert set(before.flags) <= set(after.flags)
    assert after.flags == tuple(sorted(set(after.flags)))
    # The result never changes what was asked for.
    assert (after.id, after.amount, after.msisdn, after.created_at) == (
        before.id,
        before.amount,
        before.msisdn,
        before.created_at,
    )
    if source == "callback":
        # A callback names its CheckoutRequestID; it fills a missing one and never replaces a stored one.
        assert after.checkout_request_id == (before.checkout_request_id or OTHER_CHECKOUT)


# --- the query schedule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payment", "now", "due"),
    [
        pytest.param(accepted_payment(), at(0), False, id="just-created"),
        pytest.param(accepted_payment(), at(49.9), False, id="before-pending-query-after"),
        pytest.param(accepted_payment(), at(50), True, id="at-pending-query-after"),
        pytest.param(accepted_payment(), at(5000), True, id="long-after"),
        pytest.param(accepted_payment(last_queried_at=at(60)), at(79.9), False, id="within-interval"),
        pytest.param(accepted_payment(last_queried_at=at(60)), at(80), True, id="at-interval"),
        pytest.param(accepted_payment(last_queried_at=at(60)), at(500), True, id="after-interval"),
        pytest.param(new_payment(), at(5000), False, id="no-checkout-request-id"),
        pytest.param(unknown_payment(), at(5000), False, id="unknown-no-checkout-request-id"),
        pytest.param(settled_payment(SUCCEEDED), at(5000), False, id="succeeded"),
        pytest.param(settled_payment(FAILED), at(5000), False, id="failed"),
        pytest.param(settled_payment(CANCELLED), at(5000), False, id="cancelled"),
        pytest.param(settled_payment(TIMED_OUT), at(5000), False, id="timed-out"),
        pytest.param(
            dataclasses.replace(unconfirmed_payment(), checkout_request_id=CHECKOUT), at(5000), False, id="unconfirmed"
        ),
    ],
)
def test_query_due(payment: Payment, now: datetime, due: bool) -> None:
    assert payment.query_due(now, POLICY) is due


def test_claim_query_records_the_look_and_pushes_the_next_one_back() -> None:
    before = accepted_payment()
    claimed = before.claim_query(at(102), POLICY)
    assert claimed == dataclasses.replace(
        before, last_queried_at=at(102), query_attempts=1, next_check_at=at(102 + 200), updated_at=at(102)
    )
    assert claimed is not None
    assert claimed.status is PENDING
    assert before.query_attempts == 0
    assert before.last_queried_at is None


def test_claim_query_doubles_the_delay_up_to_the_cap() -> None:
    payment = accepted_payment()
    delays = []
    now = at(102)
    for _ in range(6):
        claimed = payment.claim_query(now, POLICY)
        assert claimed is not None
        assert claimed.next_check_at is not None
        delays.append((claimed.next_check_at - now).total_seconds())
        payment = claimed
        now = claimed.next_check_at
    assert delays == [200.0, 400.0, 800.0, 1000.0, 1000.0, 1000.0]
    assert payment.query_attempts == 6


def test_claim_query_backoff_with_the_default_policy() -> None:
    policy = PaymentPolicy()
    payment = accepted_payment()
    delays = []
    for attempt in range(9):
        now = at(1000 + attempt * 100_000)
        claimed = payment.claim_query(now, policy)
        assert claimed is not None and claimed.next_check_at is not None
        delays.append((claimed.next_check_at - now).total_seconds())
        payment = claimed
    assert delays == [180.0, 360.0, 720.0, 1440.0, 2880.0, 5760.0, 11520.0, 21600.0, 21600.0]


def test_claim_query_with_no_reconcile_delay_still_backs_off_from_one_second() -> None:
    policy = dataclasses.replace(POLICY, reconcile_after_s=0.0)
    first = accepted_payment().claim_query(at(100), policy)
    assert first is not None
    second = first.claim_query(at(200), policy)
    assert second is not None
    assert (first.next_check_at, second.next_check_at) == (at(102), at(204))


@pytest.mark.parametrize("attempts", [30, 1022, 1023, 1024, 5000, 10**6])
def test_claim_query_after_many_attempts_stays_at_the_cap(attempts: int) -> None:
    # A payment whose query keeps answering "still processing" is looked at again and again; the backoff must
    # stay at the cap rather than overflow a float.
    claimed = accepted_payment(query_attempts=attempts).claim_query(at(100), POLICY)
    assert claimed is not None
    assert claimed.query_attempts == attempts + 1
    assert claimed.next_check_at == at(100 + 1000)


@pytest.mark.parametrize(
    ("last_queried", "now", "claimed"),
    [(60, 60, False), (60, 79.9, False), (60, 80, True), (60, 1000, True), (None, 0, True)],
)
def test_claim_query_once_per_interval(last_queried: float | None, now: float, claimed: bool) -> None:
    before = accepted_payment(last_queried_at=None if last_queried is None else at(last_queried))
    assert (before.claim_query(at(now), POLICY) is not None) is claimed


def test_claim_query_is_not_held_back_by_pending_query_after() -> None:
    # The reconciler's own schedule (next_check_at, reconcile_after_s after the push) decides when it claims;
    # only a read asks query_due, which also waits pending_query_after_s.
    payment = accepted_payment()
    assert not payment.query_due(at(10), POLICY)
    assert payment.claim_query(at(10), POLICY) is not None


def test_a_claimed_query_is_not_due_again_within_the_interval() -> None:
    claimed = accepted_payment().claim_query(at(100), POLICY)
    assert claimed is not None
    assert not claimed.query_due(at(119), POLICY)
    assert claimed.claim_query(at(119), POLICY) is None
    assert claimed.query_due(at(120), POLICY)


@pytest.mark.parametrize(
    "payment",
    [
        pytest.param(new_payment(), id="no-checkout-request-id"),
        pytest.param(unknown_payment(), id="unknown"),
        pytest.param(settled_payment(SUCCEEDED), id="succeeded"),
        pytest.param(settled_payment(FAILED), id="failed"),
        pytest.param(settled_payment(CANCELLED), id="cancelled"),
        pytest.param(settled_payment(TIMED_OUT), id="timed-out"),
        pytest.param(dataclasses.replace(unconfirmed_payment(), checkout_request_id=CHECKOUT), id="unconfirmed"),
    ],
)
def test_claim_query_is_none_for_payments_that_cannot_be_queried(payment: Payment) -> None:
    assert payment.claim_query(at(5000), POLICY) is None


# --- without_answer -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 1, 44.999])
def test_without_answer_leaves_a_push_within_its_lease_alone(seconds: float) -> None:
    assert new_payment().without_answer(at(seconds), POLICY) is None


@pytest.mark.parametrize("seconds", [45, 46, 1799.9])
def test_without_answer_marks_a_push_past_its_lease_as_unknown(seconds: float) -> None:
    before = new_payment()
    after = before.without_answer(at(seconds), POLICY)
    assert after == before.mark_outcome_unknown(at(seconds), POLICY)
    assert after is not None
    assert after.status is PENDING
    assert after.push_state is PushState.UNKNOWN
    assert after.flags == (FLAG_OUTCOME_UNKNOWN,)
    assert after.next_check_at == DEADLINE
    assert after.settled_at is None


@pytest.mark.parametrize("seconds", [60, 1000, 1799.999])
def test_without_answer_leaves_an_unknown_outcome_alone_until_the_deadline(seconds: float) -> None:
    assert unknown_payment().without_answer(at(seconds), POLICY) is None


@pytest.mark.parametrize("seconds", [1800, 1801, 86_400])
def test_without_answer_ends_an_unknown_outcome_unconfirmed_at_the_deadline(seconds: float) -> None:
    before = unknown_payment()
    after = before.without_answer(at(seconds), POLICY)
    assert after == dataclasses.replace(
        before,
        status=UNCONFIRMED,
        settled_at=at(seconds),
        settled_by="reconcile",
        result_desc="no answer from Daraja and no callback within the confirmation window",
        next_check_at=None,
        updated_at=at(seconds),
    )
    assert after is not None
    assert after.result_code is None
    assert is_legal_transition(before.status, after.status)


def test_without_answer_goes_straight_to_unconfirmed_when_both_lease_and_deadline_have_passed() -> None:
    after = new_payment().without_answer(DEADLINE, POLICY)
    assert after is not None
    assert after.status is UNCONFIRMED
    assert after.push_state is PushState.UNKNOWN
    assert after.push_lease_until is None
    assert after.flags == (FLAG_OUTCOME_UNKNOWN,)
    assert (after.settled_by, after.next_check_at) == ("reconcile", None)


def test_an_unconfirmed_payment_describes_itself_but_does_not_ask_for_a_human() -> None:
    payment = unconfirmed_payment()
    assert payment.flags == (FLAG_OUTCOME_UNKNOWN,)
    assert not payment.needs_a_human


@pytest.mark.parametrize(
    "payment",
    [
        pytest.param(accepted_payment(), id="accepted"),
        pytest.param(accepted_payment(last_queried_at=at(60), query_attempts=3), id="accepted-queried"),
        pytest.param(new_payment(checkout_request_id=CHECKOUT), id="sending-with-callback-id"),
        pytest.param(
            dataclasses.replace(unknown_payment(), checkout_request_id=CHECKOUT), id="unknown-with-callback-id"
        ),
        pytest.param(new_payment().refuse("1", "refused", at(1)), id="refused"),
        pytest.param(new_payment(status=SUCCEEDED), id="settled-while-sending"),
        pytest.param(unconfirmed_payment(), id="already-unconfirmed"),
    ],
)
@pytest.mark.parametrize("seconds", [0, 45, 1800, 86_400])
def test_without_answer_is_none_for_everything_else(payment: Payment, seconds: int) -> None:
    assert payment.without_answer(at(seconds), POLICY) is None


def test_the_reconciler_schedule_walks_a_lost_push_to_unconfirmed() -> None:
    payment = new_payment()
    assert payment.next_check_at == LEASE_END
    unknown = payment.without_answer(payment.next_check_at, POLICY)
    assert unknown is not None and unknown.next_check_at == DEADLINE
    unconfirmed = unknown.without_answer(unknown.next_check_at, POLICY)
    assert unconfirmed is not None
    assert unconfirmed.status is UNCONFIRMED
    assert unconfirmed.next_check_at is None


# --- Settlement -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "new_status", "counts"), [("settle", SUCCEEDED, True), ("flag", None, False), ("ignore", None, False)]
)
def test_settlement_counts_for_payer_only_when_it_settles(action: str, new_status: Any, counts: bool) -> None:
    payment = accepted_payment()
    settlement = Settlement(payment, payment, SettlementDecision(action, new_status, (), "r"))  # type: ignore[arg-type]
    assert settlement.counts_for_payer is counts
    assert not settlement.changed


def test_settlement_changed_compares_values() -> None:
    payment = accepted_payment()
    decision = SettlementDecision("ignore", None, (), "r")
    assert not Settlement(payment, copy.deepcopy(payment), decision).changed
    assert Settlement(payment, dataclasses.replace(payment, updated_at=at(99)), decision).changed


# --- needs_a_human --------------------------------------------------------------------------------------------------


def test_the_flags_that_need_a_human() -> None:
    assert (
        frozenset(
            {
                FLAG_AMOUNT_MISMATCH,
                FLAG_PHONE_MISMATCH,
                FLAG_MISSING_AMOUNT,
                FLAG_MISSING_RECEIPT,
                FLAG_SUCCESS_AFTER_TERMINAL,
                FLAG_CHECKOUT_MISMATCH,
            }
        )
        == FLAGS_NEEDING_A_HUMAN
    )


@pytest.mark.parametrize(
    ("flags", "needs"),
    [
        ((), False),
        ((FLAG_OUTCOME_UNKNOWN,), False),
        ((FLAG_SETTLED_BY_QUERY,), False),
        ((FLAG_OUTCOME_UNKNOWN, FLAG_SETTLED_BY_QUERY), False),
        (("something_new",), False),
        ((FLAG_AMOUNT_MISMATCH,), True),
        ((FLAG_PHONE_MISMATCH,), True),
        ((FLAG_MISSING_AMOUNT,), True),
        ((FLAG_MISSING_RECEIPT,), True),
        ((FLAG_SUCCESS_AFTER_TERMINAL,), True),
        ((FLAG_CHECKOUT_MISMATCH,), True),
        ((FLAG_OUTCOME_UNKNOWN, FLAG_SUCCESS_AFTER_TERMINAL), True),
    ],
)
def test_needs_a_human(flags: tuple[str, ...], needs: bool) -> None:
    assert new_payment(flags=flags).needs_a_human is needs


# --- Payer ----------------------------------------------------------------------------------------------------------


def test_first_seen() -> None:
    assert Payer.first_seen(MSISDN, NOW) == Payer(
        msisdn=MSISDN, first_seen_at=NOW, last_seen_at=NOW, payment_count=0, succeeded_count=0, total_paid=0
    )


def _seen_before() -> Payer:
    return Payer(
        msisdn=MSISDN,
        first_seen_at=at(-1000),
        last_seen_at=at(-500),
        payment_count=3,
        succeeded_count=2,
        total_paid=700,
    )


@pytest.mark.parametrize(
    ("settlement", "payments", "succeeded", "paid"),
    [
        pytest.param(accepted_payment().apply(success(), "callback", at(30)), 4, 3, 700 + AMOUNT, id="success"),
        pytest.param(accepted_payment().apply(query_answer("0"), "query", at(30)), 4, 3, 700 + AMOUNT, id="query"),
        pytest.param(accepted_payment().apply(failure("1032"), "callback", at(30)), 4, 2, 700, id="cancelled"),
        pytest.param(accepted_payment().apply(failure("1"), "query", at(30)), 4, 2, 700, id="failed"),
        pytest.param(
            unconfirmed_payment().apply(success(), "callback", at(5000)), 4, 3, 700 + AMOUNT, id="unconfirmed-success"
        ),
    ],
)
def test_a_settled_payment_counts_once(settlement: Settlement, payments: int, succeeded: int, paid: int) -> None:
    before = _seen_before()
    payer = before.count(settlement, at(6000))
    assert payer == Payer(
        msisdn=MSISDN,
        first_seen_at=at(-1000),
        last_seen_at=at(6000),
        payment_count=payments,
        succeeded_count=succeeded,
        total_paid=paid,
    )
    assert before == _seen_before()


@pytest.mark.parametrize(
    "settlement",
    [
        pytest.param(accepted_payment().apply(success(amount=1), "callback", at(30)), id="flag"),
        pytest.param(settled_payment(SUCCEEDED).apply(success(), "callback", at(30)), id="duplicate"),
        pytest.param(settled_payment(FAILED).apply(success(), "callback", at(30)), id="success-after-failure"),
        pytest.param(accepted_payment().apply(query_answer("500.001.1001"), "query", at(30)), id="not-final"),
        pytest.param(unconfirmed_payment().apply(failure("1032"), "callback", at(5000)), id="unconfirmed-failure"),
        pytest.param(unconfirmed_payment().apply(success(amount=1), "callback", at(5000)), id="unconfirmed-flag"),
    ],
)
def test_flags_and_ignored_results_do_not_count(settlement: Settlement) -> None:
    before = _seen_before()
    assert not settlement.counts_for_payer
    assert before.count(settlement, at(6000)) is before


def test_a_settle_that_was_already_succeeded_does_not_add_to_the_total() -> None:
    # Only a newly succeeded payment adds its amount, whatever the decision claims.
    payment = settled_payment(SUCCEEDED)
    settlement = Settlement(payment, payment, SettlementDecision("settle", SUCCEEDED, (), "r"))
    payer = _seen_before().count(settlement, at(6000))
    assert (payer.payment_count, payer.succeeded_count, payer.total_paid) == (4, 2, 700)


def test_total_paid_saturates_at_the_largest_firestore_integer() -> None:
    payer = dataclasses.replace(_seen_before(), total_paid=INT64_MAX - 10)
    payer = payer.count(accepted_payment().apply(success(), "callback", at(30)), at(40))
    assert payer.total_paid == INT64_MAX
    assert payer.succeeded_count == 3
    payer = payer.count(accepted_payment().apply(success(), "callback", at(50)), at(60))
    assert payer.total_paid == INT64_MAX
    assert payer.payment_count == 5


def test_a_payer_across_several_payments() -> None:
    payer = Payer.first_seen(MSISDN, NOW)
    results: list[Callable[[], Settlement]] = [
        lambda: accepted_payment().apply(success(), "callback", at(30)),
        lambda: accepted_payment().apply(failure("1032"), "callback", at(40)),
        lambda: accepted_payment().apply(success(amount=1), "callback", at(50)),  # flagged: not counted
        lambda: settled_payment(SUCCEEDED).apply(success(), "callback", at(60)),  # duplicate: not counted
        lambda: accepted_payment(amount=1000).apply(success(amount=1000), "callback", at(70)),
    ]
    for index, result in enumerate(results):
        payer = payer.count(result(), at(100 + index))
    assert (payer.payment_count, payer.succeeded_count, payer.total_paid) == (3, 2, AMOUNT + 1000)
    assert (payer.first_seen_at, payer.last_seen_at) == (NOW, at(104))


# --- immutability ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (new_payment(), "status"),
        (new_payment(), "flags"),
        (POLICY, "push_lease_s"),
        (ReportedOutcome("callback", "0", "", None, None, NOW), "amount"),
        (Settlement(new_payment(), new_payment(), SettlementDecision("ignore", None, (), "r")), "after"),
        (Payer.first_seen(MSISDN, NOW), "total_paid"),
    ],
)
def test_values_are_frozen(value: object, field: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, None)


METHODS: dict[str, Callable[[Payment], object]] = {
    "accept": lambda p: p.accept(OTHER_CHECKOUT, MERCHANT, at(3000), POLICY),
    "refuse": lambda p: p.refuse("1", "refused", at(3000)),
    "mark_outcome_unknown": lambda p: p.mark_outcome_unknown(at(3000), POLICY),
    "apply-success": lambda p: p.apply(success(), "callback", at(3000), OTHER_CHECKOUT),
    "apply-flag": lambda p: p.apply(success(amount=1), "callback", at(3000), OTHER_CHECKOUT),
    "apply-query": lambda p: p.apply(query_answer("1032"), "query", at(3000)),
    "claim_query": lambda p: p.claim_query(at(3000), POLICY),
    "without_answer": lambda p: p.without_answer(at(3000), POLICY),
    "query_due": lambda p: p.query_due(at(3000), POLICY),
    "lease_expired": lambda p: p.lease_expired(at(3000)),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("state", list(STATES))
def test_methods_never_mutate_the_original(state: str, method: str) -> None:
    before = STATES[state]
    snapshot = copy.deepcopy(before)
    METHODS[method](before)
    assert before == snapshot
    assert before.flags == snapshot.flags


@pytest.mark.parametrize(
    ("own", "named", "answers"),
    [
        (None, "ws_CO_1", True),  # the callback came before Daraja's answer was stored
        ("ws_CO_1", "ws_CO_1", True),
        ("ws_CO_1", "ws_CO_2", False),  # routed by our token, but about another request
    ],
)
def test_a_callback_answers_to_its_payment_only_with_the_same_checkout_request(
    own: str | None, named: str, answers: bool
) -> None:
    assert new_payment(checkout_request_id=own).answers_to(named) is answers
