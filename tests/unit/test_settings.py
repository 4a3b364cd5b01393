"""Settings.from_env with explicit environments: defaults, overrides, refusals and the emulator rules."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.settings import PRODUCTION_BASE_URL, SANDBOX_BASE_URL, Settings, SettingsError

BASE = {"GCLOUD_PROJECT": "acme-pay"}


def _from(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_defaults_match_the_dataclass_defaults() -> None:
    settings = Settings.from_env(BASE)

    assert settings == Settings(
        project_id="acme-pay", callback_base_url="https://us-central1-acme-pay.cloudfunctions.net/mpesa_callback"
    )
    # Spelled out as well, so a changed dataclass default cannot silently change production behaviour.
    assert settings.region == "us-central1"
    assert settings.functions_emulator is False
    assert (settings.auth_emulator_host, settings.firestore_emulator_host, settings.secret_manager_emulator_host) == (
        "",
        "",
        "",
    )
    assert settings.daraja_sandbox_url == SANDBOX_BASE_URL == "https://sandbox.safaricom.co.ke"
    assert settings.daraja_production_url == PRODUCTION_BASE_URL == "https://api.safaricom.co.ke"
    assert settings.daraja_timeout_s == 15.0
    assert settings.max_amount == 150_000
    assert settings.max_body_bytes == 16 * 1024
    assert settings.check_revoked_tokens is True
    assert settings.callback_allowed_ips == ()
    assert settings.trusted_proxy_hops == 1
    assert settings.service_identity == ""
    assert settings.require_verified_email is False
    assert settings.local_stack_trusted is False
    assert settings.local_stack_in_use() == ()
    assert settings.unsafe_configuration() is None


def test_settings_are_immutable() -> None:
    settings = Settings.from_env(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.project_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GCLOUD_PROJECT": "a", "GOOGLE_CLOUD_PROJECT": "b", "GCP_PROJECT": "c"}, "a"),
        ({"GOOGLE_CLOUD_PROJECT": "b", "GCP_PROJECT": "c"}, "b"),
        ({"GCP_PROJECT": "c"}, "c"),
        ({"GCLOUD_PROJECT": "", "GOOGLE_CLOUD_PROJECT": "b"}, "b"),
        ({}, ""),
    ],
)
def test_project_id_precedence(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env(env).project_id == expected


OVERRIDES: list[tuple[str, str, str, Any]] = [
    ("FUNCTION_REGION", "europe-west1", "region", "europe-west1"),
    ("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099", "auth_emulator_host", "127.0.0.1:9099"),
    ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8080", "firestore_emulator_host", "127.0.0.1:8080"),
    ("SECRET_MANAGER_EMULATOR_HOST", "127.0.0.1:8086", "secret_manager_emulator_host", "127.0.0.1:8086"),
    ("DARAJA_SANDBOX_BASE_URL", "http://127.0.0.1:8089/", "daraja_sandbox_url", "http://127.0.0.1:8089"),
    ("DARAJA_PRODUCTION_BASE_URL", "https://prod.example//", "daraja_production_url", "https://prod.example"),
    ("DARAJA_TIMEOUT_SECONDS", "2.5", "daraja_timeout_s", 2.5),
    ("CALLBACK_BASE_URL", "https://pay.example.com/cb/", "callback_base_url", "https://pay.example.com/cb"),
    ("MAX_AMOUNT", "70000", "max_amount", 70_000),
    ("CREDENTIAL_CACHE_TTL_SECONDS", "0", "credential_cache_ttl_s", 0.0),
    ("CREDENTIAL_CACHE_MAX_ENTRIES", "10", "credential_cache_max_entries", 10),
    ("OAUTH_TOKEN_MARGIN_SECONDS", "120", "oauth_token_margin_s", 120.0),
    ("OAUTH_CACHE_MAX_ENTRIES", "7", "oauth_cache_max_entries", 7),
    ("PENDING_QUERY_AFTER_SECONDS", "5", "pending_query_after_s", 5.0),
    ("PENDING_QUERY_INTERVAL_SECONDS", "6", "pending_query_interval_s", 6.0),
    ("RECONCILE_AFTER_SECONDS", "600", "reconcile_after_s", 600.0),
    ("TRUSTED_PROXY_HOPS", "2", "trusted_proxy_hops", 2),
    ("TRUSTED_PROXY_HOPS", "0", "trusted_proxy_hops", 0),
    ("MAX_AMOUNT", " 500 ", "max_amount", 500),
    ("API_KEY_CACHE_MAX_ENTRIES", "9", "api_key_cache_max_entries", 9),
    ("PUSH_LEASE_SECONDS", "45", "push_lease_s", 45.0),
    ("UNCONFIRMED_AFTER_SECONDS", "120", "unconfirmed_after_s", 120.0),
    ("REVOCATION_CHECK_CACHE_SECONDS", "0", "revocation_cache_ttl_s", 0.0),
    ("WEBHOOK_TIMEOUT_SECONDS", "3", "webhook_timeout_s", 3.0),
    ("WEBHOOK_RETRY_SCALE", "0.01", "webhook_retry_scale", 0.01),
    ("WEBHOOK_ROTATION_OVERLAP_SECONDS", "60", "webhook_rotation_overlap_s", 60.0),
    ("WEBHOOK_DISABLE_AFTER_SECONDS", "600", "webhook_disable_after_s", 600.0),
    ("WEBHOOK_MAX_ENDPOINTS", "3", "webhook_max_endpoints", 3),
    ("WEBHOOK_EARLY_TASK_WAIT_SECONDS", "2", "webhook_early_task_wait_s", 2.0),
    ("WEBHOOK_FAN_OUT_GRACE_SECONDS", "5", "webhook_fan_out_grace_s", 5.0),
    ("LIMIT_SHARDS", "4", "limit_shards", 4),
    ("PHONE_PROMPTS_PER_10_MINUTES", "2", "phone_prompts_per_10_min", 2),
    ("PHONE_IN_FLIGHT_SECONDS", "30", "phone_in_flight_s", 30.0),
    ("CREDENTIAL_PUTS_PER_MINUTE", "7", "credential_puts_per_minute", 7),
    ("PUSHES_PER_SECOND_PRODUCTION", "20", "push_limits", (("production", 20.0, 10_000), ("sandbox", 2.0, 1_000))),
    ("PUSHES_PER_DAY_PRODUCTION", "50", "push_limits", (("production", 10.0, 50), ("sandbox", 2.0, 1_000))),
    ("PUSHES_PER_SECOND_SANDBOX", "0.5", "push_limits", (("production", 10.0, 10_000), ("sandbox", 0.5, 1_000))),
    ("PUSHES_PER_DAY_SANDBOX", "5", "push_limits", (("production", 10.0, 10_000), ("sandbox", 2.0, 5))),
]


@pytest.mark.parametrize(("name", "raw", "attribute", "expected"), OVERRIDES, ids=[f"{o[0]}={o[1]}" for o in OVERRIDES])
def test_each_variable_overrides_its_setting(name: str, raw: str, attribute: str, expected: Any) -> None:
    settings = _from(**{name: raw})
    value = getattr(settings, attribute)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("name", ["DARAJA_SANDBOX_BASE_URL", "CALLBACK_BASE_URL", "MAX_AMOUNT"])
def test_blank_values_fall_back_to_defaults(name: str) -> None:
    assert _from(**{name: "   "}) == Settings.from_env(BASE)


NUMERIC = [
    "DARAJA_TIMEOUT_SECONDS",
    "MAX_AMOUNT",
    "CREDENTIAL_CACHE_TTL_SECONDS",
    "CREDENTIAL_CACHE_MAX_ENTRIES",
    "OAUTH_TOKEN_MARGIN_SECONDS",
    "OAUTH_CACHE_MAX_ENTRIES",
    "PENDING_QUERY_AFTER_SECONDS",
    "PENDING_QUERY_INTERVAL_SECONDS",
    "RECONCILE_AFTER_SECONDS",
    "TRUSTED_PROXY_HOPS",
]


@pytest.mark.parametrize("raw", ["abc", "12s", "1,000", "-1"])
@pytest.mark.parametrize("name", NUMERIC)
def test_unusable_numbers_raise_settings_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        _from(**{name: raw})


@pytest.mark.parametrize("raw", ["nan", "inf"])
@pytest.mark.parametrize("name", ["DARAJA_TIMEOUT_SECONDS", "MAX_AMOUNT"])
def test_non_finite_numbers_raise_settings_error(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        _from(**{name: raw})


@pytest.mark.parametrize("name", ["DARAJA_SANDBOX_BASE_URL", "DARAJA_PRODUCTION_BASE_URL", "CALLBACK_BASE_URL"])
@pytest.mark.parametrize("raw", ["ftp://example.com", "example.com/cb", "javascript:alert(1)", "HTTPS//x", "/relative"])
def test_non_http_urls_raise_settings_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        _from(**{name: raw})


@pytest.mark.parametrize(
    "name",
    [
        "PUSHES_PER_SECOND_PRODUCTION",
        "PUSHES_PER_DAY_SANDBOX",
        "LIMIT_SHARDS",
        "PHONE_PROMPTS_PER_10_MINUTES",
        "PHONE_IN_FLIGHT_SECONDS",
        "CREDENTIAL_PUTS_PER_MINUTE",
    ],
)
def test_a_zero_abuse_limit_is_a_settings_error_naming_the_variable(name: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} must be greater than zero"):
        _from(**{name: "0"})


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("false", False), ("False", False), ("FALSE", False), ("true", True), ("", True), ("0", True), ("no", True)],
)
def test_only_an_explicit_false_disables_revocation_checks(raw: str, expected: bool) -> None:
    assert _from(CHECK_REVOKED_TOKENS=raw).check_revoked_tokens is expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("True", True), ("TRUE", True), ("1", False), ("yes", False), ("", False)]
)
def test_functions_emulator_flag(raw: str, expected: bool) -> None:
    assert _from(FUNCTIONS_EMULATOR=raw).functions_emulator is expected


@pytest.mark.parametrize(
    ("project_id", "functions_emulator", "service_identity", "trusted"),
    [
        ("demo-mpesa-gateway", False, "", True),
        ("demo-x", True, "", True),
        ("demo-x", True, "developer_credentials", True),  # the Functions emulator's workers set K_SERVICE
        ("prod-project", True, "", True),
        ("prod-project", True, "developer_credentials", False),
        ("prod-project", False, "", False),
        ("my-demo-project", False, "", False),
        ("Demo-x", False, "", False),
        ("demo", False, "", False),
        ("", False, "", False),
    ],
)
def test_local_stack_trusted_matrix(
    project_id: str, functions_emulator: bool, service_identity: str, trusted: bool
) -> None:
    settings = Settings(project_id=project_id, functions_emulator=functions_emulator, service_identity=service_identity)
    assert settings.local_stack_trusted is trusted


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ""),
        ({"K_SERVICE": "stk_push"}, "stk_push"),
        ({"K_REVISION": "stk-push-00007-qux"}, "stk-push-00007-qux"),
        ({"K_CONFIGURATION": "stk-push"}, "stk-push"),
        ({"K_SERVICE": "stk_push", "K_REVISION": "1"}, "stk_push"),
        ({"K_SERVICE": ""}, ""),
    ],
)
def test_service_identity_comes_from_cloud_runs_variables(env: dict[str, str], expected: str) -> None:
    assert _from(**env).service_identity == expected


def test_local_stack_trusted_from_env() -> None:
    assert Settings.from_env({"GCLOUD_PROJECT": "demo-x", "K_SERVICE": "fn"}).local_stack_trusted is True
    assert _from(FUNCTIONS_EMULATOR="true").local_stack_trusted is True
    assert _from(FUNCTIONS_EMULATOR="true", K_SERVICE="fn").local_stack_trusted is False
    assert _from(FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099").local_stack_trusted is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", False),
        ("  ", False),
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
    ],
)
def test_require_verified_email_flag(raw: str, expected: bool) -> None:
    assert _from(REQUIRE_VERIFIED_EMAIL=raw).require_verified_email is expected


@pytest.mark.parametrize("raw", ["ture", "on", "2", "enabled"])
def test_an_unreadable_require_verified_email_is_a_settings_error(raw: str) -> None:
    # A typo must not silently leave unverified addresses allowed.
    with pytest.raises(SettingsError, match="REQUIRE_VERIFIED_EMAIL"):
        _from(REQUIRE_VERIFIED_EMAIL=raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        ("196.201.214.200", ("196.201.214.200",)),
        ("196.201.214.200,196.201.214.206", ("196.201.214.200", "196.201.214.206")),
        (" 196.201.214.200 , , 196.201.214.206 ,", ("196.201.214.200", "196.201.214.206")),
        (" , ", ()),
    ],
)
def test_callback_allowed_ips_parsing(raw: str, expected: tuple[str, ...]) -> None:
    assert _from(CALLBACK_ALLOWED_IPS=raw).callback_allowed_ips == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "https://us-central1-acme-pay.cloudfunctions.net/mpesa_callback"),
        ({"FUNCTION_REGION": "europe-west1"}, "https://europe-west1-acme-pay.cloudfunctions.net/mpesa_callback"),
        ({"FUNCTIONS_EMULATOR": "true"}, "http://127.0.0.1:5001/acme-pay/us-central1/mpesa_callback"),
        (
            {"FUNCTIONS_EMULATOR": "true", "FUNCTION_REGION": "europe-west1"},
            "http://127.0.0.1:5001/acme-pay/europe-west1/mpesa_callback",
        ),
        ({"FUNCTIONS_EMULATOR": "true", "CALLBACK_BASE_URL": "https://tunnel.example/cb"}, "https://tunnel.example/cb"),
        ({"CALLBACK_BASE_URL": "https://pay.example.com/hooks/"}, "https://pay.example.com/hooks"),
    ],
)
def test_default_callback_url_in_and_out_of_the_emulator(env: dict[str, str], expected: str) -> None:
    assert _from(**env).callback_base_url == expected


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("production", "https://prod.example"),
        ("sandbox", "https://sandbox.example"),
        ("other", "https://sandbox.example"),
    ],
)
def test_daraja_base_url_per_environment(environment: str, expected: str) -> None:
    settings = _from(
        DARAJA_SANDBOX_BASE_URL="https://sandbox.example", DARAJA_PRODUCTION_BASE_URL="https://prod.example"
    )
    assert settings.daraja_base_url(environment) == expected


def test_without_an_explicit_mapping_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCLOUD_PROJECT", "from-os-environ")
    monkeypatch.setenv("MAX_AMOUNT", "1234")
    settings = Settings.from_env()
    assert (settings.project_id, settings.max_amount) == ("from-os-environ", 1234)


def test_an_explicit_mapping_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    monkeypatch.setenv("MAX_AMOUNT", "1")
    settings = Settings.from_env(BASE)
    assert (settings.auth_emulator_host, settings.max_amount) == ("", 150_000)
