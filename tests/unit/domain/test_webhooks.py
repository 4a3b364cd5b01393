"""gateway.domain.webhooks: endpoint URL rules, the SSRF address check, what an answer means, the retry schedule,
Retry-After, and the endpoint and delivery entities. Pure: no network."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.errors import ValidationError
from gateway.domain.webhooks import (
    MAX_ATTEMPTS,
    RETRY_SCHEDULE_S,
    Attempt,
    Delivery,
    WebhookEndpoint,
    is_public_address,
    next_delay,
    parse_endpoint_url,
    parse_retry_after,
    requested_wait,
    verdict_for,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # the metadata server
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd00:ec2::254",  # AWS's IPv6 metadata address
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "ff02::1",
        "not-an-address",
        "",
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "196.201.214.200", "2001:4860:4860::8888", "::ffff:8.8.8.8", "172.32.0.1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(address)


def test_https_urls_are_accepted_and_split() -> None:
    url = parse_endpoint_url("https://hooks.example.com:8443/mpesa?src=gw", allow_local=False)
    assert (url.scheme, url.host, url.port, url.target) == ("https", "hooks.example.com", 8443, "/mpesa?src=gw")
    assert parse_endpoint_url("https://example.com", allow_local=False).target == "/"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("http://example.com/hook", "insecure_url"),
        ("http://127.0.0.1:8000/hook", "insecure_url"),
        ("https://127.0.0.1/hook", "url_not_public"),
        ("https://localhost/hook", "url_not_public"),
        ("https://169.254.169.254/latest/meta-data", "url_not_public"),
        ("https://[::1]/hook", "url_not_public"),
        ("https://10.0.0.5/hook", "url_not_public"),
        ("https://metadata.google.internal/computeMetadata", "url_not_public"),
        ("ftp://example.com/hook", "invalid_url"),
        ("https://user:pw@example.com/hook", "invalid_url"),
        ("https://example.com/hook#frag", "invalid_url"),
        ("https://example.com:99999/hook", "invalid_url"),
        ("https:///hook", "invalid_url"),
        ("https://exa mple.com/", "invalid_url"),
        ("https://example.com/" + "a" * 2100, "invalid_url"),
        ("https://bücher.example/", "invalid_url"),
        ("", "invalid_url"),
        (None, "invalid_url"),
        (42, "invalid_url"),
    ],
)
def test_bad_urls_are_refused_in_production(raw: object, code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_endpoint_url(raw, allow_local=False)
    assert refused.value.code == code and refused.value.param == "url"


def test_the_local_stack_may_use_plain_http_to_loopback_only() -> None:
    url = parse_endpoint_url("http://127.0.0.1:8000/hook", allow_local=True)
    assert (url.scheme, url.port) == ("http", 8000)
    with pytest.raises(ValidationError):
        parse_endpoint_url("http://example.com/hook", allow_local=True)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (410, "gone"),
        (301, "retry"),
        (400, "retry"),
        (404, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (None, "retry"),
    ],
)
def test_what_an_answer_means(status: int | None, verdict: str) -> None:
    assert verdict_for(status) == verdict


def test_the_schedule_is_standard_webhooks_and_scales() -> None:
    assert RETRY_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert [next_delay(n, 1.0) for n in range(1, MAX_ATTEMPTS)] == list(RETRY_SCHEDULE_S[1:])
    assert next_delay(MAX_ATTEMPTS, 1.0) is None
    assert next_delay(2, 0.01) == pytest.approx(3.0)
    # Retry-After wins when it asks for longer, never shortens the schedule.
    assert next_delay(1, 1.0, 60.0) == 60.0
    assert next_delay(3, 1.0, 60.0) == 1800.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Tue, 01 Dec 2026 12:01:00 GMT", 60.0),
        ("Tue, 01 Dec 2026 11:00:00 GMT", 0.0),
        ("99999999", 86400.0),
        ("-5", None),
        ("soon", None),
        ("1e9", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(("status", "wait"), [(429, 120.0), (503, 120.0), (500, None), (200, None), (None, None)])
def test_retry_after_is_heeded_only_on_429_and_503(status: int | None, wait: float | None) -> None:
    assert requested_wait(status, "120", NOW) == wait
    assert requested_wait(status, None, NOW) is None


def endpoint() -> WebhookEndpoint:
    return WebhookEndpoint("we_1", "https://example.com/h", "", ("*",), "enabled", NOW, NOW, "1")


def test_rotation_signs_with_both_versions_until_the_overlap_ends() -> None:
    rotated = endpoint().rotated("2", NOW, 24 * 3600)
    assert rotated.signing_versions(NOW) == ("2", "1")
    assert rotated.signing_versions(NOW + timedelta(hours=23, minutes=59)) == ("2", "1")
    assert rotated.signing_versions(NOW + timedelta(hours=24)) == ("2",)
    assert endpoint().signing_versions(NOW) == ("1",)


def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_a_success_resets_it() -> None:
    window = 5 * 24 * 3600.0
    failing = endpoint().failed(NOW, window)
    assert failing.failing_since == NOW and failing.status == "enabled"
    still = failing.failed(NOW + timedelta(days=4), window)
    assert still.status == "enabled" and still.failing_since == NOW
    assert failing.succeeded(NOW + timedelta(days=4)).failing_since is None
    disabled = still.failed(NOW + timedelta(days=5), window)
    assert (disabled.status, disabled.disabled_reason) == ("disabled", "failing")
    assert endpoint().gone(NOW).disabled_reason == "gone"
    assert disabled.gone(NOW + timedelta(days=6)) == disabled  # already disabled: keeps its reason


def attempt(status: int | None) -> Attempt:
    return Attempt(NOW, "we_1", "https://example.com/h", status, 12, "", None, "automatic", 1)


def test_a_delivery_retries_on_the_schedule_then_fails() -> None:
    delivery = Delivery.first("evt_1", "we_1", "payment.succeeded", NOW)
    now = NOW
    for failures in range(1, MAX_ATTEMPTS):
        delivery = delivery.claim(now, 45).recorded(attempt(500), "retry", now, 1.0, None)
        assert delivery.status == "pending" and delivery.failures == failures
        assert delivery.next_attempt_at == now + timedelta(seconds=RETRY_SCHEDULE_S[failures])
        now = delivery.next_attempt_at
    delivery = delivery.claim(now, 45).recorded(attempt(500), "retry", now, 1.0, None)
    assert delivery.status == "failed" and len(delivery.attempts) == MAX_ATTEMPTS
    resent = delivery.resent(now)
    assert (resent.status, resent.failures, resent.trigger, len(resent.attempts)) == ("pending", 0, "manual", 10)


def test_a_claimed_delivery_is_leased() -> None:
    claimed = Delivery.first("evt_1", "we_1", "payment.succeeded", NOW).claim(NOW, 45)
    assert claimed.leased(NOW + timedelta(seconds=44)) and not claimed.leased(NOW + timedelta(seconds=45))
    assert claimed.recorded(attempt(200), "delivered", NOW, 1.0, None).status == "succeeded"
    assert claimed.recorded(attempt(410), "gone", NOW, 1.0, None).status == "failed"
    assert claimed.cancelled(NOW).finished


@pytest.mark.parametrize(
    ("bound_to", "event_environment", "receives"),
    [
        (None, "sandbox", True),
        (None, "production", True),
        ("sandbox", "sandbox", True),
        ("sandbox", "production", False),
        ("production", "sandbox", False),
        ("production", None, False),
    ],
)
def test_an_endpoint_receives_only_its_environments_events(
    bound_to: str | None, event_environment: str | None, receives: bool
) -> None:
    bound = dataclasses.replace(endpoint(), environment=bound_to)
    assert bound.receives("payment.succeeded", event_environment) is receives
    assert dataclasses.replace(bound, status="disabled").receives("payment.succeeded", event_environment) is False
    unsubscribed = dataclasses.replace(bound, enabled_events=("payment.failed",))
    assert unsubscribed.receives("payment.succeeded", "sandbox") is False


def test_a_key_sees_only_its_environments_endpoints_and_an_id_token_all() -> None:
    sandbox = dataclasses.replace(endpoint(), environment="sandbox")
    account_wide = endpoint()
    assert sandbox.visible_to(None) and account_wide.visible_to(None)
    assert sandbox.visible_to("sandbox") and not sandbox.visible_to("production")
    assert not account_wide.visible_to("sandbox")
