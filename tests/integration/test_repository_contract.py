"""One contract for the PaymentStore port, run against the in-memory fake of the unit tests and against the real
Firestore adapter on the emulator, so the fake cannot drift from what Firestore does.

What the contract says: values round-trip unchanged; a create finds nothing there; a save carries the version it
was loaded with and fails (WriteConflict) if anyone wrote since; a commit is all or nothing; queries are
tenant-scoped and ordered as documented.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway import errors
from gateway.domain.idempotency import IdempotencyRecord
from gateway.domain.limits import DeveloperLimits, PhoneLock, PushShard, SlidingWindow
from gateway.domain.payment import (
    Payer,
    Payment,
    PaymentOutcome,
    PaymentPolicy,
    PaymentStatus,
    PushState,
    ReportedOutcome,
)
from gateway.repository import (
    AddAudit,
    AddQuarantine,
    CallbackAudit,
    CallbackRoute,
    CreateCallbackRoute,
    DeleteIdempotency,
    PaymentRepository,
    PaymentStore,
    QuarantinedCallback,
    SaveIdempotency,
    SavePayer,
    SavePayment,
    SaveShard,
    SaveWindow,
    SettlementContext,
    WriteConflict,
    payment_from_document,
    payment_to_document,
    update_payment,
)
from gateway.settings import Settings
from tests import support
from tests.unit.fakes import FakeRepository

# Whole milliseconds: what both stores keep exactly.
T0 = datetime(2026, 12, 1, 9, 30, 0, 123000, tzinfo=UTC)
POLICY = PaymentPolicy()


@pytest.fixture(params=["fake", "firestore"])
def store(request: pytest.FixtureRequest) -> Iterator[PaymentStore]:
    if request.param == "fake":
        yield FakeRepository()
    else:
        yield PaymentRepository(Settings(project_id=support.PROJECT_ID))


def uid() -> str:
    return "contract-" + secrets.token_hex(6)


def new_payment(created_at: datetime = T0, **changes: Any) -> Payment:
    payment = Payment.initiate(
        payment_id="pay_" + secrets.token_hex(12),
        msisdn="254712345678",
        amount=150,
        account_reference="INV-1",
        description="Order 1",
        metadata={"order": "A-1", "n": 3, "ok": True, "none": None},
        environment="sandbox",
        shortcode="174379",
        now=created_at,
        policy=POLICY,
    )
    # As the use cases hold a payment they loaded: the full number is in the server-only route, not the document.
    return replace(payment, msisdn=None, **changes)


def test_a_payment_round_trips_with_every_field(store: PaymentStore) -> None:
    owner = uid()
    payment = new_payment(
        status=PaymentStatus.SUCCEEDED,
        push_state=PushState.ACCEPTED,
        push_lease_until=None,
        checkout_request_id="ws_CO_1",
        merchant_request_id="29115-1",
        result_code="0",
        result_desc="ok",
        mpesa_receipt_number="RCT123",
        transaction_date="20261201093000",
        paid_phone="2547******78",
        flags=("amount_mismatch", "settled_by_query"),
        reported_outcome=ReportedOutcome("callback", "0", "ok", str(2**64), "RCT0", T0),
        settled_at=T0 + timedelta(seconds=5),
        settled_by="callback",
        next_check_at=None,
        query_attempts=2,
        last_queried_at=T0 + timedelta(seconds=3),
    )
    store.commit([SavePayment(owner, payment)])
    loaded = store.load_payment(owner, payment.id)
    assert loaded is not None
    # Every field; the full number was never in the document (only the server-only callback route keeps it).
    assert loaded.value == payment
    assert loaded.value.phone == "2547******78"
    assert loaded.version is not None


def test_a_missing_payment_loads_as_none_and_other_tenants_see_nothing(store: PaymentStore) -> None:
    owner = uid()
    payment = new_payment()
    store.commit([SavePayment(owner, payment)])
    assert store.load_payment(uid(), payment.id) is None
    assert store.load_payment(owner, "pay_missing") is None


def test_create_fails_when_the_payment_exists(store: PaymentStore) -> None:
    owner = uid()
    payment = new_payment()
    store.commit([SavePayment(owner, payment)])
    with pytest.raises(WriteConflict):
        store.commit([SavePayment(owner, payment)])


def test_a_save_needs_the_version_it_was_loaded_with(store: PaymentStore) -> None:
    owner = uid()
    payment = new_payment()
    store.commit([SavePayment(owner, payment)])
    first = store.load_payment(owner, payment.id)
    assert first is not None
    accepted = payment.accept("ws_CO_2", "m-2", T0 + timedelta(seconds=1), POLICY)
    [version] = store.commit([SavePayment(owner, accepted, first.version)])
    assert version != first.version
    with pytest.raises(WriteConflict):
        store.commit([SavePayment(owner, payment.refuse("1", "no", T0), first.version)])
    loaded = store.load_payment(owner, payment.id)
    assert loaded is not None and loaded.value == accepted and loaded.version == version


def test_a_commit_is_all_or_nothing(store: PaymentStore) -> None:
    owner = uid()
    key = secrets.token_hex(32)
    claim = IdempotencyRecord.claim("fp", "pay_x", T0, 60, 86400)
    store.commit([SaveIdempotency(owner, key, claim, create=True)])
    payment = new_payment()
    with pytest.raises(WriteConflict):
        store.commit([SavePayment(owner, payment), SaveIdempotency(owner, key, claim, create=True)])
    assert store.load_payment(owner, payment.id) is None


def test_idempotency_claims_are_created_once_overwritten_and_deleted(store: PaymentStore) -> None:
    owner = uid()
    key = secrets.token_hex(32)
    assert store.load_idempotency(owner, key) is None
    claim = IdempotencyRecord.claim("fp", "pay_1", T0, 60, 86400)
    store.commit([SaveIdempotency(owner, key, claim, create=True)])
    first = store.load_idempotency(owner, key)
    assert first is not None and first.value == claim
    with pytest.raises(WriteConflict):
        store.commit([SaveIdempotency(owner, key, claim, create=True)])
    store.commit([SaveIdempotency(owner, key, claim.answered(202))])
    answered = store.load_idempotency(owner, key)
    assert answered is not None and answered.value == claim.answered(202)
    # A delete conditioned on a version someone replaced since fails, and the newer claim stands.
    with pytest.raises(WriteConflict):
        store.commit([DeleteIdempotency(owner, key, first.version)])
    store.commit([DeleteIdempotency(owner, key, answered.version)])
    assert store.load_idempotency(owner, key) is None
    # An unconditional delete (a release by the claim's own request) needs no version, even of an absent claim.
    store.commit([DeleteIdempotency(owner, key)])


def test_callback_routes_are_created_once(store: PaymentStore) -> None:
    token = secrets.token_hex(32)
    route = CallbackRoute(uid(), "pay_1")
    assert store.load_callback_route(token) is None
    store.commit([CreateCallbackRoute(token, route, T0)])
    assert store.load_callback_route(token) == route
    with pytest.raises(WriteConflict):
        store.commit([CreateCallbackRoute(token, CallbackRoute(uid(), "pay_2"), T0)])
    assert store.load_callback_route(token) == route


def test_payers_round_trip_with_preconditions(store: PaymentStore) -> None:
    owner = uid()
    payer = Payer("254712345678", T0, T0, 1, 1, 150)
    assert store.load_payer(owner, payer.msisdn) is None
    store.commit([SavePayer(owner, payer)])
    loaded = store.load_payer(owner, payer.msisdn)
    assert loaded is not None and loaded.value == payer
    with pytest.raises(WriteConflict):
        store.commit([SavePayer(owner, payer)])
    bumped = Payer(payer.msisdn, T0, T0 + timedelta(seconds=1), 2, 1, 150)
    store.commit([SavePayer(owner, bumped, loaded.version)])
    with pytest.raises(WriteConflict):
        store.commit([SavePayer(owner, payer, loaded.version)])


def test_a_payer_keeps_its_phone_lock_and_recent_prompts(store: PaymentStore) -> None:
    owner = uid()
    payer = Payer(
        "254712345678",
        T0,
        T0,
        recent_prompts=SlidingWindow((T0, T0 + timedelta(seconds=5))),
        in_flight=PhoneLock("pay_1", T0 + timedelta(seconds=90)),
    )
    store.commit([SavePayer(owner, payer)])
    loaded = store.load_payer(owner, payer.msisdn)
    assert loaded is not None and loaded.value == payer
    released = payer.release("pay_1")
    store.commit([SavePayer(owner, released, loaded.version)])
    again = store.load_payer(owner, payer.msisdn)
    assert again is not None and again.value.in_flight is None


def test_a_route_keeps_the_full_number_and_a_payment_document_only_the_masked_one(store: PaymentStore) -> None:
    owner = uid()
    token = secrets.token_hex(32)
    payment = replace(new_payment(route_id=token), msisdn="254712345678")
    store.commit([SavePayment(owner, payment), CreateCallbackRoute(token, CallbackRoute(owner, payment.id, "254712345678"), T0)])
    route = store.load_callback_route(token)
    assert route == CallbackRoute(owner, payment.id, "254712345678")
    loaded = store.load_payment(owner, payment.id)
    assert loaded is not None
    assert loaded.value.msisdn is None, "the payment's own document does not hold the full number"
    assert loaded.value.phone == "2547******78"
    assert loaded.value.with_msisdn(route.msisdn) == replace(payment, msisdn="254712345678")


def test_push_context_reads_registry_payer_and_shard_in_one_go(store: PaymentStore) -> None:
    owner = uid()
    empty = store.load_push_context(owner, "254712345678", 3)
    assert (empty.developer, empty.payer, empty.shard, empty.shard_index) == (None, None, None, 3)
    limits = DeveloperLimits(per_second=10, per_day=100, shards=10)
    shard = PushShard().take("sandbox", limits, T0)
    assert isinstance(shard, PushShard)
    payer = Payer("254712345678", T0, T0)
    store.commit([SaveShard(owner, 3, shard), SavePayer(owner, payer)])
    store.ensure_developer(owner, "dev@example.com")

    context = store.load_push_context(owner, "254712345678", 3)

    assert context.developer is not None and context.developer["uid"] == owner
    assert context.payer is not None and context.payer.value == payer
    assert context.shard is not None and context.shard.value == shard
    loaded = store.load_shard(owner, 3)
    assert loaded is not None and loaded.value == shard
    assert store.load_shard(owner, 4) is None
    with pytest.raises(WriteConflict):
        store.commit([SaveShard(owner, 3, shard)])  # a create finds it there
    taken = shard.take("production", limits, T0)
    assert isinstance(taken, PushShard)
    store.commit([SaveShard(owner, 3, taken, context.shard.version)])
    with pytest.raises(WriteConflict):
        store.commit([SaveShard(owner, 3, taken, context.shard.version)])  # stale


def test_settlement_context_reads_the_payment_and_its_payer_in_one_go(store: PaymentStore) -> None:
    owner = uid()
    msisdn = "254712345678"
    payment = new_payment(checkout_request_id="ws_CO_" + secrets.token_hex(8))
    empty = store.load_settlement_context(owner, payment.id, msisdn)
    assert (empty.payment, empty.payer) == (None, None)
    payer = Payer(msisdn, T0, T0, 2, 1, 150, in_flight=PhoneLock(payment.id, T0 + timedelta(seconds=90)))
    store.commit([SavePayment(owner, payment), SavePayer(owner, payer)])

    context = store.load_settlement_context(owner, payment.id, msisdn)

    assert context.payment is not None and context.payment.value == payment
    assert context.payer is not None and context.payer.value == payer
    # The same versions a load of each alone gives.
    assert context.payment.version == getattr(store.load_payment(owner, payment.id), "version", None)
    assert context.payer.version == getattr(store.load_payer(owner, msisdn), "version", None)
    # Without a number, the payment alone; a number with no payer document yet, no payer; another tenant, nothing.
    alone = store.load_settlement_context(owner, payment.id, None)
    assert alone.payment is not None and alone.payment.value == payment and alone.payer is None
    assert store.load_settlement_context(owner, payment.id, "254700000001").payer is None
    assert store.load_settlement_context(uid(), payment.id, msisdn) == SettlementContext(None, None)
    # An id that can be no document finds nothing, without an error from Firestore.
    assert store.load_settlement_context(owner, "pay/x", msisdn) == SettlementContext(None, None)

    # Both versions are preconditions of the settling commit, which wins once.
    accepted = payment.accept(payment.checkout_request_id or "", "m-1", T0, POLICY)
    released = payer.release(payment.id)
    store.commit(
        [SavePayment(owner, accepted, context.payment.version), SavePayer(owner, released, context.payer.version)]
    )
    with pytest.raises(WriteConflict):
        store.commit([SavePayer(owner, released, context.payer.version)])
    again = store.load_settlement_context(owner, payment.id, msisdn)
    assert again.payment is not None and again.payment.value == accepted
    assert again.payer is not None and again.payer.value == released and again.payer.value.in_flight is None


def test_windows_round_trip_with_preconditions(store: PaymentStore) -> None:
    owner = uid()
    assert store.load_window(owner, "credential_puts") is None
    window = SlidingWindow((T0, T0 + timedelta(seconds=1)))
    store.commit([SaveWindow(owner, "credential_puts", window)])
    loaded = store.load_window(owner, "credential_puts")
    assert loaded is not None and loaded.value == window
    later = SlidingWindow((T0 + timedelta(seconds=2),))
    store.commit([SaveWindow(owner, "credential_puts", later, loaded.version)])
    with pytest.raises(WriteConflict):
        store.commit([SaveWindow(owner, "credential_puts", later, loaded.version)])


def test_audit_copies_and_quarantine_accept_any_raw_body(store: PaymentStore) -> None:
    owner = uid()
    payment = new_payment()
    raw = '{"Body":{"stkCallback":{"Amount":' + str(2**70) + "}}}" + "[" * 50
    store.commit(
        [
            SavePayment(owner, payment),
            AddAudit(owner, payment.id, CallbackAudit(T0, "callback", "0", "settle", raw, "196.201.214.200")),
            AddQuarantine(QuarantinedCallback(T0, "unknown_callback_token", raw, None, "ab" * 32, None, T0)),
        ]
    )
    assert store.load_payment(owner, payment.id) is not None


def test_find_by_checkout_request_id_is_tenant_scoped(store: PaymentStore) -> None:
    owner, other = uid(), uid()
    checkout = "ws_CO_" + secrets.token_hex(8)
    payment = new_payment(checkout_request_id=checkout, push_state=PushState.ACCEPTED)
    store.commit([SavePayment(owner, payment)])
    found = store.find_payment_by_checkout(owner, checkout)
    assert found is not None and found.value == payment
    # The version found by the query is good for a save, as a load's is.
    store.commit([SavePayment(owner, payment.accept(checkout, "m-1", T0, POLICY), found.version)])
    assert store.find_payment_by_checkout(other, checkout) is None
    assert store.find_payment_by_checkout(owner, "ws_CO_nothing") is None


@pytest.mark.parametrize("checkout", ["9" * 5000, "ws_CO_" + "a" * 1600, "ws_CO_1/2", ""])
def test_find_by_a_value_that_cannot_be_a_checkout_request_id_finds_nothing(store: PaymentStore, checkout: str) -> None:
    # Found by the HTTP fuzz run: Firestore refuses to query a value of more than 1,500 bytes (INVALID_ARGUMENT).
    assert store.find_payment_by_checkout(uid(), checkout) is None


def test_lists_are_newest_first_filtered_and_paged(store: PaymentStore) -> None:
    owner = uid()
    payments = [new_payment(created_at=T0 + timedelta(seconds=i)) for i in range(5)]
    payments[1] = replace(payments[1], status=PaymentStatus.CANCELLED)
    store.commit([SavePayment(owner, p) for p in payments])
    store.commit([SavePayment(uid(), new_payment())])
    page, token = store.list_payments(owner, None, 2, None)
    assert [p.id for p in page] == [payments[4].id, payments[3].id]
    assert token is not None
    page2, token2 = store.list_payments(owner, None, 2, token)
    assert [p.id for p in page2] == [payments[2].id, payments[1].id]
    page3, token3 = store.list_payments(owner, None, 2, token2)
    assert [p.id for p in page3] == [payments[0].id] and token3 is None
    cancelled, _ = store.list_payments(owner, "cancelled", 10, None)
    assert [p.id for p in cancelled] == [payments[1].id]
    with pytest.raises(errors.InvalidRequest):
        store.list_payments(owner, None, 2, "bm90LWEtcGF5bWVudA")


def test_due_payments_are_pending_ones_whose_check_time_has_come(store: PaymentStore) -> None:
    owner = uid()
    now = datetime.now(UTC).replace(microsecond=0)
    due_first = new_payment(created_at=now, next_check_at=now - timedelta(seconds=20))
    due_second = new_payment(created_at=now, next_check_at=now - timedelta(seconds=10))
    later = new_payment(created_at=now, next_check_at=now + timedelta(hours=1))
    settled = new_payment(created_at=now, status=PaymentStatus.SUCCEEDED, next_check_at=now - timedelta(seconds=30))
    store.commit([SavePayment(owner, p) for p in (due_second, later, settled, due_first)])
    mine = [(u, v) for u, v in store.due_payments(now, 500) if u == owner]
    assert [v.value.id for _, v in mine] == [due_first.id, due_second.id]
    # The version that comes with a due payment is good for a save.
    owner_uid, loaded = mine[0]
    store.commit([SavePayment(owner_uid, loaded.value.mark_outcome_unknown(now, POLICY), loaded.version)])


def test_a_save_writes_what_changed_and_the_payment_reads_back_whole_from_an_older_document(
    store: PaymentStore,
) -> None:
    """update_payment writes only the fields that differ from the payment as loaded (its precondition holds the
    document to that one). The payment reads back exactly as decided, also when its document was written before
    later fields existed and still carries the full number; the fields left alone stay as they were."""
    owner = uid()
    checkout = "ws_CO_" + secrets.token_hex(8)
    payment = new_payment().accept(checkout, "m-1", T0, POLICY)
    older = {
        name: value
        for name, value in payment_to_document(payment).items()
        if name not in ("phone", "currency", "updated_at", "paid_phone", "query_attempts")
    }
    older["msisdn"] = "254712345678"
    if isinstance(store, FakeRepository):
        store.payments[(owner, payment.id)] = (payment_from_document(older), -1)
    else:
        store.client.collection("developers").document(owner).collection("payments").document(payment.id).create(older)
    loaded = store.load_payment(owner, payment.id)
    assert loaded is not None and loaded.value.msisdn == "254712345678" and loaded.value.phone == "2547******78"
    outcome = PaymentOutcome(result_code="1032", result_desc="Request cancelled by user")

    def cancel(current: Payment) -> tuple[Payment, list[Any]]:
        return current.apply(outcome, "callback", T0 + timedelta(seconds=9), checkout).after, []

    after = update_payment(store, owner, payment.id, cancel)

    assert after is not None and after.status is PaymentStatus.CANCELLED
    reloaded = store.load_payment(owner, payment.id)
    assert reloaded is not None and reloaded.value == after
    # A second change on top of the first reads back too (a duplicate's decision changes nothing: no write).
    assert update_payment(store, owner, payment.id, cancel) == after
    again = store.load_payment(owner, payment.id)
    assert again is not None and again.value == after and again.version == reloaded.version
    if not isinstance(store, FakeRepository):
        raw = store.client.collection("developers").document(owner).collection("payments").document(payment.id)
        stored = raw.get().to_dict() or {}
        assert stored["status"] == "cancelled" and stored["msisdn"] == "254712345678"
        assert "currency" not in stored and "phone" not in stored, "unchanged fields are not written again"


def test_update_payment_decides_again_after_a_lost_race(store: PaymentStore) -> None:
    owner = uid()
    payment = new_payment()
    store.commit([SavePayment(owner, payment)])
    stale = store.load_payment(owner, payment.id)
    assert stale is not None
    # Someone else accepts the push first.
    accepted = payment.accept("ws_CO_9", "m-9", T0, POLICY)
    store.commit([SavePayment(owner, accepted, stale.version)])
    seen: list[PushState] = []

    def refuse(current: Payment) -> tuple[Payment, list[Any]]:
        seen.append(current.push_state)
        return current.refuse("1", "no", T0), []

    after = update_payment(store, owner, payment.id, refuse, stale)
    # The first try saw the stale copy and lost; the second saw the accepted push, which a refusal cannot change.
    assert seen == [PushState.SENDING, PushState.ACCEPTED]
    assert after == accepted
    assert update_payment(store, owner, "pay_missing", refuse) is None


def test_the_ttl_policies_are_declared() -> None:
    """Idempotency claims and quarantined callbacks are deleted by Firestore's TTL sweep on `expires_at`."""
    import json
    from pathlib import Path

    indexes = json.loads((Path(__file__).resolve().parents[2] / "firestore.indexes.json").read_text())
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in indexes["fieldOverrides"]}
    assert overrides[("idempotency_keys", "expires_at")]["ttl"] is True
    assert overrides[("quarantined_callbacks", "expires_at")]["ttl"] is True


