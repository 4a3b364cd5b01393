"""Payment statuses, result-code mapping and the settlement decision."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from gateway.domain.errors import ValidationError
from gateway.domain.payment import (
    PaymentOutcome,
    PaymentStatus,
    SettlementDecision,
    decide_settlement,
    is_legal_transition,
    normalize_result_code,
    status_for_result_code,
)

PENDING = PaymentStatus.PENDING
SUCCEEDED = PaymentStatus.SUCCEEDED
FAILED = PaymentStatus.FAILED
CANCELLED = PaymentStatus.CANCELLED
TIMED_OUT = PaymentStatus.TIMED_OUT
UNCONFIRMED = PaymentStatus.UNCONFIRMED
TERMINAL = [SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, UNCONFIRMED]

EXPECTED_AMOUNT = 10
EXPECTED_PHONE = "254708374149"


# --- statuses -------------------------------------------------------------------------------------------------------


def test_status_values_are_the_api_strings() -> None:
    assert [status.value for status in PaymentStatus] == [
        "pending",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
        "unconfirmed",
    ]
    assert PaymentStatus("timed_out") is TIMED_OUT
    assert PaymentStatus("unconfirmed") is UNCONFIRMED
    assert f"{SUCCEEDED}" == "succeeded"
    assert SUCCEEDED == "succeeded"


@pytest.mark.parametrize(("status", "terminal"), [(PENDING, False)] + [(status, True) for status in TERMINAL])
def test_is_terminal(status: PaymentStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal


@pytest.mark.parametrize(("current", "new"), list(itertools.product(PaymentStatus, PaymentStatus)))
def test_only_pending_to_terminal_or_unconfirmed_to_succeeded_is_a_legal_transition(
    current: PaymentStatus, new: PaymentStatus
) -> None:
    expected = (current is PENDING and new is not PENDING) or (current is UNCONFIRMED and new is SUCCEEDED)
    assert is_legal_transition(current, new) is expected


# --- result codes ---------------------------------------------------------------------------------------------------

RESULT_CODES = [
    ("0", SUCCEEDED),
    ("1032", CANCELLED),
    ("1031", CANCELLED),
    ("1037", TIMED_OUT),
    ("1019", TIMED_OUT),
    ("1", FAILED),
    ("17", FAILED),
    ("1001", FAILED),
    ("1025", FAILED),
    ("9999", FAILED),
    ("2001", FAILED),
    ("SFC_IC0003", FAILED),
    ("-1", FAILED),
    ("500.001.1001", FAILED),
    ("", FAILED),
    # Only the exact code 0 is a success: near misses must never release goods.
    ("00", FAILED),
    ("0.0", FAILED),
    ("O", FAILED),
    ("01032", FAILED),
    (" 1032 ", CANCELLED),
    (" 0 ", SUCCEEDED),
]


@pytest.mark.parametrize(("code", "status"), RESULT_CODES)
def test_status_for_result_code(code: str, status: PaymentStatus) -> None:
    assert status_for_result_code(code) is status


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, "0"),
        ("0", "0"),
        (" 0 ", "0"),
        (0.0, "0"),
        (1032, "1032"),
        ("1032", "1032"),
        (" 1032 ", "1032"),
        ("1032 ", "1032"),
        (1032.0, "1032"),
        (1, "1"),
        (-1, "-1"),
        ("SFC_IC0003", "SFC_IC0003"),
        ("  SFC_IC0003\n", "SFC_IC0003"),
        ("x" * 64, "x" * 64),
    ],
)
def test_normalize_result_code(raw: object, expected: str) -> None:
    assert normalize_result_code(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [None, True, False, 0.5, float("nan"), float("inf"), "", "   ", "x" * 65, [0], {}, "0\x00", b"0", "1\n032"],
)
def test_normalize_result_code_rejects_garbage(raw: object) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_result_code(raw)
    assert caught.value.code == "invalid_result_code"
    assert caught.value.param == "ResultCode"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (0, SUCCEEDED),
        ("0", SUCCEEDED),
        (0.0, SUCCEEDED),
        (1032, CANCELLED),
        ("1032 ", CANCELLED),
        (1031, CANCELLED),
        (1037, TIMED_OUT),
        ("1019", TIMED_OUT),
        (1, FAILED),
        (2001, FAILED),
        ("SFC_IC0003", FAILED),
    ],
)
def test_raw_codes_map_through_normalization(raw: object, status: PaymentStatus) -> None:
    assert status_for_result_code(normalize_result_code(raw)) is status


# --- settlement -----------------------------------------------------------------------------------------------------


def success(**changes: object) -> PaymentOutcome:
    outcome = PaymentOutcome(
        result_code="0",
        result_desc="The service request is processed successfully.",
        amount=EXPECTED_AMOUNT,
        mpesa_receipt_number="NLJ7RT61SV",
        transaction_date="20191219102115",
        phone=EXPECTED_PHONE,
    )
    return dataclasses.replace(outcome, **changes)  # type: ignore[arg-type]


def failure(code: str) -> PaymentOutcome:
    return PaymentOutcome(result_code=code, result_desc="something went wrong")


FAILURE_OUTCOMES = [
    (failure("1032"), CANCELLED),
    (failure("1031"), CANCELLED),
    (failure("1037"), TIMED_OUT),
    (failure("1019"), TIMED_OUT),
    (failure("1"), FAILED),
    (failure("2001"), FAILED),
    (failure("SFC_IC0003"), FAILED),
]
ALL_OUTCOMES = [success(), success(phone=None)] + [outcome for outcome, _ in FAILURE_OUTCOMES]
SOURCES = ["callback", "query"]


def decide(current: PaymentStatus, outcome: PaymentOutcome, source: str = "callback") -> SettlementDecision:
    return decide_settlement(current, EXPECTED_AMOUNT, EXPECTED_PHONE, outcome, source)  # type: ignore[arg-type]


def test_matching_success_callback_settles_as_succeeded() -> None:
    assert decide(PENDING, success()) == SettlementDecision(
        "settle", SUCCEEDED, (), "callback result code 0 -> succeeded"
    )


def test_success_callback_without_phone_still_settles() -> None:
    decision = decide(PENDING, success(phone=None))
    assert (decision.action, decision.new_status, decision.flags) == ("settle", SUCCEEDED, ())


@pytest.mark.parametrize(("outcome", "status"), FAILURE_OUTCOMES)
def test_failure_callback_settles_with_the_mapped_status(outcome: PaymentOutcome, status: PaymentStatus) -> None:
    decision = decide(PENDING, outcome)
    assert (decision.action, decision.new_status, decision.flags) == ("settle", status, ())
    assert outcome.result_code in decision.reason


@pytest.mark.parametrize(("outcome", "status"), FAILURE_OUTCOMES)
def test_failure_is_not_checked_against_amount_or_phone(outcome: PaymentOutcome, status: PaymentStatus) -> None:
    odd = dataclasses.replace(outcome, amount=999, phone="254799999999")
    decision = decide(PENDING, odd)
    assert (decision.action, decision.new_status, decision.flags) == ("settle", status, ())


@pytest.mark.parametrize(
    ("outcome", "flags"),
    [
        (success(amount=9), ("amount_mismatch",)),
        (success(amount=11), ("amount_mismatch",)),
        (success(amount=0), ("amount_mismatch",)),
        (success(amount=-10), ("amount_mismatch",)),
        (success(amount=10**30), ("amount_mismatch",)),
        (success(amount=None), ("missing_amount",)),
        (success(phone="254712345678"), ("phone_mismatch",)),
        (success(phone="254108374149"), ("phone_mismatch",)),
        (success(amount=1, phone="254712345678"), ("amount_mismatch", "phone_mismatch")),
        (success(mpesa_receipt_number=None), ("missing_receipt",)),
        (
            success(amount=1, phone="254712345678", mpesa_receipt_number=None),
            ("amount_mismatch", "phone_mismatch", "missing_receipt"),
        ),
        (success(amount=None, phone=None, mpesa_receipt_number=None), ("missing_amount", "missing_receipt")),
    ],
)
def test_suspicious_success_callback_stays_pending_with_flags(outcome: PaymentOutcome, flags: tuple[str, ...]) -> None:
    decision = decide(PENDING, outcome)
    assert decision.action == "flag"
    assert decision.new_status is None
    assert decision.flags == flags
    assert "pending" in decision.reason


def test_query_success_settles_without_amount_phone_or_receipt() -> None:
    outcome = PaymentOutcome(result_code="0", result_desc="The service request is processed successfully.")
    decision = decide(PENDING, outcome, "query")
    assert (decision.action, decision.new_status, decision.flags) == ("settle", SUCCEEDED, ("settled_by_query",))
    assert decision.reason == "query result code 0 -> succeeded"


def test_query_success_skips_checks_even_when_fields_are_present() -> None:
    decision = decide(PENDING, success(amount=1, phone="254712345678", mpesa_receipt_number=None), "query")
    assert (decision.action, decision.new_status, decision.flags) == ("settle", SUCCEEDED, ("settled_by_query",))


@pytest.mark.parametrize(("outcome", "status"), FAILURE_OUTCOMES)
def test_query_failure_settles_with_the_mapped_status_and_says_so(
    outcome: PaymentOutcome, status: PaymentStatus
) -> None:
    decision = decide(PENDING, outcome, "query")
    assert (decision.action, decision.new_status, decision.flags) == ("settle", status, ("settled_by_query",))


@pytest.mark.parametrize(("current", "outcome", "source"), list(itertools.product(TERMINAL, ALL_OUTCOMES, SOURCES)))
def test_terminal_payments_never_change_status(current: PaymentStatus, outcome: PaymentOutcome, source: str) -> None:
    decision = decide(current, outcome, source)
    assert decision.new_status is None
    assert decision.action in ("ignore", "flag")
    assert current.value in decision.reason


@pytest.mark.parametrize(
    ("current", "outcome", "source"),
    list(itertools.product(TERMINAL, [outcome for outcome, _ in FAILURE_OUTCOMES], SOURCES)),
)
def test_failure_after_settlement_is_ignored(current: PaymentStatus, outcome: PaymentOutcome, source: str) -> None:
    assert decide(current, outcome, source) == SettlementDecision(
        "ignore", None, (), f"already settled as {current.value}"
    )


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("outcome", [success(), success(amount=1), success(mpesa_receipt_number=None)])
def test_duplicate_success_is_ignored(outcome: PaymentOutcome, source: str) -> None:
    assert decide(SUCCEEDED, outcome, source) == SettlementDecision("ignore", None, (), "already settled as succeeded")


def test_sandbox_query_failure_never_overwrites_a_recorded_success() -> None:
    decision = decide(SUCCEEDED, failure("1032"), "query")
    assert decision.action == "ignore"
    assert decision.new_status is None


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("current", [FAILED, CANCELLED, TIMED_OUT])
def test_success_after_a_failed_status_is_flagged_not_applied(current: PaymentStatus, source: str) -> None:
    decision = decide(current, success(), source)
    assert decision.action == "flag"
    assert decision.new_status is None
    assert decision.flags == ("success_after_terminal",)


@pytest.mark.parametrize(
    ("current", "outcome", "source"), list(itertools.product(PaymentStatus, ALL_OUTCOMES, SOURCES))
)
def test_every_decision_is_consistent(current: PaymentStatus, outcome: PaymentOutcome, source: str) -> None:
    decision = decide(current, outcome, source)
    if decision.action == "settle":
        assert decision.new_status is not None
        assert is_legal_transition(current, decision.new_status)
    else:
        assert decision.new_status is None
    assert isinstance(decision.flags, tuple)
    assert decision.reason


def test_source_defaults_to_callback() -> None:
    assert decide_settlement(PENDING, EXPECTED_AMOUNT, EXPECTED_PHONE, success(mpesa_receipt_number=None)).action == (
        "flag"
    )


def test_unknown_source_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="source"):
        decide(PENDING, success(), "webhook")


def test_decision_and_outcome_are_immutable() -> None:
    decision = decide(PENDING, success())
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.action = "ignore"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        success().result_code = "1"  # type: ignore[misc]


@pytest.mark.parametrize(("code", "is_success"), [("0", True), ("1", False), ("1032", False), ("00", False)])
def test_outcome_is_success(code: str, is_success: bool) -> None:
    assert PaymentOutcome(result_code=code).is_success is is_success
