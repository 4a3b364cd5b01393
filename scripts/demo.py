"""`make demo`: the whole gateway, end to end, through the Python SDK, against the running local stack.

Two developers, Amina and Brian, each with their own Firebase account and Daraja app, take payments through the one
gateway. The story: sign up; store Daraja credentials (only a masked view ever comes back); push STK prompts that
succeed, are cancelled by the payer, or whose callback Daraja never delivers (the gateway then settles the payment
by asking Daraja, when the payment is read); wait for each payment to settle; list payments; and show that Brian
cannot see Amina's payment. Webhooks: a small receiver (one local HTTP server, a path per endpoint) is registered for
both developers before the first push; it checks every delivery with the SDK's `verify_webhook` and prints each event
as it arrives. Each developer's receiver must get exactly the events of their own payments. Amina also has a receiver
that answers 500 twice: it gets her payment.succeeded on the third try, with the same `webhook-id`. Locally the
retry schedule is scaled by 0.01 (functions/.env.local), so the third try comes about 3 s after the first, while
the rest of the story runs: the webhook steps add at most about 3 s to the demo, often less than one.

Every expectation prints ✔ or ✘; the exit code is 1 if any failed. The stack's URLs come from FUNCTIONS_BASE_URL,
DARAJA_SIMULATOR_URL and FIREBASE_AUTH_EMULATOR_HOST, else from firebase.json and .firebaserc (scripts/stack_config.py);
the simulator's admin calls are scripts/stack_admin.py's, shared with the tests. Phone numbers are random and are
printed masked only; nothing shared is reset, so the demo can run beside the tests.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from mpesa_gateway import (
    Gateway,
    GatewayError,
    NotFoundError,
    Payment,
    WebhookEvent,
    WebhookVerificationError,
    firebase_password_token_provider,
    firebase_sign_up,
    verify_webhook,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python scripts/demo.py`

from scripts import stack_admin  # noqa: E402
from scripts.stack_admin import ADDRESSES  # noqa: E402

FUNCTIONS_URL = ADDRESSES.functions_url
DARAJA_URL = ADDRESSES.daraja_url
AUTH_HOST = ADDRESSES.auth_host
CONSOLE_URL = f"{ADDRESSES.hosting_url}/"
AUTH_URL = f"http://{AUTH_HOST}/identitytoolkit.googleapis.com"
API_KEY = "demo-api-key"  # the Auth emulator accepts any API key
WAIT_TIMEOUT_S = 30.0
# The emulator runs Firestore triggers about one at a time: on a stack busy with other runs, an event can wait there
# for a long time (measured: 16 s, and once 66 s, between a payment and its fan-out while webhook tests and benches
# ran beside the demo; on a quiet stack, under a second).
WEBHOOK_WAIT_TIMEOUT_S = 120.0
_PRINTING = threading.Lock()  # the receiver prints from its own threads: one whole line at a time


def mask_phone(msisdn: str) -> str:
    """Like the gateway's own mask: 2547******49."""
    return msisdn[:4] + "*" * max(0, len(msisdn) - 6) + msisdn[-2:]


# -------------------------------------------------------------------------------------------------- story
@dataclass
class Story:
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    step_number: int = 0

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.step_number += 1
        self.say(f"\n{self.step_number}. {title}")
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((title, time.monotonic() - started))

    def check(self, ok: bool, message: str) -> bool:
        self.say(f"   {'✔' if ok else '✘'} {message}")
        if ok:
            self.passed += 1
        else:
            self.failed.append(message)
        return ok

    def note(self, message: str) -> None:
        self.say(f"     {message}")

    def say(self, line: str) -> None:
        with _PRINTING:
            print(line, flush=True)


@dataclass
class Developer:
    name: str
    email: str
    uid: str
    gateway: Gateway
    shortcode: str = ""
    payments: dict[str, Payment] = field(default_factory=dict)  # label -> latest view
    password: str = ""  # a throw-away Auth emulator account's, printed so the console can be signed into


@dataclass
class Push:
    developer: Developer
    label: str
    phone: str
    amount: int
    expected: str
    lost_callback: bool = False
    created_at: float = 0.0
    settled_after_s: float = 0.0


