"""Webhook delivery on the real adapters: endpoints and the delivery log in the Firestore emulator, signing secrets
in the Secret Manager emulator, real HTTP to a receiver on 127.0.0.1. Only the task queue is a recording stand-in,
drained here by hand, so each step (fan-out, attempt, retry, the next task) can be checked on its own; the e2e tier
runs the same path through the Firestore trigger and the Cloud Tasks emulator.

The rig uses a project of its own on the same emulators: the running functions' Firestore trigger fires only for
the stack's project, so their real deliveries never race the ones driven here.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway import errors
from gateway.domain.errors import ValidationError
from gateway.http import Developer
from gateway.repository import AddEvent, PaymentRepository
from gateway.services.webhooks import NotDue, Webhooks
from gateway.settings import Settings
from gateway.webhook_secrets import SecretManagerVersions, WebhookSecrets, secret_id
from gateway.webhook_store import WebhookStore
from gateway.webhook_transport import WebhookTransport
from tests import support
from tests.support import WebhookReceiver

RIG_PROJECT_ID = "demo-webhooks-integration"  # demo-: the local-stack guard trusts it, as it does the stack's


@dataclass
class RecordingQueue:
    """Keeps one task per name, as Cloud Tasks does."""

    tasks: list[tuple[str, str, str, float]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def enqueue(self, uid: str, event_id: str, endpoint_id: str, delay_s: float, task_id: str | None = None) -> None:
        if task_id is not None:
            if task_id in self.names:
                return
            self.names.add(task_id)
        self.tasks.append((uid, event_id, endpoint_id, delay_s))


@dataclass
class Rig:
    webhooks: Webhooks
    queue: RecordingQueue
    store: WebhookStore
    repository: PaymentRepository
    receiver: WebhookReceiver
    settings: Settings

    def drain(self, max_tasks: int = 30) -> list[str]:
        """Run queued tasks as the queue would (an early task is tried again after its wait) until none is left."""
        outcomes: list[str] = []
        for _ in range(max_tasks):
            if not self.queue.tasks:
                return outcomes
            uid, event_id, endpoint_id, _delay = self.queue.tasks.pop(0)
            while True:
                try:
                    outcomes.append(self.webhooks.deliveries.attempt(uid, event_id, endpoint_id))
                    break
                except NotDue as early:
                    time.sleep(min(early.wait_s, 2.0))
        raise AssertionError(f"more than {max_tasks} tasks: {self.queue.tasks}")

    def event(self, uid: str, event_type: str = "payment.succeeded", environment: str = "sandbox") -> str:
        """An event as a payment commit writes it (repository.AddEvent), then the trigger's fan-out."""
        event_id = "evt_" + secrets.token_hex(12)
        payment_id = "pay_" + secrets.token_hex(6)
        data: dict[str, Any] = {
            "object": "payment",
            "id": payment_id,
            "status": "succeeded",
            "amount": 10,
            "environment": environment,
        }
        self.repository.commit([AddEvent(uid, event_id, event_type, datetime.now(UTC), payment_id, data)])
        self.webhooks.deliveries.fan_out(uid, event_id)
        return event_id


def build_rig(
    project_id: str = RIG_PROJECT_ID,
    store_type: type[WebhookStore] = WebhookStore,
    sleep: Callable[[float], None] = time.sleep,
    **overrides: Any,
) -> Rig:
    """The real adapters on the emulators around a recording queue (test_webhook_sweep builds its rig here too)."""
    settings = Settings(
        project_id=project_id,
        secret_manager_emulator_host=support.SECRET_MANAGER_HOST,
        firestore_emulator_host=support.FIRESTORE_HOST,
        webhook_retry_scale=0.001,  # 5 s -> 5 ms, 5 min -> 0.3 s, 30 min -> 1.8 s
        webhook_early_task_wait_s=3.0,
        webhook_timeout_s=2.0,
        **overrides,
    )
    queue = RecordingQueue()
    store = store_type(settings)
    webhooks = Webhooks.build(
        settings,
        store,
        WebhookSecrets(SecretManagerVersions(settings)),
        WebhookTransport(settings.webhook_timeout_s, allow_loopback=settings.local_stack_trusted),
        queue,
        sleep=sleep,
    )
    return Rig(webhooks, queue, store, PaymentRepository(settings), WebhookReceiver(), settings)


@pytest.fixture
def rig() -> Iterator[Rig]:
    built = build_rig()
    yield built
    built.receiver.close()


def developer() -> Developer:
    return Developer("webhooks-" + secrets.token_hex(6))


def verify(secret: str, delivery: WebhookReceiver.Delivery) -> Any:
    return Webhook(secret).verify(delivery.body, delivery.headers)


