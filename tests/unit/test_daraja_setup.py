"""The pure rules of per-environment Daraja set-ups: migration of the single-set layout, ordering by secret version,
tombstones, choosing the set a push uses (select_setup) and the environment a call acts in (resolve_environment)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import errors
from gateway.domain.daraja_setup import entries_of, setups_of, supersedes, tombstone, with_setup
from gateway.domain.errors import ValidationError
from gateway.domain.validation import canonical_fingerprint, parse_environment, parse_stk_push_request
from gateway.http import Developer
from gateway.services.common import resolve_environment, select_setup

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def setup(environment: str, version: str | None, shortcode: str = "174379") -> dict[str, Any]:
    return {
        "environment": environment,
        "shortcode": shortcode,
        "transaction_type": "CustomerPayBillOnline",
        "party_b": shortcode,
        "consumer_key_hint": "ckey...1234",
        "verified_at": NOW,
        "updated_at": NOW,
        "secret_version": version,
    }


OLD_LAYOUT = {k: v for k, v in setup("production", None, "600555").items() if k != "secret_version"}


# ------------------------------------------------------------------------------------------- migration on read
def test_the_single_set_layout_reads_as_that_environments_set() -> None:
    assert setups_of(OLD_LAYOUT) == {"production": {**OLD_LAYOUT, "secret_version": None}}
    assert setups_of({**OLD_LAYOUT, "environment": "sandbox"})["sandbox"]["shortcode"] == "600555"


@pytest.mark.parametrize("raw", [None, {}, [], "text", {"environment": "staging", "shortcode": "1"}, {"x": {}}])
def test_nothing_usable_reads_as_no_set(raw: object) -> None:
    assert setups_of(raw) == {}


def test_the_new_layout_lists_sandbox_first_and_drops_tombstones() -> None:
    raw = {
        "production": setup("production", "3", "600555"),
        "sandbox": setup("sandbox", "2"),
    }
    assert list(setups_of(raw)) == ["sandbox", "production"]
    raw["sandbox"] = tombstone("sandbox", "2", raw["sandbox"], NOW)
    assert list(setups_of(raw)) == ["production"]
    assert "sandbox" in entries_of(raw), "the tombstone is kept: it still orders later writes"


# ---------------------------------------------------------------------------------------- ordering by version
@pytest.mark.parametrize(
    ("version", "stored", "lands"),
    [
        ("1", None, True),
        ("5", {"secret_version": None}, True),  # the old layout never blocks a versioned PUT
        ("5", {"secret_version": "4"}, True),
        ("5", {"secret_version": "5"}, False),
        ("5", {"secret_version": "6"}, False),
        ("10", {"secret_version": "9"}, True),  # numbers, not strings: "10" > "9"
        ("9", {"secret_version": "10"}, False),
    ],
)
def test_a_set_up_replaces_only_an_older_version(version: str, stored: dict[str, Any] | None, lands: bool) -> None:
    assert supersedes(version, stored) is lands


def test_with_setup_keeps_the_other_environment_and_refuses_an_older_version() -> None:
    entries = {"sandbox": setup("sandbox", "4"), "production": setup("production", "2", "600555")}
    assert with_setup(entries, setup("sandbox", "3")) is None
    after = with_setup(entries, setup("sandbox", "5"))
    assert after is not None
    assert after["sandbox"]["secret_version"] == "5" and after["production"] == entries["production"]


def test_a_tombstone_blocks_every_version_it_destroyed() -> None:
    grave = tombstone("sandbox", "7", setup("sandbox", "6"), NOW)
    assert grave == {"environment": "sandbox", "secret_version": "7", "deleted_at": NOW}
    assert with_setup({"sandbox": grave}, setup("sandbox", "7")) is None
    assert with_setup({"sandbox": grave}, setup("sandbox", "8")) is not None
    # The stored version counts when it is the newer one (a PUT landed after the DELETE listed the versions).
    assert tombstone("sandbox", "7", setup("sandbox", "9"), NOW)["secret_version"] == "9"


# --------------------------------------------------------------------------------------------- select_setup
BOTH = {"daraja": {"sandbox": setup("sandbox", "1"), "production": setup("production", "1", "600555")}}
ONLY_PRODUCTION = {"daraja": {"production": setup("production", "1", "600555")}}


@pytest.mark.parametrize(
    ("record", "environment", "chosen"),
    [
        (BOTH, None, "sandbox"),  # both: sandbox, so a push never moves real money by accident
        (BOTH, "production", "production"),
        (BOTH, "sandbox", "sandbox"),
        (ONLY_PRODUCTION, None, "production"),  # the only one
        ({"daraja": OLD_LAYOUT}, None, "production"),
        ({"daraja": OLD_LAYOUT}, "production", "production"),
    ],
)
def test_select_setup(record: dict[str, Any], environment: str | None, chosen: str) -> None:
    assert select_setup(record, environment)["environment"] == chosen


@pytest.mark.parametrize(
    ("record", "environment", "param"),
    [
        ({"daraja": None}, None, None),
        ({}, "sandbox", "environment"),
        (ONLY_PRODUCTION, "sandbox", "environment"),
        ({"daraja": {"sandbox": tombstone("sandbox", "3", None, NOW)}}, None, None),
    ],
)
def test_select_setup_without_that_set_is_not_configured(
    record: dict[str, Any], environment: str | None, param: str | None
) -> None:
    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        select_setup(record, environment)
    assert raised.value.http_status == 404 and raised.value.param == param


# ---------------------------------------------------------------------------------------- resolve_environment
ID_TOKEN = Developer("dev_1")
TEST_KEY = Developer("dev_1", environment="sandbox", api_key_id="key_1")
LIVE_KEY = Developer("dev_1", environment="production", api_key_id="key_2")


@pytest.mark.parametrize(
    ("requested", "developer", "resolved"),
    [
        (None, ID_TOKEN, None),
        ("production", ID_TOKEN, "production"),
        (None, TEST_KEY, "sandbox"),
        ("sandbox", TEST_KEY, "sandbox"),
        (None, LIVE_KEY, "production"),
        ("production", LIVE_KEY, "production"),
    ],
)
def test_resolve_environment(requested: str | None, developer: Developer, resolved: str | None) -> None:
    assert resolve_environment(requested, developer) == resolved


@pytest.mark.parametrize(("requested", "developer"), [("production", TEST_KEY), ("sandbox", LIVE_KEY)])
def test_a_key_asking_for_the_other_environment_is_403(requested: str, developer: Developer) -> None:
    with pytest.raises(errors.PermissionDenied) as raised:
        resolve_environment(requested, developer)
    assert (raised.value.http_status, raised.value.code, raised.value.param) == (
        403,
        "environment_mismatch",
        "environment",
    )


# ------------------------------------------------------------------------------------ the push body's field
ORDER = {"phone": "0712345678", "amount": 10, "account_reference": "INV-1", "description": "Order 1"}


def test_the_push_body_may_name_an_environment() -> None:
    assert parse_stk_push_request(ORDER, 150_000).environment is None
    assert parse_stk_push_request({**ORDER, "environment": "production"}, 150_000).environment == "production"
    with pytest.raises(ValidationError) as raised:
        parse_stk_push_request({**ORDER, "environment": "live"}, 150_000)
    assert (raised.value.code, raised.value.param) == ("invalid_environment", "environment")


def test_the_fingerprint_tells_environments_apart_and_keeps_old_ones() -> None:
    plain = canonical_fingerprint(parse_stk_push_request(ORDER, 150_000))
    sandbox = canonical_fingerprint(parse_stk_push_request({**ORDER, "environment": "sandbox"}, 150_000))
    production = canonical_fingerprint(parse_stk_push_request({**ORDER, "environment": "production"}, 150_000))
    assert len({plain, sandbox, production}) == 3
    # The fingerprint of a body without the field is the one stored before the field existed.
    import hashlib
    import json

    canonical = {"phone": "254712345678", "amount": 10, "account_reference": "INV-1", "description": "Order 1"}
    text = json.dumps({**canonical, "metadata": {}}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plain == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("value", ["staging", 1, ["sandbox"], "SANDBOX"])
def test_an_unknown_environment_is_400(value: object) -> None:
    with pytest.raises(ValidationError):
        parse_environment(value)
