"""The payment: its states, the Daraja result-code mapping, and every rule about how a payment may change.

    Payment.initiate ──> pending (push sending) ──accept──> pending (push accepted) ──apply──> succeeded | failed
          │                  │                                                               | cancelled | timed_out
          │                  ├──refuse──> failed (push refused: nobody was prompted)
          │                  └──lease runs out / no answer──> pending (push unknown, flag outcome_unknown)
          │                                    ├──callback (routed by its URL token)──> any result above
          │                                    └──no callback by the deadline──> unconfirmed
          └── unconfirmed ──late success callback──> succeeded (flag success_after_terminal)

Statuses otherwise move only from ``pending`` to one terminal status and never again. ``decide_settlement`` is
the single rule for results, for callbacks and STK Push Query answers alike. ``Payment`` and ``Payer`` are
immutable: every method returns the new value and the caller stores it (with a precondition).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from gateway.domain.errors import ValidationError
from gateway.domain.limits import PhoneLimits, PhoneLock, RateLimited, SlidingWindow, admit_prompt, release_prompt
from gateway.domain.phone import mask_msisdn


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    # The push's outcome never became known and no callback came within the confirmation window.
    UNCONFIRMED = "unconfirmed"

    @property
    def is_terminal(self) -> bool:
        return self is not PaymentStatus.PENDING


def is_legal_transition(current: PaymentStatus, new: PaymentStatus) -> bool:
    """Only ``pending`` may change, and only to a terminal status; money received for an ``unconfirmed`` payment
    still turns it into ``succeeded``."""
    if current is PaymentStatus.UNCONFIRMED:
        return new is PaymentStatus.SUCCEEDED
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
    expected_msisdn: str | None,
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
    # Some sandbox callbacks omit PhoneNumber; its absence is not evidence of anything. A payment whose full number
    # cannot be known (its route is gone) cannot vouch for the payer either: a human looks.
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


# ------------------------------------------------------------------------------------------------ the entity

# Codes an STK Push Query may report as the end of a payment. Anything else (a code we do not know, or one that
# means "still being processed") leaves the payment pending: a query is a look, not a verdict.
FINAL_QUERY_RESULT_CODES: Final = frozenset(
    {"0", "1", "17", "1001", "1019", "1025", "1031", "1032", "1037", "2001", "9999", "SFC_IC0003"}
)

FLAG_OUTCOME_UNKNOWN: Final = "outcome_unknown"
FLAG_CHECKOUT_MISMATCH: Final = "checkout_request_mismatch"
# Flags that ask a human to look; the others only describe how the payment settled.
FLAGS_NEEDING_A_HUMAN: Final = frozenset(
    {
        FLAG_AMOUNT_MISMATCH,
        FLAG_PHONE_MISMATCH,
        FLAG_MISSING_AMOUNT,
        FLAG_MISSING_RECEIPT,
        FLAG_SUCCESS_AFTER_TERMINAL,
        FLAG_CHECKOUT_MISMATCH,
    }
)
_INT64_MAX: Final = 2**63 - 1


class PushState(StrEnum):
    """Where the STK push itself stands, apart from the payment's result.

    ``sending``: the intent is stored and Daraja is being called (or the instance died while calling it).
    ``accepted``: Daraja answered with a CheckoutRequestID. ``refused``: Daraja definitely refused; nobody was
    prompted. ``unknown``: Daraja's answer never came, so the payer may have been prompted; the callback (routed
    by its URL token) can still settle the payment.
    """

    SENDING = "sending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PaymentPolicy:
    """The timings a payment's life depends on (from Settings; pure values here so the rules stay testable)."""

    push_lease_s: float = 60.0
    reconcile_after_s: float = 90.0
    query_interval_s: float = 30.0
    pending_query_after_s: float = 30.0
    unconfirmed_after_s: float = 3600.0
    max_backoff_s: float = 6 * 3600.0


@dataclass(frozen=True)
class ReportedOutcome:
    """A result that was not applied (it did not match the payment), kept for a human to judge."""

    source: str
    result_code: str
    result_desc: str
    amount: str | None
    mpesa_receipt_number: str | None
    at: datetime


