"""The one guard for everything that trusts the local stack, over every combination of its inputs.

Emulator tokens (unsigned), the emulators (no credentials) and plain-HTTP URLs (secrets in clear) are allowed only
where a runtime signal that production cannot have says this is the local stack: a `demo-` project id, or
FUNCTIONS_EMULATOR=true with no Cloud Run service identity (K_SERVICE, K_REVISION, K_CONFIGURATION). Anything else
is refused at every level: the settings, the HTTP boundary of every function (the unauthenticated callback too), the
authenticator and the Secret Manager adapter.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import flask
import pytest

from gateway import errors
from gateway.auth import FirebaseAuthenticator
from gateway.http import ApiResponse, Call, Developer, serve
from gateway.secrets import SecretManagerBackend
from gateway.settings import Settings, get_settings
from scripts import stack_config

# Every variable the guard reads, so each case starts from nothing but its own.
GUARD_INPUTS = (
    "GCLOUD_PROJECT",
    "GOOGLE_CLOUD_PROJECT",
    "GCP_PROJECT",
    "FUNCTIONS_EMULATOR",
    "K_SERVICE",
    "K_REVISION",
    "K_CONFIGURATION",
    "FIREBASE_AUTH_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "SECRET_MANAGER_EMULATOR_HOST",
    "DARAJA_SANDBOX_BASE_URL",
    "DARAJA_PRODUCTION_BASE_URL",
    "CALLBACK_BASE_URL",
    "HOSTING_URL",
    "GATEWAY_FAULT_INJECTION",
)

# Each setting that trusts the local stack, alone; None is "none of them".
LOCAL_STACK_SETTINGS: dict[str, dict[str, str] | None] = {
    "nothing-local": None,
    "auth-emulator": {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"},
    "secret-manager-emulator": {"SECRET_MANAGER_EMULATOR_HOST": "127.0.0.1:8086"},
    "firestore-emulator": {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"},
    "http-daraja-sandbox": {"DARAJA_SANDBOX_BASE_URL": "http://127.0.0.1:8089"},
    "http-daraja-production": {"DARAJA_PRODUCTION_BASE_URL": "http://daraja.example"},
    "http-callback": {"CALLBACK_BASE_URL": "http://pay.example.com/mpesa_callback"},
    "http-hosting": {"HOSTING_URL": "http://127.0.0.1:5000"},
    "fault-injection": {"GATEWAY_FAULT_INJECTION": "true"},
}


def _case(demo: bool, functions_emulator: bool, k_service: bool, local: dict[str, str] | None) -> dict[str, str]:
    env = {"GCLOUD_PROJECT": "demo-mpesa-gateway" if demo else "acme-pay"}
    if functions_emulator:
        env["FUNCTIONS_EMULATOR"] = "true"
    if k_service:
        env["K_SERVICE"] = "stk_push"
    env.update(local or {})
    return env


def _expected_allowed(demo: bool, functions_emulator: bool, k_service: bool, local: dict[str, str] | None) -> bool:
    """The rule, stated once: trusted where production cannot be; untrusted only matters if something is local.
    FUNCTIONS_EMULATOR itself claims the local stack (and makes the default callback URL plain HTTP)."""
    trusted = demo or (functions_emulator and not k_service)
    uses_local_stack = local is not None or functions_emulator
    return trusted or not uses_local_stack


COMBINATIONS = [
    pytest.param(
        _case(demo, emulator, k_service, local),
        _expected_allowed(demo, emulator, k_service, local),
        id=f"{'demo' if demo else 'real'}-project"
        f"-{'emulator' if emulator else 'no-emulator'}-{'k_service' if k_service else 'no-k_service'}-{name}",
    )
    for demo, emulator, k_service, (name, local) in itertools.product(
        (True, False), (True, False), (True, False), LOCAL_STACK_SETTINGS.items()
    )
]


def _env_local() -> dict[str, str]:
    """functions/.env.local, which the Functions emulator loads into every worker."""
    return stack_config.functions_local_env()


def _emulator_worker(project_id: str) -> dict[str, str]:
    """A Python worker's environment under `make dev`, as firebase-tools 15 writes it (functionsEmulator.js:
    getSystemEnvs and getEmulatorEnvs): note K_SERVICE and K_REVISION, which Cloud Run also sets."""
    return {
        **_env_local(),
        "GCLOUD_PROJECT": project_id,
        "K_REVISION": "1",
        "K_SERVICE": "developer_credentials",
        "FUNCTION_TARGET": "developer_credentials",
        "FUNCTION_SIGNATURE_TYPE": "http",
        "FUNCTIONS_EMULATOR": "true",
        "FIREBASE_DEBUG_MODE": "true",
        "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080",
        "FIREBASE_EMULATOR_HUB": "127.0.0.1:4400",
    }


CLOUD_RUN = {"GCLOUD_PROJECT": "acme-pay", "K_SERVICE": "stk-push", "K_REVISION": "stk-push-00003-abc"}

NAMED_CASES = [
    pytest.param(_emulator_worker("demo-mpesa-gateway"), True, id="make-dev-worker"),
    pytest.param(_emulator_worker("acme-pay"), False, id="emulator-worker-against-a-real-project"),
    pytest.param(
        {"GCLOUD_PROJECT": "acme-pay", "FUNCTIONS_EMULATOR": "true", "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"},
        True,
        id="emulator-variables-without-cloud-run",
    ),
    pytest.param(
        {**CLOUD_RUN, "FUNCTIONS_EMULATOR": "true", "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"},
        False,
        id="the-issue-emulator-variables-on-cloud-run",
    ),
    pytest.param(CLOUD_RUN, True, id="production"),
    pytest.param({**CLOUD_RUN, **_env_local()}, False, id="production-with-env-local-copied-in"),
    pytest.param(
        {"GCLOUD_PROJECT": "acme-pay", "K_REVISION": "x-1", "FUNCTIONS_EMULATOR": "true"}, False, id="k-revision-only"
    ),
    pytest.param(
        {"GCLOUD_PROJECT": "acme-pay", "K_CONFIGURATION": "x", "FUNCTIONS_EMULATOR": "true"},
        False,
        id="k-configuration-only",
    ),
    pytest.param(
        {**CLOUD_RUN, "GCLOUD_PROJECT": "demo-x", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:8080"},
        True,
        id="demo-project-with-k-service",
    ),
    pytest.param(
        {"GCLOUD_PROJECT": "my-demo-project", "SECRET_MANAGER_EMULATOR_HOST": "127.0.0.1:8086"},
        False,
        id="demo-not-as-prefix",
    ),
    pytest.param({"SECRET_MANAGER_EMULATOR_HOST": "127.0.0.1:8086"}, False, id="no-project-id"),
    pytest.param(
        {**CLOUD_RUN, "CALLBACK_BASE_URL": "https://pay.example.com/cb"}, True, id="production-https-callback"
    ),
]

ALL_CASES = COMBINATIONS + NAMED_CASES


@pytest.fixture
def process_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Sets the process environment to exactly one case's guard inputs, as a deployed function would see it."""

    def use(env: dict[str, str]) -> None:
        for name in GUARD_INPUTS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


