"""The Python SDK against the running stack: the real functions emulator, Auth emulator and Daraja simulator.

Every call of the SDK, and every error class the real functions can produce. Not producible for real, so covered
by test_sdk_unit.py over the fake transport instead: Daraja's own rate limit (the simulator has no spike arrest),
ServerError from an api_error 5xx (no way to make the healthy functions fail),
PermissionDeniedError (403 comes only from mpesa_callback, which the SDK does not call) and 415.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from mpesa_gateway import (
    AuthenticationError,
    DarajaError,
    IdempotencyError,
    InvalidRequestError,
    NotFoundError,
    Payment,
    RateLimitError,
    WaitTimeout,
    firebase_password_token_provider,
    firebase_sign_in,
)
from mpesa_gateway import ConnectionError as GatewayConnectionError
from sdk_fakes import FakeClock
from sdk_stack import (
    API_KEY,
    AUTH_URL,
    PASSWORD,
    RecordingAdapter,
    SimulatorApp,
    gateway,
    register_app,
    set_credentials,
    set_fault,
    set_scenario,
    sign_up,
    simulator_callbacks,
    simulator_requests,
    unique_phone,
)

pytestmark = pytest.mark.usefixtures("stack")


def configured_developer() -> tuple[str, SimulatorApp]:
    """A new developer whose Daraja credentials are stored; returns their ID token and app."""
    user = sign_up()
    app = register_app()
    set_credentials(gateway(user.id_token), app)
    return user.id_token, app


# ------------------------------------------------------------------------------------------- credentials
def test_credentials_set_get_delete() -> None:
    user = sign_up()
    gw = gateway(user.id_token)
    with pytest.raises(NotFoundError) as missing:
        gw.credentials.get()
    assert missing.value.code == "credentials_not_configured"
    assert missing.value.http_status == 404

    app = register_app()
    stored = gw.credentials.set(
        environment="sandbox",
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
        shortcode=app.shortcode,
        passkey=app.passkey,
    )
    assert stored.shortcode == app.shortcode
    assert stored.transaction_type == "CustomerPayBillOnline"
    assert stored.consumer_key_hint and "..." in stored.consumer_key_hint
    assert stored.consumer_key_hint != app.consumer_key
    assert stored.verified_at is not None
    for secret in (app.consumer_secret, app.passkey, app.consumer_key):
        assert secret not in repr(stored.raw)

    assert gw.credentials.get() == stored
    assert gw.credentials.delete() is True
    assert gw.credentials.delete() is False
    with pytest.raises(NotFoundError):
        gw.credentials.get()


def test_rejected_daraja_credentials_are_a_422_invalid_request() -> None:
    gw = gateway(sign_up().id_token)
    with pytest.raises(InvalidRequestError) as raised:
        gw.credentials.set(
            environment="sandbox",
            consumer_key="ck_never_registered_" + secrets.token_hex(4),
            consumer_secret="cs_wrong_" + secrets.token_hex(6),
            shortcode="600000",
            passkey="x" * 64,
        )
    assert raised.value.http_status == 422
    assert raised.value.code == "daraja_credentials_rejected"
    assert raised.value.type == "invalid_request_error"
    assert raised.value.request_id and raised.value.request_id.startswith("req_")


# ------------------------------------------------------------------------------------------------ errors
def test_a_bad_token_is_an_authentication_error() -> None:
    gw = gateway("eyJhbGciOiJub25lIn0.eyJzdWIiOiJub2JvZHkifQ.")
    with pytest.raises(AuthenticationError) as raised:
        gw.payments.list_page()
    assert raised.value.http_status == 401
    assert raised.value.type == "authentication_error"
    assert raised.value.code == "invalid_token"
    assert raised.value.request_id and raised.value.request_id.startswith("req_")


def test_a_bad_phone_is_a_400_invalid_request() -> None:
    token, _ = configured_developer()
    with pytest.raises(InvalidRequestError) as raised:
        gateway(token).payments.create("0812", 10, "INV-1", "Order 1")
    assert raised.value.http_status == 400
    assert raised.value.code == "invalid_phone"
    assert raised.value.param == "phone"


def test_unknown_payments_are_not_found() -> None:
    gw = gateway(sign_up().id_token)
    with pytest.raises(NotFoundError) as by_id:
        gw.payments.get("pay_" + secrets.token_hex(12))
    assert (by_id.value.http_status, by_id.value.code, by_id.value.param) == (404, "payment_not_found", "id")
    with pytest.raises(NotFoundError) as by_checkout:
        gw.payments.get_by_checkout_request_id("ws_CO_" + secrets.token_hex(8))
    assert by_checkout.value.param == "checkout_request_id"


def test_a_wrong_method_and_an_oversized_body_are_invalid_requests() -> None:
    gw = gateway(sign_up().id_token)
    with pytest.raises(InvalidRequestError) as wrong_method:
        gw.request("PATCH", "stk_push", json_body={})
    assert (wrong_method.value.http_status, wrong_method.value.code) == (405, "method_not_allowed")
    with pytest.raises(InvalidRequestError) as too_large:
        gw.request("PUT", "developer_credentials", json_body={"padding": "x" * 20_000})
    assert too_large.value.http_status == 413


def test_reusing_a_key_with_another_body_is_an_idempotency_error_and_the_same_body_replays() -> None:
    token, _ = configured_developer()
    gw = gateway(token)
    phone = unique_phone()
    key = "order-" + secrets.token_hex(6)
    body = {"phone": phone, "amount": 10, "account_reference": "INV-1", "description": "Order 1"}
    first = gw.request("POST", "stk_push", json_body=body, idempotency_key=key)
    assert first.status == 201 and not first.replayed

    replay = gw.request("POST", "stk_push", json_body=body, idempotency_key=key)
    assert replay.replayed
    assert replay.body["id"] == first.body["id"]

    with pytest.raises(IdempotencyError) as raised:
        gw.request("POST", "stk_push", json_body={**body, "amount": 11}, idempotency_key=key)
    assert raised.value.http_status == 409
    assert raised.value.type == "idempotency_error"
    assert raised.value.code == "idempotency_conflict"


def test_a_second_prompt_to_a_busy_payer_is_a_rate_limit_then_a_daraja_error() -> None:
    token, _ = configured_developer()
    gw = gateway(token)
    phone = unique_phone()
    set_scenario(phone, 0, delay_ms=5000)  # the payer takes 5 s to answer, so the first prompt stays open
    gw.payments.create(phone, 10, "INV-1", "First")
    # The gateway's own phone lock answers first, with a Retry-After longer than the SDK waits by default.
    with pytest.raises(RateLimitError) as limited:
        gw.payments.create(phone, 10, "INV-2", "Second")
    assert (limited.value.http_status, limited.value.code) == (429, "rate_limited")
    assert limited.value.retry_after is not None and limited.value.retry_after > 1
    assert limited.value.raw["error"]["limit"] == "phone_busy"
    # Another developer's push to the same phone reaches Daraja, which refuses a second live prompt.
    other_token, _ = configured_developer()
    with pytest.raises(DarajaError) as raised:
        gateway(other_token).payments.create(phone, 10, "INV-3", "Third")
    assert raised.value.http_status == 409
    assert raised.value.code == "payer_busy"
    assert raised.value.daraja_code == "500.001.1001"


def test_rejected_stored_credentials_are_a_daraja_error_and_not_retried() -> None:
    user = sign_up()
    app = register_app()
    recorder = RecordingAdapter()
    gw = gateway(user.id_token, session=recorder.session())
    set_credentials(gw, app, passkey="0" * 64)  # the key and secret are right; the passkey is not
    with pytest.raises(DarajaError) as raised:
        gw.payments.create(unique_phone(), 10, "INV-1", "Order 1")
    assert raised.value.code == "daraja_rejected_credentials"
    assert raised.value.http_status == 502
    assert raised.value.daraja_code == "500.001.1001"
    assert [r.method for r in recorder.sent] == ["PUT", "POST"]
    assert len(simulator_requests("stk_push", app.shortcode)) == 1
    # The refused push was recorded as a failed payment, and the error names it.
    assert raised.value.payment_id is not None and raised.value.payment_id.startswith("pay_")
    assert raised.value.idempotency_key == recorder.sent[1].headers["Idempotency-Key"]
    failed = gw.payments.get(raised.value.payment_id)
    assert failed.status == "failed"
    assert failed.result_code == "500.001.1001"
    assert failed.checkout_request_id is None


def test_nothing_listening_is_a_connection_error_after_the_retries() -> None:
    with socket_that_refuses() as port:
        gw = gateway("token", max_retries=2, sleep=lambda _: None)
        gw.base_url = f"http://127.0.0.1:{port}/demo/us-central1"
        with pytest.raises(GatewayConnectionError) as raised:
            gw.payments.list_page()
    assert raised.value.code == "network_error"
    assert isinstance(raised.value.__cause__, requests.ConnectionError)


@contextlib.contextmanager
def socket_that_refuses() -> Iterator[int]:
    """A port that nothing listens on: bound, never listening, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------- payments