@dataclass(frozen=True)
class Payment:
    """One STK push payment and every rule about how it may change. Methods return a new Payment; no I/O."""

    id: str
    status: PaymentStatus
    amount: int
    # The full number is known to the server only: at creation, and when loaded with the payment's callback route
    # (server-only). The payment's own document, which the developer's browser may read, holds only `phone`, masked.
    msisdn: str | None
    account_reference: str
    description: str
    metadata: Mapping[str, Any]
    environment: str
    shortcode: str
    created_at: datetime
    updated_at: datetime
    push_state: PushState = PushState.SENDING
    push_lease_until: datetime | None = None
    currency: str = "KES"
    checkout_request_id: str | None = None
    merchant_request_id: str | None = None
    result_code: str | None = None
    result_desc: str | None = None
    mpesa_receipt_number: str | None = None
    transaction_date: str | None = None
    paid_phone: str | None = None  # the number the success callback names, masked like `phone`
    flags: tuple[str, ...] = ()
    reported_outcome: ReportedOutcome | None = None
    settled_at: datetime | None = None
    settled_by: str | None = None
    next_check_at: datetime | None = None
    query_attempts: int = 0
    last_queried_at: datetime | None = None
    phone: str = ""  # masked, as every reader sees it
    route_id: str | None = None  # sha256 of the callback URL token: names the server-only route document

    # ------------------------------------------------------------------------------------------ creation
    @classmethod
    def initiate(
        cls,
        *,
        payment_id: str,
        msisdn: str,
        amount: int,
        account_reference: str,
        description: str,
        metadata: Mapping[str, Any],
        environment: str,
        shortcode: str,
        now: datetime,
        policy: PaymentPolicy,
        route_id: str | None = None,
    ) -> Payment:
        """The intent, stored before Daraja is called: pending, no CheckoutRequestID, and a lease on the push."""
        lease_until = now + timedelta(seconds=policy.push_lease_s)
        return cls(
            id=payment_id,
            status=PaymentStatus.PENDING,
            amount=amount,
            msisdn=msisdn,
            phone=mask_msisdn(msisdn),
            route_id=route_id,
            account_reference=account_reference,
            description=description,
            metadata=dict(metadata),
            environment=environment,
            shortcode=shortcode,
            created_at=now,
            updated_at=now,
            push_state=PushState.SENDING,
            push_lease_until=lease_until,
            # The reconciler's first look is when the lease ends: by then the push has an answer or never will.
            next_check_at=lease_until,
        )

    # ------------------------------------------------------------------------------------- the push's answer
    def accept(
        self, checkout_request_id: str, merchant_request_id: str, now: datetime, policy: PaymentPolicy
    ) -> Payment:
        """Daraja accepted the push. The status is left alone: a callback may already have settled it."""
        flags = set(self.flags) - {FLAG_OUTCOME_UNKNOWN}
        checkout = self.checkout_request_id
        if checkout is not None and checkout != checkout_request_id:
            # The callback routed by our token named another request: keep what the callback said, ask a human.
            flags.add(FLAG_CHECKOUT_MISMATCH)
        else:
            checkout = checkout_request_id
        next_check = self.next_check_at
        if self.status is PaymentStatus.PENDING:
            next_check = now + timedelta(seconds=policy.reconcile_after_s)
        return replace(
            self,
            push_state=PushState.ACCEPTED,
            push_lease_until=None,
            checkout_request_id=checkout,
            merchant_request_id=self.merchant_request_id or merchant_request_id or None,
            flags=tuple(sorted(flags)),
            next_check_at=next_check,
            updated_at=now,
        )

    def refuse(self, code: str, description: str, now: datetime) -> Payment:
        """Daraja definitely refused the push: nobody was prompted, so the payment ends ``failed``."""
        if self.push_state is not PushState.SENDING or self.status is not PaymentStatus.PENDING:
            return self
        return self._ended(
            PaymentStatus.FAILED,
            "push",
            now,
            push_state=PushState.REFUSED,
            push_lease_until=None,
            result_code=code,
            result_desc=description,
        )

    def mark_outcome_unknown(self, now: datetime, policy: PaymentPolicy) -> Payment:
        """Daraja's answer never came (or the instance calling it died): the callback may still settle it."""
        if self.push_state is not PushState.SENDING:
            return self
        next_check = self.next_check_at
        if self.status is PaymentStatus.PENDING:
            next_check = self.unconfirmed_deadline(policy)
        return replace(
            self,
            push_state=PushState.UNKNOWN,
            push_lease_until=None,
            flags=tuple(sorted(set(self.flags) | {FLAG_OUTCOME_UNKNOWN})),
            next_check_at=next_check,
            updated_at=now,
        )

    def lease_expired(self, now: datetime) -> bool:
        """True when the push is still ``sending`` after its lease: whoever was calling Daraja is gone."""
        return (
            self.push_state is PushState.SENDING and self.push_lease_until is not None and self.push_lease_until <= now
        )

    def unconfirmed_deadline(self, policy: PaymentPolicy) -> datetime:
        return self.created_at + timedelta(seconds=policy.unconfirmed_after_s)

    # ------------------------------------------------------------------------------------------ results
    def with_msisdn(self, msisdn: str | None) -> Payment:
        """The payment with its full number, from the server-only route, when its document did not carry it."""
        if self.msisdn is not None or msisdn is None:
            return self
        return replace(self, msisdn=msisdn)

    def answers_to(self, checkout_request_id: str) -> bool:
        """Whether a callback naming this CheckoutRequestID may settle the payment its URL token routed it to: yes
        while we do not know the payment's own id yet (the callback came first), else only for that id."""
        return self.checkout_request_id is None or self.checkout_request_id == checkout_request_id

    def apply(
        self,
        outcome: PaymentOutcome,
        source: OutcomeSource,
        now: datetime,
        checkout_request_id: str | None = None,
    ) -> Settlement:
        """Apply a callback's or a query's result. Returns the decision and the payment after it."""
        if source == "query" and self.status is PaymentStatus.PENDING and not is_final_query_code(outcome.result_code):
            decision = SettlementDecision(
                "ignore", None, (), f"query result code {outcome.result_code} is not final; still pending"
            )
            return Settlement(self, self, decision)
        if self.status is PaymentStatus.UNCONFIRMED:
            decision = _decide_after_unconfirmed(self, outcome, source)
        else:
            decision = decide_settlement(self.status, self.amount, self.msisdn, outcome, source)
        after = self
        if checkout_request_id is not None and self.checkout_request_id is None:
            after = replace(after, checkout_request_id=checkout_request_id)
        if checkout_request_id is not None and self.push_state in (PushState.SENDING, PushState.UNKNOWN):
            # The callback reached us through our URL token before Daraja's answer to the push was stored (or
            # instead of it): it proves Daraja accepted the push, and names the request.
            after = replace(
                after,
                push_state=PushState.ACCEPTED,
                push_lease_until=None,
                flags=tuple(flag for flag in after.flags if flag != FLAG_OUTCOME_UNKNOWN),
            )
        if decision.action == "ignore":
            return Settlement(self, after if after == self else replace(after, updated_at=now), decision)
        flags = tuple(sorted(set(after.flags) | set(decision.flags)))
        if decision.action == "flag":
            reported = ReportedOutcome(
                source=source,
                result_code=outcome.result_code,
                result_desc=outcome.result_desc,
                amount=None if outcome.amount is None else str(outcome.amount),
                mpesa_receipt_number=outcome.mpesa_receipt_number,
                at=now,
            )
            return Settlement(self, replace(after, flags=flags, reported_outcome=reported, updated_at=now), decision)
        assert decision.new_status is not None
        settled = after._ended(
            decision.new_status,
            source,
            now,
            result_code=outcome.result_code,
            result_desc=outcome.result_desc,
            flags=flags,
        )
        if decision.new_status is PaymentStatus.SUCCEEDED:
            settled = replace(
                settled,
                mpesa_receipt_number=outcome.mpesa_receipt_number,
                transaction_date=outcome.transaction_date,
                paid_phone=mask_msisdn(outcome.phone) if outcome.phone else None,
            )
        return Settlement(self, settled, decision)

    # ----------------------------------------------------------------------------------- lost callbacks
    def query_due(self, now: datetime, policy: PaymentPolicy) -> bool:
        """A pending, accepted payment whose callback is late, and not asked about within the interval."""
        if self.status is not PaymentStatus.PENDING or self.checkout_request_id is None:
            return False
        if now - self.created_at < timedelta(seconds=policy.pending_query_after_s):
            return False
        return self.last_queried_at is None or now - self.last_queried_at >= timedelta(seconds=policy.query_interval_s)

    def claim_query(self, now: datetime, policy: PaymentPolicy) -> Payment | None:
        """The payment with this query recorded and the next look pushed back (doubling, capped); None if the
        query is not due. Storing it with a precondition lets exactly one caller per interval ask Daraja."""
        if self.status is not PaymentStatus.PENDING or self.checkout_request_id is None:
            return None
        if self.last_queried_at is not None and now - self.last_queried_at < timedelta(seconds=policy.query_interval_s):
            return None
        attempts = self.query_attempts + 1
        # The exponent is capped: from 2**1023 on, the product no longer fits in a float and would raise.
        delay_s = min(max(policy.reconcile_after_s, 1.0) * 2 ** min(attempts, 64), policy.max_backoff_s)
        return replace(
            self,
            last_queried_at=now,
            query_attempts=attempts,
            next_check_at=now + timedelta(seconds=delay_s),
            updated_at=now,
        )

    def without_answer(self, now: datetime, policy: PaymentPolicy) -> Payment | None:
        """What the reconciler does with a pending payment that has no CheckoutRequestID, or None.

        A push whose lease ran out becomes ``outcome_unknown``; an unknown outcome with no callback by the
        deadline ends ``unconfirmed`` (a late success callback still turns it into ``succeeded``).
        """
        if self.status is not PaymentStatus.PENDING or self.checkout_request_id is not None:
            return None
        current = self
        if current.push_state is PushState.SENDING:
            if not current.lease_expired(now):
                return None
            current = current.mark_outcome_unknown(now, policy)
        if current.push_state is PushState.UNKNOWN and now >= current.unconfirmed_deadline(policy):
            return current._ended(
                PaymentStatus.UNCONFIRMED,
                "reconcile",
                now,
                result_desc="no answer from Daraja and no callback within the confirmation window",
            )
        return current if current is not self else None

    @property
    def needs_a_human(self) -> bool:
        return bool(FLAGS_NEEDING_A_HUMAN & set(self.flags))

    def _ended(self, status: PaymentStatus, by: str, now: datetime, **changes: Any) -> Payment:
        """The payment moved to `status` by `by`: settled now, and the reconciler never looks at it again."""
        return replace(
            self, status=status, settled_at=now, settled_by=by, next_check_at=None, updated_at=now, **changes
        )


