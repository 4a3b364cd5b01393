"""The settlement use case (gateway.services.settlement) over the in-memory fakes: callbacks routed by their URL
token (settled once, audited, quarantined when they match nothing), STK Push Queries for late callbacks, and the
reconciler's sweep across developers."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gateway import errors
from gateway.daraja import DarajaOutcomeUnknown
from gateway.domain.errors import ValidationError
from gateway.domain.payment import (
    FLAG_AMOUNT_MISMATCH,
    FLAG_OUTCOME_UNKNOWN,
    FLAG_SETTLED_BY_QUERY,
    FLAG_SUCCESS_AFTER_TERMINAL,
    Payment,
    PaymentStatus,
    PushState,
)
from gateway.http import Developer
from gateway.repository import SavePayer, SavePayment, SettlementContext
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOB_CREDENTIALS,
    CREDENTIALS,
    MASKED,
    MSISDN,
    ORDER,
    PASSKEY,
    PRODUCTION_CREDENTIALS,
    T0,
    World,
    make_world,
    query_answer,
    stk_callback,
)

DARAJA_IP = "196.201.214.200"
# A token of the right shape that no payment was given.
UNKNOWN_TOKEN = "A" * 32


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def ready() -> World:
    world = make_world()
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    return world


def pay(world: World, developer: Developer = ALICE, **changes: Any) -> Payment:
    return world.gateway.payments.push(developer, {**ORDER, **changes}, None).payment


def checkout_of(payment: Payment) -> str:
    assert payment.checkout_request_id is not None
    return payment.checkout_request_id


def deliver(
    world: World,
    payment: Payment,
    body: Any,
    source_ip: str | None = DARAJA_IP,
    raw: bytes | None = None,
    token: str | None = None,
) -> None:
    world.gateway.settlement.handle_callback(
        token if token is not None else world.token_for(payment.id),
        body,
        json.dumps(body).encode() if raw is None else raw,
        source_ip,
    )


def stored(world: World, payment: Payment, developer: Developer = ALICE) -> Payment:
    return world.payment(developer, payment.id)


def payer_counts(world: World, developer: Developer = ALICE, msisdn: str = MSISDN) -> tuple[int, int, int]:
    payer = world.repo.payers[(developer.uid, msisdn)][0]
    return payer.payment_count, payer.succeeded_count, payer.total_paid


def actions(world: World, payment: Payment, developer: Developer = ALICE) -> list[str]:
    return [audit.action for audit in world.repo.audits.get((developer.uid, payment.id), [])]


def lose_second_commit(world: World) -> None:
    """The next push's second commit fails: the intent stays `sending`, as if its instance died after Daraja."""

    def second_commit(writes: Any) -> bool:
        return any(isinstance(write, SavePayment) and write.payment.checkout_request_id for write in writes)

    world.repo.fail_next_commit = second_commit


# ------------------------------------------------------------------------------------------------- callbacks


def test_a_success_callback_settles_with_the_receipt_and_counts_the_payer_once(ready: World) -> None:
    payment = pay(ready)
    ready.clock.advance(12)
    body = stk_callback(checkout_of(payment))
    raw = json.dumps(body).encode()

    deliver(ready, payment, body, raw=raw)

    settled = stored(ready, payment)
    assert settled.status is PaymentStatus.SUCCEEDED
    assert settled.mpesa_receipt_number == "QKT1ABC2DE"
    assert settled.transaction_date == "20261129060102"
    assert settled.paid_phone == MASKED
    assert (settled.result_code, settled.result_desc) == ("0", "The service request is processed successfully.")
    assert (settled.settled_by, settled.settled_at) == ("callback", T0 + timedelta(seconds=12))
    assert settled.flags == () and settled.next_check_at is None
    assert payer_counts(ready) == (1, 1, 10)
    [audit] = ready.repo.audits[(ALICE.uid, payment.id)]
    assert (audit.source, audit.action, audit.result_code, audit.source_ip) == ("callback", "settle", "0", DARAJA_IP)
    assert audit.raw_body == raw.decode() and isinstance(audit.raw_body, str)
    assert ready.repo.quarantine == []
    assert ready.gateway.payments.get(ALICE, payment.id, None) == settled


def test_a_duplicate_callback_is_ignored_and_audited(ready: World) -> None:
    payment = pay(ready)
    body = stk_callback(checkout_of(payment))
    deliver(ready, payment, body)
    before = stored(ready, payment)

    deliver(ready, payment, body)

    assert stored(ready, payment) == before
    assert payer_counts(ready) == (1, 1, 10)
    assert actions(ready, payment) == ["settle", "ignore"]