def test_create_wait_get_and_list_payments() -> None:
    token, app = configured_developer()
    gw = gateway(token)
    phone = unique_phone()
    created = gw.payments.create(phone, 10, "INV-1", "Order 1", metadata={"order_id": "1001"})
    assert created.status == "pending"
    assert created.id.startswith("pay_")
    assert created.phone != phone and "*" in created.phone
    assert created.shortcode == app.shortcode
    assert created.metadata == {"order_id": "1001"}
    assert created.checkout_request_id

    settled = gw.payments.wait(created.id, timeout=30, poll_interval=0.3)
    assert settled.status == "succeeded"
    assert settled.result_code == "0"
    assert settled.mpesa_receipt_number
    assert settled.settled_at is not None

    assert gw.payments.get(created.id) == settled
    assert gw.payments.get_by_checkout_request_id(created.checkout_request_id) == settled
    assert [p.id for p in gw.payments.list()] == [created.id]


def test_cancelled_payments_and_status_filtered_auto_paginated_lists() -> None:
    token, _ = configured_developer()
    gw = gateway(token)
    created = [gw.payments.create(unique_phone(), amount, "INV-1", "Order") for amount in (10, 1032, 20)]
    settled = [gw.payments.wait(p.id, timeout=30, poll_interval=0.3) for p in created]
    assert [p.status for p in settled] == ["succeeded", "cancelled", "succeeded"]
    assert settled[1].result_code == "1032"

    page = gw.payments.list_page(limit=2)
    assert len(page.data) == 2 and page.has_more and page.next_page_token
    everything = list(gw.payments.list(limit=1))  # one payment per page: three pages, fetched as needed
    assert [p.id for p in everything] == [p.id for p in reversed(created)]
    assert [p.id for p in gw.payments.list(status="cancelled")] == [created[1].id]
    with pytest.raises(InvalidRequestError) as bad_status:
        gw.payments.list_page(status="paid")
    assert bad_status.value.code == "invalid_status"


