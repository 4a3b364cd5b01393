"""Unit tests of the Python SDK over the fake transport: no network, no stack."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

import mpesa_gateway
from mpesa_gateway import (
    FLAG_SUCCESS_AFTER_TERMINAL,
    TERMINAL_STATUSES,
    USER_AGENT,
    AuthenticationError,
    Credentials,
    DarajaError,
    DarajaRateLimitError,
    Gateway,
    GatewayError,
    IdempotencyError,
    InvalidRequestError,
    NotFoundError,
    Payment,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    WaitTimeout,
    error_from_response,
    firebase_password_token_provider,
)
from mpesa_gateway import ConnectionError as GatewayConnectionError
from mpesa_gateway.auth import secure_token_url_for
from mpesa_gateway.errors import parse_retry_after
from sdk_fakes import BASE_URL, FakeAdapter, FakeClock, Reply, envelope, fake_gateway, payment_body


def refused_connection() -> requests.ConnectionError:
    """What requests raises when nothing listens: the request never left."""
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- backoff
@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (10, 8.0)],
)
def test_backoff_is_full_jitter_under_a_capped_exponential_ceiling(attempt: int, ceiling: float) -> None:
    for value in (0.0, 0.25, 0.999):
        gateway, _, _ = fake_gateway(random_value=value)
        assert gateway.backoff(attempt) == pytest.approx(value * ceiling)


def test_backoff_base_and_cap_are_configurable() -> None:
    gateway, _, _ = fake_gateway(random_value=1.0, retry_base_delay=0.1, retry_max_delay=0.3)
    assert [gateway.backoff(n) for n in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_5xx_is_retried_with_backoff_until_it_succeeds() -> None:
    gateway, adapter, clock = fake_gateway(
        [
            Reply(503, envelope("api_error", "unavailable")),
            Reply(500, envelope("api_error", "internal_error")),
            Reply(200, {"object": "developer_credentials", "environment": "sandbox"}),
        ],
        random_value=0.5,
    )
    credentials = gateway.credentials.get()
    assert credentials.environment == "sandbox"
    assert len(adapter.requests) == 3
    assert clock.sleeps == pytest.approx([0.25, 0.5])


def test_retries_stop_after_max_retries_and_raise_the_last_error() -> None:
    gateway, adapter, clock = fake_gateway([Reply(502, envelope("api_error", "bad_gateway"))] * 3, max_retries=2)
    with pytest.raises(ServerError) as raised:
        gateway.credentials.get()
    assert raised.value.http_status == 502
    assert len(adapter.requests) == 3
    assert len(clock.sleeps) == 2


def test_max_retries_zero_means_one_attempt() -> None:
    gateway, adapter, _ = fake_gateway([Reply(503, envelope("api_error", "x"))], max_retries=0)
    with pytest.raises(ServerError):
        gateway.credentials.get()
    assert len(adapter.requests) == 1


def test_429_is_retried_after_the_servers_retry_after_seconds() -> None:
    gateway, adapter, clock = fake_gateway(
        [
            Reply(429, envelope("rate_limit_error", "rate_limited"), {"Retry-After": "2"}),
            Reply(200, {"object": "developer_credentials"}),
        ]
    )
    gateway.credentials.get()
    assert clock.sleeps == [2.0]
    assert len(adapter.requests) == 2


def test_retry_after_as_an_http_date_is_respected() -> None:
    when = datetime.fromtimestamp(1_800_000_030, tz=timezone.utc)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=1_800_000_000) == pytest.approx(30.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_retry_after_beyond_the_limit_is_raised_instead_of_waited() -> None:
    gateway, adapter, clock = fake_gateway(
        [Reply(429, envelope("rate_limit_error", "rate_limited"), {"Retry-After": "3600"})]
    )
    with pytest.raises(RateLimitError) as raised:
        gateway.credentials.get()
    assert raised.value.retry_after == 3600.0
    assert clock.sleeps == []
    assert len(adapter.requests) == 1


def test_429_exhausting_the_retries_raises_rate_limit_error() -> None:
    gateway, adapter, _ = fake_gateway([Reply(429, envelope("rate_limit_error", "slow_down"))] * 2, max_retries=1)
    with pytest.raises(RateLimitError) as raised:
        gateway.payments.list_page()
    assert raised.value.code == "slow_down"
    assert raised.value.retry_after is None
    assert len(adapter.requests) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, envelope("invalid_request_error", "invalid_phone", param="phone")),
        (401, envelope("authentication_error", "invalid_token")),
        (404, envelope("invalid_request_error", "payment_not_found")),
        (409, envelope("idempotency_error", "idempotency_conflict")),
        (409, envelope("daraja_error", "payer_busy", daraja_code="500.001.1001")),
        (422, envelope("invalid_request_error", "daraja_credentials_rejected")),
    ],
)
def test_client_errors_are_not_retried(status: int, body: dict[str, Any]) -> None:
    gateway, adapter, clock = fake_gateway([Reply(status, body)])
    with pytest.raises(GatewayError):
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert len(adapter.requests) == 1
    assert clock.sleeps == []


def test_a_replayed_error_answer_is_final() -> None:
    gateway, adapter, _ = fake_gateway(
        [Reply(504, envelope("daraja_error", "daraja_timeout"), {"Idempotent-Replayed": "true"})]
    )
    with pytest.raises(DarajaError) as raised:
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert raised.value.http_status == 504
    assert len(adapter.requests) == 1


def test_idempotency_in_progress_is_retried_with_the_same_key() -> None:
    gateway, adapter, _ = fake_gateway(
        [
            Reply(409, envelope("idempotency_error", "idempotency_in_progress")),
            Reply(201, payment_body(), {"Idempotent-Replayed": "true"}),
        ]
    )
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert payment.id.startswith("pay_")
    assert adapter.header(0, "Idempotency-Key") == adapter.header(1, "Idempotency-Key")


def test_permanent_daraja_credential_rejection_is_not_retried() -> None:
    gateway, adapter, _ = fake_gateway(
        [Reply(502, envelope("daraja_error", "daraja_rejected_credentials", daraja_code="500.001.1001"))]
    )
    with pytest.raises(DarajaError) as raised:
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert raised.value.code == "daraja_rejected_credentials"
    assert len(adapter.requests) == 1


# ------------------------------------------------------------------------------------------ idempotency
def test_create_sends_one_generated_key_on_every_retry() -> None:
    gateway, adapter, _ = fake_gateway(
        [
            requests.ConnectionError("connection reset after the request was sent"),
            requests.ReadTimeout("read timed out"),
            Reply(503, envelope("api_error", "unavailable")),
            Reply(201, payment_body(), {"Idempotent-Replayed": "true"}),
        ]
    )
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    keys = {adapter.header(n, "Idempotency-Key") for n in range(4)}
    assert len(adapter.requests) == 4
    assert len(keys) == 1
    (key,) = keys
    assert key is not None and len(key) == 36  # a uuid4
    assert payment.status == "pending"
    assert all(adapter.json_body(n) == adapter.json_body(0) for n in range(4))


def test_each_create_call_makes_its_own_key_and_a_given_key_is_used_as_is() -> None:
    gateway, adapter, _ = fake_gateway([Reply(201, payment_body())] * 3)
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1", idempotency_key="order-1001")
    first, second, third = (adapter.header(n, "Idempotency-Key") for n in range(3))
    assert first != second
    assert third == "order-1001"


def test_a_post_without_a_key_is_not_resent_once_it_may_have_arrived() -> None:
    gateway, adapter, _ = fake_gateway([requests.ReadTimeout("read timed out")])
    with pytest.raises(GatewayConnectionError) as raised:
        gateway.request("POST", "stk_push", json_body={"phone": "0712345678"})
    assert raised.value.code == "timeout"
    assert isinstance(raised.value.__cause__, requests.ReadTimeout)
    assert len(adapter.requests) == 1


def test_a_post_without_a_key_is_not_resent_after_a_5xx() -> None:
    gateway, adapter, _ = fake_gateway([Reply(500, envelope("api_error", "internal_error"))])
    with pytest.raises(ServerError):
        gateway.request("POST", "stk_push", json_body={"phone": "0712345678"})
    assert len(adapter.requests) == 1


def test_a_refused_connection_is_retried_whatever_the_method() -> None:
    gateway, adapter, _ = fake_gateway([refused_connection(), Reply(201, payment_body())])
    answer = gateway.request("POST", "stk_push", json_body={"phone": "0712345678"})
    assert answer.status == 201
    assert answer.attempts == 2
    assert len(adapter.requests) == 2


def test_connection_errors_exhausting_retries_raise_connection_error() -> None:
    gateway, adapter, _ = fake_gateway([refused_connection()] * 3, max_retries=2)
    with pytest.raises(GatewayConnectionError) as raised:
        gateway.credentials.get()
    assert raised.value.code == "network_error"
    assert raised.value.http_status is None
    assert len(adapter.requests) == 3


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_idempotent_methods_are_resent_after_a_read_timeout(method: str) -> None:
    gateway, adapter, _ = fake_gateway([requests.ReadTimeout("slow"), Reply(200, {"deleted": True})])
    gateway.request(method, "developer_credentials")
    assert len(adapter.requests) == 2


# ------------------------------------------------------------------------------------------------ tokens
def test_the_token_provider_is_called_on_every_attempt() -> None:
    tokens = iter(["token-A", "token-B", "token-C"])
    calls: list[str] = []

    def provider() -> str:
        calls.append("called")
        return next(tokens)

    gateway, adapter, _ = fake_gateway(
        [Reply(503, envelope("api_error", "x")), Reply(200, {"object": "developer_credentials"})],
        id_token=provider,
    )
    gateway.credentials.get()
    assert len(calls) == 2
    assert adapter.header(0, "Authorization") == "Bearer token-A"
    assert adapter.header(1, "Authorization") == "Bearer token-B"


def test_a_plain_string_token_is_accepted() -> None:
    gateway, adapter, _ = fake_gateway([Reply(200, {"object": "developer_credentials"})], id_token="static")
    gateway.credentials.get()
    assert adapter.header(0, "Authorization") == "Bearer static"


def test_a_failing_provider_becomes_an_authentication_error_without_a_request() -> None:
    def provider() -> str:
        raise RuntimeError("no user signed in")

    gateway, adapter, _ = fake_gateway([], id_token=provider)
    with pytest.raises(AuthenticationError) as raised:
        gateway.credentials.get()
    assert raised.value.code == "id_token_unavailable"
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert adapter.requests == []


def test_an_empty_token_is_refused() -> None:
    gateway, _, _ = fake_gateway([], id_token=lambda: "")
    with pytest.raises(AuthenticationError, match="no token"):
        gateway.credentials.get()


# --------------------------------------------------------------------------------------------- transport
def test_every_request_carries_user_agent_timeouts_and_json() -> None:
    gateway, adapter, _ = fake_gateway([Reply(201, payment_body())], timeout=(2.0, 15.0))
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1", metadata={"order_id": "1001"})
    request = adapter.requests[0]
    assert USER_AGENT == f"mpesa-gateway-python/{mpesa_gateway.__version__}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.method == "POST"
    assert request.url == f"{BASE_URL}/stk_push"
    assert adapter.timeouts[0] == (2.0, 15.0)
    assert adapter.json_body(0) == {
        "phone": "0712345678",
        "amount": 10,
        "account_reference": "INV-1",
        "description": "Order 1",
        "metadata": {"order_id": "1001"},
    }


def test_the_default_timeout_is_an_explicit_connect_read_pair() -> None:
    gateway, adapter, _ = fake_gateway([Reply(200, {"object": "developer_credentials"})])
    gateway.credentials.get()
    assert adapter.timeouts[0] == (3.05, 30.0)


def test_a_2xx_without_a_json_object_is_a_server_error() -> None:
    gateway, _, _ = fake_gateway([Reply(200, "<html>ok</html>")])
    with pytest.raises(ServerError) as raised:
        gateway.credentials.get()
    assert raised.value.code == "invalid_response"


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        Gateway("ftp://x", "t")
    with pytest.raises(TypeError):
        Gateway(BASE_URL, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Gateway(BASE_URL, "t", timeout=(0, 3))
    with pytest.raises(ValueError):
        Gateway(BASE_URL, "t", max_retries=-1)


# ---------------------------------------------------------------------------------------------- mapping
@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (401, "authentication_error", AuthenticationError),
        (403, "permission_error", PermissionDeniedError),
        (400, "invalid_request_error", InvalidRequestError),
        (404, "invalid_request_error", NotFoundError),
        (405, "invalid_request_error", InvalidRequestError),
        (413, "invalid_request_error", InvalidRequestError),
        (415, "invalid_request_error", InvalidRequestError),
        (422, "invalid_request_error", InvalidRequestError),
        (409, "idempotency_error", IdempotencyError),
        (429, "rate_limit_error", RateLimitError),
        (409, "daraja_error", DarajaError),
        (502, "daraja_error", DarajaError),
        (504, "daraja_error", DarajaError),
        (429, "daraja_error", DarajaRateLimitError),
        (500, "api_error", ServerError),
        (503, "api_error", ServerError),
        # No usable type: the status decides.
        (401, None, AuthenticationError),
        (403, None, PermissionDeniedError),
        (404, None, NotFoundError),
        (409, None, InvalidRequestError),
        (429, None, RateLimitError),
        (500, None, ServerError),
        (502, "some_future_type", ServerError),
        (418, None, InvalidRequestError),
    ],
)
def test_error_class_is_picked_by_type_first_then_status(
    status: int, error_type: str | None, expected: type[GatewayError]
) -> None:
    error = error_from_response(status, envelope(error_type, "some_code"), {"X-Request-Id": "req_header"})
    assert type(error) is expected
    assert error.http_status == status
    assert error.code == "some_code"
    assert error.type == error_type
    assert error.request_id == "req_header"


def test_the_error_carries_every_envelope_field() -> None:
    body = envelope("daraja_error", "payer_busy", "the payer has another prompt open", daraja_code="500.001.1001")
    body["error"]["param"] = "phone"
    error = error_from_response(409, body, {})
    assert isinstance(error, DarajaError)
    assert error.message == "the payer has another prompt open"
    assert error.param == "phone"
    assert error.daraja_code == "500.001.1001"
    assert error.request_id == "req_body"  # no header: the body's id
    assert error.raw == body
    assert "payer_busy" in str(error) and "409" in str(error)


def test_daraja_rate_limiting_is_both_a_daraja_and_a_rate_limit_error() -> None:
    error = error_from_response(429, envelope("daraja_error", "daraja_rate_limited"), {"Retry-After": "5"})
    assert isinstance(error, DarajaError) and isinstance(error, RateLimitError)
    assert error.retry_after == 5.0


def test_a_non_json_error_body_still_maps_by_status() -> None:
    error = error_from_response(404, "Function us-central1-nope does not exist", {})
    assert isinstance(error, NotFoundError)
    assert error.message == "HTTP 404: Function us-central1-nope does not exist"
    assert error.code is None


def test_every_sdk_error_is_a_gateway_error() -> None:
    """Every error an API call can raise is a GatewayError. The exceptions are the webhook verifier's: they judge a
    delivery the developer's own server received (or the secret it was given), not an answer of the gateway."""
    verifier_errors = {"WebhookVerificationError", "WebhookSecretError"}
    for name in mpesa_gateway.__all__:
        value = getattr(mpesa_gateway, name)
        if isinstance(value, type) and issubclass(value, Exception) and name not in verifier_errors:
            assert issubclass(value, GatewayError), name
    for name in verifier_errors:
        assert not issubclass(getattr(mpesa_gateway, name), GatewayError)


