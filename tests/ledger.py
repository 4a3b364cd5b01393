"""The ledger check: every prompt the Daraja simulator answered with a success callback to one of the gateway's
callback URLs is traced to exactly one `succeeded` payment with that receipt number, or, for a callback that
matched nothing, to one quarantine record. Money is never lost between the two.

Used by the tests/faults tier (per tenant) and at the end of the e2e tier (for everything the run prompted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests
from google.cloud import firestore

from tests import support

# Every check made, for pytest's terminal summary (tests/conftest.py), so `make test` shows the widest.
CHECKS: list[Ledger] = []


@dataclass
class Ledger:
    prompts: int = 0
    traced: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return f"ledger: {self.prompts} prompts, {self.traced} traced, {len(self.lost)} lost"


def prompts(**filters: str) -> list[dict[str, Any]]:
    """The simulator's prompts (one per accepted push), filtered by exact field values."""
    response = requests.get(f"{support.DARAJA_URL}/simulator/pushes", params=filters, timeout=30)
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["pushes"]
    return listed


def paid_prompts(**filters: str) -> list[dict[str, Any]]:
    """Prompts whose success callback the simulator delivered to a gateway callback URL (the function's own, or
    Hosting's /hooks/daraja path, which the local stack uses by default)."""
    bases = (support.function_url("mpesa_callback"), support.CALLBACK_BASE_URL)
    return [
        p
        for p in prompts(**filters)
        if str(p.get("result_code")) == "0"
        and (p.get("callbacks_sent") or 0) > 0
        and str(p.get("callback_url", "")).startswith(bases)
    ]


def _traced(prompt: dict[str, Any]) -> bool:
    client = support.firestore_client()
    receipt = prompt.get("mpesa_receipt_number")
    payments = (
        client.collection_group("payments")
        .where(filter=firestore.FieldFilter("mpesa_receipt_number", "==", receipt))
        .stream()
    )
    succeeded = [doc.to_dict() for doc in payments if (doc.to_dict() or {}).get("status") == "succeeded"]
    if len(succeeded) == 1:
        return True
    quarantined = (
        client.collection("quarantined_callbacks")
        .where(filter=firestore.FieldFilter("checkout_request_id", "==", prompt.get("checkout_request_id")))
        .stream()
    )
    return len(succeeded) == 0 and len(list(quarantined)) >= 1


def check(timeout_s: float = 15.0, **filters: str) -> Ledger:
    """Trace every paid prompt matching `filters`, waiting a little for callbacks still being processed."""
    pending = paid_prompts(**filters)
    ledger = Ledger(prompts=len(pending))
    deadline = time.monotonic() + timeout_s
    while pending:
        pending = [p for p in pending if not _traced(p)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ledger.lost = pending
    ledger.traced = ledger.prompts - len(pending)
    CHECKS.append(ledger)
    return ledger