def test_concurrent_duplicates_settle_once(ready: World) -> None:
    payment = pay(ready)
    body = stk_callback(checkout_of(payment))
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def one_copy() -> None:
        start.wait()
        try:
            deliver(ready, payment, body)
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=one_copy) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert stored(ready, payment).status is PaymentStatus.SUCCEEDED
    assert payer_counts(ready) == (1, 1, 10)
    assert sorted(actions(ready, payment)) == ["ignore"] * 7 + ["settle"]


def test_a_callback_reads_its_route_then_the_payment_and_its_payer_together_and_commits_once(
    ready: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the README's performance table counts: two read round trips (the route, then the payment with the
    payer the route names) and one commit, for a first callback and for a duplicate alike. The duplicate's commit
    holds its audit copy only: the payment it leaves as it is is not written again."""
    payment = pay(ready)
    body = stk_callback(checkout_of(payment))
    assert ready.repo.payers[(ALICE.uid, MSISDN)][0].in_flight is not None, "the push holds the phone"
    committed: list[list[str]] = []
    commit = ready.repo.commit

    def recorded(writes: Any) -> list[Any]:
        committed.append([type(write).__name__ for write in writes])
        return commit(writes)

    monkeypatch.setattr(ready.repo, "commit", recorded)
    ready.repo.calls.clear()

    deliver(ready, payment, body)

    assert dict(ready.repo.calls) == {"load_callback_route": 1, "load_settlement_context": 1, "commit": 1}
    assert committed == [["SavePayment", "AddAudit", "SavePayer", "AddEvent"]]
    assert ready.repo.payers[(ALICE.uid, MSISDN)][0].in_flight is None, "the settlement frees the phone"
    ready.repo.calls.clear()
    committed.clear()

    deliver(ready, payment, body)

    assert dict(ready.repo.calls) == {"load_callback_route": 1, "load_settlement_context": 1, "commit": 1}
    assert committed == [["AddAudit"]]
    assert payer_counts(ready) == (1, 1, 10)
    assert actions(ready, payment) == ["settle", "ignore"]


def test_a_payer_changed_after_the_read_is_read_again_with_the_payment(
    ready: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payer read with the payment carries its version into the commit: when another settlement counted on the
    same phone meanwhile, the commit loses, and the next attempt reads both again (never a stale payer)."""
    payment = pay(ready)
    read = ready.repo.load_settlement_context
    raced: list[bool] = []

    def read_then_race(uid: str, payment_id: str, msisdn: str | None) -> SettlementContext:
        context = read(uid, payment_id, msisdn)
        if not raced:
            raced.append(True)
            assert context.payer is not None
            counted = replace(context.payer.value, payment_count=context.payer.value.payment_count + 5)
            ready.repo.commit([SavePayer(uid, counted, context.payer.version)])
        return context

    monkeypatch.setattr(ready.repo, "load_settlement_context", read_then_race)
    ready.repo.calls.clear()

    deliver(ready, payment, stk_callback(checkout_of(payment)))

    assert ready.repo.calls["load_settlement_context"] == 2 and ready.repo.calls["load_payer"] == 0
    assert stored(ready, payment).status is PaymentStatus.SUCCEEDED
    assert payer_counts(ready) == (6, 1, 10), "the other count is kept and this payment is counted once"
    assert ready.repo.payers[(ALICE.uid, MSISDN)][0].in_flight is None
    assert actions(ready, payment) == ["settle"]


def test_a_failure_after_a_success_changes_nothing(ready: World) -> None:
    payment = pay(ready)
    deliver(ready, payment, stk_callback(checkout_of(payment)))
    before = stored(ready, payment)

    deliver(ready, payment, stk_callback(checkout_of(payment), 1032, desc="Request cancelled by user"))

    assert stored(ready, payment) == before
    assert payer_counts(ready) == (1, 1, 10)
    assert actions(ready, payment) == ["settle", "ignore"]


def test_a_success_after_a_failure_stays_failed_and_asks_a_human(ready: World) -> None:
    payment = pay(ready)
    deliver(ready, payment, stk_callback(checkout_of(payment), 1032, desc="Request cancelled by user"))

    deliver(ready, payment, stk_callback(checkout_of(payment)))

    after = stored(ready, payment)
    assert after.status is PaymentStatus.CANCELLED
    assert FLAG_SUCCESS_AFTER_TERMINAL in after.flags and after.needs_a_human
    assert after.reported_outcome is not None and after.reported_outcome.mpesa_receipt_number == "QKT1ABC2DE"
    assert payer_counts(ready) == (1, 0, 0)


