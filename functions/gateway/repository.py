"""Firestore adapter: load and save developers, payments, payers, idempotency claims, callback routes, audit copies
and quarantined callbacks. It holds no business rule: the domain decides, this stores what it decided.

Every save of an existing payment or payer carries the `update_time` it was loaded with as a precondition, and
several saves go in one batch (`commit`), all or nothing. A lost race raises `WriteConflict`; `retry_on_conflict`
reloads and decides again. Every path starts at `developers/{uid}` except the two server-only collections.

Layout:
    developers/{uid}                                  registry: identity + non-secret Daraja set-ups by environment
    developers/{uid}/payments/{payment_id}            the payment
    developers/{uid}/payments/{payment_id}/callbacks  raw callbacks and query answers, kept for audit
    developers/{uid}/payers/{msisdn}                  server-only: a payer's phone, its prompt limits and results
    developers/{uid}/limits/{push-N | credential_puts} server-only: the developer's abuse-limit shards and windows
    developers/{uid}/idempotency_keys/{sha256(key)}   claims; expire through the `expires_at` TTL field
    developers/{uid}/events/{evt_id}                  outbox: a payment's events, in the commit of its change
    callback_tokens/{sha256(token)}                   server-only: a callback URL token -> (uid, payment_id, msisdn)
    quarantined_callbacks/{id}                        server-only: callbacks that matched nothing we know
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from gateway import errors
from gateway.domain.callback import is_checkout_request_id
from gateway.domain.daraja_setup import Setups, entries_of, setups_of
from gateway.domain.idempotency import IdempotencyRecord
from gateway.domain.limits import PhoneLock, PushBucket, PushShard, SlidingWindow
from gateway.domain.payment import Payer, Payment, PaymentStatus, PushState, ReportedOutcome
from gateway.domain.phone import mask_msisdn
from gateway.firestore_client import (
    FirestoreAdapter,
    decode_page_token,
    encode_page_token,
    usable_document_id,
    utc,
    utc_or_none,
)

CALLBACK_TOKENS = "callback_tokens"
QUARANTINE = "quarantined_callbacks"
# How long a use case keeps retrying lost races before it gives up (the callback is then answered 500).
RETRY_DEADLINE_S = 20.0

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class WriteConflict(Exception):
    """A precondition failed: the document changed since it was loaded, or a `create` found it already there."""


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A loaded value and the version (Firestore `update_time`) a save must find to succeed."""

    value: T
    version: Any


@dataclass(frozen=True)
class CallbackRoute:
    uid: str
    payment_id: str
    msisdn: str | None = None  # the payer's full number lives here, server-only, not in the payment document


@dataclass(frozen=True)
class PushContext:
    """What a push reads, in one round trip: the registry entry, the payer's phone and one limiter shard."""

    developer: dict[str, Any] | None
    payer: Versioned[Payer] | None
    shard_index: int
    shard: Versioned[PushShard] | None


@dataclass(frozen=True)
class SettlementContext:
    """What settling a routed callback reads, in one round trip: the payment and the payer whose number the route
    names (None when no number was given or the document does not exist)."""

    payment: Versioned[Payment] | None
    payer: Versioned[Payer] | None


@dataclass(frozen=True)
class CallbackAudit:
    """One callback or query answer as it arrived. The raw body is kept as bounded text: Firestore refuses some
    valid JSON (integers of 2^63 and more, nesting deeper than 20), and an audit copy must never break a callback."""

    received_at: datetime
    source: str
    result_code: str | None
    action: str
    raw_body: str
    source_ip: str | None = None


@dataclass(frozen=True)
class QuarantinedCallback:
    received_at: datetime
    reason: str
    raw_body: str
    source_ip: str | None
    token_sha256: str | None
    checkout_request_id: str | None
    expires_at: datetime


# ------------------------------------------------------------------------------------------------ writes
@dataclass(frozen=True)
class SavePayment:
    uid: str
    payment: Payment
    version: Any = None  # None: create, the payment must not exist yet
    # The payment as loaded at `version`, when the saver has it: only the fields that differ from it are written.
    before: Payment | None = None


@dataclass(frozen=True)
class SavePayer:
    uid: str
    payer: Payer
    version: Any = None


