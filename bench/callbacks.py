"""Callback throughput and exactly-once: 2,000 pending payments settled by their success callbacks, POSTed 16 at a
time to functions-framework serving mpesa_callback (the function as deployed, without the emulator's proxy).

What one callback costs in Firestore RPCs is counted in process, on a few more payments of another developer: the
same Settlement use case with a gRPC interceptor on its Firestore client's channel (bench/counting.py).

Duplicates, as Daraja sends them (identical bodies), come after the timed run: 100 more payments get their callback
twice at the same moment, so the copies race, and 100 of the 2,000 get theirs once more, late. Afterwards every
payment must be `succeeded` with exactly one "settle" audit record, and every duplicate answered 200 must have left
one "ignore" record.

The payments are built in process as a push leaves them (the domain's Payment.initiate(...).accept(...), stored as
gateway.repository.payment_to_document writes it) with the route of a known callback token,
callback_tokens/{sha256(token)} -> {uid, payment_id, created_at}, because what is measured here is the callback
path, not the push.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import secrets
import string
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    DARAJA_URL,
    FIRESTORE_HOST,
    Child,
    PhoneNumbers,
    cpu_seconds,
    firestore_client,
    free_port,
    functions_framework,
    percentile,
    progress,
    session,
    settle_or_remove,
    stop_all,
)
from bench.counting import FirestoreRpcCounter, Trace, trace
from bench.paid_calls import settings
from bench.report import Figure, Run

PHASE = "callbacks"
CONCURRENCY = 16
RACING_PAIRS = 100  # extra payments whose callback is sent twice at once (contended pairs are slow: lock waits)
LATE_EVERY = 20  # every 20th of the timed payments gets its callback once more, after all have settled
FIRESTORE_EMULATOR_CMDLINE = "google.cloud_firestore"  # a flag on the emulator's java command line
WARMUP = 32  # extra payments settled first, not timed: they pay for the instance's lazy client set-up
RECORD_BATCH = 100  # payments (and their routes) stored per commit while setting up
COUNTED = 20  # payments whose callback (and one duplicate) is settled in process, every Firestore RPC counted


@dataclass(frozen=True)
class Pending:
    payment_id: str
    checkout_request_id: str
    merchant_request_id: str
    token: str
    phone: str
    amount: int
    receipt: str

    def callback(self) -> dict[str, Any]:
        """The same body every time, as Daraja's duplicates are."""
        receipt = self.receipt
        items = [
            {"Name": "Amount", "Value": float(self.amount)},
            {"Name": "MpesaReceiptNumber", "Value": receipt},
            {"Name": "Balance"},
            {"Name": "TransactionDate", "Value": 20261129074000},
            {"Name": "PhoneNumber", "Value": int(self.phone)},
        ]
        return {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": self.merchant_request_id,
                    "CheckoutRequestID": self.checkout_request_id,
                    "ResultCode": 0,
                    "ResultDesc": "The service request is processed successfully.",
                    "CallbackMetadata": {"Item": items},
                }
            }
        }


def _record(client: Any, uid: str, items: list[Pending]) -> None:
    """Store these payments as an accepted push leaves them, with their callback routes, in one batch."""
    from gateway.domain.payment import Payment
    from gateway.repository import CALLBACK_TOKENS, payment_to_document
    from gateway.services.common import policy

    rules = policy(settings())
    payments = client.collection("developers").document(uid).collection("payments")
    batch = client.batch()
    for item in items:
        now = datetime.now(UTC)
        payment = Payment.initiate(
            payment_id=item.payment_id,
            msisdn=item.phone,
            amount=item.amount,
            account_reference="BENCH-CB",
            description="Bench callback",
            metadata={},
            environment="sandbox",
            shortcode="174379",
            now=now,
            policy=rules,
        ).accept(item.checkout_request_id, item.merchant_request_id, now, rules)
        batch.create(payments.document(payment.id), payment_to_document(payment))
        route_id = hashlib.sha256(item.token.encode()).hexdigest()
        route = {"uid": uid, "payment_id": payment.id, "created_at": now}
        batch.create(client.collection(CALLBACK_TOKENS).document(route_id), route)
    batch.commit()


