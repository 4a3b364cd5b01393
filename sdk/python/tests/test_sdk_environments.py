"""Credentials per environment and the push's environment in the Python SDK: the unit tests run over the fake
transport; the last test needs the local stack (marked `stack`)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from mpesa_gateway import NotFoundError
from sdk_fakes import Reply, envelope, fake_gateway, payment_body


def view(environment: str, shortcode: str) -> dict[str, object]:
    return {"object": "developer_credentials", "environment": environment, "shortcode": shortcode}


def query_of(url: str | None) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url or "").query)


def test_get_with_an_environment_asks_for_that_set() -> None:
    gateway, adapter, _ = fake_gateway([Reply(200, view("production", "600555"))])
    assert gateway.credentials.get("production").shortcode == "600555"
    assert query_of(adapter.requests[0].url) == {"environment": ["production"]}


@pytest.mark.parametrize(
    ("listed", "chosen"),
    [
        ([view("sandbox", "174379"), view("production", "600555")], "sandbox"),
        ([view("production", "600555")], "production"),
    ],
)
def test_get_without_an_environment_is_the_set_a_push_uses(listed: list[dict[str, object]], chosen: str) -> None:
    gateway, adapter, _ = fake_gateway([Reply(200, {"object": "list", "data": listed})])
    assert gateway.credentials.get().environment == chosen
    assert query_of(adapter.requests[0].url) == {}


def test_get_without_any_set_is_the_gateways_own_not_found() -> None:
    gateway, adapter, _ = fake_gateway(
        [
            Reply(200, {"object": "list", "data": []}),
            Reply(404, envelope("invalid_request_error", "credentials_not_configured")),
        ]
    )
    with pytest.raises(NotFoundError) as raised:
        gateway.credentials.get()
    assert (raised.value.code, raised.value.http_status) == ("credentials_not_configured", 404)
    assert raised.value.request_id is not None
    assert [query_of(r.url) for r in adapter.requests] == [{}, {"environment": ["sandbox"]}]


def test_list_returns_every_set_and_delete_names_one() -> None:
    both = {"object": "list", "data": [view("sandbox", "174379"), view("production", "600555")]}
    gateway, adapter, _ = fake_gateway(
        [Reply(200, both), Reply(200, {"object": "developer_credentials", "deleted": True}), Reply(200, {"deleted": 0})]
    )
    assert [c.environment for c in gateway.credentials.list()] == ["sandbox", "production"]
    assert gateway.credentials.delete("production") is True
    assert gateway.credentials.delete() is False
    assert [query_of(r.url) for r in adapter.requests[1:]] == [{"environment": ["production"]}, {}]
    assert [r.method for r in adapter.requests] == ["GET", "DELETE", "DELETE"]


def test_create_sends_the_environment_only_when_asked() -> None:
    gateway, adapter, _ = fake_gateway([Reply(201, payment_body()), Reply(201, payment_body())])
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1")
    gateway.payments.create("0712345678", 10, "INV-1", "Order 1", environment="production")
    bodies = [json.loads(r.body or b"{}") for r in adapter.requests]
    assert "environment" not in bodies[0]
    assert bodies[1]["environment"] == "production"


def test_list_pages_can_keep_one_environment() -> None:
    page = {"object": "list", "data": [], "has_more": False, "next_page_token": None}
    gateway, adapter, _ = fake_gateway([Reply(200, page)])
    assert list(gateway.payments.list(environment="sandbox")) == []
    assert query_of(adapter.requests[0].url)["environment"] == ["sandbox"]


def test_both_sets_against_the_stack(stack: None) -> None:
    from sdk_stack import DARAJA_URL, gateway, register_app, sign_up, unique_phone

    gw = gateway(sign_up().id_token)
    assert gw.credentials.list() == []
    sandbox, production = register_app(), register_app()
    for environment, app in (("sandbox", sandbox), ("production", production)):
        gw.credentials.set(
            environment=environment,  # type: ignore[arg-type]
            consumer_key=app.consumer_key,
            consumer_secret=app.consumer_secret,
            shortcode=app.shortcode,
            passkey=app.passkey,
        )
    assert [(c.environment, c.shortcode) for c in gw.credentials.list()] == [
        ("sandbox", sandbox.shortcode),
        ("production", production.shortcode),
    ]
    assert gw.credentials.get().environment == "sandbox"
    assert gw.credentials.get("production").shortcode == production.shortcode

    payment = gw.payments.create(unique_phone(), 10, "INV-1", "Order 1", environment="production")
    assert (payment.environment, payment.shortcode) == ("production", production.shortcode)
    import requests

    pushed = requests.get(f"{DARAJA_URL}/simulator/requests", params={"kind": "stk_push"}, timeout=10).json()
    assert [r["consumer_key"] for r in pushed["requests"] if r.get("shortcode") == production.shortcode] == [
        production.consumer_key
    ]
    assert [p.id for p in gw.payments.list(environment="production")] == [payment.id]
    assert list(gw.payments.list(environment="sandbox")) == []

    assert gw.credentials.delete("production") is True
    assert [c.environment for c in gw.credentials.list()] == ["sandbox"]
    assert gw.credentials.delete() is True
    assert gw.credentials.list() == []
