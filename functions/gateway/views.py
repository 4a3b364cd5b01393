"""What callers see: the payment and the credentials as the API shows them. No full phone number, no token hash,
no internal bookkeeping; times as ISO-8601 UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.domain.api_key import ApiKeyRecord
from gateway.domain.payment import Payment
from gateway.domain.webhooks import Delivery as WebhookDelivery
from gateway.domain.webhooks import WebhookEndpoint


def iso(value: Any) -> Any:
    if isinstance(value, datetime):
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return value


def payment_view(payment: Payment) -> dict[str, Any]:
    return {
        "object": "payment",
        "id": payment.id,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
        "phone": payment.phone,
        "account_reference": payment.account_reference,
        "description": payment.description,
        "metadata": dict(payment.metadata),
        "environment": payment.environment,
        "shortcode": payment.shortcode,
        "checkout_request_id": payment.checkout_request_id,
        "merchant_request_id": payment.merchant_request_id,
        "result_code": payment.result_code,
        "result_desc": payment.result_desc,
        "mpesa_receipt_number": payment.mpesa_receipt_number,
        "transaction_date": payment.transaction_date,
        "flags": list(payment.flags),
        "created_at": iso(payment.created_at),
        "updated_at": iso(payment.updated_at),
        "settled_at": iso(payment.settled_at),
    }


def credentials_view(setup: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "developer_credentials",
        "environment": setup.get("environment"),
        "shortcode": setup.get("shortcode"),
        "transaction_type": setup.get("transaction_type"),
        "party_b": setup.get("party_b"),
        "consumer_key_hint": setup.get("consumer_key_hint"),
        "verified_at": iso(setup.get("verified_at")),
        "updated_at": iso(setup.get("updated_at")),
    }


def credentials_list_view(setups: list[dict[str, Any]]) -> dict[str, Any]:
    """Every configured environment's set-up (sandbox first); an empty list when none is."""
    return {"object": "list", "data": [credentials_view(setup) for setup in setups]}


def api_key_view(record: ApiKeyRecord, key: str | None = None) -> dict[str, Any]:
    """A key as its owner sees it. The full `key` only in the answer that created it."""
    view: dict[str, Any] = {
        "object": "api_key",
        "id": record.key_id,
        "name": record.name,
        "environment": record.environment,
        "hint": record.hint,
        "created_at": iso(record.created_at),
        "last_used_at": iso(record.last_used_at),
        "revoked_at": iso(record.revoked_at),
    }
    if key is not None:
        view["key"] = key
    return view


def webhook_endpoint_view(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    """The secret appears only in the answers that create it (creation and rotation)."""
    view: dict[str, Any] = {
        "object": "webhook_endpoint",
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled_events": list(endpoint.enabled_events),
        "status": endpoint.status,
        "environment": endpoint.environment,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }
    if secret is not None:
        view["secret"] = secret
    return view


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "event",
        "id": event["id"],
        "type": event["type"],
        "created_at": iso(event["created_at"]),
        "data": dict(event.get("data") or {}),
    }


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "object": "webhook_delivery",
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "status": delivery.status,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "attempts": [
            {
                "object": "delivery_attempt",
                "endpoint_id": attempt.endpoint_id,
                "url": attempt.url,
                "attempted_at": iso(attempt.at),
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "response_excerpt": attempt.response_excerpt,
                "error": attempt.error,
                "trigger": attempt.trigger,
            }
            for attempt in delivery.attempts
        ],
    }
