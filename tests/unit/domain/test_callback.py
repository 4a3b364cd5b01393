"""Parsing Daraja's STK callback and STK Push Query answer."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from typing import Any

import pytest

from gateway.domain.callback import StkCallback, is_checkout_request_id, parse_query_result, parse_stk_callback
from gateway.domain.errors import ValidationError
from gateway.domain.payment import PaymentStatus, decide_settlement, status_for_result_code

# The sample in the Daraja notes, only re-wrapped (a JSON number 1.00 arrives in Python as the float 1.0).
SAMPLE_TEXT = """{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1",
  "CheckoutRequestID":"ws_CO_191220191020363925",
  "ResultCode":0,"ResultDesc":"The service request is processed successfully.",
  "CallbackMetadata":{"Item":[{"Name":"Amount","Value":1.00},{"Name":"MpesaReceiptNumber","Value":"NLJ7RT61SV"},
   {"Name":"Balance"},{"Name":"TransactionDate","Value":20191219102115},{"Name":"PhoneNumber","Value":254708374149}]}}}}"""

SAMPLE: dict[str, Any] = json.loads(SAMPLE_TEXT)

EXPECTED_SAMPLE = StkCallback(
    merchant_request_id="29115-34620561-1",
    checkout_request_id="ws_CO_191220191020363925",
    result_code="0",
    result_desc="The service request is processed successfully.",
    amount=1,
    mpesa_receipt_number="NLJ7RT61SV",
    transaction_date="20191219102115",
    phone="254708374149",
    item_names=("Amount", "MpesaReceiptNumber", "Balance", "TransactionDate", "PhoneNumber"),
)

CANCELLED_TEXT = """{"Body":{"stkCallback":{"MerchantRequestID":"29115-34620561-1",
  "CheckoutRequestID":"ws_CO_191220191020363925","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}"""


def sample() -> dict[str, Any]:
    return copy.deepcopy(SAMPLE)


def stk(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = body["Body"]["stkCallback"]
    return result


def items(body: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = stk(body)["CallbackMetadata"]["Item"]
    return result


def with_item(name: str, value: object) -> dict[str, Any]:
    """The sample with one metadata item's Value replaced, or removed when value is ``...``."""
    body = sample()
    for item in items(body):
        if item["Name"] == name:
            if value is ...:
                item.pop("Value", None)
            else:
                item["Value"] = value
    return body


def with_field(name: str, value: object) -> dict[str, Any]:
    """The sample with one stkCallback field replaced, or removed when value is ``...``."""
    body = sample()
    if value is ...:
        del stk(body)[name]
    else:
        stk(body)[name] = value
    return body


def test_parses_the_documented_sample() -> None:
    assert parse_stk_callback(SAMPLE) == EXPECTED_SAMPLE


def test_the_sample_settles_a_matching_pending_payment() -> None:
    callback = parse_stk_callback(SAMPLE)
    decision = decide_settlement(PaymentStatus.PENDING, 1, "254708374149", callback.outcome)
    assert (decision.action, decision.new_status, decision.flags) == ("settle", PaymentStatus.SUCCEEDED, ())


def test_outcome_carries_every_field() -> None:
    outcome = parse_stk_callback(SAMPLE).outcome
    assert outcome.result_code == "0"
    assert outcome.result_desc == "The service request is processed successfully."
    assert outcome.amount == 1
    assert outcome.mpesa_receipt_number == "NLJ7RT61SV"
    assert outcome.transaction_date == "20191219102115"
    assert outcome.phone == "254708374149"
    assert outcome.is_success


def test_parse_does_not_modify_the_body() -> None:
    body = sample()
    parse_stk_callback(body)
    assert body == SAMPLE


@pytest.mark.parametrize("value", [1.0, 1, "1.00", "1", "1.0", " 1.00 ", 1.00, "1.000000"])
def test_amount_in_every_observed_shape(value: object) -> None:
    assert parse_stk_callback(with_item("Amount", value)).amount == 1


@pytest.mark.parametrize(("value", "expected"), [(150000.0, 150000), ("70000", 70000), (0, 0), (-5, -5)])
def test_odd_but_whole_amounts_are_kept_for_the_settlement_check(value: object, expected: int) -> None:
    assert parse_stk_callback(with_item("Amount", value)).amount == expected


@pytest.mark.parametrize("value", [..., None])
def test_amount_without_a_value_is_none(value: object) -> None:
    assert parse_stk_callback(with_item("Amount", value)).amount is None


@pytest.mark.parametrize(
    "value", [1.5, "1.50", "1.5", True, "abc", "", [1], {"v": 1}, float("nan"), float("inf"), "-1"]
)
def test_unusable_amounts_are_malformed(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_stk_callback(with_item("Amount", value))
    assert caught.value.code == "malformed_callback"
    assert caught.value.param == "Amount"


@pytest.mark.parametrize("value", [..., None, 0, 12.5, "12.50"])
def test_balance_is_ignored_whatever_it_holds(value: object) -> None:
    callback = parse_stk_callback(with_item("Balance", value))
    assert dataclasses.replace(callback, item_names=EXPECTED_SAMPLE.item_names) == EXPECTED_SAMPLE


def test_items_are_read_by_name_in_any_order() -> None:
    for order in itertools.permutations(items(SAMPLE)):
        body = sample()
        stk(body)["CallbackMetadata"]["Item"] = [dict(item) for item in order]
        callback = parse_stk_callback(body)
        assert dataclasses.replace(callback, item_names=EXPECTED_SAMPLE.item_names) == EXPECTED_SAMPLE
        assert callback.item_names == tuple(item["Name"] for item in order)


def test_unknown_items_are_listed_but_do_not_break_parsing() -> None:
    body = sample()
    items(body).append({"Name": "SomethingNew", "Value": {"nested": True}})
    callback = parse_stk_callback(body)
    assert callback.item_names[-1] == "SomethingNew"
    assert callback.amount == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (20191219102115, "20191219102115"),
        ("20191219102115", "20191219102115"),
        (" 20191219102115 ", "20191219102115"),
        (20191219102115.0, "20191219102115"),
        ("2019-12-19", None),
        (2019, None),
        ("", None),
        (True, None),
        ([20191219102115], None),
        (None, None),
        (..., None),
    ],
)
def test_transaction_date(value: object, expected: str | None) -> None:
    assert parse_stk_callback(with_item("TransactionDate", value)).transaction_date == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (254708374149, "254708374149"),
        ("254708374149", "254708374149"),
        (254708374149.0, "254708374149"),
        ("0708374149", "254708374149"),
        ("+254708374149", "254708374149"),
        (254112345678, "254112345678"),
        # Masked or hashed numbers have been reported; they count as absent, not as a mismatch.
        ("2547*****149", None),
        ("f1e2d3c4b5a6f1e2d3c4b5a6", None),
        (12345, None),
        ("", None),
        (False, None),
        ({"n": 1}, None),
        (None, None),
        (..., None),
    ],
)
def test_phone_number(value: object, expected: str | None) -> None:
    assert parse_stk_callback(with_item("PhoneNumber", value)).phone == expected


def test_phone_number_item_may_be_missing() -> None:
    body = sample()
    stk(body)["CallbackMetadata"]["Item"] = [item for item in items(body) if item["Name"] != "PhoneNumber"]
    assert parse_stk_callback(body).phone is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("NLJ7RT61SV", "NLJ7RT61SV"), (" NLJ7RT61SV ", "NLJ7RT61SV"), ("", None), ("  ", None), (None, None), (..., None)],
)
def test_receipt(value: object, expected: str | None) -> None:
    assert parse_stk_callback(with_item("MpesaReceiptNumber", value)).mpesa_receipt_number == expected


