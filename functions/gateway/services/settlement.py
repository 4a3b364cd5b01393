"""Settle payments: Safaricom's callbacks (routed by their URL token), STK Push Queries for late callbacks, and the
reconciler's sweep. Every result goes through `Payment.apply`; this module only loads, asks and stores.

A callback that matches nothing we know (an unknown token, a body that cannot be read, a CheckoutRequestID that
contradicts the payment) is kept in the server-only quarantine with its source address, so an operator can find
money that arrived for nothing we know.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gateway import errors
from gateway.domain.callback import parse_stk_callback
from gateway.domain.daraja_setup import Setups
from gateway.domain.errors import ValidationError
from gateway.domain.payment import OutcomeSource, Payer, Payment, PaymentOutcome, PaymentStatus
from gateway.domain.payment import Settlement as Applied
from gateway.logs import Event, log_event
from gateway.repository import (
    AddAudit,
    AddQuarantine,
    CallbackAudit,
    QuarantinedCallback,
    SavePayer,
    Versioned,
    Write,
    WriteConflict,
)
from gateway.services.common import UseCase, app_for_payment, save_payment, sha256_hex, update_payment

# Our tokens are secrets.token_urlsafe(24): 32 characters of the URL-safe alphabet. Anything else is junk and is
# refused before any read.
_CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_QUARANTINE_TTL = timedelta(days=90)
ACCEPTED_ANSWER = {"ResultCode": 0, "ResultDesc": "Accepted"}


def plausible_callback_token(token: str) -> bool:
    return _CALLBACK_TOKEN.fullmatch(token) is not None


def bounded_text(raw: bytes, limit: int) -> str:
    return raw[:limit].decode("utf-8", errors="replace")


class Settlement(UseCase):
    # ------------------------------------------------------------------------------------------ callbacks
    def check_callback_source(self, token: str, source_ip: str | None) -> None:
        """Cheap refusals first: an address outside the allow-list, or a path that cannot be one of our tokens."""
        allowed = self._settings.callback_allowed_ips
        if allowed and source_ip not in allowed:
            log_event(Event.CALLBACK_REJECTED, "WARNING", code="source_ip_not_allowed", source_ip=source_ip)
            raise errors.PermissionDenied(
                "source_ip_not_allowed", "callbacks are accepted from Daraja's addresses only"
            )
        if not plausible_callback_token(token):
            log_event(Event.CALLBACK_REJECTED, "WARNING", code="malformed_callback_token", source_ip=source_ip)
            raise errors.NotFound("unknown_callback_token", "no payment has this callback URL")

    def quarantine_unreadable(self, token: str, raw: bytes, source_ip: str | None, reason: str) -> None:
        """A body that is not JSON at all still reached one of our callback URLs: keep it."""
        self._quarantine(reason, raw, source_ip, token, None)

    def handle_callback(self, token: str, body: Any, raw: bytes, source_ip: str | None) -> None:
        """Settle the payment this callback's URL token names, or quarantine the callback and refuse it."""
        token_sha256 = sha256_hex(token)
        try:
            callback = parse_stk_callback(body)
        except ValidationError as malformed:
            self._quarantine(malformed.code, raw, source_ip, token, None)
            raise
        route = self._repo.load_callback_route(token_sha256)
        if route is None:
            self._quarantine("unknown_callback_token", raw, source_ip, token, callback.checkout_request_id)
            raise errors.NotFound("unknown_callback_token", "no payment has this callback URL")
        audit = CallbackAudit(
            received_at=self._now(),
            source="callback",
            source_ip=source_ip,
            result_code=callback.result_code,
            action="",
            raw_body=bounded_text(raw, self._settings.max_body_bytes),
        )
        try:
            stored = self._settle(
                route.uid,
                route.payment_id,
                callback.outcome,
                "callback",
                audit,
                callback.checkout_request_id,
                msisdn=route.msisdn,
            )
        except _NamesAnotherRequest:
            stored, reason = None, "checkout_request_mismatch"
        else:
            reason = "payment_missing"
        if stored is None:
            self._quarantine(reason, raw, source_ip, token, callback.checkout_request_id)
            raise errors.PermissionDenied(reason, "this callback does not match the payment its URL belongs to")

    def _quarantine(
        self, reason: str, raw: bytes, source_ip: str | None, token: str | None, checkout_request_id: str | None
    ) -> None:
        now = self._now()
        record = QuarantinedCallback(
            received_at=now,
            reason=reason,
            raw_body=bounded_text(raw, self._settings.max_body_bytes),
            source_ip=source_ip,
            token_sha256=sha256_hex(token) if token else None,
            checkout_request_id=checkout_request_id,
            expires_at=now + _QUARANTINE_TTL,
        )
        self._repo.commit([AddQuarantine(record)])
        log_event(
            Event.CALLBACK_QUARANTINED,
            "WARNING",
            reason=reason,
            source_ip=source_ip,
            checkout_request_id=checkout_request_id,
        )

    # ------------------------------------------------------------------------------------------- settling
    def _settle(
        self,
        uid: str,
        payment_id: str,
        outcome: PaymentOutcome,
        source: OutcomeSource,
        audit: CallbackAudit,
        checkout_request_id: str | None = None,
        loaded: Versioned[Payment] | None = None,
        msisdn: str | None = None,
    ) -> Payment | None:
        """Apply a result exactly once: of N concurrent duplicates one commit wins, the rest reload, see a settled
        payment and store only their audit copy. `checkout_request_id` is the one a callback names; `msisdn` the
        payer's full number from the server-only route, when the caller has it: the payer is then read with the
        payment, in one round trip, on every attempt."""
        applied: list[Applied] = []
        # The payer read with the payment of the attempt under way, by number (a lost race reads both again).
        read_with: dict[str, Versioned[Payer] | None] = {}

        def load() -> Versioned[Payment] | None:
            context = self._repo.load_settlement_context(uid, payment_id, msisdn)
            read_with.clear()
            if msisdn is not None:
                read_with[msisdn] = context.payer
            return context.payment

        def change(loaded_payment: Payment) -> tuple[Payment, list[Write]]:
            payment = loaded_payment.with_msisdn(msisdn)
            if checkout_request_id is not None and not payment.answers_to(checkout_request_id):
                raise _NamesAnotherRequest()
            settlement = payment.apply(outcome, source, self._now(), checkout_request_id)
            applied[:] = [settlement]
            writes: list[Write] = [AddAudit(uid, payment.id, replace(audit, action=settlement.decision.action))]
            number = (payment.msisdn or self._route_msisdn(payment)) if settlement.counts_for_payer else None
            if number is not None:
                # Counts the result and frees the phone for its next prompt.
                loaded_payer = read_with[number] if number in read_with else self._repo.load_payer(uid, number)
                payer = loaded_payer.value if loaded_payer else Payer.first_seen(number, self._now())
                version = loaded_payer.version if loaded_payer else None
                writes.append(SavePayer(uid, payer.count(settlement, self._now()), version))
            if settlement.after == payment:
                # Nothing changed (a duplicate): only the audit copy is written, not the payment again (its full
                # number, added above for the decision, is never stored with it).
                return loaded_payment, writes
            return settlement.after, writes

        stored = update_payment(self._repo, uid, payment_id, change, loaded, load)
        if stored is None:
            return None
        decision = applied[0].decision
        fields: dict[str, Any] = {
            "uid": uid,
            "payment_id": payment_id,
            "source": source,
            "result_code": outcome.result_code,
            "reason": decision.reason,
            "phone": stored.phone,
        }
        if decision.action == "settle":
            log_event(Event.PAYMENT_SETTLED, status=stored.status.value, **fields)
        elif decision.action == "flag":
            log_event(Event.PAYMENT_FLAGGED, "WARNING", flags=list(stored.flags), **fields)
        else:
            log_event(Event.SETTLEMENT_IGNORED, **fields)
        return stored

    def _route_msisdn(self, payment: Payment) -> str | None:
        """The payer's full number, which only the server-only callback route keeps (a query answer has none)."""
        route = self._repo.load_callback_route(payment.route_id) if payment.route_id else None
        return route.msisdn if route is not None else None

    # -------------------------------------------------------------------------------------------- queries
    def query_if_late(self, uid: str, loaded: Versioned[Payment]) -> Payment:
        """Ask Daraja about a payment whose callback is late, at most once per interval; a read always answers."""
        if not loaded.value.query_due(self._now(), self._policy):
            return loaded.value
        try:
            return self._query_and_settle(uid, loaded) or loaded.value
        except errors.GatewayError:
            return loaded.value

    def _query_and_settle(
        self, uid: str, loaded: Versioned[Payment], setups: dict[str, Setups] | None = None
    ) -> Payment | None:
        """Claim this interval's query (one caller wins the precondition), ask with the payment's own app, apply.
        `setups` holds the set-ups already read by developer (a sweep reads each developer's once); a read is
        added to it."""
        payment = loaded.value
        claimed = payment.claim_query(self._now(), self._policy)
        if claimed is None or payment.checkout_request_id is None:
            return None
        try:
            versions = self._repo.commit(save_payment(uid, payment, claimed, loaded.version))
        except WriteConflict:
            return None  # another caller holds this interval
        if setups is None:
            setups = {}
        if uid not in setups:
            setups[uid] = self._repo.daraja_setups(uid)
        try:
            app = app_for_payment(self._credentials, uid, payment, setups[uid])
        except errors.CredentialsNotConfigured:
            # The developer deleted this environment's keys: nobody can ask Daraja for them any more. The claim
            # already pushed the next look back, so the payment sinks behind the others.
            log_event(
                Event.STK_QUERY_SENT, "WARNING", uid=uid, payment_id=payment.id, code="credentials_not_configured"
            )
            return claimed
        try:
            answer = self._daraja.stk_query(app, payment.checkout_request_id)
        except errors.GatewayError as failure:
            log_event(Event.STK_QUERY_SENT, "WARNING", uid=uid, payment_id=payment.id, code=failure.code)
            raise
        log_event(
            Event.STK_QUERY_SENT,
            uid=uid,
            payment_id=payment.id,
            result_code=answer.result_code if answer is not None else "processing",
        )
        if answer is None:
            return claimed
        audit = CallbackAudit(
            received_at=self._now(),
            source="query",
            result_code=answer.result_code,
            action="",
            raw_body=_json_text(answer.raw, self._settings.max_body_bytes),
        )
        outcome = PaymentOutcome(result_code=answer.result_code, result_desc=answer.result_desc)
        return self._settle(uid, payment.id, outcome, "query", audit, loaded=Versioned(claimed, versions[0]))

    # ---------------------------------------------------------------------------------------- reconciling
    def reconcile(self) -> dict[str, int]:
        """Settle payments whose callback never came, across developers.

        Payments come due by `next_check_at`, which every look pushes back with a growing delay, so payments that
        can never settle sink behind newer ones instead of starving them. A payment without a CheckoutRequestID
        cannot be queried: its lease ends it as `outcome_unknown`, and the confirmation window as `unconfirmed`.
        """
        due = self._repo.due_payments(self._now(), self._settings.reconcile_batch_size)
        summary = {"examined": len(due), "settled": 0, "still_pending": 0, "unconfirmed": 0, "errors": 0}
        # One registry read per developer per sweep, however many of their payments are due.
        setups: dict[str, Setups] = {}
        for uid, loaded in due:
            try:
                after = self._reconcile_one(uid, loaded, setups)
            except Exception as failure:  # noqa: BLE001 - one bad payment must not stop the sweep
                summary["errors"] += 1
                log_event(
                    Event.RECONCILE_RUN, "ERROR", uid=uid, payment_id=loaded.value.id, exception=type(failure).__name__
                )
                continue
            if after is None or after.status is PaymentStatus.PENDING:
                summary["still_pending"] += 1
            elif after.status is PaymentStatus.UNCONFIRMED:
                summary["unconfirmed"] += 1
            else:
                summary["settled"] += 1
        log_event(Event.RECONCILE_RUN, **dict[str, Any](summary))
        return summary

    def _reconcile_one(self, uid: str, loaded: Versioned[Payment], setups: dict[str, Setups]) -> Payment | None:
        payment = loaded.value
        if payment.checkout_request_id is not None:
            return self._query_and_settle(uid, loaded, setups)

        def lapse(current: Payment) -> tuple[Payment, list[Write]] | None:
            after = current.without_answer(self._now(), self._policy)
            return None if after is None else (after, [])

        after = update_payment(self._repo, uid, payment.id, lapse, loaded)
        if after is not None and after.status is PaymentStatus.UNCONFIRMED:
            log_event(Event.PAYMENT_UNCONFIRMED, "WARNING", uid=uid, payment_id=payment.id)
        return after


def _json_text(value: Any, limit: int) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)[:limit]


class _NamesAnotherRequest(Exception):
    """A callback routed by its token names another CheckoutRequestID than the payment's: apply nothing."""