@dataclass(frozen=True)
class CreateCallbackRoute:
    token_sha256: str
    route: CallbackRoute
    created_at: datetime


@dataclass(frozen=True)
class SaveIdempotency:
    uid: str
    key_hash: str
    record: IdempotencyRecord
    create: bool = False


@dataclass(frozen=True)
class DeleteIdempotency:
    uid: str
    key_hash: str
    version: Any = None  # when set, delete only the claim that was loaded (nobody replaced it since)


@dataclass(frozen=True)
class AddAudit:
    uid: str
    payment_id: str
    audit: CallbackAudit


@dataclass(frozen=True)
class AddQuarantine:
    record: QuarantinedCallback


@dataclass(frozen=True)
class AddEvent:
    """An outbox entry, written in the same commit as the payment change it describes (gateway.domain.events).
    `data` is the payment as the API shows it; the delivery trigger fires when it is created."""

    uid: str
    event_id: str
    type: str
    created_at: datetime
    payment_id: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class SaveShard:
    uid: str
    index: int
    shard: PushShard
    version: Any = None


@dataclass(frozen=True)
class SaveWindow:
    uid: str
    name: str
    window: SlidingWindow
    version: Any = None


Write = (
    SavePayment
    | SavePayer
    | CreateCallbackRoute
    | SaveIdempotency
    | DeleteIdempotency
    | AddAudit
    | AddQuarantine
    | SaveShard
    | SaveWindow
    | AddEvent
)


def retry_on_conflict(attempt: Callable[[], T], deadline_s: float = RETRY_DEADLINE_S) -> T:
    """Run `attempt` until it commits without losing a race; jittered backoff so racers spread out."""
    deadline = time.monotonic() + deadline_s
    backoff_s = 0.02
    while True:
        try:
            return attempt()
        except WriteConflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0, backoff_s))
            backoff_s = min(backoff_s * 2, 0.5)


# ------------------------------------------------------------------------------------------------ mapping
def payment_to_document(payment: Payment) -> dict[str, Any]:
    reported = payment.reported_outcome
    return {
        "id": payment.id,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
        "phone": payment.phone,
        "route_id": payment.route_id,
        "account_reference": payment.account_reference,
        "description": payment.description,
        "metadata": dict(payment.metadata),
        "environment": payment.environment,
        "shortcode": payment.shortcode,
        "created_at": payment.created_at,
        "updated_at": payment.updated_at,
        "push_state": payment.push_state.value,
        "push_lease_until": payment.push_lease_until,
        "checkout_request_id": payment.checkout_request_id,
        "merchant_request_id": payment.merchant_request_id,
        "result_code": payment.result_code,
        "result_desc": payment.result_desc,
        "mpesa_receipt_number": payment.mpesa_receipt_number,
        "transaction_date": payment.transaction_date,
        "paid_phone": payment.paid_phone,
        "flags": list(payment.flags),
        "reported_outcome": None
        if reported is None
        else {
            "source": reported.source,
            "result_code": reported.result_code,
            "result_desc": reported.result_desc,
            "amount": reported.amount,
            "mpesa_receipt_number": reported.mpesa_receipt_number,
            "at": reported.at,
        },
        "settled_at": payment.settled_at,
        "settled_by": payment.settled_by,
        "next_check_at": payment.next_check_at,
        "query_attempts": payment.query_attempts,
        "last_queried_at": payment.last_queried_at,
    }


