"""Payment amounts: whole Kenya shillings between 1 and the configured cap, as Daraja accepts them."""

from __future__ import annotations

import math

from gateway.domain.errors import ValidationError

_WHOLE_MESSAGE = "amount must be a whole number of shillings, such as 10"


def parse_amount(raw: object, max_amount: int) -> int:
    """Return the amount as an int, or raise ``invalid_amount``.

    Accepts an int or an integral float (JSON clients may send ``10.0``). Rejects strings so the API has one clear
    shape, and bools because ``True`` is an int in Python but never a deliberate amount.
    """
    if max_amount < 1:
        raise ValueError("max_amount must be at least 1")
    if isinstance(raw, bool):
        raise ValidationError("invalid_amount", _WHOLE_MESSAGE, "amount")
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValidationError("invalid_amount", _WHOLE_MESSAGE, "amount")
        if not raw.is_integer():
            # Daraja answers "Invalid Amount" to decimals; say so before a prompt is ever attempted.
            raise ValidationError("invalid_amount", "amount must be a whole number of shillings", "amount")
        raw = int(raw)
    if not isinstance(raw, int):
        raise ValidationError("invalid_amount", _WHOLE_MESSAGE, "amount")
    if raw < 1:
        raise ValidationError("invalid_amount", "amount must be at least 1", "amount")
    if raw > max_amount:
        raise ValidationError("invalid_amount", f"amount must be at most {max_amount}", "amount")
    return raw
