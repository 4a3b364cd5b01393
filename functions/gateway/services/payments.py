"""Push a payment, intent first, and read payments.

A push is at most two commits. The first stores the payment (``pending``, push ``sending``, no
CheckoutRequestID), the route of its callback token and, when keyed, the idempotency claim, all before Daraja is
called, so a payer is never prompted for a payment we have no record of. The second stores Daraja's answer:
the CheckoutRequestID (``accepted``), a refusal (``failed``, nobody was prompted, the key is released) or an
unknown outcome (``outcome_unknown``: the callback, routed by its URL token, still settles it). See
gateway.domain.payment for the states.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gateway import errors
from gateway.daraja import DarajaApp, DarajaClient, DarajaOutcomeUnknown, StkPushAccepted, StkPushOrder
from gateway.domain.idempotency import IdempotencyRecord, Verdict
from gateway.domain.payment import Payment, PaymentStatus, PushState
from gateway.domain.phone import mask_msisdn
from gateway.domain.validation import StkPushRequest, canonical_fingerprint, parse_stk_push_request
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.repository import (
    CallbackRoute,
    CreateCallbackRoute,
    DeleteIdempotency,
    PaymentStore,
    SaveIdempotency,
    SavePayment,
    Versioned,
    Write,
    WriteConflict,
    update_payment,
)
from gateway.secrets import CredentialStore
from gateway.services.common import UseCase, app_for_setup, require_setup, sha256_hex
from gateway.services.settlement import Settlement
from gateway.settings import Settings

_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
_MAX_LIST_LIMIT = 100
_MAX_CLAIM_ATTEMPTS = 3

PushOutcome = Literal["created", "outcome_unknown", "replayed"]


@dataclass(frozen=True)
class PushResult:
    """A push's answer: Daraja accepted it (`created`), its outcome is unknown (the payment exists and will be
    settled by its callback or end `unconfirmed`), or an earlier request with the same key answered (`replayed`)."""

    payment: Payment
    outcome: PushOutcome

    @property
    def accepted(self) -> bool:
        return self.payment.push_state is PushState.ACCEPTED


@dataclass(frozen=True)
class PaymentPage:
    payments: list[Payment]
    next_page_token: str | None


class Payments(UseCase):
    def __init__(
        self,
        settings: Settings,
        repository: PaymentStore,
        credentials: CredentialStore,
        daraja: DarajaClient,
        settlement: Settlement,
        now: Callable[[], datetime],
    ) -> None:
        super().__init__(settings, repository, credentials, daraja, now)
        # A read of a late payment asks Daraja through the settlement use case.
        self._settlement = settlement

    # ------------------------------------------------------------------------------------------------ push
    def push(self, developer: Developer, body: object, idempotency_key: str | None) -> PushResult:
        request = parse_stk_push_request(body, self._settings.max_amount)
        key_hash = idempotency_key_hash(idempotency_key)
        setup = require_setup(self._repo.ensure_developer(developer.uid, developer.email))
        # The secret is fetched before the intent: if Secret Manager is down, nothing is stored and nobody prompted.
        app = app_for_setup(self._credentials, developer.uid, setup)
        fingerprint = canonical_fingerprint(request)
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            intent = self._store_intent(developer.uid, request, setup, key_hash, fingerprint)
            if isinstance(intent, PushResult):
                return intent
            if intent is not None:
                return self._send(developer.uid, app, request, intent, key_hash)
        raise errors.IdempotencyConflict(
            "idempotency_in_progress",
            "this Idempotency-Key is changing hands; retry shortly",
            "Idempotency-Key",
            retry_after_s=1,
        )

    def _store_intent(
        self,
        uid: str,
        request: StkPushRequest,
        setup: dict[str, object],
        key_hash: str | None,
        fingerprint: str,
    ) -> _Intent | PushResult | None:
        """Commit one: the payment, its callback route and the key's claim. Returns the intent, an earlier
        request's answer for this key, or None when an expired claim was cleared and the caller should try again."""
        now = self._now()
        payment = Payment.initiate(
            payment_id="pay_" + secrets.token_hex(12),
            msisdn=request.phone,
            amount=request.amount,
            account_reference=request.account_reference,
            description=request.description,
            metadata=request.metadata,
            environment=str(setup["environment"]),
            shortcode=str(setup["shortcode"]),
            now=now,
            policy=self._policy,
        )
        token = secrets.token_urlsafe(24)
        claim = None
        writes: list[Write] = [
            SavePayment(uid, payment),
            CreateCallbackRoute(sha256_hex(token), CallbackRoute(uid, payment.id), now),
        ]
        if key_hash is not None:
            claim = IdempotencyRecord.claim(
                fingerprint, payment.id, now, self._settings.push_lease_s, self._settings.idempotency_ttl_s
            )
            writes.append(SaveIdempotency(uid, key_hash, claim, create=True))
        try:
            versions = self._repo.commit(writes)
        except WriteConflict:
            if key_hash is None:
                raise
            return self._existing_claim(uid, key_hash, fingerprint)
        return _Intent(Versioned(payment, versions[0]), token, claim)

    def _existing_claim(self, uid: str, key_hash: str, fingerprint: str) -> PushResult | None:
        loaded = self._repo.load_idempotency(uid, key_hash)
        if loaded is None:
            return None  # released or expired meanwhile: claim it afresh
        record = loaded.value
        now = self._now()
        verdict = record.verdict(fingerprint, now)
        if verdict is Verdict.EXPIRED:
            # TTL deletion runs within a day, not on the dot: an expired claim is as good as absent. Only the claim
            # we read is deleted: if another request replaced it meanwhile, its fresh claim stands and we read again.
            try:
                self._repo.commit([DeleteIdempotency(uid, key_hash, loaded.version)])
            except WriteConflict:
                pass
            return None
        if verdict is Verdict.CONFLICT:
            raise errors.IdempotencyConflict(
                "idempotency_conflict",
                "this Idempotency-Key was already used with a different request body",
                "Idempotency-Key",
            )
        if verdict is Verdict.IN_PROGRESS:
            raise errors.IdempotencyConflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed; retry shortly",
                "Idempotency-Key",
                retry_after_s=record.retry_after_s(now),
            )
        log_event(Event.IDEMPOTENT_REPLAY, uid=uid, payment_id=record.payment_id, verdict=verdict.value)
        if verdict is Verdict.LEASE_EXPIRED:
            # Whoever held the claim is gone, maybe after prompting the payer: answer from its payment, never push.
            def lapse(payment: Payment) -> tuple[Payment, list[Write]]:
                return payment.mark_outcome_unknown(self._now(), self._policy), [
                    SaveIdempotency(uid, key_hash, record.answered(202))
                ]

            payment = update_payment(self._repo, uid, record.payment_id, lapse)
        else:
            found = self._repo.load_payment(uid, record.payment_id)
            payment = found.value if found is not None else None
        if payment is None:
            raise errors.ServerError("payment_missing", "the payment this Idempotency-Key created cannot be found")
        return PushResult(payment, "replayed")

    def _send(
        self, uid: str, app: DarajaApp, request: StkPushRequest, intent: _Intent, key_hash: str | None
    ) -> PushResult:
        """Call Daraja, then commit two: whatever it said."""
        payment = intent.payment.value
        order = StkPushOrder(
            amount=request.amount,
            phone=request.phone,
            callback_url=f"{self._settings.callback_base_url}/{intent.callback_token}",
            account_reference=request.account_reference,
            description=request.description,
        )
        try:
            accepted = self._daraja.stk_push(app, order)
        except DarajaOutcomeUnknown as unknown:
            log_event(
                Event.STK_PUSH_UNCERTAIN,
                "WARNING",
                uid=uid,
                payment_id=payment.id,
                phone=mask_msisdn(request.phone),
                amount=request.amount,
                code=unknown.code,
            )
            return PushResult(self._record_unknown(uid, intent, key_hash), "outcome_unknown")
        except errors.GatewayError as refused:
            log_event(
                Event.STK_PUSH_REJECTED,
                "WARNING",
                uid=uid,
                payment_id=payment.id,
                phone=mask_msisdn(request.phone),
                code=refused.code,
                daraja_code=getattr(refused, "daraja_code", None),
            )
            self._record_refusal(uid, intent, key_hash, refused)
            refused.details.setdefault("payment_id", payment.id)
            raise
        except BaseException:
            # Our own failure while Daraja may have been reached: never claim nobody was prompted.
            self._record_unknown(uid, intent, key_hash)
            raise
        return self._record_accepted(uid, intent, key_hash, accepted)

    def _record_accepted(
        self, uid: str, intent: _Intent, key_hash: str | None, accepted: StkPushAccepted
    ) -> PushResult:
        def accept(payment: Payment) -> tuple[Payment, list[Write]]:
            after = payment.accept(
                accepted.checkout_request_id, accepted.merchant_request_id, self._now(), self._policy
            )
            return after, self._answer_writes(uid, key_hash, intent, 201)

        try:
            stored = update_payment(self._repo, uid, intent.payment.value.id, accept, intent.payment)
        except Exception as failure:  # noqa: BLE001 - any storage failure: the intent still routes the callback
            log_event(
                Event.PAYMENT_NOT_RECORDED,
                "CRITICAL",
                uid=uid,
                payment_id=intent.payment.value.id,
                checkout_request_id=accepted.checkout_request_id,
                exception=type(failure).__name__,
            )
            shown = intent.payment.value.mark_outcome_unknown(self._now(), self._policy)
            return PushResult(shown, "outcome_unknown")
        assert stored is not None
        log_event(
            Event.STK_PUSH_SENT,
            uid=uid,
            payment_id=stored.id,
            phone=mask_msisdn(stored.msisdn),
            amount=stored.amount,
            checkout_request_id=accepted.checkout_request_id,
        )
        return PushResult(stored, "created")

    def _record_unknown(self, uid: str, intent: _Intent, key_hash: str | None) -> Payment:
        def lapse(payment: Payment) -> tuple[Payment, list[Write]]:
            return payment.mark_outcome_unknown(self._now(), self._policy), self._answer_writes(
                uid, key_hash, intent, 202
            )

        try:
            stored = update_payment(self._repo, uid, intent.payment.value.id, lapse, intent.payment)
        except Exception as failure:  # noqa: BLE001 - the intent is stored: its lease and the reconciler take over
            log_event(
                Event.PAYMENT_NOT_RECORDED,
                "ERROR",
                uid=uid,
                payment_id=intent.payment.value.id,
                exception=type(failure).__name__,
            )
            return intent.payment.value.mark_outcome_unknown(self._now(), self._policy)
        return stored or intent.payment.value

    def _record_refusal(self, uid: str, intent: _Intent, key_hash: str | None, refused: errors.GatewayError) -> None:
        code = str(getattr(refused, "daraja_code", None) or refused.code)

        def refuse(payment: Payment) -> tuple[Payment, list[Write]]:
            # Nobody was prompted: the key is released so a retry with it can try again.
            release: list[Write] = [DeleteIdempotency(uid, key_hash)] if key_hash is not None else []
            return payment.refuse(code, refused.message, self._now()), release

        try:
            update_payment(self._repo, uid, intent.payment.value.id, refuse, intent.payment)
        except Exception as failure:  # noqa: BLE001 - the refusal stands; the reconciler ends the intent later
            log_event(
                Event.PAYMENT_NOT_RECORDED,
                "ERROR",
                uid=uid,
                payment_id=intent.payment.value.id,
                exception=type(failure).__name__,
            )

    @staticmethod
    def _answer_writes(uid: str, key_hash: str | None, intent: _Intent, status: int) -> list[Write]:
        if key_hash is None or intent.claim is None:
            return []
        return [SaveIdempotency(uid, key_hash, intent.claim.answered(status))]

    # ----------------------------------------------------------------------------------------------- reads
    def get(self, developer: Developer, payment_id: str | None, checkout_request_id: str | None) -> Payment:
        self._repo.ensure_developer(developer.uid, developer.email)
        loaded: Versioned[Payment] | None = None
        if checkout_request_id is not None:
            loaded = self._repo.find_payment_by_checkout(developer.uid, checkout_request_id)
        elif payment_id:
            loaded = self._repo.load_payment(developer.uid, payment_id)
        if loaded is None:
            raise errors.NotFound(
                "payment_not_found", "no such payment", "id" if checkout_request_id is None else "checkout_request_id"
            )
        return self._settlement.query_if_late(developer.uid, loaded)

    def list(
        self, developer: Developer, status: str | None, limit_raw: str | None, page_token: str | None
    ) -> PaymentPage:
        self._repo.ensure_developer(developer.uid, developer.email)
        if status is not None and status not in {s.value for s in PaymentStatus}:
            raise errors.InvalidRequest(
                "invalid_status", f"status must be one of {', '.join(s.value for s in PaymentStatus)}", "status"
            )
        page, next_token = self._repo.list_payments(developer.uid, status, parse_limit(limit_raw), page_token or None)
        return PaymentPage(page, next_token)


@dataclass(frozen=True)
class _Intent:
    payment: Versioned[Payment]
    callback_token: str
    claim: IdempotencyRecord | None


def idempotency_key_hash(key: str | None) -> str | None:
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise errors.InvalidRequest(
            "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters", "Idempotency-Key"
        )
    return sha256_hex(key)


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 20
    # Length first: int() of thousands of digits raises ValueError (Python's digit limit), never a 400.
    if len(raw) > 3 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIST_LIMIT:
        raise errors.InvalidRequest(
            "invalid_limit", f"limit must be a whole number from 1 to {_MAX_LIST_LIMIT}", "limit"
        )
    return int(raw)
