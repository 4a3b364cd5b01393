"""log_event: one JSON line per event, with severity, event name and time; secret-looking keys are redacted."""

from __future__ import annotations

import datetime
import io
import json
import re
import time
from typing import Any

import pytest

from gateway.logs import Event, log_event


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_line_with_severity_event_message_and_time() -> None:
    stream = io.StringIO()
    before = time.time()

    log_event(Event.PAYMENT_SETTLED, "WARNING", stream=stream, uid="dev-1", payment_id="pay_1", result_code=0)

    [record] = _lines(stream)
    assert record["severity"] == "WARNING"
    assert record["event"] == "payment_settled"
    assert record["message"] == "payment_settled"
    assert (record["uid"], record["payment_id"], record["result_code"]) == ("dev-1", "pay_1", 0)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", record["time"])
    logged = datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert before - 2 <= logged.timestamp() <= time.time() + 1
    assert set(record) == {"severity", "event", "message", "uid", "payment_id", "result_code", "time"}


def test_defaults_to_info_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    log_event(Event.RECONCILE_RUN, checked=3)

    out = capsys.readouterr().out
    assert out.count("\n") == 1
    record = json.loads(out)
    assert (record["severity"], record["event"], record["checked"]) == ("INFO", "reconcile_run", 3)


def test_each_call_is_exactly_one_line_even_with_newlines_in_values() -> None:
    stream = io.StringIO()
    log_event(Event.UNHANDLED_EXCEPTION, "ERROR", stream=stream, traceback="line 1\nline 2\n")
    log_event(Event.AUTH_REJECTED, stream=stream, code="missing_token")

    records = _lines(stream)
    assert [r["event"] for r in records] == ["unhandled_exception", "auth_rejected"]
    assert records[0]["traceback"] == "line 1\nline 2\n"


SECRET_KEYS = [
    "consumer_secret",
    "passkey",
    "password",
    "authorization",
    "token",
    "access_token",
    "id_token",
    "secret",
    "Authorization",
    "PASSKEY",
    "Consumer_Secret",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    stream = io.StringIO()
    value = "s3cr3t-value-bfb279f9aa9bdbcf"

    log_event(Event.CREDENTIALS_STORED, stream=stream, uid="dev-1", **{key: value})

    assert value not in stream.getvalue()
    [record] = _lines(stream)
    assert record[key] == "[redacted]"
    assert record["uid"] == "dev-1"


@pytest.mark.parametrize("value", [{"nested": "s3cr3t"}, ["s3cr3t"], 123456, "Bearer eyJhbGciOi.x.y"])
def test_redaction_does_not_depend_on_the_value_type(value: Any) -> None:
    stream = io.StringIO()
    log_event(Event.OAUTH_TOKEN_MINTED, stream=stream, access_token=value)
    assert _lines(stream)[0]["access_token"] == "[redacted]"
    assert "s3cr3t" not in stream.getvalue() and "eyJhbGciOi" not in stream.getvalue()


@pytest.mark.parametrize("key", ["consumer_key_hint", "code", "environment", "shortcode", "uid"])
def test_ordinary_keys_are_kept(key: str) -> None:
    stream = io.StringIO()
    log_event(Event.CREDENTIALS_STORED, stream=stream, **{key: "visible"})
    assert _lines(stream)[0][key] == "visible"


def test_none_fields_are_dropped() -> None:
    stream = io.StringIO()
    log_event(Event.CALLBACK_REJECTED, "WARNING", stream=stream, code="x", source_ip=None)
    [record] = _lines(stream)
    assert "source_ip" not in record
    assert record["code"] == "x"


def test_values_json_cannot_encode_are_stringified_and_unicode_is_kept() -> None:
    stream = io.StringIO()
    when = datetime.datetime(2026, 11, 29, 6, 0, tzinfo=datetime.UTC)

    log_event(Event.PAYMENT_FLAGGED, stream=stream, settled_at=when, flags=("amount_mismatch",), name="Wanjirũ")

    [record] = _lines(stream)
    assert record["settled_at"] == str(when)
    assert record["flags"] == ["amount_mismatch"]
    assert record["name"] == "Wanjirũ"
    assert "Wanjirũ" in stream.getvalue()


def test_fields_cannot_overwrite_the_time() -> None:
    stream = io.StringIO()
    log_event(Event.RECONCILE_RUN, stream=stream, time="1999-01-01T00:00:00Z")
    assert _lines(stream)[0]["time"] != "1999-01-01T00:00:00Z"


def test_event_names_are_unique_snake_case() -> None:
    values = [event.value for event in Event]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", value) for value in values)
