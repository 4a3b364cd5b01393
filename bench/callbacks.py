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
callback_tokens/{sha256(token)} -> {uid, payment_id, msisdn, created_at}, because what is measured here is the callback
path, not the push.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
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
    delete_refs,
    firestore_client,
    free_port,
    functions_framework,
    ms,
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
FLOOR_BLOCKS = 4  # timed callbacks and raw commits alternate in blocks, so both see the same machine load
TARGET_FLOOR_RATIO = 0.5  # settled callbacks/s / raw settlement commits/s (issue 14)
JUNK_ROUNDS = 40  # one junk, one unknown-token and one real callback each, one at a time (issue 10 item 7)
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
        route = {"uid": uid, "payment_id": payment.id, "msisdn": item.phone, "created_at": now}  # as the push stores it
        batch.create(client.collection(CALLBACK_TOKENS).document(route_id), route)
    batch.commit()


def record_all(client: Any, uid: str, items: list[Pending]) -> None:
    """Store these payments with their routes, RECORD_BATCH per commit, CONCURRENCY commits at a time."""
    chunks = [items[start : start + RECORD_BATCH] for start in range(0, len(items), RECORD_BATCH)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(lambda chunk: _record(client, uid, chunk), chunks))


def callback_server(name: str) -> Child:
    """functions-framework serving mpesa_callback on a free port: the function as deployed, without the emulator's
    proxy. No push is made through it, so its callback base is a dead address."""
    return functions_framework(name, "mpesa_callback", free_port(), DARAJA_URL, "http://127.0.0.1:9")


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


JUNK_SEGMENT = "wp-login.php"  # what a scanner sends: cannot be one of our tokens (length, alphabet)
SAFARICOM_ADDRESS = "196.201.214.200"  # one of Safaricom's published callback sources


def _count_rpcs(client: Any, phones: PhoneNumbers, run_tag: str) -> dict[str, Any]:
    """Callbacks through the real HTTP edge (gateway.api.mpesa_callback, in process) with a gateway whose Firestore
    channel is counted: a first callback, a duplicate of it, a junk path segment and a well-formed unknown token.
    The counted gateway is put where the composition root keeps its instance (gateway.container), as a fresh
    instance would build it."""
    import flask

    from gateway import api, container
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
    app = flask.Flask("bench-callbacks")
    kinds: dict[str, list[tuple[Trace, int]]] = {"first": [], "duplicate": [], "junk": [], "unknown": []}

    def post(token: str, body: dict[str, Any]) -> tuple[Trace, int]:
        context = app.test_request_context(
            f"/mpesa_callback/{token}", method="POST", json=body, environ_base={"REMOTE_ADDR": SAFARICOM_ADDRESS}
        )
        with context, trace() as traced:
            answer = api.mpesa_callback(flask.request)
        return traced, answer.status_code

    previous = container._gateway
    container._gateway = gateway
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the gateway's JSON log lines
            for item in items:
                body = item.callback()
                kinds["first"].append(post(item.token, body))
                kinds["duplicate"].append(post(item.token, body))
                kinds["junk"].append(post(JUNK_SEGMENT, body))
                kinds["unknown"].append(post(secrets.token_urlsafe(24), body))
    finally:
        container._gateway = previous

    def summary(answers: list[tuple[Trace, int]]) -> dict[str, Any]:
        traces = [traced for traced, _ in answers]
        return {
            "statuses": dict(Counter(status for _, status in answers)),
            "reads_per_callback": sum(t.reads for t in traces) / len(traces),
            "documents_read_per_callback": sum(t.documents_read for t in traces) / len(traces),
            "commits_per_callback": sum(t.commits for t in traces) / len(traces),
            "writes_per_callback": sum(sum(t.commit_sizes) for t in traces) / len(traces),
            "documents": dict(Counter(d for t in traces for d in t.documents)),
            "call_orders": dict(Counter(" > ".join(t.events) for t in traces).most_common(3)),
        }

    return {"uid": uid, "callbacks": len(items), **{kind: summary(answers) for kind, answers in kinds.items()}}