def test_a_lost_callback_is_settled_by_waiting_through_the_query_fallback() -> None:
    token, _ = configured_developer()
    gw = gateway(token)
    phone = unique_phone()
    set_scenario(phone, 0, delay_ms=200, callbacks=0)
    created = gw.payments.create(phone, 10, "INV-1", "Lost cb")
    settled = gw.payments.wait(created.id, timeout=30, poll_interval=0.5)
    assert settled.status == "succeeded"
    assert created.checkout_request_id is not None
    assert simulator_callbacks(created.checkout_request_id) == []


def test_wait_times_out_with_the_last_pending_payment() -> None:
    token, _ = configured_developer()
    gw = gateway(token)
    phone = unique_phone()
    set_scenario(phone, 0, delay_ms=8000)
    created = gw.payments.create(phone, 10, "INV-1", "Slow payer")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        gw.payments.wait(created.id, timeout=1.0, poll_interval=0.3)
    assert time.monotonic() - started < 5
    assert isinstance(raised.value.payment, Payment)
    assert raised.value.payment.id == created.id
    assert raised.value.payment.status == "pending"


def test_another_developers_payment_is_invisible() -> None:
    amina_token, _ = configured_developer()
    brian_token, _ = configured_developer()
    amina, brian = gateway(amina_token), gateway(brian_token)
    payment = amina.payments.create(unique_phone(), 10, "INV-1", "Amina order")
    with pytest.raises(NotFoundError):
        brian.payments.get(payment.id)
    assert payment.checkout_request_id is not None
    with pytest.raises(NotFoundError):
        brian.payments.get_by_checkout_request_id(payment.checkout_request_id)
    assert payment.id not in {p.id for p in brian.payments.list()}


# ------------------------------------------------------------------------------------ retries and tokens
def test_a_retry_after_a_lost_answer_reuses_the_key_and_prompts_the_payer_once() -> None:
    token, app = configured_developer()
    recorder = RecordingAdapter(drop_first_answer_to="POST")
    gw = gateway(token, session=recorder.session())
    payment = gw.payments.create(unique_phone(), 10, "INV-1", "Retried")

    posts = [(request, answer) for request, answer in zip(recorder.sent, recorder.answers) if request.method == "POST"]
    assert recorder.dropped == 1
    assert len(posts) == 2
    (first, lost_answer), (second, replayed_answer) = posts
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert lost_answer.status_code == 201  # the gateway had pushed and answered; only the answer was lost
    assert replayed_answer.headers.get("Idempotent-Replayed") == "true"
    assert lost_answer.json()["id"] == payment.id
    assert len(simulator_requests("stk_push", app.shortcode)) == 1


