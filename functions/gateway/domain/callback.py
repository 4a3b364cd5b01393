"""Parse what Daraja sends about an STK Push: the asynchronous callback body and the STK Push Query answer.

Both are untrusted input. Shapes that cannot be a Daraja message are rejected; the known quirks of real ones
(numbers as strings and back, ``1.0`` amounts, items without a value, missing metadata on failures) are tolerated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from gateway.domain.errors import ValidationError
from gateway.domain.payment import PaymentOutcome, normalize_result_code
from gateway.domain.phone import normalize_msisdn

MAX_TEXT_LENGTH = 200
_MAX_ITEMS = 50
# Printable ASCII except "/": identifiers are looked up and may become storage keys, where "/" and spaces break paths.
_IDENTIFIER = re.compile(rf"[!-.0-~]{{1,{MAX_TEXT_LENGTH}}}")
_TRANSACTION_DATE = re.compile(r"[0-9]{14}")
_DECIMAL_AMOUNT = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,6}))?")


@dataclass(frozen=True)
class StkCallback:
    """One parsed STK callback. Optional fields are ``None`` when Daraja did not send them (always on failures)."""

    merchant_request_id: str | None
    checkout_request_id: str
    result_code: str
    result_desc: str
    amount: int | None
    mpesa_receipt_number: str | None
    transaction_date: str | None
    phone: str | None
    item_names: tuple[str, ...]

    @property
    def outcome(self) -> PaymentOutcome:
        return PaymentOutcome(
            result_code=self.result_code,
            result_desc=self.result_desc,
            amount=self.amount,
            mpesa_receipt_number=self.mpesa_receipt_number,
            transaction_date=self.transaction_date,
            phone=self.phone,
        )


@dataclass(frozen=True)
class StkQueryOutcome:
    """A parsed STK Push Query answer. It never carries amount, receipt or phone."""

    response_code: str
    response_description: str
    merchant_request_id: str | None
    checkout_request_id: str
    result_code: str
    result_desc: str

    @property
    def outcome(self) -> PaymentOutcome:
        return PaymentOutcome(result_code=self.result_code, result_desc=self.result_desc)


def is_checkout_request_id(value: str) -> bool:
    """Whether `value` can be a CheckoutRequestID at all, by the rule callbacks are held to (short printable ASCII,
    no "/"). A lookup by anything else finds nothing, without asking the database (which refuses, for one, to query
    a value of more than 1,500 bytes)."""
    return _IDENTIFIER.fullmatch(value) is not None


def parse_stk_callback(body: object) -> StkCallback:
    """Parse ``{"Body": {"stkCallback": {...}}}`` or raise ``malformed_callback``."""
    return _CallbackParser("malformed_callback").parse(body)


def parse_query_result(body: object) -> StkQueryOutcome:
    """Parse a 200 STK Push Query answer or raise ``malformed_query_result``.

    Daraja's "still being processed" reply is an error body (``errorCode`` 500.001.1001), not a query answer; the
    HTTP client must recognise it before calling this.
    """
    errors = _CallbackParser("malformed_query_result")
    if not isinstance(body, Mapping):
        raise errors.fail("the query answer must be a JSON object", None)
    return StkQueryOutcome(
        response_code=errors.result_code(body, "ResponseCode"),
        response_description=errors.text(body, "ResponseDescription"),
        merchant_request_id=errors.optional_identifier(body, "MerchantRequestID"),
        checkout_request_id=errors.identifier(body, "CheckoutRequestID"),
        result_code=errors.result_code(body, "ResultCode"),
        result_desc=errors.text(body, "ResultDesc"),
    )


class _CallbackParser:
    """Field readers that all raise the same error code, so both message kinds read fields one way."""

    def __init__(self, code: str) -> None:
        self._code = code

    def fail(self, message: str, param: str | None) -> ValidationError:
        return ValidationError(self._code, message, param)

    def parse(self, body: object) -> StkCallback:
        envelope = self._mapping(body, "body", "the callback must be a JSON object")
        outer = self._mapping(envelope.get("Body"), "Body", "Body must be an object")
        callback = self._mapping(outer.get("stkCallback"), "stkCallback", "Body.stkCallback must be an object")
        items = self._metadata_items(callback.get("CallbackMetadata"))
        return StkCallback(
            merchant_request_id=self.optional_identifier(callback, "MerchantRequestID"),
            checkout_request_id=self.identifier(callback, "CheckoutRequestID"),
            result_code=self.result_code(callback, "ResultCode"),
            result_desc=self.text(callback, "ResultDesc"),
            amount=self._amount(items.get("Amount")),
            mpesa_receipt_number=self._receipt(items.get("MpesaReceiptNumber")),
            transaction_date=self._transaction_date(items.get("TransactionDate")),
            phone=self._phone(items.get("PhoneNumber")),
            item_names=tuple(items),
        )

    def _mapping(self, value: object, param: str, message: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.fail(message, param)
        return cast(Mapping[str, object], value)

    def identifier(self, container: Mapping[str, object], name: str) -> str:
        value = self.optional_identifier(container, name)
        if value is None:
            raise self.fail(f"{name} is required", name)
        return value

    def optional_identifier(self, container: Mapping[str, object], name: str) -> str | None:
        value = container.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or _IDENTIFIER.fullmatch(value.strip()) is None:
            raise self.fail(f"{name} must be a short identifier", name)
        return value.strip()

    def result_code(self, container: Mapping[str, object], name: str) -> str:
        if name not in container:
            raise self.fail(f"{name} is required", name)
        try:
            return normalize_result_code(container[name])
        except ValidationError:
            raise self.fail(f"{name} must be a number or a short string", name) from None

    def text(self, container: Mapping[str, object], name: str) -> str:
        value = container.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a string", name)
        # Descriptions are informational; cutting an unexpectedly long one beats losing the payment result.
        return value.strip()[:MAX_TEXT_LENGTH]

    def _metadata_items(self, metadata: object) -> dict[str, object]:
        """Index metadata items by Name; Daraja's order is not stable and ``Balance`` usually has no Value."""
        if metadata is None:
            return {}
        meta = self._mapping(metadata, "CallbackMetadata", "CallbackMetadata must be an object")
        raw_items = meta.get("Item")
        if raw_items is None:
            return {}
        if not isinstance(raw_items, list) or len(raw_items) > _MAX_ITEMS:
            raise self.fail("CallbackMetadata.Item must be a short list", "CallbackMetadata")
        items: dict[str, object] = {}
        for raw_item in raw_items:
            item = self._mapping(raw_item, "CallbackMetadata", "each CallbackMetadata item must be an object")
            name = item.get("Name")
            if not isinstance(name, str) or not name or len(name) > MAX_TEXT_LENGTH:
                raise self.fail("each CallbackMetadata item needs a Name", "CallbackMetadata")
            if name in items:
                # Two different Amounts cannot both be believed; refuse rather than pick one.
                raise self.fail(f"CallbackMetadata item {name[:40]!r} appears twice", "CallbackMetadata")
            items[name] = item.get("Value")
        return items

    def _amount(self, value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool):
            raise self.fail("Amount must be a number", "Amount")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if math.isfinite(value) and value.is_integer():
                return int(value)
            raise self.fail("Amount must be a whole number", "Amount")
        if isinstance(value, str):
            match = _DECIMAL_AMOUNT.fullmatch(value.strip())
            if match is not None and set(match.group(2) or "0") == {"0"}:
                return int(match.group(1))
        raise self.fail("Amount must be a whole number", "Amount")

    def _receipt(self, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail("MpesaReceiptNumber must be a string", "MpesaReceiptNumber")
        receipt = value.strip()
        if not receipt:
            return None
        if _IDENTIFIER.fullmatch(receipt) is None:
            raise self.fail("MpesaReceiptNumber must be a short identifier", "MpesaReceiptNumber")
        return receipt

    def _transaction_date(self, value: object) -> str | None:
        text = _digits_text(value)
        if text is None or _TRANSACTION_DATE.fullmatch(text) is None:
            # The date is informational; an odd one must not cost the payment its result.
            return None
        return text

    def _phone(self, value: object) -> str | None:
        text = _digits_text(value)
        if text is None:
            return None
        try:
            return normalize_msisdn(text)
        except ValidationError:
            # Masked or hashed numbers have been reported; treat them like an absent PhoneNumber.
            return None


def _digits_text(value: object) -> str | None:
    """A number sent as JSON number or string, as text; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        return value.strip()
    return None
