"""The payments use case (gateway.services.payments) over the in-memory fakes: intent-first pushes, Daraja's three
answers (accepted, refused, unknown), idempotency keys, and reads (get with its lazy query, list)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from gateway import errors
from gateway.daraja import DarajaApp, DarajaOutcomeUnknown, StkPushOrder
from gateway.domain.errors import ValidationError
from gateway.domain.payment import FLAG_CHECKOUT_MISMATCH, FLAG_OUTCOME_UNKNOWN, Payment, PaymentStatus, PushState
from gateway.firestore_client import encode_page_token
from gateway.http import Developer
from gateway.repository import CallbackRoute, SavePayment, Write, payment_to_document
from gateway.secrets import CredentialStore
from gateway.services import Gateway, PushResult
from gateway.services.settlement import plausible_callback_token
from gateway.views import payment_view
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOB_CREDENTIALS,
    CALLBACK_BASE,
    CREDENTIALS,
    MASKED,
    MSISDN,
    ORDER,
    PASSKEY,
    PHONE_TYPED,
    T0,
    MemorySecretBackend,
    World,
    accepted,
    make_world,
    query_answer,
    stk_callback,
)

DARAJA_IP = "196.201.214.200"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def ready() -> World:
    world = make_world()
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.repo.calls.clear()  # count only what the test itself does
    return world


def as_stored(payment: Payment) -> Payment:
    """A payment as loaded back: its document keeps the phone masked; the full number lives in the route only."""
    return dataclasses.replace(payment, msisdn=None)


def push(world: World, key: str | None = None, developer: Developer = ALICE, **changes: Any) -> PushResult:
    return world.gateway.payments.push(developer, {**ORDER, **changes}, key)


def deliver(world: World, payment_id: str, body: dict[str, Any]) -> None:
    world.gateway.settlement.handle_callback(world.token_for(payment_id), body, json.dumps(body).encode(), DARAJA_IP)


def token_of(order: StkPushOrder) -> str:
    return order.callback_url.rsplit("/", 1)[-1]


def second_commit(writes: Sequence[Write]) -> bool:
    """The commit that records Daraja's acceptance: a save of the payment with its CheckoutRequestID."""
    return any(isinstance(write, SavePayment) and write.payment.checkout_request_id for write in writes)


def claim(world: World, key: str, developer: Developer = ALICE) -> Any:
    return world.repo.idempotency.get((developer.uid, sha256(key)))


# ------------------------------------------------------------------------------------------------ intent first


def test_a_push_without_credentials_is_refused_before_anything_is_stored() -> None:
    world = make_world()

    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        push(world, "order-1")

    assert raised.value.http_status == 404
    assert world.daraja.push_calls == []
    assert world.repo.calls["commit"] == 0
    assert world.repo.payments == {}


def test_the_secret_is_read_before_the_intent_so_a_missing_secret_stores_nothing(ready: World) -> None:
    # The set-up is there, the secret is not (another instance's store, emptied): nothing stored, nobody prompted.
    gateway = Gateway.build(
        ready.settings,
        ready.repo,
        CredentialStore(ready.settings, MemorySecretBackend()),
        ready.daraja,  # type: ignore[arg-type]
        ready.clock,
    )

    with pytest.raises(errors.CredentialsNotConfigured):
        gateway.payments.push(ALICE, ORDER, "order-1")

    assert ready.repo.calls["commit"] == 0
    assert ready.daraja.push_calls == []
    assert ready.repo.idempotency == {}