# --- the settings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "allowed"), ALL_CASES)
def test_the_settings_decide(env: dict[str, str], allowed: bool) -> None:
    settings = Settings.from_env(env)
    reason = settings.unsafe_configuration()

    assert (reason is None) is allowed
    if reason is not None:
        for name in settings.local_stack_in_use():
            assert name in reason
        # Variables are named, their values (hosts, URLs) never written.
        for value in env.values():
            if ":" in value or "." in value:
                assert value not in reason


@pytest.mark.parametrize(("env", "allowed"), ALL_CASES)
def test_assert_safe_raises_a_503_and_logs_the_reason_at_critical(
    env: dict[str, str], allowed: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env(env)
    if allowed:
        settings.assert_safe()
        assert _log_lines(capsys) == []
        return
    with pytest.raises(errors.ServiceUnavailable) as caught:
        settings.assert_safe()
    assert (caught.value.http_status, caught.value.code) == (503, "unsafe_configuration")
    [line] = _log_lines(capsys)
    assert (line["severity"], line["event"]) == ("CRITICAL", "unsafe_configuration_refused")
    assert line["reason"] == settings.unsafe_configuration()
    assert line["project_id"] == settings.project_id


@pytest.mark.parametrize(
    ("env", "in_use"),
    [
        ({"GCLOUD_PROJECT": "acme-pay"}, ()),
        ({"GCLOUD_PROJECT": "acme-pay", "FUNCTIONS_EMULATOR": "true"}, ("FUNCTIONS_EMULATOR", "CALLBACK_BASE_URL")),
        (
            {"GCLOUD_PROJECT": "acme-pay", "FUNCTIONS_EMULATOR": "true", "CALLBACK_BASE_URL": "https://tunnel.example"},
            ("FUNCTIONS_EMULATOR",),
        ),
        (
            {**CLOUD_RUN, **_env_local()},
            (
                "SECRET_MANAGER_EMULATOR_HOST",
                "DARAJA_SANDBOX_BASE_URL",
                "DARAJA_PRODUCTION_BASE_URL",
                "CALLBACK_BASE_URL",
                "HOSTING_URL",
                "GATEWAY_FAULT_INJECTION",
            ),
        ),
    ],
    ids=[
        "nothing",
        "functions-emulator-and-its-default-callback",
        "functions-emulator-with-https-callback",
        "env-local",
    ],
)
def test_local_stack_in_use_names_each_variable(env: dict[str, str], in_use: tuple[str, ...]) -> None:
    assert Settings.from_env(env).local_stack_in_use() == in_use


# --- the HTTP boundary of every function -----------------------------------------------------------------------------

_flask_app = flask.Flask(__name__)


class _Authenticated:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, authorization: str | None) -> Developer:
        self.calls += 1
        return Developer("dev-1")


