"""Callback throughput and exactly-once: 2,000 pending payments settled by their success callbacks, POSTed 16 at a
time to functions-framework serving mpesa_callback (the function as deployed, without the emulator's proxy). 10% of
the callbacks are sent twice back to back, so the two copies race each other, and another 5% once more after all
have settled. Afterwards every payment must be `succeeded` with exactly one "settle" audit record, and each
duplicate must have left one "ignore" record.

The payments are created in process through PaymentRepository.record_payment (what stk_push records), with known
callback tokens, because what is measured here is the callback path, not the push.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import string
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    DARAJA_URL,
    FIRESTORE_HOST,
    Child,
    PhoneNumbers,
    cpu_seconds,
    free_port,
    functions_framework,
    percentile,
    progress,
    session,
    settle_or_remove,
    stop_all,
)
from bench.paid_calls import settings
from bench.report import Figure, Run

PHASE = "callbacks"
CONCURRENCY = 16
RACING_EVERY = 10  # every 10th callback is sent twice back to back, the copies in flight together
LATE_EVERY = 20  # and every 20th (offset, so never a racing one) once more after everything has settled
FIRESTORE_EMULATOR_CMDLINE = "google.cloud_firestore"  # a flag on the emulator's java command line
WARMUP = 32  # extra payments settled first, not timed: they pay for the instance's lazy client set-up


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


def _record(repository: Any, uid: str, item: Pending) -> None:
    now = datetime.now(UTC)
    token_sha256 = hashlib.sha256(item.token.encode()).hexdigest()
    payment = {
        "id": item.payment_id,
        "status": "pending",
        "amount": item.amount,
        "currency": "KES",
        "msisdn": item.phone,
        "account_reference": "BENCH-CB",
        "description": "Bench callback",
        "metadata": {},
        "environment": "sandbox",
        "shortcode": "174379",
        "checkout_request_id": item.checkout_request_id,
        "merchant_request_id": item.merchant_request_id,
        "result_code": None,
        "result_desc": None,
        "mpesa_receipt_number": None,
        "transaction_date": None,
        "flags": [],
        "created_at": now,
        "updated_at": now,
        "settled_at": None,
        "callback_token_sha256": token_sha256,
    }
    repository.record_payment(uid, payment, token_sha256, None)


def _post_all(base_url: str, items: list[Pending], label: str) -> tuple[list[float], float, dict[int, int]]:
    local = threading.local()
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    done = itertools.count(1)

    def post(item: Pending) -> float:
        if not hasattr(local, "http"):
            local.http = session()
        body = item.callback()
        started = time.perf_counter()
        answer = local.http.post(f"{base_url}/{item.token}", json=body, timeout=60)
        elapsed = time.perf_counter() - started
        with lock:
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        finished = next(done)
        if finished % 500 == 0:
            progress(PHASE, f"{label}: {finished}/{len(items)}")
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        latencies = list(pool.map(post, items))
    return latencies, time.perf_counter() - started, statuses


def _verify(repository: Any, uid: str, items: list[Pending], duplicated: set[str]) -> dict[str, Any]:
    client = repository.client
    payments = client.collection("developers").document(uid).collection("payments")
    statuses: dict[str, int] = {}
    for start in range(0, len(items), 300):
        refs = [payments.document(item.payment_id) for item in items[start : start + 300]]
        for snapshot in client.get_all(refs):
            status = (snapshot.to_dict() or {}).get("status", "missing") if snapshot.exists else "missing"
            statuses[status] = statuses.get(status, 0) + 1

    # One collection-group query, bounded to this developer's payments by document path, instead of one per payment.
    from google.cloud import firestore
    from google.cloud.firestore_v1.field_path import FieldPath

    def bound(payment_id: str) -> Any:
        return firestore.FieldFilter(
            FieldPath.document_id(),
            ">=" if payment_id == "pay_" else "<",
            client.document(f"developers/{uid}/payments/{payment_id}/callbacks/0"),
        )

    query = client.collection_group("callbacks").where(filter=bound("pay_")).where(filter=bound("pay_~"))
    actions: dict[str, list[str]] = {item.payment_id: [] for item in items}
    for audit in query.stream():
        actions.setdefault(audit.reference.parent.parent.id, []).append(str((audit.to_dict() or {}).get("action")))
    wrong = []
    for payment_id, found in actions.items():
        found.sort()
        expected = ["ignore", "settle"] if payment_id in duplicated else ["settle"]
        if found != expected:
            wrong.append({"payment_id": payment_id, "audit_actions": found})
    return {
        "statuses": statuses,
        "payments_checked": len(actions),
        "wrong_audits": wrong[:20],
        "wrong_audit_count": len(wrong),
    }


def run(result: Run, count: int = 2000) -> None:
    from gateway.repository import PaymentRepository

    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", FIRESTORE_HOST)
    uid = f"bench-cb-{uuid.uuid4().hex[:16]}"
    phones = PhoneNumbers()
    run_tag = secrets.token_hex(4).upper()
    items = [
        Pending(
            payment_id="pay_" + secrets.token_hex(12),
            checkout_request_id=f"ws_CO_BENCH{run_tag}{i:06d}",
            merchant_request_id=f"bench-{run_tag}-{i}",
            token=secrets.token_urlsafe(24),
            phone=phones.take(),
            amount=10,
            receipt=secrets.choice(string.ascii_uppercase) + secrets.token_hex(5).upper()[:9],
        )
        for i in range(count + WARMUP)
    ]
    warmup, measured = items[:WARMUP], items[WARMUP:]
    repository = PaymentRepository(settings())
    children: list[Child] = []
    try:
        port = free_port()
        server = functions_framework("ff-mpesa_callback", "mpesa_callback", port, DARAJA_URL, "http://127.0.0.1:9")
        children.append(server)
        progress(PHASE, f"recording {count} pending payments for {uid}; starting functions-framework (mpesa_callback)")
        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda item: _record(repository, uid, item), items))
        recorded_s = time.perf_counter() - started
        server.wait_http(f"http://127.0.0.1:{port}/")
        base_url = f"http://127.0.0.1:{port}"
        _, _, warmup_statuses = _post_all(base_url, warmup, "warm-up")
        progress(
            PHASE,
            f"{len(items)} recorded in {recorded_s:.1f} s; warm-up answered {warmup_statuses}; "
            f"posting {count} callbacks, {CONCURRENCY} at a time",
        )
        cpu_before = cpu_seconds(server.process.pid), cpu_seconds(FIRESTORE_EMULATOR_CMDLINE)
        racing = measured[::RACING_EVERY]
        plan: list[Pending] = []
        for i, item in enumerate(measured):
            plan.extend((item, item) if i % RACING_EVERY == 0 else (item,))
        latencies, elapsed, statuses = _post_all(base_url, plan, "posted")
        cpu = (cpu_seconds(server.process.pid) - cpu_before[0], cpu_seconds(FIRESTORE_EMULATOR_CMDLINE) - cpu_before[1])
        late = measured[LATE_EVERY // 2 :: LATE_EVERY]
        progress(PHASE, f"posting {len(late)} late duplicates")
        _, _, late_statuses = _post_all(base_url, late, "late duplicates")
        progress(PHASE, "verifying every payment and its audit records")
        verified = _verify(repository, uid, items, {d.payment_id for d in racing + late})
    finally:
        cleanup = settle_or_remove(repository.client, [uid], PHASE, timeout_s=5.0)
        stop_all(children)

    throughput = count / elapsed
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    result.details["callbacks"] = {
        "uid": uid,
        "payments": count,
        "record_s": recorded_s,
        "elapsed_s": elapsed,
        "p50_s": p50,
        "p95_s": p95,
        "posts": len(plan),
        "racing_duplicates": len(racing),
        "late_duplicates": len(late),
        "statuses": statuses,
        "late_statuses": late_statuses,
        "verification": verified,
        "server": "functions-framework (gunicorn gthread, 1 worker, default threads = 4 x cores)",
        "cpu_s": {"functions_framework": cpu[0], "firestore_emulator": cpu[1]},
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "cleanup": cleanup,
    }
    result.figures.append(
        Figure(
            PHASE,
            f"settled callbacks/s, concurrency {CONCURRENCY}",
            f"{throughput:.0f}/s ({count} settled by {len(plan)} POSTs in {elapsed:.1f} s)",
            value=throughput,
            note=f"one functions-framework instance (gunicorn, 1 worker, {4 * (os.cpu_count() or 1)} threads) "
            f"against the Firestore emulator; meanwhile it used {cpu[0]:.1f} CPU-s and the Firestore emulator "
            f"{cpu[1]:.1f} CPU-s, in {elapsed:.1f} s on {os.cpu_count()} cores",
        )
    )
    result.figures.append(
        Figure(PHASE, "callback latency p50 / p95", f"{p50 * 1000:.0f} ms / {p95 * 1000:.0f} ms", value=p95)
    )
    all_ok = statuses == {200: len(plan)} and late_statuses == {200: len(late)} and warmup_statuses == {200: WARMUP}
    result.figures.append(
        Figure.against(
            PHASE,
            "callbacks answered 200",
            float(all_ok),
            f"{statuses} + late {late_statuses} + warm-up {warmup_statuses}",
            "all 200",
            all_ok,
            check=True,
        )
    )
    succeeded = verified["statuses"].get("succeeded", 0)
    exactly_once = succeeded == len(items) and verified["wrong_audit_count"] == 0
    result.figures.append(
        Figure.against(
            PHASE,
            "exactly-once settlement (all payments checked)",
            float(exactly_once),
            f"{succeeded}/{len(items)} succeeded; {verified['wrong_audit_count']} with other than one 'settle' audit "
            f"({len(racing)} racing + {len(late)} late duplicates each left one 'ignore')",
            "all succeeded, one 'settle' each",
            exactly_once,
            check=True,
        )
    )
