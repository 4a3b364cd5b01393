"""Push a payment, intent first, and read payments.

A push is at most two commits. The first stores the payment (``pending``, push ``sending``, no
CheckoutRequestID), the route of its callback token and, when keyed, the idempotency claim, all before Daraja is
called, so a payer is never prompted for a payment we have no record of. The second stores Daraja's answer:
the CheckoutRequestID (``accepted``), a refusal (``failed``, nobody was prompted, the key is released) or an
unknown outcome (``outcome_unknown``: the callback, routed by its URL token, still settles it). See
gateway.domain.payment for the states.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gateway import errors
from gateway.daraja import DarajaApp, DarajaClient, DarajaOutcomeUnknown, StkPushAccepted, StkPushOrder
from gateway.domain.idempotency import IdempotencyRecord, Verdict
from gateway.domain.limits import DeveloperLimits, PushShard
from gateway.domain.limits import RateLimited as RateLimitedPush
from gateway.domain.payment import Payer, Payment, PaymentStatus, PushState
from gateway.domain.phone import mask_msisdn
from gateway.domain.validation import (
    StkPushRequest,
    canonical_fingerprint,
    parse_environment,
    parse_stk_push_request,
)
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.repository import (
    CallbackRoute,
    CreateCallbackRoute,
    DeleteIdempotency,
    PaymentStore,
    PushContext,
    SaveIdempotency,
    SavePayer,
    SaveShard,
    Versioned,
    Write,
    WriteConflict,
)
from gateway.secrets import CredentialStore
from gateway.services.common import (
    UseCase,
    developer_limits,
    load_app,
    phone_limits,
    resolve_environment,
    save_payment,
    sha256_hex,
    update_payment,
)
from gateway.services.settlement import Settlement
from gateway.settings import Settings

_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
_MAX_LIST_LIMIT = 100
# How often a push that lost its intent commit to a racing push reads again and retries (jittered backoff, about
# 1.5 s in all) before it is told to retry later.
_MAX_INTENT_ATTEMPTS = 10

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
        self._phone_limits = phone_limits(settings)

    # ------------------------------------------------------------------------------------------------ push
    def push(self, developer: Developer, body: object, idempotency_key: str | None) -> PushResult:
        request = parse_stk_push_request(body, self._settings.max_amount)
        key_hash = idempotency_key_hash(idempotency_key)
        environment = resolve_environment(request.environment, developer)  # a key's 403 costs no read
        # One round trip reads everything the push decides on: the set-up, the payer's phone, one limiter shard.
        context = self._repo.load_push_context(developer.uid, request.phone, self._pick_shard())
        # The secret is fetched before the intent: if Secret Manager is down, nothing is stored and nobody prompted.
        setup, app = load_app(self._repo, self._credentials, developer, context.developer or {}, environment)
        fingerprint = canonical_fingerprint(request)
        intent = self._store_intent(developer.uid, request, setup, key_hash, fingerprint, context)
        if isinstance(intent, PushResult):
            return intent
        return self._send(developer.uid, app, request, intent, key_hash)

    def _pick_shard(self) -> int:
        return secrets.randbelow(self._settings.limit_shards)

    def _store_intent(
        self,
        uid: str,
        request: StkPushRequest,
        setup: dict[str, object],
        key_hash: str | None,
        fingerprint: str,
        context: PushContext,
    ) -> _Intent | PushResult:
        """Commit one: the payment, its callback route, the key's claim, and the limits it draws on (the payer's
        phone lock and a limiter shard), all with preconditions. Returns the intent, or an earlier request's answer
        for this key.

        Of racing pushes one commit wins; the others (whichever document they lost on: the key, the phone or the
        shard) back off, read again and decide again, so the limits hold across instances.
        """
        environment = str(setup["environment"])
        limits = developer_limits(self._settings, context.developer or {}, environment)
        backoff_s = 0.02
        for attempt in range(1, _MAX_INTENT_ATTEMPTS + 1):
            now = self._now()
            token = secrets.token_urlsafe(24)
            route_id = sha256_hex(token)
            payment = Payment.initiate(
                payment_id="pay_" + secrets.token_hex(12),
                msisdn=request.phone,
                amount=request.amount,
                account_reference=request.account_reference,
                description=request.description,
                metadata=request.metadata,
                environment=environment,
                shortcode=str(setup["shortcode"]),
                now=now,
                policy=self._policy,
                route_id=route_id,
            )
            admitted = self._admit(uid, request.phone, environment, limits, payment.id, now, context)
            if isinstance(admitted, RateLimitedPush):
                # A retry of a request already made with this key is answered from it, never refused as a new push.
                earlier = self._existing_claim(uid, key_hash, fingerprint) if key_hash is not None else None
                if earlier is not None:
                    return earlier
                log_event(
                    Event.RATE_LIMITED,
                    "WARNING",
                    uid=uid,
                    limit=admitted.limit,
                    environment=environment,
                    phone=mask_msisdn(request.phone),
                    retry_after_s=admitted.retry_after_s,
                )
                raise errors.RateLimited(admitted.limit, admitted.message, admitted.retry_after_s)
            payer, shard_index, shard, shard_version = admitted
            claim = None
            writes: list[Write] = [
                *save_payment(uid, None, payment),
                CreateCallbackRoute(route_id, CallbackRoute(uid, payment.id, request.phone), now),
            ]
            payer_at = len(writes)
            writes += [
                SavePayer(uid, payer, context.payer.version if context.payer else None),
                SaveShard(uid, shard_index, shard, shard_version),
            ]
            if key_hash is not None:
                claim = IdempotencyRecord.claim(
                    fingerprint, payment.id, now, self._settings.push_lease_s, self._settings.idempotency_ttl_s
                )
                writes.append(SaveIdempotency(uid, key_hash, claim, create=True))
            try:
                versions = self._repo.commit(writes)
            except WriteConflict:
                if key_hash is not None:
                    # Lost on the key: answer from the claim that holds it. (None: no claim holds it any more, the
                    # race was on the phone or the shard, or an expired claim was cleared; try again.)
                    earlier = self._existing_claim(uid, key_hash, fingerprint)
                    if earlier is not None:
                        return earlier
                if attempt == _MAX_INTENT_ATTEMPTS:
                    break
                time.sleep(random.uniform(0, backoff_s))
                backoff_s = min(backoff_s * 2, 0.25)
                context = self._repo.load_push_context(uid, request.phone, self._pick_shard())
                continue
            return _Intent(Versioned(payment, versions[0]), token, claim, Versioned(payer, versions[payer_at]))
        if key_hash is not None:
            raise errors.IdempotencyConflict(
                "idempotency_in_progress",
                "this Idempotency-Key is changing hands; retry shortly",
                "Idempotency-Key",
                retry_after_s=1,
            )
        raise errors.RateLimited("pushes_per_second", "too many pushes at once for this developer; retry shortly", 1)

    def _admit(
        self,
        uid: str,
        msisdn: str,
        environment: str,
        limits: DeveloperLimits,
        payment_id: str,
        now: datetime,
        context: PushContext,
    ) -> tuple[Payer, int, PushShard, Any] | RateLimitedPush:
        """The phone first (it is the stricter limit and its refusal is the more useful answer), then the developer's
        budget: the shard that was read, or once more the next one, so an unlucky pick is not a refusal."""
        loaded_payer = context.payer.value if context.payer else Payer.first_seen(msisdn, now)
        payer = loaded_payer.admit(payment_id, self._phone_limits, now)
        if isinstance(payer, RateLimitedPush):
            return payer
        shard_index, loaded = context.shard_index, context.shard
        shard = (loaded.value if loaded else PushShard()).take(environment, limits, now)
        if isinstance(shard, RateLimitedPush) and limits.shards > 1:
            shard_index = (shard_index + 1) % limits.shards
            loaded = self._repo.load_shard(uid, shard_index)
            shard = (loaded.value if loaded else PushShard()).take(environment, limits, now)
        if isinstance(shard, RateLimitedPush):
            return shard
        return payer, shard_index, shard, loaded.version if loaded else None

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
            phone=stored.phone,
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

        self._release_phone(uid, intent)
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

    def _release_phone(self, uid: str, intent: _Intent) -> None:
        """Daraja refused the push, so nobody was prompted: the phone is free for the next push at once. Best
        effort: if this fails, the lock lapses by itself after PHONE_IN_FLIGHT_SECONDS."""
        loaded: Versioned[Payer] | None = intent.payer
        payment_id = intent.payment.value.id
        try:
            for _ in range(3):
                if loaded is None:
                    return
                try:
                    self._repo.commit([SavePayer(uid, loaded.value.release(payment_id), loaded.version)])
                    return
                except WriteConflict:
                    loaded = self._repo.load_payer(uid, loaded.value.msisdn)
        except Exception as failure:  # noqa: BLE001 - a lock that is not released only delays the next push
            log_event(Event.PAYMENT_NOT_RECORDED, "WARNING", uid=uid, payment_id=payment_id, what="phone_release",
                      exception=type(failure).__name__)

    @staticmethod
    def _answer_writes(uid: str, key_hash: str | None, intent: _Intent, status: int) -> list[Write]:
        if key_hash is None or intent.claim is None:
            return []
        return [SaveIdempotency(uid, key_hash, intent.claim.answered(status))]

    # ----------------------------------------------------------------------------------------------- reads
    def get(
        self,
        developer: Developer,
        payment_id: str | None,
        checkout_request_id: str | None,
        environment: str | None = None,
    ) -> Payment:
        """One payment. A caller bound to an environment (an API key, or `?environment=`) sees only that
        environment's payments: another one's is a 404, exactly like a missing one."""
        # No registry read: the payments live under the caller's own uid, which is all a read needs.
        environment = resolve_environment(parse_environment(environment), developer)
        loaded: Versioned[Payment] | None = None
        if checkout_request_id is not None:
            loaded = self._repo.find_payment_by_checkout(developer.uid, checkout_request_id)
        elif payment_id:
            loaded = self._repo.load_payment(developer.uid, payment_id)
        if loaded is not None and environment is not None and loaded.value.environment != environment:
            loaded = None
        if loaded is None:
            raise errors.NotFound(
                "payment_not_found", "no such payment", "id" if checkout_request_id is None else "checkout_request_id"
            )
        return self._settlement.query_if_late(developer.uid, loaded)

    def list(
        self,
        developer: Developer,
        status: str | None,
        limit_raw: str | None,
        page_token: str | None,
        environment: str | None = None,
    ) -> PaymentPage:
        """Newest first; only one environment's payments for a caller bound to one (an API key, `?environment=`)."""
        environment = resolve_environment(parse_environment(environment), developer)
        if status is not None and status not in {s.value for s in PaymentStatus}:
            raise errors.InvalidRequest(
                "invalid_status", f"status must be one of {', '.join(s.value for s in PaymentStatus)}", "status"
            )
        page, next_token = self._repo.list_payments(
            developer.uid, status, parse_limit(limit_raw), page_token or None, environment=environment
        )
        return PaymentPage(page, next_token)


@dataclass(frozen=True)
class _Intent:
    payment: Versioned[Payment]
    callback_token: str
    claim: IdempotencyRecord | None
    payer: Versioned[Payer]


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
