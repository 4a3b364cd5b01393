"""scripts/local_scheduler.py without a stack: what it points the library at, and that a failing job is reported
and does not stop the others (the scheduler tries again next run)."""

from __future__ import annotations

import json

from scripts import local_scheduler, stack_config


def test_it_points_the_library_at_the_stack_with_the_functions_local_settings() -> None:
    environ: dict[str, str] = {"FIRESTORE_EMULATOR_HOST": "elsewhere:1"}
    local_scheduler.configure(environ)
    config = stack_config.load()
    assert environ["FIRESTORE_EMULATOR_HOST"] == config.endpoints["firestore"].address
    assert environ["CLOUD_TASKS_EMULATOR_HOST"] == config.endpoints["tasks"].address
    assert environ["GCLOUD_PROJECT"] == config.project_id and config.project_id.startswith("demo-")
    assert environ["RECONCILE_AFTER_SECONDS"] == stack_config.functions_local_env()["RECONCILE_AFTER_SECONDS"]


def test_a_failing_job_is_reported_and_the_next_one_still_runs() -> None:
    printed: list[str] = []

    def broken() -> object:
        raise RuntimeError("Firestore is down")

    results = local_scheduler.run_once(
        {"reconcile_payments": broken, "sweep_webhook_events": lambda: {"examined": 0}}, printed.append
    )

    assert results == {"reconcile_payments": "RuntimeError: Firestore is down", "sweep_webhook_events": {"examined": 0}}
    lines = [json.loads(line) for line in printed]
    assert [line["job"] for line in lines] == ["reconcile_payments", "sweep_webhook_events"]
    assert lines[0]["error"] == "RuntimeError: Firestore is down" and "result" not in lines[0]
    assert lines[1]["result"] == {"examined": 0} and lines[1]["scheduler"] == "local"