def payment_from_document(data: Mapping[str, Any]) -> Payment:
    reported = data.get("reported_outcome")
    return Payment(
        id=data["id"],
        status=PaymentStatus(data["status"]),
        amount=int(data["amount"]),
        currency=data.get("currency") or "KES",
        # Documents written before the full number moved to the route still carry it; it is not written back.
        msisdn=data.get("msisdn"),
        phone=data.get("phone") or (mask_msisdn(data["msisdn"]) if data.get("msisdn") else ""),
        route_id=data.get("route_id"),
        account_reference=data.get("account_reference") or "",
        description=data.get("description") or "",
        metadata=dict(data.get("metadata") or {}),
        environment=data.get("environment") or "",
        shortcode=data.get("shortcode") or "",
        created_at=utc(data["created_at"]),
        updated_at=utc(data.get("updated_at") or data["created_at"]),
        # Payments stored before intent-first pushes always had Daraja's answer.
        push_state=PushState(data.get("push_state") or PushState.ACCEPTED.value),
        push_lease_until=utc_or_none(data.get("push_lease_until")),
        checkout_request_id=data.get("checkout_request_id"),
        merchant_request_id=data.get("merchant_request_id"),
        result_code=data.get("result_code"),
        result_desc=data.get("result_desc"),
        mpesa_receipt_number=data.get("mpesa_receipt_number"),
        transaction_date=data.get("transaction_date"),
        paid_phone=data.get("paid_phone") or (mask_msisdn(data["paid_msisdn"]) if data.get("paid_msisdn") else None),
        flags=tuple(data.get("flags") or ()),
        reported_outcome=None
        if not reported
        else ReportedOutcome(
            source=reported["source"],
            result_code=reported["result_code"],
            result_desc=reported.get("result_desc") or "",
            amount=reported.get("amount"),
            mpesa_receipt_number=reported.get("mpesa_receipt_number"),
            at=utc(reported["at"]),
        ),
        settled_at=utc_or_none(data.get("settled_at")),
        settled_by=data.get("settled_by"),
        next_check_at=utc_or_none(data.get("next_check_at")),
        query_attempts=int(data.get("query_attempts") or 0),
        last_queried_at=utc_or_none(data.get("last_queried_at")),
    )


def payer_to_document(payer: Payer) -> dict[str, Any]:
    return {
        "msisdn": payer.msisdn,
        "first_seen_at": payer.first_seen_at,
        "last_seen_at": payer.last_seen_at,
        "payment_count": payer.payment_count,
        "succeeded_count": payer.succeeded_count,
        "total_paid": payer.total_paid,
        "recent_prompts": list(payer.recent_prompts.times),
        "in_flight": None
        if payer.in_flight is None
        else {"payment_id": payer.in_flight.payment_id, "until": payer.in_flight.until},
    }


def payer_from_document(data: Mapping[str, Any]) -> Payer:
    return Payer(
        msisdn=data["msisdn"],
        first_seen_at=utc(data["first_seen_at"]),
        last_seen_at=utc(data["last_seen_at"]),
        payment_count=int(data.get("payment_count") or 0),
        succeeded_count=int(data.get("succeeded_count") or 0),
        total_paid=int(data.get("total_paid") or 0),
        recent_prompts=SlidingWindow(tuple(utc(t) for t in data.get("recent_prompts") or ())),
        in_flight=_phone_lock(data.get("in_flight")),
    )


def _phone_lock(data: Any) -> PhoneLock | None:
    if not isinstance(data, Mapping) or not data.get("payment_id"):
        return None
    return PhoneLock(str(data["payment_id"]), utc(data["until"]))


def shard_to_document(shard: PushShard) -> dict[str, Any]:
    return {
        environment: {
            "tokens": bucket.tokens,
            "refilled_at": bucket.refilled_at,
            "day": bucket.day,
            "day_count": bucket.day_count,
        }
        for environment, bucket in shard.buckets
    }


def shard_from_document(data: Mapping[str, Any]) -> PushShard:
    buckets = []
    for environment, value in sorted(data.items()):
        if isinstance(value, Mapping):
            buckets.append(
                (
                    environment,
                    PushBucket(
                        tokens=float(value.get("tokens") or 0.0),
                        refilled_at=utc_or_none(value.get("refilled_at")),
                        day=str(value.get("day") or ""),
                        day_count=int(value.get("day_count") or 0),
                    ),
                )
            )
    return PushShard(tuple(buckets))


def idempotency_to_document(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "state": record.state,
        "fingerprint": record.fingerprint,
        "payment_id": record.payment_id,
        "status": record.status,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "lease_expires_at": record.lease_expires_at,
    }


def idempotency_from_document(data: Mapping[str, Any]) -> IdempotencyRecord | None:
    if not data.get("payment_id"):
        return None  # a claim from before intent-first pushes: nothing to answer from, treat as absent
    return IdempotencyRecord(
        fingerprint=data["fingerprint"],
        payment_id=data["payment_id"],
        state="done" if data.get("state") == "done" else "in_progress",
        created_at=utc(data["created_at"]),
        expires_at=utc(data["expires_at"]),
        lease_expires_at=utc(data.get("lease_expires_at") or data["created_at"]),
        status=int(data["status"]) if data.get("status") is not None else None,
    )


