"""Use cases: register Daraja credentials, create a payment, settle it from a callback or a query, read it, and
reconcile lost callbacks. Adapters arrive through the constructor; nothing here knows about HTTP or Flask.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway import errors
from gateway.daraja import DarajaApp, DarajaClient, DarajaOutcomeUnknown, StkPushOrder
from gateway.domain.callback import parse_stk_callback
from gateway.domain.errors import ValidationError
from gateway.domain.payment import PaymentOutcome, PaymentStatus, SettlementDecision, decide_settlement
from gateway.domain.phone import mask_msisdn
from gateway.domain.validation import (
    canonical_fingerprint,
    key_hint,
    parse_credentials_request,
    parse_stk_push_request,
)
from gateway.http import ApiResponse, Developer
from gateway.logs import Event, log_event
from gateway.repository import PaymentRepository, utcnow
from gateway.secrets import CredentialStore, DarajaSecret
from gateway.settings import Settings

_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
_IDEMPOTENCY_WAIT_S = 25.0
_MAX_LIST_LIMIT = 100
_PUBLIC_PAYMENT_FIELDS = (
    "id",
    "status",
    "amount",
    "currency",
    "account_reference",
    "description",
    "metadata",
    "environment",
    "shortcode",
    "checkout_request_id",
    "merchant_request_id",
    "result_code",
    "result_desc",
    "mpesa_receipt_number",
    "transaction_date",
    "flags",
    "created_at",
    "updated_at",
    "settled_at",
)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return value


def payment_view(payment: dict[str, Any]) -> dict[str, Any]:
    """The payment as callers see it: no full phone number, no callback token hash, ISO-8601 UTC times."""
    view: dict[str, Any] = {"object": "payment"}
    for name in _PUBLIC_PAYMENT_FIELDS:
        view[name] = _iso(payment.get(name))
    view["phone"] = mask_msisdn(payment.get("msisdn", ""))
    view["flags"] = list(payment.get("flags") or [])
    view["metadata"] = dict(payment.get("metadata") or {})
    return view


def credentials_view(setup: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "developer_credentials",
        "environment": setup.get("environment"),
        "shortcode": setup.get("shortcode"),
        "transaction_type": setup.get("transaction_type"),
        "party_b": setup.get("party_b"),
        "consumer_key_hint": setup.get("consumer_key_hint"),
        "verified_at": _iso(setup.get("verified_at")),
        "updated_at": _iso(setup.get("updated_at")),
    }


class PaymentNotRecorded(errors.ServerError):
    """Daraja accepted the push but storing the payment failed: the outcome is unknown to the caller."""

    def __init__(self) -> None:
        super().__init__(
            "payment_not_recorded",
            "the payer may have been prompted but the payment could not be recorded; do not retry with a new "
            "Idempotency-Key, contact support with this request id",
        )


def _with_request_id(body: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A replayed error envelope carries the id of the request that replayed it, like every other answer."""
    if isinstance(body.get("error"), dict):
        return {**body, "error": {**body["error"], "request_id": request_id}}
    return body


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