def test_failure_callback_without_metadata() -> None:
    callback = parse_stk_callback(json.loads(CANCELLED_TEXT))
    assert callback == StkCallback(
        merchant_request_id="29115-34620561-1",
        checkout_request_id="ws_CO_191220191020363925",
        result_code="1032",
        result_desc="Request cancelled by user",
        amount=None,
        mpesa_receipt_number=None,
        transaction_date=None,
        phone=None,
        item_names=(),
    )
    assert status_for_result_code(callback.result_code) is PaymentStatus.CANCELLED


@pytest.mark.parametrize("metadata", [None, {}, {"Item": None}, {"Item": []}])
def test_empty_metadata_shapes_are_tolerated(metadata: object) -> None:
    body = with_field("CallbackMetadata", metadata)
    callback = parse_stk_callback(body)
    assert (callback.amount, callback.mpesa_receipt_number, callback.phone, callback.item_names) == (
        None,
        None,
        None,
        (),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), ("0", "0"), (" 0 ", "0"), (0.0, "0"), (1032, "1032"), ("1032", "1032"), ("SFC_IC0003", "SFC_IC0003")],
)
def test_result_code_as_number_or_string(value: object, expected: str) -> None:
    assert parse_stk_callback(with_field("ResultCode", value)).result_code == expected


@pytest.mark.parametrize(("value", "expected"), [(..., None), (None, None), (" 29115-1 ", "29115-1")])
def test_merchant_request_id_is_optional(value: object, expected: str | None) -> None:
    assert parse_stk_callback(with_field("MerchantRequestID", value)).merchant_request_id == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(..., ""), (None, ""), ("  spaced  ", "spaced"), ("d" * 500, "d" * 200)]
)
def test_result_desc_is_optional_and_bounded(value: object, expected: str) -> None:
    assert parse_stk_callback(with_field("ResultDesc", value)).result_desc == expected