# ------------------------------------------------------------------------------------------------ models
def test_payment_parses_the_api_object() -> None:
    body = payment_body(status="succeeded", result_code=0, flags=["amount_mismatch"], settled_at="2026-11-29T06:00:05Z")
    payment = Payment.from_api(body)
    assert payment.status == "succeeded"
    assert payment.result_code == "0"
    assert payment.flags == ("amount_mismatch",)
    assert payment.created_at == datetime(2026, 11, 29, 6, 0, 0, 123000, tzinfo=timezone.utc)
    assert payment.settled_at == datetime(2026, 11, 29, 6, 0, 5, tzinfo=timezone.utc)
    assert payment.metadata == {"order_id": "1001"}
    assert payment.raw is body
    assert payment.is_settled and payment.succeeded
    assert hash(payment) == hash(Payment.from_api(body))
    with pytest.raises(AttributeError):
        payment.status = "failed"  # type: ignore[misc]


def test_credentials_parse_the_masked_view() -> None:
    body = {
        "object": "developer_credentials",
        "environment": "sandbox",
        "shortcode": "174379",
        "transaction_type": "CustomerPayBillOnline",
        "party_b": "174379",
        "consumer_key_hint": "abcd...wxyz",
        "verified_at": "2026-11-29T06:00:00.000Z",
        "updated_at": "2026-11-29T06:00:00.000Z",
    }
    credentials = Credentials.from_api(body)
    assert credentials.consumer_key_hint == "abcd...wxyz"
    assert credentials.verified_at is not None and credentials.verified_at.tzinfo is not None
    assert "secret" not in repr(credentials)