class RawSettles:
    """The floor of settling: conditional batch commits straight to the Firestore emulator, shaped like a
    settlement's (the payment updated only if unchanged since it was read, the payer, an audit copy), with no read.
    Their documents live under bench_floor/{run} and are deleted after."""

    def __init__(self, client: Any, count: int) -> None:
        from bench.warm_push import RawCommits

        self._client = client
        self._root = client.collection("bench_floor").document(f"cb-{uuid.uuid4().hex[:12]}")
        self._made: list[Any] = []
        self._ready: list[tuple[Any, Any]] = []  # (payment, its update_time)
        document = RawCommits._payment_document()
        for start in range(0, count, RECORD_BATCH):
            batch = client.batch()
            refs = [self._root.collection("payments").document(f"p{i:06d}") for i in range(start, start + RECORD_BATCH)]
            for ref in refs:
                batch.create(ref, document)
            written = batch.commit()
            self._ready += [(ref, result.update_time) for ref, result in zip(refs, written, strict=True)]
            self._made += refs

    def settle(self, count: int) -> float:
        """Commit `count` settlements, CONCURRENCY at a time; returns the elapsed seconds."""
        from google.cloud import firestore

        targets, self._ready = self._ready[:count], self._ready[count:]

        def commit(target: tuple[Any, Any]) -> None:
            payment, update_time = target
            payer = self._root.collection("payers").document(payment.id)
            audit = payment.collection("callbacks").document("0")
            batch = self._client.batch()
            option = self._client.write_option(last_update_time=update_time)
            batch.update(payment, {"status": "succeeded", "updated_at": firestore.SERVER_TIMESTAMP}, option=option)
            batch.set(payer, {"payments": 1, "last_paid_at": firestore.SERVER_TIMESTAMP}, merge=True)
            batch.create(audit, {"action": "settle", "raw": "{}", "received_at": firestore.SERVER_TIMESTAMP})
            batch.commit()
            self._made += [payer, audit]

        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(commit, targets))
        return time.perf_counter() - started

    def delete(self) -> None:
        delete_refs(self._client, self._made)


