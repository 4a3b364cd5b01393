"""Amount parsing: whole shillings from 1 to the configured cap."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.domain.amount import parse_amount
from gateway.domain.errors import ValidationError

CAP = 150_000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1, 1),
        (10, 10),
        (149_999, 149_999),
        (CAP, CAP),
        # JSON encoders in some clients write whole numbers as 10.0.
        (1.0, 1),
        (10.0, 10),
        (float(CAP), CAP),
    ],
)
def test_accepts_whole_amounts_within_the_cap(raw: object, expected: int) -> None:
    result = parse_amount(raw, CAP)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (0, "amount must be at least 1"),
        (-1, "amount must be at least 1"),
        (-150_000, "amount must be at least 1"),
        (0.0, "amount must be at least 1"),
        (-0.0, "amount must be at least 1"),
        (-5.0, "amount must be at least 1"),
        (CAP + 1, "amount must be at most 150000"),
        (1_000_000, "amount must be at most 150000"),
        (10**30, "amount must be at most 150000"),
        (10**400, "amount must be at most 150000"),
        (150_001.0, "amount must be at most 150000"),
        (1e300, "amount must be at most 150000"),
        (1.5, "amount must be a whole number of shillings"),
        (0.5, "amount must be a whole number of shillings"),
        (10.01, "amount must be a whole number of shillings"),
        (149_999.99, "amount must be a whole number of shillings"),
        (-1.5, "amount must be a whole number of shillings"),
    ],
)
def test_rejects_out_of_range_and_fractional_amounts(raw: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_amount(raw, CAP)
    assert caught.value.code == "invalid_amount"
    assert caught.value.param == "amount"
    assert caught.value.message == message


@pytest.mark.parametrize(
    "raw",
    [
        True,
        False,
        "10",
        "1",
        "10.0",
        "",
        None,
        float("nan"),
        float("inf"),
        float("-inf"),
        float("1e309"),
        [10],
        {"amount": 10},
        Decimal("10"),
        complex(10, 0),
        b"10",
    ],
)
def test_rejects_non_numbers_bools_strings_and_non_finite_floats(raw: object) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_amount(raw, CAP)
    assert caught.value.code == "invalid_amount"
    assert caught.value.param == "amount"
    assert "whole number of shillings" in caught.value.message


def test_huge_amount_is_not_echoed_in_the_message() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_amount(10**400, CAP)
    assert len(caught.value.message) < 60


@pytest.mark.parametrize(
    ("cap", "raw", "ok"), [(70_000, 70_000, True), (70_000, 70_001, False), (1, 1, True), (1, 2, False)]
)
def test_the_cap_is_configurable(cap: int, raw: int, ok: bool) -> None:
    if ok:
        assert parse_amount(raw, cap) == raw
    else:
        with pytest.raises(ValidationError, match=f"at most {cap}$"):
            parse_amount(raw, cap)


@pytest.mark.parametrize("cap", [0, -1])
def test_a_cap_below_one_is_a_programming_error(cap: int) -> None:
    with pytest.raises(ValueError, match="max_amount"):
        parse_amount(1, cap)
