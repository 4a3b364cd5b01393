"""`Gateway(api_key=…)` and `gateway.api_keys`: unit tests over the fake transport, then the same against the running
stack (tests using the `stack` fixture)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from mpesa_gateway import ApiKey, AuthenticationError, Gateway, NotFoundError, PermissionDeniedError
from sdk_fakes import BASE_URL, FakeAdapter, Reply, envelope

TEST_KEY = "mpg_test_" + "a" * 46
LIVE_KEY = "mpg_live_" + "b" * 46


def key_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "object": "api_key",
        "id": "key_0123456789ABCDEFabcdefgh",
        "name": "shop",
        "environment": "sandbox",
        "hint": "mpg_test_...aaaa",
        "created_at": "2026-12-01T10:00:00.000Z",
        "last_used_at": None,
        "revoked_at": None,
    }
    body.update(overrides)
    return body


def over(adapter: FakeAdapter, **credential: Any) -> Gateway:
    session = requests.Session()
    session.mount("https://", adapter)
    return Gateway(BASE_URL, session=session, sleep=lambda _: None, **credential)


# ------------------------------------------------------------------------------------------------ unit
@pytest.mark.parametrize(("key", "environment"), [(TEST_KEY, "sandbox"), (LIVE_KEY, "production")])
def test_an_api_key_is_sent_as_the_bearer_on_every_attempt(key: str, environment: str) -> None:
    adapter = FakeAdapter([Reply(503, envelope("api_error", "x")), Reply(200, {"object": "developer_credentials"})])
    gateway = over(adapter, api_key=key)
    assert gateway.environment == environment
    gateway.credentials.get()
    assert [request.headers["Authorization"] for request in adapter.requests] == [f"Bearer {key}"] * 2


def test_exactly_one_credential() -> None:
    with pytest.raises(TypeError):
        Gateway(BASE_URL)
    with pytest.raises(TypeError):
        Gateway(BASE_URL, "token", api_key=TEST_KEY)
    assert Gateway(BASE_URL, "token").environment is None


@pytest.mark.parametrize("bad", ["", "sk_test_abc", "eyJhbGciOi.x.y", "mpg_prod_" + "a" * 46, 42])
def test_a_value_that_is_not_an_api_key_is_refused_without_echoing_it(bad: Any) -> None:
    with pytest.raises(ValueError) as raised:
        Gateway(BASE_URL, api_key=bad)
    assert str(bad) not in str(raised.value) or bad == ""


def test_the_key_never_appears_in_reprs() -> None:
    gateway = Gateway(BASE_URL, api_key=TEST_KEY)
    assert TEST_KEY not in repr(gateway)
    created = ApiKey.from_api(key_body(key=TEST_KEY))
    assert created.key == TEST_KEY and TEST_KEY not in repr(created)


def test_api_keys_resource_requests() -> None:
    adapter = FakeAdapter(
        [
            Reply(201, key_body(key=TEST_KEY)),
            Reply(200, {"object": "list", "data": [key_body()], "has_more": False}),
            Reply(200, key_body(last_used_at="2026-12-01T10:05:00.000Z")),
            Reply(200, key_body(revoked_at="2026-12-01T10:06:00.000Z")),
        ]
    )
    gateway = over(adapter, id_token="id-token")
    created = gateway.api_keys.create("shop", "sandbox")
    assert created.key == TEST_KEY and created.environment == "sandbox" and not created.revoked
    assert adapter.json_body(0) == {"name": "shop", "environment": "sandbox"}
    listed = gateway.api_keys.list()
    assert [item.id for item in listed] == [created.id] and listed[0].key is None
    assert gateway.api_keys.get(created.id).last_used_at is not None
    assert gateway.api_keys.revoke(created.id).revoked
    assert [(r.method, (r.url or "").removeprefix(BASE_URL)) for r in adapter.requests] == [
        ("POST", "/api_keys"),
        ("GET", "/api_keys"),
        ("GET", f"/api_keys/{created.id}"),
        ("DELETE", f"/api_keys/{created.id}"),
    ]


@pytest.mark.parametrize("bad_id", ["", "key_../x", "pay_123", "key_a/b"])
def test_a_bad_key_id_is_refused_before_any_request(bad_id: str) -> None:
    adapter = FakeAdapter([])
    with pytest.raises(ValueError):
        over(adapter, id_token="t").api_keys.revoke(bad_id)
    assert adapter.requests == []


def test_key_errors_map_to_typed_errors() -> None:
    adapter = FakeAdapter(
        [
            Reply(401, envelope("authentication_error", "api_key_revoked")),
            Reply(403, envelope("permission_error", "api_key_not_allowed")),
        ]
    )
    gateway = over(adapter, api_key=TEST_KEY)
    with pytest.raises(AuthenticationError) as revoked:
        gateway.payments.list_page()
    assert revoked.value.code == "api_key_revoked"
    with pytest.raises(PermissionDeniedError) as denied:
        gateway.api_keys.create("more", "production")
    assert denied.value.code == "api_key_not_allowed"
    assert len(adapter.requests) == 2  # neither is retried


# ------------------------------------------------------------------------------------------------ stack
def test_a_server_with_a_test_key_pushes_with_the_sandbox_credentials(stack: None) -> None:
    import sdk_stack

    user = sdk_stack.sign_up()
    app = sdk_stack.register_app()
    signed_in = sdk_stack.gateway(user.id_token)
    sdk_stack.set_credentials(signed_in, app)
    created = signed_in.api_keys.create("sdk server", "sandbox")
    assert created.key is not None and created.key.startswith("mpg_test_")

    server = Gateway(sdk_stack.FUNCTIONS_URL, api_key=created.key, retry_base_delay=0.05)
    phone = sdk_stack.unique_phone()
    sdk_stack.set_scenario(phone, result_code=0, delay_ms=200)
    payment = server.payments.create(phone, 10, "SDK-KEY", "Key push")
    assert payment.environment == "sandbox"
    assert server.payments.wait(payment.id, timeout=30, poll_interval=0.3).status == "succeeded"
    pushes = [r for r in sdk_stack.simulator_requests("stk_push", app.shortcode) if r.get("phone") == phone]
    assert [push["consumer_key"] for push in pushes] == [app.consumer_key]

    with pytest.raises(PermissionDeniedError):
        server.api_keys.create("escalate", "production")
    assert [key.id for key in signed_in.api_keys.list()] == [created.id]

    signed_in.api_keys.revoke(created.id)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            server.payments.list_page()
        except AuthenticationError as refused:
            assert refused.code == "api_key_revoked"
            break
        assert time.monotonic() < deadline, "the revoked key still worked after 5 s"
        time.sleep(0.1)
    with pytest.raises(NotFoundError):
        sdk_stack.gateway(sdk_stack.sign_up().id_token).api_keys.revoke(created.id)
