"""Validate the JSON bodies developers send to the gateway: an STK Push request and Daraja credentials.

Each rule here exists because Daraja fails late or silently when it is broken (a long AccountReference is accepted
with no prompt sent; ``&`` in TransactionDesc fails quietly), so the gateway refuses it up front with a clear error
that names the parameter.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, cast

from gateway.domain.amount import parse_amount
from gateway.domain.errors import ValidationError
from gateway.domain.phone import normalize_msisdn

MetadataValue = str | int | float | bool | None

MAX_METADATA_KEYS: Final = 20
MAX_METADATA_KEY_LENGTH: Final = 40
MAX_METADATA_STRING_LENGTH: Final = 200
MAX_METADATA_BYTES: Final = 2048
# Beyond 2**53 JavaScript clients silently round integers, and Firestore refuses anything beyond 64 bits.
MAX_METADATA_INT: Final = 2**53 - 1

_ACCOUNT_REFERENCE = re.compile(r"[A-Za-z0-9 ._/-]{1,12}")
_DESCRIPTION = re.compile(r"[A-Za-z0-9 ._,-]{1,13}")
# Starts with a letter or digit: Firestore reserves field names like __x__, and would refuse the payment after the
# payer was already prompted.
_METADATA_KEY = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_METADATA_KEY_LENGTH - 1}}}")
_SHORTCODE = re.compile(r"[0-9]{5,7}")
_CONSUMER_CREDENTIAL = re.compile(r"[!-~]{8,200}")
_PASSKEY = re.compile(r"[!-~]{16,200}")
# An unknown parameter's name is echoed back in the error; a megabyte-long key must not be.
_MAX_ECHOED_NAME = 64

_ACCOUNT_REFERENCE_MESSAGE = "account_reference must be 1 to 12 characters: letters, digits, spaces and - _ . /"
_DESCRIPTION_MESSAGE = "description must be 1 to 13 characters: letters, digits, spaces and - _ . , (no @ # &)"
_METADATA_VALUE_MESSAGE = (
    "metadata values must be strings (at most 200 characters), finite numbers, booleans or null; "
    "nested objects and lists are not allowed"
)


@dataclass(frozen=True)
class StkPushRequest:
    """A validated, normalized STK Push request. ``phone`` is the 12-digit MSISDN."""

    phone: str
    amount: int
    account_reference: str
    description: str
    # Left out of the hash so the frozen request stays hashable; equality still compares it.
    metadata: dict[str, MetadataValue] = field(default_factory=dict, hash=False)
    # The credential set to push with; None: the API key's, else the only one, else sandbox.
    environment: str | None = None


_STK_PUSH_FIELDS: Final = ("phone", "amount", "account_reference", "description", "metadata", "environment")


def parse_stk_push_request(body: object, max_amount: int) -> StkPushRequest:
    """Validate ``{phone, amount, account_reference, description, metadata?}`` or raise the first problem found."""
    fields = _object_with_known_fields(body, _STK_PUSH_FIELDS)
    phone = normalize_msisdn(_required(fields, "phone"))
    amount = parse_amount(_required(fields, "amount"), max_amount)
    account_reference = _matching_text(
        _required(fields, "account_reference"),
        _ACCOUNT_REFERENCE,
        "invalid_account_reference",
        _ACCOUNT_REFERENCE_MESSAGE,
        "account_reference",
    )
    description = _matching_text(
        _required(fields, "description"), _DESCRIPTION, "invalid_description", _DESCRIPTION_MESSAGE, "description"
    )
    metadata = _parse_metadata(fields.get("metadata"))
    environment = parse_environment(fields.get("environment"))
    return StkPushRequest(phone, amount, account_reference, description, metadata, environment)


def parse_environment(value: object) -> str | None:
    """An optional ``environment`` (body field or query parameter): "sandbox", "production", or absent."""
    if value is None or value == "":
        return None
    if value not in ENVIRONMENTS:
        raise ValidationError("invalid_environment", 'environment must be "sandbox" or "production"', "environment")
    return str(value)


def canonical_fingerprint(request: StkPushRequest) -> str:
    """SHA-256 hex of the normalized request, so "0712 345 678" and "254712345678" replay the same idempotency key."""
    canonical = {
        "phone": request.phone,
        "amount": request.amount,
        "account_reference": request.account_reference,
        "description": request.description,
        "metadata": request.metadata,
    }
    if request.environment is not None:
        # Only when given, so the fingerprints of requests that name no environment stay what they were.
        canonical["environment"] = request.environment
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parse_metadata(raw: object) -> dict[str, MetadataValue]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationError("invalid_metadata", "metadata must be a flat JSON object", "metadata")
    if len(raw) > MAX_METADATA_KEYS:
        raise ValidationError("invalid_metadata", f"metadata may have at most {MAX_METADATA_KEYS} keys", "metadata")
    metadata: dict[str, MetadataValue] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or _METADATA_KEY.fullmatch(key) is None:
            raise ValidationError(
                "invalid_metadata",
                f"metadata keys must be 1 to {MAX_METADATA_KEY_LENGTH} characters: letters, digits and _ . -, "
                "starting with a letter or digit",
                "metadata",
            )
        if not _is_metadata_value(value):
            raise ValidationError("invalid_metadata", f"metadata[{key}]: {_METADATA_VALUE_MESSAGE}", "metadata")
        metadata[key] = cast(MetadataValue, value)
    serialized = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(serialized.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("invalid_metadata", "metadata values must be valid unicode text", "metadata") from None
    if size > MAX_METADATA_BYTES:
        raise ValidationError(
            "invalid_metadata", f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON", "metadata"
        )
    return metadata


def _is_metadata_value(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -MAX_METADATA_INT <= value <= MAX_METADATA_INT
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_METADATA_STRING_LENGTH
    return False


Environment = Literal["sandbox", "production"]
TransactionType = Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"]

ENVIRONMENTS: Final[tuple[Environment, ...]] = ("sandbox", "production")
PAYBILL: Final = "CustomerPayBillOnline"
BUY_GOODS: Final = "CustomerBuyGoodsOnline"
TRANSACTION_TYPES: Final[tuple[TransactionType, ...]] = (PAYBILL, BUY_GOODS)


@dataclass(frozen=True)
class CredentialsRequest:
    """A developer's validated Daraja credentials. The key, secret and passkey never appear in ``repr``."""

    environment: Environment
    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    shortcode: str
    passkey: str = field(repr=False)
    transaction_type: TransactionType
    # The account Daraja credits: the paybill itself, or the till number when shortcode is a buy-goods store.
    party_b: str


