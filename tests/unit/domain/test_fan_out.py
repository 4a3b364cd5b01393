"""gateway.domain.fan_out: which events the sweep takes, which the fan-out treats as done, and the first task's
name that makes a second fan-out of one event queue nothing new. Pure: no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.domain.fan_out import first_attempt_task_id, is_fanned_out, needs_sweep, sweep_cutoff

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
GRACE_S = 120.0


def event(**fields: Any) -> dict[str, Any]:
    return {"id": "evt_1", "type": "payment.succeeded", "created_at": NOW - timedelta(seconds=600), **fields}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"fanned_out": True}, True),
        ({"fanned_out": False}, False),
        ({}, False),  # written before the flag existed: the trigger still fans it out
        ({"fanned_out": "true"}, False),  # only the boolean counts
        ({"fanned_out": 1}, False),
    ],
)
def test_only_an_explicit_true_means_fanned_out(fields: dict[str, Any], expected: bool) -> None:
    assert is_fanned_out(event(**fields)) is expected


def test_the_cutoff_is_the_grace_period_before_now() -> None:
    assert sweep_cutoff(NOW, GRACE_S) == NOW - timedelta(seconds=120)
    assert sweep_cutoff(NOW, 0) == NOW


@pytest.mark.parametrize(
    ("age_s", "expected"),
    [(600.0, True), (120.0, True), (119.999, False), (0.0, False), (-5.0, False)],
)
def test_the_sweep_takes_an_unmarked_event_only_once_its_grace_period_is_over(age_s: float, expected: bool) -> None:
    young_or_old = event(fanned_out=False, created_at=NOW - timedelta(seconds=age_s))
    assert needs_sweep(young_or_old, NOW, GRACE_S) is expected


@pytest.mark.parametrize(
    "fields",
    [
        {"fanned_out": True},
        {},  # history from before the flag is never re-sent
        {"fanned_out": None},
        {"fanned_out": False, "created_at": None},
        {"fanned_out": False, "created_at": "2026-12-02T00:00:00Z"},
    ],
)
def test_the_sweep_leaves_marked_unflagged_and_undated_events_alone(fields: dict[str, Any]) -> None:
    assert needs_sweep(event(**fields), NOW, GRACE_S) is False


def test_the_first_task_of_an_event_and_endpoint_has_one_name() -> None:
    name = first_attempt_task_id("evt_0123abcd", "we_89ef")
    assert name == first_attempt_task_id("evt_0123abcd", "we_89ef")
    assert name != first_attempt_task_id("evt_0123abcd", "we_89f0")
    assert name != first_attempt_task_id("evt_0123abce", "we_89ef")


def test_a_fan_out_after_the_first_task_could_have_given_up_names_its_task_anew() -> None:
    written = NOW - timedelta(minutes=3)
    first = first_attempt_task_id("evt_0123abcd", "we_89ef", written, NOW)
    # Within the first hour (the trigger, and a sweep after it) the name is the event's first one...
    assert (
        first
        == first_attempt_task_id("evt_0123abcd", "we_89ef")
        == first_attempt_task_id("evt_0123abcd", "we_89ef", written, written + timedelta(minutes=59))
    )
    # ...later each hour has its own, so a queue that still refuses an earlier name takes the new task.
    later = [first_attempt_task_id("evt_0123abcd", "we_89ef", written, written + timedelta(hours=h)) for h in (1, 2, 5)]
    assert len({first, *later}) == 4
    assert later[0] == first_attempt_task_id("evt_0123abcd", "we_89ef", written, written + timedelta(minutes=119))
    # A clock behind the event's own time is the first hour, not a negative one.
    assert first_attempt_task_id("evt_0123abcd", "we_89ef", written, written - timedelta(seconds=5)) == first


@pytest.mark.parametrize(
    ("event_id", "endpoint_id"),
    [("evt_" + "a" * 24, "we_" + "b" * 24), ("evt.with/odd:chars", "we id"), ("e" * 400, "w" * 400)],
)
def test_task_names_are_ones_cloud_tasks_accepts(event_id: str, endpoint_id: str) -> None:
    name = first_attempt_task_id(event_id, endpoint_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", name)