def test_each_attempt_asks_the_provider_so_a_new_token_is_used() -> None:
    signed_up = sign_up()
    app = register_app()
    set_credentials(gateway(signed_up.id_token), app)
    token_a = signed_up.id_token
    # The same developer signs in again: another valid ID token for the same uid.
    time.sleep(1.1)  # emulator tokens carry iat in seconds; make sure B is a different token
    token_b = firebase_sign_in(API_KEY, signed_up.email, PASSWORD, AUTH_URL).id_token
    assert token_a != token_b

    handed_out: list[str] = []

    def provider() -> str:
        handed_out.append(token_a if not handed_out else token_b)
        return handed_out[-1]

    recorder = RecordingAdapter()
    gw = gateway(provider, session=recorder.session())
    payment = gw.payments.create(unique_phone(), 10, "INV-1", "Token A")
    assert gw.payments.get(payment.id).id == payment.id  # token B is accepted as the same developer
    assert handed_out == [token_a, token_b]
    assert [r.headers["Authorization"] for r in recorder.sent] == [f"Bearer {token_a}", f"Bearer {token_b}"]


def test_the_password_provider_signs_in_and_refreshes_against_the_auth_emulator() -> None:
    user = sign_up()
    clock = FakeClock()
    provider = firebase_password_token_provider(API_KEY, user.email, PASSWORD, AUTH_URL, clock=clock)
    recorder = RecordingAdapter()
    gw = gateway(provider, session=recorder.session())

    gw.credentials.delete()
    gw.credentials.delete()
    assert (provider.sign_ins, provider.refreshes, provider.uid) == (1, 0, user.uid)
    clock.now += 3600  # past the refresh point, as if an hour went by
    time.sleep(1.1)  # emulator tokens are unsigned and carry iat in whole seconds: make the new one differ
    gw.credentials.delete()
    assert (provider.sign_ins, provider.refreshes) == (1, 1)
    first, second, third = (r.headers["Authorization"] for r in recorder.sent)
    assert first == second != third
    assert all(answer.status_code == 200 for answer in recorder.answers)


# ------------------------------------------------------------------------ 202: the push's outcome is unknown
def test_a_push_daraja_never_answered_is_a_202_payment_that_its_callback_settles() -> None:
    token, app = configured_developer()
    recorder = RecordingAdapter()
    gw = gateway(token, session=recorder.session())
    phone = unique_phone()
    set_fault(phone, "accept_then_500")  # Daraja prompts the payer, then its HTTP answer is a 500
    key = "order-" + secrets.token_hex(6)

    created = gw.payments.create(phone, 10, "INV-1", "Unknown", idempotency_key=key)
    assert [answer.status_code for answer in recorder.answers] == [202]  # returned, not retried
    assert created.status == "pending"
    assert created.outcome_unknown
    assert "outcome_unknown" in created.flags
    assert created.checkout_request_id is None
    assert created.merchant_request_id is None

    again = gw.payments.create(phone, 10, "INV-1", "Unknown", idempotency_key=key)
    assert again.id == created.id
    assert recorder.answers[-1].headers.get("Idempotent-Replayed") == "true"
    assert recorder.answers[-1].status_code in (201, 202)
    assert len(simulator_requests("stk_push", app.shortcode)) == 1  # the payer was prompted once

    settled = gw.payments.wait(created.id, timeout=30, poll_interval=0.3)
    assert settled.status == "succeeded"
    assert settled.mpesa_receipt_number
    assert settled.checkout_request_id is not None
    assert settled.is_settled


def test_a_retry_while_the_first_push_still_runs_honours_retry_after_and_keeps_the_key() -> None:
    token, app = configured_developer()
    # The first attempt gives up after 0.5 s while the gateway still waits seconds for Daraja's late answer.
    recorder = RecordingAdapter(first_post_read_timeout=0.5)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    gw = gateway(token, session=recorder.session(), sleep=sleep)
    phone = unique_phone()
    set_fault(phone, "accept_then_hang", answer_delay_ms=10_000)
    payment = gw.payments.create(phone, 10, "INV-1", "Slow Daraja")

    posts = [r for r in recorder.attempted if r.method == "POST"]
    assert len(posts) >= 3  # the timed-out one, at least one told to wait, the replayed one
    assert len({r.headers["Idempotency-Key"] for r in posts}) == 1
    in_progress = [a for a in recorder.answers if a.status_code == 409]
    assert in_progress, "the retry arrived while the first request still ran"
    assert all(a.json()["error"]["code"] == "idempotency_in_progress" for a in in_progress)
    retry_afters = [float(a.headers["Retry-After"]) for a in in_progress]
    assert all(1 <= value <= 5 for value in retry_afters)
    assert retry_afters == sleeps[-len(retry_afters):]  # waited exactly as told
    final = recorder.answers[-1]
    assert final.status_code in (201, 202)
    assert final.headers.get("Idempotent-Replayed") == "true"
    assert final.json()["id"] == payment.id
    assert len(simulator_requests("stk_push", app.shortcode)) == 1
