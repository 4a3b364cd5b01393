"""`make bench`: measure the gateway's figures against their baselines, print a table, save bench/results/latest.json.

Run with the local stack up and its variables exported (`scripts/stack.py ensure -- .venv/bin/python bench/run.py`
does both). Phases, in order (about 3 minutes on 2 idle cores, up to 2.5 more while the trigger backlog of a
previous run drains; see webhooks):
    coldstart   import time of functions/main.py vs a firebase-functions hello world (bench/hello); heavy clients
                left lazy; the slowest direct imports of main.py
    webhooks    settle-to-delivery latency p50/p95 and deliveries/s for 1,000 settlements to one receiver that
                verifies signatures with standardwebhooks, through the stack's Firestore trigger and Cloud Tasks
                function; every event received at least once, the duplicate rate (bench/webhooks.py)
    warm_push   each figure against its floor, interleaved: stk_push through the Functions emulator vs the hello
                world through the same emulator + the push straight to Daraja + two raw Firestore commits, with
                the instant simulator and with Daraja answering in 300 ms; p95 / p50 and where the tail comes from
                (the same push served by functions-framework alone, the parts of a push, an in-process profile);
                the push with a mpg_test_ API key against the ID token in the same rounds, and the Firestore reads
                per authenticated call for each credential, counted on the wire (bench/auth_reads.py)
    paid_calls  Secret Manager accesses, OAuth mints and Firestore operations per push over 1,000 pushes (in
                process, counted from outside the production code: bench/counting.py)
    callbacks   2,000 callbacks at concurrency 16 via functions-framework against as many raw settlement commits
                (alternating blocks); exactly-once verified; junk and unknown-token callbacks beside real ones;
                Firestore operations per callback counted through the HTTP edge, in process
    memory      RSS and cache sizes after 100,000 developers, in a fresh process

    python bench/run.py [--only coldstart,memory] [--output PATH]
A phase that fails is reported as ERROR and the others still run. The exit code is 1 when a phase failed or a
correctness check (not a speed target) missed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent.parent / "functions")]

from bench import callbacks, coldstart, memory, paid_calls, warm_push, webhooks  # noqa: E402
from bench.common import RESULTS_DIR, progress  # noqa: E402
from bench.report import ERROR, MISS, Figure, Run, loadavg, machine, save, table  # noqa: E402

PHASES: dict[str, Callable[[Run], None]] = {
    "coldstart": coldstart.run,
    "webhooks": webhooks.run,  # before the phases whose payments leave the emulator's trigger a backlog of events
    "warm_push": warm_push.run,
    "paid_calls": paid_calls.run,
    "callbacks": callbacks.run,
    "memory": memory.run,
}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so every phase's finally block stops its child processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated phases out of {','.join(PHASES)}")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args()
    chosen = [p.strip() for p in args.only.split(",")] if args.only else list(PHASES)
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown:
        parser.error(f"unknown phases: {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, _interrupt)

    result = Run()
    host = machine()
    result.loadavg["start"] = loadavg()
    progress(
        "bench",
        f"{host['nproc']} x {host['cpu_model']}, Python {host['python']}, load {result.loadavg['start']}; "
        f"phases: {', '.join(chosen)}",
    )
    started = time.monotonic()
    for name in chosen:
        phase_started = time.monotonic()
        progress(name, "starting")
        try:
            PHASES[name](result)
        except KeyboardInterrupt:
            progress(name, "interrupted")
            return 130
        except Exception as failure:
            traceback.print_exc()
            result.figures.append(
                Figure(name, "phase failed", f"{type(failure).__name__}: {failure}"[:200], result=ERROR)
            )
        result.phase_seconds[name] = time.monotonic() - phase_started
        result.loadavg[name] = loadavg()
        progress(name, f"done in {result.phase_seconds[name]:.1f} s (load {result.loadavg[name]})")
    total_s = time.monotonic() - started
    for figure in result.figures:  # every MISS says what was measured against what, at least
        if figure.result == MISS and not figure.note:
            figure.note = f"MISS: measured {figure.measured}, target {figure.target}"

    print()
    print(
        f"mpesa-gateway benchmarks, {result.started_at:%Y-%m-%d %H:%M} UTC, {host['nproc']} x {host['cpu_model']}, "
        f"Python {host['python']}, {total_s:.0f} s, load average at start {result.loadavg['start']}"
    )
    print(table(result.figures))
    save(result, args.output, total_s)
    print(f"\nsaved {args.output}")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