def test_a_success_for_the_wrong_amount_is_flagged_and_stays_pending(ready: World) -> None:
    payment = pay(ready)

    deliver(ready, payment, stk_callback(checkout_of(payment), amount=1))

    flagged = stored(ready, payment)
    assert flagged.status is PaymentStatus.PENDING
    assert flagged.flags == (FLAG_AMOUNT_MISMATCH,)
    assert flagged.mpesa_receipt_number is None
    assert flagged.reported_outcome is not None and flagged.reported_outcome.amount == "1"
    assert ready.repo.payers[(ALICE.uid, MSISDN)][0].payment_count == 0, "nothing counted for the payer"
    assert actions(ready, payment) == ["flag"]


@pytest.mark.parametrize(
    ("result_code", "status", "kept"),
    [
        (1032, PaymentStatus.CANCELLED, "1032"),
        ("1032", PaymentStatus.CANCELLED, "1032"),
        (1037, PaymentStatus.TIMED_OUT, "1037"),
        (1, PaymentStatus.FAILED, "1"),
        ("SFC_IC0003", PaymentStatus.FAILED, "SFC_IC0003"),
    ],
)
def test_result_codes_map_to_statuses_and_the_raw_code_is_kept(
    ready: World, result_code: Any, status: PaymentStatus, kept: str
) -> None:
    payment = pay(ready)

    deliver(ready, payment, stk_callback(checkout_of(payment), result_code, desc="Some reason"))

    settled = stored(ready, payment)
    assert settled.status is status
    assert (settled.result_code, settled.result_desc) == (kept, "Some reason")
    assert settled.mpesa_receipt_number is None
    assert payer_counts(ready) == (1, 0, 0)


def test_payer_statistics_add_up_over_payments(ready: World) -> None:
    first, second, third = pay(ready), pay(ready, amount=25), pay(ready)
    deliver(ready, first, stk_callback(checkout_of(first)))
    deliver(ready, second, stk_callback(checkout_of(second), amount=25))
    deliver(ready, second, stk_callback(checkout_of(second), amount=25))
    deliver(ready, third, stk_callback(checkout_of(third), 1032))

    assert payer_counts(ready) == (3, 2, 35)


def test_a_callback_settles_a_payment_whose_push_outcome_was_unknown(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())
    payment = pay(ready)
    assert payment.checkout_request_id is None

    deliver(ready, payment, stk_callback("ws_CO_seen_at_last"))

    settled = stored(ready, payment)
    assert settled.status is PaymentStatus.SUCCEEDED
    assert settled.checkout_request_id == "ws_CO_seen_at_last"
    assert settled.push_state is PushState.ACCEPTED
    assert FLAG_OUTCOME_UNKNOWN not in settled.flags


def test_a_checkout_mismatch_is_refused_and_quarantined(ready: World) -> None:
    payment = pay(ready)
    before = stored(ready, payment)
    body = stk_callback("ws_CO_not_this_one")
    token = ready.token_for(payment.id)

    with pytest.raises(errors.PermissionDenied) as raised:
        deliver(ready, payment, body, source_ip="10.1.2.3")

    assert (raised.value.code, raised.value.http_status) == ("checkout_request_mismatch", 403)
    assert stored(ready, payment) == before
    assert ready.repo.audits == {}
    assert ready.repo.payers[(ALICE.uid, MSISDN)][0].payment_count == 0, "nothing counted for the payer"
    [quarantined] = ready.repo.quarantine
    assert quarantined.reason == "checkout_request_mismatch"
    assert quarantined.checkout_request_id == "ws_CO_not_this_one"
    assert quarantined.token_sha256 == sha256(token)
    assert quarantined.source_ip == "10.1.2.3"
    assert quarantined.raw_body == json.dumps(body)
    assert quarantined.expires_at == T0 + timedelta(days=90)


def test_another_payments_token_cannot_settle_this_one(ready: World) -> None:
    first, second = pay(ready), pay(ready)

    with pytest.raises(errors.PermissionDenied):
        deliver(ready, first, stk_callback(checkout_of(first)), token=ready.token_for(second.id))

    assert stored(ready, first).status is PaymentStatus.PENDING
    assert stored(ready, second).status is PaymentStatus.PENDING
    assert [q.reason for q in ready.repo.quarantine] == ["checkout_request_mismatch"]


