"""The sweep behind the Firestore trigger, end to end. Firestore triggers are not retried, so an event whose trigger
failed or was dropped would never be delivered; sweep_webhook_events fans such events out once they are older than
the grace period.

A payment's metadata {"fault": "skip_trigger_fan_out"} (GATEWAY_FAULT_INJECTION, local stack only) makes the stack's
on_event_created trigger return without fanning the payment's events out, as a dropped trigger would. The sweep then
runs in-process, as the scheduler's instance would (tests/integration/test_reconcile_payments.py does the same for
reconcile_payments), with the same library pointed at the same emulators; its tasks go to the Tasks emulator, whose
webhookdelivery function POSTs to a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from scripts import stack_config
from tests import support
from tests.support import WebhookReceiver
from tests.tenants import Tenant, local_settings, new_tenant, use_in_process_gateway

ENDPOINTS_URL = support.function_url("webhook_endpoints")
EVENTS_URL = support.function_url("events")
GRACE_S = local_settings().webhook_fan_out_grace_s


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's gateway library, set up as the scheduled function's instance on the stack is."""
    from gateway import container
    from gateway.settings import get_settings

    use_in_process_gateway(monkeypatch)
    # firebase-admin finds the Tasks emulator through this variable, as the Functions emulator sets it for the stack.
    monkeypatch.setenv("CLOUD_TASKS_EMULATOR_HOST", stack_config.load().endpoints["tasks"].address)
    monkeypatch.setattr(container, "_webhooks", None)
    yield
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def register(tenant: Tenant, url: str) -> dict[str, Any]:
    response = requests.post(ENDPOINTS_URL, json={"url": url}, headers=tenant.headers, timeout=60)
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def pay(tenant: Tenant, phone: str, **extra: Any) -> dict[str, Any]:
    response = tenant.push("0" + phone[3:], amount=25, **extra)
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    assert tenant.wait_settled(payment["id"])["status"] == "succeeded"
    return payment


def stored_events(tenant: Tenant, payment_id: str) -> dict[str, dict[str, Any]]:
    """The payment's event documents as stored (the events API does not show the fan-out flag), by type."""
    from google.cloud.firestore import FieldFilter

    events = support.firestore_client().collection(f"developers/{tenant.developer.uid}/events")
    mine = events.where(filter=FieldFilter("payment_id", "==", payment_id)).stream()
    return {doc.to_dict()["type"]: doc.to_dict() for doc in mine}


def of_payment(received: list[WebhookReceiver.Delivery], payment_id: str) -> list[WebhookReceiver.Delivery]:
    return [delivery for delivery in received if delivery.json()["data"]["id"] == payment_id]


def sweep_until_marked(tenant: Tenant, payment_id: str) -> list[dict[str, int]]:
    """Run the scheduled sweep until the payment's events are marked. On the shared stack other suites leave a backlog
    of events the emulator's one-at-a-time trigger has not reached yet; the sweep takes the oldest first, at most
    webhook_sweep_max_events per run, so it may take a few runs to come to this test's."""
    from gateway import api

    runs: list[dict[str, int]] = []

    def marked() -> bool:
        runs.append(api.sweep_webhook_events())
        assert runs[-1]["errors"] == 0, runs[-1]
        return all(event.get("fanned_out") is True for event in stored_events(tenant, payment_id).values())

    support.wait_for(marked, timeout_s=180, interval_s=0.1, what="the sweep to fan the events out")
    return runs


def wait_past_grace(events: dict[str, dict[str, Any]]) -> None:
    newest = max(event["created_at"] for event in events.values())
    time.sleep(max(0.0, (newest + timedelta(seconds=GRACE_S) - datetime.now(UTC)).total_seconds()) + 0.5)


