"""Kenyan mobile numbers: turn what people type into the 12-digit MSISDN Daraja expects, and mask it for display."""

from __future__ import annotations

import re

from gateway.domain.errors import ValidationError

PHONE_MESSAGE = "phone must be a Kenyan mobile number such as 0712345678 or 254712345678"

# Anything longer is not a phone number however it is punctuated; checking first keeps the regexes cheap.
_MAX_RAW_LENGTH = 32
# Separators people paste from contacts and receipts. \s also covers the no-break spaces of copied text.
_SEPARATORS = re.compile(r"[\s\-.()]")
# [0-9] and not \d or str.isdigit: those accept Arabic-Indic and other digits Daraja would reject.
_LOCAL_WITH_ZERO = re.compile(r"0([17][0-9]{8})")
_LOCAL_WITHOUT_ZERO = re.compile(r"([17][0-9]{8})")
_INTERNATIONAL = re.compile(r"\+?254([17][0-9]{8})")

_MSISDN_LENGTH = 12


def normalize_msisdn(raw: object) -> str:
    """Return ``2547XXXXXXXX`` or ``2541XXXXXXXX`` for any usual way of writing a Kenyan mobile number."""
    if not isinstance(raw, str) or len(raw) > _MAX_RAW_LENGTH:
        raise ValidationError("invalid_phone", PHONE_MESSAGE, "phone")
    compact = _SEPARATORS.sub("", raw)
    for pattern in (_LOCAL_WITH_ZERO, _LOCAL_WITHOUT_ZERO, _INTERNATIONAL):
        match = pattern.fullmatch(compact)
        if match is not None:
            return "254" + match.group(1)
    raise ValidationError("invalid_phone", PHONE_MESSAGE, "phone")


def mask_msisdn(msisdn: str) -> str:
    """Hide the subscriber part: ``2547******49``. Never returns a whole number, whatever the input."""
    if len(msisdn) == _MSISDN_LENGTH:
        return msisdn[:4] + "*" * 6 + msisdn[-2:]
    # Two visible digits of a very short string would be most of it, so those are hidden entirely.
    if len(msisdn) <= 4:
        return "*" * len(msisdn)
    return "*" * (len(msisdn) - 2) + msisdn[-2:]
