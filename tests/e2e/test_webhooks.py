"""Webhooks end to end: a developer registers a receiver over HTTP, a payment settles through the simulator's real
callback, and the event travels the platform's own path (the outbox commit, the Firestore trigger, the Cloud Tasks
emulator's webhookdelivery function) to a real HTTP receiver on 127.0.0.1, which verifies it with the
`standardwebhooks` reference library as any receiver would. Retry delays come from functions/.env.local
(WEBHOOK_RETRY_SCALE), so a retry takes a fraction of a second to a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests import support
from tests.support import WebhookReceiver
from tests.tenants import Tenant, new_tenant

ENDPOINTS_URL = support.function_url("webhook_endpoints")
EVENTS_URL = support.function_url("events")


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return new_tenant()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def register(tenant: Tenant, url: str, **extra: Any) -> dict[str, Any]:
    response = requests.post(ENDPOINTS_URL, json={"url": url, **extra}, headers=tenant.headers, timeout=60)
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def pay(tenant: Tenant) -> dict[str, Any]:
    phone = support.unique_phone()
    response = tenant.push("0" + phone[3:], amount=25)
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


def events_of(tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    response = requests.get(EVENTS_URL, params=params, headers=tenant.headers, timeout=60)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def test_a_settled_payment_reaches_the_receiver_signed(tenant: Tenant, receiver: WebhookReceiver) -> None:
    url = receiver.new_url()
    endpoint = register(tenant, url, description="orders")
    assert endpoint["object"] == "webhook_endpoint" and endpoint["id"].startswith("we_")
    assert endpoint["status"] == "enabled" and endpoint["enabled_events"] == ["*"]
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    payment = pay(tenant)
    assert tenant.wait_settled(payment["id"])["status"] == "succeeded"
    received = receiver.wait_for(url, 2, timeout_s=90)
    payloads = [Webhook(secret).verify(delivery.body, delivery.headers) for delivery in received]
    by_type = {payload["type"]: payload for payload in payloads}
    assert set(by_type) == {"payment.created", "payment.succeeded"}
    assert by_type["payment.succeeded"]["data"]["id"] == payment["id"]
    assert by_type["payment.succeeded"]["data"]["status"] == "succeeded"
    assert by_type["payment.created"]["data"]["status"] == "pending"
    # The secret is shown once: never in a read of the endpoint.
    read = requests.get(f"{ENDPOINTS_URL}/{endpoint['id']}", headers=tenant.headers, timeout=60).json()
    assert "secret" not in read and read["description"] == "orders"
    # The events API tells the same story, and the delivery log holds each attempt.
    mine = [event for event in events_of(tenant) if event["data"]["id"] == payment["id"]]
    assert [event["type"] for event in mine] == ["payment.succeeded", "payment.created"]  # newest first
    succeeded = mine[0]
    assert succeeded["id"] in {delivery.headers["webhook-id"] for delivery in received}
    one = requests.get(f"{EVENTS_URL}/{succeeded['id']}", headers=tenant.headers, timeout=60)
    assert one.status_code == 200 and one.json()["data"]["id"] == payment["id"]
    log = requests.get(f"{EVENTS_URL}/{succeeded['id']}/deliveries", headers=tenant.headers, timeout=60).json()
    [delivery] = [d for d in log["data"] if d["endpoint_id"] == endpoint["id"]]
    assert delivery["status"] == "succeeded" and delivery["attempts"][0]["status_code"] == 200
    assert [e["type"] for e in events_of(tenant, type="payment.created")] and all(
        e["type"] == "payment.created" for e in events_of(tenant, type="payment.created")
    )


def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(
    tenant: Tenant, receiver: WebhookReceiver
) -> None:
    url = receiver.new_url()
    receiver.script(url, (500, {}), (500, {}))
    endpoint = register(tenant, url, enabled_events=["payment.succeeded"])
    payment = pay(tenant)
    received = receiver.wait_for(url, 3, timeout_s=90)
    assert [d.headers["webhook-id"] for d in received] == [received[0].headers["webhook-id"]] * 3
    for delivery in received:
        assert Webhook(endpoint["secret"]).verify(delivery.body, delivery.headers)["data"]["id"] == payment["id"]
    log = requests.get(
        f"{EVENTS_URL}/{received[0].headers['webhook-id']}/deliveries", headers=tenant.headers, timeout=60
    ).json()
    [delivery] = [d for d in log["data"] if d["endpoint_id"] == endpoint["id"]]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(tenant: Tenant, receiver: WebhookReceiver) -> None:
    url = receiver.new_url()
    endpoint = register(tenant, url, enabled_events=["payment.succeeded"])
    receiver.stop()
    try:
        payment = pay(tenant)
        assert tenant.wait_settled(payment["id"])["status"] == "succeeded"

        def refused_twice() -> dict[str, Any] | None:
            mine = [e for e in events_of(tenant, type="payment.succeeded") if e["data"]["id"] == payment["id"]]
            if not mine:
                return None
            log = requests.get(f"{EVENTS_URL}/{mine[0]['id']}/deliveries", headers=tenant.headers, timeout=60).json()
            found = [d for d in log["data"] if d["endpoint_id"] == endpoint["id"]]
            return mine[0] if found and len(found[0]["attempts"]) >= 2 else None

        event = support.wait_for(refused_twice, 60, 0.3, "two attempts on the receiver that is down")
    finally:
        receiver.start()
    [delivery] = receiver.wait_for(url, 1, timeout_s=90)
    assert delivery.headers["webhook-id"] == event["id"]
    assert Webhook(endpoint["secret"]).verify(delivery.body, delivery.headers)["data"]["id"] == payment["id"]
    log = requests.get(f"{EVENTS_URL}/{event['id']}/deliveries", headers=tenant.headers, timeout=60).json()
    [logged] = [d for d in log["data"] if d["endpoint_id"] == endpoint["id"]]
    errors = [a["error"] for a in logged["attempts"]]
    assert errors[:2] == ["connection_refused", "connection_refused"] and errors[-1] is None
    assert logged["status"] == "succeeded"


def test_410_disables_the_endpoint(tenant: Tenant, receiver: WebhookReceiver) -> None:
    url = receiver.new_url()
    receiver.script(url, (410, {}))
    endpoint = register(tenant, url, enabled_events=["payment.succeeded"])
    pay(tenant)
    receiver.wait_for(url, 1, timeout_s=90)

    def disabled() -> dict[str, Any] | None:
        read: dict[str, Any] = requests.get(
            f"{ENDPOINTS_URL}/{endpoint['id']}", headers=tenant.headers, timeout=60
        ).json()
        return read if read["status"] == "disabled" else None

    read = support.wait_for(disabled, 15, 0.3, "the endpoint to be disabled")
    assert read["disabled_reason"] == "gone"


def test_redeliver_and_rotation(tenant: Tenant, receiver: WebhookReceiver) -> None:
    url = receiver.new_url()
    endpoint = register(tenant, url, enabled_events=["payment.succeeded"])
    pay(tenant)
    [first] = receiver.wait_for(url, 1, timeout_s=90)
    event_id = first.headers["webhook-id"]
    rotated = requests.post(f"{ENDPOINTS_URL}/{endpoint['id']}/rotate_secret", headers=tenant.headers, timeout=60)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]
    resent = requests.post(
        f"{EVENTS_URL}/{event_id}/redeliver", json={"endpoint_id": endpoint["id"]}, headers=tenant.headers, timeout=60
    )
    assert resent.status_code == 202, resent.text
    assert resent.json()["endpoint_ids"] == [endpoint["id"]]
    _, again = receiver.wait_for(url, 2, timeout_s=90)
    assert again.headers["webhook-id"] == event_id
    # During the overlap both secrets sign: receivers on either one accept it.
    assert len(again.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint["secret"]).verify(again.body, again.headers)
    Webhook(new_secret).verify(again.body, again.headers)


def test_a_deleted_endpoint_gets_nothing_more(tenant: Tenant, receiver: WebhookReceiver) -> None:
    url = receiver.new_url()
    endpoint = register(tenant, url, enabled_events=["payment.succeeded"])
    pay(tenant)
    receiver.wait_for(url, 1, timeout_s=90)  # it was receiving
    deleted = requests.delete(f"{ENDPOINTS_URL}/{endpoint['id']}", headers=tenant.headers, timeout=60)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    watcher = receiver.new_url()
    register(tenant, watcher, enabled_events=["payment.succeeded"])
    later = pay(tenant)
    [seen] = receiver.wait_for(watcher, 1, timeout_s=90)  # the later payment's event has gone out by now
    assert seen.json()["data"]["id"] == later["id"]
    assert len(receiver.deliveries(url)) == 1


def test_developers_see_and_receive_only_their_own_events(tenant: Tenant, receiver: WebhookReceiver) -> None:
    other = new_tenant()
    theirs = receiver.new_url()
    register(other, theirs)
    url = receiver.new_url()
    register(tenant, url, enabled_events=["payment.succeeded"])
    pay(tenant)
    [delivery] = receiver.wait_for(url, 1, timeout_s=90)
    event_id = delivery.headers["webhook-id"]
    for path in (event_id, f"{event_id}/deliveries"):
        response = requests.get(f"{EVENTS_URL}/{path}", headers=other.headers, timeout=60)
        assert response.status_code == 404 and response.json()["error"]["code"] == "event_not_found"
    resent = requests.post(f"{EVENTS_URL}/{event_id}/redeliver", headers=other.headers, timeout=60)
    assert resent.status_code == 404
    assert receiver.deliveries(theirs) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://example.com/hook"}, "insecure_url"),
        ({"url": "ftp://example.com/hook"}, "invalid_url"),
        ({"url": "https://user:pw@example.com/hook"}, "invalid_url"),
        ({"url": "https://example.com/hook", "enabled_events": ["payment.paid"]}, "invalid_enabled_events"),
        ({"url": "https://example.com/hook", "enabled_events": "payment.failed"}, "invalid_enabled_events"),
        ({"url": "https://example.com/hook", "secret": "whsec_mine"}, "unknown_parameter"),
        ({}, "invalid_url"),
        ([], "invalid_body"),
    ],
)
def test_bad_endpoints_are_400(tenant: Tenant, body: Any, code: str) -> None:
    response = requests.post(ENDPOINTS_URL, json=body, headers=tenant.headers, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code


def test_unknown_things_are_404_and_wrong_methods_405(tenant: Tenant) -> None:
    assert requests.get(f"{ENDPOINTS_URL}/we_nope", headers=tenant.headers, timeout=60).status_code == 404
    assert requests.get(f"{EVENTS_URL}/evt_nope", headers=tenant.headers, timeout=60).status_code == 404
    assert requests.get(f"{EVENTS_URL}/evt_nope/whatever", headers=tenant.headers, timeout=60).status_code == 404
    assert requests.put(ENDPOINTS_URL, json={}, headers=tenant.headers, timeout=60).status_code == 405
    assert (
        requests.get(EVENTS_URL, params={"type": "payment.paid"}, headers=tenant.headers, timeout=60).status_code == 400
    )
    assert requests.get(ENDPOINTS_URL, timeout=60).status_code == 401


def test_the_event_is_delivered_when_the_settling_instance_dies_right_after_its_commit(
    tenant: Tenant, receiver: WebhookReceiver
) -> None:
    """GATEWAY_FAULT_INJECTION (local stack only): metadata {"fault": "die_after_settle_commit"} ends the worker
    process that handles the callback just after the commit that settles the payment. The event was in that
    commit, and its delivery runs from the Firestore trigger and the task queue, not from that process."""
    url = receiver.new_url()
    endpoint = register(tenant, url, enabled_events=["payment.succeeded"])
    phone = support.unique_phone()
    response = tenant.push("0" + phone[3:], amount=25, metadata={"fault": "die_after_settle_commit"})
    assert response.status_code == 201, response.text
    payment = response.json()
    [delivery] = receiver.wait_for(url, 1, timeout_s=90)
    event = Webhook(endpoint["secret"]).verify(delivery.body, delivery.headers)
    assert event["data"]["id"] == payment["id"] and event["data"]["status"] == "succeeded"
    assert tenant.wait_settled(payment["id"])["status"] == "succeeded"
