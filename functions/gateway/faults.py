"""Fault injection for the tests/faults tier: a PaymentStore wrapper that fails or kills the instance at the one
moment no ordinary test can reach, between Daraja's acceptance and the commit that records it.

It is wired in by the composition root only when GATEWAY_FAULT_INJECTION is set, which the local-stack guard
allows only on the local stack (a demo- project, or the emulator without a Cloud Run identity). A payment opts in
through its metadata: {"fault": "fail_accept_commit"} makes that commit raise as a failing Firestore would;
{"fault": "die_before_accept_commit"} ends the process as a crash or an instance shutdown would;
{"fault": "die_after_settle_commit"} ends it right after the commit that settles the payment (its events are in
that commit: their delivery must not depend on this instance).

`skipping_trigger_fan_out` wraps the Firestore trigger's fan-out the same way: {"fault": "skip_trigger_fan_out"}
in a payment's metadata (so in each of its events' data) makes the trigger return without fanning the event out, as
a trigger that crashed or was dropped would; only the sweep (Deliveries.sweep) can then deliver it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.domain.payment import PushState
from gateway.logs import Event, log_event
from gateway.repository import PaymentStore, SavePayment, Write

FAULT_KEY = "fault"
_ACCEPT_COMMIT_FAULTS = ("die_before_accept_commit", "fail_accept_commit")
SKIP_TRIGGER_FAN_OUT = "skip_trigger_fan_out"


class _EventReader(Protocol):
    def load_event(self, uid: str, event_id: str) -> dict[str, Any] | None: ...


def skipping_trigger_fan_out(fan_out: Callable[[str, str], int], events: _EventReader) -> Callable[[str, str], int]:
    def trigger(uid: str, event_id: str) -> int:
        event = events.load_event(uid, event_id) or {}
        metadata = (event.get("data") or {}).get("metadata") or {}
        if metadata.get(FAULT_KEY) == SKIP_TRIGGER_FAN_OUT:
            log_event(Event.FAULT_INJECTED, "WARNING", fault=SKIP_TRIGGER_FAN_OUT, uid=uid, event_id=event_id)
            return 0
        return fan_out(uid, event_id)

    return trigger


class FaultInjectingStore:
    def __init__(self, inner: PaymentStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def commit(self, writes: Sequence[Write]) -> list[Any]:
        fault = _accept_commit_fault(writes)
        if fault is not None:
            log_event(Event.FAULT_INJECTED, "WARNING", fault=fault)
            if fault == "die_before_accept_commit":
                os._exit(70)
            if fault == "fail_accept_commit":
                raise RuntimeError("injected fault: the commit after Daraja's acceptance failed")
        versions = self._inner.commit(writes)
        if _settle_commit_fault(writes) == "die_after_settle_commit":
            log_event(Event.FAULT_INJECTED, "WARNING", fault="die_after_settle_commit")
            os._exit(70)
        return versions


def _accept_commit_fault(writes: Sequence[Write]) -> str | None:
    for write in writes:
        if isinstance(write, SavePayment) and write.version is not None:
            payment = write.payment
            if payment.push_state is PushState.ACCEPTED and payment.settled_at is None and payment.flags == ():
                fault = payment.metadata.get(FAULT_KEY)
                if fault in _ACCEPT_COMMIT_FAULTS:
                    return str(fault)
    return None


def _settle_commit_fault(writes: Sequence[Write]) -> str | None:
    for write in writes:
        if isinstance(write, SavePayment) and write.version is not None and write.payment.status.is_terminal:
            fault = write.payment.metadata.get(FAULT_KEY)
            if isinstance(fault, str):
                return fault
    return None