@pytest.mark.parametrize("key", ["order-1", None])
def test_the_intent_is_stored_in_one_commit_before_daraja_is_called(ready: World, key: str | None) -> None:
    seen: dict[str, Any] = {}

    def look_at_the_store(app: DarajaApp, order: StkPushOrder) -> Any:
        seen["commits"] = ready.repo.calls["commit"]
        seen["payments"] = [payment for payment, _version in ready.repo.payments.values()]
        seen["route"] = ready.repo.routes.get(sha256(token_of(order)))
        seen["routes"] = len(ready.repo.routes)
        seen["claims"] = dict(ready.repo.idempotency)
        return accepted("ws_CO_intent_1", "29115-77")

    ready.daraja.push_script.append(look_at_the_store)

    result = push(ready, key)

    assert seen["commits"] == 1, "payment, route and claim go in one commit, before Daraja is called"
    [intent] = seen["payments"]
    assert intent.id == result.payment.id
    assert intent.status is PaymentStatus.PENDING
    assert intent.push_state is PushState.SENDING
    assert intent.checkout_request_id is None
    assert intent.push_lease_until == T0 + timedelta(seconds=ready.settings.push_lease_s)
    assert intent.next_check_at == intent.push_lease_until
    # The route, server-only, is where the payer's full number lives; the payment shows it masked.
    assert seen["route"] == CallbackRoute(ALICE.uid, intent.id, MSISDN)
    assert intent.phone == MASKED
    assert seen["routes"] == 1
    if key is None:
        assert seen["claims"] == {}
    else:
        [(where, record)] = seen["claims"].items()
        assert where == (ALICE.uid, sha256(key))
        assert (record.state, record.payment_id, record.status) == ("in_progress", intent.id, None)
        assert record.lease_expires_at == T0 + timedelta(seconds=ready.settings.push_lease_s)
        assert record.expires_at == T0 + timedelta(seconds=ready.settings.idempotency_ttl_s)

    # One more commit: Daraja's answer (and the key's answer with it).
    assert ready.repo.calls["commit"] == 2
    assert result.outcome == "created" and result.accepted
    stored = ready.payment(ALICE, intent.id)
    assert stored == as_stored(result.payment)
    assert stored.push_state is PushState.ACCEPTED and stored.push_lease_until is None
    assert (stored.checkout_request_id, stored.merchant_request_id) == ("ws_CO_intent_1", "29115-77")
    assert stored.next_check_at == T0 + timedelta(seconds=ready.settings.reconcile_after_s)
    if key is not None:
        record = claim(ready, key)
        assert (record.state, record.status, record.payment_id) == ("done", 201, intent.id)


def test_a_push_records_a_pending_payment_and_hands_daraja_a_token_url(ready: World) -> None:
    result = push(ready, metadata={"order": 7})

    payment = result.payment
    assert re.fullmatch(r"pay_[0-9a-f]{24}", payment.id)
    assert payment.status is PaymentStatus.PENDING
    assert (payment.msisdn, payment.amount, payment.currency) == (MSISDN, 10, "KES")
    assert (payment.account_reference, payment.description, dict(payment.metadata)) == (
        "INV-1",
        "Order 1",
        {"order": 7},
    )
    assert (payment.environment, payment.shortcode) == ("sandbox", "174379")
    assert payment.created_at == T0 and payment.flags == ()
    assert payment.checkout_request_id == "ws_CO_29112026060000000001"

    [(app, order)] = ready.daraja.push_calls
    assert (app.uid, app.environment, app.shortcode, app.party_b) == (ALICE.uid, "sandbox", "174379", "174379")
    assert app.transaction_type == "CustomerPayBillOnline"
    assert app.secret.passkey == PASSKEY and app.secret.consumer_secret == CREDENTIALS["consumer_secret"]
    assert (order.phone, order.amount, order.account_reference, order.description) == (
        MSISDN,
        10,
        "INV-1",
        "Order 1",
    )
    assert order.callback_url.startswith(CALLBACK_BASE + "/")
    token = token_of(order)
    assert order.callback_url == f"{CALLBACK_BASE}/{token}"
    assert plausible_callback_token(token)
    # Only the token's hash is stored, and it routes to this payment.
    assert ready.repo.routes == {sha256(token): CallbackRoute(ALICE.uid, payment.id, MSISDN)}
    assert token not in json.dumps(payment_to_document(payment), default=str)

    view = payment_view(payment)
    assert view["phone"] == MASKED and MSISDN not in json.dumps(view) and PHONE_TYPED not in json.dumps(view)


def test_a_warm_push_reads_once_and_commits_twice() -> None:
    """What the README's performance table counts: the set-up, the payer's phone and one limiter shard in one
    round trip, the intent and the answer in two commits, and no Secret Manager read once the secret is cached."""
    world = make_world(limit_shards=1, push_limits=(("production", 100.0, 10_000), ("sandbox", 100.0, 10_000)))
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    push(world, phone="0712000001")
    world.repo.calls.clear()
    reads_before = world.backend.reads

    assert push(world, phone="0712000002").outcome == "created"

    assert dict(world.repo.calls) == {"load_push_context": 1, "commit": 2}
    assert world.backend.reads == reads_before


def test_a_test_key_asking_for_production_is_refused_before_any_read(ready: World) -> None:
    test_key = dataclasses.replace(ALICE, environment="sandbox", api_key_id="key_1")

    with pytest.raises(errors.PermissionDenied) as raised:
        push(ready, developer=test_key, environment="production")

    assert raised.value.code == "environment_mismatch"
    assert sum(ready.repo.calls.values()) == 0 and ready.daraja.push_calls == []


