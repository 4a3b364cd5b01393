"""Who may be a developer, over HTTP through the Functions emulator with users of the Auth emulator.

Anonymous sign-ins are refused by every authenticated function (403 `anonymous_not_allowed`). E-mail sign-ups may
develop even though the Auth emulator never verifies their address, because REQUIRE_VERIFIED_EMAIL is off in the
local stack (tests/unit/test_auth.py covers it turned on, with tokens signed by a local key).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests import support

AUTH_API = f"http://{support.AUTH_HOST}/identitytoolkit.googleapis.com/v1"
API_KEY = {"key": "fake-api-key"}  # the Auth emulator accepts any API key


@dataclass(frozen=True)
class AnonymousUser:
    uid: str
    id_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token}"}


@pytest.fixture
def anonymous() -> Iterator[AnonymousUser]:
    # No e-mail and no password: the Auth emulator signs the user in anonymously, as signInAnonymously() does.
    response = requests.post(
        f"{AUTH_API}/accounts:signUp", params=API_KEY, json={"returnSecureToken": True}, timeout=10
    )
    response.raise_for_status()
    body = response.json()
    user = AnonymousUser(body["localId"], body["idToken"])
    yield user
    requests.post(
        f"{AUTH_API}/accounts:delete", params=API_KEY, json={"idToken": user.id_token}, timeout=10
    ).raise_for_status()


def _claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def assert_error(response: requests.Response, status: int, error_type: str, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (error_type, code), error
    assert error["request_id"] == response.headers["X-Request-Id"]
    return dict(error)


def test_an_anonymous_sign_in_cannot_read_developer_credentials(anonymous: AnonymousUser) -> None:
    assert _claims(anonymous.id_token)["firebase"]["sign_in_provider"] == "anonymous"  # what the gateway checks

    response = requests.get(support.function_url("developer_credentials"), headers=anonymous.headers, timeout=30)

    error = assert_error(response, 403, "permission_error", "anonymous_not_allowed")
    assert "anonymous" in error["message"]
    # A 403, not a 401: the token is genuine, so there is no point in asking for another one.
    assert "WWW-Authenticate" not in response.headers
    assert anonymous.id_token not in response.text


@pytest.mark.parametrize(
    ("function", "method"),
    [
        ("developer_credentials", "PUT"),
        ("developer_credentials", "DELETE"),
        ("stk_push", "POST"),
        ("payment_status", "GET"),
        ("api_keys", "GET"),
        ("api_keys", "POST"),
        ("webhook_endpoints", "GET"),
        ("events", "GET"),
    ],
)
def test_an_anonymous_sign_in_is_refused_by_every_authenticated_function(
    anonymous: AnonymousUser, function: str, method: str
) -> None:
    app = support.register_simulator_app()
    bodies = {
        "developer_credentials": app.credentials_body(),
        "stk_push": {"phone": support.unique_phone(), "amount": 10, "account_reference": "anon", "description": "x"},
        "api_keys": {"name": "anon", "environment": "sandbox"},
    }
    response = requests.request(
        method,
        support.function_url(function),
        json=bodies.get(function) if method in ("PUT", "POST") else None,
        headers=anonymous.headers,
        timeout=30,
    )

    assert_error(response, 403, "permission_error", "anonymous_not_allowed")


def test_an_unverified_email_sign_up_may_develop_in_the_local_stack() -> None:
    developer = support.sign_up()
    try:
        assert _claims(developer.id_token).get("email_verified") is False  # the Auth emulator never verifies

        response = requests.get(
            support.function_url("developer_credentials"),
            params={"environment": "sandbox"},
            headers=developer.headers,
            timeout=30,
        )

        # Past authentication: this developer simply has no credentials yet.
        assert_error(response, 404, "invalid_request_error", "credentials_not_configured")
    finally:
        support.delete_auth_user(developer)
