"""Paid calls per push, in process: the real Gateway with the real adapters (Firestore emulator, Secret Manager
emulator over the real client library, Daraja simulator over HTTP), as one fresh function instance.

Counted from outside the production code (bench/counting.py): a counting SecretBackend around the real one, a
counting requests.Session given to DarajaClient (the simulator's request log is a second witness for OAuth mints),
and a gRPC interceptor on the channel of the Firestore client given to PaymentRepository. Each push is traced on
its own thread, so the figures say what every push cost and in which order (the intent is committed before Daraja
is called).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    AUTH_HOST,
    DARAJA_URL,
    FIRESTORE_HOST,
    PROJECT_ID,
    SECRET_MANAGER_HOST,
    PhoneNumbers,
    SimulatorApp,
    dead_url,
    pending_payments,
    progress,
    remove_payments,
    session,
)
from bench.counting import COMMIT_RPC, CountingBackend, DarajaRequests, FirestoreRpcCounter, Trace, trace
from bench.report import Figure, Run
from scripts.stack_admin import set_scenario, simulator_requests

PHASE = "paid calls"
THREADS = 8
MAX_PUSH_COMMITS = 2  # the intent, then Daraja's answer


# The bench pushes far faster than any one developer may (sandbox: 2/s): its in-process instances get the budget an
# operator would grant a big merchant, so that every push is admitted and what is counted is an admitted push. The
# limiter still runs: its shard is read and written as on every push.
BENCH_PUSH_LIMITS = (("production", 10_000.0, 10_000_000), ("sandbox", 10_000.0, 10_000_000))


def settings() -> Any:
    from gateway.settings import Settings

    return Settings(
        project_id=PROJECT_ID,
        functions_emulator=True,
        auth_emulator_host=AUTH_HOST,
        firestore_emulator_host=FIRESTORE_HOST,
        secret_manager_emulator_host=SECRET_MANAGER_HOST,
        daraja_sandbox_url=DARAJA_URL,
        daraja_production_url=DARAJA_URL,
        callback_base_url=dead_url(),
        push_limits=BENCH_PUSH_LIMITS,
    )


@dataclass
class Instance:
    """One function instance's worth of adapters, caches empty: what a cold gen2 instance starts with, each adapter
    given a counting transport or backend through its constructor."""

    gateway: Any
    repository: Any
    backend: CountingBackend
    daraja: DarajaRequests
    firestore: FirestoreRpcCounter

    @staticmethod
    def new(current: Any) -> Instance:
        from gateway.daraja import DarajaClient
        from gateway.repository import PaymentRepository
        from gateway.secrets import CredentialStore, SecretManagerBackend
        from gateway.services import Gateway

        backend = CountingBackend(SecretManagerBackend(current))
        daraja = DarajaRequests()
        rpcs = FirestoreRpcCounter()
        repository = PaymentRepository(current, client_factory=rpcs.client_factory(current.project_id))
        gateway = Gateway.build(
            current,
            repository,
            CredentialStore(current, backend),
            DarajaClient(current, session_factory=daraja.session_factory()),
        )
        return Instance(gateway, repository, backend, daraja, rpcs)


def _developers(setup: Instance, count: int) -> tuple[list[Any], list[SimulatorApp]]:
    """`count` developers, each with their own simulator app and credentials stored through the real use case."""
    from gateway.http import Developer

    http = session()
    developers = [Developer(uid=f"bench-{uuid.uuid4().hex[:16]}", email=None) for _ in range(count)]
    apps = [SimulatorApp.new() for _ in range(count)]

    def register(pair: tuple[Any, SimulatorApp]) -> None:
        developer, app = pair
        app.register(http)
        stored = setup.gateway.credentials.put(developer, app.credentials_body())
        assert stored["shortcode"] == app.shortcode, stored

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(register, zip(developers, apps, strict=True)))
    http.close()
    return developers, apps


def _push_all(
    instance: Instance, plan: list[tuple[Any, str]], keyed: bool, label: str, threads: int = THREADS
) -> tuple[float, list[Trace], Counter[str]]:
    """Push every (developer, phone) of the plan, THREADS at a time; each push traced on its own thread. Returns the
    traces of the accepted pushes and the refusals by status and code (the push path's own answers, e.g. a 409
    while racing pushes of one developer contend for the same limiter shard)."""
    from gateway.errors import GatewayError

    body_of = {"amount": 10, "account_reference": "BENCH-1", "description": "Bench push"}
    done = itertools.count(1)  # next() on a count is atomic under the GIL
    refused: Counter[str] = Counter()
    local = threading.local()

    def push(item: tuple[Any, str]) -> Trace | None:
        developer, phone = item
        key = f"bench-{uuid.uuid4().hex}" if keyed else None
        if not hasattr(local, "http"):
            local.http = session()
        set_scenario(phone, callbacks=0, http=local.http)  # before the trace: not the push's own cost
        try:
            with trace() as traced:
                result = instance.gateway.payments.push(developer, {**body_of, "phone": phone}, key)
        except GatewayError as refusal:
            refused[f"{refusal.http_status} {refusal.code}"] += 1
            return None
        if result.outcome != "created" or not result.accepted:
            raise RuntimeError(f"push not accepted: {result.outcome} {result.payment}")
        finished = next(done)
        if finished % 250 == 0:
            progress(PHASE, f"{label}: {finished}/{len(plan)}")
        return traced

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        traces = [traced for traced in pool.map(push, plan) if traced is not None]
    return time.perf_counter() - started, traces, refused


def _oauth_requests_seen(consumer_keys: set[str], since_iso: str) -> int:
    with session() as http:
        listed = simulator_requests("oauth", http=http)
    return sum(1 for r in listed if r.get("consumer_key") in consumer_keys and str(r.get("at", "")) >= since_iso)


def _intent_first(traced: Trace) -> bool:
    """The first commit (the intent) went out before the STK push, and Daraja's answer was committed after it."""
    commits = [i for i, event in enumerate(traced.events) if event.startswith(COMMIT_RPC + ":")]
    pushed = traced.index("daraja:stk_push")
    return bool(commits) and pushed is not None and commits[0] < pushed < commits[-1]