def _post_all(base_url: str, items: list[Pending], label: str) -> tuple[list[tuple[float, int]], float]:
    """POST each item's callback, CONCURRENCY at a time: (latency, status) per item, in order, and the elapsed time."""
    local = threading.local()
    done = itertools.count(1)

    def post(item: Pending) -> tuple[float, int]:
        if not hasattr(local, "http"):
            local.http = session()
        body = item.callback()
        started = time.perf_counter()
        answer = local.http.post(f"{base_url}/{item.token}", json=body, timeout=60)
        elapsed = time.perf_counter() - started
        finished = next(done)
        if finished % 500 == 0:
            progress(PHASE, f"{label}: {finished}/{len(items)}")
        return elapsed, answer.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(post, items))
    return answers, time.perf_counter() - started


def _statuses(answers: list[tuple[float, int]]) -> dict[int, int]:
    return dict(Counter(status for _, status in answers))


def _verify(client: Any, uid: str, items: list[Pending], answered_200: Counter[str]) -> dict[str, Any]:
    """Every payment succeeded, with one "settle" audit and one "ignore" per other callback answered 200."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.field_path import FieldPath

    payments = client.collection("developers").document(uid).collection("payments")
    statuses: Counter[str] = Counter()
    for start in range(0, len(items), 300):
        refs = [payments.document(item.payment_id) for item in items[start : start + 300]]
        for snapshot in client.get_all(refs):
            statuses[str((snapshot.to_dict() or {}).get("status")) if snapshot.exists else "missing"] += 1

    # One collection-group query, bounded to this developer's payments by document path, instead of one per payment.
    def bound(payment_id: str, operator: str) -> Any:
        path = f"developers/{uid}/payments/{payment_id}/callbacks/0"
        return firestore.FieldFilter(FieldPath.document_id(), operator, client.document(path))

    query = client.collection_group("callbacks").where(filter=bound("pay_", ">=")).where(filter=bound("pay_~", "<"))
    actions: dict[str, list[str]] = {item.payment_id: [] for item in items}
    for audit in query.stream():
        actions.setdefault(audit.reference.parent.parent.id, []).append(str((audit.to_dict() or {}).get("action")))
    wrong = []
    for payment_id, found in actions.items():
        expected = ["ignore"] * (answered_200[payment_id] - 1) + ["settle"]
        if sorted(found) != expected:
            wrong.append({"payment_id": payment_id, "audit_actions": sorted(found), "expected": expected})
    return {
        "statuses": dict(statuses),
        "payments_checked": len(actions),
        "wrong_audits": wrong[:20],
        "wrong_audit_count": len(wrong),
    }


def _count_rpcs(client: Any, phones: PhoneNumbers, run_tag: str) -> dict[str, Any]:
    """A first callback and a duplicate of it, through Settlement in process: the Firestore RPCs each one sends."""
    from gateway.daraja import DarajaClient
    from gateway.repository import PaymentRepository
    from gateway.secrets import CredentialStore, SecretManagerBackend
    from gateway.services import Gateway

    uid = f"bench-cb-rpcs-{uuid.uuid4().hex[:12]}"
    items = [_pending(f"R{run_tag}", i, phones) for i in range(COUNTED)]
    _record(client, uid, items)
    current = settings()
    rpcs = FirestoreRpcCounter()
    repository = PaymentRepository(current, client_factory=rpcs.client_factory(current.project_id))
    gateway = Gateway.build(
        current, repository, CredentialStore(current, SecretManagerBackend(current)), DarajaClient(current)
    )
    first: list[Trace] = []
    again: list[Trace] = []
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the gateway's JSON log lines
        for item in items:
            body = item.callback()
            raw = json.dumps(body).encode()
            for traces in (first, again):
                with trace() as traced:
                    gateway.settlement.handle_callback(item.token, body, raw, "127.0.0.1")
                traces.append(traced)

    def summary(traces: list[Trace]) -> dict[str, Any]:
        return {
            "reads_per_callback": sum(t.reads for t in traces) / len(traces),
            "commits_per_callback": sum(t.commits for t in traces) / len(traces),
            "writes_per_callback": sum(sum(t.commit_sizes) for t in traces) / len(traces),
            "call_orders": dict(Counter(" > ".join(t.events) for t in traces).most_common(3)),
        }

    return {"uid": uid, "callbacks": len(items), "first": summary(first), "duplicate": summary(again)}


def _pending(tag: str, i: int, phones: PhoneNumbers) -> Pending:
    return Pending(
        payment_id="pay_" + secrets.token_hex(12),
        checkout_request_id=f"ws_CO_BENCH{tag}{i:06d}",
        merchant_request_id=f"bench-{tag}-{i}",
        token=secrets.token_urlsafe(24),
        phone=phones.take(),
        amount=10,
        receipt=secrets.choice(string.ascii_uppercase) + secrets.token_hex(5).upper()[:9],
    )


def run(result: Run, count: int = 2000) -> None:
    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", FIRESTORE_HOST)
    uid = f"bench-cb-{uuid.uuid4().hex[:16]}"
    phones = PhoneNumbers()
    run_tag = secrets.token_hex(4).upper()
    items = [_pending(run_tag, i, phones) for i in range(WARMUP + count + RACING_PAIRS)]
    warmup, timed, racing = items[:WARMUP], items[WARMUP : WARMUP + count], items[WARMUP + count :]
    late = timed[::LATE_EVERY]
    client = firestore_client()
    children: list[Child] = []
    try:
        port = free_port()
        server = functions_framework("ff-mpesa_callback", "mpesa_callback", port, DARAJA_URL, "http://127.0.0.1:9")
        children.append(server)
        progress(PHASE, f"recording {len(items)} pending payments for {uid}; starting functions-framework")
        started = time.perf_counter()
        chunks = [items[start : start + RECORD_BATCH] for start in range(0, len(items), RECORD_BATCH)]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda chunk: _record(client, uid, chunk), chunks))
        recorded_s = time.perf_counter() - started
        server.wait_http(server.url)
        base_url = server.url.rstrip("/")
        warmup_answers, _ = _post_all(base_url, warmup, "warm-up")  # pays for the instance's lazy client set-up
        progress(PHASE, f"recorded in {recorded_s:.1f} s; posting {count} callbacks, {CONCURRENCY} at a time")
        cpu_before = cpu_seconds(server.process.pid), cpu_seconds(FIRESTORE_EMULATOR_CMDLINE)
        timed_answers, elapsed = _post_all(base_url, timed, "posted")
        cpu = (cpu_seconds(server.process.pid) - cpu_before[0], cpu_seconds(FIRESTORE_EMULATOR_CMDLINE) - cpu_before[1])
        progress(PHASE, f"{len(late)} late duplicates, then {RACING_PAIRS} racing pairs")
        late_answers, _ = _post_all(base_url, late, "late duplicates")
        racing_answers, _ = _post_all(base_url, [item for item in racing for _ in range(2)], "racing pairs")
        answered_200: Counter[str] = Counter()
        for posted, answers in (
            (warmup, warmup_answers),
            (timed, timed_answers),
            (late, late_answers),
            ([item for item in racing for _ in range(2)], racing_answers),
        ):
            for item, (_, status) in zip(posted, answers, strict=True):
                answered_200[item.payment_id] += status == 200
        progress(PHASE, "verifying every payment and its audit records")
        verified = _verify(client, uid, items, answered_200)
        progress(PHASE, f"counting the Firestore RPCs of {COUNTED} callbacks and their duplicates, in process")
        counted = _count_rpcs(client, phones, run_tag)
    finally:
        cleanup = settle_or_remove(client, [uid], PHASE, timeout_s=5.0)
        stop_all(children)
    server_log = server.log_path.read_text(errors="replace")
    aborted = sum(1 for line in server_log.splitlines() if '"unhandled_exception"' in line and '"Aborted"' in line)

    latencies = [latency for latency, _ in timed_answers]
    throughput = count / elapsed
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    statuses = {
        "warm-up": _statuses(warmup_answers),
        "timed": _statuses(timed_answers),
        "late": _statuses(late_answers),
        "racing": _statuses(racing_answers),
    }
    result.details["callbacks"] = {
        "uid": uid,
        "payments": len(items),
        "record_s": recorded_s,
        "elapsed_s": elapsed,
        "p50_s": p50,
        "p95_s": p95,
        "statuses": statuses,
        "verification": verified,
        "server": "functions-framework (gunicorn gthread, 1 worker, default threads = 4 x cores)",
        "cpu_s": {"functions_framework": cpu[0], "firestore_emulator": cpu[1]},
        "cleanup": cleanup,
        "unhandled_aborted_in_server_log": aborted,
        "firestore_rpcs_in_process": counted,
        "racing_p50_s": percentile([latency for latency, _ in racing_answers], 50),
        "racing_p95_s": percentile([latency for latency, _ in racing_answers], 95),
    }
    result.figures.append(
        Figure(
            PHASE,
            f"settled callbacks/s, concurrency {CONCURRENCY}",
            f"{throughput:.0f}/s ({count} in {elapsed:.1f} s)",
            value=throughput,
            note=f"one functions-framework instance (gunicorn, 1 worker, {4 * (os.cpu_count() or 1)} threads) "
            f"against the Firestore emulator; meanwhile it used {cpu[0]:.1f} CPU-s and the Firestore emulator "
            f"{cpu[1]:.1f} CPU-s, in {elapsed:.1f} s on {os.cpu_count()} cores",
        )
    )
    result.figures.append(
        Figure(PHASE, "callback latency p50 / p95", f"{p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms", value=p95)
    )
    once, dup = counted["first"], counted["duplicate"]
    result.figures.append(
        Figure(
            PHASE,
            f"Firestore per callback (in process, {counted['callbacks']} + duplicates)",
            f"{once['reads_per_callback']:.2f} reads + {once['commits_per_callback']:.2f} commit "
            f"({once['writes_per_callback']:.0f} writes); a duplicate {dup['reads_per_callback']:.2f} reads + "
            f"{dup['commits_per_callback']:.2f} commit ({dup['writes_per_callback']:.0f} write)",
            value=once["reads_per_callback"] + once["commits_per_callback"],
            note="counted on the wire by a gRPC interceptor; a first callback reads its route, the payment and the "
            "payer, then commits payment, payer and audit copy; a duplicate reads route and payment and commits "
            "its audit copy",
        )
    )
    distinct_ok = statuses["timed"] == {200: count} and statuses["warm-up"] == {200: WARMUP}
    result.figures.append(
        Figure.against(
            PHASE,
            "distinct and late callbacks answered 200",
            float(distinct_ok and statuses["late"] == {200: len(late)}),
            f"{statuses['timed']}, late {statuses['late']}",
            "all 200",
            distinct_ok and statuses["late"] == {200: len(late)},
            check=True,
        )
    )
    racing_ok = statuses["racing"] == {200: 2 * RACING_PAIRS}
    result.figures.append(
        Figure.against(
            PHASE,
            f"racing identical callbacks ({RACING_PAIRS} pairs) answered 200",
            float(racing_ok),
            f"{statuses['racing']}; {aborted} unhandled Aborted in the server log; p50 / p95 "
            f"{result.details['callbacks']['racing_p50_s'] * 1000:.0f} / "
            f"{result.details['callbacks']['racing_p95_s'] * 1000:.0f} ms",
            "all 200",
            racing_ok,
            note=""
            if racing_ok
            else "a racing copy not answered 200 lost its update_time precondition more often than the use case's "
            "retry deadline allows; see bench/results/ff-mpesa_callback.log (the exactly-once check below still "
            "says whether the state stayed right)",
        )
    )
    succeeded = verified["statuses"].get("succeeded", 0)
    exactly_once = succeeded == len(items) and verified["wrong_audit_count"] == 0
    result.figures.append(
        Figure.against(
            PHASE,
            f"exactly-once settlement (all {len(items)} payments checked)",
            float(exactly_once),
            f"{succeeded}/{len(items)} succeeded; {verified['wrong_audit_count']} with other than one 'settle' audit "
            "plus one 'ignore' per duplicate answered 200",
            "all succeeded, one 'settle' each",
            exactly_once,
            check=True,
        )
    )
