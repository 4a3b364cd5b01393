"""What the gateway answers, as frozen dataclasses. Each keeps the API's own object in `raw`.

Field names are the API's (snake_case already). Times become timezone-aware UTC datetimes; `result_code` is Daraja's
code as text ("0" means paid); `phone` is always masked by the gateway (2547******49).

A payment's life: `pending`, then one terminal status: `succeeded`, `failed`, `cancelled`, `timed_out`, or
`unconfirmed` (Daraja's answer to the push never came and no callback arrived within the confirmation window). The one
exception to "terminal never changes": a late success callback still turns `unconfirmed` into `succeeded` (flag
`success_after_terminal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, cast

PaymentStatus = Literal["pending", "succeeded", "failed", "cancelled", "timed_out", "unconfirmed"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out", "unconfirmed"})

# The flags the gateway sets on a payment (Payment.flags may also hold flags newer than this SDK).
PaymentFlag = Literal[
    "amount_mismatch",
    "phone_mismatch",
    "missing_amount",
    "missing_receipt",
    "settled_by_query",
    "success_after_terminal",
    "outcome_unknown",
    "checkout_request_mismatch",
]
FLAG_OUTCOME_UNKNOWN: PaymentFlag = "outcome_unknown"
FLAG_SUCCESS_AFTER_TERMINAL: PaymentFlag = "success_after_terminal"


@dataclass(frozen=True)
class Payment:
    """One payment. `checkout_request_id` and `merchant_request_id` are None until Daraja's answer (or the callback)
    is recorded: always so for a push whose outcome is unknown (`outcome_unknown`)."""

    id: str
    status: PaymentStatus
    amount: int
    currency: str
    phone: str
    account_reference: str
    description: str
    metadata: Mapping[str, Any] = field(hash=False)
    environment: str
    shortcode: str
    checkout_request_id: str | None
    merchant_request_id: str | None
    result_code: str | None
    result_desc: str | None
    mpesa_receipt_number: str | None
    transaction_date: str | None
    flags: tuple[str, ...]
    created_at: datetime | None
    updated_at: datetime | None
    settled_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def is_settled(self) -> bool:
        """True once the status is terminal (what `payments.wait` waits for). It never changes after that, except
        that a late success callback can still turn `unconfirmed` into `succeeded`."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def unconfirmed(self) -> bool:
        """The push's outcome never became known and no callback came in time. Look at it again later (or
        reconcile it with the payer): money that does arrive turns it into `succeeded`."""
        return self.status == "unconfirmed"

    @property
    def outcome_unknown(self) -> bool:
        """Daraja's answer to the push never came (the gateway answered 202): the payer may have been prompted.
        Treat the payment as created and wait for it; never push it again with a new Idempotency-Key."""
        return FLAG_OUTCOME_UNKNOWN in self.flags

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Payment:
        metadata = body.get("metadata")
        flags = body.get("flags")
        return cls(
            id=str(body["id"]),
            status=cast(PaymentStatus, str(body["status"])),
            amount=int(body["amount"]),
            currency=str(body.get("currency") or "KES"),
            phone=str(body.get("phone") or ""),
            account_reference=str(body.get("account_reference") or ""),
            description=str(body.get("description") or ""),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
            environment=str(body.get("environment") or ""),
            shortcode=str(body.get("shortcode") or ""),
            checkout_request_id=_optional_text(body.get("checkout_request_id")),
            merchant_request_id=_optional_text(body.get("merchant_request_id")),
            result_code=_optional_text(body.get("result_code")),
            result_desc=_optional_text(body.get("result_desc")),
            mpesa_receipt_number=_optional_text(body.get("mpesa_receipt_number")),
            transaction_date=_optional_text(body.get("transaction_date")),
            flags=tuple(str(flag) for flag in flags) if isinstance(flags, list) else (),
            created_at=parse_time(body.get("created_at")),
            updated_at=parse_time(body.get("updated_at")),
            settled_at=parse_time(body.get("settled_at")),
            raw=body,
        )


@dataclass(frozen=True)
class Credentials:
    """The masked view of a developer's Daraja credentials: never the secret, the passkey or the whole key."""

    environment: str
    shortcode: str
    transaction_type: str
    party_b: str | None
    consumer_key_hint: str | None
    verified_at: datetime | None
    updated_at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Credentials:
        return cls(
            environment=str(body.get("environment") or ""),
            shortcode=str(body.get("shortcode") or ""),
            transaction_type=str(body.get("transaction_type") or ""),
            party_b=_optional_text(body.get("party_b")),
            consumer_key_hint=_optional_text(body.get("consumer_key_hint")),
            verified_at=parse_time(body.get("verified_at")),
            updated_at=parse_time(body.get("updated_at")),
            raw=body,
        )


@dataclass(frozen=True)
class Page:
    """One page of payments, newest first. Pass `next_page_token` to list_page() for the next one."""

    data: tuple[Payment, ...]
    has_more: bool
    next_page_token: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, hash=False)

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> Page:
        items = body.get("data")
        return cls(
            data=tuple(Payment.from_api(item) for item in items) if isinstance(items, list) else (),
            has_more=bool(body.get("has_more")),
            next_page_token=_optional_text(body.get("next_page_token")),
            raw=body,
        )


@dataclass(frozen=True)
class ApiKey:
    """A secret API key's record. `key`, the secret itself, is set only on the object `api_keys.create` returns:
    the gateway shows it once. Store it in your server's secret store; it never appears in a repr."""

    id: str
    name: str
    environment: str
    hint: str
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    key: str | None = field(default=None, repr=False, compare=False, hash=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> ApiKey:
        return cls(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            environment=str(body.get("environment") or ""),
            hint=str(body.get("hint") or ""),
            created_at=parse_time(body.get("created_at")),
            last_used_at=parse_time(body.get("last_used_at")),
            revoked_at=parse_time(body.get("revoked_at")),
            key=_optional_text(body.get("key")),
            raw=body,
        )


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time from the API ("2026-11-29T06:00:00.123Z") as an aware UTC datetime; None if absent/odd."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