@dataclass(frozen=True)
class Settlement:
    """A result applied to a payment: before, after, and the decision that links them."""

    before: Payment
    after: Payment
    decision: SettlementDecision

    @property
    def changed(self) -> bool:
        return self.after != self.before

    @property
    def counts_for_payer(self) -> bool:
        return self.decision.action == "settle"


def is_final_query_code(code: str) -> bool:
    return code.strip() in FINAL_QUERY_RESULT_CODES


def _decide_after_unconfirmed(payment: Payment, outcome: PaymentOutcome, source: OutcomeSource) -> SettlementDecision:
    """Money received is never hidden: a success for an ``unconfirmed`` payment settles it as ``succeeded``."""
    if not outcome.is_success:
        return SettlementDecision("ignore", None, (), f"already settled as {payment.status.value}")
    pending = decide_settlement(PaymentStatus.PENDING, payment.amount, payment.msisdn, outcome, source)
    flags = tuple(sorted(set(pending.flags) | {FLAG_SUCCESS_AFTER_TERMINAL}))
    if pending.action == "settle":
        return SettlementDecision(
            "settle", PaymentStatus.SUCCEEDED, flags, f"a late {source} reported success for an unconfirmed payment"
        )
    return SettlementDecision("flag", None, flags, pending.reason)