def test_payment_ids_and_callback_tokens_are_random_and_unique(ready: World) -> None:
    ids = {push(ready).payment.id for _ in range(1000)}

    assert len(ids) == 1000
    assert all(re.fullmatch(r"pay_[0-9a-f]{24}", payment_id) for payment_id in ids)
    tokens = {token_of(order) for _, order in ready.daraja.push_calls}
    assert len(tokens) == 1000 and len(ready.repo.routes) == 1000
    # Random, not a counter or a clock: even their first 8 hex digits are (all but surely) all different.
    assert len({payment_id[4:12] for payment_id in ids}) > 990


def test_a_failed_intent_commit_prompts_nobody(ready: World) -> None:
    ready.repo.fail_next_commit = lambda writes: True

    with pytest.raises(RuntimeError):
        push(ready, "order-1")

    assert ready.daraja.push_calls == []
    assert ready.repo.payments == {} and ready.repo.routes == {} and ready.repo.idempotency == {}


def test_an_invalid_body_is_refused_before_anything_is_stored(ready: World) -> None:
    with pytest.raises(ValidationError) as raised:
        push(ready, "order-1", phone="12345")

    assert raised.value.code == "invalid_phone"
    assert ready.repo.calls["commit"] == 0 and ready.daraja.push_calls == []


# ------------------------------------------------------------------------------------------- Daraja refuses


@pytest.mark.parametrize(
    ("failure", "result_code"),
    [
        (
            errors.DarajaError(
                "payer_busy", "the payer has another prompt open", http_status=409, daraja_code="500.001.1001"
            ),
            "500.001.1001",
        ),
        (
            errors.DarajaError(
                "daraja_rejected_request", "Invalid PhoneNumber", http_status=400, daraja_code="400.002.02"
            ),
            "400.002.02",
        ),
        # No code of Daraja's: ours is kept instead.
        (errors.DarajaError("daraja_unreachable", "nothing was sent", http_status=504), "daraja_unreachable"),
    ],
)
def test_a_refused_push_ends_failed_and_releases_the_key(
    ready: World, failure: errors.DarajaError, result_code: str
) -> None:
    status = failure.http_status
    ready.daraja.push_script.append(failure)

    with pytest.raises(errors.DarajaError) as raised:
        push(ready, "order-1")

    error = raised.value
    assert error.http_status == status and error.code == failure.code
    payment_id = error.details["payment_id"]
    assert error.to_envelope("req_1")["error"]["payment_id"] == payment_id
    refused = ready.payment(ALICE, payment_id)
    assert refused.status is PaymentStatus.FAILED
    assert refused.push_state is PushState.REFUSED
    assert (refused.result_code, refused.result_desc) == (result_code, failure.message)
    assert (refused.settled_by, refused.settled_at) == ("push", T0)
    assert refused.checkout_request_id is None and refused.next_check_at is None
    # The intent, the phone's release (nobody was prompted, so the phone is free at once) and the refusal.
    assert ready.repo.calls["commit"] == 3
    assert ready.repo.idempotency == {}, "nobody was prompted: the key is released"

    retried = push(ready, "order-1")

    assert retried.outcome == "created" and retried.payment.id != payment_id
    assert len(ready.daraja.push_calls) == 2
    assert claim(ready, "order-1").payment_id == retried.payment.id
    assert ready.payment(ALICE, payment_id).status is PaymentStatus.FAILED


def test_a_refused_push_without_a_key_is_recorded_as_failed(ready: World) -> None:
    ready.daraja.push_script.append(
        errors.DarajaError("payer_busy", "busy", http_status=409, daraja_code="500.001.1001")
    )

    with pytest.raises(errors.DarajaError) as raised:
        push(ready)

    assert raised.value.http_status == 409
    assert ready.repo.only_payment(ALICE.uid).status is PaymentStatus.FAILED
    assert ready.repo.due_payments(ready.clock.now + timedelta(days=1), 10) == []


# ------------------------------------------------------------------------------------------ outcome unknown


