"""Cloud Scheduler for the local stack.

In production Cloud Scheduler runs `reconcile_payments` (payments whose callback never came are settled through STK
Push Query) and `sweep_webhook_events` (events whose Firestore trigger failed or was dropped are fanned out) every
5 minutes. The Functions emulator runs no scheduled function (it would need the Pub/Sub emulator, which cannot be
downloaded offline), so on the local stack neither ever runs. This runs both, in this process, against the running
stack, with the functions' own local settings (functions/.env.local), as their scheduled instances would:

    make schedules                                   # every 60 s, beside `make dev` or `make demo KEEP=1`
    .venv/bin/python scripts/local_scheduler.py --every 10
    .venv/bin/python scripts/local_scheduler.py --once

Each run prints one JSON line per job: its summary, or its error. A job that fails is reported and the next run
tries again, as the scheduler would. It only ever talks to the local stack's addresses (scripts/stack_config.py),
and the gateway library refuses its local-only settings anywhere but a demo- project on the emulators.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "functions"):  # run as `python scripts/local_scheduler.py`
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from scripts import stack_config  # noqa: E402


def configure(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Point this process's gateway library at the stack, as the Functions emulator points the functions."""
    config = stack_config.load()
    environ.update(stack_config.functions_local_env())
    environ.update(config.env())
    # firebase-admin finds the Tasks emulator through this variable, as the Functions emulator sets it.
    environ["CLOUD_TASKS_EMULATOR_HOST"] = config.endpoints["tasks"].address


def run_once(jobs: dict[str, Callable[[], Any]], out: Callable[[str], None] = print) -> dict[str, Any]:
    """Every job once; returns what each answered (or its error, as a string)."""
    results: dict[str, Any] = {}
    for name, job in jobs.items():
        started = time.monotonic()
        try:
            results[name] = job()
            line = {"job": name, "result": results[name]}
        except Exception as failure:  # noqa: BLE001 - reported; the next run tries again, as the scheduler would
            results[name] = f"{type(failure).__name__}: {failure}"
            line = {"job": name, "error": results[name]}
        out(
            json.dumps(
                {"scheduler": "local", "at": datetime.now(UTC).isoformat(timespec="seconds"), **line}
                | {"seconds": round(time.monotonic() - started, 3)},
                default=str,
            )
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between runs (default 60)")
    parser.add_argument("--once", action="store_true", help="run each job once and exit")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error("--every must be a positive number of seconds")

    configure()
    from gateway import api  # after configure(): the library reads its settings on first use

    jobs: dict[str, Callable[[], Any]] = {
        "reconcile_payments": api.reconcile_payments,
        "sweep_webhook_events": api.sweep_webhook_events,
    }
    while True:
        results = run_once(jobs)
        if args.once:
            return 1 if any(isinstance(result, str) for result in results.values()) else 0
        try:
            time.sleep(args.every)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