def test_an_unknown_token_is_not_found_and_quarantined(ready: World) -> None:
    payment = pay(ready)
    body = stk_callback(checkout_of(payment))

    with pytest.raises(errors.NotFound) as raised:
        deliver(ready, payment, body, token=UNKNOWN_TOKEN)

    assert (raised.value.code, raised.value.http_status) == ("unknown_callback_token", 404)
    assert stored(ready, payment).status is PaymentStatus.PENDING
    [quarantined] = ready.repo.quarantine
    assert (quarantined.reason, quarantined.token_sha256) == ("unknown_callback_token", sha256(UNKNOWN_TOKEN))
    assert quarantined.checkout_request_id == checkout_of(payment)
    assert ready.repo.audits == {}


def test_a_route_whose_payment_is_gone_is_refused_and_quarantined(ready: World) -> None:
    payment = pay(ready)
    token = ready.token_for(payment.id)
    del ready.repo.payments[(ALICE.uid, payment.id)]

    with pytest.raises(errors.PermissionDenied) as raised:
        deliver(ready, payment, stk_callback(checkout_of(payment)), token=token)

    assert raised.value.code == "payment_missing"
    assert [q.reason for q in ready.repo.quarantine] == ["payment_missing"]


@pytest.mark.parametrize(
    "body",
    [
        "not an object",
        {"Body": {}},
        {"Body": {"stkCallback": {"ResultCode": 0}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 0.5}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": "ws CO 1", "ResultCode": 0}}},
    ],
)
def test_a_malformed_callback_is_a_validation_error_and_quarantined(ready: World, body: Any) -> None:
    payment = pay(ready)
    token = ready.token_for(payment.id)
    raw = json.dumps(body).encode()

    with pytest.raises(ValidationError) as raised:
        deliver(ready, payment, body, raw=raw)

    assert raised.value.code == "malformed_callback"
    assert ready.repo.calls["load_callback_route"] == 0
    assert stored(ready, payment).status is PaymentStatus.PENDING
    [quarantined] = ready.repo.quarantine
    assert (quarantined.reason, quarantined.raw_body) == ("malformed_callback", raw.decode())
    assert (quarantined.token_sha256, quarantined.checkout_request_id) == (sha256(token), None)


def test_an_unreadable_body_is_quarantined_as_bounded_text() -> None:
    world = make_world(max_body_bytes=64)
    raw = b"\xff\xfe not json " + b"x" * 200

    world.gateway.settlement.quarantine_unreadable(UNKNOWN_TOKEN, raw, "10.0.0.7", "invalid_json")

    [quarantined] = world.repo.quarantine
    assert quarantined.reason == "invalid_json"
    assert isinstance(quarantined.raw_body, str)
    assert quarantined.raw_body == raw[:64].decode("utf-8", errors="replace")
    assert quarantined.raw_body.startswith("\ufffd\ufffd not json")
    assert (quarantined.source_ip, quarantined.token_sha256) == ("10.0.0.7", sha256(UNKNOWN_TOKEN))


def test_the_audit_copy_is_the_raw_body_as_bounded_text() -> None:
    world = make_world(max_body_bytes=100)
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    payment = pay(world)
    body = stk_callback(checkout_of(payment))
    # Firestore could not store this as JSON (an integer of 2^70, deep nesting); as text it is just characters.
    deep: Any = 1
    for _ in range(30):
        deep = [deep]
    raw = json.dumps({**body, "Extra": 2**70, "Deep": deep}).encode()

    deliver(world, payment, body, raw=raw)

    [audit] = world.repo.audits[(ALICE.uid, payment.id)]
    assert isinstance(audit.raw_body, str)
    assert audit.raw_body == raw[:100].decode()
    assert stored(world, payment).status is PaymentStatus.SUCCEEDED


@pytest.mark.parametrize(
    "token",
    [
        "",
        "short",
        "A" * 31,
        "A" * 33,
        "A" * 31 + "!",
        "A" * 31 + "=",
        "A" * 31 + "/",
        "A" * 31 + ".",
        "A" * 32 + "\n",
        "../" + "A" * 29,
        "é" * 32,
        "A" * 10_000,
    ],
)
def test_an_implausible_token_is_not_found_without_any_read(ready: World, token: str) -> None:
    ready.repo.calls.clear()

    with pytest.raises(errors.NotFound) as raised:
        ready.gateway.settlement.check_callback_source(token, DARAJA_IP)

    assert raised.value.code == "unknown_callback_token"
    assert sum(ready.repo.calls.values()) == 0, f"the store was touched: {dict(ready.repo.calls)}"
    assert ready.repo.quarantine == []


def test_a_plausible_token_passes_the_cheap_checks(ready: World) -> None:
    payment = pay(ready)
    ready.repo.calls.clear()

    ready.gateway.settlement.check_callback_source(ready.token_for(payment.id), DARAJA_IP)
    ready.gateway.settlement.check_callback_source(UNKNOWN_TOKEN, DARAJA_IP)

    assert sum(ready.repo.calls.values()) == 0


@pytest.mark.parametrize(
    ("allowed", "source_ip", "accepted_source"),
    [
        (("196.201.214.200",), "10.0.0.1", False),
        (("196.201.214.200",), None, False),
        (("196.201.214.200", "196.201.214.206"), "196.201.214.206", True),
        (("196.201.214.200",), "196.201.214.200", True),
        ((), "10.0.0.1", True),
        ((), None, True),
    ],
)
def test_the_callback_source_ip_allow_list(
    allowed: tuple[str, ...], source_ip: str | None, accepted_source: bool
) -> None:
    world = make_world(callback_allowed_ips=allowed)
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    payment = pay(world)
    token = world.token_for(payment.id)
    world.repo.calls.clear()

    if accepted_source:
        world.gateway.settlement.check_callback_source(token, source_ip)
    else:
        with pytest.raises(errors.PermissionDenied) as raised:
            world.gateway.settlement.check_callback_source(token, source_ip)
        assert (raised.value.code, raised.value.http_status) == ("source_ip_not_allowed", 403)
    assert sum(world.repo.calls.values()) == 0


# -------------------------------------------------------------------------------------------------- queries


def test_a_young_pending_payment_is_not_queried(ready: World) -> None:
    payment = pay(ready)
    ready.clock.advance(ready.settings.pending_query_after_s - 1)

    assert ready.gateway.payments.get(ALICE, payment.id, None).status is PaymentStatus.PENDING
    assert ready.daraja.query_calls == []


def test_a_late_payment_is_queried_at_most_once_per_interval(ready: World) -> None:
    payment = pay(ready)
    ready.clock.advance(ready.settings.pending_query_after_s)

    first = ready.gateway.payments.get(ALICE, payment.id, None)
    ready.clock.advance(ready.settings.pending_query_interval_s - 1)
    second = ready.gateway.payments.get(ALICE, None, checkout_of(payment))

    assert first.status is second.status is PaymentStatus.PENDING  # "processing": the payer has not answered
    [(app, checkout)] = ready.daraja.query_calls
    assert (app.uid, app.shortcode, checkout) == (ALICE.uid, "174379", checkout_of(payment))
    assert (first.query_attempts, first.last_queried_at) == (1, T0 + timedelta(seconds=30))
    ready.clock.advance(1)
    third = ready.gateway.payments.get(ALICE, payment.id, None)
    assert len(ready.daraja.query_calls) == 2
    assert third.query_attempts == 2
    assert stored(ready, payment).status is PaymentStatus.PENDING
    assert ready.repo.audits == {}


def test_a_payment_without_a_checkout_id_is_never_queried(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())
    payment = pay(ready)
    ready.clock.advance(ready.settings.pending_query_after_s * 10)

    assert ready.gateway.payments.get(ALICE, payment.id, None).status is PaymentStatus.PENDING
    assert ready.daraja.query_calls == []


def test_a_query_answer_of_success_settles_with_a_flag(ready: World) -> None:
    payment = pay(ready)
    ready.daraja.script_query(checkout_of(payment), query_answer(checkout_of(payment), "0", "processed"))
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    read = ready.gateway.payments.get(ALICE, payment.id, None)

    assert read.status is PaymentStatus.SUCCEEDED
    assert read.flags == (FLAG_SETTLED_BY_QUERY,)
    assert (read.result_code, read.settled_by) == ("0", "query")
    assert stored(ready, payment) == read
    [audit] = ready.repo.audits[(ALICE.uid, payment.id)]
    assert (audit.source, audit.action, audit.result_code) == ("query", "settle", "0")
    assert json.loads(audit.raw_body)["CheckoutRequestID"] == checkout_of(payment)
    assert payer_counts(ready) == (1, 1, 10)


@pytest.mark.parametrize("code", ["4999", "500.001.1001", "1036"])
def test_a_non_final_query_answer_leaves_the_payment_pending(ready: World, code: str) -> None:
    payment = pay(ready)
    ready.daraja.script_query(checkout_of(payment), query_answer(checkout_of(payment), code, "still thinking"))
    ready.clock.advance(ready.settings.pending_query_after_s)

    read = ready.gateway.payments.get(ALICE, payment.id, None)

    assert read.status is PaymentStatus.PENDING and read.result_code is None
    assert len(ready.daraja.query_calls) == 1
    assert read.query_attempts == 1
    assert actions(ready, payment) == ["ignore"]
    assert ready.repo.payers[(ALICE.uid, MSISDN)][0].payment_count == 0, "nothing counted for the payer"


def test_a_query_answer_never_overwrites_a_recorded_success(ready: World) -> None:
    payment = pay(ready)
    checkout = checkout_of(payment)

    def success_lands_while_querying(*_: Any) -> Any:
        deliver(ready, payment, stk_callback(checkout))
        return query_answer(checkout, "1032", "Request cancelled by user")

    ready.daraja.script_query(checkout, success_lands_while_querying)
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    read = ready.gateway.payments.get(ALICE, payment.id, None)

    assert read.status is PaymentStatus.SUCCEEDED and read.mpesa_receipt_number == "QKT1ABC2DE"
    assert stored(ready, payment).result_code == "0"
    assert actions(ready, payment) == ["settle", "ignore"]
    assert payer_counts(ready) == (1, 1, 10)


def test_a_query_uses_the_payments_own_environment_and_secret(ready: World) -> None:
    sandbox_payment = pay(ready)
    ready.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)
    ready.clock.advance(ready.settings.pending_query_after_s)

    ready.gateway.payments.get(ALICE, sandbox_payment.id, None)

    [(app, _checkout)] = ready.daraja.query_calls
    assert (app.environment, app.shortcode) == ("sandbox", "174379")
    assert app.secret.consumer_key == CREDENTIALS["consumer_key"]
    assert app.secret.passkey == PASSKEY
    production_payment = pay(ready, environment="production")
    assert (production_payment.environment, production_payment.shortcode) == ("production", "600555")


