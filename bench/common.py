"""Shared plumbing for the benchmarks: where things are, progress lines, percentiles, child processes that always
die with the run, and the few calls to the running stack that set up a developer (Auth emulator, simulator), which
come from scripts/stack_admin.py like the test tiers' and the demo's.

Like the test tiers, the benchmarks never reset global state: every run signs up its own developers, registers its
own simulator apps and shortcodes, and uses its own phone numbers, so it can share a stack with other suites.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import requests

from gateway.domain.daraja_password import nairobi_timestamp, stk_password
from scripts import stack_admin
from scripts.stack_admin import ADDRESSES, DarajaApp
from scripts.stack_admin import firestore_client as firestore_client

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
FUNCTIONS_PYTHON = FUNCTIONS_DIR / "venv" / "bin" / "python"
FUNCTIONS_FRAMEWORK = FUNCTIONS_DIR / "venv" / "bin" / "functions-framework"
DEV_PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS_DIR = ROOT / "bench" / "results"

# Where the stack is: firebase.json and .firebaserc, unless the environment says otherwise (scripts/stack_config.py).
PROJECT_ID = ADDRESSES.project_id
AUTH_HOST = ADDRESSES.auth_host
FIRESTORE_HOST = ADDRESSES.firestore_host
SECRET_MANAGER_HOST = ADDRESSES.secret_manager_host
DARAJA_URL = ADDRESSES.daraja_url
FUNCTIONS_URL = ADDRESSES.functions_url

# In-process gateway code logs JSON lines to sys.stdout; progress goes to the stream we started with.
_OUT: TextIO = sys.stdout
_STARTED = time.monotonic()
_print_lock = threading.Lock()


def progress(phase: str, message: str) -> None:
    with _print_lock:
        print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {phase}: {message}", file=_OUT, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # never send localhost traffic through a proxy from the environment
    return http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url(path: str = "/mpesa_callback") -> str:
    """A URL nobody listens on: the simulator's callbacks to it fail at once (connection refused), costing nothing."""
    return f"http://127.0.0.1:{free_port()}{path}"


class PhoneNumbers:
    """Distinct Safaricom numbers from a random base: the simulator allows one live prompt per phone."""

    def __init__(self) -> None:
        self._next = secrets.randbelow(90_000_000)
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            self._next += 1
            return f"2547{self._next % 100_000_000:08d}"


# ------------------------------------------------------------------------------------------- child processes
class Child:
    """A process in its own process group, stopped as a whole (functions-framework forks gunicorn workers)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, url: str = "") -> None:
        self.name = name
        self.url = url
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = RESULTS_DIR / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        with session() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
                try:
                    http.get(url, timeout=2)
                    return
                except requests.RequestException:
                    time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        pgid = self.process.pid
        for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and self.process.poll() is None:
                time.sleep(0.05)
            if self.process.poll() is not None:
                break
        self._log.close()


def functions_framework(
    name: str, target: str, port: int, daraja_url: str, callback_base_url: str, extra_env: dict[str, str] | None = None
) -> Child:
    """Serve one function of functions/main.py with functions-framework (gunicorn, as Cloud Functions gen2 does)."""
    env = dict(os.environ)
    env.update(
        {
            "GCLOUD_PROJECT": PROJECT_ID,
            "FUNCTIONS_EMULATOR": "true",
            "FIRESTORE_EMULATOR_HOST": FIRESTORE_HOST,
            "FIREBASE_AUTH_EMULATOR_HOST": AUTH_HOST,
            "SECRET_MANAGER_EMULATOR_HOST": SECRET_MANAGER_HOST,
            "DARAJA_SANDBOX_BASE_URL": daraja_url,
            "DARAJA_PRODUCTION_BASE_URL": daraja_url,
            "CALLBACK_BASE_URL": callback_base_url,
            "PYTHONPATH": str(FUNCTIONS_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    argv = [
        str(FUNCTIONS_FRAMEWORK),
        "--target",
        target,
        "--source",
        str(FUNCTIONS_DIR / "main.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Child(name, argv, env, FUNCTIONS_DIR, f"http://127.0.0.1:{port}/")


def daraja_simulator(name: str, port: int, latency_ms: int) -> Child:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    argv = [
        str(DEV_PYTHON),
        "-m",
        "devservers.daraja_simulator",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--quiet",
    ]
    return Child(name, argv, env, ROOT, f"http://127.0.0.1:{port}/healthz")


def cpu_seconds(match: str | int) -> float:
    """User + system CPU time of every process in process group `match` (an int) or whose command line contains
    `match` (a str). Read-only: /proc is only looked at."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if isinstance(match, int):
                if int(fields[2]) != match:  # field 5 of stat, the process group
                    continue
            elif match not in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total


def stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        try:
            child.stop()
        except Exception as failure:
            progress("cleanup", f"could not stop {child.name}: {failure!r}")


