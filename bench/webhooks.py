"""Webhook delivery (issue 12): settle-to-delivery latency, deliveries per second to one receiver, at-least-once and
the duplicate rate, on the local stack's own delivery path.

A developer signed up in the Auth emulator registers one endpoint through the `webhook_endpoints` function (the
stack's Functions emulator), for `payment.succeeded`, pointing at a small HTTP receiver in this process that checks
every delivery's signature with the `standardwebhooks` reference library. Its pending payments are recorded in
process as an accepted push leaves them (bench/callbacks.py `record_all`), and settled by Daraja-shaped success
callbacks POSTed to functions-framework serving mpesa_callback, as bench/callbacks.py does. Each settlement commits
a `payment.succeeded` event; from there the path is the stack's: the Firestore trigger (`on_event_created`) fans it
out and enqueues a Cloud Tasks task, and the Tasks emulator runs `webhookdelivery`, which signs and POSTs.

- probe: one settlement, waited for alone (up to PROBE_TIMEOUT_S): the first delivery of the run, behind cold
  workers or the trigger backlog a previous run or suite left (every payment commit writes an event the trigger
  must fan out, endpoint or not), so that the latency samples start on a drained trigger;
- latency: LATENCY_SAMPLES settlements, open loop at LATENCY_RATE per second (below what the emulator's trigger
  fans out), each timed from its callback's answer (the settlement's commit is before it) to the receiver reading
  the delivery; the delivery log splits each into trigger, queue and send;
- burst: BURST settlements as fast as 16 callbacks at a time settle them; deliveries per second = the events that
  arrived / (the last first delivery - the first callback sent). Every payment must reach the receiver at least
  once, with a valid signature; a delivery of an event already received is a duplicate.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from bench.callbacks import CONCURRENCY, Pending, _pending, callback_server, record_all
from bench.common import (
    FUNCTIONS_URL,
    Child,
    PhoneNumbers,
    firestore_client,
    ms,
    percentile,
    progress,
    session,
    settle_or_remove,
    sign_up,
    stop_all,
)
from bench.report import Figure, Run

PHASE = "webhooks"
TARGET_P95_S = 2.0  # issue 12: settle-to-delivery p95, locally
LATENCY_SAMPLES = 40
LATENCY_RATE = 4.0  # settlements per second while latency is measured
BURST = 1000  # issue 12: 1,000 settlements to one receiver
DELIVERY_TIMEOUT_S = 150.0  # how long the burst's deliveries may take before the missing ones are reported
DUPLICATE_GRACE_S = 3.0  # kept listening after the last first delivery, for duplicates
SWEEP_WAIT_S = 60.0  # how long the events the sweep fanned out may take to arrive
PROBE_TIMEOUT_S = 150.0  # the probe waits out the trigger backlog a previous run (or suite) left, up to this long


class Receiver:
    """A developer's webhook receiver on 127.0.0.1: verifies each delivery with `standardwebhooks`, answers 204
    (400 for a bad signature) and records, per payment, the times (monotonic and wall clock) it arrived."""

    def __init__(self) -> None:
        self.secret = ""
        self.arrivals: dict[str, list[tuple[float, float, str]]] = {}  # payment id -> (monotonic, wall, webhook-id)
        self.invalid = 0
        self.wrong_type: Counter[str] = Counter()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at, wall = time.monotonic(), time.time()
                status = receiver._receive(body, {k.lower(): v for k, v in self.headers.items()}, at, wall)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/bench"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _receive(self, body: bytes, headers: dict[str, str], at: float, wall: float) -> int:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        try:
            payload = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            with self._changed:
                self.invalid += 1
            return 400
        with self._changed:
            if payload.get("type") != "payment.succeeded":
                self.wrong_type[str(payload.get("type"))] += 1
            payment_id = str((payload.get("data") or {}).get("id"))
            self.arrivals.setdefault(payment_id, []).append((at, wall, headers.get("webhook-id", "")))
            self._changed.notify_all()
        return 204

    def wait_for(self, payment_ids: list[str], timeout_s: float) -> int:
        """Wait until every one of these payments arrived at least once; returns how many did."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                arrived = sum(1 for payment_id in payment_ids if payment_id in self.arrivals)
                left = deadline - time.monotonic()
                if arrived == len(payment_ids) or left <= 0:
                    return arrived
                self._changed.wait(min(left, 1.0))

    def first(self, payment_id: str) -> tuple[float, float, str] | None:
        with self._changed:
            found = self.arrivals.get(payment_id)
            return min(found) if found else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _scheduled_sweep() -> dict[str, int]:
    """sweep_webhook_events, in this process against the stack, as Cloud Scheduler runs it every 5 minutes in
    production: the fan-out of events whose trigger never finished (the local grace period has passed).

    Its settings are the functions' own on the local stack, gathered as scripts/local_scheduler.py gathers them, but
    into a dict: not into os.environ, where the later phases' functions-framework children and gateway.container's
    cached settings would pick up .env.local (fault injection, short revocation cache) and change their figures."""
    import os

    from gateway.delivery_queue import CloudTasksQueue
    from gateway.services.webhooks import Webhooks
    from gateway.settings import Settings
    from gateway.webhook_secrets import SecretManagerVersions, WebhookSecrets
    from gateway.webhook_store import WebhookStore
    from gateway.webhook_transport import WebhookTransport
    from scripts import local_scheduler

    env: dict[str, str] = {}
    local_scheduler.configure(env)
    # firebase-admin reads the Tasks emulator's address from os.environ only; nothing but the delivery queue uses it.
    os.environ.setdefault("CLOUD_TASKS_EMULATOR_HOST", env["CLOUD_TASKS_EMULATOR_HOST"])
    current = Settings.from_env(env)
    webhooks = Webhooks.build(
        current,
        WebhookStore(current),
        WebhookSecrets(SecretManagerVersions(current)),
        WebhookTransport(current.webhook_timeout_s, allow_loopback=current.local_stack_trusted),
        CloudTasksQueue(current),
    )
    return webhooks.deliveries.sweep()


