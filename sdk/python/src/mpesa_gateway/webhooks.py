"""Verify a webhook delivery from mpesa-gateway (Standard Webhooks format) and read its event.

    from mpesa_gateway.webhooks import verify_webhook, WebhookVerificationError

    try:
        event = verify_webhook(request_body_bytes, request_headers, os.environ["WEBHOOK_SECRET"])
    except WebhookVerificationError:   # not authentic, stale or not an event: answer 400, act on nothing
        return 400
    # A WebhookSecretError (the secret you configured is not a whsec_ secret) is deliberately NOT caught above: it
    # is your configuration, not an attack, so let it fail loudly (a 500: the gateway retries once you fix it).
    if event.type == "payment.succeeded": ship(event.payment.id)

The signature is HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{raw body}", keyed with the base64-decoded part
of the secret after `whsec_`, base64-encoded, sent as `v1,<signature>`; during a secret rotation the header carries
several, space-separated, and any one that matches is enough. Verify the raw bytes as received: a body parsed and
re-serialised is not the one that was signed. Deliveries can repeat (retries, replays): deduplicate on `event.id`.

The JavaScript SDK's verifyWebhook behaves the same way, with the same error codes: both run every case of the
shared test vectors in sdk/webhook-vectors.json, generated with the `standardwebhooks` reference library (that file
also records where, and why, the reference answers differently). Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from mpesa_gateway.models import Payment

DEFAULT_TOLERANCE_S: Final = 300
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_MIN_BYTES: Final = 24  # Standard Webhooks: 24 to 64 random bytes; the gateway issues 32
SECRET_MAX_BYTES: Final = 64
# Unix seconds as a canonical integer (no sign, no leading zero, no fraction): what the gateway sends.
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# A `now` above this is not Unix seconds but milliseconds (Date.now() style), a unit mix-up to refuse loudly.
_MAX_NOW_SECONDS: Final = 100_000_000_000

VerificationCode = Literal[
    "missing_headers",
    "invalid_timestamp",
    "timestamp_too_old",
    "timestamp_too_new",
    "no_matching_signature",
    "invalid_payload",
]


class WebhookVerificationError(Exception):
    """The delivery is not authentic, not fresh, or not an event: answer it with a 4xx and do not act on it.

    `code` says which check failed: missing_headers, invalid_timestamp, timestamp_too_old, timestamp_too_new,
    no_matching_signature or invalid_payload (the same codes as the JavaScript SDK's)."""

    def __init__(self, code: VerificationCode, message: str) -> None:
        super().__init__(message)
        self.code: VerificationCode = code


class WebhookSecretError(ValueError):
    """The secret given to the verifier is not a `whsec_` secret (unset, truncated, pasted without its prefix...).

    A configuration error, never a verdict on the delivery: it is not a WebhookVerificationError, so a receiver
    that answers those with 400 still fails loudly here. `code` is always "invalid_secret"."""

    code: Final = "invalid_secret"


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    timestamp: str
    data: Mapping[str, Any] = field(repr=False)

    @property
    def payment(self) -> Payment:
        """The payment as the API showed it when the event happened (every event type carries one)."""
        return Payment.from_api(self.data)


def secret_key(secret: object) -> bytes:
    """The HMAC key of a `whsec_` secret; WebhookSecretError when it is not one (checked before any delivery)."""
    if not isinstance(secret, str) or not secret:
        raise WebhookSecretError(
            f"the webhook secret must be a whsec_ string, got {type(secret).__name__}"
            + (" (empty)" if secret == "" else "")
            + ": is its environment variable set?"
        )
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError("the webhook secret must start with whsec_: copy it whole from the endpoint")
    encoded = secret[len(SECRET_PREFIX) :]
    stripped = encoded.rstrip("=")
    if (
        not _BASE64.fullmatch(encoded)
        or len(stripped) % 4 == 1
        or (len(encoded) != len(stripped) and len(encoded) % 4 != 0)
    ):
        raise WebhookSecretError(
            "the part of the webhook secret after whsec_ is not base64 (a stray space, quote or newline?)"
        )
    try:
        key = base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):  # the checks above make this unreachable; never let it escape untyped
        raise WebhookSecretError("the part of the webhook secret after whsec_ is not base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise WebhookSecretError(
            f"the webhook secret holds {len(key)} bytes, expected {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES}:"
            " is it truncated?"
        )
    return key


def _raw_body(body: object) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(
        f"verify_webhook needs the raw request body as bytes or str, got {type(body).__name__}: a parsed or"
        " re-serialised body is not the one that was signed"
    )