def test_checkout_request_id_is_trimmed() -> None:
    assert parse_stk_callback(with_field("CheckoutRequestID", " ws_CO_1 ")).checkout_request_id == "ws_CO_1"


def test_callback_is_immutable() -> None:
    callback = parse_stk_callback(SAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        callback.result_code = "1"  # type: ignore[misc]


def _item_list(*entries: object) -> dict[str, Any]:
    return with_field("CallbackMetadata", {"Item": list(entries)})


MALFORMED: list[tuple[str, object]] = [
    ("none", None),
    ("list", []),
    ("string", "x"),
    ("number", 1),
    ("bool", True),
    ("bytes", SAMPLE_TEXT.encode()),
    ("json text instead of object", SAMPLE_TEXT),
    ("empty object", {}),
    ("Body null", {"Body": None}),
    ("Body list", {"Body": []}),
    ("Body string", {"Body": "x"}),
    ("Body empty", {"Body": {}}),
    ("lowercase body", {"body": SAMPLE["Body"]}),
    ("stkCallback null", {"Body": {"stkCallback": None}}),
    ("stkCallback list", {"Body": {"stkCallback": [stk(SAMPLE)]}}),
    ("stkCallback string", {"Body": {"stkCallback": "ok"}}),
    ("stkCallback empty", {"Body": {"stkCallback": {}}}),
    ("CheckoutRequestID missing", with_field("CheckoutRequestID", ...)),
    ("CheckoutRequestID null", with_field("CheckoutRequestID", None)),
    ("CheckoutRequestID number", with_field("CheckoutRequestID", 123)),
    ("CheckoutRequestID empty", with_field("CheckoutRequestID", "")),
    ("CheckoutRequestID blank", with_field("CheckoutRequestID", "   ")),
    ("CheckoutRequestID huge", with_field("CheckoutRequestID", "w" * 201)),
    ("CheckoutRequestID slash", with_field("CheckoutRequestID", "ws_CO/../x")),
    ("CheckoutRequestID inner space", with_field("CheckoutRequestID", "ws CO")),
    ("CheckoutRequestID non-ascii", with_field("CheckoutRequestID", "ws_CO_ü")),
    ("CheckoutRequestID operator", with_field("CheckoutRequestID", {"$ne": None})),
    ("CheckoutRequestID list", with_field("CheckoutRequestID", ["ws_CO_1"])),
    ("ResultCode missing", with_field("ResultCode", ...)),
    ("ResultCode null", with_field("ResultCode", None)),
    ("ResultCode bool", with_field("ResultCode", False)),
    ("ResultCode fraction", with_field("ResultCode", 0.5)),
    ("ResultCode list", with_field("ResultCode", [0])),
    ("ResultCode object", with_field("ResultCode", {})),
    ("ResultCode empty", with_field("ResultCode", "")),
    ("ResultCode huge", with_field("ResultCode", "9" * 201)),
    ("MerchantRequestID number", with_field("MerchantRequestID", 29115)),
    ("MerchantRequestID huge", with_field("MerchantRequestID", "m" * 201)),
    ("ResultDesc number", with_field("ResultDesc", 5)),
    ("ResultDesc list", with_field("ResultDesc", ["ok"])),
    ("CallbackMetadata list", with_field("CallbackMetadata", [])),
    ("CallbackMetadata string", with_field("CallbackMetadata", "x")),
    ("Item object", with_field("CallbackMetadata", {"Item": {"Name": "Amount", "Value": 1}})),
    ("Item string", with_field("CallbackMetadata", {"Item": "Amount"})),
    ("item number", _item_list(1)),
    ("item list", _item_list(["Amount", 1])),
    ("item null", _item_list(None)),
    ("item without Name", _item_list({"Value": 1})),
    ("item Name number", _item_list({"Name": 5, "Value": 1})),
    ("item Name empty", _item_list({"Name": "", "Value": 1})),
    ("item Name huge", _item_list({"Name": "N" * 201, "Value": 1})),
    ("duplicate Amount", _item_list({"Name": "Amount", "Value": 1}, {"Name": "Amount", "Value": 1000})),
    ("too many items", _item_list(*({"Name": f"Item{i}"} for i in range(51)))),
    ("receipt huge", with_item("MpesaReceiptNumber", "R" * 201)),
    ("receipt list", with_item("MpesaReceiptNumber", ["NLJ7RT61SV"])),
    ("receipt inner space", with_item("MpesaReceiptNumber", "NLJ7 RT61SV")),
    ("nested junk", {"Body": {"stkCallback": {"CheckoutRequestID": {"Body": {"stkCallback": {}}}, "ResultCode": 0}}}),
]


@pytest.mark.parametrize("body", [body for _, body in MALFORMED], ids=[name for name, _ in MALFORMED])
def test_malformed_bodies_are_rejected(body: object) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_stk_callback(body)
    assert caught.value.code == "malformed_callback"
    assert caught.value.message


def test_errors_name_the_offending_field() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_stk_callback(with_field("CheckoutRequestID", ...))
    assert caught.value.param == "CheckoutRequestID"
    with pytest.raises(ValidationError) as caught:
        parse_stk_callback(with_field("ResultCode", None))
    assert caught.value.param == "ResultCode"


def test_huge_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_stk_callback(_item_list({"Name": "A" * 150}, {"Name": "A" * 150}))
    assert len(caught.value.message) < 100


# --- STK Push Query -------------------------------------------------------------------------------------------------

QUERY_ANSWER = {
    "ResponseCode": "0",
    "ResponseDescription": "The service request has been accepted successsfully",
    "MerchantRequestID": "22205-34066-1",
    "CheckoutRequestID": "ws_CO_13012021093521236557",
    "ResultCode": "0",
    "ResultDesc": "The service request is processed successfully.",
}


def query(**changes: object) -> dict[str, object]:
    answer: dict[str, object] = dict(QUERY_ANSWER)
    for name, value in changes.items():
        if value is ...:
            del answer[name]
        else:
            answer[name] = value
    return answer


def test_parses_a_query_answer() -> None:
    result = parse_query_result(QUERY_ANSWER)
    assert result.response_code == "0"
    assert result.response_description == "The service request has been accepted successsfully"
    assert result.merchant_request_id == "22205-34066-1"
    assert result.checkout_request_id == "ws_CO_13012021093521236557"
    assert result.result_code == "0"
    assert result.result_desc == "The service request is processed successfully."


def test_query_outcome_has_no_amount_phone_or_receipt() -> None:
    outcome = parse_query_result(QUERY_ANSWER).outcome
    assert (outcome.result_code, outcome.amount, outcome.phone, outcome.mpesa_receipt_number) == ("0", None, None, None)
    assert outcome.transaction_date is None


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("0", PaymentStatus.SUCCEEDED),
        ("1032", PaymentStatus.CANCELLED),
        (1032, PaymentStatus.CANCELLED),
        ("1037", PaymentStatus.TIMED_OUT),
        (" 1 ", PaymentStatus.FAILED),
        ("SFC_IC0003", PaymentStatus.FAILED),
    ],
)
def test_query_result_codes(code: object, status: PaymentStatus) -> None:
    result = parse_query_result(query(ResultCode=code))
    decision = decide_settlement(PaymentStatus.PENDING, 10, "254712345678", result.outcome, "query")
    assert decision.new_status is status
    assert decision.flags == ("settled_by_query",)


