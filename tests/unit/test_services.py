"""The use cases (gateway.services.Gateway) over in-memory fakes: FakeRepository, a real CredentialStore on a dict,
FakeDaraja and a hand-moved clock. No Firestore, no Secret Manager, no network."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from gateway import errors
from gateway.daraja import DarajaOutcomeUnknown
from gateway.domain.errors import ValidationError
from gateway.http import ApiResponse, Developer
from gateway.secrets import CredentialStore
from gateway.services import Gateway
from gateway.settings import Settings
from tests.unit.fakes import T0, FakeClock, FakeDaraja, FakeRepository, MemorySecretBackend, query_answer

CALLBACK_BASE = "https://example.test/mpesa_callback"
ALICE = Developer("dev_alice", "alice@example.com")
BOB = Developer("dev_bob", "bob@example.com")
PHONE_TYPED = "0712345678"
MSISDN = "254712345678"
MASKED = "2547******78"
PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
CREDENTIALS = {
    "environment": "sandbox",
    "consumer_key": "ckeyALICE0000001234",
    "consumer_secret": "csecretALICEtopsecret99",
    "shortcode": "174379",
    "passkey": PASSKEY,
    "transaction_type": "CustomerPayBillOnline",
}
BOB_CREDENTIALS = {
    **CREDENTIALS,
    "consumer_key": "ckeyBOB000000005678",
    "consumer_secret": "csecretBOBtopsecret77",
    "shortcode": "600123",
    "passkey": "bobpasskey" + "7" * 40,
}
ORDER = {"phone": PHONE_TYPED, "amount": 10, "account_reference": "INV-1", "description": "Order 1"}


@dataclass
class World:
    gateway: Gateway
    repo: FakeRepository
    backend: MemorySecretBackend
    daraja: FakeDaraja
    clock: FakeClock
    settings: Settings

    def with_credentials(self, developer: Developer = ALICE, body: dict[str, Any] | None = None) -> None:
        self.gateway.put_credentials(developer, body or CREDENTIALS)

    def pay(self, developer: Developer = ALICE, key: str | None = None, **changes: Any) -> dict[str, Any]:
        answer = self.gateway.create_payment(developer, {**ORDER, **changes}, key)
        assert answer.status == 201
        return answer.body


def make_world(**settings_changes: Any) -> World:
    settings = Settings(project_id="demo-unit", callback_base_url=CALLBACK_BASE, **settings_changes)
    clock = FakeClock()
    repo = FakeRepository(settings, clock)
    backend = MemorySecretBackend()
    daraja = FakeDaraja()
    gateway = Gateway(settings, repo, CredentialStore(settings, backend), daraja, now=clock)  # type: ignore[arg-type]
    return World(gateway, repo, backend, daraja, clock, settings)


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
def ready(world: World) -> World:
    world.with_credentials()
    return world


def token_for(world: World, payment: dict[str, Any]) -> str:
    """The callback token handed to Daraja for this payment: found through the hash the repository stored."""
    [stored_hash] = [
        p["callback_token_sha256"]
        for mine in world.repo.payments.values()
        for p in mine.values()
        if p["id"] == payment["id"]
    ]
    for _, order in world.daraja.push_calls:
        token = order.callback_url.rsplit("/", 1)[-1]
        if hashlib.sha256(token.encode()).hexdigest() == stored_hash:
            return token
    raise AssertionError("no push carried this payment's token")


def callback(
    checkout_request_id: str,
    result_code: Any = 0,
    *,
    amount: Any = 10,
    receipt: str = "QKT1ABC2DE",
    phone: Any = int(MSISDN),
    desc: str = "The service request is processed successfully.",
) -> dict[str, Any]:
    inner: dict[str, Any] = {
        "MerchantRequestID": "29115-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": desc,
    }
    if result_code in (0, "0"):
        inner["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": amount},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": 20261129060102},
                {"Name": "PhoneNumber", "Value": phone},
            ]
        }
    return {"Body": {"stkCallback": inner}}


def deliver(
    world: World, payment: dict[str, Any], body: dict[str, Any], source_ip: str | None = "196.201.214.200"
) -> ApiResponse:
    return world.gateway.handle_callback(token_for(world, payment), body, source_ip)


def stored(world: World, payment: dict[str, Any], developer: Developer = ALICE) -> dict[str, Any]:
    return world.repo.payment(developer.uid, payment["id"])


# ------------------------------------------------------------------------------------------------ credentials


def test_rejected_credentials_are_verified_first_and_nothing_is_stored(world: World) -> None:
    world.daraja.verify_script.append(
        errors.Unprocessable("daraja_credentials_rejected", "Daraja rejected these keys", param="consumer_key")
    )

    with pytest.raises(errors.Unprocessable) as raised:
        world.gateway.put_credentials(ALICE, CREDENTIALS)

    assert raised.value.http_status == 422
    assert world.daraja.verify_calls == [("sandbox", CREDENTIALS["consumer_key"], CREDENTIALS["consumer_secret"])]
    assert world.backend.secrets == {}
    assert world.repo.calls["save_daraja_setup"] == 0
    assert world.repo.developers[ALICE.uid]["daraja"] is None
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.get_credentials(ALICE)


def test_daraja_unreachable_during_verification_stores_nothing(world: World) -> None:
    world.daraja.verify_script.append(errors.DarajaError("daraja_unreachable", "down", http_status=504))

    with pytest.raises(errors.DarajaError):
        world.gateway.put_credentials(ALICE, CREDENTIALS)

    assert world.backend.secrets == {}
    assert world.repo.calls["save_daraja_setup"] == 0


def test_accepted_credentials_are_stored_after_verification_and_shown_masked(world: World) -> None:
    secret_store_at_verification: list[dict[str, bytes]] = []
    world.daraja.verify_script.append(lambda *_: secret_store_at_verification.append(dict(world.backend.secrets)))

    answer = world.gateway.put_credentials(ALICE, CREDENTIALS)

    assert secret_store_at_verification == [{}], "the keys must be verified before anything is stored"
    assert answer.status == 200
    assert answer.body == {
        "object": "developer_credentials",
        "environment": "sandbox",
        "shortcode": "174379",
        "transaction_type": "CustomerPayBillOnline",
        "party_b": "174379",
        "consumer_key_hint": "ckey...1234",
        "verified_at": "2026-11-29T06:00:00.000Z",
        "updated_at": "2026-11-29T06:00:00.000Z",
    }
    shown = json.dumps(answer.body)
    for secret in (CREDENTIALS["consumer_key"], CREDENTIALS["consumer_secret"], PASSKEY):
        assert secret not in shown
    secret_id = CredentialStore.secret_id(ALICE.uid)
    assert list(world.backend.secrets) == [secret_id]
    assert json.loads(world.backend.secrets[secret_id]) == {
        "consumer_key": CREDENTIALS["consumer_key"],
        "consumer_secret": CREDENTIALS["consumer_secret"],
        "passkey": PASSKEY,
    }
    setup = world.repo.developers[ALICE.uid]["daraja"]
    assert setup["shortcode"] == "174379" and setup["verified_at"] == T0
    assert not any(secret in json.dumps(setup, default=str) for secret in (CREDENTIALS["consumer_secret"], PASSKEY))
    assert world.gateway.get_credentials(ALICE).body == answer.body


# --------------------------------------------------------------------------------------------- create_payment


def test_create_payment_without_credentials_is_refused_before_daraja(world: World) -> None:
    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        world.gateway.create_payment(ALICE, ORDER, None)

    assert raised.value.http_status == 404
    assert world.daraja.push_calls == []
    assert world.repo.payments == {}


def test_create_payment_records_a_pending_payment_and_hands_daraja_a_token_url(ready: World) -> None:
    answer = ready.gateway.create_payment(ALICE, {**ORDER, "metadata": {"order": 7}}, None)

    assert answer.status == 201
    assert answer.headers == {}
    view = answer.body
    assert view["object"] == "payment"
    assert re.fullmatch(r"pay_[0-9a-f]{24}", view["id"])
    assert view["status"] == "pending"
    assert view["phone"] == MASKED
    assert view["amount"] == 10 and view["currency"] == "KES" and view["metadata"] == {"order": 7}
    assert view["created_at"] == "2026-11-29T06:00:00.000Z"
    assert MSISDN not in json.dumps(view)
    assert "callback_token_sha256" not in view and "msisdn" not in view

    [(app, order)] = ready.daraja.push_calls
    assert (app.uid, app.shortcode, app.party_b, app.environment) == (ALICE.uid, "174379", "174379", "sandbox")
    assert app.secret.passkey == PASSKEY and app.secret.consumer_secret == CREDENTIALS["consumer_secret"]
    assert (order.phone, order.amount, order.account_reference) == (MSISDN, 10, "INV-1")

    payment = stored(ready, view)
    assert payment["status"] == "pending"
    assert payment["msisdn"] == MSISDN
    assert payment["checkout_request_id"] == view["checkout_request_id"] == "ws_CO_29112026060000000001"
    assert order.callback_url.startswith(CALLBACK_BASE + "/")
    token = order.callback_url[len(CALLBACK_BASE) + 1 :]
    assert token and "/" not in token and len(token) >= 32
    assert hashlib.sha256(token.encode()).hexdigest() == payment["callback_token_sha256"]
    assert token not in json.dumps(payment, default=str)
    assert ready.repo.routes[payment["checkout_request_id"]] == {
        "uid": ALICE.uid,
        "payment_id": view["id"],
        "callback_token_sha256": payment["callback_token_sha256"],
        "created_at": T0,
    }


def test_payment_ids_and_callback_tokens_are_random_and_unique(ready: World) -> None:
    ids = {ready.pay()["id"] for _ in range(1000)}

    assert len(ids) == 1000
    assert all(re.fullmatch(r"pay_[0-9a-f]{24}", payment_id) for payment_id in ids)
    tokens = {order.callback_url for _, order in ready.daraja.push_calls}
    assert len(tokens) == 1000
    # Random, not a counter or a clock: even their first 8 hex digits are (all but surely) all different.
    assert len({payment_id[4:12] for payment_id in ids}) > 990


# -------------------------------------------------------------------------------------------------- idempotency


def test_same_key_and_body_replays_the_first_answer_with_one_daraja_call(ready: World) -> None:
    first = ready.gateway.create_payment(ALICE, ORDER, "order-1")
    # The same request written differently is the same request.
    again = ready.gateway.create_payment(ALICE, {**ORDER, "phone": "+254 712 345 678"}, "order-1")

    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers == {"Idempotent-Replayed": "true"}
    assert first.headers == {}
    assert len(ready.daraja.push_calls) == 1
    assert len(ready.repo.payments[ALICE.uid]) == 1


def test_keys_are_per_developer(ready: World) -> None:
    ready.with_credentials(BOB, BOB_CREDENTIALS)
    alice = ready.gateway.create_payment(ALICE, ORDER, "order-1")
    bob = ready.gateway.create_payment(BOB, ORDER, "order-1")

    assert bob.headers == {} and bob.body["id"] != alice.body["id"]
    assert len(ready.daraja.push_calls) == 2


def test_same_key_with_another_body_is_a_conflict(ready: World) -> None:
    ready.gateway.create_payment(ALICE, ORDER, "order-1")

    with pytest.raises(errors.IdempotencyConflict) as raised:
        ready.gateway.create_payment(ALICE, {**ORDER, "amount": 11}, "order-1")

    assert raised.value.code == "idempotency_conflict" and raised.value.http_status == 409
    assert raised.value.param == "Idempotency-Key"
    assert len(ready.daraja.push_calls) == 1


def test_daraja_rejection_releases_the_key_so_a_retry_calls_daraja_again(ready: World) -> None:
    ready.daraja.push_script.append(
        errors.DarajaError("daraja_rejected_request", "Invalid PhoneNumber", http_status=400, daraja_code="400.002.02")
    )

    with pytest.raises(errors.DarajaError) as raised:
        ready.gateway.create_payment(ALICE, ORDER, "order-1")

    assert raised.value.http_status == 400
    assert ready.repo.idempotency == {}
    assert ready.repo.payments.get(ALICE.uid, {}) == {}
    retried = ready.gateway.create_payment(ALICE, ORDER, "order-1")
    assert retried.status == 201 and retried.headers == {}
    assert len(ready.daraja.push_calls) == 2


def test_unknown_daraja_outcome_records_nothing_and_replays_the_504_without_prompting_again(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())

    with pytest.raises(DarajaOutcomeUnknown) as raised:
        ready.gateway.create_payment(ALICE, ORDER, "order-1", request_id="req_first")

    assert raised.value.http_status == 504
    assert ready.repo.payments.get(ALICE.uid, {}) == {}, "no phantom pending payment"
    assert ready.repo.routes == {}
    retried = ready.gateway.create_payment(ALICE, ORDER, "order-1", request_id="req_retry")
    assert retried.status == 504
    assert retried.headers == {"Idempotent-Replayed": "true"}
    assert retried.body["error"]["code"] == "daraja_timeout"
    assert retried.body["error"]["type"] == "daraja_error"
    assert retried.body["error"]["request_id"] == "req_retry"
    assert len(ready.daraja.push_calls) == 1, "a retry must not prompt the payer a second time"


def test_unknown_outcome_without_a_key_still_records_nothing(ready: World) -> None:
    ready.daraja.push_script.append(DarajaOutcomeUnknown())

    with pytest.raises(DarajaOutcomeUnknown):
        ready.gateway.create_payment(ALICE, ORDER, None)

    assert ready.repo.payments.get(ALICE.uid, {}) == {}
    assert ready.repo.idempotency == {}


def test_a_payment_daraja_accepted_but_we_could_not_record_is_never_pushed_again(ready: World) -> None:
    ready.repo.fail_record_payment = RuntimeError("firestore unavailable")

    with pytest.raises(errors.GatewayError) as raised:
        ready.gateway.create_payment(ALICE, ORDER, "order-1")

    assert raised.value.http_status == 500 and raised.value.code == "payment_not_recorded"
    ready.repo.fail_record_payment = None
    retried = ready.gateway.create_payment(ALICE, ORDER, "order-1")
    assert retried.status == 500 and retried.headers == {"Idempotent-Replayed": "true"}
    assert len(ready.daraja.push_calls) == 1


@pytest.mark.parametrize("key", ["clé-1", "x" * 256, "", "has space", "tab\tkey"])
def test_malformed_idempotency_keys_are_invalid_requests(ready: World, key: str) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.create_payment(ALICE, ORDER, key)

    assert raised.value.code == "invalid_idempotency_key" and raised.value.param == "Idempotency-Key"
    assert ready.daraja.push_calls == []
    assert ready.repo.calls["claim_idempotency_key"] == 0


def test_a_255_character_key_is_accepted(ready: World) -> None:
    assert ready.gateway.create_payment(ALICE, ORDER, "k" * 255).status == 201


# ---------------------------------------------------------------------------------------------------- callbacks


def test_success_callback_settles_with_the_receipt_and_counts_the_payer_once(ready: World) -> None:
    payment = ready.pay()
    ready.clock.advance(12)

    answer = deliver(ready, payment, callback(payment["checkout_request_id"]))

    assert answer.status == 200 and answer.body == {"ResultCode": 0, "ResultDesc": "Accepted"}
    settled = stored(ready, payment)
    assert settled["status"] == "succeeded"
    assert settled["mpesa_receipt_number"] == "QKT1ABC2DE"
    assert settled["transaction_date"] == "20261129060102"
    assert settled["result_code"] == "0"
    assert settled["settled_by"] == "callback"
    assert settled["settled_at"] == T0.replace(second=12)
    assert settled["flags"] == []
    payer = ready.repo.payers[ALICE.uid][MSISDN]
    assert (payer["payment_count"], payer["succeeded_count"], payer["total_paid"]) == (1, 1, 10)
    [audit] = ready.repo.audits[(ALICE.uid, payment["id"])]
    assert audit["action"] == "settle" and audit["source"] == "callback" and audit["result_code"] == "0"

    view = ready.gateway.get_payment(ALICE, payment["id"], None).body
    assert view["status"] == "succeeded" and view["mpesa_receipt_number"] == "QKT1ABC2DE"
    assert view["settled_at"] == "2026-11-29T06:00:12.000Z"


def test_duplicate_callback_is_ignored_and_leaves_the_payer_alone(ready: World) -> None:
    payment = ready.pay()
    body = callback(payment["checkout_request_id"])
    deliver(ready, payment, body)
    before = stored(ready, payment)
    payer_before = dict(ready.repo.payers[ALICE.uid][MSISDN])

    answer = deliver(ready, payment, body)

    assert answer.status == 200
    assert stored(ready, payment) == before
    assert ready.repo.payers[ALICE.uid][MSISDN] == payer_before
    assert [a["action"] for a in ready.repo.audits[(ALICE.uid, payment["id"])]] == ["settle", "ignore"]


def test_a_failure_after_a_success_changes_nothing(ready: World) -> None:
    payment = ready.pay()
    deliver(ready, payment, callback(payment["checkout_request_id"]))
    before = stored(ready, payment)

    deliver(ready, payment, callback(payment["checkout_request_id"], 1032, desc="Request cancelled by user"))

    assert stored(ready, payment) == before
    assert stored(ready, payment)["status"] == "succeeded"
    assert ready.repo.payers[ALICE.uid][MSISDN]["payment_count"] == 1


def test_a_success_for_the_wrong_amount_is_flagged_and_stays_pending(ready: World) -> None:
    payment = ready.pay()

    deliver(ready, payment, callback(payment["checkout_request_id"], amount=1))

    flagged = stored(ready, payment)
    assert flagged["status"] == "pending"
    assert flagged["flags"] == ["amount_mismatch"]
    assert flagged["mpesa_receipt_number"] is None
    assert flagged["flagged_outcome"]["amount"] == 1
    assert MSISDN not in ready.repo.payers.get(ALICE.uid, {})
    assert ready.gateway.get_payment(ALICE, payment["id"], None).body["flags"] == ["amount_mismatch"]


def test_a_wrong_callback_token_is_refused_without_a_trace(ready: World) -> None:
    payment = ready.pay()
    before = stored(ready, payment)

    with pytest.raises(errors.PermissionDenied) as raised:
        ready.gateway.handle_callback("not-the-token", callback(payment["checkout_request_id"]), "196.201.214.200")

    assert raised.value.code == "invalid_callback_token" and raised.value.http_status == 403
    assert stored(ready, payment) == before
    assert ready.repo.audits == {}
    assert ready.repo.calls["settle"] == 0


def test_another_payments_token_is_refused(ready: World) -> None:
    first, second = ready.pay(), ready.pay()

    with pytest.raises(errors.PermissionDenied):
        ready.gateway.handle_callback(token_for(ready, second), callback(first["checkout_request_id"]), None)

    assert stored(ready, first)["status"] == "pending"


def test_a_callback_for_an_unknown_checkout_is_not_found(ready: World) -> None:
    payment = ready.pay()

    with pytest.raises(errors.NotFound) as raised:
        ready.gateway.handle_callback(token_for(ready, payment), callback("ws_CO_unknown"), None)

    assert raised.value.code == "unknown_checkout_request"
    assert ready.repo.calls["settle"] == 0


@pytest.mark.parametrize(
    "body",
    [
        "not an object",
        {"Body": {}},
        {"Body": {"stkCallback": {"ResultCode": 0}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 0.5}}},
    ],
)
def test_a_malformed_callback_is_a_validation_error(ready: World, body: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        ready.gateway.handle_callback("any-token", body, None)

    assert raised.value.code == "malformed_callback"
    assert ready.repo.calls["settle"] == 0


@pytest.mark.parametrize(
    ("result_code", "status", "kept"),
    [
        (1032, "cancelled", "1032"),
        ("1032", "cancelled", "1032"),
        (1037, "timed_out", "1037"),
        (1, "failed", "1"),
        ("SFC_IC0003", "failed", "SFC_IC0003"),
    ],
)
def test_result_codes_map_to_statuses_and_the_raw_code_is_kept(
    ready: World, result_code: Any, status: str, kept: str
) -> None:
    payment = ready.pay()

    deliver(ready, payment, callback(payment["checkout_request_id"], result_code, desc="Some reason"))

    settled = stored(ready, payment)
    assert settled["status"] == status
    assert settled["result_code"] == kept
    assert settled["result_desc"] == "Some reason"
    assert settled["mpesa_receipt_number"] is None
    payer = ready.repo.payers[ALICE.uid][MSISDN]
    assert (payer["payment_count"], payer["succeeded_count"], payer["total_paid"]) == (1, 0, 0)


@pytest.mark.parametrize(
    ("allowed", "source_ip", "accepted"),
    [
        (("196.201.214.200",), "10.0.0.1", False),
        (("196.201.214.200",), None, False),
        (("196.201.214.200",), "196.201.214.200", True),
        ((), "10.0.0.1", True),
    ],
)
def test_callback_source_ip_allow_list(allowed: tuple[str, ...], source_ip: str | None, accepted: bool) -> None:
    world = make_world(callback_allowed_ips=allowed)
    world.with_credentials()
    payment = world.pay()
    body = callback(payment["checkout_request_id"])

    if accepted:
        assert deliver(world, payment, body, source_ip).status == 200
        assert stored(world, payment)["status"] == "succeeded"
    else:
        with pytest.raises(errors.PermissionDenied) as raised:
            deliver(world, payment, body, source_ip)
        assert raised.value.code == "source_ip_not_allowed"
        assert stored(world, payment)["status"] == "pending"
        assert world.repo.audits == {}


# ---------------------------------------------------------------------------------------------------- get_payment


def _not_found(gateway: Gateway, developer: Developer, payment_id: str | None, checkout: str | None) -> tuple:
    with pytest.raises(errors.NotFound) as raised:
        gateway.get_payment(developer, payment_id, checkout)
    error = raised.value
    return type(error), error.http_status, error.code, error.message, error.param, error.to_envelope("r")


def test_another_developers_payment_looks_exactly_like_a_missing_one(ready: World) -> None:
    ready.with_credentials(BOB, BOB_CREDENTIALS)
    bobs = ready.pay(BOB)

    assert _not_found(ready.gateway, ALICE, bobs["id"], None) == _not_found(
        ready.gateway, ALICE, "pay_" + "0" * 24, None
    )
    assert _not_found(ready.gateway, ALICE, None, bobs["checkout_request_id"]) == _not_found(
        ready.gateway, ALICE, None, "ws_CO_missing"
    )
    # Naming one's own payment id next to someone else's checkout id does not help either.
    alices = ready.pay(ALICE)
    _not_found(ready.gateway, ALICE, alices["id"], bobs["checkout_request_id"])
    assert ready.gateway.get_payment(BOB, bobs["id"], None).body["id"] == bobs["id"]
    assert ready.gateway.get_payment(ALICE, None, alices["checkout_request_id"]).body["id"] == alices["id"]
    assert ready.daraja.query_calls == []


def test_a_young_pending_payment_is_not_queried(ready: World) -> None:
    payment = ready.pay()
    ready.clock.advance(ready.settings.pending_query_after_s - 1)

    assert ready.gateway.get_payment(ALICE, payment["id"], None).body["status"] == "pending"
    assert ready.daraja.query_calls == []


def test_an_old_pending_payment_is_queried_at_most_once_per_interval(ready: World) -> None:
    payment = ready.pay()
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    first = ready.gateway.get_payment(ALICE, payment["id"], None)
    ready.clock.advance(ready.settings.pending_query_interval_s - 1)
    second = ready.gateway.get_payment(ALICE, None, payment["checkout_request_id"])

    assert first.body["status"] == second.body["status"] == "pending"  # "processing": the payer has not answered
    assert len(ready.daraja.query_calls) == 1
    [(app, checkout)] = ready.daraja.query_calls
    assert (app.uid, app.shortcode, checkout) == (ALICE.uid, "174379", payment["checkout_request_id"])
    ready.clock.advance(2)
    ready.gateway.get_payment(ALICE, payment["id"], None)
    assert len(ready.daraja.query_calls) == 2
    assert stored(ready, payment)["status"] == "pending"
    assert ready.repo.calls["settle"] == 0


def test_a_query_answer_of_success_settles_with_a_flag(ready: World) -> None:
    payment = ready.pay()
    ready.daraja.script_query(payment["checkout_request_id"], query_answer(payment["checkout_request_id"], "0"))
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    view = ready.gateway.get_payment(ALICE, payment["id"], None).body

    assert view["status"] == "succeeded"
    assert view["flags"] == ["settled_by_query"]
    assert view["result_code"] == "0"
    settled = stored(ready, payment)
    assert settled["status"] == "succeeded" and settled["settled_by"] == "query"
    [audit] = ready.repo.audits[(ALICE.uid, payment["id"])]
    assert audit["source"] == "query" and audit["action"] == "settle"
    assert ready.repo.payers[ALICE.uid][MSISDN]["succeeded_count"] == 1


def test_a_query_answer_never_overwrites_a_recorded_success(ready: World) -> None:
    payment = ready.pay()
    checkout = payment["checkout_request_id"]

    def success_lands_while_querying(*_: Any) -> Any:
        deliver(ready, payment, callback(checkout))
        return query_answer(checkout, "1032", "Request cancelled by user")

    ready.daraja.script_query(checkout, success_lands_while_querying)
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    view = ready.gateway.get_payment(ALICE, payment["id"], None).body

    assert view["status"] == "succeeded" and view["mpesa_receipt_number"] == "QKT1ABC2DE"
    assert stored(ready, payment)["status"] == "succeeded"
    assert stored(ready, payment)["result_code"] == "0"
    assert [a["action"] for a in ready.repo.audits[(ALICE.uid, payment["id"])]] == ["settle", "ignore"]
    assert ready.repo.payers[ALICE.uid][MSISDN]["payment_count"] == 1


@pytest.mark.parametrize(
    "failure",
    [
        errors.DarajaError("daraja_unavailable", "Daraja failed to answer (HTTP 503)"),
        errors.DarajaError("daraja_timeout", "Daraja did not answer in time", http_status=504),
        errors.DarajaError("daraja_rate_limited", "slow down", http_status=429),
    ],
)
def test_a_daraja_failure_during_the_lazy_query_still_answers_the_read(ready: World, failure: Exception) -> None:
    payment = ready.pay()
    ready.daraja.script_query(None, failure)
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    answer = ready.gateway.get_payment(ALICE, payment["id"], None)

    assert answer.status == 200 and answer.body["status"] == "pending"
    assert len(ready.daraja.query_calls) == 1


def test_credentials_deleted_meanwhile_do_not_break_the_read(ready: World) -> None:
    payment = ready.pay()
    ready.gateway.delete_credentials(ALICE)
    ready.clock.advance(ready.settings.pending_query_after_s + 1)

    assert ready.gateway.get_payment(ALICE, payment["id"], None).body["status"] == "pending"
    assert ready.daraja.query_calls == []


# -------------------------------------------------------------------------------------------------- list_payments


@pytest.mark.parametrize("status", ["paid", "PENDING", "", " pending"])
def test_list_refuses_an_unknown_status(ready: World, status: str) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.list_payments(ALICE, status, None, None)

    assert (raised.value.code, raised.value.param) == ("invalid_status", "status")
    assert ready.repo.calls["list_payments"] == 0


@pytest.mark.parametrize("limit", ["0", "101", "-1", "1.5", "ten", " 5", "٣", "1e2"])
def test_list_refuses_a_bad_limit(ready: World, limit: str) -> None:
    with pytest.raises(errors.InvalidRequest) as raised:
        ready.gateway.list_payments(ALICE, None, limit, None)

    assert (raised.value.code, raised.value.param) == ("invalid_limit", "limit")
    assert ready.repo.calls["list_payments"] == 0


@pytest.mark.parametrize(("raw", "expected"), [(None, 20), ("", 20), ("1", 1), ("100", 100)])
def test_list_limit_defaults_to_20(ready: World, raw: str | None, expected: int) -> None:
    ready.gateway.list_payments(ALICE, None, raw, None)

    assert ready.repo.last_list_args == (ALICE.uid, None, expected, None)


def test_list_pages_newest_first_with_masked_phones(ready: World) -> None:
    created = []
    for _ in range(3):
        created.append(ready.pay()["id"])
        ready.clock.advance(1)

    page = ready.gateway.list_payments(ALICE, "pending", "2", "").body
    rest = ready.gateway.list_payments(ALICE, "pending", "2", page["next_page_token"]).body

    assert [p["id"] for p in page["data"]] == created[:0:-1]
    assert page["has_more"] is True
    assert [p["id"] for p in rest["data"]] == created[:1]
    assert rest["has_more"] is False and rest["next_page_token"] is None
    assert all(p["phone"] == MASKED for p in page["data"] + rest["data"])
    assert ready.gateway.list_payments(ALICE, "succeeded", None, None).body["data"] == []
    assert ready.gateway.list_payments(BOB, None, None, None).body["data"] == []


# ------------------------------------------------------------------------------------------------------ reconcile


def test_reconcile_queries_each_payment_with_its_own_developers_app(ready: World) -> None:
    ready.with_credentials(BOB, BOB_CREDENTIALS)
    alices = ready.pay(ALICE)
    bobs = ready.pay(BOB, phone="0798765432")
    ready.clock.advance(ready.settings.reconcile_after_s + 1)
    young = ready.pay(ALICE)
    ready.daraja.script_query(alices["checkout_request_id"], query_answer(alices["checkout_request_id"], "0"))
    ready.daraja.script_query(bobs["checkout_request_id"], query_answer(bobs["checkout_request_id"], "1032"))

    summary = ready.gateway.reconcile()

    assert summary == {"examined": 2, "settled": 2, "still_pending": 0, "errors": 0}
    seen = {checkout: app for app, checkout in ready.daraja.query_calls}
    assert set(seen) == {alices["checkout_request_id"], bobs["checkout_request_id"]}
    alice_app, bob_app = seen[alices["checkout_request_id"]], seen[bobs["checkout_request_id"]]
    assert (alice_app.uid, alice_app.shortcode, alice_app.secret.passkey) == (ALICE.uid, "174379", PASSKEY)
    assert (bob_app.uid, bob_app.shortcode, bob_app.secret.passkey) == (
        BOB.uid,
        "600123",
        BOB_CREDENTIALS["passkey"],
    )
    assert bob_app.secret.consumer_key == BOB_CREDENTIALS["consumer_key"]
    assert stored(ready, alices)["status"] == "succeeded"
    assert stored(ready, bobs, BOB)["status"] == "cancelled"
    assert stored(ready, young)["status"] == "pending"


def test_one_failing_payment_does_not_stop_the_sweep(ready: World) -> None:
    payments = []
    for _ in range(3):
        payments.append(ready.pay())
        ready.clock.advance(1)
    ready.clock.advance(ready.settings.reconcile_after_s)
    broken, daraja_down, fine = (p["checkout_request_id"] for p in payments)
    ready.daraja.script_query(broken, RuntimeError("bug"))
    ready.daraja.script_query(daraja_down, errors.DarajaError("daraja_unavailable", "down"))
    ready.daraja.script_query(fine, query_answer(fine, "1037"))

    summary = ready.gateway.reconcile()

    assert len(ready.daraja.query_calls) == 3
    assert summary["examined"] == 3
    assert summary["errors"] == 2  # the crash and the Daraja failure are both counted
    assert summary["settled"] == 1
    assert [stored(ready, p)["status"] for p in payments] == ["pending", "pending", "timed_out"]


def test_reconcile_leaves_processing_payments_pending(ready: World) -> None:
    payment = ready.pay()
    ready.clock.advance(ready.settings.reconcile_after_s + 1)

    assert ready.gateway.reconcile() == {"examined": 1, "settled": 0, "still_pending": 1, "errors": 0}
    assert stored(ready, payment)["status"] == "pending"


def test_reconcile_reads_each_developers_setup_once_per_sweep(ready: World) -> None:
    for _ in range(3):
        ready.pay()
    ready.clock.advance(ready.settings.reconcile_after_s + 1)
    registry_writes_before = ready.repo.calls["ensure_developer"]

    assert ready.gateway.reconcile()["examined"] == 3
    assert ready.repo.calls["developer_setup"] == 1
    # A server-side sweep never creates registry entries.
    assert ready.repo.calls["ensure_developer"] == registry_writes_before


# ----------------------------------------------------------------------------------------------------------- logs


def test_logs_never_carry_phone_numbers_secrets_or_callback_tokens(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.daraja.verify_script.append(errors.Unprocessable("daraja_credentials_rejected", "no", param="consumer_key"))
    with pytest.raises(errors.Unprocessable):
        world.gateway.put_credentials(ALICE, CREDENTIALS)
    world.with_credentials()
    succeeded = world.pay(key="order-1")
    world.gateway.create_payment(ALICE, ORDER, "order-1")  # replay
    world.daraja.push_script.append(DarajaOutcomeUnknown())
    with pytest.raises(DarajaOutcomeUnknown):
        world.gateway.create_payment(ALICE, ORDER, "order-2")
    world.daraja.push_script.append(errors.DarajaError("daraja_rejected_request", "bad", http_status=400))
    with pytest.raises(errors.DarajaError):
        world.gateway.create_payment(ALICE, ORDER, None)
    deliver(world, succeeded, callback(succeeded["checkout_request_id"]))
    deliver(world, succeeded, callback(succeeded["checkout_request_id"]))  # ignored duplicate
    flagged = world.pay()
    deliver(world, flagged, callback(flagged["checkout_request_id"], amount=3))
    with pytest.raises(errors.PermissionDenied):
        world.gateway.handle_callback("wrong-token", callback(flagged["checkout_request_id"]), "10.0.0.9")
    queried = world.pay()
    world.daraja.script_query(queried["checkout_request_id"], query_answer(queried["checkout_request_id"], "1032"))
    world.clock.advance(world.settings.reconcile_after_s + 1)
    world.gateway.reconcile()
    world.gateway.delete_credentials(ALICE)

    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    events = [r["event"] for r in records]
    for expected in (
        "credentials_rejected",
        "stk_push_sent",
        "idempotent_replay",
        "stk_push_uncertain",
        "stk_push_rejected",
        "payment_settled",
        "settlement_ignored",
        "payment_flagged",
        "callback_rejected",
        "stk_query_sent",
        "reconcile_run",
        "credentials_deleted",
    ):
        assert expected in events
    tokens = [order.callback_url.rsplit("/", 1)[-1] for _, order in world.daraja.push_calls]
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
