"""The fault tier: one test per way a push can break between the payer's prompt and our record of it, against the
real stack (Functions, Firestore and Auth emulators, the Daraja simulator's fault scenarios).

Each test shows three things: the payment exists and ends in the right state; the payer was prompted at most once
per Idempotency-Key (counted in the simulator's own log); and the ledger traces every paid prompt.

Timings come from functions/.env.local: Daraja timeout 3 s, push lease 6 s, confirmation window 8 s.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests import ledger, support
from tests.tenants import (
    CREDENTIALS_URL,
    Tenant,
    local_settings,
    new_tenant,
    payment_doc,
    raw_callbacks,
    use_in_process_gateway,
)

LOCAL = local_settings()  # functions/.env.local, as the stack's functions read it
DARAJA_TIMEOUT_S = LOCAL.daraja_timeout_s
PUSH_LEASE_S = LOCAL.push_lease_s
RECONCILE_AFTER_S = LOCAL.reconcile_after_s + 0.5  # an accepted payment's first check, plus a margin


@pytest.fixture
def tenant() -> Tenant:
    return new_tenant()


def prompts_of(tenant: Tenant, phone: str) -> list[dict[str, Any]]:
    return ledger.prompts(consumer_key=tenant.app.consumer_key, phone=phone)


def assert_traced(tenant: Tenant) -> None:
    book = ledger.check(consumer_key=tenant.app.consumer_key)
    assert book.prompts >= 1 and book.lost == [], book.line()


def push(tenant: Tenant, phone: str, key: str, amount: int = 20, **extra: Any) -> requests.Response:
    return tenant.push(phone, amount=amount, key=key, **extra)


@pytest.mark.parametrize(
    ("push_answer", "extra"),
    [
        ("accept_then_hang", {"answer_delay_ms": 8000}),
        ("accept_then_500", {}),
        ("reset", {}),
    ],
)
def test_an_unknown_push_outcome_is_a_202_payment_that_its_callback_settles(
    tenant: Tenant, push_answer: str, extra: dict[str, Any]
) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(8)
    # The payer answers after the gateway gave up waiting, as on a slow day at Safaricom.
    support.set_scenario(phone, push_answer=push_answer, result_code=0, delay_ms=int(DARAJA_TIMEOUT_S * 1000) + 1500, **extra)
    response = push(tenant, phone, key)
    assert response.status_code == 202, response.text
    payment = response.json()
    assert payment["status"] == "pending" and "outcome_unknown" in payment["flags"]
    assert payment["checkout_request_id"] is None

    retry = push(tenant, phone, key)
    assert retry.status_code in (201, 202), retry.text
    assert retry.json()["id"] == payment["id"] and retry.headers.get("Idempotent-Replayed") == "true"

    settled = tenant.wait_settled(payment["id"], timeout_s=30)
    assert settled["status"] == "succeeded" and settled["mpesa_receipt_number"]
    assert settled["checkout_request_id"] and "outcome_unknown" not in settled["flags"]
    assert len(prompts_of(tenant, phone)) == 1
    assert_traced(tenant)


def test_a_failed_commit_after_daraja_accepted_leaves_a_payment_the_callback_settles(tenant: Tenant) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(8)
    support.set_scenario(phone, result_code=0, delay_ms=1500)
    response = push(tenant, phone, key, metadata={"fault": "fail_accept_commit"})
    assert response.status_code == 202, response.text
    payment = response.json()
    # The claim still holds its lease (the answer was never stored): a retry at once is told to come back.
    early = push(tenant, phone, key, metadata={"fault": "fail_accept_commit"})
    assert early.status_code == 409, early.text
    assert early.json()["error"]["code"] == "idempotency_in_progress"
    assert 1 <= int(early.headers["Retry-After"]) <= 5
    # The intent commit stored the payment before Daraja was called; the callback finds it through its URL token.
    settled = tenant.wait_settled(payment["id"], timeout_s=30)
    assert settled["status"] == "succeeded" and settled["mpesa_receipt_number"]

    # After the lease, the retry is answered from that payment.
    support.wait_for(
        lambda: push(tenant, phone, key, metadata={"fault": "fail_accept_commit"}).status_code != 409,
        timeout_s=PUSH_LEASE_S + 10,
        interval_s=1.0,
        what="the lease to run out",
    )
    late = push(tenant, phone, key, metadata={"fault": "fail_accept_commit"})
    assert late.json()["id"] == payment["id"] and late.json()["status"] == "succeeded"
    assert len(prompts_of(tenant, phone)) == 1
    assert_traced(tenant)


def test_an_instance_killed_between_the_two_commits_loses_nothing(tenant: Tenant) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(8)
    support.set_scenario(phone, result_code=0, delay_ms=1500)
    try:
        response = push(tenant, phone, key, metadata={"fault": "die_before_accept_commit"})
        assert response.status_code >= 500, response.text
    except requests.ConnectionError:
        pass  # the worker died mid-answer
    # The payer was prompted and pays; the callback finds the intent through its token.
    [prompt] = support.wait_for(
        lambda: [p for p in prompts_of(tenant, phone) if p["callbacks_sent"]] or None, what="the paid callback"
    )
    book = ledger.check(timeout_s=30, consumer_key=tenant.app.consumer_key)
    assert book.prompts == 1 and book.lost == [], book.line()

    # A retry after the lease answers from the payment the dead instance created, and prompts nobody.
    time.sleep(PUSH_LEASE_S)
    retry = push(tenant, phone, key, metadata={"fault": "die_before_accept_commit"})
    assert retry.status_code in (201, 202), retry.text
    assert retry.json()["status"] == "succeeded"
    assert retry.json()["checkout_request_id"] == prompt["checkout_request_id"]
    assert len(prompts_of(tenant, phone)) == 1


def test_a_callback_before_the_second_commit_settles_the_payment(tenant: Tenant) -> None:
    phone, key = support.unique_phone(), secrets.token_hex(8)
    # The payer answers at 100 ms; Daraja's HTTP answer to the push comes at 1.5 s (inside our 3 s timeout).
    support.set_scenario(phone, push_answer="accept_then_hang", answer_delay_ms=1500, result_code=0, delay_ms=100)
    response = push(tenant, phone, key)
    assert response.status_code == 201, response.text
    [prompt] = prompts_of(tenant, phone)
    assert prompt["callback_statuses"] == [200], "the early callback was accepted, not refused"
    settled = tenant.wait_settled(response.json()["id"])
    assert settled["status"] == "succeeded" and settled["checkout_request_id"] == prompt["checkout_request_id"]
    assert_traced(tenant)


def test_a_callback_firestore_could_not_store_as_json_still_settles(tenant: Tenant) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=60_000, callbacks=0)
    payment = push(tenant, phone, secrets.token_hex(8), amount=77).json()
    [prompt] = prompts_of(tenant, phone)
    deep: Any = "bottom"
    for _ in range(30):
        deep = {"next": deep}
    body = support.success_callback(
        prompt["checkout_request_id"], 77, int(phone), "UNSTORABLE1", prompt["merchant_request_id"]
    )
    callback = body["Body"]["stkCallback"]
    callback["CallbackMetadata"]["Item"][2]["Value"] = 2**64  # Balance: beyond Firestore's 64-bit integers
    callback["Extra"] = deep  # nesting deeper than Firestore's 20 levels
    response = requests.post(prompt["callback_url"], json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert tenant.status(id=payment["id"]).json()["status"] == "succeeded"
    [audit] = raw_callbacks(tenant, payment["id"])
    assert json.loads(audit["raw_body"]) == body


@pytest.fixture
def reconciler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from gateway.settings import get_settings

    use_in_process_gateway(monkeypatch)
    yield
    get_settings.cache_clear()


def test_reconcile_asks_with_the_app_that_made_the_payment(tenant: Tenant, reconciler: None) -> None:
    from gateway import api

    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=100, callbacks=0)  # Daraja loses the callback
    payment = tenant.push(phone, amount=64).json()
    # The developer moves to production with another app before the reconciler runs.
    production = support.register_simulator_app("prod")
    moved = requests.put(
        CREDENTIALS_URL,
        json=production.credentials_body(environment="production"),
        headers=tenant.headers,
        timeout=30,
    )
    assert moved.status_code == 200, moved.text
    time.sleep(RECONCILE_AFTER_S)

    api.reconcile_payments()

    assert payment_doc(tenant, payment["id"])["status"] == "succeeded"
    queries = [
        q
        for q in support.simulator_requests("stk_query")
        if q.get("checkout_request_id") == payment["checkout_request_id"]
    ]
    assert queries and {q["consumer_key"] for q in queries} == {tenant.app.consumer_key}
    assert len(prompts_of(tenant, phone)) == 1


def test_a_query_that_is_not_final_leaves_the_payment_pending(tenant: Tenant, reconciler: None) -> None:
    from gateway import api

    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=100, callbacks=0, query_answer={"ResultCode": "4999", "ResultDesc": "?"})
    payment = tenant.push(phone, amount=65).json()
    time.sleep(RECONCILE_AFTER_S)
    api.reconcile_payments()
    doc = payment_doc(tenant, payment["id"])
    assert doc["status"] == "pending" and doc["query_attempts"] >= 1


def test_a_query_answer_about_another_request_is_refused(tenant: Tenant, reconciler: None) -> None:
    from gateway import api

    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=100, callbacks=0, query_answer="wrong_checkout_id")
    payment = tenant.push(phone, amount=66).json()
    time.sleep(RECONCILE_AFTER_S)
    api.reconcile_payments()
    assert payment_doc(tenant, payment["id"])["status"] == "pending"


def test_an_unknown_outcome_without_callback_ends_unconfirmed_and_a_late_success_still_counts(
    tenant: Tenant, reconciler: None
) -> None:
    from gateway import api

    phone = support.unique_phone()
    support.set_scenario(phone, push_answer="accept_then_500", result_code=0, delay_ms=100, callbacks=0)
    payment = tenant.push(phone, amount=81).json()
    assert "outcome_unknown" in payment["flags"]
    support.wait_for(
        lambda: api.reconcile_payments() and payment_doc(tenant, payment["id"])["status"] == "unconfirmed",
        timeout_s=20,
        interval_s=1.0,
        what="the confirmation window to close",
    )
    # Money received is never hidden: the late callback still makes it a success, flagged for a human.
    [prompt] = prompts_of(tenant, phone)
    late = support.success_callback(
        prompt["checkout_request_id"], 81, int(phone), "LATE000001", prompt["merchant_request_id"]
    )
    assert requests.post(prompt["callback_url"], json=late, timeout=30).status_code == 200
    after = tenant.status(id=payment["id"]).json()
    assert after["status"] == "succeeded" and "success_after_terminal" in after["flags"]
    assert after["mpesa_receipt_number"] == "LATE000001"