def test_an_unknown_outcome_keeps_the_payment_pending_and_a_retry_never_prompts_again(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())

    result = push(ready, "order-1")

    assert result.outcome == "outcome_unknown" and not result.accepted
    payment = result.payment
    assert payment.status is PaymentStatus.PENDING
    assert payment.push_state is PushState.UNKNOWN
    assert FLAG_OUTCOME_UNKNOWN in payment.flags
    assert payment.checkout_request_id is None
    assert payment.next_check_at == T0 + timedelta(seconds=ready.settings.unconfirmed_after_s)
    assert ready.payment(ALICE, payment.id) == as_stored(payment)
    assert ready.repo.calls["commit"] == 2
    record = claim(ready, "order-1")
    assert (record.state, record.status, record.payment_id) == ("done", 202, payment.id)

    retried = push(ready, "order-1", phone="+254 712 345 678")

    assert retried.outcome == "replayed"
    assert retried.payment == as_stored(payment)
    assert len(ready.daraja.push_calls) == 1, "a retry must not prompt the payer a second time"
    assert len(ready.repo.payments) == 1


def test_an_unknown_outcome_without_a_key_still_records_the_payment(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())

    result = push(ready)

    assert result.outcome == "outcome_unknown"
    stored = ready.repo.only_payment(ALICE.uid)
    assert stored.id == result.payment.id and stored.push_state is PushState.UNKNOWN
    assert ready.repo.idempotency == {}
    assert len(ready.repo.routes) == 1, "its callback can still settle it"


def test_our_own_failure_while_calling_daraja_is_an_unknown_outcome_too(ready: World) -> None:
    ready.daraja.push_script.append(RuntimeError("bug after the request left"))

    with pytest.raises(RuntimeError):
        push(ready, "order-1")

    stored = ready.repo.only_payment(ALICE.uid)
    assert stored.status is PaymentStatus.PENDING and stored.push_state is PushState.UNKNOWN
    retried = push(ready, "order-1")
    assert retried.outcome == "replayed" and retried.payment.id == stored.id
    assert len(ready.daraja.push_calls) == 1


def test_a_failed_second_commit_answers_unknown_and_the_callback_still_settles_it(ready: World) -> None:
    ready.repo.fail_next_commit = second_commit
    ready.daraja.push_script.append(accepted("ws_CO_lost_1"))

    result = push(ready, "order-1")

    assert result.outcome == "outcome_unknown" and not result.accepted
    assert FLAG_OUTCOME_UNKNOWN in result.payment.flags
    assert result.payment.checkout_request_id is None
    intent = ready.payment(ALICE, result.payment.id)
    assert intent.push_state is PushState.SENDING and intent.checkout_request_id is None, "the intent is still there"
    assert claim(ready, "order-1").state == "in_progress"

    deliver(ready, intent.id, stk_callback("ws_CO_lost_1"))

    settled = ready.payment(ALICE, intent.id)
    assert settled.status is PaymentStatus.SUCCEEDED
    assert settled.checkout_request_id == "ws_CO_lost_1"
    assert settled.push_state is PushState.ACCEPTED
    assert settled.mpesa_receipt_number == "QKT1ABC2DE"
    assert FLAG_OUTCOME_UNKNOWN not in settled.flags


# ---------------------------------------------------------------------------------------------- idempotency


def test_same_key_and_body_replays_the_first_answer_with_one_daraja_call(ready: World) -> None:
    first = push(ready, "order-1")
    # The same request written differently is the same request.
    again = push(ready, "order-1", phone="+254 712 345 678")

    assert first.outcome == "created" and again.outcome == "replayed"
    assert again.payment == as_stored(first.payment)
    assert len(ready.daraja.push_calls) == 1
    assert len(ready.repo.payments) == 1 and len(ready.repo.routes) == 1, "the replay's own intent was not stored"

    # A replay answers with the payment as it is now.
    deliver(ready, first.payment.id, stk_callback(first.payment.checkout_request_id or ""))
    later = push(ready, "order-1")
    assert later.outcome == "replayed" and later.payment.status is PaymentStatus.SUCCEEDED


def test_keys_are_per_developer(ready: World) -> None:
    ready.gateway.credentials.put(BOB, BOB_CREDENTIALS)
    alice = push(ready, "order-1")
    bob = push(ready, "order-1", developer=BOB)

    assert bob.outcome == "created" and bob.payment.id != alice.payment.id
    assert len(ready.daraja.push_calls) == 2
    assert ready.daraja.push_calls[1][0].uid == BOB.uid


def test_same_key_with_another_body_is_a_conflict(ready: World) -> None:
    push(ready, "order-1")

    with pytest.raises(errors.IdempotencyConflict) as raised:
        push(ready, "order-1", amount=11)

    error = raised.value
    assert (error.code, error.http_status, error.param) == ("idempotency_conflict", 409, "Idempotency-Key")
    assert error.retry_after_s is None
    assert len(ready.daraja.push_calls) == 1
    assert len(ready.repo.payments) == 1