def test_a_delivery_is_signed_as_standard_webhooks_and_logged(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, secret = rig.webhooks.endpoints.create(alice, {"url": url, "enabled_events": ["payment.succeeded"]})
    assert secret.startswith("whsec_")
    event_id = rig.event(alice.uid)
    assert rig.drain() == ["succeeded"]
    [delivery] = rig.receiver.wait_for(url)
    payload = verify(secret, delivery)
    assert delivery.headers["webhook-id"] == event_id
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
    assert payload["type"] == "payment.succeeded" and payload["data"]["object"] == "payment"
    [logged] = rig.webhooks.events.deliveries(alice, event_id)
    assert logged.status == "succeeded" and [a.status_code for a in logged.attempts] == [200]
    assert json.loads(logged.attempts[0].response_excerpt) == {"received": True}
    # The secret is in Secret Manager only: the endpoint document names versions.
    stored = rig.store.client.document(f"developers/{alice.uid}/webhook_endpoints/{endpoint.id}").get().to_dict()
    assert "whsec_" not in json.dumps(stored, default=str)


def test_unsubscribed_types_and_other_developers_endpoints_get_nothing(rig: Rig) -> None:
    alice, bob = developer(), developer()
    only_failed = rig.receiver.new_url()
    bobs = rig.receiver.new_url()
    rig.webhooks.endpoints.create(alice, {"url": only_failed, "enabled_events": ["payment.failed"]})
    rig.webhooks.endpoints.create(bob, {"url": bobs})
    rig.event(alice.uid, "payment.succeeded")
    assert rig.queue.tasks == []
    time.sleep(0.3)
    assert rig.receiver.deliveries(only_failed) == [] and rig.receiver.deliveries(bobs) == []


def test_two_failures_then_success_keep_the_webhook_id(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    rig.receiver.script(url, (500, {}), (500, {}))
    _, secret = rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = rig.event(alice.uid)
    assert rig.drain() == ["pending", "pending", "succeeded"]
    received = rig.receiver.wait_for(url, 3)
    assert {d.headers["webhook-id"] for d in received} == {event_id}
    for delivery in received:
        verify(secret, delivery)
    [logged] = rig.webhooks.events.deliveries(alice, event_id)
    assert [a.status_code for a in logged.attempts] == [500, 500, 200]


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    rig.webhooks.endpoints.create(alice, {"url": url})
    rig.receiver.stop()
    event_id = rig.event(alice.uid)
    for _ in range(2):  # attempt 1 (at once) and 2 (5 ms later) find nobody listening
        uid, evt, we, _delay = rig.queue.tasks.pop(0)
        assert rig.webhooks.deliveries.attempt(uid, evt, we) == "pending"
    rig.receiver.start()
    assert rig.drain() == ["succeeded"]
    assert [d.headers["webhook-id"] for d in rig.receiver.wait_for(url)] == [event_id]
    [logged] = rig.webhooks.events.deliveries(alice, event_id)
    assert [a.error for a in logged.attempts] == ["connection_refused", "connection_refused", None]


def test_410_disables_the_endpoint(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    rig.receiver.script(url, (410, {}))
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    rig.event(alice.uid)
    assert rig.drain() == ["failed"]
    after = rig.webhooks.endpoints.get(alice, endpoint.id)
    assert (after.status, after.disabled_reason) == ("disabled", "gone")
    rig.event(alice.uid)  # a disabled endpoint is not fanned out to
    assert rig.queue.tasks == [] and len(rig.receiver.deliveries(url)) == 1


def test_429_honours_retry_after(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    rig.receiver.script(url, (429, {"Retry-After": "2"}))
    rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = rig.event(alice.uid)
    assert rig.drain() == ["pending", "succeeded"]
    first, second = rig.receiver.wait_for(url, 2)
    assert second.at - first.at >= 1.9
    assert second.headers["webhook-id"] == event_id


def test_retry_after_is_honoured_only_on_429_and_503(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    rig.receiver.script(url, (500, {"Retry-After": "5"}))
    rig.webhooks.endpoints.create(alice, {"url": url})
    rig.event(alice.uid)
    assert rig.drain() == ["pending", "succeeded"]
    first, second = rig.receiver.wait_for(url, 2)
    assert second.at - first.at < 1.0  # the schedule's 5 s x 0.001, not the 5 s a 500 asked for


def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_logged(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dataclasses.replace(rig.settings, webhook_disable_after_s=0.001)
    webhooks = Webhooks.build(
        settings,
        rig.store,
        WebhookSecrets(SecretManagerVersions(settings)),
        WebhookTransport(settings.webhook_timeout_s, allow_loopback=settings.local_stack_trusted),
        rig.queue,
    )
    rig = dataclasses.replace(rig, webhooks=webhooks, settings=settings)
    alice = developer()
    url = rig.receiver.new_url()
    rig.receiver.script(url, (500, {}), (500, {}))
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    rig.event(alice.uid)
    # The first failure starts the failing window; the second, once the window (1 ms here) has passed, disables the
    # endpoint, and the delivery's next task finds it disabled.
    assert rig.drain() == ["pending", "pending", "cancelled"]
    assert len(rig.receiver.wait_for(url, 2)) == 2
    after = rig.webhooks.endpoints.get(alice, endpoint.id)
    assert (after.status, after.disabled_reason) == ("disabled", "failing")
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [
        (line.get("endpoint_id"), line.get("reason"))
        for line in logged
        if line.get("event") == "webhook_endpoint_disabled"
    ] == [(endpoint.id, "failing")]


def test_rotation_signs_with_both_secrets_during_the_overlap(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, old = rig.webhooks.endpoints.create(alice, {"url": url})
    _, new = rig.webhooks.endpoints.rotate(alice, endpoint.id)
    assert new != old and new.startswith("whsec_")
    rig.event(alice.uid)
    rig.drain()
    [delivery] = rig.receiver.wait_for(url)
    signatures = delivery.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    verify(old, delivery)
    verify(new, delivery)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(delivery.body, delivery.headers)


def test_a_deleted_endpoint_gets_nothing_more(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = rig.event(alice.uid)
    rig.webhooks.endpoints.delete(alice, endpoint.id)
    # Its signing secret is gone from Secret Manager, not only the endpoint document.
    versions = SecretManagerVersions(rig.settings)
    assert versions.access_version(secret_id(alice.uid, endpoint.id), endpoint.secret_version) is None
    assert versions.destroy(secret_id(alice.uid, endpoint.id)) is False
    assert rig.drain() == ["cancelled"]
    assert rig.receiver.deliveries(url) == []
    with pytest.raises(errors.NotFound):
        rig.webhooks.endpoints.get(alice, endpoint.id)
    [logged] = rig.webhooks.events.deliveries(alice, event_id)
    assert logged.status == "cancelled"


def test_redelivery_sends_the_same_event_again(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, secret = rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = rig.event(alice.uid)
    rig.drain()
    assert rig.webhooks.events.redeliver(alice, event_id, None) == [endpoint.id]
    assert rig.drain() == ["succeeded"]
    first, again = rig.receiver.wait_for(url, 2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == event_id
    verify(secret, again)
    [logged] = rig.webhooks.events.deliveries(alice, event_id)
    assert [a.trigger for a in logged.attempts] == ["automatic", "manual"]
    with pytest.raises(errors.NotFound):
        rig.webhooks.events.redeliver(developer(), event_id, None)  # another developer's event


def test_endpoint_rules(rig: Rig) -> None:
    alice = developer()
    with pytest.raises(ValidationError):
        rig.webhooks.endpoints.create(alice, {"url": "ftp://example.com/hook"})
    with pytest.raises(ValidationError):
        rig.webhooks.endpoints.create(alice, {"url": rig.receiver.new_url(), "enabled_events": ["payment.paid"]})
    with pytest.raises(errors.InvalidRequest):
        rig.webhooks.endpoints.create(alice, {"url": rig.receiver.new_url(), "secret": "mine"})
    for _ in range(rig.settings.webhook_max_endpoints):
        rig.webhooks.endpoints.create(alice, {"url": rig.receiver.new_url()})
    with pytest.raises(errors.Unprocessable):
        rig.webhooks.endpoints.create(alice, {"url": rig.receiver.new_url()})
    assert len(rig.webhooks.endpoints.all(alice)) == rig.settings.webhook_max_endpoints


def test_an_api_key_sees_the_events_of_its_environment_only(rig: Rig) -> None:
    owner = developer()
    sandbox, production = rig.event(owner.uid, environment="sandbox"), rig.event(owner.uid, environment="production")
    everything, _ = rig.webhooks.events.page(owner, None, None, None)
    assert [event["id"] for event in everything] == [production, sandbox]
    test_key = Developer(owner.uid, environment="sandbox")
    seen, _ = rig.webhooks.events.page(test_key, None, None, None)
    assert [event["id"] for event in seen] == [sandbox]
    assert rig.webhooks.events.get(test_key, sandbox)["id"] == sandbox
    with pytest.raises(errors.NotFound):
        rig.webhooks.events.get(test_key, production)
    paged, token = rig.webhooks.events.page(owner, "payment.succeeded", "1", None)
    assert [event["id"] for event in paged] == [production] and token is not None
    rest, end = rig.webhooks.events.page(owner, "payment.succeeded", "1", token)
    assert [event["id"] for event in rest] == [sandbox] and end is None