# ------------------------------------------------------------------------------------------------ adapter
class PaymentRepository(FirestoreAdapter):
    # ------------------------------------------------------------------------------------------- plumbing
    def _developer(self, uid: str) -> Any:
        return self.client.collection("developers").document(uid)

    def _payment(self, uid: str, payment_id: str) -> Any:
        return self._developer(uid).collection("payments").document(payment_id)

    def _payer(self, uid: str, msisdn: str) -> Any:
        return self._developer(uid).collection("payers").document(msisdn)

    def _idempotency(self, uid: str, key_hash: str) -> Any:
        return self._developer(uid).collection("idempotency_keys").document(key_hash)

    def _route(self, token_sha256: str) -> Any:
        return self.client.collection(CALLBACK_TOKENS).document(token_sha256)

    def _limit(self, uid: str, name: str) -> Any:
        return self._developer(uid).collection("limits").document(name)

    # ------------------------------------------------------------------------------------------ developers
    def ensure_developer(self, uid: str, email: str | None) -> dict[str, Any]:
        """The registry entry, created on the developer's first authenticated call."""
        from google.api_core import exceptions as api_exceptions

        ref = self._developer(uid)
        snapshot = ref.get()
        if snapshot.exists:
            data: dict[str, Any] = snapshot.to_dict() or {}
            return data
        now = utcnow()
        record = {"uid": uid, "email": email, "created_at": now, "updated_at": now, "daraja": None}
        try:
            ref.create(record)
        except api_exceptions.AlreadyExists:
            # Two first calls raced; the other one created it.
            return ref.get().to_dict() or record
        return record

    def daraja_setups(self, uid: str) -> Setups:
        """The developer's usable Daraja set-ups by environment, without creating a registry entry (server-side)."""
        snapshot = self._developer(uid).get()
        return setups_of((snapshot.to_dict() or {}).get("daraja") if snapshot.exists else None)

    def update_daraja(self, uid: str, email: str | None, change: Callable[[Setups], Setups | None]) -> Setups | None:
        """Read the registry's Daraja entries (old single-set layout migrated), let `change` decide the new entries
        (None: leave them), and write them only if the registry did not change since it was read; on a lost race
        read and decide again. Returns the entries written, or None when `change` left them."""
        from google.api_core import exceptions as api_exceptions

        ref = self._developer(uid)

        def attempt() -> Setups | None:
            snapshot = ref.get()
            entries = entries_of((snapshot.to_dict() or {}).get("daraja") if snapshot.exists else None)
            changed = change(entries)
            if changed is None:
                return None
            now = utcnow()
            try:
                if snapshot.exists:
                    # The whole map is written: an old single-set layout leaves no stray keys behind.
                    fields: dict[str, Any] = {"daraja": changed, "updated_at": now}
                    if email is not None:
                        fields["email"] = email
                    ref.update(fields, option=self.client.write_option(last_update_time=snapshot.update_time))
                else:
                    ref.create({"uid": uid, "email": email, "created_at": now, "updated_at": now, "daraja": changed})
            except (api_exceptions.FailedPrecondition, api_exceptions.Conflict, api_exceptions.NotFound):
                raise WriteConflict("developer") from None
            return changed

        return retry_on_conflict(attempt)

    # ---------------------------------------------------------------------------------------------- loads
    def load_payment(self, uid: str, payment_id: str) -> Versioned[Payment] | None:
        if not usable_document_id(payment_id):
            return None
        return _versioned(self._payment(uid, payment_id).get(), payment_from_document)

    def load_payer(self, uid: str, msisdn: str) -> Versioned[Payer] | None:
        return _versioned(self._payer(uid, msisdn).get(), payer_from_document)

    def load_idempotency(self, uid: str, key_hash: str) -> Versioned[IdempotencyRecord] | None:
        snapshot = self._idempotency(uid, key_hash).get()
        record = idempotency_from_document(snapshot.to_dict() or {}) if snapshot.exists else None
        return Versioned(record, snapshot.update_time) if record is not None else None

    def load_callback_route(self, token_sha256: str) -> CallbackRoute | None:
        if not usable_document_id(token_sha256):
            return None
        snapshot = self._route(token_sha256).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        return CallbackRoute(data["uid"], data["payment_id"], data.get("msisdn"))

    def load_push_context(self, uid: str, msisdn: str, shard_index: int) -> PushContext:
        """One round trip (a batched get) for the three documents a push decides on."""
        refs = [self._developer(uid), self._payer(uid, msisdn), self._limit(uid, shard_name(shard_index))]
        found = {snapshot.reference.path: snapshot for snapshot in self.client.get_all(refs)}
        developer, payer, shard = (found.get(ref.path) for ref in refs)
        return PushContext(
            developer=(developer.to_dict() or {}) if developer is not None and developer.exists else None,
            shard_index=shard_index,
            payer=_versioned(payer, payer_from_document),
            shard=_versioned(shard, shard_from_document),
        )

    def load_settlement_context(self, uid: str, payment_id: str, msisdn: str | None) -> SettlementContext:
        """One round trip (a batched get) for the payment a callback settles and its payer (`msisdn`, from the
        callback route; None reads the payment alone)."""
        if not usable_document_id(payment_id):
            return SettlementContext(None, None)
        refs = [self._payment(uid, payment_id)]
        if msisdn is not None and usable_document_id(msisdn):
            refs.append(self._payer(uid, msisdn))
        found = {snapshot.reference.path: snapshot for snapshot in self.client.get_all(refs)}
        return SettlementContext(
            payment=_versioned(found.get(refs[0].path), payment_from_document),
            payer=_versioned(found.get(refs[1].path), payer_from_document) if len(refs) > 1 else None,
        )

    def load_shard(self, uid: str, shard_index: int) -> Versioned[PushShard] | None:
        return _versioned(self._limit(uid, shard_name(shard_index)).get(), shard_from_document)

    def load_window(self, uid: str, name: str) -> Versioned[SlidingWindow] | None:
        snapshot = self._limit(uid, name).get()
        if not snapshot.exists:
            return None
        times = (snapshot.to_dict() or {}).get("times") or ()
        return Versioned(SlidingWindow(tuple(utc(t) for t in times)), snapshot.update_time)

    def find_payment_by_checkout(self, uid: str, checkout_request_id: str) -> Versioned[Payment] | None:
        from google.cloud import firestore

        if not is_checkout_request_id(checkout_request_id):
            return None  # matches no payment; Firestore would refuse a long one with INVALID_ARGUMENT (a 500)
        query = (
            self._developer(uid)
            .collection("payments")
            .where(filter=firestore.FieldFilter("checkout_request_id", "==", checkout_request_id))
            .limit(1)
        )
        for doc in query.stream():
            return Versioned(payment_from_document(doc.to_dict() or {}), doc.update_time)
        return None

    def list_payments(
        self, uid: str, status: str | None, limit: int, page_token: str | None, environment: str | None = None
    ) -> tuple[list[Payment], str | None]:
        from google.cloud import firestore

        query = self._developer(uid).collection("payments")
        if environment is not None:
            query = query.where(filter=firestore.FieldFilter("environment", "==", environment))
        if status is not None:
            query = query.where(filter=firestore.FieldFilter("status", "==", status))
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING
        )
        if page_token is not None:
            query = query.start_after(self._page_cursor(uid, page_token))
        documents = list(query.limit(limit + 1).stream())
        page = [payment_from_document(doc.to_dict() or {}) for doc in documents[:limit]]
        next_token = encode_page_token(documents[limit - 1].id) if len(documents) > limit else None
        return page, next_token

    def _page_cursor(self, uid: str, page_token: str) -> Any:
        payment_id = decode_page_token(page_token)
        snapshot = self._payment(uid, payment_id).get() if usable_document_id(payment_id) else None
        if snapshot is None or not snapshot.exists:
            raise errors.InvalidRequest("invalid_page_token", "page_token is not valid", "page_token")
        return snapshot

    def due_payments(self, now: datetime, limit: int) -> list[tuple[str, Versioned[Payment]]]:
        """Pending payments of every developer whose next check is due (collection-group query, indexed)."""
        from google.cloud import firestore

        query = (
            self.client.collection_group("payments")
            .where(filter=firestore.FieldFilter("status", "==", PaymentStatus.PENDING.value))
            .where(filter=firestore.FieldFilter("next_check_at", "<=", now))
            .order_by("next_check_at")
            .limit(limit)
        )
        found = []
        for doc in query.stream():
            # The parent of payments/{id} is developers/{uid}: the uid comes from the path, not from the data.
            uid = doc.reference.parent.parent.id
            found.append((uid, Versioned(payment_from_document(doc.to_dict() or {}), doc.update_time)))
        return found

    # --------------------------------------------------------------------------------------------- commit
    def commit(self, writes: Sequence[Write]) -> list[Any]:
        """All writes in one batch, or none. Returns each write's new version (`update_time`), in order."""
        from google.api_core import exceptions as api_exceptions

        batch = self.client.batch()
        for write in writes:
            self._add(batch, write)
        try:
            results = batch.commit()
        except (api_exceptions.FailedPrecondition, api_exceptions.Conflict, api_exceptions.NotFound) as lost:
            # FAILED_PRECONDITION: an update_time no longer matches; ALREADY_EXISTS / ABORTED are Conflicts;
            # NOT_FOUND: a document saved with a version was deleted meanwhile.
            raise WriteConflict(type(lost).__name__) from None
        return [getattr(result, "update_time", None) for result in results]

    def _add(self, batch: Any, write: Write) -> None:
        if isinstance(write, SavePayment):
            document = payment_to_document(write.payment)
            if write.version is not None and write.before is not None:
                # The precondition holds the stored document to the one `before` was read from: what did not change
                # stays as stored (and reads back the same), so it is neither encoded nor sent again.
                stored = payment_to_document(write.before)
                document = {name: value for name, value in document.items() if stored.get(name) != value} or {
                    "id": write.payment.id
                }
            self._save(batch, self._payment(write.uid, write.payment.id), document, write.version)
        elif isinstance(write, SavePayer):
            self._save(batch, self._payer(write.uid, write.payer.msisdn), payer_to_document(write.payer), write.version)
        elif isinstance(write, CreateCallbackRoute):
            batch.create(
                self._route(write.token_sha256),
                {
                    "uid": write.route.uid,
                    "payment_id": write.route.payment_id,
                    "msisdn": write.route.msisdn,
                    "created_at": write.created_at,
                },
            )
        elif isinstance(write, SaveIdempotency):
            ref = self._idempotency(write.uid, write.key_hash)
            if write.create:
                batch.create(ref, idempotency_to_document(write.record))
            else:
                batch.set(ref, idempotency_to_document(write.record))
        elif isinstance(write, DeleteIdempotency):
            option = None if write.version is None else self.client.write_option(last_update_time=write.version)
            batch.delete(self._idempotency(write.uid, write.key_hash), option=option)
        elif isinstance(write, AddAudit):
            audit = write.audit
            batch.create(
                self._payment(write.uid, write.payment_id).collection("callbacks").document(),
                {
                    "received_at": audit.received_at,
                    "source": audit.source,
                    "source_ip": audit.source_ip,
                    "result_code": audit.result_code,
                    "action": audit.action,
                    "raw_body": audit.raw_body,
                },
            )
        elif isinstance(write, AddQuarantine):
            record = write.record
            batch.create(
                self.client.collection(QUARANTINE).document(),
                {
                    "received_at": record.received_at,
                    "reason": record.reason,
                    "raw_body": record.raw_body,
                    "source_ip": record.source_ip,
                    "token_sha256": record.token_sha256,
                    "checkout_request_id": record.checkout_request_id,
                    "expires_at": record.expires_at,
                },
            )
        elif isinstance(write, AddEvent):
            batch.create(
                self._developer(write.uid).collection("events").document(write.event_id),
                {
                    "id": write.event_id,
                    "type": write.type,
                    "created_at": write.created_at,
                    "payment_id": write.payment_id,
                    # Top-level so an environment-bound API key's listing can filter on it (indexed).
                    "environment": write.data.get("environment"),
                    "data": dict(write.data),
                    # The fan-out sets it true with its deliveries; the sweep takes events left false too long.
                    "fanned_out": False,
                },
            )
        elif isinstance(write, SaveShard):
            ref = self._limit(write.uid, shard_name(write.index))
            self._save(batch, ref, shard_to_document(write.shard), write.version)
        elif isinstance(write, SaveWindow):
            self._save(batch, self._limit(write.uid, write.name), {"times": list(write.window.times)}, write.version)
        else:  # pragma: no cover - the Write union is closed
            raise TypeError(f"unknown write {write!r}")

    def _save(self, batch: Any, ref: Any, document: dict[str, Any], version: Any) -> None:
        if version is None:
            batch.create(ref, document)
        else:
            # Every field given is written (a map replaces the whole map), but only if nobody wrote since.
            batch.update(ref, document, option=self.client.write_option(last_update_time=version))


