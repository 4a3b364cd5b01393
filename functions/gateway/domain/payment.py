"""Payment states, the Daraja result-code mapping, and the one rule deciding what a payment result does to a payment.

Statuses move only from ``pending`` to one terminal status and never again. ``decide_settlement`` is the single
place that applies this, for callbacks and for STK Push Query answers alike; the caller stores what it decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from gateway.domain.errors import ValidationError


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self is not PaymentStatus.PENDING


def is_legal_transition(current: PaymentStatus, new: PaymentStatus) -> bool:
    """Only ``pending`` may change, and only to a terminal status."""
    return current is PaymentStatus.PENDING and new.is_terminal


SUCCESS_RESULT_CODE: Final = "0"

# 1031/1032: the payer dismissed the prompt. 1037: no answer from the handset. 1019: the prompt expired.
_STATUS_BY_RESULT_CODE: Final[dict[str, PaymentStatus]] = {
    SUCCESS_RESULT_CODE: PaymentStatus.SUCCEEDED,
    "1031": PaymentStatus.CANCELLED,
    "1032": PaymentStatus.CANCELLED,
    "1019": PaymentStatus.TIMED_OUT,
    "1037": PaymentStatus.TIMED_OUT,
}

_MAX_RESULT_CODE_LENGTH = 64


def status_for_result_code(code: str) -> PaymentStatus:
    """Map a normalized Daraja ResultCode to the terminal status it means; every unknown code is a failure."""
    return _STATUS_BY_RESULT_CODE.get(code.strip(), PaymentStatus.FAILED)


def normalize_result_code(raw: object) -> str:
    """Turn a ResultCode that arrived as a number or a string into one canonical string (``0``, ``"0"`` -> ``"0"``).

    Unknown codes such as ``SFC_IC0003`` are kept as they are: they are recorded, not interpreted.
    """
    if isinstance(raw, bool):
        raise _invalid_result_code()
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        # A fractional code does not exist; reading 0.5 as "0" would turn garbage into a success.
        if not math.isfinite(raw) or not raw.is_integer():
            raise _invalid_result_code()
        return str(int(raw))
    if isinstance(raw, str):
        code = raw.strip()
        if not code or len(code) > _MAX_RESULT_CODE_LENGTH or not code.isprintable():
            raise _invalid_result_code()
        return code
    raise _invalid_result_code()


def _invalid_result_code() -> ValidationError:
    return ValidationError("invalid_result_code", "ResultCode must be a number or a short string", "ResultCode")


@dataclass(frozen=True)
class PaymentOutcome:
    """What Daraja said about one payment, from a callback or a query, already parsed and normalized."""

    result_code: str
    result_desc: str = ""
    amount: int | None = None
    mpesa_receipt_number: str | None = None
    transaction_date: str | None = None
    phone: str | None = None

    @property
    def is_success(self) -> bool:
        return self.result_code == SUCCESS_RESULT_CODE


OutcomeSource = Literal["callback", "query"]
SettlementAction = Literal["settle", "flag", "ignore"]

FLAG_AMOUNT_MISMATCH: Final = "amount_mismatch"
FLAG_PHONE_MISMATCH: Final = "phone_mismatch"
FLAG_MISSING_AMOUNT: Final = "missing_amount"
FLAG_MISSING_RECEIPT: Final = "missing_receipt"
FLAG_SETTLED_BY_QUERY: Final = "settled_by_query"
FLAG_SUCCESS_AFTER_TERMINAL: Final = "success_after_terminal"


@dataclass(frozen=True)
class SettlementDecision:
    """What to do with a payment.

    - ``settle``: move the pending payment to ``new_status`` and record ``flags``.
    - ``flag``: leave the status as it is and record ``flags`` for a human or the reconciler to look at.
    - ``ignore``: change nothing (duplicates, late results for settled payments).
    """

    action: SettlementAction
    new_status: PaymentStatus | None
    flags: tuple[str, ...]
    reason: str


def decide_settlement(
    current_status: PaymentStatus,
    expected_amount: int,
    expected_msisdn: str,
    outcome: PaymentOutcome,
    source: OutcomeSource = "callback",
) -> SettlementDecision:
    """Decide what ``outcome`` does to a payment that is currently ``current_status``.

    A success is only trusted when it matches what was asked for: the callback is unsigned, so a success for the
    wrong amount or the wrong payer stays pending with a flag rather than releasing goods. A query answer carries
    no amount, phone or receipt, but it comes from Daraja over an authenticated call, so it settles on its own.
    """
    if source not in ("callback", "query"):
        raise ValueError(f"unknown outcome source {source!r}")

    if current_status.is_terminal:
        if outcome.is_success and current_status is not PaymentStatus.SUCCEEDED:
            # Money may have moved for a payment already recorded as failed; terminal means it stays that way,
            # but someone must look at it.
            return SettlementDecision(
                "flag",
                None,
                (FLAG_SUCCESS_AFTER_TERMINAL,),
                f"already settled as {current_status.value}; a later {source} reported success",
            )
        return SettlementDecision("ignore", None, (), f"already settled as {current_status.value}")

    new_status = status_for_result_code(outcome.result_code)

    if source == "query":
        return SettlementDecision(
            "settle", new_status, (FLAG_SETTLED_BY_QUERY,), _describe(outcome, new_status, source)
        )

    if new_status is not PaymentStatus.SUCCEEDED:
        return SettlementDecision("settle", new_status, (), _describe(outcome, new_status, source))

    flags: list[str] = []
    if outcome.amount is None:
        flags.append(FLAG_MISSING_AMOUNT)
    elif outcome.amount != expected_amount:
        flags.append(FLAG_AMOUNT_MISMATCH)
    # Some sandbox callbacks omit PhoneNumber; its absence is not evidence of anything.
    if outcome.phone is not None and outcome.phone != expected_msisdn:
        flags.append(FLAG_PHONE_MISMATCH)
    if outcome.mpesa_receipt_number is None:
        flags.append(FLAG_MISSING_RECEIPT)
    if flags:
        return SettlementDecision(
            "flag", None, tuple(flags), "success callback does not match the payment; left pending"
        )
    return SettlementDecision("settle", PaymentStatus.SUCCEEDED, (), _describe(outcome, new_status, source))


def _describe(outcome: PaymentOutcome, status: PaymentStatus, source: OutcomeSource) -> str:
    return f"{source} result code {outcome.result_code} -> {status.value}"
