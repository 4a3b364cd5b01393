"""Daraja sandbox simulator: a local HTTP server that behaves like Safaricom's Daraja M-Pesa Express API.

One job: let the gateway, the SDKs, the demo and the tests exercise OAuth, STK Push, STK Push Query and the
asynchronous result callback locally, deterministically and without the real sandbox. Standard library only.

Run:
    python -m devservers.daraja_simulator --host 127.0.0.1 --port 8089
    options: --token-ttl 3599 (seconds) --callback-delay-ms 300 --max-amount 150000
             --timestamp-skew 300 (seconds) --latency-ms 0 --quiet
In-process (tests): ``with DarajaSimulator(port=0) as sim: sim.url ...``

Preset app (present at start and again after ``DELETE /simulator/state``):
    consumer_key "sandbox-consumer-key", consumer_secret "sandbox-consumer-secret",
    shortcode 174379, passkey bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919.

Default outcome of an STK push, chosen by its Amount (a queued scenario for the phone overrides it):
    1111 -> ResultCode 1     The balance is insufficient for the transaction.
    1001 -> ResultCode 1001  Unable to lock subscriber, a transaction is already in process ...
    1019 -> ResultCode 1019  Transaction has expired
    1025 -> ResultCode 1025  An error occurred while sending a push request
    1031 -> ResultCode 1031  Request cancelled by user
    1032 -> ResultCode 1032  Request cancelled by user
    1037 -> ResultCode 1037  DS timeout user cannot be reached
    2001 -> ResultCode 2001  The initiator information is invalid.
    9999 -> ResultCode 9999  An error occurred while sending a push request
    any other amount (including 1) -> ResultCode 0  The service request is processed successfully.
The payer "answers" --callback-delay-ms after the push: then the callback is POSTed (once, no retry) and
STK Push Query starts returning the result; before that the query says "The transaction is being processed"
and a second push to the same phone gets "Unable to lock subscriber".

STK push validation order (first failure wins): bearer token (404.001.03) -> JSON body -> BusinessShortCode
(5-7 digits and the token's app) -> Timestamp (YYYYMMDDHHMMSS, Nairobi time UTC+3, within the skew) ->
Password (HTTP 500, 500.001.1001 "Wrong credentials") -> TransactionType -> Amount (whole number: a JSON
integer or a digit string; any JSON float such as 1.5 or 1.0 is rejected) -> PartyA -> PartyB -> PhoneNumber
-> CallBackURL -> AccountReference -> TransactionDesc -> one live prompt per phone (HTTP 500, 500.001.1001).
Field errors are HTTP 400, errorCode 400.002.02, errorMessage "Bad Request - Invalid <Field>".
An "app" is identified by its consumer_key: tokens and CheckoutRequestIDs belong to the app that made them.
Secrets and passwords are never logged nor listed.

Faults (fields of a queued scenario, POST /simulator/scenarios; each is used by the next push to that phone only):
    "push_answer": how the push's own HTTP request is answered once the push is accepted. Whatever the answer,
    the payer is prompted, the CheckoutRequestID exists and the callback is scheduled as usual, so a client that
    "saw no answer" must still expect the money to move.
        "normal"            200 at once (default)
        "accept_then_hang"  200, but only after "answer_delay_ms" (0..600000): a shorter client timeout fires
        "accept_then_500"   HTTP 500 {"fault": {"faultstring": "Internal Server Error"}}: no Daraja errorCode
        "reset"             no HTTP answer at all: the connection is reset (SO_LINGER 0) after the request is read
    "query_answer": what STK Push Query says about that push, at any time, instead of the truth:
        "normal" (default), "being_processed" (500 500.001.1001 forever), "wrong_checkout_id" (a 200 answer about
        a fresh CheckoutRequestID), {"ResultCode": code, "ResultDesc"?: text} (a 200 answer with that result).
    "result_code" may be left out: the Amount then picks the outcome as usual.
GET /simulator/pushes is the ledger of prompts (one entry per accepted push: app, shortcode, phone, amount, ids,
faults, outcome, receipt, callbacks sent and their statuses); GET /simulator/requests logs every Daraja call with
the consumer_key that made it. Both filter on any field: ?consumer_key=...&shortcode=...&phone=...
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import re
import secrets
import signal
import socket
import string
import struct
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, ClassVar, Self

ResultCode = int | str
JsonObject = dict[str, Any]

NAIROBI = timezone(timedelta(hours=3), "EAT")
MAX_BODY_BYTES = 1_000_000
MAX_LOG_ENTRIES = 10_000
MAX_SCENARIO_DELAY_MS = 600_000

SUCCESS_DESC = "The service request is processed successfully."
RESULT_DESCRIPTIONS: dict[str, str] = {
    "0": SUCCESS_DESC,
    "1": "The balance is insufficient for the transaction.",
    "1001": "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    "1019": "Transaction has expired",
    "1025": "An error occurred while sending a push request",
    "1031": "Request cancelled by user",
    "1032": "Request cancelled by user",
    "1037": "DS timeout user cannot be reached",
    "2001": "The initiator information is invalid.",
    "9999": "An error occurred while sending a push request",
    "SFC_IC0003": "The operator does not exist",
}
MAGIC_AMOUNTS: dict[int, int] = {
    1111: 1,
    1001: 1001,
    1019: 1019,
    1025: 1025,
    1031: 1031,
    1032: 1032,
    1037: 1037,
    2001: 2001,
    9999: 9999,
}
TRANSACTION_TYPES = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})
ACCEPTED_DESC = "Success. Request accepted for processing"
QUERY_ACCEPTED_DESC = "The service request has been accepted successsfully"  # sic, as Daraja spells it

SHORTCODE_RE = re.compile(r"[0-9]{5,7}")
PHONE_RE = re.compile(r"254[71][0-9]{8}")
TIMESTAMP_RE = re.compile(r"[0-9]{14}")
WHOLE_NUMBER_RE = re.compile(r"[0-9]+")

PUSH_ANSWERS = ("normal", "accept_then_hang", "accept_then_500", "reset")
QUERY_FAULTS = ("being_processed", "wrong_checkout_id")
SCENARIO_FIELDS = frozenset(
    {"phone", "result_code", "result_desc", "delay_ms", "callbacks", "push_answer", "answer_delay_ms", "query_answer"}
)
# The body of an accept_then_500 answer: what an API gateway in front of Daraja says when it fails. It has no
# errorCode on purpose: every definite Daraja refusal carries one, so a client cannot take this for a refusal.
INTERNAL_FAULT_BODY: JsonObject = {"fault": {"faultstring": "Internal Server Error"}}


# ---------------------------------------------------------------------------------------------- errors


class DarajaError(Exception):
    """An error answered in Daraja's shape: {"requestId", "errorCode", "errorMessage"}."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