def shard_name(index: int) -> str:
    return f"push-{index}"


def _versioned(snapshot: Any, decode: Callable[[Mapping[str, Any]], T]) -> Versioned[T] | None:
    """A read document decoded with the version it was read at; None for one missing (or not returned)."""
    if snapshot is None or not snapshot.exists:
        return None
    return Versioned(decode(snapshot.to_dict() or {}), snapshot.update_time)


Change = tuple[Payment, list[Write]]


class PaymentStore(Protocol):
    """The port the use cases need: `PaymentRepository` here, an in-memory dict in unit tests."""

    def ensure_developer(self, uid: str, email: str | None) -> dict[str, Any]: ...
    def daraja_setups(self, uid: str) -> Setups: ...
    def update_daraja(
        self, uid: str, email: str | None, change: Callable[[Setups], Setups | None]
    ) -> Setups | None: ...
    def load_payment(self, uid: str, payment_id: str) -> Versioned[Payment] | None: ...
    def load_payer(self, uid: str, msisdn: str) -> Versioned[Payer] | None: ...
    def load_push_context(self, uid: str, msisdn: str, shard_index: int) -> PushContext: ...
    def load_settlement_context(self, uid: str, payment_id: str, msisdn: str | None) -> SettlementContext: ...
    def load_shard(self, uid: str, shard_index: int) -> Versioned[PushShard] | None: ...
    def load_window(self, uid: str, name: str) -> Versioned[SlidingWindow] | None: ...
    def load_idempotency(self, uid: str, key_hash: str) -> Versioned[IdempotencyRecord] | None: ...
    def load_callback_route(self, token_sha256: str) -> CallbackRoute | None: ...
    def find_payment_by_checkout(self, uid: str, checkout_request_id: str) -> Versioned[Payment] | None: ...
    def list_payments(
        self, uid: str, status: str | None, limit: int, page_token: str | None, environment: str | None = None
    ) -> tuple[list[Payment], str | None]: ...
    def due_payments(self, now: datetime, limit: int) -> list[tuple[str, Versioned[Payment]]]: ...
    def commit(self, writes: Sequence[Write]) -> list[Any]: ...


def update_payment(
    repository: PaymentStore,
    uid: str,
    payment_id: str,
    change: Callable[[Payment], Change | None],
    loaded: Versioned[Payment] | None = None,
    load: Callable[[], Versioned[Payment] | None] | None = None,
) -> Payment | None:
    """Load the payment, let `change` decide (the new payment plus any writes that go with it, or None for no
    change), and save it only if nobody wrote since; on a lost race load again and decide again. `load` replaces
    `load_payment` when the caller reads more with the payment in the same round trip.

    Returns the payment as stored afterwards, or None when it does not exist.
    """
    current = loaded

    def attempt() -> Payment | None:
        nonlocal current
        if current is None:
            current = load() if load is not None else repository.load_payment(uid, payment_id)
            if current is None:
                return None
        decided = change(current.value)
        if decided is None:
            return current.value
        after, writes = decided
        try:
            if after == current.value:
                if writes:
                    repository.commit(writes)
            else:
                repository.commit([SavePayment(uid, after, current.version, current.value), *writes])
        except WriteConflict:
            current = None
            raise
        return after

    return retry_on_conflict(attempt)