def sign_up(story: Story, name: str) -> Developer:
    email = f"{name.lower()}-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(12)
    user = firebase_sign_up(API_KEY, email, password, AUTH_URL)
    provider = firebase_password_token_provider(API_KEY, email, password, AUTH_URL)
    gateway = Gateway(FUNCTIONS_URL, provider, timeout=(3.05, 30.0), max_retries=3)
    story.check(bool(user.uid), f"{name} signed up as {email} (uid {user.uid[:8]}…)")
    return Developer(name, email, user.uid, gateway, password=password)


def store_credentials(story: Story, developer: Developer, shortcode: str) -> None:
    # A Daraja app of the developer's own, registered in the simulator as it would be on Safaricom's portal.
    app = stack_admin.register_simulator_app("demo", shortcode)
    developer.shortcode = shortcode
    stored = developer.gateway.credentials.set(
        environment="sandbox",
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
        shortcode=app.shortcode,
        passkey=app.passkey,
    )
    hint = stored.consumer_key_hint or ""
    secrets_given = (app.consumer_key, app.consumer_secret, app.passkey)
    secret_hidden = all(secret not in repr(stored.raw) for secret in secrets_given)
    story.check(
        stored.shortcode == shortcode and secret_hidden and "..." in hint,
        f"{developer.name}'s credentials stored: shortcode {stored.shortcode}, {stored.environment}, "
        f"{stored.transaction_type}, key {hint}",
    )
    story.note("(the masked view: the consumer secret and passkey never come back)")


def push(story: Story, order: Push) -> None:
    developer = order.developer
    order.created_at = time.monotonic()
    payment = developer.gateway.payments.create(
        order.phone,
        order.amount,
        account_reference=f"INV-{secrets.token_hex(3).upper()}",
        description=order.label[:13],
        metadata={"demo": order.label},
    )
    developer.payments[order.label] = payment
    story.check(
        payment.status == "pending" and payment.phone == mask_phone(order.phone),
        f"{developer.name}: KES {order.amount} prompt sent to {payment.phone} ({order.label}) -> {payment.id}, "
        f"{payment.status}",
    )


def settle(story: Story, order: Push) -> None:
    developer = order.developer
    created = developer.payments[order.label]
    payment = developer.gateway.payments.wait(created.id, timeout=WAIT_TIMEOUT_S, poll_interval=0.5)
    order.settled_after_s = time.monotonic() - order.created_at
    developer.payments[order.label] = payment
    if not payment.succeeded:
        detail = f"'{payment.result_desc}'"
    elif payment.mpesa_receipt_number:
        detail = f"receipt {payment.mpesa_receipt_number}"
    else:
        detail = "no receipt: an STK Push Query answer carries none"
    story.check(
        payment.status == order.expected,
        f"{developer.name}'s {order.label}: {payment.status} (result {payment.result_code}, {detail}) "
        f"after {order.settled_after_s:.1f} s",
    )
    if order.lost_callback:
        assert created.checkout_request_id is not None
        callbacks = stack_admin.simulator_callbacks(created.checkout_request_id)
        queries = [
            q
            for q in stack_admin.simulator_requests("stk_query", developer.shortcode)
            if q.get("checkout_request_id") == created.checkout_request_id
        ]
        story.check(
            not callbacks and bool(queries),
            f"no callback ever reached the gateway; reading the pending payment made it ask Daraja "
            f"({len(queries)} STK Push Query call{'s' if len(queries) != 1 else ''}) and settle it",
        )


# -------------------------------------------------------------------------------------------------- webhooks
@dataclass
class Arrival:
    """One delivery as the receiver saw it: the event, if verify_webhook accepted it, and the status it answered."""

    webhook_id: str
    event: WebhookEvent | None
    answered: int
    at: float
    error: str = ""


@dataclass
class Route:
    """One webhook endpoint's path on the receiver, with the secret the gateway gave for it."""

    label: str
    url: str
    fail_first: int = 0
    secret: str = ""
    endpoint_id: str = ""
    arrivals: list[Arrival] = field(default_factory=list)


def event_keys(arrivals: list[Arrival]) -> set[tuple[str, str]]:
    """(payment id, event type) of every verified delivery."""
    return {(a.event.payment.id, a.event.type) for a in arrivals if a.event is not None}


