"""The outbox property over the use cases: no payment change without its events, no event without its change.

Every commit the use cases send to the fake repository is checked as it happens: for each payment it saves, the
events in the same commit are exactly `events_for(stored before, saved after)`, each carrying the payment as the
API shows it after the change; and no commit carries an event for a payment it does not save.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.daraja import DarajaOutcomeUnknown
from gateway.domain.events import events_for
from gateway.domain.payment import PaymentStatus
from gateway.errors import DarajaError
from gateway.repository import AddEvent, SavePayment, Write
from gateway.views import payment_view
from tests.unit.fakes import ALICE, CREDENTIALS, ORDER, World, make_world, query_answer, stk_callback

DARAJA_IP = "196.201.214.200"


class OutboxChecker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.events: list[AddEvent] = []
        self.checked_saves = 0
        inner = world.repo.commit

        def commit(writes: Sequence[Write]) -> list[Any]:
            self.check(writes)
            result = inner(writes)
            self.events.extend(write for write in writes if isinstance(write, AddEvent))
            return result

        world.repo.commit = commit  # type: ignore[method-assign]

    def check(self, writes: Sequence[Write]) -> None:
        saves = {(w.uid, w.payment.id): w for w in writes if isinstance(w, SavePayment)}
        events = [w for w in writes if isinstance(w, AddEvent)]
        for event in events:
            assert (event.uid, event.payment_id) in saves, f"event {event.type} without its payment's change"
        for (uid, payment_id), save in saves.items():
            stored = self.world.repo.payments.get((uid, payment_id))
            before = stored[0] if stored is not None else None
            expected = [event.value for event in events_for(before, save.payment)]
            mine = [e for e in events if e.uid == uid and e.payment_id == payment_id]
            assert [e.type for e in mine] == expected
            for event in mine:
                assert event.data == payment_view(save.payment)
                assert event.created_at == save.payment.updated_at
                assert event.event_id.startswith("evt_")
            self.checked_saves += 1

    def types(self) -> list[str]:
        return [event.type for event in self.events]


@pytest.fixture
def world() -> World:
    world = make_world()
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    return world


def callback(world: World, payment_id: str, body: dict[str, Any]) -> None:
    world.gateway.settlement.handle_callback(world.token_for(payment_id), body, json.dumps(body).encode(), DARAJA_IP)


def test_a_paid_push_is_created_then_succeeded(world: World) -> None:
    outbox = OutboxChecker(world)
    payment = world.gateway.payments.push(ALICE, ORDER, "key-1").payment
    assert outbox.types() == ["payment.created"]
    callback(world, payment.id, stk_callback(payment.checkout_request_id or ""))
    # A duplicate callback changes nothing and writes no event.
    callback(world, payment.id, stk_callback(payment.checkout_request_id or ""))
    assert outbox.types() == ["payment.created", "payment.succeeded"]
    assert outbox.events[-1].data["status"] == "succeeded"
    assert outbox.checked_saves >= 3


@pytest.mark.parametrize(
    ("code", "event"), [(1032, "payment.cancelled"), (1037, "payment.timed_out"), (2001, "payment.failed")]
)
def test_each_failed_result_has_its_event(world: World, code: int, event: str) -> None:
    outbox = OutboxChecker(world)
    payment = world.gateway.payments.push(ALICE, ORDER, None).payment
    callback(world, payment.id, stk_callback(payment.checkout_request_id or "", code))
    assert outbox.types() == ["payment.created", event]


def test_a_mismatching_success_is_flagged_and_stays_pending(world: World) -> None:
    outbox = OutboxChecker(world)
    payment = world.gateway.payments.push(ALICE, ORDER, None).payment
    callback(world, payment.id, stk_callback(payment.checkout_request_id or "", amount=1))
    assert outbox.types() == ["payment.created", "payment.flagged"]
    assert world.payment(ALICE, payment.id).status is PaymentStatus.PENDING


def test_a_refused_push_is_created_then_failed(world: World) -> None:
    outbox = OutboxChecker(world)
    world.daraja.push_script.append(DarajaError("daraja_rejected", "bad request", http_status=400, daraja_code="400"))
    with pytest.raises(DarajaError):
        world.gateway.payments.push(ALICE, ORDER, None)
    assert outbox.types() == ["payment.created", "payment.failed"]


def test_an_unknown_outcome_is_unconfirmed_then_late_money_succeeds_and_is_flagged(world: World) -> None:
    outbox = OutboxChecker(world)
    world.daraja.push_script.append(DarajaOutcomeUnknown("daraja_timeout", "no answer"))
    payment = world.gateway.payments.push(ALICE, ORDER, None).payment
    assert outbox.types() == ["payment.created"]
    world.clock.advance(world.settings.unconfirmed_after_s + 1)
    world.gateway.settlement.reconcile()
    assert outbox.types() == ["payment.created", "payment.unconfirmed"]
    callback(world, payment.id, stk_callback("ws_CO_late"))
    assert outbox.types()[2:] == ["payment.succeeded", "payment.flagged"]


def test_a_query_settles_with_its_event_and_its_claim_has_none(world: World) -> None:
    outbox = OutboxChecker(world)
    payment = world.gateway.payments.push(ALICE, ORDER, None).payment
    checkout = payment.checkout_request_id or ""
    world.daraja.script_query(checkout, query_answer(checkout, "1032", "cancelled by user"))
    world.clock.advance(world.settings.reconcile_after_s + 1)
    world.gateway.settlement.reconcile()
    assert outbox.types() == ["payment.created", "payment.cancelled"]


def test_a_failed_commit_stores_neither_the_change_nor_its_event(world: World) -> None:
    payment = world.gateway.payments.push(ALICE, ORDER, None).payment
    before = dict(world.repo.events)
    world.repo.fail_next_commit = lambda writes: any(isinstance(w, SavePayment) for w in writes)
    with pytest.raises(RuntimeError):
        callback(world, payment.id, stk_callback(payment.checkout_request_id or ""))
    assert world.repo.events == before
    assert world.payment(ALICE, payment.id).status is PaymentStatus.PENDING


def test_no_use_case_saves_a_payment_around_the_outbox() -> None:
    """Every payment save goes through services.common.save_payment / update_payment (which add its events): no
    use case builds a SavePayment itself or calls the repository's update_payment directly."""
    import re
    from pathlib import Path

    import gateway.services as services

    for source in sorted(Path(services.__file__).parent.glob("*.py")):
        if source.name == "common.py":
            continue
        text = source.read_text(encoding="utf-8")
        assert not re.search(r"\bSavePayment\(", text), f"{source.name} builds a SavePayment: use save_payment"
        assert not re.search(r"from gateway\.repository import[^)]*\bupdate_payment\b", text, re.S), (
            f"{source.name} imports the repository's update_payment: use services.common.update_payment"
        )
