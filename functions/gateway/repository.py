"""Firestore adapter: every read and write of developers, payments, payers, idempotency records and the callback
lookup. Every path starts at `developers/{uid}` except the server-only callback lookup, and every method takes
the verified uid, so a caller can only ever reach their own subtree.

Layout:
    developers/{uid}                                  registry: identity + non-secret Daraja set-up
    developers/{uid}/payments/{payment_id}            the payment
    developers/{uid}/payments/{payment_id}/callbacks  raw callbacks, kept for audit (unreadable by clients)
    developers/{uid}/payers/{msisdn}                  per-developer payer record
    developers/{uid}/idempotency_keys/{sha256(key)}   stored answers, expire through the `expires_at` TTL field
    checkout_requests/{CheckoutRequestID}             server-only: -> (uid, payment_id, callback token hash)
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway import errors
from gateway.domain.payment import PaymentStatus, SettlementDecision
from gateway.settings import Settings

CHECKOUT_LOOKUP = "checkout_requests"
# How long a settlement keeps retrying lost races before the callback is answered 500.
_SETTLE_DEADLINE_S = 20.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IdempotencyClaim:
    """The outcome of claiming a key: we own it now (`fresh`), or an earlier answer exists to replay."""

    fresh: bool
    replay_status: int | None = None
    replay_body: dict[str, Any] | None = None


@dataclass(frozen=True)
class CheckoutRoute:
    uid: str
    payment_id: str
    callback_token_sha256: str


@dataclass(frozen=True)
class SettlementResult:
    decision: SettlementDecision
    payment: dict[str, Any]


@dataclass
class FirestoreCounters:
    """Round trips by kind, for benchmarks: reads are document gets/queries, commits are write batches."""

    reads: int = 0
    commits: int = 0


class PaymentRepository:
    def __init__(self, settings: Settings, client_factory: Callable[[], Any] | None = None) -> None:
        self._settings = settings
        self._client_factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self._settle_locks = tuple(threading.Lock() for _ in range(64))
        self.counters = FirestoreCounters()

    # ------------------------------------------------------------------------------------------- plumbing
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    if self._client_factory is not None:
                        self._client = self._client_factory()
                    else:
                        from google.cloud import firestore

                        self._client = firestore.Client(project=self._settings.project_id)
        return self._client

    def _developer(self, uid: str) -> Any:
        return self.client.collection("developers").document(uid)

    def _payment(self, uid: str, payment_id: str) -> Any:
        return self._developer(uid).collection("payments").document(payment_id)

    def _idempotency(self, uid: str, key_hash: str) -> Any:
        return self._developer(uid).collection("idempotency_keys").document(key_hash)

    def _lookup(self, checkout_request_id: str) -> Any:
        return self.client.collection(CHECKOUT_LOOKUP).document(checkout_request_id)

    # ------------------------------------------------------------------------------------------ developers
    def ensure_developer(self, uid: str, email: str | None) -> dict[str, Any]:
        """The registry entry, created on the developer's first authenticated call."""
        ref = self._developer(uid)
        self.counters.reads += 1
        snapshot = ref.get()
        if snapshot.exists:
            data: dict[str, Any] = snapshot.to_dict() or {}
            return data
        now = utcnow()
        record = {"uid": uid, "email": email, "created_at": now, "updated_at": now, "daraja": None}
        from google.api_core import exceptions as api_exceptions

        try:
            self.counters.commits += 1
            ref.create(record)
        except api_exceptions.AlreadyExists:
            # Two first calls raced; the other one created it.
            self.counters.reads += 1
            return ref.get().to_dict() or record
        return record

    def developer_setup(self, uid: str) -> dict[str, Any] | None:
        """The non-secret Daraja set-up of a developer, without creating a registry entry (server-side sweeps)."""
        self.counters.reads += 1
        snapshot = self._developer(uid).get()
        setup = (snapshot.to_dict() or {}).get("daraja") if snapshot.exists else None
        return dict(setup) if setup else None

    def save_daraja_setup(self, uid: str, email: str | None, setup: dict[str, Any]) -> None:
        now = utcnow()
        self.counters.commits += 1
        self._developer(uid).set({"uid": uid, "email": email, "updated_at": now, "daraja": setup}, merge=True)

    def clear_daraja_setup(self, uid: str) -> None:
        self.counters.commits += 1
        self._developer(uid).set({"daraja": None, "updated_at": utcnow()}, merge=True)

    # -------------------------------------------------------------------------------------- idempotency
    def claim_idempotency_key(self, uid: str, key_hash: str, fingerprint: str, wait_s: float) -> IdempotencyClaim:
        """Claim the key atomically (`create` fails if it exists), or return the stored answer to replay.

        A concurrent request holding the key makes this wait up to `wait_s` for its answer, so N concurrent
        retries produce one Daraja call and N identical answers.
        """
        from google.api_core import exceptions as api_exceptions

        ref = self._idempotency(uid, key_hash)
        deadline = time.monotonic() + wait_s
        while True:
            now = utcnow()
            record = {
                "state": "in_progress",
                "fingerprint": fingerprint,
                "created_at": now,
                "expires_at": now + timedelta(seconds=self._settings.idempotency_ttl_s),
            }
            try:
                self.counters.commits += 1
                ref.create(record)
                return IdempotencyClaim(fresh=True)
            except api_exceptions.AlreadyExists:
                pass
            self.counters.reads += 1
            existing = ref.get().to_dict() or {}
            expires_at = existing.get("expires_at")
            if isinstance(expires_at, datetime) and expires_at <= now:
                # TTL deletion runs within a day, not on the dot: an expired record is as good as absent.
                self.release_idempotency_key(uid, key_hash)
                continue
            if existing.get("fingerprint") != fingerprint:
                raise errors.IdempotencyConflict(
                    "idempotency_conflict",
                    "this Idempotency-Key was already used with a different request body",
                    "Idempotency-Key",
                )
            if existing.get("state") == "done":
                return IdempotencyClaim(
                    fresh=False, replay_status=int(existing["status"]), replay_body=dict(existing["body"])
                )
            if time.monotonic() >= deadline:
                raise errors.IdempotencyConflict(
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                    "Idempotency-Key",
                )
            time.sleep(0.1)

    def store_idempotent_answer(self, uid: str, key_hash: str, status: int, body: dict[str, Any]) -> None:
        self.counters.commits += 1
        self._idempotency(uid, key_hash).set({"state": "done", "status": status, "body": body}, merge=True)

    def release_idempotency_key(self, uid: str, key_hash: str) -> None:
        self.counters.commits += 1
        self._idempotency(uid, key_hash).delete()

    # ------------------------------------------------------------------------------------------- payments
    def record_payment(
        self,
        uid: str,
        payment: dict[str, Any],
        callback_token_sha256: str,
        idempotency: tuple[str, int, dict[str, Any]] | None,
    ) -> None:
        """One commit: the payment, its callback lookup and (if keyed) the idempotency answer."""
        batch = self.client.batch()
        batch.create(self._payment(uid, payment["id"]), payment)
        batch.create(
            self._lookup(payment["checkout_request_id"]),
            {
                "uid": uid,
                "payment_id": payment["id"],
                "callback_token_sha256": callback_token_sha256,
                "created_at": payment["created_at"],
            },
        )
        if idempotency is not None:
            key_hash, status, body = idempotency
            batch.set(self._idempotency(uid, key_hash), {"state": "done", "status": status, "body": body}, merge=True)
        self.counters.commits += 1
        batch.commit()

    def get_payment(self, uid: str, payment_id: str) -> dict[str, Any] | None:
        if not _usable_document_id(payment_id):
            return None
        self.counters.reads += 1
        snapshot = self._payment(uid, payment_id).get()
        return snapshot.to_dict() if snapshot.exists else None

    def checkout_route(self, checkout_request_id: str) -> CheckoutRoute | None:
        if not _usable_document_id(checkout_request_id):
            return None
        self.counters.reads += 1
        snapshot = self._lookup(checkout_request_id).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        return CheckoutRoute(data["uid"], data["payment_id"], data["callback_token_sha256"])

    def list_payments(
        self, uid: str, status: str | None, limit: int, page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        from google.cloud import firestore

        query = self._developer(uid).collection("payments")
        if status is not None:
            query = query.where(filter=firestore.FieldFilter("status", "==", status))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING
        )
        if page_token is not None:
            cursor = self._page_cursor(uid, page_token)
            query = query.start_after(cursor)
        self.counters.reads += 1
        documents = list(query.limit(limit + 1).stream())
        page = [doc.to_dict() or {} for doc in documents[:limit]]
        next_token = _encode_page_token(documents[limit - 1].id) if len(documents) > limit else None
        return page, next_token

    def _page_cursor(self, uid: str, page_token: str) -> Any:
        payment_id = _decode_page_token(page_token)
        self.counters.reads += 1
        snapshot = self._payment(uid, payment_id).get() if _usable_document_id(payment_id) else None
        if snapshot is None or not snapshot.exists:
            raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token")
        return snapshot

    def settle(
        self,
        uid: str,
        payment_id: str,
        decide: Callable[[dict[str, Any]], SettlementDecision],
        applied_fields: Callable[[SettlementDecision], dict[str, Any]],
        audit: dict[str, Any] | None,
    ) -> SettlementResult | None:
        """Apply a callback or query outcome exactly once, with optimistic concurrency.

        The payment is read, the decision made, and the change committed in one batch whose update carries the
        payment's `update_time` as a precondition. Of N concurrent duplicates exactly one batch commits; the others
        fail the precondition, read again, see a settled payment and only record their audit copy. Unlike a
        read-write transaction this holds no lock, so a burst of duplicates cannot stall each other (the Firestore
        emulator's lock timeouts turned 50 concurrent transactions into a livelock).
        """
        from google.cloud import firestore

        payment_ref = self._payment(uid, payment_id)
        deadline = time.monotonic() + _SETTLE_DEADLINE_S
        backoff_s = 0.02
        while True:
            self.counters.reads += 1
            snapshot = payment_ref.get()
            if not snapshot.exists:
                return None
            payment: dict[str, Any] = snapshot.to_dict() or {}
            decision = decide(payment)
            now = utcnow()
            batch = self.client.batch()
            if audit is not None:
                batch.create(payment_ref.collection("callbacks").document(), {**audit, "action": decision.action})
            if decision.action == "ignore":
                # A settled payment never changes again, so this decision cannot be stale: no precondition needed.
                self.counters.commits += 1
                batch.commit()
                return SettlementResult(decision, payment)
            changes = applied_fields(decision)
            changes["updated_at"] = now
            if decision.flags:
                changes["flags"] = firestore.ArrayUnion(list(decision.flags))
            batch.update(payment_ref, changes, option=self.client.write_option(last_update_time=snapshot.update_time))
            if decision.action == "settle":
                self._add_payer_update(batch, uid, payment, decision, now)
            try:
                self.counters.commits += 1
                batch.commit()
            except Exception as failure:  # only lost races are retried; anything else re-raises
                if not _lost_race(failure) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0, backoff_s))
                backoff_s = min(backoff_s * 2, 0.5)
                continue
            merged = {**payment, **{k: v for k, v in changes.items() if k != "flags"}}
            merged["flags"] = sorted(set(payment.get("flags", [])) | set(decision.flags))
            return SettlementResult(decision, merged)

    def _add_payer_update(
        self, batch: Any, uid: str, payment: dict[str, Any], decision: SettlementDecision, now: datetime
    ) -> None:
        """Count the settled payment on the payer's record, in the same batch as the settlement itself."""
        from google.cloud import firestore

        payer_ref = self._developer(uid).collection("payers").document(payment["msisdn"])
        succeeded = decision.new_status is PaymentStatus.SUCCEEDED
        paid = int(payment["amount"]) if succeeded else 0
        self.counters.reads += 1
        if payer_ref.get().exists:
            batch.set(
                payer_ref,
                {
                    "last_seen_at": now,
                    "payment_count": firestore.Increment(1),
                    "succeeded_count": firestore.Increment(1 if succeeded else 0),
                    "total_paid": firestore.Increment(paid),
                },
                merge=True,
            )
        else:
            # `create` fails if another settlement created the payer first; the batch is then retried as a lost race.
            batch.create(
                payer_ref,
                {
                    "msisdn": payment["msisdn"],
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "payment_count": 1,
                    "succeeded_count": 1 if succeeded else 0,
                    "total_paid": paid,
                },
            )

    def claim_query_slot(self, uid: str, payment_id: str, interval_s: float, reconcile_after_s: float) -> bool:
        """True for exactly one caller per interval, so Daraja's query is called at most once per interval.

        It also schedules the reconciler's next look, later after every attempt (capped at six hours). The
        `update_time` precondition makes concurrent claimers race for one write, as in `settle`.
        """
        payment_ref = self._payment(uid, payment_id)
        self.counters.reads += 1
        snapshot = payment_ref.get()
        if not snapshot.exists:
            return False
        data = snapshot.to_dict() or {}
        if data.get("status") != PaymentStatus.PENDING.value:
            return False
        last = data.get("last_queried_at")
        now = utcnow()
        if isinstance(last, datetime) and (now - last).total_seconds() < interval_s:
            return False
        attempts = int(data.get("query_attempts") or 0) + 1
        delay_s = min(max(reconcile_after_s, 1.0) * 2**attempts, 6 * 3600.0)
        try:
            self.counters.commits += 1
            payment_ref.update(
                {"last_queried_at": now, "query_attempts": attempts, "next_check_at": now + timedelta(seconds=delay_s)},
                option=self.client.write_option(last_update_time=snapshot.update_time),
            )
        except Exception as failure:  # a lost race means another caller holds this interval
            if _lost_race(failure):
                return False
            raise
        return True

    def due_for_reconciliation(self, now: datetime, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Pending payments of every developer whose next check is due (collection-group query, indexed)."""
        from google.cloud import firestore

        query = (
            self.client.collection_group("payments")
            .where(filter=firestore.FieldFilter("status", "==", PaymentStatus.PENDING.value))
            .where(filter=firestore.FieldFilter("next_check_at", "<=", now))
            .order_by("next_check_at")
            .limit(limit)
        )
        self.counters.reads += 1
        found = []
        for doc in query.stream():
            # The parent of payments/{id} is developers/{uid}: the uid comes from the path, not from the data.
            uid = doc.reference.parent.parent.id
            found.append((uid, doc.to_dict() or {}))
        return found


def _lost_race(failure: Exception) -> bool:
    """Another writer got there first: a failed update_time precondition, or a `create` of a document that now
    exists (FAILED_PRECONDITION, ALREADY_EXISTS, or ABORTED from a contended commit)."""
    from google.api_core import exceptions as api_exceptions

    return isinstance(failure, api_exceptions.FailedPrecondition | api_exceptions.Conflict)


def _usable_document_id(value: str) -> bool:
    # Firestore rejects "/", "." / "..", and reserved __x__ ids with an error; such ids can never exist here.
    return (
        0 < len(value) <= 200
        and "/" not in value
        and value not in (".", "..")
        and not (value.startswith("__") and value.endswith("__"))
    )


def _encode_page_token(payment_id: str) -> str:
    return base64.urlsafe_b64encode(payment_id.encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token") from None
