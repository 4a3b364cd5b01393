"""The two webhook paths that exist for the local stack only cannot be taken in production:

- the delivery queue's tolerance of the Tasks emulator's echoed task name (firebase-admin 7.7.0 cannot parse it and
  raises ValueError after queueing) applies only where the settings trust the local stack, and only to a named task;
- the `skip_trigger_fan_out` fault (GATEWAY_FAULT_INJECTION) never reaches the trigger of a production instance: the
  trigger, like every function, refuses the configuration (503 unsafe_configuration) before it reads anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway import api, container, errors
from gateway.delivery_queue import CloudTasksQueue
from gateway.settings import Settings, get_settings
from tests.unit.test_local_stack_guard import GUARD_INPUTS

ECHO_FAILURE = "Invalid resource name format."
CLOUD_RUN = {"GCLOUD_PROJECT": "acme-pay", "K_SERVICE": "on-event-created", "K_REVISION": "on-event-created-00001"}


class RaisingTaskQueue:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.calls = 0

    def enqueue(self, task_data: Any, opts: Any = None) -> str:
        self.calls += 1
        raise self.failure


def queue_raising(settings: Settings, failure: Exception) -> tuple[CloudTasksQueue, RaisingTaskQueue]:
    queue = CloudTasksQueue(settings)
    stub = RaisingTaskQueue(failure)
    queue._queue = stub  # the built firebase-admin task queue, as _task_queue() caches it
    return queue, stub


def test_on_the_local_stack_a_named_task_whose_echo_cannot_be_parsed_counts_as_queued() -> None:
    queue, stub = queue_raising(Settings(project_id="demo-local"), ValueError(ECHO_FAILURE))
    queue.enqueue("u1", "evt_1", "we_1", 0, task_id="evt_1-we_1-first")
    assert stub.calls == 1


@pytest.mark.parametrize(
    ("settings", "task_id", "message"),
    [
        pytest.param(Settings(project_id="acme-pay"), "evt_1-we_1-first", ECHO_FAILURE, id="production"),
        pytest.param(
            Settings(project_id="acme-pay", functions_emulator=True, service_identity="K_SERVICE"),
            "evt_1-we_1-first",
            ECHO_FAILURE,
            id="emulator-flag-on-cloud-run",
        ),
        pytest.param(Settings(project_id="demo-local"), None, ECHO_FAILURE, id="local-unnamed-task"),
        pytest.param(Settings(project_id="demo-local"), "evt_1-we_1-first", "task_id can contain only", id="other"),
    ],
)
def test_anywhere_else_that_failure_is_raised(settings: Settings, task_id: str | None, message: str) -> None:
    queue, _ = queue_raising(settings, ValueError(message))
    with pytest.raises(ValueError, match=message[:10]):
        queue.enqueue("u1", "evt_1", "we_1", 0, task_id=task_id)


@pytest.fixture
def fresh_container(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def use(env: dict[str, str]) -> None:
        for name in GUARD_INPUTS:  # each case starts from nothing but its own (make test exports the stack's)
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    monkeypatch.setattr(container, "_webhooks", None)
    yield use
    get_settings.cache_clear()


def test_a_production_trigger_with_fault_injection_on_refuses_before_reading_the_event(fresh_container: Any) -> None:
    fresh_container({**CLOUD_RUN, "GATEWAY_FAULT_INJECTION": "true"})
    with pytest.raises(errors.ServiceUnavailable) as refused:
        api.fan_out_event("u1", "evt_1")
    assert refused.value.code == "unsafe_configuration"
    assert container._webhooks is None  # nothing was built, so nothing was read


def test_without_fault_injection_the_trigger_runs_the_fan_out_itself(fresh_container: Any) -> None:
    fresh_container(CLOUD_RUN)
    assert container.event_trigger() == container.webhooks().deliveries.fan_out


def test_on_the_local_stack_with_fault_injection_the_trigger_is_wrapped(fresh_container: Any) -> None:
    fresh_container({"GCLOUD_PROJECT": "demo-local", "GATEWAY_FAULT_INJECTION": "true"})
    trigger = container.event_trigger()
    assert trigger != container.webhooks().deliveries.fan_out
    assert trigger.__qualname__.startswith("skipping_trigger_fan_out")
