"""The Python SDK's webhook calls against the running stack: register a receiver on 127.0.0.1, pay, and verify the
deliveries with verify_webhook and with the `standardwebhooks` reference library; list events, read the delivery
log, redeliver, rotate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from mpesa_gateway import verify_webhook
from sdk_stack import gateway, register_app, set_credentials, sign_up, unique_phone

pytestmark = pytest.mark.usefixtures("stack")


class Receiver:
    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.deliveries.append((body, {k.lower(): v for k, v in self.headers.items()}))
                    receiver.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def wait(self, count: int, timeout: float = 60.0) -> list[tuple[bytes, dict[str, str]]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout), len(self.deliveries)
            return list(self.deliveries)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_endpoints_events_deliveries_and_replay(receiver: Receiver) -> None:
    gw = gateway(sign_up().id_token)
    set_credentials(gw, register_app())
    endpoint = gw.webhook_endpoints.create(receiver.url, enabled_events=["payment.succeeded"])
    assert endpoint.id.startswith("we_") and endpoint.secret and endpoint.secret.startswith("whsec_")
    assert [e.id for e in gw.webhook_endpoints.list()] == [endpoint.id]
    assert gw.webhook_endpoints.get(endpoint.id).secret is None

    payment = gw.payments.create(unique_phone(), 10, "INV-1", "Order 1")
    [(body, headers)] = receiver.wait(1)
    event = verify_webhook(body, headers, endpoint.secret)
    assert Webhook(endpoint.secret).verify(body, headers)["type"] == event.type == "payment.succeeded"
    assert event.payment.id == payment.id and event.payment.status == "succeeded"

    events, _ = gw.events.list_page(type="payment.succeeded")
    assert [e.id for e in events] == [event.id]
    assert gw.events.get(event.id).payment.id == payment.id
    [log] = gw.events.deliveries(event.id)
    assert log["status"] == "succeeded" and log["attempts"][0]["status_code"] == 204

    rotated = gw.webhook_endpoints.rotate_secret(endpoint.id)
    assert rotated.secret and rotated.secret != endpoint.secret
    assert gw.events.redeliver(event.id) == [endpoint.id]
    (_, _), (again, again_headers) = receiver.wait(2)
    assert verify_webhook(again, again_headers, rotated.secret).id == event.id
    assert verify_webhook(again, again_headers, endpoint.secret, now=time.time()).id == event.id

    assert gw.webhook_endpoints.update(endpoint.id, status="disabled").status == "disabled"
    assert gw.webhook_endpoints.delete(endpoint.id) is True
    assert gw.webhook_endpoints.list() == []