def test_credentials_set_sends_the_documented_body() -> None:
    gateway, adapter, _ = fake_gateway(
        [Reply(200, {"object": "developer_credentials", "shortcode": "600000"}), Reply(200, {"deleted": False})]
    )
    gateway.credentials.set(
        environment="sandbox",
        consumer_key="ck",
        consumer_secret="cs",
        shortcode="600000",
        passkey="pk",
        transaction_type="CustomerBuyGoodsOnline",
        party_b="600001",
    )
    assert adapter.requests[0].method == "PUT"
    assert adapter.json_body(0) == {
        "environment": "sandbox",
        "consumer_key": "ck",
        "consumer_secret": "cs",
        "shortcode": "600000",
        "passkey": "pk",
        "transaction_type": "CustomerBuyGoodsOnline",
        "party_b": "600001",
    }
    assert gateway.credentials.delete() is False
    assert adapter.requests[1].method == "DELETE"


# ------------------------------------------------------------------------------------------------ paging
def test_list_follows_page_tokens_lazily() -> None:
    pages = [
        {
            "object": "list",
            "data": [payment_body(id="pay_3"), payment_body(id="pay_2")],
            "has_more": True,
            "next_page_token": "t1",
        },
        {"object": "list", "data": [payment_body(id="pay_1")], "has_more": True, "next_page_token": "t2"},
        {"object": "list", "data": [], "has_more": False, "next_page_token": None},
    ]
    gateway, adapter, _ = fake_gateway([Reply(200, page) for page in pages])
    iterator = gateway.payments.list(status="succeeded", limit=2)
    assert next(iterator).id == "pay_3"
    assert len(adapter.requests) == 1
    assert [p.id for p in iterator] == ["pay_2", "pay_1"]
    queries = [requests.utils.urlparse(r.url).query for r in adapter.requests]  # type: ignore[attr-defined]
    assert queries == [
        "status=succeeded&limit=2",
        "status=succeeded&limit=2&page_token=t1",
        "status=succeeded&limit=2&page_token=t2",
    ]