@pytest.mark.parametrize(("elapsed_s", "retry_after_s"), [(0.0, 5), (57.0, 3), (59.5, 1)])
def test_a_concurrent_request_while_the_first_holds_the_key_is_told_to_retry(
    ready: World, elapsed_s: float, retry_after_s: int
) -> None:
    conflicts: list[BaseException] = []

    def second_request_arrives(app: DarajaApp, order: StkPushOrder) -> Any:
        ready.clock.advance(elapsed_s)
        try:
            push(ready, "order-1")
        except errors.IdempotencyConflict as conflict:
            conflicts.append(conflict)
        return accepted("ws_CO_first")

    ready.daraja.push_script.append(second_request_arrives)

    first = push(ready, "order-1")

    [conflict] = conflicts
    assert isinstance(conflict, errors.IdempotencyConflict)
    assert (conflict.code, conflict.http_status, conflict.param) == (
        "idempotency_in_progress",
        409,
        "Idempotency-Key",
    )
    assert conflict.retry_after_s == retry_after_s
    assert conflict.retry_after_s is not None and 1 <= conflict.retry_after_s <= 5
    assert first.outcome == "created"
    assert len(ready.daraja.push_calls) == 1
    assert len(ready.repo.payments) == 1 and len(ready.repo.routes) == 1


def test_after_the_lease_a_retry_is_answered_from_the_payment_and_never_pushed(ready: World) -> None:
    # Daraja accepted, then the instance died before its second commit: the claim is still in progress.
    ready.repo.fail_next_commit = second_commit
    first = push(ready, "order-1")
    intent = ready.payment(ALICE, first.payment.id)
    assert intent.push_state is PushState.SENDING

    ready.clock.advance(ready.settings.push_lease_s - 1)
    with pytest.raises(errors.IdempotencyConflict) as raised:
        push(ready, "order-1")
    assert raised.value.code == "idempotency_in_progress" and raised.value.retry_after_s == 1

    ready.clock.advance(1)
    retried = push(ready, "order-1")

    assert retried.outcome == "replayed"
    assert retried.payment.id == intent.id
    assert retried.payment.push_state is PushState.UNKNOWN
    assert FLAG_OUTCOME_UNKNOWN in retried.payment.flags
    assert retried.payment.status is PaymentStatus.PENDING
    assert ready.payment(ALICE, intent.id) == retried.payment
    record = claim(ready, "order-1")
    assert (record.state, record.status, record.payment_id) == ("done", 202, intent.id)
    assert len(ready.daraja.push_calls) == 1
    again = push(ready, "order-1")
    assert again.outcome == "replayed" and again.payment == retried.payment
    assert len(ready.daraja.push_calls) == 1


@pytest.mark.parametrize("changes", [{}, {"amount": 11}])
def test_an_expired_claim_is_as_good_as_absent(ready: World, changes: dict[str, Any]) -> None:
    first = push(ready, "order-1")
    ready.clock.advance(ready.settings.idempotency_ttl_s)

    second = push(ready, "order-1", **changes)

    assert second.outcome == "created"
    assert second.payment.id != first.payment.id
    assert len(ready.daraja.push_calls) == 2
    record = claim(ready, "order-1")
    assert (record.payment_id, record.created_at) == (second.payment.id, ready.clock.now)


def test_two_requests_finding_the_same_expired_claim_push_once(ready: World, monkeypatch: pytest.MonkeyPatch) -> None:
    push(ready, "order-1")
    ready.clock.advance(ready.settings.idempotency_ttl_s)
    real = ready.repo.load_idempotency
    other: list[PushResult] = []

    def read_then_let_another_request_through(uid: str, key_hash: str) -> Any:
        # This request has read the expired claim; before it deletes it, another request with the key runs whole.
        record = real(uid, key_hash)
        if not other:
            monkeypatch.setattr(ready.repo, "load_idempotency", real)
            other.append(push(ready, "order-1"))
        return record

    monkeypatch.setattr(ready.repo, "load_idempotency", read_then_let_another_request_through)

    late = push(ready, "order-1")

    assert other[0].outcome == "created"
    assert late.outcome == "replayed" and late.payment.id == other[0].payment.id
    assert len(ready.daraja.push_calls) == 2, "one push for the first claim, one for the renewed claim"