@pytest.mark.parametrize(
    "failure",
    [
        errors.DarajaError("daraja_unavailable", "Daraja failed to answer (HTTP 503)"),
        errors.DarajaError("daraja_timeout", "Daraja did not answer in time", http_status=504),
        errors.DarajaError("daraja_rate_limited", "slow down", http_status=429),
        errors.DarajaError("daraja_answer_mismatch", "another CheckoutRequestID"),
        errors.ServiceUnavailable("secret_store_unavailable", "down"),
    ],
)
def test_a_failure_during_the_lazy_query_still_answers_the_read(ready: World, failure: Exception) -> None:
    payment = pay(ready)
    ready.daraja.script_query(None, failure)
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    read = ready.gateway.payments.get(ALICE, payment.id, None)

    assert read.status is PaymentStatus.PENDING and read.id == payment.id
    assert len(ready.daraja.query_calls) == 1
    # The interval was claimed all the same: the next read within it does not hammer Daraja.
    ready.gateway.payments.get(ALICE, payment.id, None)
    assert len(ready.daraja.query_calls) == 1


def test_credentials_deleted_meanwhile_do_not_break_the_read(ready: World) -> None:
    payment = pay(ready)
    ready.gateway.credentials.delete(ALICE)
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    read = ready.gateway.payments.get(ALICE, payment.id, None)

    assert read.status is PaymentStatus.PENDING
    assert ready.daraja.query_calls == []
    assert stored(ready, payment).query_attempts == 1