def _measure(
    instance: Instance,
    plan: list[tuple[Any, str]],
    keyed: bool,
    label: str,
    apps: list[SimulatorApp],
    threads: int = THREADS,
) -> dict[str, Any]:
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rpcs_before = instance.firestore.snapshot()
    elapsed, traces, refused = _push_all(instance, plan, keyed, label, threads)
    rpcs = instance.firestore.snapshot() - rpcs_before
    n = len(traces)
    if not any(traced.commits for traced in traces):
        raise RuntimeError("no Firestore commit was counted: the counting channel is not in use")
    # Warm: the instance already held this developer's secret and Daraja token (no access, no mint on the way).
    warm = [t for t in traces if not t.count("secret:access") and not t.count("daraja:oauth")] or traces
    reads = [traced.reads for traced in traces]
    commits = [traced.commits for traced in traces]
    shapes = Counter(tuple(traced.commit_sizes) for traced in traces)
    patterns = Counter(
        " > ".join(e for e in traced.events if not e.startswith(("secret:", "daraja:oauth"))) for traced in traces
    )
    return {
        "pushes": n,
        "planned": len(plan),
        "refused": dict(refused),
        "warm_pushes": len(warm),
        "warm_reads_per_push": statistics.fmean(t.reads for t in warm),
        "warm_documents_read_per_push": statistics.fmean(t.documents_read for t in warm),
        "warm_commits_per_push": statistics.fmean(t.commits for t in warm),
        "warm_writes_per_push": statistics.fmean(sum(t.commit_sizes) for t in warm),
        "warm_documents": dict(Counter(d for t in warm for d in t.documents).most_common()),
        "retried_pushes": sum(1 for t in traces if t.commits > MAX_PUSH_COMMITS or t.reads > 1),
        "keyed": keyed,
        "elapsed_s": elapsed,
        "secret_manager_accesses": instance.backend.accesses,
        "oauth_mints": instance.daraja.mints,
        "oauth_requests_seen_by_simulator": _oauth_requests_seen({a.consumer_key for a in apps}, since),
        "daraja_stk_pushes": instance.daraja.pushes,
        "rpc_calls": dict(sorted(rpcs.items())),
        "reads_per_push": statistics.fmean(reads),
        "reads_max": max(reads),
        "commits_per_push": statistics.fmean(commits),
        "commits_max": max(commits),
        "commits_histogram": {str(k): v for k, v in sorted(Counter(commits).items())},
        "document_writes_per_push": statistics.fmean(sum(traced.commit_sizes) for traced in traces),
        "writes_per_commit_by_push": {" + ".join(map(str, k)): v for k, v in shapes.most_common()},
        "intent_before_daraja": sum(_intent_first(traced) for traced in traces),
        "call_orders": dict(patterns.most_common(5)),
    }