# ------------------------------------------------------------------------------------------------ payers


@dataclass(frozen=True)
class Payer:
    """What one developer knows about one payer's phone: results counted once per payment that settles, and the
    phone's prompt limits (the recent prompts, and the payment whose prompt may be on the phone now). Kept in a
    server-only document: it names the full number."""

    msisdn: str
    first_seen_at: datetime
    last_seen_at: datetime
    payment_count: int = 0
    succeeded_count: int = 0
    total_paid: int = 0
    recent_prompts: SlidingWindow = field(default_factory=SlidingWindow)
    in_flight: PhoneLock | None = None

    @classmethod
    def first_seen(cls, msisdn: str, now: datetime) -> Payer:
        return cls(msisdn=msisdn, first_seen_at=now, last_seen_at=now)

    def admit(self, payment_id: str, limits: PhoneLimits, now: datetime) -> Payer | RateLimited:
        """One more prompt for `payment_id`, or why not now."""
        admitted = admit_prompt(self.recent_prompts, self.in_flight, payment_id, limits, now)
        if isinstance(admitted, RateLimited):
            return admitted
        window, lock = admitted
        return replace(self, recent_prompts=window, in_flight=lock, last_seen_at=now)

    def release(self, payment_id: str) -> Payer:
        """`payment_id` no longer holds the phone: it settled, or Daraja refused it before anyone was prompted."""
        return replace(self, in_flight=release_prompt(self.in_flight, payment_id))

    def count(self, settlement: Settlement, now: datetime) -> Payer:
        before, after = settlement.before, settlement.after
        if not settlement.counts_for_payer:
            return self
        newly_succeeded = after.status is PaymentStatus.SUCCEEDED and before.status is not PaymentStatus.SUCCEEDED
        paid = min(after.amount, _INT64_MAX - self.total_paid) if newly_succeeded else 0
        # A payment that left pending no longer holds the phone: its prompt is over.
        payer = self.release(after.id) if after.status is not PaymentStatus.PENDING else self
        return replace(
            payer,
            last_seen_at=now,
            payment_count=self.payment_count + 1,
            succeeded_count=self.succeeded_count + (1 if newly_succeeded else 0),
            total_paid=self.total_paid + paid,
        )