# ------------------------------------------------------------------------------------------- stack set-up
SimulatorApp = DarajaApp  # SimulatorApp.new(), app.register(http[, simulator_url]), app.credentials_body()


def sign_up(http: requests.Session) -> tuple[str, str]:
    """A fresh Auth emulator user: (uid, ID token)."""
    user = stack_admin.sign_up(email_prefix="bench-", http=http)
    return user.uid, user.id_token


class DirectDaraja:
    """The baseline: the same STK push a merchant would send straight to Daraja, with one token minted up front."""

    def __init__(self, http: requests.Session, base_url: str, app: SimulatorApp, callback_url: str) -> None:
        self._http = http
        self._base_url = base_url
        self._app = app
        self._callback_url = callback_url
        minted = http.get(
            f"{base_url}/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            auth=(app.consumer_key, app.consumer_secret),
            timeout=30,
        )
        minted.raise_for_status()
        self._token = minted.json()["access_token"]

    def push(self, phone: str, amount: int = 10) -> None:
        timestamp = nairobi_timestamp(datetime.now(UTC))
        password = stk_password(self._app.shortcode, self._app.passkey, timestamp)
        body = {
            "BusinessShortCode": self._app.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": amount,
            "PartyA": phone,
            "PartyB": self._app.shortcode,
            "PhoneNumber": phone,
            "CallBackURL": self._callback_url,
            "AccountReference": "BENCH-1",
            "TransactionDesc": "Bench push",
        }
        answer = self._http.post(
            f"{self._base_url}/mpesa/stkpush/v1/processrequest",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=30,
        )
        if answer.status_code != 200 or answer.json().get("ResponseCode") != "0":
            raise RuntimeError(f"direct push refused: {answer.status_code} {answer.text[:200]}")


# ------------------------------------------------------------------------------------------- leftovers
BENCH_ACCOUNT_REFERENCES = frozenset({"BENCH-1", "BENCH-CB"})


def pending_payments(client: Any, uids: Sequence[str]) -> list[Any]:
    """The still-pending payments of these (bench) developers."""
    from google.cloud import firestore

    def pending(uid: str) -> list[Any]:
        payments = client.collection("developers").document(uid).collection("payments")
        return list(payments.where(filter=firestore.FieldFilter("status", "==", "pending")).stream())

    with ThreadPoolExecutor(8) as pool:
        return [snapshot for found in pool.map(pending, uids) for snapshot in found]


def remove_payments(client: Any, snapshots: Sequence[Any]) -> int:
    """Delete bench payments and the routes of their callback tokens. Only ever called on payments a bench run
    created (their account_reference says so): a pending payment left behind would be swept by other suites'
    reconcile runs. A route is named by its token's hash: a payment that records its `route_id` names it, older
    ones are found by uid (a query over every route, slow on a busy emulator)."""
    from google.cloud import firestore

    doomed: dict[str, set[str]] = {}
    refs: list[Any] = []
    routes = client.collection("callback_tokens")
    removed = 0
    for snapshot in snapshots:
        data = snapshot.to_dict() or {}
        if data.get("account_reference") not in BENCH_ACCOUNT_REFERENCES:
            continue
        removed += 1
        refs.append(snapshot.reference)
        if data.get("route_id"):  # a payment that names its route: no query needed
            refs.append(routes.document(str(data["route_id"])))
            continue
        uid = snapshot.reference.parent.parent.id
        doomed.setdefault(uid, set()).add(snapshot.id)
    for uid, payment_ids in doomed.items():
        for route in routes.where(filter=firestore.FieldFilter("uid", "==", uid)).stream():
            if (route.to_dict() or {}).get("payment_id") in payment_ids:
                refs.append(route.reference)

    delete_refs(client, refs)
    return removed


def delete_refs(client: Any, refs: Sequence[Any]) -> None:
    """Delete these documents in batches of 400 (under Firestore's 500 writes per commit), 8 batches at a time."""

    def delete(chunk: Sequence[Any]) -> None:
        batch = client.batch()
        for ref in chunk:
            batch.delete(ref)
        batch.commit()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(delete, [refs[start : start + 400] for start in range(0, len(refs), 400)]))


def settle_or_remove(client: Any, uids: Sequence[str], phase: str, timeout_s: float = 60.0) -> dict[str, int]:
    """Wait for the callbacks of these developers' payments to settle them; remove whatever is still pending."""
    deadline = time.monotonic() + timeout_s
    pending = pending_payments(client, uids)
    while pending and time.monotonic() < deadline:
        time.sleep(1.0)
        pending = pending_payments(client, uids)
    removed = remove_payments(client, pending) if pending else 0
    if removed:
        progress(phase, f"{removed} payments still pending after {timeout_s:.0f}s were removed")
    return {"left_pending_then_removed": removed}