@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "unauthenticated-callback"])
@pytest.mark.parametrize(("env", "allowed"), ALL_CASES)
def test_serve_refuses_exactly_the_unsafe_cases(
    process_env: Any, env: dict[str, str], allowed: bool, authenticated: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    process_env(env)
    authenticate = _Authenticated() if authenticated else None

    def handler(call: Call) -> ApiResponse:
        uid = call.developer.uid if authenticated else None
        return ApiResponse(200, {"uid": uid, "body": call.json()})

    with _flask_app.test_request_context(
        "/fn/tok", method="POST", data=b'{"n": 1}', headers={"Authorization": "Bearer a.b.c"}
    ):
        response = serve(
            flask.request, methods=("POST",), handler=handler, max_body_bytes=1024, authenticate=authenticate
        )

    body = json.loads(response.get_data(as_text=True))
    lines = _log_lines(capsys)
    if allowed:
        assert response.status_code == 200, body
        assert body["body"] == {"n": 1}
        assert lines == []
        return
    assert response.status_code == 503
    assert (body["error"]["type"], body["error"]["code"]) == ("api_error", "unsafe_configuration")
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert authenticate is None or authenticate.calls == 0
    assert [line["event"] for line in lines] == ["unsafe_configuration_refused", "request_failed"]
    assert lines[0]["severity"] == "CRITICAL"


def test_every_function_refuses_through_the_api_module(process_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HTTP function as main.py wires it, the unauthenticated callback included."""
    from gateway import api, container

    def no_gateway() -> Any:
        raise AssertionError("an unsafe configuration must not build the gateway")

    monkeypatch.setattr(container, "gateway", no_gateway)
    monkeypatch.setattr(container, "webhooks", no_gateway)
    monkeypatch.setattr(container, "_authenticator", None)
    monkeypatch.setattr(container, "_api_keys", None)
    process_env({**CLOUD_RUN, "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099", "FUNCTIONS_EMULATOR": "true"})

    calls = [
        (api.developer_credentials, "GET", "/developer_credentials"),
        (api.developer_credentials, "PUT", "/developer_credentials"),
        (api.stk_push, "POST", "/stk_push"),
        (api.payment_status, "GET", "/payment_status"),
        (api.mpesa_callback, "POST", "/mpesa_callback/some-token"),
        (api.api_keys, "GET", "/api_keys"),
        (api.api_keys, "POST", "/api_keys"),
        (api.webhook_endpoints, "GET", "/webhook_endpoints"),
        (api.events, "GET", "/events"),
    ]
    for function, method, path in calls:
        with _flask_app.test_request_context(
            path, method=method, data=b"{}", headers={"Authorization": "Bearer a.b.c"}
        ):
            response = function(flask.request)
        assert response.status_code == 503, (path, method)
        assert json.loads(response.get_data(as_text=True))["error"]["code"] == "unsafe_configuration"


# --- the authenticator and the Secret Manager adapter ---------------------------------------------------------------


@pytest.mark.parametrize(("env", "allowed"), ALL_CASES)
def test_the_authenticator_refuses_before_verifying(env: dict[str, str], allowed: bool) -> None:
    settings = Settings.from_env(env)

    def no_app() -> Any:
        raise AssertionError("no token may be verified here")

    authenticate = FirebaseAuthenticator(settings, app_factory=no_app)
    expected: type[errors.GatewayError] = errors.AuthenticationError if allowed else errors.ServiceUnavailable
    with pytest.raises(expected):
        authenticate(None)  # past the guard, a missing token is a 401 that needs no App


@pytest.mark.parametrize(("env", "allowed"), [case for case in ALL_CASES if not case.values[1]])
def test_secret_manager_is_never_reached_from_an_unsafe_configuration(env: dict[str, str], allowed: bool) -> None:
    """The scheduled reconcile has no HTTP boundary: without a client no secret is read, so none can be sent to a
    plain-HTTP Daraja URL either."""
    backend = SecretManagerBackend(Settings.from_env(env))
    with pytest.raises(errors.ServiceUnavailable) as caught:
        backend.access_latest("daraja-credentials-" + "0" * 64)
    assert caught.value.code == "unsafe_configuration"