def test_a_claim_that_keeps_changing_hands_is_refused_after_a_few_attempts(
    ready: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(ready, "order-1")
    commits = ready.repo.calls["commit"]
    # The claim is there when we try to create ours, and gone (released) by the time we read it, three times over.
    monkeypatch.setattr(ready.repo, "load_idempotency", lambda uid, key_hash: None)

    with pytest.raises(errors.IdempotencyConflict) as raised:
        push(ready, "order-1")

    assert (raised.value.code, raised.value.retry_after_s) == ("idempotency_in_progress", 1)
    assert ready.repo.calls["commit"] == commits + 10  # backs off and retries, then gives up
    assert len(ready.daraja.push_calls) == 1
    assert len(ready.repo.payments) == 1 and len(ready.repo.routes) == 1


@pytest.mark.parametrize("key", ["clé-1", "x" * 256, "", "has space", "tab\tkey", "del\x7f", "new\nline"])
def test_malformed_idempotency_keys_are_invalid_requests(ready: World, key: str) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        push(ready, key)

    assert (raised.value.code, raised.value.param) == ("invalid_idempotency_key", "Idempotency-Key")
    assert raised.value.http_status == 400
    assert ready.daraja.push_calls == []
    assert ready.repo.calls["commit"] == 0


@pytest.mark.parametrize("key", ["k" * 255, "!", "~", "a:b/c?d=e&f"])
def test_printable_ascii_keys_up_to_255_characters_are_accepted(ready: World, key: str) -> None:
    assert push(ready, key).outcome == "created"
    assert claim(ready, key) is not None


# ---------------------------------------------------------------------------------- early callbacks


def test_a_callback_before_the_second_commit_settles_and_records_its_checkout_id(ready: World) -> None:
    def callback_first(app: DarajaApp, order: StkPushOrder) -> Any:
        body = stk_callback("ws_CO_early")
        ready.gateway.settlement.handle_callback(token_of(order), body, json.dumps(body).encode(), DARAJA_IP)
        return accepted("ws_CO_early", "29115-9")

    ready.daraja.push_script.append(callback_first)

    result = push(ready, "order-1")

    assert result.outcome == "created" and result.accepted
    payment = result.payment
    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.checkout_request_id, payment.merchant_request_id) == ("ws_CO_early", "29115-9")
    assert payment.mpesa_receipt_number == "QKT1ABC2DE"
    assert payment.push_state is PushState.ACCEPTED and payment.flags == ()
    assert ready.payment(ALICE, payment.id) == as_stored(payment)
    assert claim(ready, "order-1").status == 201
    payer = ready.repo.payers[(ALICE.uid, MSISDN)][0]
    assert (payer.payment_count, payer.succeeded_count, payer.total_paid) == (1, 1, 10)
    assert [audit.action for audit in ready.repo.audits[(ALICE.uid, payment.id)]] == ["settle"]


def test_an_early_callback_naming_another_request_keeps_its_id_and_asks_a_human(ready: World) -> None:
    def callback_first(app: DarajaApp, order: StkPushOrder) -> Any:
        body = stk_callback("ws_CO_from_callback", 1032, desc="Request cancelled by user")
        ready.gateway.settlement.handle_callback(token_of(order), body, json.dumps(body).encode(), DARAJA_IP)
        return accepted("ws_CO_from_push")

    ready.daraja.push_script.append(callback_first)

    result = push(ready)

    stored = ready.payment(ALICE, result.payment.id)
    assert stored.status is PaymentStatus.CANCELLED
    assert stored.checkout_request_id == "ws_CO_from_callback"
    assert FLAG_CHECKOUT_MISMATCH in stored.flags and stored.needs_a_human


# ---------------------------------------------------------------------------------------------------- get


def _not_found(world: World, developer: Developer, payment_id: str | None, checkout: str | None) -> tuple[Any, ...]:
    with pytest.raises(errors.NotFound) as raised:
        world.gateway.payments.get(developer, payment_id, checkout)
    error = raised.value
    return type(error), error.http_status, error.code, error.message, error.param, error.to_envelope("r")