# ------------------------------------------------------------------------------------------------ reconcile


def test_reconcile_queries_each_payment_with_its_own_developers_app(ready: World) -> None:
    ready.gateway.credentials.put(BOB, BOB_CREDENTIALS)
    alices = pay(ready)
    bobs = pay(ready, BOB, phone="0798765432")
    ready.clock.advance(ready.settings.reconcile_after_s)
    young = pay(ready)
    ready.daraja.script_query(checkout_of(alices), query_answer(checkout_of(alices), "0"))
    ready.daraja.script_query(checkout_of(bobs), query_answer(checkout_of(bobs), "1032"))

    summary = ready.gateway.settlement.reconcile()

    assert summary == {"examined": 2, "settled": 2, "still_pending": 0, "unconfirmed": 0, "errors": 0}
    seen = {checkout: app for app, checkout in ready.daraja.query_calls}
    assert set(seen) == {checkout_of(alices), checkout_of(bobs)}
    alice_app, bob_app = seen[checkout_of(alices)], seen[checkout_of(bobs)]
    assert (alice_app.uid, alice_app.shortcode, alice_app.secret.passkey) == (ALICE.uid, "174379", PASSKEY)
    assert (bob_app.uid, bob_app.shortcode, bob_app.secret.passkey) == (BOB.uid, "600123", BOB_CREDENTIALS["passkey"])
    assert bob_app.secret.consumer_key == BOB_CREDENTIALS["consumer_key"]
    assert stored(ready, alices).status is PaymentStatus.SUCCEEDED
    assert stored(ready, bobs, BOB).status is PaymentStatus.CANCELLED
    assert stored(ready, young).status is PaymentStatus.PENDING
    assert payer_counts(ready, BOB, "254798765432") == (1, 0, 0)


