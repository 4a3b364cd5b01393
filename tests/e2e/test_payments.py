"""Payments end to end: stk_push, the simulator's real callbacks into mpesa_callback, and payment_status, over HTTP
through the Functions emulator, for two developers with their own credentials and shortcodes."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
from typing import Any

import pytest
import requests

from tests import support
from tests.tenants import PUSH_URL, Tenant, new_tenant, payer_record, payment_doc, quarantined, raw_callbacks

# The local stack sends Daraja's callbacks through Hosting's neutral path (functions/.env.local), as production does.
CALLBACK_URL = support.CALLBACK_BASE_URL


@pytest.fixture(scope="module")
def tenant_a() -> Tenant:
    return new_tenant()


@pytest.fixture(scope="module")
def tenant_b() -> Tenant:
    return new_tenant()


def callback_url_of(tenant: Tenant, checkout_request_id: str) -> str:
    pushes = support.simulator_requests("stk_push", tenant.app.shortcode)
    for push in pushes:
        if push.get("checkout_request_id") == checkout_request_id:
            url: str = push["callback_url"]
            return url
    raise AssertionError("the simulator did not record that push")


# --------------------------------------------------------------------------------------------------- outcomes
def test_success_is_settled_by_the_real_callback(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    response = tenant_a.push("0" + phone[3:], amount=25, metadata={"order": "A-17"})
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "pending" and payment["object"] == "payment"
    assert payment["id"].startswith("pay_") and payment["checkout_request_id"]
    assert payment["phone"] == phone[:4] + "******" + phone[-2:]
    assert phone not in response.text
    assert payment["metadata"] == {"order": "A-17"}

    settled = tenant_a.wait_settled(payment["id"])
    assert settled["status"] == "succeeded"
    assert settled["result_code"] == "0"
    assert settled["mpesa_receipt_number"] and settled["transaction_date"]
    assert settled["settled_at"] is not None

    payer = payer_record(tenant_a, phone)
    assert payer is not None and payer["payment_count"] == 1 and payer["total_paid"] == 25
    # The audit copy is the raw body as text: Firestore cannot refuse it, whatever numbers or nesting it holds.
    raw = raw_callbacks(tenant_a, payment["id"])[0]["raw_body"]
    assert json.loads(raw)["Body"]["stkCallback"]["ResultCode"] == 0


@pytest.mark.parametrize(
    ("result_code", "status"),
    [
        (1032, "cancelled"),
        (1031, "cancelled"),
        (1037, "timed_out"),
        (1019, "timed_out"),
        (1, "failed"),
        (2001, "failed"),
    ],
)
def test_failure_outcomes(tenant_a: Tenant, result_code: int, status: str) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=result_code, delay_ms=150)
    payment = tenant_a.push(phone).json()
    settled = tenant_a.wait_settled(payment["id"])
    assert settled["status"] == status
    assert settled["result_code"] == str(result_code)
    assert settled["result_desc"]
    assert settled["mpesa_receipt_number"] is None


def test_unknown_result_code_is_failed_and_kept_raw(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code="SFC_IC0003", delay_ms=150)
    settled = tenant_a.wait_settled(tenant_a.push(phone).json()["id"])
    assert settled["status"] == "failed" and settled["result_code"] == "SFC_IC0003"


def test_lost_callback_is_reconciled_by_payment_status(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=100, callbacks=0)
    payment = tenant_a.push(phone).json()
    settled = tenant_a.wait_settled(payment["id"], timeout_s=40)
    assert settled["status"] == "succeeded"
    assert "settled_by_query" in settled["flags"]
    queries = [q for q in support.simulator_requests("stk_query", tenant_a.app.shortcode)]
    assert any(q.get("checkout_request_id") == payment["checkout_request_id"] for q in queries)


def test_payment_status_queries_daraja_at_most_once_per_interval(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    # The payer never answers within the test: Daraja keeps saying "being processed".
    support.set_scenario(phone, result_code=0, delay_ms=120_000, callbacks=0)
    payment = tenant_a.push(phone).json()
    import time

    time.sleep(3.5)  # past PENDING_QUERY_AFTER_SECONDS=3 of the local stack
    for _ in range(10):
        assert tenant_a.status(id=payment["id"]).json()["status"] == "pending"
    queries = [
        q
        for q in support.simulator_requests("stk_query", tenant_a.app.shortcode)
        if q.get("checkout_request_id") == payment["checkout_request_id"]
    ]
    assert len(queries) == 1


def test_duplicate_callback_changes_nothing(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=150, callbacks=2)
    payment = tenant_a.push(phone, amount=40).json()
    settled = tenant_a.wait_settled(payment["id"])
    support.wait_for(lambda: len(raw_callbacks(tenant_a, payment["id"])) == 2, what="both deliveries")
    after = tenant_a.status(id=payment["id"]).json()
    assert after == settled
    payer = payer_record(tenant_a, phone)
    assert payer is not None and payer["payment_count"] == 1 and payer["total_paid"] == 40


def test_late_failure_after_success_changes_nothing(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    payment = tenant_a.push(phone, amount=30).json()
    settled = tenant_a.wait_settled(payment["id"])
    assert settled["status"] == "succeeded"
    url = callback_url_of(tenant_a, payment["checkout_request_id"])
    late = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "1",
                "CheckoutRequestID": payment["checkout_request_id"],
                "ResultCode": "1032",
                "ResultDesc": "Request cancelled by user",
            }
        }
    }
    response = requests.post(url, json=late, timeout=30)
    assert response.status_code == 200 and response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    assert tenant_a.status(id=payment["id"]).json() == settled


def test_a_callback_to_an_unknown_token_is_quarantined_without_state_change(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)
    payment = tenant_a.push(phone, amount=50).json()
    forged = support.success_callback(payment["checkout_request_id"], 50.0, int(phone))
    token = secrets.token_urlsafe(24)
    response = requests.post(f"{CALLBACK_URL}/{token}", json=forged, timeout=30)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "unknown_callback_token"
    doc = payment_doc(tenant_a, payment["id"])
    assert doc["status"] == "pending" and raw_callbacks(tenant_a, payment["id"]) == []
    [kept] = quarantined(token=token)
    assert kept["reason"] == "unknown_callback_token"
    assert kept["checkout_request_id"] == payment["checkout_request_id"]
    assert json.loads(kept["raw_body"]) == forged and kept["source_ip"]


def test_a_callback_naming_another_checkout_request_is_quarantined(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)
    payment = tenant_a.push(phone, amount=51).json()
    url = callback_url_of(tenant_a, payment["checkout_request_id"])
    other = support.success_callback("ws_CO_000000000000000000", 51.0, int(phone))
    response = requests.post(url, json=other, timeout=30)
    assert response.status_code == 403 and response.json()["error"]["code"] == "checkout_request_mismatch"
    assert payment_doc(tenant_a, payment["id"])["status"] == "pending"
    assert [q["reason"] for q in quarantined(checkout_request_id="ws_CO_000000000000000000") if q["token_sha256"]]


@pytest.mark.parametrize("path", ["short", "x" * 33, "not+a+token+but+32+characters+!!", "%00" * 11])
def test_junk_callback_paths_are_refused_before_any_lookup(path: str) -> None:
    checkout_request_id = f"ws_CO_junk{secrets.token_hex(8)}"
    body = support.success_callback(checkout_request_id, 1.0, 254700000000)
    response = requests.post(f"{CALLBACK_URL}/{path}", json=body, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_callback_token"
    # A token-shaped unknown path is looked up and quarantined (above); a junk one never gets that far.
    assert quarantined(checkout_request_id=checkout_request_id) == []


def test_amount_mismatch_is_flagged_not_succeeded(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)
    payment = tenant_a.push(phone, amount=500).json()
    url = callback_url_of(tenant_a, payment["checkout_request_id"])
    response = requests.post(url, json=support.success_callback(payment["checkout_request_id"], 5.0, int(phone)), timeout=30)
    assert response.status_code == 200
    after = tenant_a.status(id=payment["id"]).json()
    assert after["status"] == "pending" and "amount_mismatch" in after["flags"]
    # Amount 500.0 from the genuine callback still settles it afterwards.
    ok = support.success_callback(payment["checkout_request_id"], 500.0, int(phone))
    assert requests.post(url, json=ok, timeout=30).status_code == 200
    assert tenant_a.status(id=payment["id"]).json()["status"] == "succeeded"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"Body": {}},
        {"Body": {"stkCallback": {"ResultCode": 0}}},
        {"Body": {"stkCallback": {"CheckoutRequestID": ["x"], "ResultCode": 0}}},
        [1, 2, 3],
        "text",
    ],
)
def test_malformed_callback_is_400_without_state_change(tenant_a: Tenant, body: Any) -> None:
    token = secrets.token_urlsafe(24)
    response = requests.post(f"{CALLBACK_URL}/{token}", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("malformed_callback", "invalid_json")
    # Whatever reached one of our callback URLs is kept for an operator.
    assert len(quarantined(token=token)) == 1


def test_fifty_concurrent_identical_callbacks_settle_once(tenant_a: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=120_000, callbacks=0)
    payment = tenant_a.push(phone, amount=70).json()
    url = callback_url_of(tenant_a, payment["checkout_request_id"])
    body = support.success_callback(payment["checkout_request_id"], 70.0, int(phone))
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: requests.post(url, json=body, timeout=120).status_code, range(50)))
    assert statuses.count(200) == 50, statuses
    settled_audits = [c for c in raw_callbacks(tenant_a, payment["id"]) if c["action"] == "settle"]
    assert len(settled_audits) == 1
    payer = payer_record(tenant_a, phone)
    assert payer is not None and payer["payment_count"] == 1 and payer["total_paid"] == 70


# ------------------------------------------------------------------------------------------------ idempotency
def test_same_key_same_body_replays_without_a_second_push(tenant_a: Tenant) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(16)
    first = tenant_a.push(phone, amount=11, key=key)
    second = tenant_a.push("+" + phone, amount=11, key=key)  # same request, another spelling of the phone
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    pushes = [p for p in support.simulator_requests("stk_push", tenant_a.app.shortcode) if p.get("phone") == phone]
    assert len(pushes) == 1


def test_same_key_different_body_is_409(tenant_a: Tenant) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(16)
    assert tenant_a.push(phone, amount=12, key=key).status_code == 201
    conflict = tenant_a.push(phone, amount=13, key=key)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"


def test_twenty_concurrent_requests_with_one_key_make_one_push(tenant_a: Tenant) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(16)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: tenant_a.push(phone, amount=14, key=key), range(20)))
    # Requests that arrive while the first one still holds the key are told to come back (409 in progress, with
    # Retry-After); the rest replay its answer. Either way: one payment, one prompt.
    created = [r for r in responses if r.status_code == 201]
    waiting = [r for r in responses if r.status_code == 409]
    assert created and len(created) + len(waiting) == 20, [r.text for r in responses if r.status_code not in (201, 409)]
    for response in waiting:
        assert response.json()["error"]["code"] == "idempotency_in_progress"
        assert int(response.headers["Retry-After"]) >= 1
    assert len({r.json()["id"] for r in created}) == 1
    pushes = [p for p in support.simulator_requests("stk_push", tenant_a.app.shortcode) if p.get("phone") == phone]
    assert len(pushes) == 1


def test_keys_of_different_developers_do_not_collide(tenant_a: Tenant, tenant_b: Tenant) -> None:
    key = secrets.token_hex(16)
    a = tenant_a.push(support.unique_phone(), amount=15, key=key)
    b = tenant_b.push(support.unique_phone(), amount=16, key=key)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


# ---------------------------------------------------------------------------------------------- tenant isolation
def test_each_developer_sees_only_their_own_payments(tenant_a: Tenant, tenant_b: Tenant) -> None:
    pay_a = tenant_a.push(support.unique_phone(), amount=21).json()
    pay_b = tenant_b.push(support.unique_phone(), amount=22).json()
    tenant_a.wait_settled(pay_a["id"])
    tenant_b.wait_settled(pay_b["id"])

    ids_a = {p["id"] for p in tenant_a.status(limit=100).json()["data"]}
    ids_b = {p["id"] for p in tenant_b.status(limit=100).json()["data"]}
    assert pay_a["id"] in ids_a and pay_a["id"] not in ids_b
    assert pay_b["id"] in ids_b and pay_b["id"] not in ids_a

    # Every cross-tenant read is a 404 indistinguishable from a missing payment.
    missing = tenant_b.status(id="pay_" + "0" * 24).json()
    for tenant, other in ((tenant_b, pay_a), (tenant_a, pay_b)):
        for params in ({"id": other["id"]}, {"checkout_request_id": other["checkout_request_id"]}):
            response = tenant.status(**params)
            assert response.status_code == 404
            error = response.json()["error"]
            assert error["code"] == missing["error"]["code"] == "payment_not_found"
            assert error["message"] == missing["error"]["message"]


def test_pushes_use_each_developers_own_shortcode(tenant_a: Tenant, tenant_b: Tenant) -> None:
    phone_a, phone_b = support.unique_phone(), support.unique_phone()
    assert tenant_a.push(phone_a).status_code == 201
    assert tenant_b.push(phone_b).status_code == 201
    assert any(p.get("phone") == phone_a for p in support.simulator_requests("stk_push", tenant_a.app.shortcode))
    assert any(p.get("phone") == phone_b for p in support.simulator_requests("stk_push", tenant_b.app.shortcode))
    assert not any(p.get("phone") == phone_a for p in support.simulator_requests("stk_push", tenant_b.app.shortcode))


# ----------------------------------------------------------------------------------------------------- listing
def test_list_is_newest_first_filtered_and_paginated() -> None:
    tenant = new_tenant()
    created = []
    for amount in (101, 102, 103, 104, 105):
        phone = support.unique_phone()
        if amount == 103:
            support.set_scenario(phone, result_code=1032, delay_ms=100)
        created.append(tenant.push(phone, amount=amount).json())
    tenant.wait_settled(created[2]["id"])

    seen: list[str] = []
    page_token = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if page_token:
            params["page_token"] = page_token
        page = tenant.status(**params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [p["id"] for p in page["data"]]
        if not page["has_more"]:
            assert page["next_page_token"] is None
            break
        page_token = page["next_page_token"]
    assert seen == [p["id"] for p in reversed(created)]

    cancelled = tenant.status(status="cancelled").json()["data"]
    assert [p["id"] for p in cancelled] == [created[2]["id"]]


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"limit": "0"}, "invalid_limit", "limit"),
        ({"limit": "1000"}, "invalid_limit", "limit"),
        ({"limit": "abc"}, "invalid_limit", "limit"),
        ({"status": "paid"}, "invalid_status", "status"),
        ({"page_token": "!!!"}, "invalid_page_token", "page_token"),
    ],
)
def test_bad_list_parameters(tenant_a: Tenant, params: dict[str, str], code: str, param: str) -> None:
    response = tenant_a.status(**params)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert response.json()["error"]["param"] == param


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"phone": "0712345678", "amount": "10", "account_reference": "A", "description": "d"}, "amount"),
        ({"phone": "0712345678", "amount": 10.5, "account_reference": "A", "description": "d"}, "amount"),
        ({"phone": "0712345678", "amount": 10**30, "account_reference": "A", "description": "d"}, "amount"),
        ({"phone": "0712345678", "amount": 150_001, "account_reference": "A", "description": "d"}, "amount"),
        ({"phone": "0712345678", "amount": -5, "account_reference": "A", "description": "d"}, "amount"),
        ({"phone": "٠٧١٢٣٤٥٦٧٨", "amount": 10, "account_reference": "A", "description": "d"}, "phone"),
        ({"phone": "0912345678", "amount": 10, "account_reference": "A", "description": "d"}, "phone"),
        ({"phone": 712345678, "amount": 10, "account_reference": "A", "description": "d"}, "phone"),
        ({"phone": "0712345678", "amount": 10, "account_reference": "A" * 13, "description": "d"}, "account_reference"),
        (
            {"phone": "0712345678", "amount": 10, "account_reference": "Ünïcødé", "description": "d"},
            "account_reference",
        ),
        ({"phone": "0712345678", "amount": 10, "account_reference": "A", "description": "pay @ shop"}, "description"),
        (
            {
                "phone": "0712345678",
                "amount": 10,
                "account_reference": "A",
                "description": "d",
                "metadata": {"a": {"b": 1}},
            },
            "metadata",
        ),
        (
            {"phone": "0712345678", "amount": 10, "account_reference": "A", "description": "d", "metadata": [1]},
            "metadata",
        ),
        ({"phone": "0712345678", "amount": 10, "account_reference": "A", "description": "d", "extra": 1}, "extra"),
        ({"amount": 10, "account_reference": "A", "description": "d"}, "phone"),
    ],
)
def test_bad_stk_push_input_is_400_naming_the_field(tenant_a: Tenant, body: dict[str, Any], param: str) -> None:
    response = requests.post(PUSH_URL, json=body, headers=tenant_a.headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"{", b'"x"', b"\x00\x01"])
def test_junk_bodies_are_400(tenant_a: Tenant, raw: bytes) -> None:
    response = requests.post(
        PUSH_URL, data=raw, headers={**tenant_a.headers, "Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400, response.text


def test_push_without_credentials_is_a_clear_4xx() -> None:
    developer = support.sign_up()
    body = {"phone": "0712345678", "amount": 10, "account_reference": "A", "description": "d"}
    response = requests.post(PUSH_URL, json=body, headers=developer.headers, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["code"] == "credentials_not_configured"


def test_daraja_rejection_carries_darajas_code(tenant_a: Tenant, tenant_b: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)
    assert tenant_a.push(phone).status_code == 201
    # A second prompt from the same developer is refused by our own phone lock before Daraja is called; another
    # developer's push to the same phone reaches Daraja, which refuses a second live prompt on a phone.
    assert tenant_a.push(phone, amount=11).status_code == 429
    busy = tenant_b.push(phone, amount=11)
    assert busy.status_code == 409, busy.text
    error = busy.json()["error"]
    assert error["type"] == "daraja_error" and error["code"] == "payer_busy"
    assert error["daraja_code"] == "500.001.1001"
