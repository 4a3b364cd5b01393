"""DarajaClient against the Daraja simulator (started in-process on a free port) and, for the failures the simulator
cannot produce, a tiny scripted server: token caching and single flight, the one re-mint, the error mapping, and
timeouts that must tell "nothing was sent" from "the payer may have been prompted"."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from devservers.daraja_simulator import PRESET_APP, DarajaSimulator
from gateway import errors
from gateway.daraja import (
    DarajaApp,
    DarajaClient,
    DarajaOutcomeUnknown,
    StkPushAccepted,
    StkPushOrder,
    StkQueryAnswer,
    _lifetime,
)
from gateway.secrets import DarajaSecret
from gateway.settings import Settings
from scripts import stack_admin

CALLBACK_URL = "http://127.0.0.1:1/callback"  # refused at once: these tests do not look at callbacks
OAUTH = "/oauth/v1/generate"
PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"
_phones = itertools.count(1)


@pytest.fixture(scope="module")
def simulator() -> Iterator[DarajaSimulator]:
    with DarajaSimulator(port=0, quiet=True) as running:
        yield running


@pytest.fixture
def sim(simulator: DarajaSimulator) -> DarajaSimulator:
    simulator.state.reset()
    return simulator


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(project_id="demo-test", daraja_sandbox_url=url, **overrides)


class CountingSession(requests.Session):
    """A plain requests.Session that counts the OAuth requests it sends: the client's token mints, seen from outside
    (DarajaClient keeps no counter of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self._count_lock = threading.Lock()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        path = urlsplit(url.decode() if isinstance(url, bytes) else url).path
        if path == OAUTH:
            with self._count_lock:
                self.requests += 1
        return super().request(method, url, *args, **kwargs)


def counted_client(settings: Settings, **kwargs: Any) -> tuple[DarajaClient, CountingSession]:
    """A DarajaClient whose one HTTP session counts OAuth requests."""
    session = CountingSession()
    return DarajaClient(settings, session_factory=lambda: session, **kwargs), session


def preset_app(uid: str = "dev-1", passkey: str = PRESET_APP.passkey) -> DarajaApp:
    return DarajaApp(
        uid=uid,
        environment="sandbox",
        shortcode=PRESET_APP.shortcode,
        transaction_type="CustomerPayBillOnline",
        party_b=PRESET_APP.shortcode,
        secret=DarajaSecret(PRESET_APP.consumer_key, PRESET_APP.consumer_secret, passkey),
    )


def new_phone() -> str:
    return f"2547{next(_phones):08d}"


def order(phone: str | None = None, amount: int = 10) -> StkPushOrder:
    return StkPushOrder(
        amount=amount,
        phone=phone or new_phone(),
        callback_url=CALLBACK_URL,
        account_reference="INV-1",
        description="Order 1",
    )


# --------------------------------------------------------------------------------------------- credentials


def test_verify_credentials_accepts_good_keys(sim: DarajaSimulator) -> None:
    client, oauth = counted_client(settings_for(sim.url))
    client.verify_credentials("sandbox", PRESET_APP.consumer_key, PRESET_APP.consumer_secret)
    assert oauth.requests == 1


def test_verify_credentials_rejects_bad_keys(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    with pytest.raises(errors.Unprocessable) as raised:
        client.verify_credentials("sandbox", PRESET_APP.consumer_key, "not-the-secret")
    error = raised.value
    assert (error.http_status, error.code, error.param) == (422, "daraja_credentials_rejected", "consumer_key")
    assert "sandbox" in error.message
    assert "not-the-secret" not in error.message


# --------------------------------------------------------------------------------------------- STK push


def test_stk_push_is_accepted_with_a_nairobi_timestamp_and_the_right_password(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    accepted = client.stk_push(preset_app(), order())
    assert isinstance(accepted, StkPushAccepted)
    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert accepted.merchant_request_id
    assert accepted.customer_message
    pushes = stack_admin.simulator_requests("stk_push", simulator_url=sim.url)
    assert [(p["response_status"], p["amount"], p["party_b"]) for p in pushes] == [(200, 10, PRESET_APP.shortcode)]


def test_a_utc_timestamp_is_refused_by_daraja(sim: DarajaSimulator) -> None:
    # The simulator checks Timestamp against Nairobi time: this proves the check is real, and so the test above.
    wall_clock_as_if_nairobi = lambda: datetime.now(UTC) - timedelta(hours=3)  # noqa: E731
    client = DarajaClient(settings_for(sim.url), now_utc=wall_clock_as_if_nairobi)
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order())
    assert (raised.value.code, raised.value.http_status, raised.value.daraja_code) == (
        "daraja_rejected_request",
        400,
        "400.002.02",
    )
    assert "Timestamp" in raised.value.message


def test_a_hundred_pushes_mint_one_token(sim: DarajaSimulator) -> None:
    client, oauth = counted_client(settings_for(sim.url))
    app = preset_app()
    for _ in range(100):
        client.stk_push(app, order())
    assert oauth.requests == 1
    assert len(stack_admin.simulator_requests("oauth", simulator_url=sim.url)) == 1


def test_an_expired_token_is_reminted_once_and_the_push_succeeds(
    sim: DarajaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    client, oauth = counted_client(settings_for(sim.url))
    app = preset_app()
    client.stk_push(app, order())
    requests.post(f"{sim.url}/simulator/expire-tokens", timeout=5).raise_for_status()
    accepted = client.stk_push(app, order())
    assert accepted.checkout_request_id.startswith("ws_CO_")
    assert oauth.requests == 2
    statuses = [p["response_status"] for p in stack_admin.simulator_requests("stk_push", simulator_url=sim.url)]
    assert statuses == [200, 404, 200]
    client.stk_push(app, order())
    assert oauth.requests == 2, "the new token is cached"
    assert "oauth_token_rejected" in capsys.readouterr().out


def test_concurrent_first_calls_mint_one_token(sim: DarajaSimulator) -> None:
    client, oauth = counted_client(settings_for(sim.url))
    app = preset_app()
    start = threading.Barrier(8)
    results: list[object] = []

    def push() -> None:
        start.wait()
        try:
            results.append(client.stk_push(app, order()))
        except BaseException as failure:
            results.append(failure)

    threads = [threading.Thread(target=push) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8 and all(isinstance(result, StkPushAccepted) for result in results), results
    assert oauth.requests == 1
    assert len(stack_admin.simulator_requests("oauth", simulator_url=sim.url)) == 1


def test_tokens_are_cached_per_developer_environment_and_key(sim: DarajaSimulator) -> None:
    other_key = {"consumer_key": "other-key", "consumer_secret": "other-secret", "shortcode": "600100", "passkey": "pk"}
    requests.post(f"{sim.url}/simulator/apps", json=other_key, timeout=5).raise_for_status()
    client, oauth = counted_client(settings_for(sim.url))
    client.stk_push(preset_app("dev-1"), order())
    client.stk_push(preset_app("dev-2"), order())
    client.stk_push(preset_app("dev-1"), order())
    assert oauth.requests == 2, "one token per developer"
    rotated = DarajaApp(
        uid="dev-1",
        environment="sandbox",
        shortcode="600100",
        transaction_type="CustomerPayBillOnline",
        party_b="600100",
        secret=DarajaSecret("other-key", "other-secret", "pk"),
    )
    client.stk_push(rotated, order())
    assert oauth.requests == 3, "new consumer keys get a new token at once"


def test_tokens_expire_before_daraja_says_with_the_margin(sim: DarajaSimulator) -> None:
    now = [0.0]
    client, oauth = counted_client(settings_for(sim.url, oauth_token_margin_s=60.0), clock=lambda: now[0])
    app = preset_app()
    client.stk_push(app, order())
    now[0] = 3599 - 60 - 1
    client.stk_push(app, order())
    assert oauth.requests == 1
    now[0] = 3599 - 60
    client.stk_push(app, order())
    assert oauth.requests == 2


def test_the_token_cache_is_size_bounded(sim: DarajaSimulator) -> None:
    client, oauth = counted_client(settings_for(sim.url, oauth_cache_max_entries=2))
    for uid in ("a", "b", "c"):
        client.stk_push(preset_app(uid), order())
    assert len(client._tokens) == 2
    client.stk_push(preset_app("c"), order())
    assert oauth.requests == 3
    client.stk_push(preset_app("a"), order())
    assert oauth.requests == 4, "the least recently used token was evicted"


# --------------------------------------------------------------------------------------------- rejections


def test_a_bad_phone_is_a_rejected_request(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order(phone="25570837414"))
    error = raised.value
    assert (error.code, error.http_status, error.daraja_code) == ("daraja_rejected_request", 400, "400.002.02")
    assert "PhoneNumber" in error.message or "PartyA" in error.message
    assert error.to_envelope("req_x")["error"]["daraja_code"] == "400.002.02"


def test_a_second_push_while_the_first_prompt_is_live_is_payer_busy(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    phone = new_phone()
    stack_admin.set_scenario(phone, delay_ms=10_000, callbacks=0, simulator_url=sim.url)
    client.stk_push(preset_app(), order(phone))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order(phone))
    error = raised.value
    assert (error.code, error.http_status, error.daraja_code) == ("payer_busy", 409, "500.001.1001")


def test_a_wrong_passkey_is_rejected_credentials(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(passkey="wrong-passkey"), order())
    error = raised.value
    assert (error.code, error.http_status, error.daraja_code) == ("daraja_rejected_credentials", 502, "500.001.1001")
    assert "wrong-passkey" not in error.message


def test_stored_keys_that_daraja_no_longer_accepts(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    app = DarajaApp("dev-1", "sandbox", "174379", "CustomerPayBillOnline", "174379", DarajaSecret("gone", "gone", "pk"))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(app, order())
    assert (raised.value.code, raised.value.http_status) == ("daraja_rejected_credentials", 502)


# --------------------------------------------------------------------------------------------- STK query


def test_stk_query_is_none_while_processing_then_the_answer(sim: DarajaSimulator) -> None:
    client, oauth = counted_client(settings_for(sim.url))
    phone = new_phone()
    stack_admin.set_scenario(phone, result_code=1032, delay_ms=400, callbacks=0, simulator_url=sim.url)
    accepted = client.stk_push(preset_app(), order(phone))
    assert client.stk_query(preset_app(), accepted.checkout_request_id) is None
    time.sleep(0.5)
    answer = client.stk_query(preset_app(), accepted.checkout_request_id)
    assert isinstance(answer, StkQueryAnswer)
    assert (answer.result_code, answer.checkout_request_id) == ("1032", accepted.checkout_request_id)
    assert answer.merchant_request_id == accepted.merchant_request_id
    assert answer.result_desc == "Request cancelled by user"
    assert answer.raw["ResultCode"] == "1032"
    assert oauth.requests == 1


def test_stk_query_of_an_unknown_checkout_id_is_a_rejected_request(sim: DarajaSimulator) -> None:
    client = DarajaClient(settings_for(sim.url))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_query(preset_app(), "ws_CO_unknown")
    assert (raised.value.code, raised.value.daraja_code) == ("daraja_rejected_request", "400.002.02")


# --------------------------------------------------------------------------------------------- scripted failures


class ScriptedDaraja(ThreadingHTTPServer):
    """OAuth always succeeds; each push or query takes the next scripted (status, body, delay_s) answer."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        # OAuth answers a fresh token unless an answer is queued for it.
        self.script: dict[str, deque[tuple[int, object, float]]] = {OAUTH: deque(), PUSH: deque(), QUERY: deque()}
        self.hits: Counter[str] = Counter()
        self.expires_in: object = "3599"
        self._tokens = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str) -> tuple[int, object, float]:
        self.hits[path] += 1
        if path == OAUTH and not self.script[OAUTH]:
            return 200, {"access_token": f"token-{next(self._tokens)}", "expires_in": self.expires_in}, 0.0
        return self.script[path].popleft()


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedDaraja
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body, delay_s = self.server.answer(self.path.split("?")[0])
        time.sleep(delay_s)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            # No keep-alive: every call opens its own connection, so a stopped server really refuses the next one.
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting, as the timeout tests intend

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ScriptedDaraja]:
    server = ScriptedDaraja()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def daraja_error(code: str, message: str) -> dict[str, str]:
    return {"requestId": "1-2-3", "errorCode": code, "errorMessage": message}


def test_a_push_that_times_out_has_an_unknown_outcome(scripted: ScriptedDaraja) -> None:
    client = DarajaClient(settings_for(scripted.url, daraja_timeout_s=0.3))
    scripted.script[PUSH].append((200, {}, 1.5))
    with pytest.raises(DarajaOutcomeUnknown) as raised:
        client.stk_push(preset_app(), order())
    error = raised.value
    assert isinstance(error, errors.DarajaError)
    assert (error.code, error.http_status) == ("daraja_timeout", 504)
    assert "may or may not have been prompted" in error.message


def test_a_query_that_times_out_is_a_plain_timeout(scripted: ScriptedDaraja) -> None:
    client = DarajaClient(settings_for(scripted.url, daraja_timeout_s=0.3))
    scripted.script[QUERY].append((200, {}, 1.5))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_query(preset_app(), "ws_CO_1")
    assert not isinstance(raised.value, DarajaOutcomeUnknown)
    assert (raised.value.code, raised.value.http_status) == ("daraja_timeout", 504)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_unreachable() -> None:
    client = DarajaClient(settings_for(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(errors.DarajaError) as raised:
        client.verify_credentials("sandbox", "key", "secret")
    assert (raised.value.code, raised.value.http_status) == ("daraja_unreachable", 504)
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order())
    assert not isinstance(raised.value, DarajaOutcomeUnknown)
    assert raised.value.code == "daraja_unreachable"


def test_a_push_refused_after_the_token_was_minted_is_unreachable_not_unknown(scripted: ScriptedDaraja) -> None:
    client = DarajaClient(settings_for(scripted.url))
    scripted.script[PUSH].append((200, {"ResponseCode": "0", "CheckoutRequestID": "ws_CO_1"}, 0.0))
    client.stk_push(preset_app(), order())
    scripted.shutdown()
    scripted.server_close()  # the token stays cached; the push itself now meets a closed port
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order())
    assert not isinstance(raised.value, DarajaOutcomeUnknown)
    assert raised.value.code == "daraja_unreachable"


@pytest.mark.parametrize(
    ("status", "body", "code", "http_status", "daraja_code"),
    [
        (500, daraja_error("500.003.02", "Spike arrest violation"), "daraja_rate_limited", 429, "500.003.02"),
        (500, daraja_error("500.003.03", "Quota violation"), "daraja_rate_limited", 429, "500.003.03"),
        (429, b"Too many requests", "daraja_rate_limited", 429, None),
        (400, daraja_error("400.002.05", "Invalid Request Payload"), "daraja_rejected_request", 400, "400.002.05"),
        (
            500,
            daraja_error("500.001.1001", "Merchant does not exist"),
            "daraja_rejected_credentials",
            502,
            "500.001.1001",
        ),
        (500, daraja_error("500.001.1001", "Unable to lock subscriber"), "payer_busy", 409, "500.001.1001"),
        (200, {"ResponseCode": "1", "ResponseDescription": "Rejected"}, "daraja_rejected_request", 400, "1"),
    ],
)
def test_daraja_errors_map_to_one_gateway_error_each(
    scripted: ScriptedDaraja, status: int, body: object, code: str, http_status: int, daraja_code: str | None
) -> None:
    client = DarajaClient(settings_for(scripted.url))
    scripted.script[PUSH].append((status, body, 0.0))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order())
    error = raised.value
    assert not isinstance(error, DarajaOutcomeUnknown)
    assert (error.code, error.http_status, error.daraja_code) == (code, http_status, daraja_code)


@pytest.mark.parametrize(
    ("status", "body", "code", "daraja_code"),
    [
        (504, b"Gateway Timeout", "daraja_outcome_unknown", None),
        # A server failure after the push arrived: Daraja's backend may have prompted before its front end failed.
        (503, b"<html>Service Unavailable</html>", "daraja_outcome_unknown", None),
        (500, daraja_error("500.000.1000", "Internal Server Error"), "daraja_outcome_unknown", "500.000.1000"),
        (200, b"not json", "daraja_timeout", None),
        (200, {"ResponseCode": "0"}, "daraja_timeout", None),
    ],
)
def test_a_push_daraja_may_have_accepted_without_telling_us_is_unknown(
    scripted: ScriptedDaraja, status: int, body: object, code: str, daraja_code: str | None
) -> None:
    client = DarajaClient(settings_for(scripted.url))
    scripted.script[PUSH].append((status, body, 0.0))
    with pytest.raises(DarajaOutcomeUnknown) as raised:
        client.stk_push(preset_app(), order())
    assert (raised.value.code, raised.value.http_status, raised.value.daraja_code) == (code, 504, daraja_code)


@pytest.mark.parametrize(
    ("status", "body", "daraja_code"),
    [
        (503, b"<html>Service Unavailable</html>", None),
        (500, daraja_error("500.000.1000", "Internal Server Error"), "500.000.1000"),
        (504, b"Gateway Timeout", None),
    ],
)
def test_a_server_failure_on_a_query_is_unavailable_not_unknown(
    scripted: ScriptedDaraja, status: int, body: object, daraja_code: str | None
) -> None:
    # A query prompts nobody, so a failed one is a plain failure to retry.
    client = DarajaClient(settings_for(scripted.url))
    scripted.script[QUERY].append((status, body, 0.0))
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_query(preset_app(), "ws_CO_1")
    error = raised.value
    assert not isinstance(error, DarajaOutcomeUnknown)
    assert (error.code, error.http_status, error.daraja_code) == ("daraja_unavailable", 502, daraja_code)


def test_concurrent_callers_share_one_failed_mint(scripted: ScriptedDaraja) -> None:
    client, oauth = counted_client(settings_for(scripted.url))
    scripted.script[OAUTH].append((503, b"down", 0.3))
    start = threading.Barrier(8)
    outcomes: list[object] = []

    def push() -> None:
        start.wait()
        try:
            outcomes.append(client.stk_push(preset_app(), order()))
        except errors.DarajaError as failure:
            outcomes.append(failure.code)

    threads = [threading.Thread(target=push) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == ["daraja_unavailable"] * 8
    assert oauth.requests == 1
    assert scripted.hits[PUSH] == 0


def test_a_token_rejected_twice_is_token_rejected_after_one_remint(scripted: ScriptedDaraja) -> None:
    client, oauth = counted_client(settings_for(scripted.url))
    invalid = (404, daraja_error("404.001.03", "Invalid Access Token"), 0.0)
    scripted.script[PUSH].extend([invalid, invalid])
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order())
    assert (raised.value.code, raised.value.http_status, raised.value.daraja_code) == (
        "daraja_token_rejected",
        502,
        "404.001.03",
    )
    assert oauth.requests == 2
    assert scripted.hits[PUSH] == 2


def test_an_unparseable_expires_in_still_caches_the_token(scripted: ScriptedDaraja) -> None:
    scripted.expires_in = "soon"
    client, oauth = counted_client(settings_for(scripted.url))
    accepted = {"ResponseCode": "0", "CheckoutRequestID": "ws_CO_1", "MerchantRequestID": "m-1"}
    scripted.script[PUSH].extend([(200, accepted, 0.0), (200, accepted, 0.0)])
    client.stk_push(preset_app(), order())
    client.stk_push(preset_app(), order())
    assert oauth.requests == 1


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("3599", 3599.0),
        (3599, 3599.0),
        ("3599.5", 3599.5),
        ("soon", 600.0),
        (None, 600.0),
        ("-5", 600.0),
        ("nan", 600.0),
        ("inf", 600.0),
        (True, 600.0),
        ("86400", 3600.0),
        ([], 600.0),
    ],
)
def test_expires_in_is_parsed_defensively(raw: object, seconds: float) -> None:
    assert _lifetime(raw) == seconds


def test_nothing_secret_reaches_the_logs_or_the_errors(
    sim: DarajaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    client = DarajaClient(settings_for(sim.url))
    phone = new_phone()
    stack_admin.set_scenario(phone, delay_ms=10_000, callbacks=0, simulator_url=sim.url)
    client.stk_push(preset_app(), order(phone))
    requests.post(f"{sim.url}/simulator/expire-tokens", timeout=5).raise_for_status()
    with pytest.raises(errors.DarajaError) as raised:
        client.stk_push(preset_app(), order(phone))  # re-mint, then payer_busy
    logged = capsys.readouterr().out + json.dumps(raised.value.to_envelope("req_x"))
    tokens = list(sim.state._tokens)
    assert tokens
    for secret in [PRESET_APP.consumer_secret, PRESET_APP.passkey, phone, *tokens]:
        assert secret not in logged