def test_query_answer_without_merchant_request_id_or_descriptions() -> None:
    result = parse_query_result(query(MerchantRequestID=..., ResultDesc=..., ResponseDescription=...))
    assert (result.merchant_request_id, result.result_desc, result.response_description) == (None, "", "")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "x",
        {},
        query(ResultCode=...),
        query(ResultCode=None),
        query(ResultCode=[]),
        query(ResponseCode=...),
        query(CheckoutRequestID=...),
        query(CheckoutRequestID=""),
        query(CheckoutRequestID="c" * 201),
        # The "still processing" reply is an error body, not an answer.
        {"requestId": "1-2-3", "errorCode": "500.001.1001", "errorMessage": "The transaction is being processed"},
    ],
)
def test_malformed_query_answers(body: object) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_query_result(body)
    assert caught.value.code == "malformed_query_result"


@pytest.mark.parametrize("value", ["ws_CO_191220191020363925", "x", "a" * 200, "!-.0~"])
def test_a_checkout_request_id_is_a_short_printable_identifier(value: str) -> None:
    assert is_checkout_request_id(value)
    # Whatever the callback parser accepts as a CheckoutRequestID, a lookup by it is attempted.
    body = copy.deepcopy(SAMPLE)
    body["Body"]["stkCallback"]["CheckoutRequestID"] = value
    assert parse_stk_callback(body).checkout_request_id == value


# Found by the HTTP fuzz run: GET payment_status?checkout_request_id=<thousands of characters> was a 500 (Firestore
# refuses to query a value of more than 1,500 bytes). Such values are looked up nowhere.
@pytest.mark.parametrize("value", ["", "a" * 201, "9" * 5000, "ws_CO_1/2", "ws CO", "ws_CO_\u00e9", "ws_CO_\n"])
def test_anything_else_cannot_be_a_checkout_request_id(value: str) -> None:
    assert not is_checkout_request_id(value.encode().decode("unicode_escape"))
