"""Firebase Hosting in front of the functions, through the Hosting emulator: `/api/<function>` reaches each HTTP
function on the console's origin, and Daraja's callbacks travel through the neutral `/hooks/daraja/<token>` path
(Safaricom refuses callback URLs containing "mpesa"), which rewrites to mpesa_callback."""

from __future__ import annotations

import requests

from tests import support
from tests.tenants import Tenant, new_tenant

API = f"{support.HOSTING_URL}/api"


def test_the_api_answers_on_the_console_origin() -> None:
    tenant = new_tenant()
    direct = requests.get(support.function_url("developer_credentials"), headers=tenant.headers, timeout=30)
    hosted = requests.get(f"{API}/developer_credentials", headers=tenant.headers, timeout=30)
    assert hosted.status_code == direct.status_code == 200, hosted.text
    assert hosted.json() == direct.json()
    anonymous = requests.get(f"{API}/payment_status", timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"]


def test_a_payment_is_settled_by_a_callback_through_hosting() -> None:
    tenant: Tenant = new_tenant()
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=150)
    response = requests.post(
        f"{API}/stk_push",
        json={"phone": phone, "amount": 1250, "account_reference": "HOST-1", "description": "Hosting"},
        headers=tenant.headers,
        timeout=60,
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    [push] = [
        p
        for p in support.simulator_requests("stk_push", tenant.app.shortcode)
        if p.get("checkout_request_id") == payment["checkout_request_id"]
    ]
    callback_url = push["callback_url"]
    assert callback_url.startswith(f"{support.CALLBACK_BASE_URL}/"), callback_url
    assert "mpesa" not in callback_url.lower() and "safaricom" not in callback_url.lower()
    assert tenant.wait_settled(payment["id"])["status"] == "succeeded"
    [delivery] = support.simulator_callbacks(payment["checkout_request_id"])
    assert delivery["url"] == callback_url and delivery.get("status") == 200, delivery


def test_a_junk_token_on_the_hosting_path_is_the_gateway_404() -> None:
    response = requests.post(f"{support.CALLBACK_BASE_URL}/short", json={"Body": {}}, timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_callback_token"
