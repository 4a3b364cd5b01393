"""The outbox's fan-out flag and the sweep behind the Firestore trigger, on the real adapters: events, deliveries and
the collection-group query in the Firestore emulator, signing secrets in the Secret Manager emulator, real HTTP to a
receiver on 127.0.0.1. The task queue is the recording stand-in of test_webhook_delivery (one task per name, as
Cloud Tasks keeps), drained by hand.

Each test runs in a project of its own on the emulators: the sweep reads every developer's events, so a fresh
project makes its counts this test's alone (and the stack's trigger never fires there).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.domain.fan_out import first_attempt_task_id
from gateway.http import Developer
from gateway.repository import AddEvent
from gateway.services.webhooks import NotDue
from gateway.webhook_store import WebhookStore
from tests.integration.test_webhook_delivery import Rig
from tests.integration.test_webhook_delivery import build_rig as delivery_rig

GRACE_S = 60.0
LONG_AGO = timedelta(minutes=10)


class FailingOnceStore(WebhookStore):
    """A fan-out that dies between queueing its tasks and its commit (an instance crash, a Firestore error)."""

    fail_next_commit = False
    fail_next_batch_mark = False
    endpoint_listings = 0

    def list_endpoints(self, uid: str) -> Any:
        self.endpoint_listings += 1
        return super().list_endpoints(uid)

    def mark_all_fanned_out(self, events: list[tuple[str, str]], now: Any) -> None:
        if self.fail_next_batch_mark:
            self.fail_next_batch_mark = False
            raise RuntimeError("injected: the batched mark failed")
        super().mark_all_fanned_out(events, now)

    def commit_fan_out(self, uid: str, event_id: str, deliveries: Any, version: Any, now: Any) -> None:
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise RuntimeError("injected: the fan-out's commit failed")
        super().commit_fan_out(uid, event_id, deliveries, version, now)


def build_rig(**overrides: Any) -> Rig:
    return delivery_rig(
        "demo-sweep-" + secrets.token_hex(4),  # demo-: trusted as the local stack; fresh: our events only
        FailingOnceStore,
        sleep=lambda _s: None,  # a task waiting for its fan-out's commit gives up at once here
        webhook_fan_out_grace_s=GRACE_S,
        **overrides,
    )


@pytest.fixture
def rig() -> Iterator[Rig]:
    built = build_rig()
    yield built
    built.receiver.close()


def developer() -> Developer:
    return Developer("sweep-" + secrets.token_hex(6))


def write_event(rig: Rig, uid: str, age: timedelta = LONG_AGO, event_type: str = "payment.succeeded") -> str:
    """An event as a payment commit writes it (repository.AddEvent), `age` ago, and no trigger after it."""
    event_id = "evt_" + secrets.token_hex(12)
    payment_id = "pay_" + secrets.token_hex(6)
    data = {"object": "payment", "id": payment_id, "status": "succeeded", "amount": 10, "environment": "sandbox"}
    rig.repository.commit([AddEvent(uid, event_id, event_type, datetime.now(UTC) - age, payment_id, data)])
    return event_id


def event_doc(rig: Rig, uid: str, event_id: str) -> dict[str, Any]:
    snapshot = rig.store.client.document(f"developers/{uid}/events/{event_id}").get()
    assert snapshot.exists
    return snapshot.to_dict() or {}


def delivery_ids(rig: Rig, uid: str, event_id: str) -> list[str]:
    return sorted(d.endpoint_id for d in rig.store.list_deliveries(uid, event_id))


def test_an_event_is_written_unmarked_and_its_fan_out_marks_it_in_the_commit_of_its_deliveries(rig: Rig) -> None:
    alice = developer()
    everything, _ = rig.webhooks.endpoints.create(alice, {"url": rig.receiver.new_url()})
    rig.webhooks.endpoints.create(alice, {"url": rig.receiver.new_url(), "enabled_events": ["payment.failed"]})
    event_id = write_event(rig, alice.uid, age=timedelta(0))
    assert event_doc(rig, alice.uid, event_id)["fanned_out"] is False
    assert delivery_ids(rig, alice.uid, event_id) == []

    assert rig.webhooks.deliveries.fan_out(alice.uid, event_id) == 1

    stored = event_doc(rig, alice.uid, event_id)
    assert stored["fanned_out"] is True
    assert abs((stored["fanned_out_at"] - datetime.now(UTC)).total_seconds()) < 60
    assert delivery_ids(rig, alice.uid, event_id) == [everything.id]
    assert [(e, we) for _, e, we, _ in rig.queue.tasks] == [(event_id, everything.id)]


def test_a_developer_without_endpoints_has_the_event_marked_and_nothing_queued(rig: Rig) -> None:
    bob = developer()
    event_id = write_event(rig, bob.uid, age=timedelta(0))
    assert rig.webhooks.deliveries.fan_out(bob.uid, event_id) == 0
    assert event_doc(rig, bob.uid, event_id)["fanned_out"] is True
    assert rig.queue.tasks == [] and delivery_ids(rig, bob.uid, event_id) == []


def test_fan_outs_racing_on_one_event_make_one_delivery_per_endpoint_and_send_once(rig: Rig) -> None:
    """A trigger and the sweep (or a trigger the platform ran twice) fanning out one event at the same moment."""
    alice = developer()
    urls = [rig.receiver.new_url(), rig.receiver.new_url()]
    endpoints = [rig.webhooks.endpoints.create(alice, {"url": url})[0] for url in urls]
    event_id = write_event(rig, alice.uid)
    queued: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(6)

    def run() -> None:
        try:
            start.wait()
            queued.append(rig.webhooks.deliveries.fan_out(alice.uid, event_id))
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for thread in threads:
        thread.start()
    start.wait()
    swept = rig.webhooks.deliveries.sweep()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    # Exactly one run committed (it reports its 2 deliveries); the others found the event marked.
    assert sorted([*queued, swept["deliveries"]]) == [0, 0, 0, 0, 0, 2]
    assert delivery_ids(rig, alice.uid, event_id) == sorted(e.id for e in endpoints)
    assert len(rig.queue.tasks) == 2  # every run queued both first tasks under the same two names
    assert rig.drain() == ["succeeded", "succeeded"]
    for url in urls:
        [received] = rig.receiver.wait_for(url)
        assert received.headers["webhook-id"] == event_id
    rig.webhooks.deliveries.fan_out(alice.uid, event_id)
    assert rig.queue.tasks == []
    for url in urls:
        assert len(rig.receiver.deliveries(url)) == 1


def test_the_sweep_takes_only_unmarked_events_past_the_grace_period(rig: Rig) -> None:
    alice, bob = developer(), developer()
    url = rig.receiver.new_url()
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    dropped = write_event(rig, alice.uid)  # its trigger never ran
    young = write_event(rig, alice.uid, age=timedelta(seconds=GRACE_S / 2))  # its trigger may be running now
    done = write_event(rig, alice.uid)
    rig.webhooks.deliveries.fan_out(alice.uid, done)
    assert rig.drain() == ["succeeded"]
    history = "evt_" + secrets.token_hex(12)  # written before the flag existed: no fanned_out field at all
    rig.store.client.document(f"developers/{alice.uid}/events/{history}").set(
        {"id": history, "type": "payment.succeeded", "created_at": datetime.now(UTC) - LONG_AGO, "data": {}}
    )
    bobs = write_event(rig, bob.uid)  # another developer's, who has no endpoint

    summary = rig.webhooks.deliveries.sweep()

    assert summary == {
        "examined": 2,
        "fanned_out": 2,
        "deliveries": 1,
        "already": 0,
        "missing": 0,
        "errors": 0,
        "pages": 1,
        "more": 0,
    }
    assert event_doc(rig, alice.uid, dropped)["fanned_out"] is True
    assert event_doc(rig, bob.uid, bobs)["fanned_out"] is True
    assert event_doc(rig, alice.uid, young)["fanned_out"] is False
    assert "fanned_out" not in event_doc(rig, alice.uid, history)
    assert delivery_ids(rig, alice.uid, dropped) == [endpoint.id]
    assert delivery_ids(rig, alice.uid, history) == []
    assert rig.drain() == ["succeeded"]
    assert [d.headers["webhook-id"] for d in rig.receiver.wait_for(url, 2)] == [done, dropped]
    assert rig.webhooks.deliveries.sweep()["examined"] == 0


def test_the_sweep_takes_only_developers_events_from_its_collection_group(rig: Rig) -> None:
    """The collection group spans every collection named "events": one elsewhere, even shaped like an outbox entry,
    is neither read as a tenant's (its parent document's id is no uid) nor a crash (a root one has no parent)."""
    alice = developer()
    ours = write_event(rig, alice.uid)
    shaped = {"type": "payment.succeeded", "created_at": datetime.now(UTC) - LONG_AGO, "data": {}, "fanned_out": False}
    rig.store.client.document("events/evt_root").set({**shaped, "id": "evt_root"})
    rig.store.client.document(f"teams/{alice.uid}/events/evt_team").set({**shaped, "id": "evt_team"})
    rig.store.client.document(f"orgs/o1/developers/{alice.uid}/events/evt_nested").set({**shaped, "id": "evt_nested"})

    summary = rig.webhooks.deliveries.sweep()

    assert (summary["examined"], summary["fanned_out"], summary["errors"]) == (1, 1, 0)
    assert event_doc(rig, alice.uid, ours)["fanned_out"] is True
    for path in (
        "events/evt_root",
        f"teams/{alice.uid}/events/evt_team",
        f"orgs/o1/developers/{alice.uid}/events/evt_nested",
    ):
        assert rig.store.client.document(path).get().to_dict()["fanned_out"] is False


def test_the_sweep_reads_in_pages_up_to_its_cap_and_leaves_the_rest_to_the_next_run() -> None:
    rig = build_rig(webhook_sweep_page_size=2, webhook_sweep_max_events=5)
    try:
        bob = developer()
        for _ in range(7):
            write_event(rig, bob.uid)
        assert isinstance(rig.store, FailingOnceStore)
        first = rig.webhooks.deliveries.sweep()
        assert (first["examined"], first["fanned_out"], first["pages"], first["more"]) == (5, 5, 3, 1)
        assert rig.store.endpoint_listings == 1  # bob's endpoints are read once per run, not once per event
        second = rig.webhooks.deliveries.sweep()
        assert (second["examined"], second["fanned_out"], second["more"]) == (2, 2, 0)
        assert rig.webhooks.deliveries.sweep()["examined"] == 0
    finally:
        rig.receiver.close()


def test_a_fan_out_that_died_after_queueing_is_finished_by_the_sweep_and_sends_once(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = write_event(rig, alice.uid)
    assert isinstance(rig.store, FailingOnceStore)
    rig.store.fail_next_commit = True
    with pytest.raises(RuntimeError):
        rig.webhooks.deliveries.fan_out(alice.uid, event_id)  # the trigger's run: its task is queued, then it dies
    assert event_doc(rig, alice.uid, event_id)["fanned_out"] is False
    [(uid, evt, we, _)] = rig.queue.tasks
    # Its task finds no delivery yet; while the event is unmarked it asks the queue to try again later.
    with pytest.raises(NotDue):
        rig.webhooks.deliveries.attempt(uid, evt, we)
    assert rig.receiver.deliveries(url) == []

    summary = rig.webhooks.deliveries.sweep()

    assert (summary["fanned_out"], summary["deliveries"], summary["errors"]) == (1, 1, 0)
    assert len(rig.queue.tasks) == 1  # the sweep's first task has the same name: the queue kept the one it had
    assert rig.drain() == ["succeeded"]
    [received] = rig.receiver.wait_for(url)
    assert received.headers["webhook-id"] == event_id
    assert delivery_ids(rig, alice.uid, event_id) == [endpoint.id]
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [run] = [line for line in logged if line.get("event") == "webhook_sweep_run"]
    assert (run["severity"], run["examined"], run["fanned_out"], run["deliveries"]) == ("WARNING", 1, 1, 1)
    [swept] = [line for line in logged if line.get("event") == "webhook_fanned_out"]
    assert (swept["source"], swept["event_id"], swept["endpoints"]) == ("sweep", event_id, 1)


def test_a_sweep_after_the_first_task_gave_up_queues_a_task_under_a_new_name(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = write_event(rig, alice.uid, age=timedelta(hours=3))
    # The trigger queued the first task under the event's first name hours ago, died before its commit, and that
    # task has since given up; the queue (like Cloud Tasks within its hour) refuses the name again.
    rig.queue.names.add(first_attempt_task_id(event_id, endpoint.id))

    summary = rig.webhooks.deliveries.sweep()

    assert (summary["fanned_out"], summary["deliveries"]) == (1, 1)
    assert len(rig.queue.tasks) == 1, "the committed delivery has a task"
    assert rig.drain() == ["succeeded"]
    [received] = rig.receiver.wait_for(url)
    assert received.headers["webhook-id"] == event_id


def test_a_task_for_an_endpoint_the_committed_fan_out_left_out_ends_missing(rig: Rig) -> None:
    alice = developer()
    event_id = write_event(rig, alice.uid)
    rig.webhooks.deliveries.fan_out(alice.uid, event_id)  # no endpoint: marked, no delivery
    assert rig.webhooks.deliveries.attempt(alice.uid, event_id, "we_" + secrets.token_hex(12)) == "missing"


def test_one_event_that_cannot_be_fanned_out_does_not_stop_the_sweep() -> None:
    """Pages of one event: the next page starts after the failed one (a cursor), not again at the oldest."""
    rig = build_rig(webhook_sweep_page_size=1)
    try:
        sweep_past_a_failure(rig)
    finally:
        rig.receiver.close()


def sweep_past_a_failure(rig: Rig) -> None:
    alice = developer()
    url = rig.receiver.new_url()
    rig.webhooks.endpoints.create(alice, {"url": url})
    first, second = write_event(rig, alice.uid, age=LONG_AGO + timedelta(seconds=1)), write_event(rig, alice.uid)
    assert isinstance(rig.store, FailingOnceStore)
    rig.store.fail_next_commit = True
    summary = rig.webhooks.deliveries.sweep()
    assert (summary["examined"], summary["errors"], summary["fanned_out"], summary["pages"]) == (2, 1, 1, 3)
    assert event_doc(rig, alice.uid, first)["fanned_out"] is False  # left for the next run
    assert event_doc(rig, alice.uid, second)["fanned_out"] is True
    assert rig.webhooks.deliveries.sweep()["fanned_out"] == 1
    assert rig.drain() == ["succeeded", "succeeded"]
    assert sorted(d.headers["webhook-id"] for d in rig.receiver.wait_for(url, 2)) == sorted([first, second])


def test_when_a_batched_mark_fails_the_sweep_marks_those_events_one_by_one(rig: Rig) -> None:
    bob = developer()
    events = [write_event(rig, bob.uid) for _ in range(3)]
    assert isinstance(rig.store, FailingOnceStore)
    rig.store.fail_next_batch_mark = True
    summary = rig.webhooks.deliveries.sweep()
    assert (summary["examined"], summary["fanned_out"], summary["errors"]) == (3, 3, 0)
    assert all(event_doc(rig, bob.uid, event_id)["fanned_out"] is True for event_id in events)


def test_a_redelivery_before_the_fan_out_leaves_one_delivery_that_is_sent_once(rig: Rig) -> None:
    """The events API can resend an event its trigger has not fanned out yet: the fan-out's commit then finds that
    delivery, keeps it (no second one) and still marks the event."""
    alice = developer()
    url = rig.receiver.new_url()
    endpoint, _ = rig.webhooks.endpoints.create(alice, {"url": url})
    event_id = write_event(rig, alice.uid, age=timedelta(0))
    assert rig.webhooks.events.redeliver(alice, event_id, endpoint.id) == [endpoint.id]
    assert rig.drain() == ["succeeded"]
    rig.webhooks.deliveries.fan_out(alice.uid, event_id)
    assert event_doc(rig, alice.uid, event_id)["fanned_out"] is True
    assert delivery_ids(rig, alice.uid, event_id) == [endpoint.id]
    # The fan-out queued its first task before its commit found the delivery (it reads deliveries only after a lost
    # commit); that task finds the delivery finished and sends nothing.
    assert rig.drain() == ["succeeded"]
    time.sleep(0.3)
    assert len(rig.receiver.wait_for(url)) == 1
    [logged] = rig.webhooks.events.deliveries(alice, event_id)
    assert len(logged.attempts) == 1 and logged.trigger == "manual"
