"""Shared helpers of the test tiers under tests/: where the running stack is (from scripts/stack_config.py, so from
firebase.json and .firebaserc unless the environment says otherwise), its set-up calls (Auth emulator sign-up,
Daraja simulator admin: from scripts/stack_admin.py, which the benches and the demo share), a tiny client for the
functions, and a local listener for callbacks.

Tests never reset global state: each one signs up its own developers, registers its own Daraja app with its own
shortcode and uses its own phone numbers, so tiers and test runs can share one stack.
"""

from __future__ import annotations

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
    "delete_auth_user",
    "firestore_client",
    "function_url",
    "port_open",
    "register_simulator_app",
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
