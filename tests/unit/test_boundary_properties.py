"""Property tests of the request boundary: whatever bytes, query or headers arrive, the parsing behind each endpoint
(gateway.http's JSON reading, then the domain's rules) answers 2xx or a 4xx envelope, never a 500. They run the same
hostile strategies as the fuzz run against the stack (tests/hostile.py), in-process and without I/O, so a crash
shrinks to its smallest input here in seconds; tests/e2e/test_fuzz_boundary.py then covers the real functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import flask
import hypothesis
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st

from gateway import http
from gateway.api import client_ip
from gateway.domain.callback import is_checkout_request_id, parse_stk_callback
from gateway.domain.validation import parse_credentials_request, parse_stk_push_request
from gateway.http import ApiResponse, Call, serve
from gateway.services.payments import idempotency_key_hash, parse_limit
from gateway.services.settlement import plausible_callback_token
from gateway.settings import Settings
from tests.hostile import HEADER_TEXT, JSON_VALUES, RAW_BODIES, digits, weighted

MAX_BODY = 16 * 1024
EXAMPLES = 300
_flask_app = flask.Flask(__name__)

BODIES = weighted((2, JSON_VALUES.map(str.encode)), (1, RAW_BODIES))
QUERY_VALUES = weighted(
    (2, st.text(max_size=30)),
    (1, digits(1, 6_000)),
    (1, st.sampled_from(["0", "-1", "101", "1.0", "1e2", " 5", "+5", "\uff15", "\u00b2", "\u0665", ""])),
)
settings = hypothesis.settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(autouse=True, scope="module")
def _safe_settings() -> Iterator[None]:
    """serve() checks the process settings first; here a safe configuration, whatever the shell's environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http, "get_settings", lambda: Settings(project_id="unit-test-project"))
        yield


def _answer(
    handler: Callable[[Call], ApiResponse],
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    path: str = "/fn",
) -> flask.Response:
    with _flask_app.test_request_context(path, method="POST", data=data, headers=headers, query_string=query):
        return serve(flask.request, methods=("POST",), handler=handler, max_body_bytes=MAX_BODY, authenticate=None)


def _assert_not_a_server_error(response: flask.Response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        envelope = json.loads(response.get_data(as_text=True))
        assert envelope["error"]["request_id"] == response.headers["X-Request-Id"]


def _ok(**body: Any) -> ApiResponse:
    return ApiResponse(200, body)


@settings
@hypothesis.given(body=BODIES, key=st.none() | HEADER_TEXT)
def test_any_push_body_and_idempotency_key_is_parsed_or_refused(body: bytes, key: str | None) -> None:
    def handle(call: Call) -> ApiResponse:
        request = parse_stk_push_request(call.json(), 150_000)
        return _ok(phone=request.phone, key=idempotency_key_hash(call.header("Idempotency-Key")))

    _assert_not_a_server_error(_answer(handle, body, {"Idempotency-Key": key} if key is not None else None))


@settings
@hypothesis.given(body=BODIES)
def test_any_credentials_body_is_parsed_or_refused(body: bytes) -> None:
    def handle(call: Call) -> ApiResponse:
        return _ok(shortcode=parse_credentials_request(call.json()).shortcode)

    _assert_not_a_server_error(_answer(handle, body))


@settings
@hypothesis.given(
    body=BODIES,
    token=st.text(max_size=40),
    forwarded=HEADER_TEXT,
    hops=st.integers(0, 3),
)
def test_any_callback_body_token_and_forwarded_for_is_parsed_or_refused(
    body: bytes, token: str, forwarded: str, hops: int
) -> None:
    def handle(call: Call) -> ApiResponse:
        source = client_ip(call.request, hops)
        callback = parse_stk_callback(call.json())
        return _ok(source=source, plausible=plausible_callback_token(token), outcome=repr(callback.outcome))

    _assert_not_a_server_error(_answer(handle, body, {"X-Forwarded-For": forwarded}))


@settings
@hypothesis.given(query=st.lists(st.tuples(st.sampled_from(["limit", "checkout_request_id"]), QUERY_VALUES)))
def test_any_limit_or_checkout_request_id_is_parsed_or_refused(query: list[tuple[str, str]]) -> None:
    def handle(call: Call) -> ApiResponse:
        checkout = call.query("checkout_request_id")
        usable = checkout is not None and is_checkout_request_id(checkout)
        return _ok(limit=parse_limit(call.query("limit")), checkout=usable)

    _assert_not_a_server_error(_answer(handle, query=query))


@pytest.mark.parametrize("literal", ["9" * 4_301, "-" + "1" * 10_000, "9" * (http.MAX_JSON_INTEGER_DIGITS + 1)])
@pytest.mark.parametrize("where", ["amount", "metadata", "callback"])
def test_huge_integers_anywhere_are_a_400(literal: str, where: str) -> None:
    """The bug the fuzz was built for: int() of more than 4,300 digits raises ValueError, which was a 500."""
    texts = {
        "amount": f'{{"phone":"0712345678","amount":{literal},"account_reference":"A","description":"B"}}',
        "metadata": f'{{"phone":"0712345678","amount":1,"account_reference":"A","description":"B",'
        f'"metadata":{{"n":{literal}}}}}',
        "callback": f'{{"Body":{{"stkCallback":{{"CheckoutRequestID":"ws_CO_1","ResultCode":{literal}}}}}}}',
    }
    response = _answer(lambda call: _ok(parsed=repr(call.json())[:10]), texts[where].encode())
    assert response.status_code == 400
    assert json.loads(response.get_data(as_text=True))["error"]["code"] == "invalid_json"


def test_a_huge_limit_is_a_400() -> None:
    response = _answer(lambda call: _ok(limit=parse_limit(call.query("limit"))), query=[("limit", "9" * 5_000)])
    assert response.status_code == 400
    assert json.loads(response.get_data(as_text=True))["error"]["param"] == "limit"