def test_another_developers_payment_looks_exactly_like_a_missing_one(ready: World) -> None:
    ready.gateway.credentials.put(BOB, BOB_CREDENTIALS)
    bobs = push(ready, developer=BOB).payment
    assert bobs.checkout_request_id is not None

    assert _not_found(ready, ALICE, bobs.id, None) == _not_found(ready, ALICE, "pay_" + "0" * 24, None)
    assert _not_found(ready, ALICE, None, bobs.checkout_request_id) == _not_found(ready, ALICE, None, "ws_CO_missing")
    assert _not_found(ready, ALICE, bobs.id, None)[4] == "id"
    assert _not_found(ready, ALICE, None, bobs.checkout_request_id)[4] == "checkout_request_id"
    # Naming one's own payment id next to someone else's checkout id does not help either.
    alices = push(ready).payment
    _not_found(ready, ALICE, alices.id, bobs.checkout_request_id)
    assert ready.gateway.payments.get(BOB, bobs.id, None) == as_stored(bobs)
    assert ready.gateway.payments.get(ALICE, None, alices.checkout_request_id) == as_stored(alices)
    assert ready.daraja.query_calls == []


@pytest.mark.parametrize("payment_id", ["", "a/b", "..", "__name__", "x" * 1000])
def test_odd_payment_ids_are_simply_not_found(ready: World, payment_id: str) -> None:
    with pytest.raises(errors.NotFound):
        ready.gateway.payments.get(ALICE, payment_id, None)


def test_a_read_queries_a_late_payment_with_its_own_app(ready: World) -> None:
    payment = push(ready).payment
    checkout = payment.checkout_request_id or ""
    ready.daraja.script_query(checkout, query_answer(checkout, "1032", "Request cancelled by user"))
    ready.clock.advance(ready.settings.pending_query_after_s)

    read = ready.gateway.payments.get(ALICE, payment.id, None)

    assert read.status is PaymentStatus.CANCELLED
    [(app, asked)] = ready.daraja.query_calls
    assert (app.uid, app.environment, app.shortcode, asked) == (ALICE.uid, "sandbox", "174379", checkout)


# --------------------------------------------------------------------------------------------------- list


def test_list_pages_newest_first(ready: World) -> None:
    created = []
    for _ in range(3):
        created.append(push(ready).payment.id)
        ready.clock.advance(1)

    page = ready.gateway.payments.list(ALICE, "pending", "2", "")
    rest = ready.gateway.payments.list(ALICE, "pending", "2", page.next_page_token)

    assert [p.id for p in page.payments] == created[:0:-1]
    assert page.next_page_token is not None
    assert [p.id for p in rest.payments] == created[:1]
    assert rest.next_page_token is None
    assert ready.gateway.payments.list(ALICE, None, None, None).next_page_token is None


def test_list_filters_by_status(ready: World) -> None:
    paid, waiting = push(ready).payment, push(ready).payment
    deliver(ready, paid.id, stk_callback(paid.checkout_request_id or ""))

    assert [p.id for p in ready.gateway.payments.list(ALICE, "succeeded", None, None).payments] == [paid.id]
    assert [p.id for p in ready.gateway.payments.list(ALICE, "pending", None, None).payments] == [waiting.id]
    assert ready.gateway.payments.list(ALICE, "failed", None, None).payments == []


def test_list_shows_only_the_callers_payments(ready: World) -> None:
    ready.gateway.credentials.put(BOB, BOB_CREDENTIALS)
    bobs = push(ready, developer=BOB).payment
    alices = push(ready).payment

    assert [p.id for p in ready.gateway.payments.list(ALICE, None, None, None).payments] == [alices.id]
    assert [p.id for p in ready.gateway.payments.list(BOB, None, None, None).payments] == [bobs.id]
    # A page token naming someone else's payment is no cursor at all.
    foreign = ready.gateway.payments.list(BOB, None, "1", None)
    assert foreign.next_page_token is None
    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.payments.list(ALICE, None, None, encode_page_token(bobs.id))
    assert raised.value.code == "invalid_page_token"


@pytest.mark.parametrize("token", ["!!!", "bm90LWEtcGF5bWVudA", encode_page_token("pay_" + "0" * 24), "%%%%"])
def test_list_refuses_a_page_token_that_names_no_payment(ready: World, token: str) -> None:
    push(ready)

    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.payments.list(ALICE, None, None, token)

    assert (raised.value.code, raised.value.param) == ("invalid_page_token", "page_token")


@pytest.mark.parametrize("status", ["paid", "PENDING", " pending", "unknown"])
def test_list_refuses_an_unknown_status(ready: World, status: str) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.payments.list(ALICE, status, None, None)

    assert (raised.value.code, raised.value.param) == ("invalid_status", "status")
    assert ready.repo.calls["list_payments"] == 0