def test_get_and_get_by_checkout_request_id_query_payment_status() -> None:
    gateway, adapter, _ = fake_gateway([Reply(200, payment_body())] * 2)
    gateway.payments.get("pay_1")
    gateway.payments.get_by_checkout_request_id("ws_CO_1")
    assert adapter.requests[0].url == f"{BASE_URL}/payment_status?id=pay_1"
    assert adapter.requests[1].url == f"{BASE_URL}/payment_status?checkout_request_id=ws_CO_1"
    with pytest.raises(ValueError):
        gateway.payments.get("")


# -------------------------------------------------------------------------------------------------- wait
def test_wait_polls_with_growing_pauses_until_the_payment_settles() -> None:
    replies = [Reply(200, payment_body())] * 6 + [Reply(200, payment_body(status="cancelled", result_code="1032"))]
    gateway, adapter, clock = fake_gateway(replies)
    payment = gateway.payments.wait("pay_1", timeout=60)
    assert payment.status == "cancelled"
    assert len(adapter.requests) == 7
    assert clock.sleeps == pytest.approx([1.0, 1.5, 2.25, 3.375, 5.0, 5.0])


def test_wait_raises_wait_timeout_with_the_last_payment() -> None:
    gateway, _, clock = fake_gateway([Reply(200, payment_body())] * 10)
    with pytest.raises(WaitTimeout) as raised:
        gateway.payments.wait("pay_1", timeout=3.0, poll_interval=1.0)
    assert raised.value.payment.status == "pending"
    assert raised.value.code == "wait_timeout"
    assert sum(clock.sleeps) == pytest.approx(3.0)  # the last pause is cut to the deadline


