"""STK Push Timestamp (Nairobi time) and Password."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.domain.daraja_password import nairobi_timestamp, stk_password

SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 29, 21, 30, 0, tzinfo=UTC), "20261130003000"),
        (datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), "20260101030000"),
        (datetime(2025, 12, 31, 21, 0, 0, tzinfo=UTC), "20260101000000"),
        (datetime(2025, 12, 31, 20, 59, 59, tzinfo=UTC), "20251231235959"),
        (datetime(2028, 2, 28, 22, 15, 7, tzinfo=UTC), "20280229011507"),
        (datetime(2026, 6, 15, 9, 5, 3, 999_999, tzinfo=UTC), "20260615120503"),
        # Already in Nairobi time, or in some other zone: the instant is what counts.
        (datetime(2026, 11, 30, 0, 30, 0, tzinfo=timezone(timedelta(hours=3))), "20261130003000"),
        (datetime(2026, 11, 29, 16, 30, 0, tzinfo=timezone(timedelta(hours=-5))), "20261130003000"),
    ],
)
def test_timestamp_is_nairobi_time(now: datetime, expected: str) -> None:
    assert nairobi_timestamp(now) == expected


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        nairobi_timestamp(datetime(2026, 11, 29, 21, 30, 0))


# (Timestamp, Password) pairs for the public sandbox app, as published in Daraja examples over the years.
PUBLISHED_SANDBOX_PASSWORDS = [
    (
        "20160216165627",
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3",
    ),
    (
        "20180702142900",
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTgwNzAyMTQyOTAw",
    ),
    (
        "20190617165300",
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTkwNjE3MTY1MzAw",
    ),
    (
        "20210427075536",
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjEwNDI3MDc1NTM2",
    ),
    (
        "20240730211231",
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMjQwNzMwMjExMjMx",
    ),
]


@pytest.mark.parametrize(("timestamp", "password"), PUBLISHED_SANDBOX_PASSWORDS)
def test_password_matches_published_sandbox_values(timestamp: str, password: str) -> None:
    assert stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, timestamp) == password


def test_password_is_base64_of_shortcode_passkey_timestamp() -> None:
    password = stk_password("600000", "passkey-0123456789", "20261130003000")
    assert base64.b64decode(password) == b"600000passkey-012345678920261130003000"


def test_password_for_the_timestamp_of_a_given_instant() -> None:
    timestamp = nairobi_timestamp(datetime(2026, 11, 29, 21, 30, 0, tzinfo=UTC))
    password = stk_password(SANDBOX_SHORTCODE, SANDBOX_PASSKEY, timestamp)
    assert base64.b64decode(password).decode() == f"{SANDBOX_SHORTCODE}{SANDBOX_PASSKEY}20261130003000"


@pytest.mark.parametrize(
    ("shortcode", "passkey", "timestamp", "problem"),
    [
        ("1743", SANDBOX_PASSKEY, "20261130003000", "shortcode"),
        ("17437900", SANDBOX_PASSKEY, "20261130003000", "shortcode"),
        ("17437a", SANDBOX_PASSKEY, "20261130003000", "shortcode"),
        ("", SANDBOX_PASSKEY, "20261130003000", "shortcode"),
        (SANDBOX_SHORTCODE, "", "20261130003000", "passkey"),
        (SANDBOX_SHORTCODE, SANDBOX_PASSKEY, "2026113000300", "timestamp"),
        (SANDBOX_SHORTCODE, SANDBOX_PASSKEY, "202611300030000", "timestamp"),
        (SANDBOX_SHORTCODE, SANDBOX_PASSKEY, "2026-11-30T00:30", "timestamp"),
        (SANDBOX_SHORTCODE, SANDBOX_PASSKEY, "٢٠٢٦١١٣٠٠٠٣٠٠٠", "timestamp"),
    ],
)
def test_password_inputs_are_checked(shortcode: str, passkey: str, timestamp: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        stk_password(shortcode, passkey, timestamp)