class AdminError(Exception):
    """An error of the /simulator admin routes, answered as {"error": message}."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


def invalid_field(name: str) -> DarajaError:
    return DarajaError(400, "400.002.02", f"Bad Request - Invalid {name}")


def invalid_token() -> DarajaError:
    return DarajaError(404, "404.001.03", "Invalid Access Token")


def wrong_credentials() -> DarajaError:
    return DarajaError(500, "500.001.1001", "Wrong credentials")


def subscriber_locked() -> DarajaError:
    return DarajaError(500, "500.001.1001", RESULT_DESCRIPTIONS["1001"])


def still_processing() -> DarajaError:
    return DarajaError(500, "500.001.1001", "The transaction is being processed")


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SimulatorConfig:
    token_ttl: float = 3599.0
    callback_delay_ms: int = 300
    max_amount: int = 150_000
    timestamp_skew: float = 300.0
    callback_timeout: float = 10.0
    # Added before every Daraja API answer (OAuth, push, query), errors included: the real sandbox takes 1-3 s,
    # and benchmarks need that to judge the gateway's own overhead in proportion. Admin routes never wait.
    latency_ms: int = 0


@dataclass(frozen=True)
class App:
    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str


PRESET_APP = App(
    consumer_key="sandbox-consumer-key",
    consumer_secret="sandbox-consumer-secret",  # noqa: S106 - the simulator's public, documented test app
    shortcode="174379",
    passkey="bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919",
)


@dataclass
class Token:
    value: str
    consumer_key: str
    expires_at: float  # time.monotonic()


@dataclass(frozen=True)
class QueryOverride:
    """What STK Push Query says about one push instead of the truth: a fault queued with a scenario."""

    kind: str  # "being_processed", "wrong_checkout_id" or "result"
    result_code: ResultCode | None = None  # for "result" only, sent as given
    result_desc: str | None = None

    def as_json(self) -> object:
        """The override as it was queued, for admin answers and logs."""
        if self.kind == "result":
            return {"ResultCode": self.result_code, "ResultDesc": self.result_desc}
        return self.kind


@dataclass(frozen=True)
class Scenario:
    result_code: ResultCode | None = None  # None: the Amount's default outcome
    result_desc: str | None = None
    delay_ms: int | None = None
    callbacks: int = 1
    push_answer: str = "normal"
    answer_delay_ms: int = 0
    query_answer: QueryOverride | None = None


@dataclass(frozen=True)
class PushRequest:
    shortcode: str
    timestamp: str
    transaction_type: str
    amount: int
    party_a: str
    party_b: str
    phone: str
    callback_url: str
    account_reference: str
    transaction_desc: str


@dataclass
class PushProgress:
    """What became of an accepted push since; only SimulatorState changes it, under its lock."""

    http_status: int | None = None  # the status written back to the push request, once written
    callback_statuses: list[int | None] = field(default_factory=list)  # one per attempt; None: no HTTP answer


@dataclass(frozen=True)
class Push:
    checkout_request_id: str
    merchant_request_id: str
    consumer_key: str
    request: PushRequest
    result_code: ResultCode
    result_desc: str
    callbacks: int
    delay_ms: int
    answer_at: float  # time.monotonic() when the payer "answers"
    receipt: str
    transaction_date: int
    prompted_at: str
    push_answer: str = "normal"
    answer_delay_ms: int = 0
    query_answer: QueryOverride | None = None
    progress: PushProgress = field(default_factory=PushProgress, compare=False)

    def answered(self) -> bool:
        return time.monotonic() >= self.answer_at

    def succeeded(self) -> bool:
        return str(self.result_code) == "0"


# ---------------------------------------------------------------------------------------------- time and ids


def nairobi_now() -> datetime:
    return datetime.now(UTC).astimezone(NAIROBI)


def utc_iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def random_digits(count: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(count))


def random_alnum(count: int) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(count))


def new_request_id(sequence: int) -> str:
    """Daraja-style id such as 29115-34620561-1 (used for MerchantRequestID and requestId)."""
    return f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(90_000_000) + 10_000_000}-{sequence}"


def new_checkout_request_id(sequence: int) -> str:
    return f"ws_CO_{nairobi_now():%d%m%Y%H%M%S}{sequence:04d}{random_digits(2)}"


def new_token_value() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(28))


def describe_result(code: ResultCode) -> str:
    return RESULT_DESCRIPTIONS.get(str(code), f"Simulated result {code}")


def default_result_code(amount: int) -> int:
    return MAGIC_AMOUNTS.get(amount, 0)


# ---------------------------------------------------------------------------------------------- validation


def as_text(value: object) -> str | None:
    """Numeric Daraja fields may be JSON integers or strings; booleans and floats are not accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def shortcode_field(body: JsonObject, name: str) -> str:
    text = as_text(body.get(name))
    if text is None or not SHORTCODE_RE.fullmatch(text):
        raise invalid_field(name)
    return text