def _documents(m: dict[str, Any]) -> str:
    """The documents a warm push named, per push: "read developers/* x1.00, write developers/*/payments/* x2.00"."""
    n = max(1, m["warm_pushes"])
    return ", ".join(f"{doc} x{count / n:.2f}" for doc, count in m["warm_documents"].items())


def _operations_figure(m: dict[str, Any], what: str, note: str) -> Figure:
    """Firestore operations per warm push: read round trips (and the documents they read), commits and writes."""
    refused = f"; refused: {m['refused']}" if m["refused"] else ""
    return Figure.against(
        PHASE,
        f"Firestore operations per push, {what} ({m['warm_pushes']:,} warm pushes)",
        m["warm_commits_per_push"],
        f"{m['warm_reads_per_push']:.2f} read round trips ({m['warm_documents_read_per_push']:.2f} documents) + "
        f"{m['warm_commits_per_push']:.2f} commits ({m['warm_writes_per_push']:.2f} writes)",
        f"<= {MAX_PUSH_COMMITS} commits",
        m["warm_commits_per_push"] <= MAX_PUSH_COMMITS,
        f"{note}; per warm push: {_documents(m)}{refused}",
    )


def _reads_figure(m: dict[str, Any]) -> Figure:
    """Issue 14: a warm push reads nothing (set-up cached per instance, checks folded into the commit)."""
    read = [doc.split(" ", 1)[1] for doc in m["warm_documents"] if doc.startswith("read ")]
    value = m["warm_documents_read_per_push"]
    return Figure.against(
        PHASE,
        "Firestore document reads per warm push",
        value,
        f"{value:.2f} documents in {m['warm_reads_per_push']:.2f} round trips",
        "0",
        value == 0,
        ""
        if value == 0
        else f"every warm push reads {', '.join(read)} in one round trip before its intent commit (counted on the "
        "wire). Kept on purpose: they are what the push decides on and what the intent commit's preconditions guard "
        "(the payer's phone lock and 10-minute window, one limiter shard, the set-up with its secret version and "
        "limits). A per-instance cache cannot stand in for the payer (every settlement rewrites it, on another "
        "instance) nor for a shard other instances draw from, and a cached set-up would let a warm instance push "
        "with rotated-out keys; committing on a guess instead of reading turns every returning payer into a lost "
        "commit plus the read. The round trip is the 'Firestore read' of 'parts of a keyed push'",
    )


def _contention_figure(m: dict[str, Any]) -> Figure:
    """One developer, THREADS pushes at a time: what racing for the same limiter shards and payer costs."""
    return Figure(
        PHASE,
        f"one developer, {THREADS} pushes at a time ({m['planned']:,} planned)",
        f"{m['pushes']:,} accepted, refused {m['refused'] or 'none'}; {m['retried_pushes']:,} read or committed "
        f"again; {m['reads_per_push']:.2f} read round trips + {m['commits_per_push']:.2f} commits per accepted push "
        f"(max {m['reads_max']} + {m['commits_max']})",
        value=m["pushes"] / max(1, m["planned"]),
        note="racing pushes of one developer lose their commit's precondition on a shared limiter shard (or payer) "
        "document, read again and retry; a keyed push that keeps losing is answered 409 idempotency_in_progress",
    )


