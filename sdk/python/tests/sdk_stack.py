"""Helpers for the SDK's integration tests: the running stack's URLs, Auth emulator users, and the Daraja simulator's
admin routes. Each test makes its own developer, Daraja app (own shortcode) and phone numbers, and never resets shared
state, so it can share the stack with every other test tier.

The URLs come from the environment `scripts/stack.py run` sets, else from the repository's firebase.json and
.firebaserc, read here directly (not through scripts/stack_config.py) so the SDK's tests need nothing of the rest."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from mpesa_gateway import FirebaseUser, Gateway, firebase_sign_up

REPO = Path(__file__).resolve().parents[3]
_FIREBASE = json.loads((REPO / "firebase.json").read_text())


def _address(section: str, name: str) -> str:
    entry = _FIREBASE[section][name]
    return f"{entry['host']}:{entry['port']}"


PROJECT_ID = os.environ.get("GCLOUD_PROJECT") or json.loads((REPO / ".firebaserc").read_text())["projects"]["default"]
AUTH_HOST = os.environ.get("FIREBASE_AUTH_EMULATOR_HOST") or _address("emulators", "auth")
AUTH_URL = f"http://{AUTH_HOST}/identitytoolkit.googleapis.com"
DARAJA_URL = (os.environ.get("DARAJA_SIMULATOR_URL") or f"http://{_address('devservers', 'daraja')}").rstrip("/")
FUNCTIONS_URL = (
    os.environ.get("FUNCTIONS_BASE_URL") or f"http://{_address('emulators', 'functions')}/{PROJECT_ID}/us-central1"
).rstrip("/")
API_KEY = "fake-api-key"  # the Auth emulator accepts any key
PASSWORD = "correct-horse-battery"


def _port_open(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def stack_missing() -> list[str]:
    wanted = {
        "auth emulator": AUTH_HOST,
        "daraja simulator": DARAJA_URL.split("//", 1)[1].split("/", 1)[0],
        "functions emulator": FUNCTIONS_URL.split("//", 1)[1].split("/", 1)[0],
    }
    return [name for name, host in wanted.items() if not _port_open(host)]


def unique_phone() -> str:
    return "2547" + "".join(secrets.choice("0123456789") for _ in range(8))


def sign_up() -> FirebaseUser:
    return firebase_sign_up(API_KEY, f"sdk-{secrets.token_hex(5)}@example.com", PASSWORD, AUTH_URL)


def gateway(id_token: Any, session: requests.Session | None = None, **options: Any) -> Gateway:
    options.setdefault("retry_base_delay", 0.05)
    return Gateway(FUNCTIONS_URL, id_token, session=session, **options)


@dataclass(frozen=True)
class SimulatorApp:
    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str


def register_app() -> SimulatorApp:
    app = SimulatorApp(
        consumer_key="ck_sdk_" + secrets.token_hex(10),
        consumer_secret="cs_sdk_" + secrets.token_hex(14),
        shortcode=str(secrets.randbelow(8_000_000) + 1_000_000),
        passkey=secrets.token_hex(32),
    )
    requests.post(
        f"{DARAJA_URL}/simulator/apps",
        json={
            "consumer_key": app.consumer_key,
            "consumer_secret": app.consumer_secret,
            "shortcode": app.shortcode,
            "passkey": app.passkey,
        },
        timeout=10,
    ).raise_for_status()
    return app


def set_credentials(gw: Gateway, app: SimulatorApp, passkey: str | None = None) -> None:
    gw.credentials.set(
        environment="sandbox",
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
        shortcode=app.shortcode,
        passkey=passkey or app.passkey,
    )


def set_scenario(phone: str, result_code: int | str = 0, delay_ms: int = 200, callbacks: int = 1) -> None:
    requests.post(
        f"{DARAJA_URL}/simulator/scenarios",
        json={"phone": phone, "result_code": result_code, "delay_ms": delay_ms, "callbacks": callbacks},
        timeout=10,
    ).raise_for_status()


def set_fault(phone: str, push_answer: str, answer_delay_ms: int | None = None, **scenario: Any) -> None:
    """Queue a Daraja simulator fault for the next push to `phone`: the payer is prompted (and, by default, pays
    after 200 ms), but the push's own HTTP answer is a 500 ("accept_then_500"), late ("accept_then_hang") or a reset."""
    body: dict[str, Any] = {"phone": phone, "result_code": 0, "delay_ms": 200, "push_answer": push_answer, **scenario}
    if answer_delay_ms is not None:
        body["answer_delay_ms"] = answer_delay_ms
    requests.post(f"{DARAJA_URL}/simulator/scenarios", json=body, timeout=10).raise_for_status()


def simulator_requests(kind: str, shortcode: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{DARAJA_URL}/simulator/requests", params={"kind": kind, "shortcode": shortcode}, timeout=10
    )
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["requests"]
    return [r for r in listed if r.get("kind") == kind and r.get("shortcode") == shortcode]


def simulator_callbacks(checkout_request_id: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{DARAJA_URL}/simulator/callbacks", params={"checkout_request_id": checkout_request_id}, timeout=10
    )
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["callbacks"]
    return [c for c in listed if c.get("checkout_request_id") == checkout_request_id]


class RecordingAdapter(HTTPAdapter):
    """A real transport that remembers every request and answer, and can drop the answer to the first request of a
    method AFTER the server has processed it, the way a connection reset after the request arrived does."""

    def __init__(self, drop_first_answer_to: str | None = None, first_post_read_timeout: float | None = None) -> None:
        super().__init__(max_retries=0)
        self.drop_first_answer_to = drop_first_answer_to
        # When set, the first POST alone waits only this long for its answer, as a client with a short timeout would.
        self.first_post_read_timeout = first_post_read_timeout
        self.attempted: list[requests.PreparedRequest] = []  # every request, also those that got no answer
        self.sent: list[requests.PreparedRequest] = []
        self.answers: list[requests.Response] = []
        self.dropped = 0

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if request.method == "POST" and self.first_post_read_timeout is not None:
            if not any(sent.method == "POST" for sent in self.attempted):
                connect = timeout[0] if isinstance(timeout, tuple) else timeout
                timeout = (connect if connect is not None else 3.05, self.first_post_read_timeout)
        self.attempted.append(request)
        response = super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        self.sent.append(request)
        self.answers.append(response)
        if request.method == self.drop_first_answer_to and self.dropped == 0:
            self.dropped += 1
            raise requests.ConnectionError("connection dropped after the gateway answered")
        return response

    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount("http://", self)
        session.mount("https://", self)
        return session
