"""gateway.webhook_transport against real sockets on 127.0.0.1 (started here), with the resolver swapped where a test
needs a host name to resolve somewhere; and gateway.webhook_secrets' per-version cache over a counting backend."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway import errors
from gateway.domain.webhooks import parse_endpoint_url
from gateway.webhook_secrets import WebhookSecrets, secret_id
from gateway.webhook_transport import AddressRefused, WebhookTransport, checked_addresses
from tests.support import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def resolver(*addresses: str) -> Any:
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    "answers",
    [("127.0.0.1",), ("10.0.0.7",), ("169.254.169.254",), ("8.8.8.8", "192.168.0.10"), ("::1",), ()],
)
def test_a_host_resolving_anywhere_but_the_public_internet_is_refused(answers: tuple[str, ...]) -> None:
    with pytest.raises(AddressRefused):
        checked_addresses("hooks.example.com", 443, allow_loopback=False, resolver=resolver(*answers))


def test_refused_addresses_are_a_failed_attempt_without_any_connection(receiver: WebhookReceiver) -> None:
    # The name resolves to the receiver's own loopback address: without the local-stack override nothing is sent.
    url = parse_endpoint_url("https://hooks.example.com/x", allow_local=False)
    transport = WebhookTransport(2.0, allow_loopback=False, resolver=resolver("127.0.0.1"))
    result = transport.post(url, b"{}", {})
    assert (result.status, result.error) == (None, "address_not_public")
    plain = parse_endpoint_url(receiver.new_url(), allow_local=True)
    assert WebhookTransport(2.0, allow_loopback=False).post(plain, b"{}", {}).error == "address_not_public"
    assert receiver.deliveries("/x") == []


def test_the_connection_goes_to_the_address_that_was_checked(receiver: WebhookReceiver) -> None:
    """DNS is asked once; the socket connects to that answer, and the Host header still names the host."""
    port = int(receiver.base_url.rsplit(":", 1)[1])
    url = parse_endpoint_url(f"http://localhost:{port}/pinned", allow_local=True)
    resolve = resolver("127.0.0.1")
    result = WebhookTransport(2.0, allow_loopback=True, resolver=resolve).post(
        url, b'{"a":1}', {"webhook-id": "evt_1", "Content-Type": "application/json"}
    )
    assert result.status == 200 and result.error is None
    assert resolve.calls == ["localhost"]
    [delivery] = receiver.wait_for("/pinned")
    assert delivery.body == b'{"a":1}' and delivery.headers["webhook-id"] == "evt_1"
    assert delivery.headers["host"] == f"localhost:{port}"


def test_answers_are_recorded_with_retry_after_and_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    transport = WebhookTransport(2.0, allow_loopback=True)
    slow_down = receiver.new_url()
    receiver.script(slow_down, (429, {"Retry-After": "30"}))
    result = transport.post(parse_endpoint_url(slow_down, allow_local=True), b"{}", {})
    assert (result.status, result.retry_after) == (429, "30")
    moved = receiver.new_url()
    receiver.script(moved, (302, {"Location": "http://169.254.169.254/"}))
    assert transport.post(parse_endpoint_url(moved, allow_local=True), b"{}", {}).status == 302


class _Chatty(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/slow":
            time.sleep(1.5)
        body = b"x" * 50_000
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client reads 1 KB (or gives up) and hangs up: expected

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_timeouts_refusals_and_a_bounded_excerpt() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chatty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        transport = WebhookTransport(0.5, allow_loopback=True)
        big = transport.post(parse_endpoint_url(f"{base}/big", allow_local=True), b"{}", {})
        assert big.status == 200 and len(big.body_excerpt) == 1024
        slow = transport.post(parse_endpoint_url(f"{base}/slow", allow_local=True), b"{}", {})
        assert (slow.status, slow.error) == (None, "timeout") and slow.latency_ms >= 400
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    refused = WebhookTransport(0.5, allow_loopback=True).post(
        parse_endpoint_url(f"http://127.0.0.1:{free_port}/", allow_local=True), b"{}", {}
    )
    assert refused.error == "connection_refused"
    unknown = WebhookTransport(0.5, allow_loopback=True).post(
        parse_endpoint_url("https://does-not-exist.invalid/", allow_local=False), b"{}", {}
    )
    assert unknown.error in ("dns_error", "address_not_public")


class CountingVersions:
    def __init__(self) -> None:
        self.versions: dict[str, list[bytes | None]] = {}
        self.reads = 0

    def add_version(self, secret_id: str, data: bytes) -> str:
        self.versions.setdefault(secret_id, []).append(data)
        return str(len(self.versions[secret_id]))

    def access_version(self, secret_id: str, version: str) -> bytes | None:
        self.reads += 1
        stored = self.versions.get(secret_id, [])
        return stored[int(version) - 1] if int(version) <= len(stored) else None

    def destroy_version(self, secret_id: str, version: str) -> None:
        self.versions[secret_id][int(version) - 1] = None

    def destroy(self, secret_id: str) -> bool:
        return self.versions.pop(secret_id, None) is not None


def test_signing_secrets_are_cached_per_version() -> None:
    backend = CountingVersions()
    writer, reader = WebhookSecrets(backend), WebhookSecrets(backend)  # two instances
    version, secret = writer.create("dev_1", "we_1")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert backend.versions[secret_id("dev_1", "we_1")] == [secret.encode()]
    assert writer.get("dev_1", "we_1", version) == secret and backend.reads == 0  # its own write is cached
    for _ in range(5):
        assert reader.get("dev_1", "we_1", version) == secret
    assert backend.reads == 1
    newer, rotated = writer.create("dev_1", "we_1")
    assert reader.get("dev_1", "we_1", newer) == rotated and reader.get("dev_1", "we_1", version) == secret
    assert backend.reads == 2
    assert secret_id("dev_1", "we_1") != secret_id("dev_2", "we_1")
    writer.destroy("dev_1", "we_1")
    with pytest.raises(errors.ServerError):  # the destroyed secret is gone from the cache too
        writer.get("dev_1", "we_1", version)