class Gateway:
    def __init__(
        self,
        settings: Settings,
        repository: PaymentRepository,
        credentials: CredentialStore,
        daraja: DarajaClient,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._repo = repository
        self._credentials = credentials
        self._daraja = daraja
        self._now = now

    # ------------------------------------------------------------------------------------------ credentials
    def put_credentials(self, developer: Developer, body: Any) -> ApiResponse:
        request = parse_credentials_request(body)
        self._repo.ensure_developer(developer.uid, developer.email)
        try:
            self._daraja.verify_credentials(request.environment, request.consumer_key, request.consumer_secret)
        except errors.Unprocessable:
            log_event(Event.CREDENTIALS_REJECTED, uid=developer.uid, environment=request.environment)
            raise
        self._credentials.put(
            developer.uid,
            DarajaSecret(request.consumer_key, request.consumer_secret, request.passkey),
        )
        now = self._now()
        setup = {
            "environment": request.environment,
            "shortcode": request.shortcode,
            "transaction_type": request.transaction_type,
            "party_b": request.party_b,
            "consumer_key_hint": key_hint(request.consumer_key),
            "verified_at": now,
            "updated_at": now,
        }
        self._repo.save_daraja_setup(developer.uid, developer.email, setup)
        log_event(Event.CREDENTIALS_STORED, uid=developer.uid, environment=request.environment)
        return ApiResponse(200, credentials_view(setup), {})

    def get_credentials(self, developer: Developer) -> ApiResponse:
        setup = self._setup(developer)
        return ApiResponse(200, credentials_view(setup), {})

    def delete_credentials(self, developer: Developer) -> ApiResponse:
        record = self._repo.ensure_developer(developer.uid, developer.email)
        existed = self._credentials.delete(developer.uid)
        if record.get("daraja"):
            self._repo.clear_daraja_setup(developer.uid)
        log_event(Event.CREDENTIALS_DELETED, uid=developer.uid)
        return ApiResponse(
            200, {"object": "developer_credentials", "deleted": bool(existed or record.get("daraja"))}, {}
        )

    def _setup(self, developer: Developer) -> dict[str, Any]:
        record = self._repo.ensure_developer(developer.uid, developer.email)
        setup = record.get("daraja")
        if not setup:
            raise errors.CredentialsNotConfigured(
                "credentials_not_configured",
                "no Daraja credentials are registered for this developer; PUT them to developer_credentials first",
            )
        return dict(setup)

    def _app(self, uid: str, setup: dict[str, Any]) -> DarajaApp:
        return DarajaApp(
            uid=uid,
            environment=setup["environment"],
            shortcode=setup["shortcode"],
            transaction_type=setup["transaction_type"],
            party_b=setup["party_b"],
            secret=self._credentials.get(uid),
        )

    # --------------------------------------------------------------------------------------------- payments
    def create_payment(
        self, developer: Developer, body: Any, idempotency_key: str | None, request_id: str = "req_unknown"
    ) -> ApiResponse:
        request = parse_stk_push_request(body, self._settings.max_amount)
        key_hash = self._idempotency_key_hash(idempotency_key)
        setup = self._setup(developer)
        if key_hash is not None:
            claim = self._repo.claim_idempotency_key(
                developer.uid, key_hash, canonical_fingerprint(request), _IDEMPOTENCY_WAIT_S
            )
            if not claim.fresh:
                log_event(Event.IDEMPOTENT_REPLAY, uid=developer.uid)
                assert claim.replay_status is not None and claim.replay_body is not None
                replay = _with_request_id(claim.replay_body, request_id)
                return ApiResponse(claim.replay_status, replay, {"Idempotent-Replayed": "true"})
        try:
            return self._push(developer, request, setup, key_hash)
        except (DarajaOutcomeUnknown, PaymentNotRecorded) as unknown:
            # The payer may have been prompted. Replaying this answer to a retry with the same key is what
            # prevents a second prompt.
            log_event(
                Event.STK_PUSH_UNCERTAIN,
                "ERROR" if isinstance(unknown, PaymentNotRecorded) else "WARNING",
                uid=developer.uid,
                phone=mask_msisdn(request.phone),
                amount=request.amount,
                code=unknown.code,
            )
            if key_hash is not None:
                self._repo.store_idempotent_answer(
                    developer.uid, key_hash, unknown.http_status, unknown.to_envelope(request_id)
                )
            raise
        except BaseException:
            if key_hash is not None:
                # Nothing reached the payer: free the key so a retry with it can try again.
                self._repo.release_idempotency_key(developer.uid, key_hash)
            raise

    def _idempotency_key_hash(self, key: str | None) -> str | None:
        if key is None:
            return None
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            raise errors.InvalidRequest(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
                "Idempotency-Key",
            )
        return _sha256(key)

    def _push(self, developer: Developer, request: Any, setup: dict[str, Any], key_hash: str | None) -> ApiResponse:
        app = self._app(developer.uid, setup)
        payment_id = "pay_" + secrets.token_hex(12)
        callback_token = secrets.token_urlsafe(24)
        order = StkPushOrder(
            amount=request.amount,
            phone=request.phone,
            callback_url=f"{self._settings.callback_base_url}/{callback_token}",
            account_reference=request.account_reference,
            description=request.description,
        )
        try:
            accepted = self._daraja.stk_push(app, order)
        except DarajaOutcomeUnknown:
            raise
        except errors.DarajaError as rejected:
            log_event(
                Event.STK_PUSH_REJECTED,
                "WARNING",
                uid=developer.uid,
                phone=mask_msisdn(request.phone),
                code=rejected.code,
                daraja_code=rejected.daraja_code,
            )
            raise
        now = self._now()
        payment = {
            "id": payment_id,
            "status": PaymentStatus.PENDING.value,
            "amount": request.amount,
            "currency": "KES",
            "msisdn": request.phone,
            "account_reference": request.account_reference,
            "description": request.description,
            "metadata": request.metadata,
            "environment": setup["environment"],
            "shortcode": setup["shortcode"],
            "checkout_request_id": accepted.checkout_request_id,
            "merchant_request_id": accepted.merchant_request_id,
            "result_code": None,
            "result_desc": None,
            "mpesa_receipt_number": None,
            "transaction_date": None,
            "flags": [],
            "created_at": now,
            "updated_at": now,
            "settled_at": None,
            "callback_token_sha256": _sha256(callback_token),
            "next_check_at": now + timedelta(seconds=self._settings.reconcile_after_s),
            "query_attempts": 0,
        }
        view = payment_view(payment)
        try:
            self._repo.record_payment(
                developer.uid,
                payment,
                payment["callback_token_sha256"],
                (key_hash, 201, view) if key_hash is not None else None,
            )
        except Exception as failure:  # noqa: BLE001 - any storage failure leaves the same unknown outcome
            # Daraja accepted: the payer has a prompt. Keep what is needed to reconcile by hand in the log.
            log_event(
                Event.PAYMENT_NOT_RECORDED,
                "CRITICAL",
                uid=developer.uid,
                payment_id=payment_id,
                checkout_request_id=accepted.checkout_request_id,
                exception=type(failure).__name__,
            )
            raise PaymentNotRecorded() from None
        log_event(
            Event.STK_PUSH_SENT,
            uid=developer.uid,
            payment_id=payment_id,
            phone=mask_msisdn(request.phone),
            amount=request.amount,
            checkout_request_id=accepted.checkout_request_id,
        )
        return ApiResponse(201, view, {})

    def get_payment(self, developer: Developer, payment_id: str | None, checkout_request_id: str | None) -> ApiResponse:
        record = self._repo.ensure_developer(developer.uid, developer.email)
        if checkout_request_id is not None:
            route = self._repo.checkout_route(checkout_request_id)
            # Another developer's payment looks exactly like a missing one.
            payment_id = route.payment_id if route is not None and route.uid == developer.uid else None
        payment = self._repo.get_payment(developer.uid, payment_id) if payment_id else None
        if payment is None:
            raise errors.NotFound(
                "payment_not_found", "no such payment", "id" if checkout_request_id is None else "checkout_request_id"
            )
        payment = self._maybe_query(developer.uid, payment, record.get("daraja"))
        return ApiResponse(200, payment_view(payment), {})

    def list_payments(
        self, developer: Developer, status: str | None, limit_raw: str | None, page_token: str | None
    ) -> ApiResponse:
        self._repo.ensure_developer(developer.uid, developer.email)
        if status is not None and status not in {s.value for s in PaymentStatus}:
            raise errors.InvalidRequest(
                "invalid_status", f"status must be one of {', '.join(s.value for s in PaymentStatus)}", "status"
            )
        limit = _parse_limit(limit_raw)
        page, next_token = self._repo.list_payments(developer.uid, status, limit, page_token or None)
        return ApiResponse(
            200,
            {
                "object": "list",
                "data": [payment_view(p) for p in page],
                "has_more": next_token is not None,
                "next_page_token": next_token,
            },
            {},
        )

    # --------------------------------------------------------------------------------------------- settling
    def handle_callback(self, callback_token: str, body: Any, source_ip: str | None) -> ApiResponse:
        self._check_source_ip(source_ip)
        try:
            callback = parse_stk_callback(body)
        except ValidationError as malformed:
            log_event(Event.CALLBACK_REJECTED, "WARNING", code=malformed.code, source_ip=source_ip)
            raise
        route = self._repo.checkout_route(callback.checkout_request_id)
        if route is None:
            log_event(Event.CALLBACK_REJECTED, "WARNING", code="unknown_checkout_request", source_ip=source_ip)
            raise errors.NotFound(
                "unknown_checkout_request", "no payment has this CheckoutRequestID", "CheckoutRequestID"
            )
        if not hmac.compare_digest(_sha256(callback_token), route.callback_token_sha256):
            log_event(
                Event.CALLBACK_REJECTED, "WARNING", code="invalid_callback_token", uid=route.uid, source_ip=source_ip
            )
            raise errors.PermissionDenied("invalid_callback_token", "the callback URL token does not match")
        log_event(Event.CALLBACK_RECEIVED, uid=route.uid, payment_id=route.payment_id, result_code=callback.result_code)
        audit = {
            "received_at": self._now(),
            "source": "callback",
            "source_ip": source_ip,
            "result_code": callback.result_code,
            "body": body,
        }
        self._settle(route.uid, route.payment_id, callback.outcome, "callback", audit)
        return ApiResponse(200, {"ResultCode": 0, "ResultDesc": "Accepted"}, {})

    def _check_source_ip(self, source_ip: str | None) -> None:
        allowed = self._settings.callback_allowed_ips
        if allowed and source_ip not in allowed:
            log_event(Event.CALLBACK_REJECTED, "WARNING", code="source_ip_not_allowed", source_ip=source_ip)
            raise errors.PermissionDenied(
                "source_ip_not_allowed", "callbacks are accepted from Daraja's addresses only"
            )

    def _settle(
        self,
        uid: str,
        payment_id: str,
        outcome: PaymentOutcome,
        source: str,
        audit: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        def decide(payment: dict[str, Any]) -> SettlementDecision:
            return decide_settlement(
                PaymentStatus(payment["status"]),
                int(payment["amount"]),
                str(payment["msisdn"]),
                outcome,
                "query" if source == "query" else "callback",
            )

        def applied(decision: SettlementDecision) -> dict[str, Any]:
            now = self._now()
            if decision.action == "flag":
                return {
                    "flagged_outcome": {
                        "source": source,
                        "result_code": outcome.result_code,
                        "result_desc": outcome.result_desc,
                        "amount": outcome.amount,
                        "mpesa_receipt_number": outcome.mpesa_receipt_number,
                        "at": now,
                    }
                }
            assert decision.new_status is not None
            fields: dict[str, Any] = {
                "status": decision.new_status.value,
                "result_code": outcome.result_code,
                "result_desc": outcome.result_desc,
                "settled_at": now,
                "settled_by": source,
            }
            if decision.new_status is PaymentStatus.SUCCEEDED:
                fields["mpesa_receipt_number"] = outcome.mpesa_receipt_number
                fields["transaction_date"] = outcome.transaction_date
                fields["paid_msisdn"] = outcome.phone
            return fields

        result = self._repo.settle(uid, payment_id, decide, applied, audit)
        if result is None:
            return None
        decision = result.decision
        fields: dict[str, Any] = {
            "uid": uid,
            "payment_id": payment_id,
            "source": source,
            "result_code": outcome.result_code,
            "reason": decision.reason,
            "phone": mask_msisdn(str(result.payment.get("msisdn", ""))),
        }
        if decision.action == "settle":
            log_event(
                Event.PAYMENT_SETTLED, status=decision.new_status.value if decision.new_status else None, **fields
            )
        elif decision.action == "flag":
            log_event(Event.PAYMENT_FLAGGED, "WARNING", flags=list(decision.flags), **fields)
        else:
            log_event(Event.SETTLEMENT_IGNORED, **fields)
        return result.payment

    def _maybe_query(self, uid: str, payment: dict[str, Any], setup: dict[str, Any] | None) -> dict[str, Any]:
        """Ask Daraja about a payment whose callback is late, at most once per interval."""
        if payment.get("status") != PaymentStatus.PENDING.value:
            return payment
        created_at = payment.get("created_at")
        if not isinstance(created_at, datetime):
            return payment
        if self._now() - created_at < timedelta(seconds=self._settings.pending_query_after_s):
            return payment
        settled = self._query_and_settle(uid, payment, setup)
        return settled or payment

    def _query_and_settle(
        self, uid: str, payment: dict[str, Any], setup: dict[str, Any] | None, *, raise_errors: bool = False
    ) -> dict[str, Any] | None:
        if not setup:
            # Credentials were deleted: nobody can ask Daraja on this developer's behalf any more.
            return None
        if not self._repo.claim_query_slot(
            uid, payment["id"], self._settings.pending_query_interval_s, self._settings.reconcile_after_s
        ):
            return None
        try:
            answer = self._daraja.stk_query(self._app(uid, setup), payment["checkout_request_id"])
        except errors.GatewayError as failure:
            # A read must still answer; the next interval or the reconciler will try again.
            log_event(Event.STK_QUERY_SENT, "WARNING", uid=uid, payment_id=payment["id"], code=failure.code)
            if raise_errors:
                raise
            return None
        log_event(
            Event.STK_QUERY_SENT,
            uid=uid,
            payment_id=payment["id"],
            result_code=answer.result_code if answer is not None else "processing",
        )
        if answer is None:
            return None
        outcome = PaymentOutcome(result_code=answer.result_code, result_desc=answer.result_desc)
        audit = {
            "received_at": self._now(),
            "source": "query",
            "result_code": answer.result_code,
            "body": answer.raw,
        }
        return self._settle(uid, payment["id"], outcome, "query", audit)

    def reconcile(self) -> dict[str, int]:
        """Settle payments pending too long, across developers, through STK Push Query.

        Payments come due by `next_check_at`, which every query pushes back with a growing delay, so payments that
        can never settle (deleted credentials, Daraja forgetting them) sink behind newer ones instead of starving
        them.
        """
        stale = self._repo.due_for_reconciliation(self._now(), self._settings.reconcile_batch_size)
        summary = {"examined": len(stale), "settled": 0, "still_pending": 0, "errors": 0}
        setups: dict[str, dict[str, Any] | None] = {}
        for uid, payment in stale:
            try:
                if uid not in setups:
                    # One registry read per developer per sweep, however many of their payments are due.
                    setups[uid] = self._repo.developer_setup(uid)
                settled = self._query_and_settle(uid, payment, setups[uid], raise_errors=True)
            except Exception as failure:  # noqa: BLE001 - one bad payment must not stop the sweep
                summary["errors"] += 1
                log_event(
                    Event.RECONCILE_RUN,
                    "ERROR",
                    uid=uid,
                    payment_id=payment.get("id"),
                    exception=type(failure).__name__,
                )
                continue
            if settled is not None and settled.get("status") != PaymentStatus.PENDING.value:
                summary["settled"] += 1
            else:
                summary["still_pending"] += 1
        log_event(Event.RECONCILE_RUN, **dict[str, Any](summary))
        return summary


def _parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 20
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIST_LIMIT:
        raise errors.InvalidRequest(
            "invalid_limit", f"limit must be a whole number from 1 to {_MAX_LIST_LIMIT}", "limit"
        )
    return int(raw)