def _settle(http: requests.Session, base_url: str, item: Pending) -> float:
    """POST the item's success callback; the monotonic time its answer came back (the settlement committed)."""
    answer = http.post(f"{base_url}/{item.token}", json=item.callback(), timeout=60)
    if answer.status_code != 200:
        raise RuntimeError(f"callback answered {answer.status_code}: {answer.text[:200]}")
    return time.monotonic()


def _settle_all(base_url: str, items: list[Pending]) -> list[float]:
    local = threading.local()

    def post(item: Pending) -> float:
        if not hasattr(local, "http"):
            local.http = session()
        return _settle(local.http, base_url, item)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(post, items))


def _stages(
    client: Any, uid: str, endpoint_id: str, receiver: Receiver, items: list[Pending]
) -> dict[str, tuple[float, float]]:
    """p50 and p95 seconds of each stage of the first delivery, from the delivery log: the event's commit -> the trigger
    wrote the delivery -> the task started the attempt -> the receiver read it (one machine, one clock)."""
    from gateway.webhook_store import delivery_from_document

    stages: dict[str, list[float]] = {"trigger": [], "queue": [], "send": []}
    for item in items:
        first = receiver.first(item.payment_id)
        if first is None:
            continue
        _, wall, event_id = first
        event = client.document(f"developers/{uid}/events/{event_id}").get().to_dict() or {}
        log = client.document(f"developers/{uid}/events/{event_id}/deliveries/{endpoint_id}").get().to_dict()
        if not log or not event.get("created_at"):
            continue
        delivery = delivery_from_document(log)
        if not delivery.attempts:
            continue
        committed: datetime = event["created_at"]
        stages["trigger"].append((delivery.created_at - committed).total_seconds())
        stages["queue"].append((delivery.attempts[0].at - delivery.created_at).total_seconds())
        stages["send"].append(wall - delivery.attempts[0].at.timestamp())
    return {name: (percentile(values, 50), percentile(values, 95)) for name, values in stages.items() if values}


