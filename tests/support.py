"""Shared helpers for the integration and end-to-end tiers: URLs of the running stack, Auth emulator sign-up,
Daraja simulator admin calls, and a tiny client for the functions.

Tests never reset global state: each one signs up its own developers, registers its own Daraja app with its own
shortcode and uses its own phone numbers, so tiers and test runs can share one stack.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

import requests

PROJECT_ID = os.environ.get("GCLOUD_PROJECT", "demo-mpesa-gateway")
AUTH_HOST = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
FIRESTORE_HOST = os.environ.get("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8080")
SECRET_MANAGER_HOST = os.environ.get("SECRET_MANAGER_EMULATOR_HOST", "127.0.0.1:8086")
DARAJA_URL = os.environ.get("DARAJA_SIMULATOR_URL", "http://127.0.0.1:8089")
FUNCTIONS_URL = os.environ.get("FUNCTIONS_BASE_URL", f"http://127.0.0.1:5001/{PROJECT_ID}/us-central1")
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


def port_open(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def stack_missing() -> list[str]:
    wanted = {
        "auth emulator": AUTH_HOST,
        "firestore emulator": FIRESTORE_HOST,
        "secret manager emulator": SECRET_MANAGER_HOST,
        "daraja simulator": DARAJA_URL.split("//", 1)[1],
        "functions emulator": FUNCTIONS_URL.split("//", 1)[1].split("/", 1)[0],
    }
    return [name for name, host in wanted.items() if not port_open(host)]


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def unique_phone() -> str:
    """A random Safaricom-format number, so scenarios and the subscriber lock never collide across tests."""
    return "2547" + "".join(secrets.choice("0123456789") for _ in range(8))


def unique_shortcode() -> str:
    return str(secrets.randbelow(8_000_000) + 1_000_000)


@dataclass
class SignedUpDeveloper:
    uid: str
    email: str
    password: str
    id_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token}"}


def sign_up(email: str | None = None, password: str = "correct-horse-battery") -> SignedUpDeveloper:
    email = email or f"{unique('dev-')}@example.com"
    response = requests.post(
        f"http://{AUTH_HOST}/identitytoolkit.googleapis.com/v1/accounts:signUp?key=fake-api-key",
        json={"email": email, "password": password, "returnSecureToken": True},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    return SignedUpDeveloper(body["localId"], email, password, body["idToken"])


def delete_auth_user(developer: SignedUpDeveloper) -> None:
    requests.post(
        f"http://{AUTH_HOST}/identitytoolkit.googleapis.com/v1/accounts:delete?key=fake-api-key",
        json={"idToken": developer.id_token},
        timeout=10,
    ).raise_for_status()


@dataclass
class DarajaApp:
    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str

    def credentials_body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "environment": "sandbox",
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "shortcode": self.shortcode,
            "passkey": self.passkey,
            "transaction_type": "CustomerPayBillOnline",
        }
        body.update(overrides)
        return body


def register_simulator_app() -> DarajaApp:
    app = DarajaApp(
        consumer_key=unique("ck_test_") + secrets.token_hex(8),
        consumer_secret=unique("cs_test_") + secrets.token_hex(12),
        shortcode=unique_shortcode(),
        passkey=secrets.token_hex(32),
    )
    response = requests.post(
        f"{DARAJA_URL}/simulator/apps",
        json={
            "consumer_key": app.consumer_key,
            "consumer_secret": app.consumer_secret,
            "shortcode": app.shortcode,
            "passkey": app.passkey,
        },
        timeout=10,
    )
    response.raise_for_status()
    return app


def set_scenario(phone: str, result_code: int | str = 0, delay_ms: int = 200, callbacks: int = 1) -> None:
    requests.post(
        f"{DARAJA_URL}/simulator/scenarios",
        json={"phone": phone, "result_code": result_code, "delay_ms": delay_ms, "callbacks": callbacks},
        timeout=10,
    ).raise_for_status()


def simulator_requests(kind: str | None = None, shortcode: str | None = None) -> list[dict[str, Any]]:
    params = {k: v for k, v in {"kind": kind, "shortcode": shortcode}.items() if v}
    response = requests.get(f"{DARAJA_URL}/simulator/requests", params=params, timeout=10)
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["requests"]
    return [
        r
        for r in listed
        if (kind is None or r.get("kind") == kind) and (shortcode is None or r.get("shortcode") == shortcode)
    ]


def function_url(name: str) -> str:
    return f"{FUNCTIONS_URL}/{name}"


def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


def firestore_client() -> Any:
    from google.cloud import firestore

    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", FIRESTORE_HOST)
    return firestore.Client(project=PROJECT_ID)
