"""A hand-written fake transport for the unit tests: an adapter mounted on a requests.Session that records every
prepared request and answers from a script, so no test patches modules or opens a socket."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from mpesa_gateway import Gateway


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


Outcome = Reply | BaseException | Callable[[requests.PreparedRequest], "Reply | BaseException"]


class FakeAdapter(BaseAdapter):
    def __init__(self, outcomes: Sequence[Outcome] | None = None) -> None:
        super().__init__()
        self.outcomes: list[Outcome] = list(outcomes or [])
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def queue(self, *outcomes: Outcome) -> None:
        self.outcomes.extend(outcomes)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self.requests.append(request)
        self.timeouts.append(timeout)
        if not self.outcomes:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        outcome = self.outcomes.pop(0)
        if callable(outcome) and not isinstance(outcome, BaseException):
            outcome = outcome(request)
        if isinstance(outcome, BaseException):
            raise outcome
        response = requests.Response()
        response.status_code = outcome.status
        body = outcome.body
        response._content = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json", **outcome.headers})
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass

    def header(self, index: int, name: str) -> str | None:
        return self.requests[index].headers.get(name)

    def json_body(self, index: int) -> Any:
        body = self.requests[index].body
        assert body is not None
        return json.loads(body if isinstance(body, (str, bytes)) else bytes(body))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


BASE_URL = "https://gateway.test/demo/us-central1"


def fake_gateway(
    outcomes: Sequence[Outcome] | None = None,
    *,
    id_token: str | Callable[[], str] = "token-A",
    max_retries: int = 3,
    random_value: float = 1.0,
    **options: Any,
) -> tuple[Gateway, FakeAdapter, FakeClock]:
    adapter = FakeAdapter(outcomes)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    clock = FakeClock()
    gateway = Gateway(
        BASE_URL,
        id_token,
        session=session,
        max_retries=max_retries,
        sleep=clock.sleep,
        clock=clock,
        random=lambda: random_value,
        **options,
    )
    return gateway, adapter, clock


def payment_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "payment",
        "id": "pay_0123456789abcdef01234567",
        "status": "pending",
        "amount": 10,
        "currency": "KES",
        "phone": "2547******49",
        "account_reference": "INV-1",
        "description": "Order 1",
        "metadata": {"order_id": "1001"},
        "environment": "sandbox",
        "shortcode": "174379",
        "checkout_request_id": "ws_CO_1",
        "merchant_request_id": "mr_1",
        "result_code": None,
        "result_desc": None,
        "mpesa_receipt_number": None,
        "transaction_date": None,
        "flags": [],
        "created_at": "2026-11-29T06:00:00.123Z",
        "updated_at": "2026-11-29T06:00:00.123Z",
        "settled_at": None,
    }
    body.update(overrides)
    return body


def envelope(error_type: str | None, code: str, message: str = "nope", **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": "req_body"}
    if error_type is not None:
        error["type"] = error_type
    error.update(extra)
    return {"error": error}