# --------------------------------------------------------------------------------- Daraja set-ups by environment
def daraja_setup(environment: str, version: str | None, shortcode: str = "174379") -> dict[str, Any]:
    return {
        "environment": environment,
        "shortcode": shortcode,
        "transaction_type": "CustomerPayBillOnline",
        "party_b": shortcode,
        "consumer_key_hint": "ckey...1234",
        "verified_at": T0,
        "updated_at": T0,
        "secret_version": version,
    }


def test_daraja_setups_are_written_whole_and_the_old_layout_is_migrated(store: PaymentStore) -> None:
    from gateway.domain.daraja_setup import with_setup

    owner = uid()
    assert store.daraja_setups(owner) == {}
    record = store.ensure_developer(owner, "dev@example.com")
    assert record["daraja"] is None
    # A registry entry of the single-set layout, as the gateway used to write it.
    old = {k: v for k, v in daraja_setup("sandbox", None).items() if k != "secret_version"}
    if isinstance(store, FakeRepository):
        store.developers[owner]["daraja"] = old
    else:
        store.client.collection("developers").document(owner).update({"daraja": old})
    assert store.daraja_setups(owner) == {"sandbox": {**old, "secret_version": None}}

    seen: list[dict[str, Any]] = []

    def add_production(entries: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(entries)
        return with_setup(entries, daraja_setup("production", "1", "600555"))

    written = store.update_daraja(owner, "dev@example.com", add_production)

    assert seen == [{"sandbox": {**old, "secret_version": None}}], "change sees the migrated entries"
    assert written is not None and set(written) == {"sandbox", "production"}
    stored = store.ensure_developer(owner, None)["daraja"]
    assert set(stored) == {"sandbox", "production"}, "no key of the old layout is left at the top"
    assert store.daraja_setups(owner)["production"] == daraja_setup("production", "1", "600555")
    # A change that declines writes nothing.
    assert (
        store.update_daraja(owner, None, lambda entries: with_setup(entries, daraja_setup("production", "1"))) is None
    )
    assert store.daraja_setups(owner)["production"]["shortcode"] == "600555"


def test_update_daraja_creates_a_missing_registry_entry(store: PaymentStore) -> None:
    owner = uid()
    written = store.update_daraja(owner, "new@example.com", lambda entries: {"sandbox": daraja_setup("sandbox", "3")})
    assert written == {"sandbox": daraja_setup("sandbox", "3")}
    record = store.ensure_developer(owner, None)
    assert record["email"] == "new@example.com" and record["uid"] == owner
    assert store.daraja_setups(owner) == {"sandbox": daraja_setup("sandbox", "3")}


def test_concurrent_daraja_updates_end_with_the_newest_version(store: PaymentStore) -> None:
    """Each writer decides on what it read and writes only if nobody wrote since: the newest version always lands."""
    import threading

    from gateway.domain.daraja_setup import with_setup

    owner = uid()
    store.ensure_developer(owner, None)
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def write(version: int) -> None:
        start.wait()
        try:
            store.update_daraja(owner, None, lambda e: with_setup(e, daraja_setup("sandbox", str(version))))
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert store.daraja_setups(owner)["sandbox"]["secret_version"] == "8"


def test_an_event_is_created_once_and_only_with_its_commit(store: PaymentStore) -> None:
    """The outbox: an event id can be written once; a commit whose event cannot be written saves no payment."""
    from gateway.repository import AddEvent

    owner = uid()
    payment = new_payment()
    event = AddEvent(owner, "evt_" + secrets.token_hex(12), "payment.created", T0, payment.id, {"id": payment.id})
    store.commit([SavePayment(owner, payment), event])
    assert store.load_payment(owner, payment.id) is not None
    other = new_payment()
    with pytest.raises(WriteConflict):
        store.commit([SavePayment(owner, other), replace(event, payment_id=other.id)])
    assert store.load_payment(owner, other.id) is None
