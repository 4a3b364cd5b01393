"""gateway.domain.api_key: key format, checksum, parsing, hint, the create request and the key record's rules."""

from __future__ import annotations

import math
import secrets
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.api_key import (
    BASE62,
    CHECKSUM_CHARS,
    RANDOM_CHARS,
    ApiKeyRecord,
    checksum,
    format_key,
    hint,
    is_key_id,
    looks_like_api_key,
    parse_create_request,
    parse_key,
    to_base62,
)
from gateway.domain.errors import ValidationError


def random_part() -> str:
    return "".join(secrets.choice(BASE62) for _ in range(RANDOM_CHARS))


def test_keys_carry_at_least_192_bits_of_randomness() -> None:
    assert RANDOM_CHARS * math.log2(len(BASE62)) >= 192
    assert len(set(BASE62)) == 62


@pytest.mark.parametrize(("environment", "prefix"), [("sandbox", "mpg_test_"), ("production", "mpg_live_")])
def test_a_formatted_key_parses_back(environment: str, prefix: str) -> None:
    key = format_key(environment, random_part())  # type: ignore[arg-type]
    assert key.text.startswith(prefix)
    assert len(key.text) == len(prefix) + RANDOM_CHARS + CHECKSUM_CHARS
    parsed = parse_key(key.text)
    assert parsed == key
    assert parsed.environment == environment


def test_the_checksum_is_crc32_of_the_rest_in_base62() -> None:
    key = format_key("sandbox", "a" * RANDOM_CHARS).text
    payload, suffix = key[:-CHECKSUM_CHARS], key[-CHECKSUM_CHARS:]
    number = 0
    for char in suffix:
        number = number * 62 + BASE62.index(char)
    assert number == zlib.crc32(payload.encode())
    assert checksum(payload) == suffix


def test_every_single_character_change_is_caught_by_the_checksum() -> None:
    key = format_key("production", random_part()).text
    for position in range(len("mpg_live_"), len(key)):
        for replacement in "0aZ":
            if key[position] == replacement:
                continue
            mutated = key[:position] + replacement + key[position + 1 :]
            assert parse_key(mutated) is None, position


def test_a_test_key_cannot_be_turned_into_a_live_one() -> None:
    key = format_key("sandbox", random_part()).text
    assert parse_key(key.replace("mpg_test_", "mpg_live_", 1)) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mpg_",
        "mpg_test_",
        "mpg_prod_" + "a" * 46,
        "mpg_test_" + "a" * 45,
        "mpg_test_" + "a" * 47,
        "mpg_test_" + "-" * 46,
        "MPG_TEST_" + "a" * 46,
        "x" * 10_000,
        "mpg_test_" + "é" * 46,
    ],
)
def test_malformed_keys_do_not_parse(text: str) -> None:
    assert parse_key(text) is None


def test_hint_shows_prefix_and_last_four_only() -> None:
    key = format_key("sandbox", random_part())
    assert key.hint == f"mpg_test_...{key.text[-4:]}"
    assert hint("mpg_live_abcdef") == "mpg_live_...cdef"
    assert key.text not in repr(key) and key.text not in str(key)


def test_base62() -> None:
    assert to_base62(0, 6) == "000000"
    assert to_base62(61, 1) == "z"
    assert to_base62(2**32 - 1, CHECKSUM_CHARS)
    with pytest.raises(ValueError):
        to_base62(62**6, 6)


def test_random_part_must_be_base62_of_the_right_length() -> None:
    with pytest.raises(ValueError):
        format_key("sandbox", "a" * (RANDOM_CHARS - 1))
    with pytest.raises(ValueError):
        format_key("sandbox", "-" * RANDOM_CHARS)


def test_looks_like_api_key_and_key_ids() -> None:
    assert looks_like_api_key("mpg_anything")
    assert not looks_like_api_key("eyJhbGciOi.x.y")
    assert is_key_id("key_" + "A" * 24)
    assert not is_key_id("key_" + "A" * 23)
    assert not is_key_id("../key_" + "A" * 24)


def test_create_request() -> None:
    request = parse_create_request({"name": "  shop server ", "environment": "production"})
    assert (request.name, request.environment) == ("shop server", "production")


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ([], "invalid_body", None),
        ({"environment": "sandbox"}, "missing_parameter", "name"),
        ({"name": "x"}, "missing_parameter", "environment"),
        ({"name": "", "environment": "sandbox"}, "invalid_name", "name"),
        ({"name": "x" * 101, "environment": "sandbox"}, "invalid_name", "name"),
        ({"name": "a\nb", "environment": "sandbox"}, "invalid_name", "name"),
        ({"name": 5, "environment": "sandbox"}, "invalid_name", "name"),
        ({"name": "x", "environment": "live"}, "invalid_environment", "environment"),
        ({"name": "x", "environment": ["sandbox"]}, "invalid_environment", "environment"),
        ({"name": "x", "environment": "sandbox", "scope": "all"}, "unknown_parameter", "scope"),
    ],
)
def test_bad_create_requests(body: object, code: str, param: str | None) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_create_request(body)
    assert (caught.value.code, caught.value.param) == (code, param)


def test_record_rules() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = ApiKeyRecord("key_x", "uid", None, "n", "sandbox", "mpg_test_...abcd", at)
    assert record.due_for_use_mark(at, 60)
    used = record.used(at)
    assert not used.due_for_use_mark(at + timedelta(seconds=59), 60)
    assert used.due_for_use_mark(at + timedelta(seconds=60), 60)
    revoked = used.revoke(at + timedelta(seconds=5))
    assert revoked.revoked and revoked.revoke(at + timedelta(hours=1)).revoked_at == at + timedelta(seconds=5)
