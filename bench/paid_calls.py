"""Paid calls per 1,000 pushes, in process: the real Gateway with the real adapters (Firestore emulator, Secret
Manager emulator over the real client library, Daraja simulator over HTTP), as one fresh function instance.

Counted three ways where possible: the adapters' own counters (CredentialStore.backend_reads, DarajaClient.mints,
PaymentRepository.counters), a wrapper around the Secret Manager backend, the Firestore RPCs actually sent, and the
OAuth requests the simulator actually received.
"""

from __future__ import annotations

import contextlib
import itertools
import os
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
    Child,
    PhoneNumbers,
    SimulatorApp,
    dead_url,
    free_port,
    functions_framework,
    progress,
    session,
    settle_or_remove,
    stop_all,
)
from bench.firestore_rpcs import RPCS
from bench.report import Figure, Run

PHASE = "paid calls"
THREADS = 8


def settings(callback_base_url: str | None = None) -> Any:
    from gateway.settings import Settings

    return Settings(
        project_id=PROJECT_ID,
        functions_emulator=True,
        auth_emulator_host=AUTH_HOST,
        firestore_emulator_host=FIRESTORE_HOST,
        secret_manager_emulator_host=SECRET_MANAGER_HOST,
        daraja_sandbox_url=DARAJA_URL,
        daraja_production_url=DARAJA_URL,
        callback_base_url=callback_base_url or dead_url(),
    )


class CountingBackend:
    """The real SecretManagerBackend, with every access counted on the way through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.accesses = 0

    def access_latest(self, secret_id: str) -> bytes | None:
        self.accesses += 1
        data: bytes | None = self._inner.access_latest(secret_id)
        return data

    def add_version(self, secret_id: str, data: bytes) -> None:
        self._inner.add_version(secret_id, data)

    def destroy(self, secret_id: str) -> bool:
        destroyed: bool = self._inner.destroy(secret_id)
        return destroyed


@dataclass
class Instance:
    """One function instance's worth of adapters, caches empty: what a cold gen2 instance starts with."""

    gateway: Any
    repository: Any
    credentials: Any
    daraja: Any
    backend: CountingBackend

    @staticmethod
    def new(current: Any) -> Instance:
        from gateway.daraja import DarajaClient
        from gateway.repository import PaymentRepository
        from gateway.secrets import CredentialStore, SecretManagerBackend
        from gateway.services import Gateway

        backend = CountingBackend(SecretManagerBackend(current))
        repository = PaymentRepository(current)
        credentials = CredentialStore(current, backend)
        daraja = DarajaClient(current)
        return Instance(Gateway(current, repository, credentials, daraja), repository, credentials, daraja, backend)


def _developers(setup: Instance, count: int) -> tuple[list[Any], list[SimulatorApp]]:
    """`count` developers, each with their own simulator app and credentials stored through the real use case."""
    from gateway.http import Developer

    http = session()
    developers = [Developer(uid=f"bench-{uuid.uuid4().hex[:16]}", email=None) for _ in range(count)]
    apps = [SimulatorApp.new() for _ in range(count)]

    def register(pair: tuple[Any, SimulatorApp]) -> None:
        developer, app = pair
        app.register(http)
        answer = setup.gateway.put_credentials(developer, app.credentials_body())
        assert answer.status == 200, answer

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(register, zip(developers, apps, strict=True)))
    http.close()
    return developers, apps


def _push_all(instance: Instance, plan: list[tuple[Any, str]], keyed: bool, label: str) -> float:
    body_of = {"amount": 10, "account_reference": "BENCH-1", "description": "Bench push"}
    done = itertools.count(1)  # next() on a count is atomic under the GIL

    def push(item: tuple[Any, str]) -> None:
        developer, phone = item
        key = f"bench-{uuid.uuid4().hex}" if keyed else None
        answer = instance.gateway.create_payment(developer, {**body_of, "phone": phone}, key)
        if answer.status != 201:
            raise RuntimeError(f"push failed: {answer.status} {answer.body}")
        finished = next(done)
        if finished % 250 == 0:
            progress(PHASE, f"{label}: {finished}/{len(plan)}")

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(push, plan))
    return time.perf_counter() - started


def _oauth_requests_seen(shortcodes: set[str], since_iso: str) -> int:
    with session() as http:
        listed = http.get(f"{DARAJA_URL}/simulator/requests", params={"kind": "oauth"}, timeout=30).json()["requests"]
    return sum(1 for r in listed if str(r.get("shortcode")) in shortcodes and r.get("at", "") >= since_iso)