_CREDENTIAL_FIELDS: Final = (
    "environment",
    "consumer_key",
    "consumer_secret",
    "shortcode",
    "passkey",
    "transaction_type",
    "party_b",
)


def parse_credentials_request(body: object) -> CredentialsRequest:
    """Validate a ``PUT developer_credentials`` body. Error messages never echo the submitted values."""
    fields = _object_with_known_fields(body, _CREDENTIAL_FIELDS)

    environment = _required(fields, "environment")
    if environment not in ENVIRONMENTS:
        raise ValidationError("invalid_environment", 'environment must be "sandbox" or "production"', "environment")

    # Values copied from the Daraja portal often carry a trailing newline or space; keys never contain spaces.
    consumer_key = _credential(fields, "consumer_key", _CONSUMER_CREDENTIAL, "8 to 200")
    consumer_secret = _credential(fields, "consumer_secret", _CONSUMER_CREDENTIAL, "8 to 200")
    shortcode = _digits_code(_required(fields, "shortcode"), "shortcode", "174379")
    passkey = _credential(fields, "passkey", _PASSKEY, "16 to 200")

    transaction_type = _required(fields, "transaction_type")
    if transaction_type not in TRANSACTION_TYPES:
        raise ValidationError(
            "invalid_transaction_type",
            f'transaction_type must be "{PAYBILL}" or "{BUY_GOODS}"',
            "transaction_type",
        )

    raw_party_b = fields.get("party_b")
    if raw_party_b is not None:
        party_b = _digits_code(raw_party_b, "party_b", "174379")
    elif transaction_type == BUY_GOODS:
        # A till's money goes to the till number, not the store number used as shortcode; mixing them up is the
        # SFC_IC0003 failure, so the gateway cannot guess it.
        raise ValidationError("missing_parameter", f"party_b (the till number) is required for {BUY_GOODS}", "party_b")
    else:
        party_b = shortcode

    return CredentialsRequest(
        environment=environment,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        shortcode=shortcode,
        passkey=passkey,
        transaction_type=transaction_type,
        party_b=party_b,
    )


def key_hint(consumer_key: str) -> str:
    """Enough of a consumer key to recognise it (``abcd...wxyz``), never enough to use it."""
    if len(consumer_key) >= 12:
        return f"{consumer_key[:4]}...{consumer_key[-4:]}"
    if len(consumer_key) > 4:
        return f"...{consumer_key[-2:]}"
    return "..."


def _object_with_known_fields(body: object, allowed: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(body, Mapping):
        raise ValidationError("invalid_body", "the request body must be a JSON object", None)
    for name in body:
        if name not in allowed:
            shown = str(name)[:_MAX_ECHOED_NAME]
            raise ValidationError(
                "unknown_parameter", f"unknown parameter {shown!r}; allowed: {', '.join(allowed)}", shown
            )
    return cast(Mapping[str, object], body)


def _required(fields: Mapping[str, object], name: str) -> object:
    if name not in fields:
        raise ValidationError("missing_parameter", f"{name} is required", name)
    return fields[name]


def _matching_text(raw: object, pattern: re.Pattern[str], code: str, message: str, param: str) -> str:
    if not isinstance(raw, str):
        raise ValidationError(code, message, param)
    text = raw.strip()
    if pattern.fullmatch(text) is None:
        raise ValidationError(code, message, param)
    return text


def _credential(fields: Mapping[str, object], name: str, pattern: re.Pattern[str], length: str) -> str:
    return _matching_text(
        _required(fields, name),
        pattern,
        f"invalid_{name}",
        f"{name} must be {length} printable ASCII characters without spaces",
        name,
    )


def _digits_code(raw: object, name: str, example: str) -> str:
    return _matching_text(
        raw, _SHORTCODE, f"invalid_{name}", f'{name} must be a string of 5 to 7 digits, such as "{example}"', name
    )
