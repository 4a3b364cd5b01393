"""Memory at scale: one fresh process looks up 100,000 distinct developers' credentials through CredentialStore with
the default Settings limits, and pushes for 100,000 distinct developers through DarajaClient's token cache.

The backends are in-memory fakes (a SecretBackend, a requests.Session that answers like Daraja), and they count the
Secret Manager accesses and OAuth mints themselves, from outside: this measures how the per-instance caches are
bounded, not the network. Run as `python bench/memory.py` it prints one JSON line.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEVELOPERS = 100_000
GROWTH_BOUND_MB = 60.0


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(developers: int = DEVELOPERS) -> dict[str, Any]:
    """The child process's job: every import done first, so the growth is the caches' alone."""
    root = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(root), str(root / "functions")]
    import requests

    from gateway.daraja import DarajaApp, DarajaClient, StkPushOrder
    from gateway.secrets import CredentialStore, DarajaSecret
    from gateway.settings import Settings
    from scripts import stack_config

    settings = Settings(project_id=stack_config.load().project_id)  # every cache limit at its default
    payload = DarajaSecret("consumer-key", "consumer-secret", "passkey").to_json()

    class InMemorySecrets:
        accesses = 0

        def access_latest(self, secret_id: str) -> bytes | None:
            InMemorySecrets.accesses += 1
            return payload

        def access_version(self, secret_id: str, version: str) -> bytes | None:
            InMemorySecrets.accesses += 1
            return payload

        def add_version(self, secret_id: str, data: bytes) -> str | None:
            raise NotImplementedError

        def latest_version(self, secret_id: str) -> str | None:
            return "1"

        def destroy_versions(self, secret_id: str, before: str | None = None) -> bool:
            raise NotImplementedError

        def destroy_version(self, secret_id: str, version: str) -> None:
            raise NotImplementedError

    def canned(body: bytes) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = body
        return response

    class DarajaLikeSession(requests.Session):
        mints = 0

        def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
            DarajaLikeSession.mints += 1  # DarajaClient GETs nothing but OAuth tokens
            return canned(b'{"access_token": "bench-token", "expires_in": "3599"}')

        def post(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
            return canned(
                b'{"MerchantRequestID": "1-2-3", "CheckoutRequestID": "ws_CO_1", "ResponseCode": "0", '
                b'"ResponseDescription": "Success", "CustomerMessage": "Success"}'
            )

    store = CredentialStore(settings, InMemorySecrets())
    daraja = DarajaClient(settings, session_factory=DarajaLikeSession)
    order = StkPushOrder(10, "254708374149", "https://example.com/cb/token", "BENCH-1", "Bench push")
    gc.collect()
    before_mb = _status_mb("VmRSS")

    started = time.perf_counter()
    for i in range(developers):
        store.get(f"developer-{i:06d}")
    credentials_s = time.perf_counter() - started
    gc.collect()
    after_credentials_mb = _status_mb("VmRSS")

    started = time.perf_counter()
    secret = DarajaSecret("consumer-key", "consumer-secret", "passkey")
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # one log line per mint
        for i in range(developers):
            app = DarajaApp(f"developer-{i:06d}", "sandbox", "174379", "CustomerPayBillOnline", "174379", secret)
            daraja.stk_push(app, order)
    daraja_s = time.perf_counter() - started
    gc.collect()
    after_daraja_mb = _status_mb("VmRSS")
    return {
        "developers": developers,
        "rss_before_mb": before_mb,
        "rss_after_credentials_mb": after_credentials_mb,
        "rss_after_daraja_mb": after_daraja_mb,
        "rss_peak_mb": _status_mb("VmHWM"),
        "credential_cache_entries": len(store),
        "credential_cache_max_entries": settings.credential_cache_max_entries,
        "credential_backend_reads": InMemorySecrets.accesses,
        "token_cache_entries": len(daraja._tokens),  # no public size; a benchmark may look inside
        "token_cache_max_entries": settings.oauth_cache_max_entries,
        "oauth_mints": DarajaLikeSession.mints,
        "credentials_s": credentials_s,
        "daraja_s": daraja_s,
    }


def run(result: Any, developers: int = DEVELOPERS) -> None:
    from bench.common import FUNCTIONS_PYTHON, ROOT, progress
    from bench.report import Figure

    phase = "memory"
    progress(phase, f"fresh process: {developers:,} developers through CredentialStore and DarajaClient")
    done = subprocess.run(
        [str(FUNCTIONS_PYTHON), str(Path(__file__).resolve()), str(developers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed: {done.stderr.strip()[-800:]}")
    m = json.loads(done.stdout.strip().splitlines()[-1])
    result.details["memory"] = m
    growth = m["rss_after_daraja_mb"] - m["rss_before_mb"]
    credentials_growth = m["rss_after_credentials_mb"] - m["rss_before_mb"]
    n = f"{m['developers']:,}"
    result.figures.append(
        Figure.against(
            phase,
            f"RSS growth after {n} developers (both caches)",
            growth,
            f"{growth:.1f} MB ({m['rss_before_mb']:.1f} -> {m['rss_after_daraja_mb']:.1f} MB; "
            f"credentials alone {credentials_growth:+.1f} MB)",
            f"< {GROWTH_BOUND_MB:.0f} MB",
            growth < GROWTH_BOUND_MB,
        )
    )
    result.figures.append(
        Figure.against(
            phase,
            f"credential cache entries after {n} developers",
            m["credential_cache_entries"],
            f"{m['credential_cache_entries']:,} ({m['credential_backend_reads']:,} backend reads, "
            f"{m['credentials_s']:.1f} s)",
            f"<= {m['credential_cache_max_entries']:,}",
            m["credential_cache_entries"] <= m["credential_cache_max_entries"],
            check=True,
        )
    )
    result.figures.append(
        Figure.against(
            phase,
            f"Daraja token cache entries after {n} developers",
            m["token_cache_entries"],
            f"{m['token_cache_entries']:,} ({m['oauth_mints']:,} mints, {m['daraja_s']:.1f} s)",
            f"<= {m['token_cache_max_entries']:,}",
            m["token_cache_entries"] <= m["token_cache_max_entries"],
            check=True,
        )
    )


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else DEVELOPERS)))
