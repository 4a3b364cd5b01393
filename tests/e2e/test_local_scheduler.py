"""scripts/local_scheduler.py, the local stack's Cloud Scheduler: the Functions emulator runs no scheduled function,
so without it a payment whose callback was lost is settled locally only when someone reads it. Run once, as a
separate process against the stack, it settles such a payment through STK Push Query (reconcile_payments) and runs
the webhook sweep, printing one JSON line per job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests import support
from tests.tenants import Tenant, local_settings, new_tenant, payment_doc

ROOT = Path(__file__).resolve().parents[2]


def run_scheduler_once() -> tuple[int, dict[str, dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_scheduler.py"), "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"scheduler"')]
    return done.returncode, {str(line["job"]): line for line in lines}


def test_a_lost_callback_is_settled_by_the_local_schedule_without_anyone_reading_it() -> None:
    tenant: Tenant = new_tenant()
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=100, callbacks=0)  # Daraja loses the callback
    payment = tenant.push(phone).json()
    # Past the reconcile delay of the stack's functions (RECONCILE_AFTER_SECONDS), read from Firestore directly:
    # payment_status would query Daraja itself and settle it.
    time.sleep(local_settings().reconcile_after_s + 1)
    assert payment_doc(tenant, payment["id"])["status"] == "pending"

    # One run examines up to RECONCILE_BATCH_SIZE due payments, oldest check first; on a stack other suites left
    # due payments on, this one may take a further run or two.
    runs = []
    for _ in range(5):
        runs.append(run_scheduler_once())
        if payment_doc(tenant, payment["id"])["status"] != "pending":
            break

    for returncode, jobs in runs:
        assert returncode == 0, jobs
        assert set(jobs) == {"reconcile_payments", "sweep_webhook_events"}
        assert "error" not in jobs["reconcile_payments"] and "error" not in jobs["sweep_webhook_events"], jobs
    stored = payment_doc(tenant, payment["id"])
    assert stored["status"] == "succeeded" and "settled_by_query" in stored["flags"], (stored["status"], len(runs))
    queries = support.simulator_requests("stk_query", tenant.app.shortcode)
    assert any(q.get("checkout_request_id") == payment["checkout_request_id"] for q in queries)
