"""Tests of the Daraja sandbox simulator, driven over HTTP like the gateway drives the real sandbox.

The simulator runs in-process on a free port; a tiny HTTP listener on another free port receives its callbacks.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from devservers.daraja_simulator import (
    PRESET_APP,
    DarajaSimulator,
    SimulatorConfig,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

DELAY_MS = 100
WAIT_SECONDS = 3.0
PHONE = "254708374149"
PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
QUERY_PATH = "/mpesa/stkpushquery/v1/query"


# ---------------------------------------------------------------------------------------------- callback listener


class CallbackListener:
    """Collects the JSON bodies POSTed to it. Paths starting with /fail answer 500."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.condition = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or "0")
                body = json.loads(self.rfile.read(length))
                with listener.condition:
                    listener.received.append((self.path, body))
                    listener.condition.notify_all()
                status = 500 if self.path.startswith("/fail") else 200
                data = json.dumps({"ResultCode": 0, "ResultDesc": "Accepted"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, prefix: str = "/cb") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{prefix}/{uuid.uuid4().hex}"

    def bodies_for(self, url: str) -> list[Any]:
        path = url.split(str(self.server.server_address[1]), 1)[1]
        with self.condition:
            return [body for received_path, body in self.received if received_path == path]

    def wait_for(self, url: str, count: int = 1) -> list[Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        with self.condition:
            while len(self.bodies_for(url)) < count and time.monotonic() < deadline:
                self.condition.wait(timeout=0.05)
        return self.bodies_for(url)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def simulator() -> Iterator[DarajaSimulator]:
    with DarajaSimulator(port=0, config=SimulatorConfig(callback_delay_ms=DELAY_MS), quiet=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def listener() -> Iterator[CallbackListener]:
    collector = CallbackListener()
    yield collector
    collector.close()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # never send localhost traffic through a proxy from the environment
    yield session
    session.close()


@pytest.fixture(autouse=True)
def fresh_simulator(simulator: DarajaSimulator, http: requests.Session) -> None:
    assert http.delete(f"{simulator.url}/simulator/state", timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------- helpers


def nairobi_timestamp(now: datetime | None = None) -> str:
    return ((now or datetime.now(UTC)) + timedelta(hours=3)).strftime("%Y%m%d%H%M%S")


def password(timestamp: str, shortcode: str = PRESET_APP.shortcode, passkey: str = PRESET_APP.passkey) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


def mint_token(
    sim: DarajaSimulator,
    http: requests.Session,
    key: str = PRESET_APP.consumer_key,
    secret: str = PRESET_APP.consumer_secret,
) -> str:
    answer = http.get(
        f"{sim.url}/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=(key, secret), timeout=5
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def push_body(callback_url: str, **overrides: Any) -> dict[str, Any]:
    timestamp = nairobi_timestamp()
    body: dict[str, Any] = {
        "BusinessShortCode": PRESET_APP.shortcode,
        "Password": password(timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1,
        "PartyA": PHONE,
        "PartyB": PRESET_APP.shortcode,
        "PhoneNumber": PHONE,
        "CallBackURL": callback_url,
        "AccountReference": "INV-1",
        "TransactionDesc": "Order 1",
    }
    body.update(overrides)
    return body


def post(http: requests.Session, url: str, token: str | None, body: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if isinstance(body, (bytes, str)):
        return http.post(url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=5)
    return http.post(url, json=body, headers=headers, timeout=5)


def push(sim: DarajaSimulator, http: requests.Session, token: str | None, body: Any) -> requests.Response:
    return post(http, f"{sim.url}{PUSH_PATH}", token, body)


def query(
    sim: DarajaSimulator, http: requests.Session, token: str, checkout_request_id: str, **overrides: Any
) -> requests.Response:
    timestamp = nairobi_timestamp()
    body = {
        "BusinessShortCode": PRESET_APP.shortcode,
        "Password": password(timestamp),
        "Timestamp": timestamp,
        "CheckoutRequestID": checkout_request_id,
        **overrides,
    }
    return post(http, f"{sim.url}{QUERY_PATH}", token, body)


def add_scenario(sim: DarajaSimulator, http: requests.Session, **scenario: Any) -> None:
    answer = http.post(f"{sim.url}/simulator/scenarios", json=scenario, timeout=5)
    assert answer.status_code == 201, answer.text


def callback_attempts(sim: DarajaSimulator, http: requests.Session, count: int, **filters: str) -> list[Any]:
    """The simulator's record of callback deliveries, once it holds at least count of them."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        attempts = http.get(f"{sim.url}/simulator/callbacks", params=filters, timeout=5).json()["callbacks"]
        if len(attempts) >= count or time.monotonic() > deadline:
            return list(attempts)
        time.sleep(0.02)


def assert_daraja_error(answer: requests.Response, status: int, code: str, message: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert body["errorCode"] == code
    assert body["errorMessage"] == message
    assert body["requestId"]


def stk_callback(body: Any) -> dict[str, Any]:
    assert set(body) == {"Body"} and set(body["Body"]) == {"stkCallback"}
    return dict(body["Body"]["stkCallback"])


def ledger(sim: DarajaSimulator, http: requests.Session, **filters: str) -> list[dict[str, Any]]:
    answer = http.get(f"{sim.url}/simulator/pushes", params=filters, timeout=5)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["pushes"])


def ledger_until(
    sim: DarajaSimulator, http: requests.Session, ready: Callable[[list[dict[str, Any]]], bool], **filters: str
) -> list[dict[str, Any]]:
    """The ledger once ready(entries) holds (or as it is after WAIT_SECONDS, for the assertions to judge)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        entries = ledger(sim, http, **filters)
        if ready(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


def settled(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    """Ready when count prompts are listed and each has had all its planned callbacks recorded."""
    return lambda entries: (
        len(entries) == count and all(entry["callbacks_sent"] == entry["callbacks_planned"] for entry in entries)
    )


def logged_requests(sim: DarajaSimulator, http: requests.Session, **filters: str) -> list[dict[str, Any]]:
    return list(http.get(f"{sim.url}/simulator/requests", params=filters, timeout=5).json()["requests"])


def register_app(sim: DarajaSimulator, http: requests.Session, key: str, shortcode: str) -> dict[str, str]:
    app = {"consumer_key": key, "consumer_secret": f"{key}-secret", "shortcode": shortcode, "passkey": f"{key}-pass"}
    assert http.post(f"{sim.url}/simulator/apps", json=app, timeout=5).status_code == 201
    return app


def app_fields(app: dict[str, str]) -> dict[str, str]:
    """Push or query body fields signed for a registered app rather than the preset one."""
    timestamp = nairobi_timestamp()
    return {
        "BusinessShortCode": app["shortcode"],
        "Timestamp": timestamp,
        "Password": password(timestamp, app["shortcode"], app["passkey"]),
    }


# ---------------------------------------------------------------------------------------------- OAuth


def test_oauth_returns_a_token_with_a_string_expiry(simulator: DarajaSimulator, http: requests.Session) -> None:
    answer = http.get(
        f"{simulator.url}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(PRESET_APP.consumer_key, PRESET_APP.consumer_secret),
        timeout=5,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == "3599"
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 20


def test_oauth_rejects_a_bad_grant_type(simulator: DarajaSimulator, http: requests.Session) -> None:
    answer = http.get(
        f"{simulator.url}/oauth/v1/generate",
        params={"grant_type": "password"},
        auth=(PRESET_APP.consumer_key, PRESET_APP.consumer_secret),
        timeout=5,
    )
    assert_daraja_error(answer, 400, "400.008.02", "Invalid grant type passed")


@pytest.mark.parametrize(
    "auth",
    [(PRESET_APP.consumer_key, "wrong-secret"), ("unknown-key", PRESET_APP.consumer_secret), None],
    ids=["wrong-secret", "unknown-key", "no-credentials"],
)
def test_oauth_rejects_bad_credentials(
    simulator: DarajaSimulator, http: requests.Session, auth: tuple[str, str] | None
) -> None:
    answer = http.get(
        f"{simulator.url}/oauth/v1/generate", params={"grant_type": "client_credentials"}, auth=auth, timeout=5
    )
    assert_daraja_error(answer, 400, "400.008.01", "Invalid Authentication passed")


def test_expired_tokens_are_rejected_and_a_new_one_works(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    token = mint_token(simulator, http)
    assert http.post(f"{simulator.url}/simulator/expire-tokens", timeout=5).json() == {"expired": 1}
    stale = push(simulator, http, token, push_body(listener.url()))
    assert_daraja_error(stale, 404, "404.001.03", "Invalid Access Token")
    fresh = push(simulator, http, mint_token(simulator, http), push_body(listener.url()))
    assert fresh.status_code == 200, fresh.text


def test_tokens_expire_after_the_configured_ttl(http: requests.Session, listener: CallbackListener) -> None:
    config = SimulatorConfig(token_ttl=0.3, callback_delay_ms=DELAY_MS)
    with DarajaSimulator(port=0, config=config, quiet=True) as short_lived:
        token = mint_token(short_lived, http)
        assert push(short_lived, http, token, push_body(listener.url())).status_code == 200
        time.sleep(0.4)
        late = push(short_lived, http, token, push_body(listener.url(), PhoneNumber="254708374150"))
        assert_daraja_error(late, 404, "404.001.03", "Invalid Access Token")


def test_latency_delays_every_daraja_answer_but_not_the_admin_routes(
    http: requests.Session, listener: CallbackListener
) -> None:
    latency_s = 0.2
    config = SimulatorConfig(callback_delay_ms=DELAY_MS, latency_ms=int(latency_s * 1000))
    with DarajaSimulator(port=0, config=config, quiet=True) as slow:

        def timed(call: Any) -> tuple[float, Any]:
            started = time.perf_counter()
            answer = call()
            return time.perf_counter() - started, answer

        minted_in, token = timed(lambda: mint_token(slow, http))
        pushed_in, pushed = timed(lambda: push(slow, http, token, push_body(listener.url())))
        queried_in, queried = timed(lambda: query(slow, http, token, pushed.json()["CheckoutRequestID"]))
        refused_in, refused = timed(lambda: push(slow, http, "not-a-token", push_body(listener.url())))
        admin_in, health = timed(lambda: http.get(f"{slow.url}/healthz", timeout=5))
    assert pushed.status_code == 200, pushed.text
    assert queried.status_code == 200, queried.text  # the payer answered (DELAY_MS) while the query waited
    assert refused.status_code == 404  # error answers wait too, as Daraja's do
    assert health.status_code == 200
    assert min(minted_in, pushed_in, queried_in, refused_in) >= latency_s
    assert admin_in < latency_s


def test_latency_defaults_to_zero_and_is_set_from_the_command_line() -> None:
    from devservers.daraja_simulator import parse_args

    assert SimulatorConfig().latency_ms == 0
    assert parse_args([]).latency_ms == 0
    assert parse_args(["--latency-ms", "300"]).latency_ms == 300


# ---------------------------------------------------------------------------------------------- STK push


def test_push_succeeds_and_the_callback_has_darajas_exact_shape(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    url = listener.url()
    answer = push(simulator, http, mint_token(simulator, http), push_body(url, Amount=10))
    assert answer.status_code == 200, answer.text
    sync = answer.json()
    assert list(sync) == [
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    ]
    assert sync["ResponseCode"] == "0"
    assert sync["ResponseDescription"] == "Success. Request accepted for processing"
    assert sync["CustomerMessage"] == "Success. Request accepted for processing"
    assert sync["CheckoutRequestID"].startswith("ws_CO_") and sync["CheckoutRequestID"][6:].isdigit()

    bodies = listener.wait_for(url)
    assert len(bodies) == 1
    callback = stk_callback(bodies[0])
    assert callback["MerchantRequestID"] == sync["MerchantRequestID"]
    assert callback["CheckoutRequestID"] == sync["CheckoutRequestID"]
    assert callback["ResultCode"] == 0
    assert callback["ResultDesc"] == "The service request is processed successfully."
    items = callback["CallbackMetadata"]["Item"]
    assert [item["Name"] for item in items] == [
        "Amount",
        "MpesaReceiptNumber",
        "Balance",
        "TransactionDate",
        "PhoneNumber",
    ]
    values = {item["Name"]: item.get("Value") for item in items}
    assert values["Amount"] == 10.0 and isinstance(values["Amount"], float)
    receipt = values["MpesaReceiptNumber"]
    assert isinstance(receipt, str) and len(receipt) == 10 and receipt.isalnum() and receipt == receipt.upper()
    assert "Value" not in items[2]
    assert isinstance(values["TransactionDate"], int)
    sent_at = datetime.strptime(str(values["TransactionDate"]), "%Y%m%d%H%M%S")
    nairobi_now = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=3)
    assert abs((nairobi_now - sent_at).total_seconds()) < 60
    assert values["PhoneNumber"] == 254708374149


def test_receipts_are_unique(simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener) -> None:
    token = mint_token(simulator, http)
    urls = [listener.url() for _ in range(5)]
    for index, url in enumerate(urls):
        assert push(simulator, http, token, push_body(url, PhoneNumber=f"25470000000{index}")).status_code == 200
    receipts = {stk_callback(listener.wait_for(url)[0])["CallbackMetadata"]["Item"][1]["Value"] for url in urls}
    assert len(receipts) == 5


def test_push_without_a_bearer_token_is_rejected(simulator: DarajaSimulator, http: requests.Session) -> None:
    assert_daraja_error(
        push(simulator, http, None, push_body("https://example.test/cb")), 404, "404.001.03", "Invalid Access Token"
    )
    assert_daraja_error(
        push(simulator, http, "not-a-token", push_body("https://example.test/cb")),
        404,
        "404.001.03",
        "Invalid Access Token",
    )


def test_push_with_invalid_json_is_rejected(simulator: DarajaSimulator, http: requests.Session) -> None:
    answer = push(simulator, http, mint_token(simulator, http), b"{not json")
    assert_daraja_error(answer, 400, "400.002.02", "Bad Request - Invalid JSON")


def test_push_with_a_wrong_password_is_rejected(simulator: DarajaSimulator, http: requests.Session) -> None:
    timestamp = nairobi_timestamp()
    body = push_body("https://example.test/cb", Timestamp=timestamp, Password=password(timestamp, passkey="wrong"))
    answer = push(simulator, http, mint_token(simulator, http), body)
    assert_daraja_error(answer, 500, "500.001.1001", "Wrong credentials")


def test_push_with_a_utc_timestamp_is_rejected(simulator: DarajaSimulator, http: requests.Session) -> None:
    utc_timestamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")  # the classic bug: forgot Nairobi's +3h
    body = push_body("https://example.test/cb", Timestamp=utc_timestamp, Password=password(utc_timestamp))
    answer = push(simulator, http, mint_token(simulator, http), body)
    assert_daraja_error(answer, 400, "400.002.02", "Bad Request - Invalid Timestamp")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"BusinessShortCode": "1234"}, "BusinessShortCode"),
        ({"BusinessShortCode": "600000"}, "BusinessShortCode"),  # well-formed but not the token's app
        ({"Timestamp": "2024-01-01 10:00"}, "Timestamp"),
        ({"TransactionType": "CustomerPayBill"}, "TransactionType"),
        ({"Amount": 1.5}, "Amount"),
        ({"Amount": "1.5"}, "Amount"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": 150_001}, "Amount"),
        ({"PartyA": "0712345678"}, "PartyA"),
        ({"PartyB": "12"}, "PartyB"),
        ({"PhoneNumber": "0712345678"}, "PhoneNumber"),
        ({"PhoneNumber": "254912345678"}, "PhoneNumber"),
        ({"CallBackURL": "ftp://example.test/cb"}, "CallBackURL"),
        ({"CallBackURL": "https://example.test/c b"}, "CallBackURL"),
        ({"AccountReference": "A" * 13}, "AccountReference"),
        ({"TransactionDesc": "D" * 14}, "TransactionDesc"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else str(value),
)
def test_push_field_rules(
    simulator: DarajaSimulator, http: requests.Session, overrides: dict[str, Any], field: str
) -> None:
    answer = push(simulator, http, mint_token(simulator, http), push_body("https://example.test/cb", **overrides))
    assert_daraja_error(answer, 400, "400.002.02", f"Bad Request - Invalid {field}")


def test_push_accepts_values_at_the_limits(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    token = mint_token(simulator, http)
    accepted: list[dict[str, Any]] = [
        {"Amount": 150_000, "PhoneNumber": "254712000001"},
        {"Amount": "25", "PhoneNumber": "254112000002", "PartyA": "254112000002"},
        {"AccountReference": "A" * 12, "TransactionDesc": "D" * 13, "PhoneNumber": "254712000003"},
        {"BusinessShortCode": 174379, "PhoneNumber": 254712000004, "TransactionType": "CustomerBuyGoodsOnline"},
    ]
    for overrides in accepted:
        answer = push(simulator, http, token, push_body(listener.url(), **overrides))
        assert answer.status_code == 200, (overrides, answer.text)


def test_a_second_prompt_to_a_busy_phone_cannot_lock_the_subscriber(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    token = mint_token(simulator, http)
    assert push(simulator, http, token, push_body(listener.url())).status_code == 200
    busy = push(simulator, http, token, push_body(listener.url()))
    assert_daraja_error(
        busy,
        500,
        "500.001.1001",
        "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    )
    time.sleep(DELAY_MS / 1000 + 0.05)  # the payer answered: the phone is free again
    assert push(simulator, http, token, push_body(listener.url())).status_code == 200


# ---------------------------------------------------------------------------------------------- outcomes


def test_scenario_cancelled_by_user(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=1032, delay_ms=50)
    url = listener.url()
    sync = push(simulator, http, mint_token(simulator, http), push_body(url)).json()
    callback = stk_callback(listener.wait_for(url)[0])
    assert callback == {
        "MerchantRequestID": sync["MerchantRequestID"],
        "CheckoutRequestID": sync["CheckoutRequestID"],
        "ResultCode": 1032,
        "ResultDesc": "Request cancelled by user",
    }


def test_a_scenario_is_used_once(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=2001, delay_ms=50)
    token = mint_token(simulator, http)
    first, second = listener.url(), listener.url()
    assert push(simulator, http, token, push_body(first)).status_code == 200
    assert stk_callback(listener.wait_for(first)[0])["ResultCode"] == 2001
    time.sleep(0.05)
    assert push(simulator, http, token, push_body(second)).status_code == 200
    assert stk_callback(listener.wait_for(second)[0])["ResultCode"] == 0


def test_lost_callback_still_answers_the_query(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=0, delay_ms=50, callbacks=0)
    url = listener.url()
    token = mint_token(simulator, http)
    checkout_id = push(simulator, http, token, push_body(url)).json()["CheckoutRequestID"]
    time.sleep(0.3)
    assert listener.bodies_for(url) == []
    answer = query(simulator, http, token, checkout_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ResultCode"] == "0"
    assert http.get(f"{simulator.url}/simulator/callbacks", timeout=5).json() == {"callbacks": []}


def test_duplicate_callbacks_send_the_same_body_twice(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=0, delay_ms=50, callbacks=2)
    url = listener.url()
    checkout_id = push(simulator, http, mint_token(simulator, http), push_body(url)).json()["CheckoutRequestID"]
    bodies = listener.wait_for(url, count=2)
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    attempts = callback_attempts(simulator, http, count=2, checkout_request_id=checkout_id)
    assert [(attempt["attempt"], attempt["status"], attempt["url"]) for attempt in attempts] == [
        (1, 200, url),
        (2, 200, url),
    ]


def test_string_result_codes_are_sent_raw(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code="SFC_IC0003", delay_ms=50)
    url = listener.url()
    push(simulator, http, mint_token(simulator, http), push_body(url))
    callback = stk_callback(listener.wait_for(url)[0])
    assert callback["ResultCode"] == "SFC_IC0003"
    assert "CallbackMetadata" not in callback


@pytest.mark.parametrize(
    ("amount", "result_code", "result_desc"),
    [
        (1, 0, "The service request is processed successfully."),
        (1111, 1, "The balance is insufficient for the transaction."),
        (1032, 1032, "Request cancelled by user"),
        (1037, 1037, "DS timeout user cannot be reached"),
        (2001, 2001, "The initiator information is invalid."),
        (1019, 1019, "Transaction has expired"),
    ],
)
def test_magic_amounts_choose_the_outcome(
    simulator: DarajaSimulator,
    http: requests.Session,
    listener: CallbackListener,
    amount: int,
    result_code: int,
    result_desc: str,
) -> None:
    url = listener.url()
    push(simulator, http, mint_token(simulator, http), push_body(url, Amount=amount))
    callback = stk_callback(listener.wait_for(url)[0])
    assert (callback["ResultCode"], callback["ResultDesc"]) == (result_code, result_desc)
    assert ("CallbackMetadata" in callback) == (result_code == 0)


def test_callback_delivery_failures_are_recorded_without_retry(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    token = mint_token(simulator, http)
    failing = listener.url("/fail")
    push(simulator, http, token, push_body(failing))
    push(simulator, http, token, push_body("http://127.0.0.1:9/unreachable", PhoneNumber="254708374150"))
    attempts = callback_attempts(simulator, http, count=2)
    by_url = {attempt["url"]: attempt for attempt in attempts}
    assert len(attempts) == 2
    assert by_url[failing]["status"] == 500 and by_url[failing]["error"] is None
    unreachable = by_url["http://127.0.0.1:9/unreachable"]
    assert unreachable["status"] is None and unreachable["error"]


# ---------------------------------------------------------------------------------------------- STK query


def test_query_says_processing_until_the_payer_answers(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=1032, delay_ms=300)
    token = mint_token(simulator, http)
    sync = push(simulator, http, token, push_body(listener.url())).json()
    pending = query(simulator, http, token, sync["CheckoutRequestID"])
    assert_daraja_error(pending, 500, "500.001.1001", "The transaction is being processed")
    time.sleep(0.35)
    answer = query(simulator, http, token, sync["CheckoutRequestID"])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": sync["MerchantRequestID"],
        "CheckoutRequestID": sync["CheckoutRequestID"],
        "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user",
    }


def test_query_rejects_unknown_ids_and_other_apps_pushes(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    other = {"consumer_key": "k2", "consumer_secret": "s2", "shortcode": "600111", "passkey": "pk2"}
    assert http.post(f"{simulator.url}/simulator/apps", json=other, timeout=5).status_code == 201
    token = mint_token(simulator, http)
    checkout_id = push(simulator, http, token, push_body(listener.url())).json()["CheckoutRequestID"]

    unknown = query(simulator, http, token, "ws_CO_000000000000000000")
    assert_daraja_error(unknown, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")

    other_token = mint_token(simulator, http, "k2", "s2")
    timestamp = nairobi_timestamp()
    foreign = query(
        simulator,
        http,
        other_token,
        checkout_id,
        BusinessShortCode="600111",
        Timestamp=timestamp,
        Password=password(timestamp, "600111", "pk2"),
    )
    assert_daraja_error(foreign, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")


def test_query_checks_the_password(simulator: DarajaSimulator, http: requests.Session) -> None:
    answer = query(simulator, http, mint_token(simulator, http), "ws_CO_1", Password="bad")
    assert_daraja_error(answer, 500, "500.001.1001", "Wrong credentials")


# ---------------------------------------------------------------------------------------------- faults: push answers


def test_accept_then_hang_times_a_short_client_out_yet_the_payer_is_prompted_and_called_back(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, push_answer="accept_then_hang", answer_delay_ms=2000, delay_ms=50)
    token = mint_token(simulator, http)
    url = listener.url()
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(
            f"{simulator.url}{PUSH_PATH}",
            json=push_body(url),
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.3,
        )
    callback = stk_callback(listener.wait_for(url)[0])
    assert time.monotonic() - started < 2.0  # the callback did not wait for the hanging answer

    (entry,) = ledger_until(simulator, http, settled(1), phone=PHONE)
    assert entry["checkout_request_id"] == callback["CheckoutRequestID"]
    assert (entry["push_answer"], entry["answer_delay_ms"]) == ("accept_then_hang", 2000)
    assert entry["push_http_status"] is None  # the push request is still hanging
    assert (entry["callbacks_sent"], entry["callback_statuses"]) == (1, [200])
    assert entry["payer_answered"] is True and entry["result_code"] == 0

    # The client never saw the CheckoutRequestID, but the prompt is real: querying it tells the outcome.
    answer = query(simulator, http, token, entry["checkout_request_id"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["ResultCode"] == "0"


def test_accept_then_hang_answers_200_after_the_delay_and_the_callback_does_not_wait(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, push_answer="accept_then_hang", answer_delay_ms=600, delay_ms=50)
    url = listener.url()
    started = time.perf_counter()
    answer = push(simulator, http, mint_token(simulator, http), push_body(url))
    elapsed = time.perf_counter() - started

    assert answer.status_code == 200, answer.text
    assert elapsed >= 0.6
    delivered = listener.bodies_for(url)
    assert len(delivered) == 1  # the callback arrived before the push's own answer
    assert stk_callback(delivered[0])["CheckoutRequestID"] == answer.json()["CheckoutRequestID"]
    (entry,) = ledger_until(simulator, http, lambda entries: entries[0]["push_http_status"] == 200, phone=PHONE)
    assert entry["push_http_status"] == 200


def test_accept_then_500_prompts_and_calls_back_but_answers_500_without_a_daraja_error_code(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, push_answer="accept_then_500", result_code=1032, delay_ms=50)
    token = mint_token(simulator, http)
    url = listener.url()
    answer = push(simulator, http, token, push_body(url))

    assert answer.status_code == 500
    assert answer.json() == {"fault": {"faultstring": "Internal Server Error"}}
    assert "errorCode" not in answer.text and "CheckoutRequestID" not in answer.text
    callback = stk_callback(listener.wait_for(url)[0])
    assert callback["ResultCode"] == 1032
    (entry,) = ledger_until(simulator, http, settled(1), phone=PHONE)
    assert entry["checkout_request_id"] == callback["CheckoutRequestID"]
    assert (entry["push_answer"], entry["push_http_status"]) == ("accept_then_500", 500)
    assert (entry["result_code"], entry["mpesa_receipt_number"], entry["callback_statuses"]) == (1032, None, [200])
    (logged,) = logged_requests(simulator, http, kind="stk_push")
    assert (logged["response_status"], logged["error_code"], logged["push_answer"]) == (500, None, "accept_then_500")

    time.sleep(0.05)  # the scenario was used once: the next push to the phone is answered normally
    assert push(simulator, http, token, push_body(listener.url())).status_code == 200


def test_reset_drops_the_connection_after_the_request_yet_prompts_and_calls_back(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, push_answer="reset", delay_ms=50)
    url = listener.url()
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        push(simulator, http, mint_token(simulator, http), push_body(url, Amount=25))
    assert not isinstance(caught.value, requests.exceptions.ConnectTimeout)
    assert "reset" in str(caught.value).lower() or "aborted" in str(caught.value).lower()

    callback = stk_callback(listener.wait_for(url)[0])
    assert callback["ResultCode"] == 0
    (entry,) = ledger_until(simulator, http, settled(1), phone=PHONE)
    assert entry["checkout_request_id"] == callback["CheckoutRequestID"]
    assert (entry["push_answer"], entry["push_http_status"], entry["amount"]) == ("reset", None, 25)
    assert entry["callback_statuses"] == [200]
    (logged,) = logged_requests(simulator, http, kind="stk_push")
    assert logged["response_status"] is None and logged["push_answer"] == "reset"
    assert http.get(f"{simulator.url}/healthz", timeout=5).status_code == 200  # the simulator lives on


def test_a_fault_scenario_without_a_result_code_keeps_the_amounts_outcome(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    queued = http.post(
        f"{simulator.url}/simulator/scenarios", json={"phone": PHONE, "push_answer": "accept_then_500"}, timeout=5
    )
    assert queued.status_code == 201, queued.text
    assert queued.json() == {
        "phone": PHONE,
        "result_code": None,
        "result_desc": None,
        "delay_ms": None,
        "callbacks": 1,
        "push_answer": "accept_then_500",
        "answer_delay_ms": 0,
        "query_answer": "normal",
        "queued": 1,
    }
    url = listener.url()
    assert push(simulator, http, mint_token(simulator, http), push_body(url, Amount=1111)).status_code == 500
    assert stk_callback(listener.wait_for(url)[0])["ResultCode"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"push_answer": "hang"},
        {"push_answer": "accept_then_hang"},
        {"push_answer": "accept_then_hang", "answer_delay_ms": 600_001},
        {"push_answer": "accept_then_hang", "answer_delay_ms": 1.5},
        {"push_answer": "accept_then_hang", "answer_delay_ms": True},
        {"push_answer": "accept_then_500", "answer_delay_ms": 10},
        {"query_answer": "late"},
        {"query_answer": {"ResultDesc": "no code"}},
        {"query_answer": {"ResultCode": True}},
        {"query_answer": {"ResultCode": ""}},
        {"query_answer": {"ResultCode": 1, "ResultDesc": 5}},
        {"query_answer": {"ResultCode": 1, "Extra": 1}},
        {"push_anwser": "reset"},
        {"result_code": False},
    ],
    ids=json.dumps,
)
def test_bad_fault_scenarios_are_refused_and_nothing_is_queued(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener, fault: dict[str, Any]
) -> None:
    answer = http.post(f"{simulator.url}/simulator/scenarios", json={"phone": PHONE, **fault}, timeout=5)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]
    assert push(simulator, http, mint_token(simulator, http), push_body(listener.url())).status_code == 200
    (entry,) = ledger(simulator, http, phone=PHONE)
    assert (entry["push_answer"], entry["query_answer"]) == ("normal", None)


# ---------------------------------------------------------------------------------------------- faults: query answers


def test_query_answer_being_processed_never_resolves(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=0, delay_ms=50, query_answer="being_processed")
    token = mint_token(simulator, http)
    url = listener.url()
    checkout_id = push(simulator, http, token, push_body(url)).json()["CheckoutRequestID"]
    assert stk_callback(listener.wait_for(url)[0])["ResultCode"] == 0  # the payer has answered
    answer = query(simulator, http, token, checkout_id)
    assert_daraja_error(answer, 500, "500.001.1001", "The transaction is being processed")
    (logged,) = logged_requests(simulator, http, kind="stk_query")
    assert (logged["query_answer"], logged["response_status"], logged["error_code"]) == (
        "being_processed",
        500,
        "500.001.1001",
    )
    assert ledger(simulator, http, phone=PHONE)[0]["query_answer"] == "being_processed"


@pytest.mark.parametrize(
    ("override", "expected_code", "expected_desc"),
    [
        (
            {"ResultCode": 4999, "ResultDesc": "Something Daraja never documented"},
            4999,
            "Something Daraja never documented",
        ),
        ({"ResultCode": "4999"}, "4999", "Simulated result 4999"),
        ({"ResultCode": "1032", "ResultDesc": "Request cancelled by user"}, "1032", "Request cancelled by user"),
    ],
    ids=["int-with-desc", "string-no-desc", "contradicts-the-callback"],
)
def test_query_answer_result_overrides_the_query_but_not_the_callback(
    simulator: DarajaSimulator,
    http: requests.Session,
    listener: CallbackListener,
    override: dict[str, Any],
    expected_code: int | str,
    expected_desc: str,
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=0, delay_ms=300, query_answer=override)
    token = mint_token(simulator, http)
    url = listener.url()
    sync = push(simulator, http, token, push_body(url)).json()
    answer = query(simulator, http, token, sync["CheckoutRequestID"])  # before the payer answers: still overridden
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": sync["MerchantRequestID"],
        "CheckoutRequestID": sync["CheckoutRequestID"],
        "ResultCode": expected_code,
        "ResultDesc": expected_desc,
    }
    assert stk_callback(listener.wait_for(url)[0])["ResultCode"] == 0  # the truth, unchanged
    (logged,) = logged_requests(simulator, http, kind="stk_query")
    assert logged["query_answer"] == {"ResultCode": expected_code, "ResultDesc": expected_desc}
    assert logged["result_code"] == expected_code


def test_query_answer_wrong_checkout_id_answers_about_another_push(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    add_scenario(simulator, http, phone=PHONE, result_code=1032, delay_ms=50, query_answer="wrong_checkout_id")
    token = mint_token(simulator, http)
    url = listener.url()
    sync = push(simulator, http, token, push_body(url)).json()
    listener.wait_for(url)
    asked = sync["CheckoutRequestID"]
    answers = [query(simulator, http, token, asked) for _ in range(2)]

    returned = []
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["CheckoutRequestID"] != asked and body["CheckoutRequestID"].startswith("ws_CO_")
        assert (body["ResponseCode"], body["ResultCode"], body["MerchantRequestID"]) == (
            "0",
            "1032",
            sync["MerchantRequestID"],
        )
        returned.append(body["CheckoutRequestID"])
    assert returned[0] != returned[1]  # a fresh id each time
    assert ledger(simulator, http, checkout_request_id=returned[0]) == []  # no prompt has that id
    logged = logged_requests(simulator, http, kind="stk_query")
    assert [(entry["checkout_request_id"], entry["answered_checkout_request_id"]) for entry in logged] == [
        (asked, returned[0]),
        (asked, returned[1]),
    ]


# ---------------------------------------------------------------------------------------------- ledger and query log


def test_the_ledger_has_every_field_a_test_needs_and_filters_by_app_shortcode_and_phone(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    other = register_app(simulator, http, "ledger-app", "600444")
    other_phone = "254708374150"
    add_scenario(
        simulator, http, phone=other_phone, result_code=1032, delay_ms=50, callbacks=2, push_answer="accept_then_500"
    )
    preset_token = mint_token(simulator, http)
    other_token = mint_token(simulator, http, other["consumer_key"], other["consumer_secret"])
    paid_url, failing_url = listener.url(), listener.url("/fail")
    paid = push(simulator, http, preset_token, push_body(paid_url, Amount=10, AccountReference="INV-9")).json()
    busy = push(simulator, http, preset_token, push_body(paid_url))  # refused: no prompt, so no ledger entry
    assert busy.status_code == 500
    refused = push(
        simulator,
        http,
        other_token,
        push_body(failing_url, PhoneNumber=other_phone, PartyB="600444", **app_fields(other)),
    )
    assert refused.status_code == 500

    entries = ledger_until(simulator, http, settled(2))
    assert len(entries) == 2
    receipt = stk_callback(listener.wait_for(paid_url)[0])["CallbackMetadata"]["Item"][1]["Value"]
    (mine,) = ledger(simulator, http, consumer_key=PRESET_APP.consumer_key)
    assert mine["prompted_at"].endswith("Z")
    assert {name: value for name, value in mine.items() if name != "prompted_at"} == {
        "consumer_key": PRESET_APP.consumer_key,
        "shortcode": PRESET_APP.shortcode,
        "phone": PHONE,
        "amount": 10,
        "account_reference": "INV-9",
        "callback_url": paid_url,
        "checkout_request_id": paid["CheckoutRequestID"],
        "merchant_request_id": paid["MerchantRequestID"],
        "push_answer": "normal",
        "answer_delay_ms": 0,
        "push_http_status": 200,
        "query_answer": None,
        "result_code": 0,
        "result_desc": "The service request is processed successfully.",
        "mpesa_receipt_number": receipt,
        "delay_ms": DELAY_MS,
        "payer_answered": True,
        "callbacks_planned": 1,
        "callbacks_sent": 1,
        "callback_statuses": [200],
    }

    (theirs,) = ledger(simulator, http, shortcode="600444")
    assert theirs["consumer_key"] == "ledger-app" and theirs["phone"] == other_phone
    assert (theirs["push_answer"], theirs["push_http_status"]) == ("accept_then_500", 500)
    assert (theirs["result_code"], theirs["mpesa_receipt_number"]) == (1032, None)
    assert (theirs["callbacks_planned"], theirs["callbacks_sent"], theirs["callback_statuses"]) == (2, 2, [500, 500])
    assert ledger(simulator, http, phone=other_phone) == [theirs]
    assert ledger(simulator, http, push_answer="accept_then_500") == [theirs]
    assert ledger(simulator, http, consumer_key="nobody") == []


def test_queries_are_logged_with_the_consumer_key_that_made_them(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    other = register_app(simulator, http, "query-app", "600555")
    preset_token = mint_token(simulator, http)
    other_token = mint_token(simulator, http, other["consumer_key"], other["consumer_secret"])
    own = push(simulator, http, preset_token, push_body(listener.url())).json()["CheckoutRequestID"]
    theirs = push(
        simulator,
        http,
        other_token,
        push_body(listener.url(), PhoneNumber="254708374150", PartyB="600555", **app_fields(other)),
    ).json()["CheckoutRequestID"]
    query(simulator, http, preset_token, own)
    query(simulator, http, other_token, theirs, **app_fields(other))
    query(simulator, http, "not-a-token", own)

    (preset_query,) = logged_requests(simulator, http, kind="stk_query", consumer_key=PRESET_APP.consumer_key)
    assert (preset_query["checkout_request_id"], preset_query["shortcode"]) == (own, PRESET_APP.shortcode)
    (other_query,) = logged_requests(simulator, http, kind="stk_query", consumer_key="query-app")
    assert (other_query["checkout_request_id"], other_query["shortcode"]) == (theirs, "600555")
    anonymous = [entry for entry in logged_requests(simulator, http, kind="stk_query") if entry["consumer_key"] is None]
    assert [(entry["checkout_request_id"], entry["error_code"]) for entry in anonymous] == [(None, "404.001.03")]
    minted = logged_requests(simulator, http, kind="oauth")
    assert sorted(entry["consumer_key"] for entry in minted) == sorted([PRESET_APP.consumer_key, "query-app"])
    (pushed,) = logged_requests(simulator, http, kind="stk_push", consumer_key="query-app")
    assert pushed["checkout_request_id"] == theirs


# ---------------------------------------------------------------------------------------------- admin


def test_registered_apps_can_push_with_their_own_shortcode(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    app = {"consumer_key": "dev-2", "consumer_secret": "secret-2", "shortcode": "600222", "passkey": "pass-2"}
    assert http.post(f"{simulator.url}/simulator/apps", json=app, timeout=5).status_code == 201
    token = mint_token(simulator, http, "dev-2", "secret-2")
    timestamp = nairobi_timestamp()
    own = push_body(
        listener.url(),
        BusinessShortCode="600222",
        PartyB="600222",
        Timestamp=timestamp,
        Password=password(timestamp, "600222", "pass-2"),
    )
    assert push(simulator, http, token, own).status_code == 200
    preset_shortcode = push(simulator, http, token, push_body(listener.url(), PhoneNumber="254708374150"))
    assert_daraja_error(preset_shortcode, 400, "400.002.02", "Bad Request - Invalid BusinessShortCode")


def test_register_app_requires_every_field(simulator: DarajaSimulator, http: requests.Session) -> None:
    answer = http.post(f"{simulator.url}/simulator/apps", json={"consumer_key": "k"}, timeout=5)
    assert answer.status_code == 400
    assert "error" in answer.json()


def test_requests_are_listed_without_secrets_and_can_be_filtered(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    token = mint_token(simulator, http)
    checkout_id = push(simulator, http, token, push_body(listener.url(), Amount=7)).json()["CheckoutRequestID"]
    push(simulator, http, token, push_body(listener.url(), Amount=1.5))
    query(simulator, http, token, checkout_id)

    everything = http.get(f"{simulator.url}/simulator/requests", timeout=5)
    assert [entry["kind"] for entry in everything.json()["requests"]] == ["oauth", "stk_push", "stk_push", "stk_query"]
    text = everything.text
    assert PRESET_APP.passkey not in text and PRESET_APP.consumer_secret not in text and "Password" not in text

    pushes = http.get(
        f"{simulator.url}/simulator/requests", params={"kind": "stk_push", "shortcode": "174379"}, timeout=5
    ).json()["requests"]
    assert len(pushes) == 2
    accepted, rejected = pushes
    assert accepted["checkout_request_id"] == checkout_id
    assert (accepted["phone"], accepted["amount"], accepted["response_status"]) == (PHONE, 7, 200)
    assert (rejected["response_status"], rejected["error_code"]) == (400, "400.002.02")


def test_reset_forgets_everything(
    simulator: DarajaSimulator, http: requests.Session, listener: CallbackListener
) -> None:
    app = {"consumer_key": "dev-3", "consumer_secret": "secret-3", "shortcode": "600333", "passkey": "pass-3"}
    http.post(f"{simulator.url}/simulator/apps", json=app, timeout=5)
    token = mint_token(simulator, http)
    add_scenario(simulator, http, phone="254708374150", result_code=1032)
    url = listener.url()
    push(simulator, http, token, push_body(url))

    assert http.delete(f"{simulator.url}/simulator/state", timeout=5).json() == {"reset": True}

    assert http.get(f"{simulator.url}/simulator/requests", timeout=5).json() == {"requests": []}
    assert_daraja_error(push(simulator, http, token, push_body(url)), 404, "404.001.03", "Invalid Access Token")
    bad_app = http.get(
        f"{simulator.url}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=("dev-3", "secret-3"),
        timeout=5,
    )
    assert bad_app.status_code == 400
    fresh = mint_token(simulator, http)  # the preset app is back
    other_url = listener.url()
    push(simulator, http, fresh, push_body(other_url, PhoneNumber="254708374150"))
    assert stk_callback(listener.wait_for(other_url)[0])["ResultCode"] == 0  # the scenario was forgotten
    assert listener.bodies_for(url) == []  # the pending callback was dropped


def test_health(simulator: DarajaSimulator, http: requests.Session) -> None:
    answer = http.get(f"{simulator.url}/healthz", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_prints_its_address_and_exits_cleanly_on_sigterm(http: requests.Session) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devservers.daraja_simulator", "--port", "0", "--quiet"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("daraja simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert http.get(f"{url}/healthz", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