@pytest.mark.parametrize(
    "limit", ["0", "101", "-1", "1.5", "ten", " 5", "٣", "1e2", "0100", "9" * 5000, "1" * 4301, "²"]
)
def test_list_refuses_a_bad_limit(ready: World, limit: str) -> None:
    # 5,000 digits would make int() raise ValueError (Python's digit limit): it must be a 400, never a 500.
    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.payments.list(ALICE, None, limit, None)

    assert (raised.value.code, raised.value.param) == ("invalid_limit", "limit")
    assert ready.repo.calls["list_payments"] == 0


@pytest.mark.parametrize(("raw", "expected"), [(None, 20), ("", 20), ("1", 1), ("07", 7), ("100", 100)])
def test_list_limit_defaults_to_20(
    ready: World, monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: int
) -> None:
    asked: list[tuple[Any, ...]] = []
    real = ready.repo.list_payments

    def spy(uid: str, status: str | None, limit: int, page_token: str | None, environment: str | None = None) -> Any:
        asked.append((uid, status, limit, page_token))
        return real(uid, status, limit, page_token, environment)

    monkeypatch.setattr(ready.repo, "list_payments", spy)

    ready.gateway.payments.list(ALICE, None, raw, None)

    assert asked == [(ALICE.uid, None, expected, None)]


def test_list_returns_at_most_the_limit(ready: World) -> None:
    for _ in range(25):
        push(ready)
        ready.clock.advance(1)

    first = ready.gateway.payments.list(ALICE, None, None, None)
    second = ready.gateway.payments.list(ALICE, None, None, first.next_page_token)

    assert len(first.payments) == 20 and first.next_page_token is not None
    assert len(second.payments) == 5 and second.next_page_token is None
    assert len({p.id for p in first.payments + second.payments}) == 25


# --------------------------------------------------------------------------------------------------- logs


def test_logs_never_carry_phone_numbers_secrets_or_callback_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world()
    world.daraja.verify_script.append(errors.Unprocessable("daraja_credentials_rejected", "no", param="consumer_key"))
    with pytest.raises(errors.Unprocessable):
        world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    succeeded = push(world, "order-1").payment
    push(world, "order-1")  # replay
    world.daraja.push_script.append(DarajaOutcomeUnknown())
    push(world, "order-2")
    world.daraja.push_script.append(errors.DarajaError("daraja_rejected_request", "bad", http_status=400))
    with pytest.raises(errors.DarajaError):
        push(world)
    checkout = succeeded.checkout_request_id or ""
    deliver(world, succeeded.id, stk_callback(checkout))
    deliver(world, succeeded.id, stk_callback(checkout))  # ignored duplicate
    flagged = push(world).payment
    deliver(world, flagged.id, stk_callback(flagged.checkout_request_id or "", amount=3))
    with pytest.raises(errors.PermissionDenied):
        deliver(world, flagged.id, stk_callback("ws_CO_someone_else"))
    with pytest.raises(errors.NotFound):
        world.gateway.settlement.check_callback_source("not-a-token", "10.0.0.9")
    queried = push(world).payment
    world.daraja.script_query(queried.checkout_request_id, query_answer(queried.checkout_request_id or "", "1032"))
    world.clock.advance(world.settings.reconcile_after_s + 1)
    world.gateway.settlement.reconcile()
    world.gateway.credentials.delete(ALICE)

    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    events = {record["event"] for record in records}
    for expected in (
        "credentials_rejected",
        "credentials_stored",
        "stk_push_sent",
        "idempotent_replay",
        "stk_push_uncertain",
        "stk_push_rejected",
        "payment_settled",
        "settlement_ignored",
        "payment_flagged",
        "callback_quarantined",
        "callback_rejected",
        "stk_query_sent",
        "reconcile_run",
        "credentials_deleted",
    ):
        assert expected in events
    tokens = [token_of(order) for _, order in world.daraja.push_calls]
    forbidden = [
        MSISDN,
        PHONE_TYPED,
        "712345678",
        CREDENTIALS["consumer_key"],
        CREDENTIALS["consumer_secret"],
        PASSKEY,
        *tokens,
    ]
    for line in lines:
        for value in forbidden:
            assert value not in line, f"{value[:6]}... leaked into a log line: {json.loads(line)['event']}"
    settlement_lines = [
        r for r in records if r["event"] in ("payment_settled", "payment_flagged", "settlement_ignored")
    ]
    assert len(settlement_lines) == 4
    assert all(r["phone"] == MASKED for r in settlement_lines)
