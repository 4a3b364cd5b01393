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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = {key.lower(): value for key, value in headers.items()}
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
    msg_id, stamp, signatures = _header(headers, "id"), _header(headers, "timestamp"), _header(headers, "signature")
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