def _measure(
    instance: Instance, plan: list[tuple[Any, str]], keyed: bool, label: str, shortcodes: set[str]
) -> dict[str, Any]:
    calls_before, commits_before = RPCS.snapshot()
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    elapsed = _push_all(instance, plan, keyed, label)
    calls_after, commits_after = RPCS.snapshot()
    calls = calls_after - calls_before
    commits = commits_after - commits_before
    counters = instance.repository.counters
    n = len(plan)
    return {
        "pushes": n,
        "elapsed_s": elapsed,
        "secret_manager_accesses": instance.backend.accesses,
        "credential_store_backend_reads": instance.credentials.backend_reads,
        "oauth_mints": instance.daraja.mints,
        "oauth_requests_seen_by_simulator": _oauth_requests_seen(shortcodes, since),
        "repository_reads": counters.reads,
        "repository_commits": counters.commits,
        "rpc_calls": dict(calls),
        "rpc_commits_by_write_count": {str(k): v for k, v in sorted(commits.items())},
        "rpc_reads_per_push": (calls["batch_get_documents"] + calls["run_query"]) / n,
        "rpc_commits_per_push": calls["commit"] / n,
        "document_writes_per_push": sum(k * v for k, v in commits.items()) / n,
    }


def run(result: Run, pushes: int = 1000, developers: int = 100) -> None:
    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", FIRESTORE_HOST)
    RPCS.install()
    phones = PhoneNumbers()
    details: dict[str, Any] = {}
    # The payments' callbacks settle them on a functions-framework mpesa_callback of our own, as they would in
    # production: payments left pending would be swept by other suites' reconcile runs on this shared stack.
    children: list[Child] = []
    bench_uids: list[str] = []
    setup: Instance | None = None
    try:
        receiver_port = free_port()
        receiver = functions_framework(
            "ff-mpesa_callback-paid", "mpesa_callback", receiver_port, DARAJA_URL, dead_url()
        )
        children.append(receiver)
        receiver.wait_http(receiver.url)
        current = settings(f"http://127.0.0.1:{receiver_port}")
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the gateway's JSON log lines
            setup = Instance.new(current)
            progress(PHASE, f"registering 1 + {developers} developers (simulator apps, Secret Manager, Firestore)")
            (solo,), (solo_app,) = _developers(setup, 1)
            many, many_apps = _developers(setup, developers)
            bench_uids = [solo.uid, *(d.uid for d in many)]

            one = Instance.new(current)
            progress(PHASE, f"{pushes} pushes for one developer, {THREADS} at a time, each with an Idempotency-Key")
            details["one_developer"] = single = _measure(
                one, [(solo, phones.take()) for _ in range(pushes)], True, "one developer", {solo_app.shortcode}
            )
            unkeyed_count = 50
            unkeyed_instance = Instance.new(current)
            details["one_developer_unkeyed"] = unkeyed = _measure(
                unkeyed_instance,
                [(solo, phones.take()) for _ in range(unkeyed_count)],
                False,
                "unkeyed",
                {solo_app.shortcode},
            )

            spread = Instance.new(current)
            progress(PHASE, f"{pushes} pushes across {developers} developers")
            plan = [(many[i % developers], phones.take()) for i in range(pushes)]
            details["many_developers"] = multi = _measure(
                spread, plan, True, f"{developers} developers", {a.shortcode for a in many_apps}
            )
        progress(PHASE, "waiting for the callbacks to settle every payment")
    finally:
        if setup is not None and bench_uids:
            details["cleanup"] = settle_or_remove(setup.repository.client, bench_uids, PHASE)
        stop_all(children)
    result.details["paid_calls"] = details

    n = single["pushes"]
    result.figures.append(
        Figure.against(
            PHASE,
            f"Secret Manager accesses, {n:,} pushes / 1 developer",
            single["secret_manager_accesses"],
            f"{single['secret_manager_accesses']} (store counted {single['credential_store_backend_reads']})",
            "1",
            single["secret_manager_accesses"] == 1,
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
        )
    )
    result.figures.append(
        Figure(
            PHASE,
            "Firestore RPCs per keyed push",
            f"{single['rpc_reads_per_push']:.2f} reads, {single['rpc_commits_per_push']:.2f} commits, "
            f"{single['document_writes_per_push']:.2f} doc writes",
            value=single["rpc_reads_per_push"] + single["rpc_commits_per_push"],
            note="1 read (developer set-up) + 1 commit claiming the Idempotency-Key before Daraja is called + 1 commit "
            "of payment, lookup and idempotency answer",
        )
    )
    by_writes = Counter({int(k): v for k, v in single["rpc_commits_by_write_count"].items()})
    recording = by_writes[3]
    result.figures.append(
        Figure.against(
            PHASE,
            "commits recording a push (payment + lookup + idempotency answer)",
            recording / n,
            f"{recording / n:.2f} commit of 3 writes per push",
            "1 commit",
            recording == n and by_writes[2] == 0,
        )
    )
    result.figures.append(
        Figure(
            PHASE,
            "Firestore RPCs per push without Idempotency-Key",
            f"{unkeyed['rpc_reads_per_push']:.2f} reads, {unkeyed['rpc_commits_per_push']:.2f} commits "
            f"({unkeyed['pushes']} pushes)",
            value=unkeyed["rpc_reads_per_push"] + unkeyed["rpc_commits_per_push"],
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
            multi["oauth_mints"] <= developers,
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
