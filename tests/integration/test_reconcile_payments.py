"""reconcile_payments, called directly as the scheduler would, settles lost callbacks across developers through
STK Push Query. Payments are created over HTTP through the Functions emulator; the sweep runs in-process with the
same library, pointed at the same emulators and simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests import support
from tests.tenants import Tenant, new_tenant, payment_doc, use_in_process_gateway


@pytest.fixture
def in_process_gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from gateway.settings import get_settings

    use_in_process_gateway(monkeypatch, RECONCILE_AFTER_SECONDS="1", PENDING_QUERY_INTERVAL_SECONDS="0")
    yield
    get_settings.cache_clear()


def lost_callback_push(tenant: Tenant, result_code: int) -> dict[str, Any]:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=result_code, delay_ms=100, callbacks=0)
    response = tenant.push(phone, amount=33)
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


def stored_status(tenant: Tenant, payment_id: str) -> str:
    return str(payment_doc(tenant, payment_id)["status"])


def test_reconcile_settles_lost_callbacks_of_every_developer(in_process_gateway: None) -> None:
    from gateway import api

    tenant_a, tenant_b = new_tenant(), new_tenant()
    paid = lost_callback_push(tenant_a, 0)
    cancelled = lost_callback_push(tenant_b, 1032)
    time.sleep(3.5)  # past next_check_at (RECONCILE_AFTER_SECONDS=3 in the local stack); the payers have answered
    assert stored_status(tenant_a, paid["id"]) == "pending"
    assert stored_status(tenant_b, cancelled["id"]) == "pending"

    summary = api.reconcile_payments()

    # The sweep spans the whole shared stack, where other tiers leave payments that fail on purpose (a query answer
    # about another request, say): only these two are this test's to judge.
    assert summary["examined"] >= 2 and summary["settled"] >= 2
    assert stored_status(tenant_a, paid["id"]) == "succeeded"
    assert stored_status(tenant_b, cancelled["id"]) == "cancelled"
    settled = requests.get(
        support.function_url("payment_status"), params={"id": paid["id"]}, headers=tenant_a.headers, timeout=30
    ).json()
    assert "settled_by_query" in settled["flags"] and settled["result_code"] == "0"
    # Each query was made with the owning developer's own shortcode.
    assert any(
        q.get("checkout_request_id") == paid["checkout_request_id"]
        for q in support.simulator_requests("stk_query", tenant_a.app.shortcode)
    )
    assert any(
        q.get("checkout_request_id") == cancelled["checkout_request_id"]
        for q in support.simulator_requests("stk_query", tenant_b.app.shortcode)
    )


def test_reconcile_leaves_settled_payments_alone(in_process_gateway: None) -> None:
    from gateway import api

    tenant = new_tenant()
    phone = support.unique_phone()
    payment = tenant.push(phone, amount=44).json()
    settled = tenant.wait_settled(payment["id"])
    assert settled["status"] == "succeeded"
    api.reconcile_payments()
    after = requests.get(
        support.function_url("payment_status"), params={"id": payment["id"]}, headers=tenant.headers, timeout=30
    ).json()
    assert after == settled
