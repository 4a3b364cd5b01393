"""The STK Push ``Timestamp`` and ``Password`` fields, computed the way Daraja checks them."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta, timezone

# Kenya has no daylight saving time, so a fixed offset is exact and needs no tz database in the runtime.
NAIROBI = timezone(timedelta(hours=3), "EAT")

_TIMESTAMP = re.compile(r"[0-9]{14}")
_SHORTCODE = re.compile(r"[0-9]{5,7}")


def nairobi_timestamp(now_utc: datetime) -> str:
    """``YYYYMMDDHHMMSS`` in Nairobi time. Servers run in UTC; sending UTC earns an "Invalid Timestamp"."""
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        # A naive datetime is ambiguous: guessing its zone is exactly the bug this function exists to prevent.
        raise ValueError("now_utc must be timezone-aware")
    return now_utc.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """``base64(shortcode + passkey + timestamp)``; the same timestamp must be sent alongside it."""
    if _SHORTCODE.fullmatch(shortcode) is None:
        raise ValueError("shortcode must be 5 to 7 digits")
    if not passkey:
        raise ValueError("passkey must not be empty")
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise ValueError("timestamp must be 14 digits, YYYYMMDDHHMMSS")
    return base64.b64encode((shortcode + passkey + timestamp).encode("utf-8")).decode("ascii")