def run(result: Run, burst: int = BURST) -> None:
    http = session()
    client = firestore_client()
    receiver = Receiver()
    children: list[Child] = []
    uid, endpoint_id, id_token = "", "", ""
    details: dict[str, Any] = result.details.setdefault("webhooks", {})
    try:
        uid, id_token = sign_up(http)
        headers = {"Authorization": f"Bearer {id_token}"}
        created = http.post(
            f"{FUNCTIONS_URL}/webhook_endpoints",
            json={"url": receiver.url, "enabled_events": ["payment.succeeded"], "description": "bench receiver"},
            headers=headers,
            timeout=120,
        )
        if created.status_code != 201:
            raise RuntimeError(f"POST webhook_endpoints failed: {created.status_code} {created.text[:300]}")
        endpoint_id, receiver.secret = created.json()["id"], created.json()["secret"]
        phones = PhoneNumbers()
        items = [_pending("WH", i, phones) for i in range(1 + LATENCY_SAMPLES + burst)]
        probe, timed, bursting = items[0], items[1 : 1 + LATENCY_SAMPLES], items[1 + LATENCY_SAMPLES :]
        record_all(client, uid, items)
        server = callback_server("ff-mpesa_callback-webhooks")
        children.append(server)
        server.wait_http(server.url)
        base_url = server.url.rstrip("/")

        progress(PHASE, f"endpoint {endpoint_id} registered; probe: one settlement, waited for alone")
        settled = _settle(http, base_url, probe)
        receiver.wait_for([probe.payment_id], PROBE_TIMEOUT_S)
        first = receiver.first(probe.payment_id)
        probe_s = first[0] - settled if first else None
        details["probe_s"] = probe_s

        progress(PHASE, f"latency: {LATENCY_SAMPLES} settlements at {LATENCY_RATE:g}/s")
        settled_at: dict[str, float] = {}
        started = time.monotonic()
        for i, item in enumerate(timed):
            time.sleep(max(0.0, started + i / LATENCY_RATE - time.monotonic()))
            settled_at[item.payment_id] = _settle(http, base_url, item)
        received = receiver.wait_for([item.payment_id for item in timed], 60.0)
        latencies = []
        for item in timed:
            arrival = receiver.first(item.payment_id)
            if arrival is not None:
                latencies.append(arrival[0] - settled_at[item.payment_id])
        stages = _stages(client, uid, endpoint_id, receiver, timed)
        details["latency"] = {"samples": latencies, "received": received, "stages_p50_p95_s": stages}

        progress(PHASE, f"burst: {burst} settlements, {CONCURRENCY} callbacks at a time")
        burst_started = time.monotonic()
        answered = _settle_all(base_url, bursting)
        settled_s = max(answered) - burst_started
        progress(PHASE, f"burst settled in {settled_s:.1f} s; waiting for its deliveries")
        ids = [item.payment_id for item in bursting]
        delivered = 0
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            delivered = receiver.wait_for(ids, min(15.0, deadline - time.monotonic()))
            progress(PHASE, f"{delivered}/{burst} delivered after {time.monotonic() - burst_started:.0f} s")
            if delivered == burst:
                break
        firsts = [arrival for arrival in (receiver.first(i) for i in ids) if arrival is not None]
        last_s = max(arrival[0] for arrival in firsts) - burst_started if firsts else float("nan")
        burst_latencies = [
            arrival[0] - answered[i]
            for i, arrival in enumerate(receiver.first(item.payment_id) for item in bursting)
            if arrival is not None
        ]
        missing = [item.payment_id for item in items if receiver.first(item.payment_id) is None]
        if missing:
            # The Functions emulator occasionally drops a trigger invocation (a worker that hung up). In production
            # sweep_webhook_events runs every 5 minutes for exactly that; the emulator runs no schedules, so the
            # bench runs it here, once, as Cloud Scheduler would, and says how many it delivered.
            progress(PHASE, f"{len(missing)} never arrived: running the scheduled sweep, as Cloud Scheduler would")
            details["sweep"] = {"missing": len(missing), "run": _scheduled_sweep()}
            details["sweep"]["arrived_after"] = receiver.wait_for(missing, SWEEP_WAIT_S)
        time.sleep(DUPLICATE_GRACE_S)
        burst_stages = _stages(client, uid, endpoint_id, receiver, bursting[:: max(1, burst // 40)])
    finally:
        if endpoint_id:
            http.delete(
                f"{FUNCTIONS_URL}/webhook_endpoints/{endpoint_id}",
                headers={"Authorization": f"Bearer {id_token}"},
                timeout=60,
            )
        if uid:
            details["cleanup"] = settle_or_remove(client, [uid], PHASE, timeout_s=1.0)
        stop_all(children)
        receiver.close()
        http.close()

    expected = {item.payment_id for item in items}
    with receiver._changed:
        arrivals = {payment_id: list(found) for payment_id, found in receiver.arrivals.items()}
    total = sum(len(found) for payment_id, found in arrivals.items() if payment_id in expected)
    distinct = sum(1 for payment_id in expected if payment_id in arrivals)
    duplicates = total - distinct
    strangers = sorted(set(arrivals) - expected)
    rate = len(firsts) / last_s if firsts else 0.0  # what arrived in last_s, not what was sent
    details.update(
        {
            "uid": uid,
            "burst": burst,
            "burst_settled_s": settled_s,
            "burst_last_delivery_s": last_s,
            "burst_delivered": delivered,
            "burst_latency_p50_s": percentile(burst_latencies, 50) if burst_latencies else None,
            "burst_latency_p95_s": percentile(burst_latencies, 95) if burst_latencies else None,
            "burst_stages_p50_p95_s": burst_stages,
            "deliveries_received": total,
            "events_received": distinct,
            "duplicates": duplicates,
            "invalid_signatures": receiver.invalid,
            "other_types": dict(receiver.wrong_type),
            "unexpected_payments": strangers[:10],
        }
    )

    p50 = percentile(latencies, 50) if latencies else float("nan")
    p95 = percentile(latencies, 95) if latencies else float("nan")
    ok = len(latencies) == LATENCY_SAMPLES and p95 <= TARGET_P95_S
    split = ", ".join(f"{name} {ms(p50_s)} / {ms(p95_s)}" for name, (p50_s, p95_s) in stages.items())
    note = (
        "from the callback's 200 (settlement committed) to the receiver reading the delivery; p50 / p95 of each "
        f"stage from the delivery log: {split} (trigger = event commit -> fan-out wrote the delivery, queue = -> the "
        "task started the attempt, send = -> received). The Tasks emulator looks for new tasks once a second while "
        "its queue is empty (LISTEN_TIMEOUT = 1000 ms in firebase-tools' lib/emulator/tasksEmulator.js) and "
        "continuously while any task is queued or running (UPDATE_TIMEOUT = 0), so locally the queue stage is a few "
        "ms or spread over 0-1 s depending on what else is queued; Cloud Tasks dispatches at once. The run's first "
        "delivery (probe, behind whatever the trigger still had to fan out) took "
        + (f"{probe_s:.2f} s" if probe_s is not None else f"over {PROBE_TIMEOUT_S:.0f} s")
    )
    if not ok:
        worst = max(stages, key=lambda name: stages[name][1]) if stages else "unknown"
        note = (
            f"MISS: p95 {p95:.2f} s > {TARGET_P95_S:g} s, {len(latencies)}/{LATENCY_SAMPLES} received; the tail is "
            f"in the {worst} stage; " + note
        )
    result.figures.append(
        Figure.against(
            PHASE,
            f"settle-to-delivery latency p50 / p95 ({LATENCY_SAMPLES} settlements at {LATENCY_RATE:g}/s)",
            p95,
            f"{ms(p50)} / {ms(p95)}",
            f"p95 <= {TARGET_P95_S:g} s",
            ok,
            note,
        )
    )
    under_load = (
        f"; settle-to-delivery within the burst p50 / p95 {details['burst_latency_p50_s']:.1f} / "
        f"{details['burst_latency_p95_s']:.1f} s, of which (every {max(1, burst // 40)}th event, from the delivery "
        "log) " + ", ".join(f"{name} {p50_s:.2f} / {p95_s:.2f} s" for name, (p50_s, p95_s) in burst_stages.items())
        if burst_latencies
        else ""
    )
    scaled = "" if burst == 1000 else f"; {burst} rather than 1,000 settlements to keep `make bench` near 5 minutes"
    result.figures.append(
        Figure(
            PHASE,
            f"webhook deliveries/s, {burst} settlements to one receiver",
            f"{rate:.1f}/s ({len(firsts)} in {last_s:.1f} s; settling took {settled_s:.1f} s)",
            value=rate,
            note=f"from the first callback sent to the last event's first delivery: the stage where the burst's events "
            f"wait is the one that sets the pace (trigger = the Functions emulator's Firestore trigger fanning each "
            f"event out){under_load}" + scaled,
        )
    )
    all_once = distinct == len(expected) and receiver.invalid == 0 and not receiver.wrong_type and not strangers
    result.figures.append(
        Figure.against(
            PHASE,
            f"every event received at least once, signatures valid ({len(expected)} settlements)",
            float(all_once),
            f"{distinct}/{len(expected)} received; {duplicates} duplicates ({duplicates / max(distinct, 1):.2%}); "
            f"{receiver.invalid} bad signatures",
            "all, valid",
            all_once,
            "duplicates: deliveries of an event already received (same payment), counted until "
            f"{DUPLICATE_GRACE_S:g} s after the last first delivery; signatures checked with standardwebhooks"
            + (
                f"; {details['sweep']['arrived_after']} of them only after the scheduled sweep, which the bench ran "
                f"once as Cloud Scheduler would, after {details['sweep']['missing']} event(s) had not arrived within "
                f"the wait (sweep: {details['sweep']['run']})"
                if "sweep" in details
                else ""
            )
            + ("" if all_once else f"; MISS: {len(expected) - distinct} never arrived within the wait"),
            check=True,
        )
    )
