"""In-memory stand-ins for the gateway's adapters, for unit tests of the use cases (gateway.services.Gateway).

    FakeClock            the `now=` of Gateway and of FakeRepository, moved by hand
    FakeRepository       PaymentRepository's public methods over dicts, with the same semantics and a call counter
    MemorySecretBackend  the SecretBackend port over a dict, behind a real CredentialStore
    FakeDaraja           DarajaClient's verify_credentials / stk_push / stk_query: records calls, answers as scripted

Everything handed out is a deep copy, as a Firestore read is: a use case that edits what it read changes nothing.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway import errors
from gateway.daraja import DarajaApp, StkPushAccepted, StkPushOrder, StkQueryAnswer
from gateway.domain.payment import PaymentStatus, SettlementDecision
from gateway.repository import (
    CheckoutRoute,
    IdempotencyClaim,
    SettlementResult,
    _decode_page_token,
    _encode_page_token,
    _usable_document_id,
)
from gateway.settings import Settings

T0 = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeRepository:
    """PaymentRepository in memory. `calls` counts every public method call by name.

    One deliberate difference: a claim on a key still in progress fails at once with `idempotency_in_progress`,
    as the real one does once its wait runs out (these tests run one request at a time).
    """

    def __init__(self, settings: Settings, now: Callable[[], datetime]) -> None:
        self._settings = settings
        self._now = now
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.developers: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, dict[str, Any]]] = {}  # uid -> payment id -> payment
        self.audits: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (uid, payment id) -> callbacks/{auto}
        self.payers: dict[str, dict[str, dict[str, Any]]] = {}  # uid -> msisdn -> payer
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}  # (uid, sha256(key)) -> record
        self.routes: dict[str, dict[str, Any]] = {}  # checkout_requests/{CheckoutRequestID}
        self.fail_record_payment: Exception | None = None
        self.last_list_args: tuple[str, str | None, int, str | None] | None = None

    # ------------------------------------------------------------------------------------------ developers
    def ensure_developer(self, uid: str, email: str | None) -> dict[str, Any]:
        self.calls["ensure_developer"] += 1
        with self._lock:
            if uid not in self.developers:
                now = self._now()
                self.developers[uid] = {
                    "uid": uid,
                    "email": email,
                    "created_at": now,
                    "updated_at": now,
                    "daraja": None,
                }
            return copy.deepcopy(self.developers[uid])

    def developer_setup(self, uid: str) -> dict[str, Any] | None:
        self.calls["developer_setup"] += 1
        with self._lock:
            setup = self.developers.get(uid, {}).get("daraja")
            return copy.deepcopy(setup) if setup else None

    def save_daraja_setup(self, uid: str, email: str | None, setup: dict[str, Any]) -> None:
        self.calls["save_daraja_setup"] += 1
        with self._lock:
            record = self.developers.setdefault(uid, {})
            record.update({"uid": uid, "email": email, "updated_at": self._now(), "daraja": copy.deepcopy(setup)})

    def clear_daraja_setup(self, uid: str) -> None:
        self.calls["clear_daraja_setup"] += 1
        with self._lock:
            self.developers.setdefault(uid, {}).update({"daraja": None, "updated_at": self._now()})

    # -------------------------------------------------------------------------------------- idempotency
    def claim_idempotency_key(self, uid: str, key_hash: str, fingerprint: str, wait_s: float) -> IdempotencyClaim:
        self.calls["claim_idempotency_key"] += 1
        with self._lock:
            now = self._now()
            existing = self.idempotency.get((uid, key_hash))
            expires_at = (existing or {}).get("expires_at")
            if existing is not None and isinstance(expires_at, datetime) and expires_at <= now:
                existing = None  # expired is as good as absent
            if existing is None:
                self.idempotency[(uid, key_hash)] = {
                    "state": "in_progress",
                    "fingerprint": fingerprint,
                    "created_at": now,
                    "expires_at": now + timedelta(seconds=self._settings.idempotency_ttl_s),
                }
                return IdempotencyClaim(fresh=True)
            if existing.get("fingerprint") != fingerprint:
                raise errors.IdempotencyConflict(
                    "idempotency_conflict",
                    "this Idempotency-Key was already used with a different request body",
                    "Idempotency-Key",
                )
            if existing.get("state") == "done":
                return IdempotencyClaim(
                    fresh=False, replay_status=int(existing["status"]), replay_body=copy.deepcopy(existing["body"])
                )
            raise errors.IdempotencyConflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed; retry shortly",
                "Idempotency-Key",
            )

    def store_idempotent_answer(self, uid: str, key_hash: str, status: int, body: dict[str, Any]) -> None:
        self.calls["store_idempotent_answer"] += 1
        with self._lock:
            record = self.idempotency.setdefault((uid, key_hash), {})  # set(merge=True) creates if absent
            record.update({"state": "done", "status": status, "body": copy.deepcopy(body)})

    def release_idempotency_key(self, uid: str, key_hash: str) -> None:
        self.calls["release_idempotency_key"] += 1
        with self._lock:
            self.idempotency.pop((uid, key_hash), None)

    # ------------------------------------------------------------------------------------------- payments
    def record_payment(
        self,
        uid: str,
        payment: dict[str, Any],
        callback_token_sha256: str,
        idempotency: tuple[str, int, dict[str, Any]] | None,
    ) -> None:
        self.calls["record_payment"] += 1
        if self.fail_record_payment is not None:
            raise self.fail_record_payment
        with self._lock:
            # One batch of creates: it fails whole if the payment or the lookup already exists.
            if payment["id"] in self.payments.get(uid, {}) or payment["checkout_request_id"] in self.routes:
                raise RuntimeError("AlreadyExists")
            self.payments.setdefault(uid, {})[payment["id"]] = copy.deepcopy(payment)
            self.routes[payment["checkout_request_id"]] = {
                "uid": uid,
                "payment_id": payment["id"],
                "callback_token_sha256": callback_token_sha256,
                "created_at": payment["created_at"],
            }
            if idempotency is not None:
                key_hash, status, body = idempotency
                record = self.idempotency.setdefault((uid, key_hash), {})
                record.update({"state": "done", "status": status, "body": copy.deepcopy(body)})

    def get_payment(self, uid: str, payment_id: str) -> dict[str, Any] | None:
        self.calls["get_payment"] += 1
        if not _usable_document_id(payment_id):
            return None
        with self._lock:
            payment = self.payments.get(uid, {}).get(payment_id)
            return copy.deepcopy(payment) if payment is not None else None

    def checkout_route(self, checkout_request_id: str) -> CheckoutRoute | None:
        self.calls["checkout_route"] += 1
        if not _usable_document_id(checkout_request_id):
            return None
        with self._lock:
            data = self.routes.get(checkout_request_id)
        if data is None:
            return None
        return CheckoutRoute(data["uid"], data["payment_id"], data["callback_token_sha256"])

    def list_payments(
        self, uid: str, status: str | None, limit: int, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        self.calls["list_payments"] += 1
        self.last_list_args = (uid, status, limit, page_token)
        with self._lock:
            mine = self.payments.get(uid, {})
            ordered = sorted(
                (p for p in mine.values() if status is None or p["status"] == status),
                key=lambda p: (p["created_at"], p["id"]),
                reverse=True,
            )
            if page_token is not None:
                cursor_id = _decode_page_token(page_token)
                cursor = mine.get(cursor_id) if _usable_document_id(cursor_id) else None
                if cursor is None:
                    raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token")
                after = (cursor["created_at"], cursor["id"])
                ordered = [p for p in ordered if (p["created_at"], p["id"]) < after]
            window = ordered[: limit + 1]
            page = [copy.deepcopy(p) for p in window[:limit]]
        next_token = _encode_page_token(window[limit - 1]["id"]) if len(window) > limit else None
        return page, next_token

    def settle(
        self,
        uid: str,
        payment_id: str,
        decide: Callable[[dict[str, Any]], SettlementDecision],
        applied_fields: Callable[[SettlementDecision], dict[str, Any]],
        audit: dict[str, Any] | None,
    ) -> SettlementResult | None:
        self.calls["settle"] += 1
        with self._lock:  # the transaction: read, decide and write with nobody in between
            stored = self.payments.get(uid, {}).get(payment_id)
            if stored is None:
                return None
            payment = copy.deepcopy(stored)
            decision = decide(copy.deepcopy(payment))
            now = self._now()
            if audit is not None:
                self.audits.setdefault((uid, payment_id), []).append(
                    {**copy.deepcopy(audit), "action": decision.action}
                )
            if decision.action == "ignore":
                return SettlementResult(decision, payment)
            changes = applied_fields(decision)
            changes["updated_at"] = now
            stored.update({k: copy.deepcopy(v) for k, v in changes.items()})
            old_flags = list(payment.get("flags") or [])
            stored["flags"] = old_flags + [f for f in decision.flags if f not in old_flags]  # ArrayUnion
            if decision.action == "settle":
                succeeded = decision.new_status is PaymentStatus.SUCCEEDED
                payers = self.payers.setdefault(uid, {})
                payer = payers.setdefault(
                    payment["msisdn"],
                    {
                        "msisdn": payment["msisdn"],
                        "first_seen_at": now,
                        "payment_count": 0,
                        "succeeded_count": 0,
                        "total_paid": 0,
                    },
                )
                payer["last_seen_at"] = now
                payer["payment_count"] += 1
                payer["succeeded_count"] += 1 if succeeded else 0
                payer["total_paid"] += payment["amount"] if succeeded else 0
            merged = {**payment, **changes}
            merged["flags"] = sorted(set(old_flags) | set(decision.flags))
            return SettlementResult(decision, merged)

    def claim_query_slot(self, uid: str, payment_id: str, interval_s: float, reconcile_after_s: float) -> bool:
        self.calls["claim_query_slot"] += 1
        with self._lock:
            payment = self.payments.get(uid, {}).get(payment_id)
            if payment is None or payment.get("status") != PaymentStatus.PENDING.value:
                return False
            last = payment.get("last_queried_at")
            now = self._now()
            if isinstance(last, datetime) and (now - last).total_seconds() < interval_s:
                return False
            attempts = int(payment.get("query_attempts") or 0) + 1
            payment["last_queried_at"] = now
            payment["query_attempts"] = attempts
            payment["next_check_at"] = now + timedelta(seconds=min(max(reconcile_after_s, 1.0) * 2**attempts, 21600.0))
            return True

    def due_for_reconciliation(self, now: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
        self.calls["due_for_reconciliation"] += 1
        with self._lock:
            found = [
                (uid, copy.deepcopy(p))
                for uid, payments in self.payments.items()
                for p in payments.values()
                if p.get("status") == PaymentStatus.PENDING.value and p["next_check_at"] <= now
            ]
        found.sort(key=lambda item: item[1]["next_check_at"])
        return found[:limit]

    # ------------------------------------------------------------------------------------------ test views
    def payment(self, uid: str, payment_id: str) -> dict[str, Any]:
        return copy.deepcopy(self.payments[uid][payment_id])


class MemorySecretBackend:
    """The SecretBackend port over a dict of secret id -> latest payload."""

    def __init__(self) -> None:
        self.secrets: dict[str, bytes] = {}
        self.writes = 0

    def access_latest(self, secret_id: str) -> bytes | None:
        return self.secrets.get(secret_id)

    def add_version(self, secret_id: str, data: bytes) -> None:
        self.writes += 1
        self.secrets[secret_id] = data

    def destroy(self, secret_id: str) -> bool:
        return self.secrets.pop(secret_id, None) is not None


# What a scripted Daraja call does: raise the exception, answer the value, or call the function and answer that.
Scripted = Any


def _play(step: Scripted, *args: Any) -> Any:
    if isinstance(step, BaseException):
        raise step
    if callable(step):
        return _play(step(*args), *args)
    return step


class FakeDaraja:
    """DarajaClient's public methods. Pushes are accepted with fresh ids unless `push_script` says otherwise; queries
    answer "processing" (None) unless `query_script` holds a step for that CheckoutRequestID (or for None: any)."""

    def __init__(self) -> None:
        self.verify_calls: list[tuple[str, str, str]] = []
        self.push_calls: list[tuple[DarajaApp, StkPushOrder]] = []
        self.query_calls: list[tuple[DarajaApp, str]] = []
        self.verify_script: list[Scripted] = []
        self.push_script: list[Scripted] = []
        self.query_script: dict[str | None, list[Scripted]] = {}
        self._ids = itertools.count(1)

    def verify_credentials(self, environment: str, consumer_key: str, consumer_secret: str) -> None:
        self.verify_calls.append((environment, consumer_key, consumer_secret))
        if self.verify_script:
            _play(self.verify_script.pop(0), environment, consumer_key, consumer_secret)

    def stk_push(self, app: DarajaApp, order: StkPushOrder) -> StkPushAccepted:
        self.push_calls.append((app, order))
        if self.push_script:
            answer: StkPushAccepted = _play(self.push_script.pop(0), app, order)
            return answer
        n = next(self._ids)
        return StkPushAccepted(
            merchant_request_id=f"29115-{n}",
            checkout_request_id=f"ws_CO_29112026060000{n:06d}",
            customer_message="Success. Request accepted for processing",
            response_description="Success. Request accepted for processing",
        )

    def stk_query(self, app: DarajaApp, checkout_request_id: str) -> StkQueryAnswer | None:
        self.query_calls.append((app, checkout_request_id))
        steps = self.query_script.get(checkout_request_id) or self.query_script.get(None)
        if not steps:
            return None
        answer: StkQueryAnswer | None = _play(steps.pop(0) if len(steps) > 1 else steps[0], app, checkout_request_id)
        return answer

    def script_query(self, checkout_request_id: str | None, *steps: Scripted) -> None:
        """Answer queries for one payment (None: any) with these steps in turn; the last one repeats."""
        self.query_script[checkout_request_id] = list(steps)


def query_answer(checkout_request_id: str, result_code: str, result_desc: str = "") -> StkQueryAnswer:
    raw = {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": "29115-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": result_desc,
    }
    return StkQueryAnswer(result_code, result_desc, "29115-1", checkout_request_id, raw)
