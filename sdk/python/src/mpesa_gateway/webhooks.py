"""Verify a webhook delivery from mpesa-gateway (Standard Webhooks format) and read its event.

    from mpesa_gateway.webhooks import verify_webhook, WebhookVerificationError

    event = verify_webhook(request_body_bytes, request_headers, "whsec_…")   # raises on a bad or stale delivery
    if event.type == "payment.succeeded": ship(event.payment.id)

The signature is HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{raw body}", keyed with the base64-decoded part
of the secret after `whsec_`, base64-encoded, sent as `v1,<signature>`; during a secret rotation the header carries
several, space-separated, and any one that matches is enough. Verify the raw bytes as received: a body parsed and
re-serialised is not the one that was signed. Deliveries can repeat (retries, replays): deduplicate on `event.id`.
Standard library only; `standardwebhooks` and `svix` verify the same deliveries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpesa_gateway.models import Payment

DEFAULT_TOLERANCE_S = 300
_PREFIX = "whsec_"


class WebhookVerificationError(Exception):
    """The delivery is not authentic, not fresh, or not an event: answer it with a 4xx and do not act on it."""


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


def _header(lowered: Mapping[str, str], name: str) -> str | None:
    # Svix's libraries send svix-*: accept either spelling of the same header.
    return lowered.get(f"webhook-{name}") or lowered.get(f"svix-{name}")


def _key(secret: str) -> bytes:
    encoded = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not a whsec_ secret") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one delivery (useful to test a receiver)."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> WebhookEvent:
    """Check the signature (any of the `v1` ones) and that the timestamp is within `tolerance_s` of now, then
    return the event. Raises WebhookVerificationError otherwise."""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id, stamp, signatures = _header(lowered, "id"), _header(lowered, "timestamp"), _header(lowered, "signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise WebhookVerificationError("invalid webhook-timestamp")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance: a stale or replayed delivery")
    expected = sign(secret, msg_id, int(stamp), raw).split(",", 1)[1]
    offered = [part.split(",", 1)[1] for part in signatures.split(" ") if part.startswith("v1,")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookVerificationError("no signature matches this secret")
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise WebhookVerificationError("the body is not an event")
    return WebhookEvent(
        id=msg_id, type=str(payload.get("type")), timestamp=str(payload.get("timestamp")), data=payload["data"]
    )


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