def test_reconcile_leaves_processing_payments_pending_and_looks_again_later(ready: World) -> None:
    payment = pay(ready)
    ready.clock.advance(ready.settings.reconcile_after_s)

    summary = ready.gateway.settlement.reconcile()

    assert summary == {"examined": 1, "settled": 0, "still_pending": 1, "unconfirmed": 0, "errors": 0}
    after = stored(ready, payment)
    assert after.status is PaymentStatus.PENDING and after.query_attempts == 1
    assert after.next_check_at is not None and after.next_check_at > ready.clock.now
    # Not due again at once: the next look is pushed back.
    assert ready.gateway.settlement.reconcile()["examined"] == 0
    assert len(ready.daraja.query_calls) == 1


def test_one_failing_payment_does_not_stop_the_sweep(ready: World) -> None:
    payments = []
    for _ in range(3):
        payments.append(pay(ready))
        ready.clock.advance(1)
    ready.clock.advance(ready.settings.reconcile_after_s)
    broken, daraja_down, fine = (checkout_of(p) for p in payments)
    ready.daraja.script_query(broken, RuntimeError("bug"))
    ready.daraja.script_query(daraja_down, errors.DarajaError("daraja_unavailable", "down"))
    ready.daraja.script_query(fine, query_answer(fine, "1037"))

    summary = ready.gateway.settlement.reconcile()

    assert len(ready.daraja.query_calls) == 3
    assert summary == {"examined": 3, "settled": 1, "still_pending": 0, "unconfirmed": 0, "errors": 2}
    assert [stored(ready, p).status for p in payments] == [
        PaymentStatus.PENDING,
        PaymentStatus.PENDING,
        PaymentStatus.TIMED_OUT,
    ]


def test_payments_whose_credentials_are_gone_stay_pending(ready: World) -> None:
    payment = pay(ready)
    ready.gateway.credentials.delete(ALICE)
    ready.clock.advance(ready.settings.reconcile_after_s)

    summary = ready.gateway.settlement.reconcile()

    assert summary == {"examined": 1, "settled": 0, "still_pending": 1, "unconfirmed": 0, "errors": 0}
    assert ready.daraja.query_calls == []
    after = stored(ready, payment)
    assert after.status is PaymentStatus.PENDING
    assert after.next_check_at is not None and after.next_check_at > ready.clock.now, "it sinks behind the others"


def test_reconcile_marks_a_push_past_its_lease_outcome_unknown(ready: World) -> None:
    lose_second_commit(ready)
    payment = pay(ready)
    intent = stored(ready, payment)
    assert intent.push_state is PushState.SENDING
    ready.clock.advance(ready.settings.push_lease_s - 1)
    assert ready.gateway.settlement.reconcile()["examined"] == 0, "the push still holds its lease"
    ready.clock.advance(1)

    summary = ready.gateway.settlement.reconcile()

    assert summary == {"examined": 1, "settled": 0, "still_pending": 1, "unconfirmed": 0, "errors": 0}
    after = stored(ready, payment)
    assert after.status is PaymentStatus.PENDING
    assert after.push_state is PushState.UNKNOWN and FLAG_OUTCOME_UNKNOWN in after.flags
    assert after.next_check_at == T0 + timedelta(seconds=ready.settings.unconfirmed_after_s)
    assert ready.daraja.query_calls == []