def _header_value(value: object) -> str | None:
    if isinstance(value, (list, tuple)):  # some frameworks give repeated headers as a list: the first one counts
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    # Whitespace around a value is not part of it (HTTP servers and fetch's Headers drop it too).
    value = value.strip(" \t\r\n") if isinstance(value, str) else None
    return value or None


def _header(lowered: Mapping[str, object], name: str) -> str | None:
    # Svix's libraries send svix-*: accept either spelling of the same header.
    return _header_value(lowered.get(f"webhook-{name}")) or _header_value(lowered.get(f"svix-{name}"))


def _now_seconds(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be a timezone-aware datetime (or Unix seconds)")
        return now.timestamp()
    if isinstance(now, bool) or not isinstance(now, (int, float)) or now != now:
        raise TypeError("now must be Unix seconds (a number) or a timezone-aware datetime")
    if abs(now) >= _MAX_NOW_SECONDS:
        raise ValueError("now must be Unix seconds; this value looks like milliseconds")
    return float(now)


def _signed_content(msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode("utf-8", "surrogatepass") + body


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `v1,<base64>` signature of one delivery (useful to test a receiver)."""
    mac = hmac.new(secret_key(secret), _signed_content(msg_id, timestamp, _raw_body(body)), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, Any],
    secret: str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | datetime | None = None,
) -> WebhookEvent:
    """Check the signature (any of the `v1` ones, compared in constant time) and that the timestamp is within
    `tolerance_s` of `now` (Unix seconds, or an aware datetime; default: the clock), then return the event.

    Raises WebhookVerificationError (with `code`) for a delivery to refuse, WebhookSecretError for a secret that is
    not a whsec_ secret (checked first, whatever the delivery), TypeError for a body that is not bytes or str."""
    key = secret_key(secret)
    raw = _raw_body(body)
    current = _now_seconds(now)
    if not isinstance(headers, Mapping) and not hasattr(headers, "items"):
        raise TypeError("headers must be a mapping of header names to values")
    lowered = {str(name).lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = _header(lowered, "id"), _header(lowered, "timestamp"), _header(lowered, "signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError(
            "missing_headers", "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    if not _TIMESTAMP.fullmatch(stamp):
        raise WebhookVerificationError("invalid_timestamp", "webhook-timestamp is not Unix seconds")
    if int(stamp) < current - tolerance_s:
        raise WebhookVerificationError(
            "timestamp_too_old", "webhook-timestamp is too old: a stale or replayed delivery"
        )
    if int(stamp) > current + tolerance_s:
        raise WebhookVerificationError(
            "timestamp_too_new", "webhook-timestamp is in the future: check the receiver's clock"
        )
    mac = hmac.new(key, _signed_content(msg_id, stamp, raw), hashlib.sha256).digest()
    expected = base64.b64encode(mac)
    matched = False
    for part in signatures.split(" "):
        version, _, candidate = part.partition(",")
        # Compare every candidate, as bytes (compare_digest refuses non-ASCII str), without stopping at a match.
        if version == "v1" and hmac.compare_digest(expected, candidate.encode("utf-8", "replace")):
            matched = True
    if not matched:
        raise WebhookVerificationError("no_matching_signature", "no v1 signature matches this secret")
    return _event(msg_id, raw)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _event(msg_id: str, raw: bytes) -> WebhookEvent:
    try:
        payload = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookVerificationError("invalid_payload", "the body is not UTF-8 JSON") from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("type"), str)
        or not isinstance(payload.get("timestamp"), str)
        or not isinstance(payload.get("data"), dict)
    ):
        raise WebhookVerificationError("invalid_payload", "the body is not an event {type, timestamp, data}")
    return WebhookEvent(id=msg_id, type=payload["type"], timestamp=payload["timestamp"], data=payload["data"])


# ------------------------------------------------------------------------------------------------ management
@dataclass(frozen=True)
class WebhookEndpoint:
    """A receiver of events. `secret` (whsec_…) is set only on what `create` and `rotate_secret` return."""

    id: str
    url: str
    description: str
    enabled_events: tuple[str, ...]
    status: str
    disabled_reason: str | None
    secret: str | None = field(default=None, repr=False, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> WebhookEndpoint:
        events = body.get("enabled_events")
        return cls(
            id=str(body["id"]),
            url=str(body.get("url") or ""),
            description=str(body.get("description") or ""),
            enabled_events=tuple(str(e) for e in events) if isinstance(events, list) else ("*",),
            status=str(body.get("status") or ""),
            disabled_reason=None if body.get("disabled_reason") is None else str(body["disabled_reason"]),
            secret=None if body.get("secret") is None else str(body["secret"]),
            raw=body,
        )


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created_at: str
    data: Mapping[str, Any] = field(repr=False)

    @property
    def payment(self) -> Payment:
        return Payment.from_api(self.data)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Event:
        data = body.get("data")
        return cls(
            str(body["id"]), str(body["type"]), str(body.get("created_at")), data if isinstance(data, dict) else {}
        )


def _path_id(value: object, prefix: str) -> str:
    if not isinstance(value, str) or not value.startswith(prefix) or not value[len(prefix) :].isalnum():
        raise ValueError(f"expected an id starting with {prefix}")
    return value


class WebhookEndpointsResource:
    """`gateway.webhook_endpoints`: register receivers, change them, rotate their secrets."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    def create(
        self, url: str, enabled_events: list[str] | None = None, description: str | None = None
    ) -> WebhookEndpoint:
        body: dict[str, Any] = {"url": url}
        if enabled_events is not None:
            body["enabled_events"] = enabled_events
        if description is not None:
            body["description"] = description
        return WebhookEndpoint.from_api(self._gateway.request("POST", "webhook_endpoints", json_body=body).body)

    def list(self) -> list[WebhookEndpoint]:
        items = self._gateway.request("GET", "webhook_endpoints").body.get("data")
        return [WebhookEndpoint.from_api(item) for item in items] if isinstance(items, list) else []

    def get(self, id: str) -> WebhookEndpoint:  # noqa: A002 - the API's parameter name
        path = f"webhook_endpoints/{_path_id(id, 'we_')}"
        return WebhookEndpoint.from_api(self._gateway.request("GET", path).body)

    def update(self, id: str, **changes: Any) -> WebhookEndpoint:  # noqa: A002 - the API's parameter name
        """Change `url`, `enabled_events`, `description` or `status` ("enabled" / "disabled")."""
        path = f"webhook_endpoints/{_path_id(id, 'we_')}"
        return WebhookEndpoint.from_api(self._gateway.request("PATCH", path, json_body=changes).body)

    def delete(self, id: str) -> bool:  # noqa: A002 - the API's parameter name
        path = f"webhook_endpoints/{_path_id(id, 'we_')}"
        return bool(self._gateway.request("DELETE", path).body.get("deleted"))

    def rotate_secret(self, id: str) -> WebhookEndpoint:  # noqa: A002 - the API's parameter name
        """A new secret (on the returned endpoint); for 24 hours deliveries are signed with both."""
        path = f"webhook_endpoints/{_path_id(id, 'we_')}/rotate_secret"
        return WebhookEndpoint.from_api(self._gateway.request("POST", path).body)


class EventsResource:
    """`gateway.events`: what happened to your payments, newest first, and replays."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    def list_page(
        self,
        type: str | None = None,  # noqa: A002 - the API's parameter name
        limit: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Event], str | None]:
        """One page of events and the token of the next page (None at the end)."""
        params = {"type": type, "limit": limit, "page_token": page_token}
        body = self._gateway.request("GET", "events", params=params).body
        items = body.get("data")
        events = [Event.from_api(item) for item in items] if isinstance(items, list) else []
        token = body.get("next_page_token")
        return events, token if isinstance(token, str) else None

    def get(self, id: str) -> Event:  # noqa: A002 - the API's parameter name
        return Event.from_api(self._gateway.request("GET", f"events/{_path_id(id, 'evt_')}").body)

    def deliveries(self, id: str) -> list[Mapping[str, Any]]:  # noqa: A002 - the API's parameter name
        """The delivery log: per endpoint, its status and every attempt."""
        items = self._gateway.request("GET", f"events/{_path_id(id, 'evt_')}/deliveries").body.get("data")
        return list(items) if isinstance(items, list) else []

    def redeliver(self, id: str, endpoint_id: str | None = None) -> list[str]:  # noqa: A002
        """Send the event again (to one endpoint, or every enabled one subscribed); returns the endpoint ids."""
        body = {} if endpoint_id is None else {"endpoint_id": _path_id(endpoint_id, "we_")}
        answer = self._gateway.request("POST", f"events/{_path_id(id, 'evt_')}/redeliver", json_body=body).body
        ids = answer.get("endpoint_ids")
        return [str(i) for i in ids] if isinstance(ids, list) else []
