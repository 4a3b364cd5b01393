"""The outbox's fan-out rules: whether an event still has to be fanned out, when the sweep may take it, and the
task name that makes fanning it out twice harmless. Pure: no I/O.

An event is written with `fanned_out: false` in the commit of the payment change it describes; the fan-out sets it
true in the commit that creates the event's delivery documents. The Firestore trigger normally does that within
moments; the sweep takes only events still false after a grace period, because the platform does not retry a
trigger that failed or was dropped.

Events written before the flag existed have no `fanned_out` field. The trigger still fans them out (it may be the
backlog of a deploy), but the sweep never selects them: it would otherwise re-send history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

FANNED_OUT = "fanned_out"
FANNED_OUT_AT = "fanned_out_at"

# Cloud Tasks task ids: letters, digits, "-" and "_", at most 500 characters.
_TASK_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def is_fanned_out(event: Mapping[str, Any]) -> bool:
    """Only an explicit true counts: a missing flag is an event from before the flag, which the trigger fans out."""
    return event.get(FANNED_OUT) is True


def sweep_cutoff(now: datetime, grace_s: float) -> datetime:
    """Events created at or before this instant and not fanned out are the sweep's."""
    return now - timedelta(seconds=grace_s)


def needs_sweep(event: Mapping[str, Any], now: datetime, grace_s: float) -> bool:
    """Whether the sweep should fan this event out: written with the flag, still false, and older than the grace
    period (a younger one is most likely in the trigger's hands right now)."""
    created_at = event.get("created_at")
    if event.get(FANNED_OUT) is not False or not isinstance(created_at, datetime):
        return False
    return created_at <= sweep_cutoff(now, grace_s)


# A first task gives up after about 95 minutes (webhookdelivery's retry config in main.py) and Cloud Tasks refuses
# its name for about an hour after that. A fan-out that runs later than this after the event (a long outage, a sweep
# behind a backlog) must not reuse the name, or the delivery it commits would have no task.
TASK_NAME_PERIOD = timedelta(hours=1)


def first_attempt_task_id(
    event_id: str, endpoint_id: str, created_at: datetime | None = None, now: datetime | None = None
) -> str:
    """The name of the task of an event's first attempt at one endpoint. Cloud Tasks refuses a second task with the
    same name (for about an hour after the first ran), so a trigger and a sweep that both fan one event out queue
    one task per endpoint. The name also carries the hour since the event was written (from the second hour on),
    so a fan-out that comes after the first task gave up queues a new one. Event ids are random, which also spreads
    the names as Cloud Tasks advises."""
    period = 0
    if created_at is not None and now is not None:
        period = max(0, int((now - created_at) / TASK_NAME_PERIOD))
    suffix = "first" if period == 0 else f"first-h{period}"
    name = _TASK_ID_UNSAFE.sub("-", f"{event_id}-{endpoint_id}-{suffix}")
    return name[:500]
