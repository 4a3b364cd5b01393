"""What callers see: the payment and the credentials as the API shows them. No full phone number, no token hash,
no internal bookkeeping; times as ISO-8601 UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.domain.api_key import ApiKeyRecord
from gateway.domain.payment import Payment
from gateway.domain.phone import mask_msisdn


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
        "phone": mask_msisdn(payment.msisdn),
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
