"""Validation of STK Push request bodies and Daraja credential bodies."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from gateway.domain.errors import ValidationError
from gateway.domain.validation import (
    CredentialsRequest,
    StkPushRequest,
    canonical_fingerprint,
    key_hint,
    parse_credentials_request,
    parse_stk_push_request,
)

CAP = 150_000
VALID_PUSH: dict[str, Any] = {
    "phone": "0712 345 678",
    "amount": 10,
    "account_reference": "INV-1",
    "description": "Order 1",
}


def push(**changes: object) -> dict[str, Any]:
    """VALID_PUSH with fields replaced, or removed when the value is ``...``."""
    body = dict(VALID_PUSH)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def push_error(body: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_stk_push_request(body, CAP)
    return caught.value


# --- STK Push: happy paths ------------------------------------------------------------------------------------------


def test_valid_request_is_normalized() -> None:
    assert parse_stk_push_request(VALID_PUSH, CAP) == StkPushRequest(
        phone="254712345678", amount=10, account_reference="INV-1", description="Order 1", metadata={}
    )


@pytest.mark.parametrize("metadata", [..., None, {}])
def test_metadata_is_optional(metadata: object) -> None:
    assert parse_stk_push_request(push(metadata=metadata), CAP).metadata == {}


def test_request_is_frozen_and_hashable() -> None:
    request = parse_stk_push_request(push(metadata={"a": 1}), CAP)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.amount = 11  # type: ignore[misc]
    assert hash(request) == hash(parse_stk_push_request(push(metadata={"a": 1}), CAP))


def test_metadata_is_copied_not_shared() -> None:
    metadata = {"order_id": "A1"}
    request = parse_stk_push_request(push(metadata=metadata), CAP)
    metadata["order_id"] = "changed"
    assert request.metadata == {"order_id": "A1"}


# --- STK Push: body shape -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], [VALID_PUSH], "x", 1, True, b"{}", "{}"])
def test_body_must_be_an_object(body: object) -> None:
    error = push_error(body)
    assert error.code == "invalid_body"
    assert "JSON object" in error.message


@pytest.mark.parametrize("name", ["foo", "Phone", "currency", "callback_url", "amount ", "shortcode"])
def test_unknown_fields_are_rejected_by_name(name: str) -> None:
    error = push_error(push(**{name: "x"}))
    assert (error.code, error.param) == ("unknown_parameter", name)
    assert "account_reference" in error.message


def test_a_huge_unknown_field_name_is_not_echoed_whole() -> None:
    error = push_error(push(**{"k" * 10_000: 1}))
    assert error.code == "unknown_parameter"
    assert error.param == "k" * 64


@pytest.mark.parametrize("name", ["phone", "amount", "account_reference", "description"])
def test_required_fields(name: str) -> None:
    error = push_error(push(**{name: ...}))
    assert (error.code, error.param) == ("missing_parameter", name)
    assert error.message == f"{name} is required"


# --- STK Push: each field's rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone", [None, 712345678, "", "254912345678", "0812345678", "٠٧١٢٣٤٥٦٧٨", "0712345678📱", "07123456789"]
)
def test_phone_rejects(phone: object) -> None:
    error = push_error(push(phone=phone))
    assert (error.code, error.param) == ("invalid_phone", "phone")


@pytest.mark.parametrize("amount", [None, 0, -1, 1.5, "10", True, CAP + 1, 10**30, float("nan"), float("inf")])
def test_amount_rejects(amount: object) -> None:
    error = push_error(push(amount=amount))
    assert (error.code, error.param) == ("invalid_amount", "amount")


@pytest.mark.parametrize(("amount", "expected"), [(1, 1), (10.0, 10), (CAP, CAP)])
def test_amount_accepts(amount: object, expected: int) -> None:
    assert parse_stk_push_request(push(amount=amount), CAP).amount == expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("INV-1", "INV-1"),
        ("A", "A"),
        ("123456789012", "123456789012"),
        ("a b/c.d_e-f", "a b/c.d_e-f"),
        (" INV-1 ", "INV-1"),
        ("  123456789012  ", "123456789012"),
    ],
)
def test_account_reference_accepts(reference: str, expected: str) -> None:
    assert parse_stk_push_request(push(account_reference=reference), CAP).account_reference == expected


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "   ",
        "1234567890123",
        "INVOICE-2026-0001",
        "INV#1",
        "INV@1",
        "INV&1",
        "INV,1",
        "INV:1",
        "Ünïcode",
        "ref\n1",
        "ref\t1",
        "😀",
        "١٢٣",
        None,
        12,
        ["INV-1"],
    ],
)
def test_account_reference_rejects(reference: object) -> None:
    error = push_error(push(account_reference=reference))
    assert (error.code, error.param) == ("invalid_account_reference", "account_reference")
    assert "12" in error.message


@pytest.mark.parametrize(
    ("description", "expected"),
    [("Order 1", "Order 1"), ("1234567890123", "1234567890123"), ("a,b.c-d_e", "a,b.c-d_e"), (" Pay ", "Pay")],
)
def test_description_accepts(description: str, expected: str) -> None:
    assert parse_stk_push_request(push(description=description), CAP).description == expected


@pytest.mark.parametrize(
    "description",
    ["", "  ", "12345678901234", "Order@1", "Order #1", "A & B", "Order/1", "Ordér", "50%", "Order\n1", None, 5, {}],
)
def test_description_rejects(description: object) -> None:
    error = push_error(push(description=description))
    assert (error.code, error.param) == ("invalid_description", "description")
    assert "13" in error.message


@pytest.mark.parametrize(
    "metadata",
    [
        {"order_id": "A1", "n": 1, "f": 1.5, "b": True, "z": None, "neg": -3},
        {f"key{i}": i for i in range(20)},
        {"k" * 40: "v"},
        {"a.b-c_D9": "v" * 200},
        {"big": 2**53 - 1, "small": -(2**53 - 1)},
        {"unicode": "ağırlık ✓"},
    ],
)
def test_metadata_accepts(metadata: dict[str, object]) -> None:
    assert parse_stk_push_request(push(metadata=metadata), CAP).metadata == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [["a", 1]],
        "x",
        1,
        True,
        {"a": {"b": 1}},
        {"a": [1]},
        {"a": ()},
        {"a": b"x"},
        {f"key{i}": i for i in range(21)},
        {"": "v"},
        {"k" * 41: "v"},
        {"a b": "v"},
        {"a/b": "v"},
        {"ключ": "v"},
        {1: "v"},
        {"a": "v" * 201},
        {"a": float("nan")},
        {"a": float("inf")},
        {"a": 2**53},
        {"a": -(2**53)},
        {"a": 10**30},
        {f"k{i}": "v" * 200 for i in range(11)},
    ],
)
def test_metadata_rejects(metadata: object) -> None:
    error = push_error(push(metadata=metadata))
    assert (error.code, error.param) == ("invalid_metadata", "metadata")


def test_metadata_size_limit_counts_utf8_bytes() -> None:
    # 10 values of 150 three-byte characters: under 2 KB in characters, over it in bytes.
    metadata = {f"k{i}": "€" * 150 for i in range(10)}
    error = push_error(push(metadata=metadata))
    assert error.code == "invalid_metadata"
    assert "2048 bytes" in error.message


def test_the_first_broken_field_is_reported() -> None:
    error = push_error(push(phone="bad", amount="bad", description="@"))
    assert error.param == "phone"


# --- fingerprint ----------------------------------------------------------------------------------------------------


def fingerprint(**changes: object) -> str:
    return canonical_fingerprint(parse_stk_push_request(push(**changes), CAP))


def test_fingerprint_is_sha256_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint())


@pytest.mark.parametrize(
    "changes",
    [
        {"phone": "254712345678"},
        {"phone": "+254712345678"},
        {"phone": "712345678"},
        {"phone": "0712-345-678"},
        {"amount": 10.0},
        {"account_reference": " INV-1 "},
        {"description": "Order 1 "},
        {"metadata": {}},
        {"metadata": None},
    ],
)
def test_fingerprint_is_equal_for_equivalent_requests(changes: dict[str, object]) -> None:
    assert fingerprint(**changes) == fingerprint()


def test_fingerprint_ignores_metadata_key_order() -> None:
    assert fingerprint(metadata={"a": 1, "b": "x"}) == fingerprint(metadata={"b": "x", "a": 1})


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 11},
        {"amount": 100},
        {"phone": "0712345679"},
        {"phone": "0112345678"},
        {"account_reference": "INV-2"},
        {"account_reference": "inv-1"},
        {"description": "Order 2"},
        {"metadata": {"a": 1}},
        {"metadata": {"a": "1"}},
        {"metadata": {"a": None}},
    ],
)
def test_fingerprint_differs_for_different_requests(changes: dict[str, object]) -> None:
    assert fingerprint(**changes) != fingerprint()


def test_fingerprint_is_stable_across_calls() -> None:
    assert fingerprint(metadata={"x": 1.5, "y": True}) == fingerprint(metadata={"x": 1.5, "y": True})


# --- credentials ----------------------------------------------------------------------------------------------------

SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
CONSUMER_KEY = "abcdEFGH1234ijklMNOPwxyz"
CONSUMER_SECRET = "s3cr3t-S3CR3T-value"
VALID_CREDENTIALS: dict[str, Any] = {
    "environment": "sandbox",
    "consumer_key": CONSUMER_KEY,
    "consumer_secret": CONSUMER_SECRET,
    "shortcode": "174379",
    "passkey": SANDBOX_PASSKEY,
    "transaction_type": "CustomerPayBillOnline",
}


def credentials(**changes: object) -> dict[str, Any]:
    body = dict(VALID_CREDENTIALS)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def credentials_error(body: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_credentials_request(body)
    return caught.value


def test_valid_paybill_credentials_default_party_b_to_the_shortcode() -> None:
    assert parse_credentials_request(VALID_CREDENTIALS) == CredentialsRequest(
        environment="sandbox",
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        shortcode="174379",
        passkey=SANDBOX_PASSKEY,
        transaction_type="CustomerPayBillOnline",
        party_b="174379",
    )


def test_production_environment() -> None:
    assert parse_credentials_request(credentials(environment="production")).environment == "production"


def test_buy_goods_uses_the_till_number_as_party_b() -> None:
    request = parse_credentials_request(
        credentials(transaction_type="CustomerBuyGoodsOnline", shortcode="5123456", party_b="987654")
    )
    assert (request.shortcode, request.party_b, request.transaction_type) == (
        "5123456",
        "987654",
        "CustomerBuyGoodsOnline",
    )


@pytest.mark.parametrize("party_b", [..., None])
def test_buy_goods_requires_party_b(party_b: object) -> None:
    error = credentials_error(credentials(transaction_type="CustomerBuyGoodsOnline", party_b=party_b))
    assert (error.code, error.param) == ("missing_parameter", "party_b")
    assert "till" in error.message


def test_paybill_accepts_an_explicit_party_b() -> None:
    assert parse_credentials_request(credentials(party_b="600000")).party_b == "600000"


@pytest.mark.parametrize("body", [None, [], "x", 1, [VALID_CREDENTIALS]])
def test_credentials_body_must_be_an_object(body: object) -> None:
    assert credentials_error(body).code == "invalid_body"


@pytest.mark.parametrize("name", ["consumerKey", "secret", "environment_", "callback_url"])
def test_credentials_unknown_fields_are_rejected(name: str) -> None:
    error = credentials_error(credentials(**{name: "x"}))
    assert (error.code, error.param) == ("unknown_parameter", name)


@pytest.mark.parametrize(
    "name", ["environment", "consumer_key", "consumer_secret", "shortcode", "passkey", "transaction_type"]
)
def test_credentials_required_fields(name: str) -> None:
    error = credentials_error(credentials(**{name: ...}))
    assert (error.code, error.param) == ("missing_parameter", name)


@pytest.mark.parametrize("environment", ["Sandbox", "PRODUCTION", "prod", "live", "", None, 1, ["sandbox"]])
def test_environment_rejects(environment: object) -> None:
    error = credentials_error(credentials(environment=environment))
    assert (error.code, error.param) == ("invalid_environment", "environment")


@pytest.mark.parametrize("name", ["consumer_key", "consumer_secret"])
@pytest.mark.parametrize(
    "value",
    [
        "short12",
        "a" * 201,
        "has space inside",
        "tab\tinside",
        "ключключключ",
        "abcdefgh€",
        "",
        "   ",
        12345678,
        None,
        [],
    ],
)
def test_consumer_key_and_secret_reject(name: str, value: object) -> None:
    error = credentials_error(credentials(**{name: value}))
    assert (error.code, error.param) == (f"invalid_{name}", name)
    assert "8 to 200" in error.message


@pytest.mark.parametrize("name", ["consumer_key", "consumer_secret"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abcd1234", "abcd1234"),
        ("a" * 200, "a" * 200),
        (" padded-key-123 \n", "padded-key-123"),
        ("!#$%&~{}", "!#$%&~{}"),
    ],
)
def test_consumer_key_and_secret_accept(name: str, value: str, expected: str) -> None:
    request = parse_credentials_request(credentials(**{name: value}))
    assert getattr(request, name) == expected


@pytest.mark.parametrize(
    ("shortcode", "expected"), [("12345", "12345"), ("1234567", "1234567"), (" 174379 ", "174379")]
)
def test_shortcode_accepts(shortcode: str, expected: str) -> None:
    assert parse_credentials_request(credentials(shortcode=shortcode)).shortcode == expected


@pytest.mark.parametrize("shortcode", [174379, "1234", "12345678", "17437a", "174 379", "١٧٤٣٧٩", "", None, 174379.0])
def test_shortcode_rejects(shortcode: object) -> None:
    error = credentials_error(credentials(shortcode=shortcode))
    assert (error.code, error.param) == ("invalid_shortcode", "shortcode")
    assert error.message == 'shortcode must be a string of 5 to 7 digits, such as "174379"'


@pytest.mark.parametrize(
    "passkey", ["p" * 15, "p" * 201, "pass key with space", "ключ" * 5, "", None, 1234567890123456]
)
def test_passkey_rejects(passkey: object) -> None:
    error = credentials_error(credentials(passkey=passkey))
    assert (error.code, error.param) == ("invalid_passkey", "passkey")


@pytest.mark.parametrize("passkey", ["p" * 16, "p" * 200, SANDBOX_PASSKEY])
def test_passkey_accepts(passkey: str) -> None:
    assert parse_credentials_request(credentials(passkey=passkey)).passkey == passkey


@pytest.mark.parametrize(
    "transaction_type",
    ["CustomerPayBill", "customerpaybillonline", "CustomerBuyGoods", "PayBill", "", None, 1],
)
def test_transaction_type_rejects(transaction_type: object) -> None:
    error = credentials_error(credentials(transaction_type=transaction_type))
    assert (error.code, error.param) == ("invalid_transaction_type", "transaction_type")
    assert "CustomerPayBillOnline" in error.message
    assert "CustomerBuyGoodsOnline" in error.message


@pytest.mark.parametrize("party_b", ["1234", "12345678", "abcde", 123456, "", []])
@pytest.mark.parametrize("transaction_type", ["CustomerPayBillOnline", "CustomerBuyGoodsOnline"])
def test_party_b_rejects(party_b: object, transaction_type: str) -> None:
    error = credentials_error(credentials(party_b=party_b, transaction_type=transaction_type))
    assert (error.code, error.param) == ("invalid_party_b", "party_b")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("consumer_key", "bad key value!"),
        ("consumer_secret", "bad secret value!"),
        ("passkey", "bad passkey value that is long!"),
    ],
)
def test_errors_never_echo_submitted_secrets(name: str, value: str) -> None:
    error = credentials_error(credentials(**{name: value}))
    assert value not in error.message
    assert value not in repr(error)
    assert "value" not in error.message


def test_repr_hides_key_secret_and_passkey() -> None:
    request = parse_credentials_request(credentials())
    text = repr(request) + str(request)
    assert CONSUMER_SECRET not in text
    assert SANDBOX_PASSKEY not in text
    assert CONSUMER_KEY not in text
    assert "174379" in text
    assert "sandbox" in text


def test_credentials_are_frozen() -> None:
    request = parse_credentials_request(credentials())
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.passkey = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        (CONSUMER_KEY, "abcd...wxyz"),
        ("abcdefghijkl", "abcd...ijkl"),
        ("abcdefghijk", "...jk"),
        ("abcdefgh", "...gh"),
        ("abcde", "...de"),
        ("abcd", "..."),
        ("", "..."),
    ],
)
def test_key_hint(key: str, hint: str) -> None:
    assert key_hint(key) == hint


@pytest.mark.parametrize("length", range(0, 40))
def test_key_hint_never_reveals_more_than_eight_characters(length: int) -> None:
    key = "".join(chr(ord("A") + i % 26) + str(i % 10) for i in range(length))[:length]
    hint = key_hint(key)
    revealed = hint.replace("...", "")
    assert len(revealed) <= 8
    assert len(revealed) <= max(0, len(key) - 3)
    if key:
        assert hint != key
