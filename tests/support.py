"""Shared helpers of the test tiers under tests/: where the running stack is (from scripts/stack_config.py, so from
firebase.json and .firebaserc unless the environment says otherwise), its set-up calls (Auth emulator sign-up,
Daraja simulator admin: from scripts/stack_admin.py, which the benches and the demo share), a tiny client for the
functions, and a local listener for callbacks.

Tests never reset global state: each one signs up its own developers, registers its own Daraja app with its own
shortcode and uses its own phone numbers, so tiers and test runs can share one stack.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from scripts.stack_admin import (
    ADDRESSES,
    DarajaApp,
    delete_auth_user,
    firestore_client,
    register_simulator_app,
    set_scenario,
    sign_up,
    simulator_callbacks,
    simulator_requests,
    unique_phone,
    unique_shortcode,
)
from scripts.stack_admin import AuthUser as SignedUpDeveloper

__all__ = [
    "AUTH_HOST",
    "CALLBACK_BASE_URL",
    "DARAJA_URL",
    "FIRESTORE_HOST",
    "FUNCTIONS_URL",
    "HOSTING_URL",
    "PROJECT_ID",
    "SECRET_MANAGER_HOST",
    "CallbackListener",
    "DarajaApp",
    "SignedUpDeveloper",
    "WebhookReceiver",
    "daraja_secret_name",
    "delete_auth_user",
    "firestore_client",
    "function_url",
    "port_open",
    "register_simulator_app",
    "secret_manager_client",
    "set_scenario",
    "sign_up",
    "simulator_callbacks",
    "simulator_requests",
    "stack_missing",
    "unique_phone",
    "unique_shortcode",
    "wait_for",
]

PROJECT_ID = ADDRESSES.project_id
AUTH_HOST = ADDRESSES.auth_host
FIRESTORE_HOST = ADDRESSES.firestore_host
SECRET_MANAGER_HOST = ADDRESSES.secret_manager_host
DARAJA_URL = ADDRESSES.daraja_url
FUNCTIONS_URL = ADDRESSES.functions_url
HOSTING_URL = ADDRESSES.hosting_url
CALLBACK_BASE_URL = ADDRESSES.callback_base_url
function_url = ADDRESSES.function_url


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
        "daraja simulator": urlsplit(DARAJA_URL).netloc,
        "functions emulator": urlsplit(FUNCTIONS_URL).netloc,
        "hosting emulator": urlsplit(HOSTING_URL).netloc,
    }
    return [name for name, host in wanted.items() if not port_open(host)]


def secret_manager_client() -> Any:
    """A google-cloud-secret-manager client of the stack's Secret Manager emulator (REST, no credentials)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"http://{SECRET_MANAGER_HOST}"),
        credentials=AnonymousCredentials(),
    )


def daraja_secret_name(uid: str, environment: str) -> str:
    """The Secret Manager name of a developer's Daraja secret for one environment, as the gateway names it."""
    secret_id = "daraja-credentials-" + hashlib.sha256(f"{uid}#{environment}".encode()).hexdigest()
    return f"projects/{PROJECT_ID}/secrets/{secret_id}"


def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


class CallbackListener:
    """A local HTTP server on a free port that records the JSON bodies POSTed to it, by path, and answers like the
    gateway does; a path starting with /fail answers 500 instead. Needs nothing running: any tier can use it.

        listener = CallbackListener()
        url = listener.new_url("/callbacks")      # a fresh path of its own
        ... make something POST to url ...
        [body] = listener.wait_for(url)           # or wait_for(url, count=2); bodies(url) does not wait
        listener.close()
    """

    def __init__(self) -> None:
        self._received: dict[str, list[Any]] = {}
        self._changed = threading.Condition()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with listener._changed:
                    listener._received.setdefault(self.path, []).append(body)
                    listener._changed.notify_all()
                answer = json.dumps({"ResultCode": 0, "ResultDesc": "Accepted"}).encode()
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def new_url(self, prefix: str = "/cb") -> str:
        """A URL under a path nobody else uses, so callers sharing the listener never see each other's bodies."""
        return f"{self.base_url}{prefix}/{secrets.token_hex(8)}"

    def bodies(self, url_or_path: str) -> list[Any]:
        path = urlsplit(url_or_path).path
        with self._changed:
            return list(self._received.get(path, []))

    def wait_for(self, url_or_path: str, count: int = 1, timeout_s: float = 15.0) -> list[Any]:
        """The bodies POSTed to the URL once at least `count` have arrived; AssertionError after timeout_s."""
        path = urlsplit(url_or_path).path
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received.get(path, [])) >= count, timeout=timeout_s):
                got = len(self._received.get(path, []))
                raise AssertionError(f"{got} of {count} callback(s) reached {path} within {timeout_s}s")
            return list(self._received[path])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def success_callback(
    checkout_request_id: str,
    amount: float,
    phone: int,
    receipt: str = "NLJ7RT61SV",
    merchant_request_id: str = "29115-34620561-1",
) -> dict[str, Any]:
    """A Daraja success callback body, as Safaricom sends it."""
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": merchant_request_id,
                "CheckoutRequestID": checkout_request_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20261129102115},
                        {"Name": "PhoneNumber", "Value": phone},
                    ]
                },
            }
        }
    }


class WebhookReceiver:
    """A developer's webhook receiver on 127.0.0.1: records every delivery (raw body and headers, by path) and
    answers each path from a script of (status, headers) steps, then 200. `stop()` / `start()` take it down and
    bring it back on the same port (a receiver that is down refuses connections). Needs nothing running.

        receiver = WebhookReceiver()
        url = receiver.new_url()                 # a fresh path of its own
        receiver.script(url, (500, {}), (500, {}))
        [delivery] = receiver.wait_for(url)      # Delivery(body=bytes, headers=dict of lower-case names)
    """

    class Delivery:
        def __init__(self, body: bytes, headers: dict[str, str], at: float) -> None:
            self.body = body
            self.headers = headers
            self.at = at

        def json(self) -> Any:
            return json.loads(self.body)

    def __init__(self) -> None:
        self._received: dict[str, list[WebhookReceiver.Delivery]] = {}
        self._scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self._changed = threading.Condition()
        self._port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._changed:
                    path_received = receiver._received.setdefault(self.path, [])
                    attempt = len(path_received)
                    path_received.append(WebhookReceiver.Delivery(body, headers, time.time()))
                    steps = receiver._scripts.get(self.path, [])
                    status, extra = steps[attempt] if attempt < len(steps) else (200, {})
                    receiver._changed.notify_all()
                answer = json.dumps({"received": status < 300}).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self.server.daemon_threads = True
        self._port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    close = stop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def new_url(self, prefix: str = "/hooks") -> str:
        return f"{self.base_url}{prefix}/{secrets.token_hex(8)}"

    def script(self, url_or_path: str, *steps: tuple[int, dict[str, str]]) -> None:
        """Answer the first deliveries to this path with these (status, headers) steps, later ones with 200."""
        self._scripts[urlsplit(url_or_path).path] = list(steps)

    def deliveries(self, url_or_path: str) -> list[WebhookReceiver.Delivery]:
        with self._changed:
            return list(self._received.get(urlsplit(url_or_path).path, []))

    def wait_for(self, url_or_path: str, count: int = 1, timeout_s: float = 20.0) -> list[WebhookReceiver.Delivery]:
        path = urlsplit(url_or_path).path
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received.get(path, [])) >= count, timeout=timeout_s):
                got = len(self._received.get(path, []))
                raise AssertionError(f"{got} of {count} webhook deliveries reached {path} within {timeout_s}s")
            return list(self._received[path])