def phone_field(body: JsonObject, name: str) -> str:
    text = as_text(body.get(name))
    if text is None or not PHONE_RE.fullmatch(text):
        raise invalid_field(name)
    return text


def text_field(body: JsonObject, name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise invalid_field(name)
    return value


def amount_field(body: JsonObject, max_amount: int) -> int:
    text = as_text(body.get("Amount"))
    if text is None or not WHOLE_NUMBER_RE.fullmatch(text):
        raise invalid_field("Amount")
    amount = int(text)
    if not 1 <= amount <= max_amount:
        raise invalid_field("Amount")
    return amount


def timestamp_field(body: JsonObject, skew_seconds: float) -> str:
    text = as_text(body.get("Timestamp"))
    if text is None or not TIMESTAMP_RE.fullmatch(text):
        raise invalid_field("Timestamp")
    try:
        sent_at = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
    except ValueError:
        raise invalid_field("Timestamp") from None
    if abs((nairobi_now() - sent_at).total_seconds()) > skew_seconds:
        raise invalid_field("Timestamp")
    return text


def transaction_type_field(body: JsonObject) -> str:
    value = body.get("TransactionType")
    if value not in TRANSACTION_TYPES:
        raise invalid_field("TransactionType")
    return str(value)


def callback_url_field(body: JsonObject) -> str:
    value = body.get("CallBackURL")
    if not isinstance(value, str) or any(char.isspace() for char in value):
        raise invalid_field("CallBackURL")
    try:
        parts = urllib.parse.urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        raise invalid_field("CallBackURL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise invalid_field("CallBackURL")
    return value


def expected_password(app: App, timestamp: str) -> str:
    return base64.b64encode(f"{app.shortcode}{app.passkey}{timestamp}".encode()).decode()


def check_password(body: JsonObject, app: App, timestamp: str) -> None:
    given = body.get("Password")
    expected = expected_password(app, timestamp)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise wrong_credentials()


def authenticate_merchant(body: JsonObject, app: App, config: SimulatorConfig) -> str:
    """Shared by push and query: BusinessShortCode, Timestamp, Password. Returns the shortcode."""
    shortcode = shortcode_field(body, "BusinessShortCode")
    if shortcode != app.shortcode:
        raise invalid_field("BusinessShortCode")
    timestamp = timestamp_field(body, config.timestamp_skew)
    check_password(body, app, timestamp)
    return shortcode


def validate_push(body: JsonObject, app: App, config: SimulatorConfig) -> PushRequest:
    shortcode = authenticate_merchant(body, app, config)
    return PushRequest(
        shortcode=shortcode,
        timestamp=str(as_text(body.get("Timestamp"))),
        transaction_type=transaction_type_field(body),
        amount=amount_field(body, config.max_amount),
        party_a=phone_field(body, "PartyA"),
        party_b=shortcode_field(body, "PartyB"),
        phone=phone_field(body, "PhoneNumber"),
        callback_url=callback_url_field(body),
        account_reference=text_field(body, "AccountReference", 12),
        transaction_desc=text_field(body, "TransactionDesc", 13),
    )


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, colon, secret = decoded.partition(":")
    return (key, secret) if colon else None


def parse_bearer(header: str | None) -> str | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


# ---------------------------------------------------------------------------------------------- payloads


def accepted_body(push: Push) -> JsonObject:
    return {
        "MerchantRequestID": push.merchant_request_id,
        "CheckoutRequestID": push.checkout_request_id,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED_DESC,
        "CustomerMessage": ACCEPTED_DESC,
    }


def query_result_body(push: Push) -> JsonObject:
    return {
        "ResponseCode": "0",
        "ResponseDescription": QUERY_ACCEPTED_DESC,
        "MerchantRequestID": push.merchant_request_id,
        "CheckoutRequestID": push.checkout_request_id,
        "ResultCode": str(push.result_code),
        "ResultDesc": push.result_desc,
    }


def callback_body(push: Push) -> JsonObject:
    callback: JsonObject = {
        "MerchantRequestID": push.merchant_request_id,
        "CheckoutRequestID": push.checkout_request_id,
        "ResultCode": push.result_code,
        "ResultDesc": push.result_desc,
    }
    if push.succeeded():
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": float(push.request.amount)},
                {"Name": "MpesaReceiptNumber", "Value": push.receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": push.transaction_date},
                {"Name": "PhoneNumber", "Value": int(push.request.phone)},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def push_log_fields(body: JsonObject) -> JsonObject:
    """What the request log keeps of an STK push body: never the Password."""
    return {
        "shortcode": body.get("BusinessShortCode"),
        "phone": body.get("PhoneNumber"),
        "amount": body.get("Amount"),
        "party_a": body.get("PartyA"),
        "party_b": body.get("PartyB"),
        "transaction_type": body.get("TransactionType"),
        "account_reference": body.get("AccountReference"),
        "transaction_desc": body.get("TransactionDesc"),
        "callback_url": body.get("CallBackURL"),
    }


def ledger_entry(push: Push) -> JsonObject:
    """One prompt as a test's ledger needs it: which app asked for what, which faults it took, what the payer did
    and what the callbacks met. Read under the state lock (progress changes)."""
    request = push.request
    return {
        "prompted_at": push.prompted_at,
        "consumer_key": push.consumer_key,
        "shortcode": request.shortcode,
        "phone": request.phone,
        "amount": request.amount,
        "account_reference": request.account_reference,
        "callback_url": request.callback_url,
        "checkout_request_id": push.checkout_request_id,
        "merchant_request_id": push.merchant_request_id,
        "push_answer": push.push_answer,
        "answer_delay_ms": push.answer_delay_ms,
        "push_http_status": push.progress.http_status,
        "query_answer": push.query_answer.as_json() if push.query_answer else None,
        "result_code": push.result_code,
        "result_desc": push.result_desc,
        "mpesa_receipt_number": push.receipt if push.succeeded() else None,
        "delay_ms": push.delay_ms,
        "payer_answered": push.answered(),
        "callbacks_planned": push.callbacks,
        "callbacks_sent": len(push.progress.callback_statuses),
        "callback_statuses": list(push.progress.callback_statuses),
    }


def matches_filters(entry: JsonObject, filters: dict[str, str]) -> bool:
    return all(str(entry.get(name)) == wanted for name, wanted in filters.items())


# ---------------------------------------------------------------------------------------------- callbacks


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_CALLBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def post_json(url: str, payload: JsonObject, timeout: float) -> tuple[int | None, str | None]:
    """POST payload; return (receiver's HTTP status, None) or (None, transport error)."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with _CALLBACK_OPENER.open(request, timeout=timeout) as response:
            response.read()
            return int(response.status), None
    except urllib.error.HTTPError as error:
        error.close()
        return error.code, None
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, str(error)


# ---------------------------------------------------------------------------------------------- state


class SimulatorState:
    """Everything the simulator remembers; every method is safe to call from any thread."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._sequence = 0  # never reset, so ids and receipts stay unique for the life of the process
        self._receipts: set[str] = set()
        self._apps: dict[str, App] = {}
        self._tokens: dict[str, Token] = {}
        self._scenarios: dict[str, deque[Scenario]] = {}
        self._pushes: dict[str, Push] = {}
        self._live_by_phone: dict[str, Push] = {}
        self._requests: deque[JsonObject] = deque(maxlen=MAX_LOG_ENTRIES)
        self._callbacks: deque[JsonObject] = deque(maxlen=MAX_LOG_ENTRIES)
        self._timers: set[threading.Thread] = set()
        self.reset()

    # -- lifecycle

    def reset(self) -> None:
        with self._lock:
            self._cancel_timers()
            self._apps = {PRESET_APP.consumer_key: PRESET_APP}
            self._tokens.clear()
            self._scenarios.clear()
            self._pushes.clear()
            self._live_by_phone.clear()
            self._requests.clear()
            self._callbacks.clear()

    def shutdown(self) -> None:
        with self._lock:
            self._cancel_timers()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            if isinstance(timer, threading.Timer):
                timer.cancel()
        self._timers.clear()

    def next_sequence(self) -> int:
        with self._lock:
            self._sequence += 1
            return self._sequence

    # -- apps and tokens

    def register_app(self, app: App) -> bool:
        """Add or replace the app with this consumer_key; True when one was replaced."""
        with self._lock:
            replaced = app.consumer_key in self._apps
            self._apps[app.consumer_key] = app
            return replaced

    def mint_token(self, consumer_key: str, consumer_secret: str) -> tuple[Token, App]:
        with self._lock:
            app = self._apps.get(consumer_key)
            if app is None or not hmac.compare_digest(app.consumer_secret.encode(), consumer_secret.encode()):
                raise DarajaError(400, "400.008.01", "Invalid Authentication passed")
            token = Token(new_token_value(), consumer_key, time.monotonic() + self.config.token_ttl)
            self._tokens[token.value] = token
            return token, app

    def app_for_token(self, token_value: str | None) -> App:
        with self._lock:
            token = self._tokens.get(token_value or "")
            if token is None or time.monotonic() >= token.expires_at:
                raise invalid_token()
            app = self._apps.get(token.consumer_key)
            if app is None:
                raise invalid_token()
            return app

    def expire_tokens(self) -> int:
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0.0
            return len(self._tokens)

    # -- scenarios and pushes

    def add_scenario(self, phone: str, scenario: Scenario) -> int:
        """Queue the outcome of the next push to phone; returns how many are queued for it."""
        with self._lock:
            queue = self._scenarios.setdefault(phone, deque())
            queue.append(scenario)
            return len(queue)

    def start_push(self, app: App, request: PushRequest) -> Push:
        """Lock the subscriber, take the outcome, remember the push and schedule its callback."""
        with self._lock:
            live = self._live_by_phone.get(request.phone)
            if live is not None and not live.answered():
                raise subscriber_locked()
            push = self._new_push(app, request, self._take_scenario(request.phone))
            self._pushes[push.checkout_request_id] = push
            self._live_by_phone[request.phone] = push
            if push.callbacks > 0:
                self._schedule_callbacks(push)
            return push

    def _take_scenario(self, phone: str) -> Scenario:
        queue = self._scenarios.get(phone)
        return queue.popleft() if queue else Scenario()

    def _new_push(self, app: App, request: PushRequest, scenario: Scenario) -> Push:
        self._sequence += 1
        delay_ms = self.config.callback_delay_ms if scenario.delay_ms is None else scenario.delay_ms
        answered_at = nairobi_now() + timedelta(milliseconds=delay_ms)
        result_code = default_result_code(request.amount) if scenario.result_code is None else scenario.result_code
        return Push(
            checkout_request_id=new_checkout_request_id(self._sequence),
            merchant_request_id=new_request_id(self._sequence),
            consumer_key=app.consumer_key,
            request=request,
            result_code=result_code,
            result_desc=scenario.result_desc or describe_result(result_code),
            callbacks=scenario.callbacks,
            delay_ms=delay_ms,
            answer_at=time.monotonic() + delay_ms / 1000,
            receipt=self._new_receipt(),
            transaction_date=int(answered_at.strftime("%Y%m%d%H%M%S")),
            prompted_at=utc_iso_now(),
            push_answer=scenario.push_answer,
            answer_delay_ms=scenario.answer_delay_ms,
            query_answer=scenario.query_answer,
        )

    def _new_receipt(self) -> str:
        while True:
            receipt = secrets.choice(string.ascii_uppercase) + random_alnum(9)
            if receipt not in self._receipts:
                self._receipts.add(receipt)
                return receipt

    def _schedule_callbacks(self, push: Push) -> None:
        timer = threading.Timer(push.delay_ms / 1000, self._deliver_callbacks, args=(push,))
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _deliver_callbacks(self, push: Push) -> None:
        with self._lock:
            self._timers.discard(threading.current_thread())
        payload = callback_body(push)
        for attempt in range(1, push.callbacks + 1):
            if not self.is_current(push):
                return
            status, error = post_json(push.request.callback_url, payload, self.config.callback_timeout)
            self.record_callback(push, attempt, status, error, payload)

    def is_current(self, push: Push) -> bool:
        """False once a reset forgot the push (its pending callbacks are then dropped)."""
        with self._lock:
            return self._pushes.get(push.checkout_request_id) is push

    def find_push(self, app: App, checkout_request_id: object) -> Push | None:
        if not isinstance(checkout_request_id, str):
            return None
        with self._lock:
            push = self._pushes.get(checkout_request_id)
        if push is None or push.consumer_key != app.consumer_key or push.request.shortcode != app.shortcode:
            return None
        return push

    # -- logs

    def record_request(self, entry: JsonObject) -> None:
        with self._lock:
            self._requests.append(dict(entry))

    def record_callback(
        self, push: Push, attempt: int, status: int | None, error: str | None, payload: JsonObject
    ) -> None:
        entry = {
            "at": utc_iso_now(),
            "url": push.request.callback_url,
            "checkout_request_id": push.checkout_request_id,
            "merchant_request_id": push.merchant_request_id,
            "result_code": push.result_code,
            "attempt": attempt,
            "status": status,
            "error": error,
            "body": payload,
        }
        with self._lock:
            if self._pushes.get(push.checkout_request_id) is push:  # a reset during delivery forgets it
                self._callbacks.append(entry)
                push.progress.callback_statuses.append(status)

    def note_push_answered(self, push: Push, http_status: int) -> None:
        """The push request's HTTP answer was written: the ledger tells a hang still pending from one answered."""
        with self._lock:
            push.progress.http_status = http_status

    def pushes(self, filters: dict[str, str]) -> list[JsonObject]:
        with self._lock:
            entries = [ledger_entry(push) for push in self._pushes.values()]
        return [entry for entry in entries if matches_filters(entry, filters)]

    def requests(self, filters: dict[str, str]) -> list[JsonObject]:
        with self._lock:
            return [dict(entry) for entry in self._requests if matches_filters(entry, filters)]

    def callbacks(self, filters: dict[str, str]) -> list[JsonObject]:
        with self._lock:
            return [dict(entry) for entry in self._callbacks if matches_filters(entry, filters)]


# ---------------------------------------------------------------------------------------------- HTTP


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default listen backlog of 5 resets connections under concurrent load

    def __init__(self, address: tuple[str, int], state: SimulatorState, quiet: bool) -> None:
        super().__init__(address, SimulatorHandler)
        self.state = state
        self.quiet = quiet


class SimulatorHandler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "DarajaSimulator/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls

    DARAJA_PATHS: ClassVar[frozenset[str]] = frozenset(
        {"/oauth/v1/generate", "/mpesa/stkpush/v1/processrequest", "/mpesa/stkpushquery/v1/query"}
    )
    ROUTES: ClassVar[dict[str, dict[str, str]]] = {
        "/oauth/v1/generate": {"GET": "handle_oauth"},
        "/mpesa/stkpush/v1/processrequest": {"POST": "handle_stk_push"},
        "/mpesa/stkpushquery/v1/query": {"POST": "handle_stk_query"},
        "/simulator/apps": {"POST": "handle_register_app"},
        "/simulator/scenarios": {"POST": "handle_add_scenario"},
        "/simulator/requests": {"GET": "handle_list_requests"},
        "/simulator/callbacks": {"GET": "handle_list_callbacks"},
        "/simulator/pushes": {"GET": "handle_list_pushes"},
        "/simulator/state": {"DELETE": "handle_reset"},
        "/simulator/expire-tokens": {"POST": "handle_expire_tokens"},
        "/healthz": {"GET": "handle_health"},
    }
    # How an accepted push's HTTP request is answered, by the scenario's push_answer.
    PUSH_ANSWER_METHODS: ClassVar[dict[str, str]] = {
        "normal": "_answer_push_at_once",
        "accept_then_hang": "_answer_push_late",
        "accept_then_500": "_answer_push_with_500",
        "reset": "_drop_push",
    }

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    @property
    def state(self) -> SimulatorState:
        return self.server.state

    # -- plumbing

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        self.route_path = parts.path
        self.query = {name: values[-1] for name, values in urllib.parse.parse_qs(parts.query).items()}
        self.log_entry: JsonObject = {}
        latency_ms = self.state.config.latency_ms
        if latency_ms > 0 and self.route_path in self.DARAJA_PATHS:
            time.sleep(latency_ms / 1000)
        try:
            self.body = self._read_body()
            self._route()
        except DarajaError as error:
            self._record_failure(error)
            self._send_daraja_error(error)
        except AdminError as error:
            self._send_json(error.http_status, {"error": error.message})
        except Exception:  # noqa: BLE001 - a dev server must answer, not die
            traceback.print_exc(file=sys.stderr)
            self._send_daraja_error(DarajaError(500, "500.000.1000", "Internal Server Error"))

    def _route(self) -> None:
        methods = self.ROUTES.get(self.route_path)
        if methods is None:
            raise AdminError(f"no route {self.route_path}", 404)
        name = methods.get(self.command)
        if name is None:
            raise AdminError(f"method {self.command} not allowed on {self.route_path}", 405)
        getattr(self, name)()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise AdminError("chunked bodies are not supported", 411)
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise AdminError("bad Content-Length", 413)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> JsonObject | None:
        try:
            value = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _daraja_json(self) -> JsonObject:
        body = self._json_body()
        if body is None:
            raise invalid_field("JSON")
        return body

    def _admin_json(self) -> JsonObject:
        body = self._json_body()
        if body is None:
            raise AdminError("body must be a JSON object")
        return body

    def _bearer_app(self) -> App:
        return self.state.app_for_token(parse_bearer(self.headers.get("Authorization")))

    def _start_log(self, kind: str) -> None:
        self.log_entry = {
            "kind": kind,
            "at": utc_iso_now(),
            "consumer_key": None,
            "shortcode": None,
            "phone": None,
            "amount": None,
            "checkout_request_id": None,
            "response_status": None,
            "error_code": None,
        }

    def _record_failure(self, error: DarajaError) -> None:
        if self.log_entry:
            self.log_entry.update(response_status=error.http_status, error_code=error.code)
            self.state.record_request(self.log_entry)

    def _answer_logged(self, status: int, payload: JsonObject) -> None:
        self.log_entry["response_status"] = status
        self.state.record_request(self.log_entry)
        self._send_json(status, payload)

    def _send_daraja_error(self, error: DarajaError) -> None:
        payload = {
            "requestId": new_request_id(self.state.next_sequence()),
            "errorCode": error.code,
            "errorMessage": error.message,
        }
        self._send_json(error.http_status, payload)

    def _send_json(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self.server.quiet:
            path = getattr(self, "route_path", "?")
            sys.stderr.write(f"daraja-simulator {self.command} {path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"daraja-simulator {format % args}\n")

    # -- Daraja API

    def handle_oauth(self) -> None:
        self._start_log("oauth")
        if self.query.get("grant_type") != "client_credentials":
            raise DarajaError(400, "400.008.02", "Invalid grant type passed")
        credentials = parse_basic_auth(self.headers.get("Authorization"))
        if credentials is None:
            raise DarajaError(400, "400.008.01", "Invalid Authentication passed")
        self.log_entry["consumer_key"] = credentials[0]  # the key tried, so a failed mint still names its app
        token, app = self.state.mint_token(*credentials)
        self.log_entry["shortcode"] = app.shortcode
        expires_in = str(int(self.state.config.token_ttl))
        self._answer_logged(200, {"access_token": token.value, "expires_in": expires_in})

    def handle_stk_push(self) -> None:
        self._start_log("stk_push")
        app = self._bearer_app()
        self.log_entry["consumer_key"] = app.consumer_key
        body = self._daraja_json()
        self.log_entry.update(push_log_fields(body))
        request = validate_push(body, app, self.state.config)
        push = self.state.start_push(app, request)  # from here the payer is prompted, whatever the answer
        self.log_entry.update(
            checkout_request_id=push.checkout_request_id,
            merchant_request_id=push.merchant_request_id,
            result_code=push.result_code,
            callbacks=push.callbacks,
            delay_ms=push.delay_ms,
            push_answer=push.push_answer,
            answer_delay_ms=push.answer_delay_ms,
        )
        getattr(self, self.PUSH_ANSWER_METHODS[push.push_answer])(push)

    def handle_stk_query(self) -> None:
        self._start_log("stk_query")
        app = self._bearer_app()
        self.log_entry["consumer_key"] = app.consumer_key
        body = self._daraja_json()
        self.log_entry.update(
            shortcode=body.get("BusinessShortCode"), checkout_request_id=body.get("CheckoutRequestID")
        )
        authenticate_merchant(body, app, self.state.config)
        push = self.state.find_push(app, body.get("CheckoutRequestID"))
        if push is None:
            raise invalid_field("CheckoutRequestID")
        self.log_entry.update(phone=push.request.phone, amount=push.request.amount)
        if push.query_answer is not None:
            self._answer_query_with_fault(push, push.query_answer)
            return
        if not push.answered():
            raise still_processing()
        self.log_entry["result_code"] = push.result_code
        self._answer_logged(200, query_result_body(push))

    # -- faults

    def _log_push_answer(self, http_status: int | None) -> None:
        """Logged when the answer is decided, so a hanging push shows in the log before its answer is sent."""
        self.log_entry["response_status"] = http_status
        self.state.record_request(self.log_entry)

    def _answer_push_at_once(self, push: Push) -> None:
        self._log_push_answer(200)
        self._send_json(200, accepted_body(push))
        self.state.note_push_answered(push, 200)

    def _answer_push_late(self, push: Push) -> None:
        """The push is already live and its callback timer running: only this thread waits."""
        self._log_push_answer(200)
        time.sleep(push.answer_delay_ms / 1000)
        try:
            self._send_json(200, accepted_body(push))
        except OSError:  # the client gave up and closed the connection meanwhile: the expected outcome
            self.close_connection = True
            return
        self.state.note_push_answered(push, 200)

    def _answer_push_with_500(self, push: Push) -> None:
        self._log_push_answer(500)
        self._send_json(500, INTERNAL_FAULT_BODY)
        self.state.note_push_answered(push, 500)

    def _drop_push(self, push: Push) -> None:
        """Reset the connection without a byte of HTTP: SO_LINGER 0 makes close() send RST instead of FIN."""
        self._log_push_answer(None)
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the socket only really closes once no file object refers to it
        self.connection.close()

    def _answer_query_with_fault(self, push: Push, override: QueryOverride) -> None:
        """A queued query_answer wins whether or not the payer has answered: the fault is deterministic."""
        self.log_entry["query_answer"] = override.as_json()
        if override.kind == "being_processed":
            raise still_processing()
        answer = query_result_body(push)
        if override.kind == "wrong_checkout_id":
            answer["CheckoutRequestID"] = new_checkout_request_id(self.state.next_sequence())
            self.log_entry["answered_checkout_request_id"] = answer["CheckoutRequestID"]
        else:
            answer.update(ResultCode=override.result_code, ResultDesc=override.result_desc)
        self.log_entry["result_code"] = answer["ResultCode"]
        self._answer_logged(200, answer)

    # -- admin

    def handle_register_app(self) -> None:
        body = self._admin_json()
        names = ("consumer_key", "consumer_secret", "shortcode", "passkey")
        values = {name: as_text(body.get(name)) for name in names}
        for name, value in values.items():
            if not value:
                raise AdminError(f"{name} is required (a non-empty string)")
        if not SHORTCODE_RE.fullmatch(str(values["shortcode"])):
            raise AdminError("shortcode must be 5-7 digits")
        app = App(**{name: str(value) for name, value in values.items()})
        replaced = self.state.register_app(app)
        answer = {"consumer_key": app.consumer_key, "shortcode": app.shortcode, "replaced": replaced}
        self._send_json(201, answer)

    def handle_add_scenario(self) -> None:
        body = self._admin_json()
        phone = as_text(body.get("phone"))
        if phone is None or not PHONE_RE.fullmatch(phone):
            raise AdminError("phone must look like 2547XXXXXXXX or 2541XXXXXXXX")
        scenario = parse_scenario(body)
        queued = self.state.add_scenario(phone, scenario)
        result_code = scenario.result_code
        self._send_json(
            201,
            {
                "phone": phone,
                "result_code": result_code,
                "result_desc": scenario.result_desc or (None if result_code is None else describe_result(result_code)),
                "delay_ms": scenario.delay_ms,
                "callbacks": scenario.callbacks,
                "push_answer": scenario.push_answer,
                "answer_delay_ms": scenario.answer_delay_ms,
                "query_answer": scenario.query_answer.as_json() if scenario.query_answer else "normal",
                "queued": queued,
            },
        )

    def handle_list_requests(self) -> None:
        self._send_json(200, {"requests": self.state.requests(self.query)})

    def handle_list_callbacks(self) -> None:
        self._send_json(200, {"callbacks": self.state.callbacks(self.query)})

    def handle_list_pushes(self) -> None:
        self._send_json(200, {"pushes": self.state.pushes(self.query)})

    def handle_reset(self) -> None:
        self.state.reset()
        self._send_json(200, {"reset": True})

    def handle_expire_tokens(self) -> None:
        self._send_json(200, {"expired": self.state.expire_tokens()})

    def handle_health(self) -> None:
        self._send_json(200, {"status": "ok"})


def is_int_between(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_result_code(value: object) -> bool:
    """Result codes are sent raw, so an integer or a non-empty string; never a boolean."""
    return not isinstance(value, bool) and isinstance(value, (int, str)) and value != ""


def parse_push_answer(body: JsonObject) -> tuple[str, int]:
    """push_answer and its answer_delay_ms; a delay given to any other answer is refused rather than ignored."""
    answer = body.get("push_answer", "normal")
    if not isinstance(answer, str) or answer not in PUSH_ANSWERS:
        raise AdminError(f"push_answer must be one of {', '.join(PUSH_ANSWERS)}")
    delay_ms = body.get("answer_delay_ms")
    if answer != "accept_then_hang":
        if delay_ms is not None:
            raise AdminError("answer_delay_ms only applies to push_answer accept_then_hang")
        return answer, 0
    if not isinstance(delay_ms, int) or not is_int_between(delay_ms, 0, MAX_SCENARIO_DELAY_MS):
        raise AdminError(f"accept_then_hang needs answer_delay_ms, an integer 0..{MAX_SCENARIO_DELAY_MS}")
    return answer, delay_ms


def parse_query_answer(value: object) -> QueryOverride | None:
    """None means the truth; anything else is the fault STK Push Query answers with for that push."""
    if value is None or value == "normal":
        return None
    if isinstance(value, str) and value in QUERY_FAULTS:
        return QueryOverride(kind=value)
    if isinstance(value, dict) and "ResultCode" in value and set(value) <= {"ResultCode", "ResultDesc"}:
        code, desc = value["ResultCode"], value.get("ResultDesc")
        if is_result_code(code) and (desc is None or isinstance(desc, str)):
            text = describe_result(code) if desc is None else desc
            return QueryOverride(kind="result", result_code=code, result_desc=text)
    raise AdminError(
        'query_answer must be "normal", "being_processed", "wrong_checkout_id" '
        'or {"ResultCode": <int or string>, "ResultDesc": <string, optional>}'
    )


def parse_scenario(body: JsonObject) -> Scenario:
    unknown = sorted(set(body) - SCENARIO_FIELDS)
    if unknown:  # a misspelt fault would otherwise pass silently as "normal"
        raise AdminError(f"unknown scenario field(s): {', '.join(unknown)}")
    result_code = body.get("result_code")
    if result_code is not None and not is_result_code(result_code):
        raise AdminError("result_code must be an integer or a non-empty string (leave it out to let Amount decide)")
    delay_ms = body.get("delay_ms")
    if delay_ms is not None and not is_int_between(delay_ms, 0, MAX_SCENARIO_DELAY_MS):
        raise AdminError(f"delay_ms must be an integer 0..{MAX_SCENARIO_DELAY_MS}")
    callbacks = body.get("callbacks", 1)
    if isinstance(callbacks, bool) or callbacks not in (0, 1, 2):
        raise AdminError("callbacks must be 0 (lost), 1 (normal) or 2 (duplicate)")
    result_desc = body.get("result_desc")
    if result_desc is not None and not isinstance(result_desc, str):
        raise AdminError("result_desc must be a string")
    push_answer, answer_delay_ms = parse_push_answer(body)
    return Scenario(
        result_code=result_code,
        result_desc=result_desc,
        delay_ms=delay_ms,
        callbacks=callbacks,
        push_answer=push_answer,
        answer_delay_ms=answer_delay_ms,
        query_answer=parse_query_answer(body.get("query_answer")),
    )


# ---------------------------------------------------------------------------------------------- running


class DarajaSimulator:
    """The simulator bound to host:port (port 0 picks a free one). Use start()/stop() or a with block."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SimulatorConfig | None = None,
        quiet: bool = False,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.state = SimulatorState(self.config)
        self.server = SimulatorServer((host, port), self.state, quiet)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Serve in a daemon thread and return at once."""
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="daraja-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until shutdown (or KeyboardInterrupt)."""
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.state.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local Safaricom Daraja (STK Push) simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--token-ttl", type=float, default=3599.0, help="access token lifetime, seconds")
    parser.add_argument("--callback-delay-ms", type=int, default=300, help="time until the payer answers")
    parser.add_argument("--max-amount", type=int, default=150_000)
    parser.add_argument("--timestamp-skew", type=float, default=300.0, help="allowed Timestamp drift, seconds")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="wait this long before answering OAuth, push and query"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log one line per request")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SimulatorConfig(
        token_ttl=args.token_ttl,
        callback_delay_ms=max(0, args.callback_delay_ms),
        max_amount=args.max_amount,
        timestamp_skew=args.timestamp_skew,
        latency_ms=max(0, args.latency_ms),
    )
    try:
        simulator = DarajaSimulator(args.host, args.port, config, quiet=args.quiet)
    except OSError as error:
        message = f"daraja simulator cannot listen on {args.host}:{args.port}: {error}"
        print(message, file=sys.stderr, flush=True)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: it starts ignored in background jobs
        signal.signal(signum, _interrupt)
    print(f"daraja simulator listening on {simulator.url}", flush=True)
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