def _junk_latency(base_url: str, real: list[Pending]) -> dict[str, dict[str, Any]]:
    """One at a time, interleaved: a junk path segment, a well-formed unknown token, a real callback."""
    kinds: dict[str, list[float]] = {"junk": [], "unknown": [], "real": []}
    statuses: dict[str, Counter[int]] = {kind: Counter() for kind in kinds}
    real_statuses: list[int] = []
    with session() as http:
        for i, item in enumerate(real):
            calls = {
                "junk": JUNK_SEGMENT,
                "unknown": secrets.token_urlsafe(24),
                "real": item.token,
            }
            order = list(calls)
            for kind in order[i % 3 :] + order[: i % 3]:
                started = time.perf_counter()
                answer = http.post(f"{base_url}/{calls[kind]}", json=item.callback(), timeout=60)
                kinds[kind].append(time.perf_counter() - started)
                statuses[kind][answer.status_code] += 1
                if kind == "real":
                    real_statuses.append(answer.status_code)
    measured: dict[str, dict[str, Any]] = {
        kind: {"p50_s": percentile(v, 50), "p95_s": percentile(v, 95), "statuses": dict(statuses[kind])}
        for kind, v in kinds.items()
    }
    measured["real"]["status_per_item"] = real_statuses
    return measured


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
    items = [_pending(run_tag, i, phones) for i in range(WARMUP + count + RACING_PAIRS + JUNK_ROUNDS)]
    warmup, timed = items[:WARMUP], items[WARMUP : WARMUP + count]
    racing = items[WARMUP + count : WARMUP + count + RACING_PAIRS]
    junk_real = items[WARMUP + count + RACING_PAIRS :]
    late = timed[::LATE_EVERY]
    client = firestore_client()
    children: list[Child] = []
    raw: RawSettles | None = None
    try:
        server = callback_server("ff-mpesa_callback")
        children.append(server)
        progress(PHASE, f"recording {len(items)} pending payments for {uid}; starting functions-framework")
        started = time.perf_counter()
        record_all(client, uid, items)
        recorded_s = time.perf_counter() - started
        raw = RawSettles(client, count)
        server.wait_http(server.url)
        base_url = server.url.rstrip("/")
        warmup_answers, _ = _post_all(base_url, warmup, "warm-up")  # pays for the instance's lazy client set-up
        progress(
            PHASE,
            f"recorded in {recorded_s:.1f} s; {count} callbacks and {count} raw settlement commits, {CONCURRENCY} at "
            f"a time, in {FLOOR_BLOCKS} alternating blocks",
        )
        timed_answers: list[tuple[float, int]] = []
        elapsed = raw_elapsed = 0.0
        cpu = (0.0, 0.0)
        block = count // FLOOR_BLOCKS
        for i in range(FLOOR_BLOCKS):
            chunk = timed[i * block : (i + 1) * block if i < FLOOR_BLOCKS - 1 else count]
            if i % 2:
                raw_elapsed += raw.settle(len(chunk))
            cpu_before = cpu_seconds(server.process.pid), cpu_seconds(FIRESTORE_EMULATOR_CMDLINE)
            answers, took = _post_all(base_url, chunk, f"block {i + 1}/{FLOOR_BLOCKS}")
            cpu = (
                cpu[0] + cpu_seconds(server.process.pid) - cpu_before[0],
                cpu[1] + cpu_seconds(FIRESTORE_EMULATOR_CMDLINE) - cpu_before[1],
            )
            timed_answers += answers
            elapsed += took
            if not i % 2:
                raw_elapsed += raw.settle(len(chunk))
        progress(PHASE, f"{JUNK_ROUNDS} rounds of a junk path, an unknown token and a real callback, one at a time")
        junk = _junk_latency(base_url, junk_real)
        progress(PHASE, f"{len(late)} late duplicates, then {RACING_PAIRS} racing pairs")
        late_answers, _ = _post_all(base_url, late, "late duplicates")
        racing_answers, _ = _post_all(base_url, [item for item in racing for _ in range(2)], "racing pairs")
        answered_200: Counter[str] = Counter()
        for posted, answers in (
            (warmup, warmup_answers),
            (timed, timed_answers),
            (late, late_answers),
            ([item for item in racing for _ in range(2)], racing_answers),
            (junk_real, [(0.0, status) for status in junk["real"]["status_per_item"]]),
        ):
            for item, (_, status) in zip(posted, answers, strict=True):
                answered_200[item.payment_id] += status == 200
        progress(PHASE, "verifying every payment and its audit records")
        verified = _verify(client, uid, items, answered_200)
        progress(PHASE, f"counting the Firestore RPCs of {COUNTED} callbacks and their duplicates, in process")
        counted = _count_rpcs(client, phones, run_tag)
    finally:
        cleanup = settle_or_remove(client, [uid], PHASE, timeout_s=5.0)
        if raw is not None:
            raw.delete()
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
    raw_rate = count / raw_elapsed
    ratio = throughput / raw_rate
    result.details["callbacks"]["raw_settlements"] = {"count": count, "elapsed_s": raw_elapsed, "per_s": raw_rate}
    result.figures.append(
        Figure.against(
            PHASE,
            f"settled callbacks/s / raw settlement commits/s, concurrency {CONCURRENCY}",
            ratio,
            f"{ratio:.2f} ({throughput:.0f}/s vs {raw_rate:.0f}/s)",
            f">= {TARGET_FLOOR_RATIO}",
            ratio >= TARGET_FLOOR_RATIO,
            f"the floor: {count} conditional batch commits shaped like a settlement (payment with an update_time "
            "precondition, payer, audit copy) sent straight to the Firestore emulator by the bench, "
            f"{CONCURRENCY} at a time, in blocks alternating with the callbacks'; a callback also makes "
            f"{counted['first']['reads_per_callback']:.0f} read round trips "
            f"({counted['first']['documents_read_per_callback']:.0f} documents) before its commit and runs through "
            "functions-framework"
            + (
                ""
                if ratio >= TARGET_FLOOR_RATIO
                else f"; MISS: {throughput:.0f}/s is {ratio:.2f} of the floor; per callback the functions-framework "
                f"process spent {cpu[0] / count * 1000:.1f} ms CPU and the Firestore emulator "
                f"{cpu[1] / count * 1000:.1f} ms, on {os.cpu_count()} cores"
            ),
        )
    )
    once, dup = counted["first"], counted["duplicate"]

    def cost(kind: dict[str, Any]) -> str:
        return (
            f"{kind['documents_read_per_callback']:.0f} document reads in {kind['reads_per_callback']:.0f} round "
            f"trips + {kind['commits_per_callback']:.0f} commit ({kind['writes_per_callback']:.0f} writes)"
        )

    result.figures.append(
        Figure(
            PHASE,
            f"Firestore operations per callback (in process, {counted['callbacks']} + duplicates)",
            f"first {cost(once)}; a duplicate {cost(dup)}",
            value=once["reads_per_callback"] + once["commits_per_callback"],
            note="counted on the wire by a gRPC interceptor, through gateway.api.mpesa_callback; first: "
            + ", ".join(f"{d} x{n / counted['callbacks']:.0f}" for d, n in once["documents"].items())
            + "; duplicate: "
            + ", ".join(f"{d} x{n / counted['callbacks']:.0f}" for d, n in dup["documents"].items()),
        )
    )
    bad, unknown = counted["junk"], counted["unknown"]
    junk_free = bad["reads_per_callback"] == 0 and bad["commits_per_callback"] == 0
    result.details["callbacks"]["junk"] = junk
    result.figures.append(
        Figure.against(
            PHASE,
            f"refused junk callback vs a real one ({JUNK_ROUNDS} each, one at a time)",
            bad["reads_per_callback"] + bad["commits_per_callback"],
            f"junk path segment {ms(junk['junk']['p50_s'])} / {ms(junk['junk']['p95_s'])}, {cost(bad)}, "
            f"{junk['junk']['statuses']}; unknown well-formed token {ms(junk['unknown']['p50_s'])} / "
            f"{ms(junk['unknown']['p95_s'])}, {cost(unknown)}, {junk['unknown']['statuses']}; real callback "
            f"{ms(junk['real']['p50_s'])} / {ms(junk['real']['p95_s'])}, {cost(once)}",
            "junk: no read, no write",
            junk_free,
            f"p50 / p95 over HTTP to functions-framework, interleaved; operations counted in process. The junk path "
            f"segment ({JUNK_SEGMENT!r}) is refused by its shape before any read; an unknown token costs the read of "
            "its route and the quarantine write (kept 90 days for an operator)",
            check=True,
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
