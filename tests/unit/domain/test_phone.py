"""Kenyan MSISDN normalization and masking."""

from __future__ import annotations

import re

import pytest

from gateway.domain.errors import ValidationError
from gateway.domain.phone import PHONE_MESSAGE, mask_msisdn, normalize_msisdn

ACCEPTED = [
    # The forms people type, per the Daraja notes: 07…, 01…, without the 0, +254…, 254…
    ("0712345678", "254712345678"),
    ("0112345678", "254112345678"),
    ("0100000000", "254100000000"),
    ("0799999999", "254799999999"),
    ("712345678", "254712345678"),
    ("112345678", "254112345678"),
    ("+254712345678", "254712345678"),
    ("+254112345678", "254112345678"),
    ("254712345678", "254712345678"),
    ("254112345678", "254112345678"),
    ("254708374149", "254708374149"),
    # Punctuation from contacts, receipts and copy-paste.
    ("0712 345 678", "254712345678"),
    ("0712-345-678", "254712345678"),
    ("0712.345.678", "254712345678"),
    ("(0712) 345 678", "254712345678"),
    ("+254 712 345 678", "254712345678"),
    ("+254-112-345-678", "254112345678"),
    ("+ 254 712 345678", "254712345678"),
    ("254 708 374 149", "254708374149"),
    ("(254) 712-345-678", "254712345678"),
    ("  0712345678  ", "254712345678"),
    ("\t0712345678\n", "254712345678"),
    ("0712\u00a0345\u00a0678", "254712345678"),
    ("7 1 2 3 4 5 6 7 8", "254712345678"),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepts_every_usual_form(raw: str, expected: str) -> None:
    assert normalize_msisdn(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_normalizing_twice_changes_nothing(raw: str, expected: str) -> None:
    assert normalize_msisdn(normalize_msisdn(raw)) == expected


@pytest.mark.parametrize(("raw", "_"), ACCEPTED)
def test_result_is_always_twelve_ascii_digits_starting_2547_or_2541(raw: str, _: str) -> None:
    assert re.fullmatch(r"254[17][0-9]{8}", normalize_msisdn(raw))


REJECTED: list[object] = [
    # Not strings at all: a number loses a leading zero, so the API insists on text.
    None,
    712345678,
    254712345678,
    7.12345678e8,
    True,
    b"0712345678",
    ["0712345678"],
    {"phone": "0712345678"},
    # Empty or punctuation only.
    "",
    " ",
    "+",
    "()",
    "---",
    # Wrong length.
    "071234567",
    "07123456789",
    "71234567",
    "7123456789",
    "25471234567",
    "2547123456789",
    "+25471234567",
    "1234",
    "0" * 100,
    "0712345678" * 5,
    # Not a Kenyan mobile prefix.
    "254912345678",
    "254012345678",
    "254212345678",
    "0812345678",
    "0212345678",
    "0912345678",
    "812345678",
    "255712345678",
    "+255712345678",
    # Misplaced or doubled plus, international call prefix, trunk zero after the country code.
    "+0712345678",
    "+712345678",
    "++254712345678",
    "254+712345678",
    "0712345678+",
    "00254712345678",
    "2540712345678",
    "+254 (0) 712 345 678",
    # Letters and other symbols.
    "0712345abc",
    "O712345678",
    "0712_345_678",
    "0712/345/678",
    "0712,345,678",
    "0712345678x",
    "tel:0712345678",
    "0712#345678",
    # Digits that are not ASCII: str.isdigit() would accept them, Daraja would not.
    "٠٧١٢٣٤٥٦٧٨",
    "۰۷۱۲۳۴۵۶۷۸",
    "０７１２３４５６７８",
    "07１2345678",
    "०७१२३४५६७८",
    "2547١2345678",
    # Emoji.
    "0712345678📱",
    "📱",
    "0️⃣712345678",
]


@pytest.mark.parametrize("raw", REJECTED)
def test_rejects_anything_else_with_a_helpful_error(raw: object) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_msisdn(raw)
    assert caught.value.code == "invalid_phone"
    assert caught.value.param == "phone"
    assert caught.value.message == PHONE_MESSAGE
    assert "0712345678" in caught.value.message
    assert "254712345678" in caught.value.message


MASKED = [
    ("254708374149", "2547******49"),
    ("254712345678", "2547******78"),
    ("254112345678", "2541******78"),
    ("0712345678", "********78"),
    ("2547123456789", "***********89"),
    ("12345", "***45"),
    ("1234", "****"),
    ("49", "**"),
    ("4", "*"),
    ("", ""),
]


@pytest.mark.parametrize(("msisdn", "expected"), MASKED)
def test_mask(msisdn: str, expected: str) -> None:
    assert mask_msisdn(msisdn) == expected


@pytest.mark.parametrize(("msisdn", "_"), MASKED)
def test_mask_never_returns_the_whole_number(msisdn: str, _: str) -> None:
    masked = mask_msisdn(msisdn)
    assert len(masked) == len(msisdn)
    if msisdn:
        assert masked != msisdn
        assert "*" in masked


@pytest.mark.parametrize(("raw", "_"), ACCEPTED)
def test_mask_hides_the_subscriber_digits_of_every_accepted_number(raw: str, _: str) -> None:
    msisdn = normalize_msisdn(raw)
    masked = mask_msisdn(msisdn)
    assert masked[4:10] == "******"
    assert masked[:4] == msisdn[:4]
    assert masked[-2:] == msisdn[-2:]