def test_an_unknown_outcome_ends_unconfirmed_and_a_late_success_still_counts(ready: World) -> None:
    lose_second_commit(ready)
    payment = pay(ready)
    ready.clock.advance(ready.settings.push_lease_s)
    ready.gateway.settlement.reconcile()
    ready.clock.advance(ready.settings.unconfirmed_after_s - ready.settings.push_lease_s - 1)
    assert ready.gateway.settlement.reconcile()["examined"] == 0, "still inside the confirmation window"
    ready.clock.advance(1)

    summary = ready.gateway.settlement.reconcile()

    assert summary == {"examined": 1, "settled": 0, "still_pending": 0, "unconfirmed": 1, "errors": 0}
    ended = stored(ready, payment)
    assert ended.status is PaymentStatus.UNCONFIRMED
    assert (ended.settled_by, ended.settled_at, ended.next_check_at) == ("reconcile", ready.clock.now, None)
    assert ready.gateway.settlement.reconcile()["examined"] == 0

    # A late failure changes nothing; a late success is money received and is never hidden.
    deliver(ready, payment, stk_callback("ws_CO_late", 1037))
    assert stored(ready, payment).status is PaymentStatus.UNCONFIRMED
    deliver(ready, payment, stk_callback("ws_CO_late"))

    late = stored(ready, payment)
    assert late.status is PaymentStatus.SUCCEEDED
    assert FLAG_SUCCESS_AFTER_TERMINAL in late.flags and late.needs_a_human
    assert (late.checkout_request_id, late.mpesa_receipt_number) == ("ws_CO_late", "QKT1ABC2DE")
    assert payer_counts(ready) == (1, 1, 10)
    assert actions(ready, payment) == ["ignore", "settle"]


def test_a_push_answered_unknown_ends_unconfirmed_after_the_window(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())
    payment = pay(ready)
    ready.clock.advance(ready.settings.unconfirmed_after_s)

    summary = ready.gateway.settlement.reconcile()

    assert summary["unconfirmed"] == 1
    assert stored(ready, payment).status is PaymentStatus.UNCONFIRMED


def test_reconcile_sweeps_at_most_a_batch() -> None:
    world = make_world(reconcile_batch_size=2)
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    for _ in range(3):
        pay(world)
    world.clock.advance(world.settings.reconcile_after_s)

    assert world.gateway.settlement.reconcile()["examined"] == 2
    assert world.gateway.settlement.reconcile()["examined"] == 1


def test_a_refused_push_is_never_swept(ready: World) -> None:
    ready.daraja.push_script.append(errors.DarajaError("payer_busy", "busy", http_status=409))
    with pytest.raises(errors.DarajaError):
        pay(ready)
    ready.clock.advance(ready.settings.unconfirmed_after_s * 2)

    assert ready.gateway.settlement.reconcile()["examined"] == 0
    assert ready.repo.only_payment(ALICE.uid).status is PaymentStatus.FAILED


def test_reconcile_reads_each_developers_set_ups_once_per_sweep(ready: World) -> None:
    ready.gateway.credentials.put(BOB, BOB_CREDENTIALS)
    alices = [pay(ready) for _ in range(3)]
    bobs = pay(ready, BOB, phone="0798765432")
    ready.clock.advance(ready.settings.reconcile_after_s)
    before = ready.repo.calls["daraja_setups"]

    assert ready.gateway.settlement.reconcile()["examined"] == 4

    assert len(ready.daraja.query_calls) == 4
    assert {checkout for _, checkout in ready.daraja.query_calls} == {checkout_of(p) for p in [*alices, bobs]}
    assert ready.repo.calls["daraja_setups"] - before == 2


def test_a_status_read_or_list_is_one_read_and_touches_no_registry_entry(ready: World) -> None:
    """What the README's performance table counts for a status poll: the payment alone (by id or by
    CheckoutRequestID), or the page alone; the developer's registry entry is neither read nor created."""
    payment = pay(ready)
    for read, expected in (
        (lambda: ready.gateway.payments.get(ALICE, payment.id, None), "load_payment"),
        (lambda: ready.gateway.payments.get(ALICE, None, checkout_of(payment)), "find_payment_by_checkout"),
        (lambda: ready.gateway.payments.list(ALICE, None, None, None), "list_payments"),
    ):
        ready.repo.calls.clear()
        read()
        assert dict(ready.repo.calls) == {expected: 1}


def test_reconcile_never_creates_registry_entries(ready: World) -> None:
    pay(ready)
    ready.clock.advance(ready.settings.reconcile_after_s)
    before = ready.repo.calls["ensure_developer"]

    assert ready.gateway.settlement.reconcile()["examined"] == 1

    assert ready.repo.calls["ensure_developer"] == before