# ------------------------------------------------------------------------------------------------ auth
def auth_session(adapter: FakeAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def sign_in_reply(token: str, expires_in: str = "3600") -> Reply:
    return Reply(
        200, {"idToken": token, "refreshToken": f"refresh-{token}", "localId": "uid-1", "expiresIn": expires_in}
    )


def test_secure_token_url_is_derived_for_the_real_service_and_the_emulator() -> None:
    assert secure_token_url_for("https://identitytoolkit.googleapis.com") == "https://securetoken.googleapis.com"
    assert (
        secure_token_url_for("http://127.0.0.1:9099/identitytoolkit.googleapis.com/")
        == "http://127.0.0.1:9099/securetoken.googleapis.com"
    )
    with pytest.raises(ValueError):
        secure_token_url_for("https://auth.example.com")


def test_password_provider_signs_in_once_caches_and_refreshes_before_expiry() -> None:
    clock = FakeClock()
    adapter = FakeAdapter(
        [
            sign_in_reply("id-1"),
            Reply(200, {"id_token": "id-2", "refresh_token": "refresh-2", "expires_in": "3600", "user_id": "uid-1"}),
        ]
    )
    provider = firebase_password_token_provider(
        "api-key",
        "dev@example.com",
        "pw",
        "http://127.0.0.1:9099/identitytoolkit.googleapis.com",
        session=auth_session(adapter),
        clock=clock,
    )
    assert provider() == "id-1"
    assert provider() == "id-1"
    assert len(adapter.requests) == 1
    assert adapter.requests[0].url == (
        "http://127.0.0.1:9099/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=api-key"
    )
    assert adapter.json_body(0) == {"email": "dev@example.com", "password": "pw", "returnSecureToken": True}
    clock.now += 3600 - 300 - 1  # just before the refresh point
    assert provider() == "id-1"
    clock.now += 2
    assert provider() == "id-2"
    refresh = adapter.requests[1]
    assert refresh.url == "http://127.0.0.1:9099/securetoken.googleapis.com/v1/token?key=api-key"
    assert refresh.body == "grant_type=refresh_token&refresh_token=refresh-id-1"
    assert (provider.sign_ins, provider.refreshes, provider.uid) == (1, 1, "uid-1")


def test_password_provider_signs_in_again_when_the_refresh_token_is_refused() -> None:
    clock = FakeClock()
    adapter = FakeAdapter(
        [
            sign_in_reply("id-1"),
            Reply(400, {"error": {"code": 400, "message": "TOKEN_EXPIRED"}}),
            sign_in_reply("id-3"),
        ]
    )
    provider = firebase_password_token_provider(
        "k", "dev@example.com", "pw", session=auth_session(adapter), clock=clock
    )
    provider()
    clock.now += 4000
    assert provider() == "id-3"
    assert provider.sign_ins == 2


def test_a_refused_sign_in_is_an_authentication_error_with_firebases_code() -> None:
    adapter = FakeAdapter([Reply(400, {"error": {"code": 400, "message": "INVALID_PASSWORD"}})])
    provider = firebase_password_token_provider("k", "dev@example.com", "bad", session=auth_session(adapter))
    with pytest.raises(AuthenticationError) as raised:
        provider()
    assert raised.value.code == "invalid_password"
    assert "bad" not in str(raised.value)


def test_a_provider_error_reaches_the_gateway_caller_unchanged() -> None:
    auth_adapter = FakeAdapter([Reply(400, {"error": {"code": 400, "message": "USER_DISABLED"}})])
    provider = firebase_password_token_provider("k", "dev@example.com", "pw", session=auth_session(auth_adapter))
    gateway, adapter, _ = fake_gateway([], id_token=provider)
    with pytest.raises(AuthenticationError) as raised:
        gateway.credentials.get()
    assert raised.value.code == "user_disabled"
    assert adapter.requests == []


# ------------------------------------------------------------------------- 202: the push's outcome is unknown
def unknown_outcome_body(**overrides: Any) -> dict[str, Any]:
    """What the gateway answers 202 with: the payment is recorded, Daraja's answer to the push never came."""
    fields: dict[str, Any] = {"checkout_request_id": None, "merchant_request_id": None, "flags": ["outcome_unknown"]}
    fields.update(overrides)
    return payment_body(**fields)


def test_a_202_is_a_created_payment_whose_outcome_is_unknown_and_is_not_retried() -> None:
    gateway, adapter, clock = fake_gateway([Reply(202, unknown_outcome_body())])
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert isinstance(payment, Payment)
    assert payment.id == "pay_0123456789abcdef01234567"
    assert payment.status == "pending"
    assert payment.outcome_unknown is True
    assert payment.checkout_request_id is None
    assert payment.merchant_request_id is None
    assert payment.is_settled is False
    assert len(adapter.requests) == 1  # a 202 is an answer, never a reason to push again
    assert clock.sleeps == []


def test_a_201_payment_has_a_known_outcome() -> None:
    gateway, _, _ = fake_gateway([Reply(201, payment_body())])
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert payment.outcome_unknown is False
    assert payment.checkout_request_id == "ws_CO_1"


def test_a_202_reached_after_retries_keeps_the_one_key_and_is_returned() -> None:
    gateway, adapter, _ = fake_gateway(
        [
            requests.ReadTimeout("the gateway was still waiting for Daraja"),
            Reply(409, envelope("idempotency_error", "idempotency_in_progress"), {"Retry-After": "2"}),
            Reply(202, unknown_outcome_body(), {"Idempotent-Replayed": "true"}),
        ]
    )
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert payment.outcome_unknown
    assert len(adapter.requests) == 3
    assert len({adapter.header(n, "Idempotency-Key") for n in range(3)}) == 1


def test_the_low_level_request_returns_a_202_with_its_status() -> None:
    gateway, _, _ = fake_gateway([Reply(202, unknown_outcome_body(), {"X-Request-Id": "req_202"})])
    answer = gateway.request("POST", "stk_push", json_body={"phone": "0712345678"}, idempotency_key="order-7")
    assert answer.status == 202
    assert answer.request_id == "req_202"
    assert answer.attempts == 1
    assert answer.body["flags"] == ["outcome_unknown"]


def test_waiting_on_a_202_payment_ends_when_its_callback_settles_it() -> None:
    gateway, adapter, _ = fake_gateway(
        [
            Reply(202, unknown_outcome_body()),
            Reply(200, unknown_outcome_body()),
            Reply(
                200,
                payment_body(status="succeeded", result_code="0", mpesa_receipt_number="NLJ7RT61SV", checkout_request_id="ws_CO_9"),
            ),
        ]
    )
    created = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    settled = gateway.payments.wait(created.id, timeout=30)
    assert settled.status == "succeeded"
    assert settled.outcome_unknown is False
    assert settled.checkout_request_id == "ws_CO_9"
    assert [r.method for r in adapter.requests] == ["POST", "GET", "GET"]


# ----------------------------------------------------------------------------------- unconfirmed is terminal
def test_unconfirmed_is_a_terminal_status() -> None:
    assert "unconfirmed" in TERMINAL_STATUSES
    payment = Payment.from_api(unknown_outcome_body(status="unconfirmed", settled_at="2026-11-29T07:00:00.000Z"))
    assert payment.status == "unconfirmed"
    assert payment.is_settled is True
    assert payment.unconfirmed is True
    assert payment.succeeded is False
    assert payment.settled_at == datetime(2026, 11, 29, 7, 0, tzinfo=timezone.utc)


def test_wait_returns_an_unconfirmed_payment_instead_of_polling_on() -> None:
    gateway, adapter, clock = fake_gateway(
        [Reply(200, unknown_outcome_body()), Reply(200, unknown_outcome_body(status="unconfirmed"))]
    )
    payment = gateway.payments.wait("pay_0123456789abcdef01234567", timeout=60)
    assert payment.status == "unconfirmed"
    assert len(adapter.requests) == 2
    assert clock.sleeps == [1.0]


def test_a_late_success_after_unconfirmed_parses_with_its_flag() -> None:
    payment = Payment.from_api(
        payment_body(status="succeeded", result_code="0", flags=["success_after_terminal", "checkout_request_mismatch"])
    )
    assert payment.succeeded and payment.is_settled and not payment.unconfirmed
    assert FLAG_SUCCESS_AFTER_TERMINAL in payment.flags
    assert "checkout_request_mismatch" in payment.flags


# ------------------------------------------------------------------------- 409 idempotency_in_progress
def test_in_progress_waits_exactly_retry_after_and_resends_the_same_request() -> None:
    gateway, adapter, clock = fake_gateway(
        [
            Reply(409, envelope("idempotency_error", "idempotency_in_progress"), {"Retry-After": "3"}),
            Reply(409, envelope("idempotency_error", "idempotency_in_progress"), {"Retry-After": "1"}),
            Reply(201, payment_body(), {"Idempotent-Replayed": "true"}),
        ],
        random_value=0.5,
    )
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1", idempotency_key="order-1001")
    assert payment.id == "pay_0123456789abcdef01234567"
    assert clock.sleeps == [3.0, 1.0]  # the server's Retry-After, not the jittered backoff
    assert [adapter.header(n, "Idempotency-Key") for n in range(3)] == ["order-1001"] * 3
    assert all(adapter.json_body(n) == adapter.json_body(0) for n in range(3))


def test_in_progress_does_not_use_up_max_retries() -> None:
    in_progress = Reply(409, envelope("idempotency_error", "idempotency_in_progress"), {"Retry-After": "5"})
    gateway, adapter, clock = fake_gateway([in_progress] * 6 + [Reply(201, payment_body())], max_retries=1)
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert payment.status == "pending"
    assert len(adapter.requests) == 7
    assert clock.sleeps == [5.0] * 6


def test_in_progress_gives_up_after_max_in_progress_wait_with_the_key_to_retry_with() -> None:
    in_progress = Reply(409, envelope("idempotency_error", "idempotency_in_progress"), {"Retry-After": "4"})
    gateway, adapter, clock = fake_gateway([in_progress] * 4, max_in_progress_wait=10.0)
    with pytest.raises(IdempotencyError) as raised:
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert raised.value.code == "idempotency_in_progress"
    assert raised.value.retry_after == 4.0
    assert clock.sleeps == [4.0, 4.0]  # a third pause would pass 10 s
    assert len(adapter.requests) == 3
    assert raised.value.idempotency_key == adapter.header(0, "Idempotency-Key")


def test_in_progress_without_retry_after_falls_back_to_backoff() -> None:
    gateway, _, clock = fake_gateway(
        [Reply(409, envelope("idempotency_error", "idempotency_in_progress")), Reply(201, payment_body())],
        random_value=0.5,
    )
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert clock.sleeps == pytest.approx([0.25])


def test_in_progress_with_a_retry_after_beyond_the_limit_is_raised() -> None:
    gateway, adapter, clock = fake_gateway(
        [Reply(409, envelope("idempotency_error", "idempotency_in_progress"), {"Retry-After": "600"})]
    )
    with pytest.raises(IdempotencyError):
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert clock.sleeps == []
    assert len(adapter.requests) == 1


def test_retry_after_is_honoured_on_a_5xx_too() -> None:
    gateway, _, clock = fake_gateway(
        [Reply(503, envelope("api_error", "auth_unavailable"), {"Retry-After": "7"}), Reply(200, {"deleted": True})]
    )
    assert gateway.credentials.delete() is True
    assert clock.sleeps == [7.0]


def test_max_in_progress_wait_must_not_be_negative() -> None:
    with pytest.raises(ValueError):
        Gateway(BASE_URL, "t", max_in_progress_wait=-1)


# ------------------------------------------------------------------ refusals: payment_id and the one key
def test_a_refused_push_names_its_failed_payment() -> None:
    body = envelope(
        "daraja_error",
        "daraja_rejected_request",
        "Daraja rejected the request",
        daraja_code="400.002.02",
        payment_id="pay_00000000000000000000abcd",
    )
    gateway, adapter, _ = fake_gateway([Reply(400, body)])
    with pytest.raises(DarajaError) as raised:
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    assert raised.value.payment_id == "pay_00000000000000000000abcd"
    assert raised.value.daraja_code == "400.002.02"
    assert raised.value.idempotency_key == adapter.header(0, "Idempotency-Key")
    assert "pay_00000000000000000000abcd" in str(raised.value)
    assert len(adapter.requests) == 1


def test_errors_without_a_payment_id_have_none() -> None:
    assert error_from_response(400, envelope("invalid_request_error", "invalid_phone"), {}).payment_id is None


def test_daraja_unreachable_is_retried_with_the_same_key_only() -> None:
    unreachable = Reply(
        504, envelope("daraja_error", "daraja_unreachable", payment_id="pay_00000000000000000000abcd")
    )
    gateway, adapter, _ = fake_gateway([unreachable] * 3, max_retries=2)
    with pytest.raises(DarajaError) as raised:
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    keys = {adapter.header(n, "Idempotency-Key") for n in range(3)}
    assert len(adapter.requests) == 3
    assert len(keys) == 1
    assert raised.value.idempotency_key in keys
    assert raised.value.payment_id == "pay_00000000000000000000abcd"


def test_a_caller_retrying_with_the_errors_key_gets_the_same_payment() -> None:
    gateway, adapter, _ = fake_gateway(
        [requests.ReadTimeout("slow")] * 2 + [Reply(202, unknown_outcome_body(), {"Idempotent-Replayed": "true"})],
        max_retries=1,
    )
    with pytest.raises(GatewayConnectionError) as raised:
        gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    key = raised.value.idempotency_key
    assert key is not None and key == adapter.header(0, "Idempotency-Key")
    payment = gateway.payments.create("0712345678", 10, "INV-1", "Order 1", idempotency_key=key)
    assert payment.outcome_unknown
    assert [adapter.header(n, "Idempotency-Key") for n in range(3)] == [key] * 3