def run(result: Run, pushes: int = 1000, developers: int = 100, unkeyed_count: int = 50) -> None:
    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", FIRESTORE_HOST)
    phones = PhoneNumbers()
    details: dict[str, Any] = {}
    # The payers' callbacks are switched off (a simulator scenario per phone, set before each push and not part of
    # what is counted): settling 2,000 payments is the callbacks phase's work. The pending payments are removed at
    # the end, so no other suite's reconcile run sweeps them.
    bench_uids: list[str] = []
    setup: Instance | None = None
    try:
        current = settings()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the gateway's JSON log lines
            setup = Instance.new(current)
            progress(PHASE, f"registering 1 + {developers} developers (simulator apps, Secret Manager, Firestore)")
            (solo,), solo_apps = _developers(setup, 1)
            many, many_apps = _developers(setup, developers)
            bench_uids = [solo.uid, *(d.uid for d in many)]

            progress(PHASE, f"{pushes} pushes for one developer, {THREADS} at a time, each with an Idempotency-Key")
            details["one_developer"] = single = _measure(
                Instance.new(current), [(solo, phones.take()) for _ in range(pushes)], True, "one developer", solo_apps
            )
            progress(PHASE, f"{unkeyed_count} pushes for one developer without an Idempotency-Key, one at a time")
            details["one_developer_unkeyed"] = unkeyed = _measure(
                Instance.new(current),
                [(solo, phones.take()) for _ in range(unkeyed_count)],
                False,
                "unkeyed",
                solo_apps,
                threads=1,
            )
            progress(PHASE, f"{pushes} pushes across {developers} developers")
            plan = [(many[i % developers], phones.take()) for i in range(pushes)]
            details["many_developers"] = multi = _measure(
                Instance.new(current), plan, True, f"{developers} developers", many_apps
            )
    finally:
        if setup is not None and bench_uids:
            client = setup.repository.client
            details["cleanup"] = {"pending_removed": remove_payments(client, pending_payments(client, bench_uids))}
    result.details["paid_calls"] = details
    for label, m in details.items():
        if label != "cleanup":
            progress(
                PHASE,
                f"{label}: {m['reads_per_push']:.2f} reads + {m['commits_per_push']:.2f} commits per push "
                f"(max {m['reads_max']} + {m['commits_max']}); commits {m['writes_per_commit_by_push']}; "
                f"SM {m['secret_manager_accesses']}, OAuth {m['oauth_mints']}",
            )

    n = single["pushes"]
    result.figures.append(
        Figure.against(
            PHASE,
            f"Secret Manager accesses, {n:,} pushes / 1 developer",
            single["secret_manager_accesses"],
            str(single["secret_manager_accesses"]),
            "1",
            single["secret_manager_accesses"] == 1,
            "counted by a SecretBackend wrapped around the real SecretManagerBackend",
        )
    )
    result.figures.append(
        Figure.against(
            PHASE,
            f"Daraja OAuth mints, {n:,} pushes / 1 developer",
            single["oauth_mints"],
            f"{single['oauth_mints']} (simulator saw {single['oauth_requests_seen_by_simulator']})",
            "1",
            single["oauth_mints"] == 1 and single["oauth_requests_seen_by_simulator"] == 1,
            "counted by the requests.Session given to DarajaClient, and in the simulator's request log",
        )
    )
    result.figures.append(
        _operations_figure(
            multi,
            f"keyed, {developers} developers",
            "counted on the wire by a gRPC interceptor on the Firestore client's channel; commit 1 = the intent "
            "before Daraja is called, commit 2 = Daraja's answer after",
        )
    )
    result.figures.append(_reads_figure(multi))
    result.figures.append(
        _operations_figure(unkeyed, "unkeyed, 1 developer, one at a time", "without an Idempotency-Key")
    )
    result.figures.append(_contention_figure(single))
    ordered = single["intent_before_daraja"] + unkeyed["intent_before_daraja"] + multi["intent_before_daraja"]
    total = single["pushes"] + unkeyed["pushes"] + multi["pushes"]
    result.figures.append(
        Figure.against(
            PHASE,
            "intent committed before Daraja is called, answer after",
            ordered / total,
            f"{ordered:,}/{total:,} pushes",
            "all",
            ordered == total,
            check=True,
        )
    )
    result.figures.append(
        Figure.against(
            PHASE,
            f"Secret Manager accesses, {multi['pushes']:,} pushes / {developers} developers",
            multi["secret_manager_accesses"],
            str(multi["secret_manager_accesses"]),
            f"<= {developers}",
            multi["secret_manager_accesses"] <= developers,
        )
    )
    result.figures.append(
        Figure.against(
            PHASE,
            f"Daraja OAuth mints, {multi['pushes']:,} pushes / {developers} developers",
            multi["oauth_mints"],
            f"{multi['oauth_mints']} (simulator saw {multi['oauth_requests_seen_by_simulator']})",
            f"<= {developers}",
            multi["oauth_mints"] <= developers and multi["oauth_requests_seen_by_simulator"] <= developers,
        )
    )
    result.figures.append(
        Figure(
            PHASE,
            "in-process push throughput through the emulators",
            f"{n / single['elapsed_s']:.0f}/s and {multi['pushes'] / multi['elapsed_s']:.0f}/s "
            f"({THREADS} threads; {single['elapsed_s']:.1f} s + {multi['elapsed_s']:.1f} s)",
            value=n / single["elapsed_s"],
        )
    )