def assert_delivered_once(
    receiver: WebhookReceiver, url: str, secret: str, tenant: Tenant, payment_id: str, events: dict[str, Any]
) -> None:
    receiver.wait_for(url, 2, timeout_s=60)
    time.sleep(3.0)  # time enough for a duplicate to arrive, if one had been queued
    received = of_payment(receiver.deliveries(url), payment_id)
    assert sorted(d.json()["type"] for d in received) == ["payment.created", "payment.succeeded"]  # once each
    for delivery in received:
        assert Webhook(secret).verify(delivery.body, delivery.headers)["data"]["id"] == payment_id
    assert {d.headers["webhook-id"] for d in received} == {event["id"] for event in events.values()}
    for event in stored_events(tenant, payment_id).values():
        assert event["fanned_out"] is True and event["fanned_out_at"] > event["created_at"]
        log = requests.get(f"{EVENTS_URL}/{event['id']}/deliveries", headers=tenant.headers, timeout=60).json()
        [delivery] = log["data"]
        assert delivery["status"] == "succeeded" and [a["status_code"] for a in delivery["attempts"]] == [200]


def test_an_event_whose_trigger_never_fanned_it_out_is_delivered_once_by_the_sweep(
    receiver: WebhookReceiver, scheduler: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = new_tenant()
    url = receiver.new_url()
    secret = register(tenant, url)["secret"]
    dropped_phone = support.unique_phone()
    dropped = pay(tenant, dropped_phone, metadata={"fault": "skip_trigger_fan_out"})
    left = stored_events(tenant, dropped["id"])
    assert set(left) == {"payment.created", "payment.succeeded"}
    assert all(event["fanned_out"] is False for event in left.values())  # written unmarked, in the payment's commits
    wait_past_grace(left)
    # Their trigger skips them (the fault): whenever it runs, nothing reaches the receiver and nothing marks them.
    # (On a busy shared stack the emulator's trigger may run minutes late, so this does not wait for it.)
    assert of_payment(receiver.deliveries(url), dropped["id"]) == []
    assert all(event["fanned_out"] is False for event in stored_events(tenant, dropped["id"]).values())

    runs = sweep_until_marked(tenant, dropped["id"])

    assert sum(run["fanned_out"] for run in runs) >= 2
    assert_delivered_once(receiver, url, secret, tenant, dropped["id"], left)
    # Running it again sends nothing more.
    from gateway import api

    api.sweep_webhook_events()
    time.sleep(2.0)
    assert len(of_payment(receiver.deliveries(url), dropped["id"])) == 2
    # The sweep said what it did, in counts, and never a phone number.
    out = capsys.readouterr().out
    assert '"event": "webhook_sweep_run"' in out and '"fanned_out":' in out
    assert dropped_phone not in out and dropped_phone[3:] not in out


def test_a_sweep_racing_other_fan_outs_of_the_same_events_still_delivers_each_once(
    receiver: WebhookReceiver, scheduler: None
) -> None:
    """As a trigger the platform ran late (or twice) would: direct fan-outs of the same events, at the same moment
    as the sweep. Their first tasks share names in the Tasks emulator, and one commit marks each event."""
    from gateway import container

    tenant = new_tenant()
    url = receiver.new_url()
    secret = register(tenant, url)["secret"]
    dropped = pay(tenant, support.unique_phone(), metadata={"fault": "skip_trigger_fan_out"})
    left = stored_events(tenant, dropped["id"])
    assert all(event["fanned_out"] is False for event in left.values())
    wait_past_grace(left)
    deliveries = container.webhooks().deliveries
    start = threading.Barrier(5)
    failures: list[BaseException] = []  # a racer's exception would otherwise only be printed by its thread

    def race(event_id: str) -> None:
        start.wait(timeout=60)
        try:
            deliveries.fan_out(tenant.developer.uid, event_id)
        except Exception as failure:  # asserted below
            failures.append(failure)

    racers = [threading.Thread(target=race, args=(event["id"],)) for event in left.values() for _ in range(2)]
    for racer in racers:
        racer.start()
    start.wait(timeout=60)
    sweep_until_marked(tenant, dropped["id"])
    for racer in racers:
        racer.join(timeout=60)
    assert not any(racer.is_alive() for racer in racers) and failures == []
    assert_delivered_once(receiver, url, secret, tenant, dropped["id"], left)