class Receiver:
    """The developers' own servers, as small as the README's receiver: one local HTTP server, a path per webhook
    endpoint. Each delivery is checked with the SDK's verify_webhook and its endpoint's secret (400 if that fails),
    printed as it arrives and answered 200, except the first `fail_first` tries of each event on a path: 500, so
    the gateway has to retry them."""

    def __init__(self, story: Story) -> None:
        self._story = story
        self._routes: dict[str, Route] = {}
        self._changed = threading.Condition()
        self._started = time.monotonic()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, label: str, slug: str, fail_first: int = 0) -> Route:
        path = f"/hooks/{slug}-{secrets.token_hex(4)}"
        route = Route(label, f"{self.base_url}{path}", fail_first)
        self._routes[path] = route
        return route

    def receive(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        route = self._routes.get(path)
        if route is None:
            return 404
        event: WebhookEvent | None = None
        error = ""
        try:
            event = verify_webhook(body, headers, route.secret)
        except (WebhookVerificationError, ValueError) as refused:
            error = str(refused)
        webhook_id = headers.get("webhook-id", "")
        with self._changed:
            attempt = 1 + sum(1 for earlier in route.arrivals if earlier.webhook_id == webhook_id)
            answered = 400 if event is None else 500 if attempt <= route.fail_first else 200
            route.arrivals.append(Arrival(webhook_id, event, answered, time.monotonic(), error))
            self._changed.notify_all()
        at = time.monotonic() - self._started
        if event is None:
            self._story.say(f"   ↳ {at:5.1f} s  {route.label}: REFUSED a delivery ({error}) -> {answered}")
        else:
            payment = event.payment
            self._story.say(
                f"   ↳ {at:5.1f} s  {route.label}: {event.type:<17} {payment.id} {payment.status:<9} "
                f"KES {payment.amount:>5}  webhook-id {event.id}, verified, try {attempt} -> {answered}"
            )
        return answered

    def wait(
        self, route: Route, done: Callable[[list[Arrival]], bool], timeout_s: float = WEBHOOK_WAIT_TIMEOUT_S
    ) -> list[Arrival]:
        with self._changed:
            self._changed.wait_for(lambda: done(route.arrivals), timeout=timeout_s)
            return list(route.arrivals)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver.receive(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def register_endpoint(
    story: Story,
    receiver: Receiver,
    developer: Developer,
    label: str,
    fail_first: int = 0,
    enabled_events: list[str] | None = None,
) -> Route:
    route = receiver.route(label, developer.name.lower() + ("-failing" if fail_first else ""), fail_first)
    endpoint = developer.gateway.webhook_endpoints.create(
        route.url, enabled_events=enabled_events, description=f"make demo: {label}"
    )
    route.secret, route.endpoint_id = endpoint.secret or "", endpoint.id
    story.check(
        endpoint.status == "enabled" and route.secret.startswith("whsec_") and endpoint.url == route.url,
        f"{label}: {endpoint.id} -> {route.url.removeprefix(receiver.base_url)} "
        f"({', '.join(endpoint.enabled_events)}), {endpoint.status}; its whsec_ secret came back once, kept by the "
        "receiver",
    )
    return route


def check_own_events(story: Story, receiver: Receiver, developer: Developer, route: Route) -> None:
    """The developer's receiver got exactly the created and final event of each of their payments, all verified,
    and the events API lists the same events."""
    expected = {(p.id, "payment.created") for p in developer.payments.values()}
    expected |= {(p.id, f"payment.{p.status}") for p in developer.payments.values()}
    arrivals = receiver.wait(route, lambda got: expected <= event_keys(got))
    listed, _ = developer.gateway.events.list_page(limit=50)
    ids = {a.webhook_id for a in arrivals}
    refused = [a for a in arrivals if a.event is None]
    same = ids == {e.id for e in listed}
    missing = expected - event_keys(arrivals)
    if missing:
        # Tell a slow emulator from a lost delivery: an event with no delivery record was never fanned out.
        overdue = [e for e in listed if (e.data.get("id"), e.type) in missing]
        unsent = [e for e in overdue if not developer.gateway.events.deliveries(e.id)]
        story.note(
            f"{len(missing)} event(s) not received; {len(unsent)} not yet fanned out to any endpoint (the emulator "
            "runs Firestore triggers about one at a time: is something else loading this stack?)"
        )
    story.check(
        event_keys(arrivals) == expected and not refused and same,
        f"{developer.name}'s receiver got {len(expected - missing)} of the {len(expected)} events of their "
        f"{len(developer.payments)} payments (created, then final), in {len(arrivals)} deliveries, "
        f"{len(arrivals) - len(refused)} verified; GET /events lists {'the same ' if same else ''}{len(listed)}",
    )


def check_failing_receiver(story: Story, receiver: Receiver, developer: Developer, route: Route, paid: Payment) -> None:
    arrivals = receiver.wait(route, lambda got: len(got) >= 3)
    first = arrivals[0] if arrivals else None
    same_id = bool(first) and all(a.webhook_id == arrivals[0].webhook_id for a in arrivals)
    event = first.event if first else None
    for number, arrival in enumerate(arrivals, 1):
        story.note(f"try {number}: {arrival.at - arrivals[0].at:4.1f} s after the first, answered {arrival.answered}")
    story.check(
        len(arrivals) == 3
        and same_id
        and all(a.event is not None for a in arrivals)
        and [a.answered for a in arrivals] == [500, 500, 200]
        and event is not None
        and (event.type, event.payment.id) == ("payment.succeeded", paid.id),
        f"the payment.succeeded of {paid.id} came {len(arrivals)} times with one webhook-id "
        f"({first.webhook_id if first else '-'}), each verified; answered "
        f"{', '.join(str(a.answered) for a in arrivals)}; the third try "
        f"{arrivals[-1].at - arrivals[0].at if arrivals else 0:.1f} s after the first",
    )
    if not first:
        return
    # The gateway records the third attempt just after the receiver answers it: read until the log has it.
    deadline = time.monotonic() + 10.0
    while True:
        log = developer.gateway.events.deliveries(first.webhook_id)
        entry = next((d for d in log if d.get("endpoint_id") == route.endpoint_id), {})
        codes = [a.get("status_code") for a in entry.get("attempts") or []]
        if entry.get("status") == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    story.check(
        entry.get("status") == "succeeded" and codes == [500, 500, 200],
        f"the delivery log agrees (GET /events/{first.webhook_id}/deliveries): {entry.get('status')}, "
        f"attempts {', '.join(str(c) for c in codes)}",
    )


def run(story: Story) -> None:
    print("M-Pesa gateway demo: two developers, one gateway, each with their own Daraja app", flush=True)
    print(f"   functions {FUNCTIONS_URL}\n   auth      http://{AUTH_HOST}\n   daraja    {DARAJA_URL}", flush=True)

    with story.step("Amina and Brian sign up (Firebase Auth emulator)"):
        amina = sign_up(story, "Amina")
        brian = sign_up(story, "Brian")
        story.check(amina.uid != brian.uid, "two separate developer accounts")

    with story.step("Each registers a Daraja app and stores its credentials through the SDK"):
        amina_code = str(secrets.randbelow(4_000_000) + 1_000_000)
        brian_code = str(secrets.randbelow(4_000_000) + 5_000_000)
        store_credentials(story, amina, amina_code)
        store_credentials(story, brian, brian_code)

    receiver = Receiver(story)
    with story.step("Each registers a webhook endpoint on a small local receiver; Amina adds one that fails twice"):
        hooks = {dev.name: register_endpoint(story, receiver, dev, dev.name) for dev in (amina, brian)}
        failing = register_endpoint(
            story, receiver, amina, "Amina (fails twice)", fail_first=2, enabled_events=["payment.succeeded"]
        )
        story.note(f"the receiver, {receiver.base_url}, checks every delivery with the Python SDK's verify_webhook")
        story.note("and prints it as it arrives (↳, seconds since it started); the failing one answers 500 twice")

    orders = [
        Push(amina, "paid order", stack_admin.unique_phone(), 150, "succeeded"),
        Push(amina, "cancelled", stack_admin.unique_phone(), 2500, "cancelled"),
        Push(brian, "paid order", stack_admin.unique_phone(), 75, "succeeded"),
        Push(brian, "lost callback", stack_admin.unique_phone(), 990, "succeeded", lost_callback=True),
    ]
    with story.step("STK Push prompts: two each"):
        amina_cancel, brian_lost = orders[1], orders[3]
        stack_admin.set_scenario(amina_cancel.phone, 1032, delay_ms=300)
        story.note(f"simulator: the payer at {mask_phone(amina_cancel.phone)} will press Cancel (ResultCode 1032)")
        stack_admin.set_scenario(brian_lost.phone, 0, delay_ms=300, callbacks=0)
        story.note(f"simulator: the payer at {mask_phone(brian_lost.phone)} pays, but Daraja loses the callback")
        for order in orders:
            push(story, order)

    with story.step("Wait for every payment to settle (payments.wait polls with backoff)"):
        for order in orders:
            settle(story, order)

    with story.step("Each developer lists their own payments"):
        for developer in (amina, brian):
            listed = list(developer.gateway.payments.list(limit=10))
            mine = {p.id for p in developer.payments.values()}
            for payment in listed:
                story.note(f"{payment.id}  {payment.status:<10} KES {payment.amount:>5}  {payment.phone}")
            newest_first = (
                sorted(listed, key=lambda p: p.created_at.timestamp() if p.created_at else 0.0, reverse=True) == listed
            )
            story.check(
                {p.id for p in listed} == mine and newest_first,
                f"{developer.name}'s list holds exactly their {len(mine)} payments, newest first",
            )

    with story.step("Brian cannot see Amina's payment"):
        amina_payment = amina.payments["paid order"]
        try:
            brian.gateway.payments.get(amina_payment.id)
            story.check(False, f"Brian read {amina_payment.id}")
        except NotFoundError as hidden:
            story.check(
                hidden.http_status == 404,
                f"Brian asking for {amina_payment.id}: 404 {hidden.code} (request {hidden.request_id})",
            )
        try:
            assert amina_payment.checkout_request_id is not None
            brian.gateway.payments.get_by_checkout_request_id(amina_payment.checkout_request_id)
            story.check(False, "Brian read Amina's payment by its CheckoutRequestID")
        except NotFoundError:
            story.check(True, "by its CheckoutRequestID too: 404, exactly like a payment that does not exist")
        brian_ids = {p.id for p in brian.gateway.payments.list(limit=100)}
        story.check(amina_payment.id not in brian_ids, "and it is not in Brian's list")

    with story.step("Webhooks: every event reached its own developer's receiver, signed"):
        for developer in (amina, brian):
            check_own_events(story, receiver, developer, hooks[developer.name])
        crossed = [
            arrival
            for developer, other in ((amina, brian), (brian, amina))
            for arrival in hooks[other.name].arrivals + (failing.arrivals if other is amina else [])
            if arrival.event is not None and arrival.event.payment.id in {p.id for p in developer.payments.values()}
        ]
        story.check(not crossed, "none of Amina's events reached Brian's receiver, and none of Brian's reached Amina's")

    with story.step("A receiver that fails twice gets the event on the third try, with the same webhook-id"):
        check_failing_receiver(story, receiver, amina, failing, amina.payments["paid order"])
    receiver.close()

    print("\nSummary", flush=True)
    for order in orders:
        payment = order.developer.payments[order.label]
        print(
            f"   {order.developer.name:<6} {order.label:<14} {payment.phone}  KES {order.amount:>5}  "
            f"{payment.status:<10} settled in {order.settled_after_s:4.1f} s",
            flush=True,
        )
    for title, seconds in story.timings:
        print(f"   {seconds:5.1f} s  {title}", flush=True)

    print(f"\nThe console: {CONSOLE_URL}  (`make demo KEEP=1` leaves the stack running to open it)", flush=True)
    for developer in (amina, brian):
        print(f"   sign in as {developer.name:<6} {developer.email}  password {developer.password}", flush=True)
    print(
        "   the emulator runs no scheduled function: `make schedules` runs reconcile_payments and "
        "sweep_webhook_events against the running stack every 60 s, as Cloud Scheduler would",
        flush=True,
    )


def main() -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    story = Story()
    started = time.monotonic()
    try:
        run(story)
    except (GatewayError, requests.RequestException) as error:
        story.check(False, f"stopped: {type(error).__name__}: {error}")
        if isinstance(error, requests.ConnectionError) or getattr(error, "code", None) == "network_error":
            print("   Is the stack running? Start it with `make dev` (or run `make demo`).", flush=True)
    total = time.monotonic() - started
    verdict = "✔" if not story.failed else "✘"
    print(f"\n{verdict} {story.passed} checks passed, {len(story.failed)} failed, in {total:.1f} s", flush=True)
    for message in story.failed:
        print(f"   ✘ {message}", flush=True)
    return 0 if not story.failed else 1


if __name__ == "__main__":
    sys.exit(main())
