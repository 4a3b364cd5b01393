"""The running functions answer as openapi.yaml says: schemathesis sends generated requests (valid and invalid) to
every function through the Functions emulator and checks each answer's status, content type, headers and body
against the spec, and that none is a 5xx. Explicit cases then cover what generation cannot reach: missing
tokens, a payment's life from pending to settled, idempotent replays and a forged callback.

Bounded to a few dozen examples per operation so the whole module stays well under three minutes on two cores.
Generated STK pushes go to one payer whose prompt the Daraja simulator keeps open, so after the first real push
they are answered 409 `payer_busy` instead of creating payments by the hundred.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.domain.errors import ValidationError
from gateway.domain.phone import normalize_msisdn
from tests import support
from tests.tenants import new_tenant

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
# A deeper hunt: CONFORMANCE_MAX_EXAMPLES=500 pytest tests/e2e/test_openapi_conformance.py -k generated
EXAMPLES_PER_OPERATION = int(os.environ.get("CONFORMANCE_MAX_EXAMPLES", "40"))
REQUEST_TIMEOUT_S = 60


@schemathesis.check
def requests_reach_the_handler_as_the_fixture_developer(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Every generated request carries a valid token and the developer keeps their credentials all run long.

    Without this, a broken fixture would turn every answer into a (conformant) 401 or 404 and the run would pass
    while testing nothing.
    """
    if case.operation.path.startswith("/mpesa_callback/"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None  # content_type_conformance reports it
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if response.status_code == 401 or code == "credentials_not_configured":
        raise AssertionError(f"the fixture developer was refused: {response.status_code} {code}")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "base-url": support.FUNCTIONS_URL,
        "request-timeout": REQUEST_TIMEOUT_S,
        "generation": {
            # The fixture's real ID token is sent instead; tests/e2e covers missing and bad tokens below.
            "with-security-parameters": False,
            "database": "none",
        },
        "phases": {
            # 405s are not part of the spec (every function answers them the same way); stateful links neither.
            "coverage": {"unexpected-methods": []},
            "stateful": {"enabled": False},
        },
    }
)
schema = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG)


@dataclass
class ConformanceSession:
    developer: support.SignedUpDeveloper
    # DELETE developer_credentials goes to a second developer, so the first keeps its credentials all run long.
    deleting_developer: support.SignedUpDeveloper
    busy_phone: str
    pending_payment: dict[str, Any]

    def headers_for(self, case: schemathesis.Case) -> dict[str, str]:
        if case.operation.path.startswith("/mpesa_callback/"):
            return {}
        if case.operation.method.upper() == "DELETE":
            return self.deleting_developer.headers
        return self.developer.headers

    def route_pushes_to_busy_payer(self, case: schemathesis.Case) -> None:
        """A generated push with a usable phone number goes to the payer whose prompt is still open."""
        if case.operation.path != "/stk_push" or not isinstance(case.body, dict):
            return
        try:
            normalize_msisdn(case.body.get("phone"))
        except ValidationError:
            return  # an invalid number is what this case is testing: keep it
        case.body["phone"] = self.busy_phone

    @staticmethod
    def keep_callback_urls_routable(case: schemathesis.Case) -> None:
        """A newline in a path never reaches a function: functions-framework's router (werkzeug's `path`
        converter) answers its own text/html 404. The token's value does not matter to the gateway (only its hash
        is compared), so the newline becomes a space and the case still tests an unknown token.
        """
        # Every path parameter (the callback token, and the ids of webhook_endpoints and events).
        for name, token in list((case.path_parameters or {}).items()):
            if isinstance(token, str):
                # Generated path parameters may arrive already percent-encoded.
                routable = re.sub("%0a", "%20", token.replace("\n", " "), flags=re.IGNORECASE)
                if routable != token:
                    case.path_parameters[name] = routable


def _put_credentials(developer: support.SignedUpDeveloper, environment: str = "sandbox") -> None:
    app = support.register_simulator_app()
    response = requests.put(
        support.function_url("developer_credentials"),
        json={**app.credentials_body(), "environment": environment},
        headers=developer.headers,
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text


def _push(developer: support.SignedUpDeveloper, phone: str) -> requests.Response:
    body = {"phone": phone, "amount": 10, "account_reference": "OAS-1", "description": "Conformance"}
    return requests.post(
        support.function_url("stk_push"), json=body, headers=developer.headers, timeout=REQUEST_TIMEOUT_S
    )


@pytest.fixture(scope="session")
def conformance(stack: None) -> Iterator[ConformanceSession]:
    developer = support.sign_up()
    deleting_developer = support.sign_up()
    # Both environments' sets: generated requests may name either one.
    _put_credentials(developer)
    _put_credentials(developer, "production")
    _put_credentials(deleting_developer)
    busy_phone = support.unique_phone()
    # The payer "answers" only after five minutes: until then every push to this phone is refused as payer_busy.
    support.set_scenario(busy_phone, result_code=1032, delay_ms=300_000)
    first = _push(developer, busy_phone)
    assert first.status_code == 201, first.text
    yield ConformanceSession(developer, deleting_developer, busy_phone, first.json())


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_get_answers_the_spec_allows(
    case: schemathesis.Case, conformance: ConformanceSession
) -> None:
    conformance.route_pushes_to_busy_payer(case)
    conformance.keep_callback_urls_routable(case)
    case.call_and_validate(
        headers=conformance.headers_for(case),
        checks=[*CHECKS, requests_reach_the_handler_as_the_fixture_developer],
        timeout=REQUEST_TIMEOUT_S,
    )


# --------------------------------------------------------------------------------------------- explicit cases
def _call(operation: Any, **kwargs: Any) -> schemathesis.Response:
    """Send one hand-made case and validate its answer with the same checks as the generated ones."""
    headers = kwargs.pop("send_headers", None)
    case = operation.Case(**kwargs)
    response = case.call(headers=headers, timeout=REQUEST_TIMEOUT_S)
    case.validate_response(response, checks=CHECKS)
    return response


AUTHENTICATED = [
    ("/developer_credentials", "GET", {}),
    ("/developer_credentials", "PUT", {"body": {}}),
    ("/developer_credentials", "DELETE", {}),
    ("/stk_push", "POST", {"body": {}}),
    ("/payment_status", "GET", {}),
    ("/api_keys", "GET", {}),
    ("/api_keys", "POST", {"body": {}}),
    ("/webhook_endpoints", "GET", {}),
    ("/webhook_endpoints", "POST", {"body": {}}),
    ("/events", "GET", {}),
]


@pytest.mark.parametrize(("path", "method", "kwargs"), AUTHENTICATED, ids=[f"{m} {p}" for p, m, _ in AUTHENTICATED])
@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer not-a-jwt", "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer mpg_test_not-a-key"],
)
def test_missing_or_bad_tokens_get_a_documented_401(
    path: str, method: str, kwargs: dict[str, Any], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _call(schema[path][method], send_headers=headers, **kwargs)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"


def test_api_keys_conform_from_creation_to_revocation(conformance: ConformanceSession) -> None:
    """Create, list, read and revoke a key; use it on the developer-facing functions (with the second security
    scheme) and on api_keys itself (403); a revoked key and another developer's key id get their documented codes."""
    developer = support.sign_up()
    created = _call(
        schema["/api_keys"]["POST"], send_headers=developer.headers, body={"name": "oas", "environment": "sandbox"}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    listed = _call(schema["/api_keys"]["GET"], send_headers=developer.headers).json()
    assert [item["id"] for item in listed["data"]] == [key_id] and "key" not in listed["data"][0]
    one = _call(schema["/api_keys/{id}"]["GET"], send_headers=developer.headers, path_parameters={"id": key_id})
    assert one.json()["hint"] == created.json()["hint"]

    as_key = {"Authorization": f"Bearer {key}"}
    assert _call(schema["/payment_status"]["GET"], send_headers=as_key).status_code == 200
    refused = _call(schema["/api_keys"]["POST"], send_headers=as_key, body={"name": "x", "environment": "sandbox"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "api_key_not_allowed")
    foreign = _call(
        schema["/api_keys/{id}"]["DELETE"], send_headers=conformance.developer.headers, path_parameters={"id": key_id}
    )
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "api_key_not_found")

    revoked = _call(schema["/api_keys/{id}"]["DELETE"], send_headers=developer.headers, path_parameters={"id": key_id})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]

    def refused_as_revoked() -> bool:
        response = _call(schema["/payment_status"]["GET"], send_headers=as_key)
        return response.status_code == 401 and response.json()["error"]["code"] == "api_key_revoked"

    support.wait_for(refused_as_revoked, timeout_s=10, what="the revoked key to be refused")


def test_credentials_read_and_idempotent_delete_conform(conformance: ConformanceSession) -> None:
    developer = support.sign_up()
    headers = developer.headers
    missing = _call(schema["/developer_credentials"]["GET"], send_headers=headers, query={"environment": "sandbox"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "credentials_not_configured"
    empty = _call(schema["/developer_credentials"]["GET"], send_headers=headers)
    assert empty.json() == {"object": "list", "data": []}
    _put_credentials(developer)
    assert _call(schema["/developer_credentials"]["GET"], send_headers=headers).json()["data"][0]["object"] == (
        "developer_credentials"
    )
    one = _call(schema["/developer_credentials"]["GET"], send_headers=headers, query={"environment": "sandbox"})
    assert one.json()["object"] == "developer_credentials"
    wrong = _call(schema["/developer_credentials"]["GET"], send_headers=headers, query={"environment": "live"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_environment"
    first = _call(schema["/developer_credentials"]["DELETE"], send_headers=headers)
    again = _call(schema["/developer_credentials"]["DELETE"], send_headers=headers)
    assert (first.json()["deleted"], again.json()["deleted"]) == (True, False)
    push = _call(
        schema["/stk_push"]["POST"],
        send_headers=headers,
        body={"phone": support.unique_phone(), "amount": 1, "account_reference": "X", "description": "Y"},
    )
    assert push.status_code == 404
    assert push.json()["error"]["code"] == "credentials_not_configured"


def test_a_payment_conforms_from_pending_to_settled(conformance: ConformanceSession) -> None:
    phone = support.unique_phone()
    support.set_scenario(phone, result_code=0, delay_ms=200)
    created = _call(
        schema["/stk_push"]["POST"],
        send_headers=conformance.developer.headers,
        body={
            "phone": phone,
            "amount": 25,
            "account_reference": "OAS/2",
            "description": "Spec check",
            "metadata": {"order": "A-1", "n": 3, "ok": True, "none": None, "ratio": 0.5},
        },
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    status = schema["/payment_status"]["GET"]
    headers = conformance.developer.headers

    def settled() -> dict[str, Any] | None:
        body: dict[str, Any] = _call(status, send_headers=headers, query={"id": payment["id"]}).json()
        return body if body["status"] != "pending" else None

    final = support.wait_for(settled, timeout_s=30, what="the payment to settle")
    assert final["status"] == "succeeded"
    assert final["mpesa_receipt_number"] and final["settled_at"]
    by_checkout = _call(status, send_headers=headers, query={"checkout_request_id": payment["checkout_request_id"]})
    assert by_checkout.json()["id"] == payment["id"]
    page = _call(status, send_headers=headers, query={"limit": 1}).json()
    assert page["object"] == "list" and len(page["data"]) == 1 and page["has_more"] is True
    second = _call(status, send_headers=headers, query={"limit": 1, "page_token": page["next_page_token"]})
    assert second.json()["data"][0]["id"] != page["data"][0]["id"]
    pending = _call(status, send_headers=headers, query={"status": "pending"}).json()
    assert conformance.pending_payment["id"] in [p["id"] for p in pending["data"]]


def test_idempotent_replay_and_conflict_conform(conformance: ConformanceSession) -> None:
    operation = schema["/stk_push"]["POST"]
    key = f"oas-{secrets.token_hex(8)}"
    body = {"phone": support.unique_phone(), "amount": 7, "account_reference": "OAS-3", "description": "Replay"}
    headers = {**conformance.developer.headers, "Idempotency-Key": key}
    first = _call(operation, send_headers=headers, body=body)
    replay = _call(operation, send_headers=headers, body=body)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers.get("idempotent-replayed") == ["true"]
    assert "idempotent-replayed" not in first.headers
    assert replay.json() == first.json()
    conflict = _call(operation, send_headers=headers, body={**body, "amount": 8})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


def test_a_busy_phone_is_a_documented_429_for_its_developer_and_409_from_daraja_for_another(
    conformance: ConformanceSession,
) -> None:
    body = {"phone": conformance.busy_phone, "amount": 3, "account_reference": "OAS-4", "description": "Busy"}
    # The prompt on the phone is this developer's own: the gateway's phone lock answers before Daraja is called.
    limited = _call(schema["/stk_push"]["POST"], send_headers=conformance.developer.headers, body=body)
    assert limited.status_code == 429
    assert (limited.json()["error"]["code"], limited.json()["error"]["limit"]) == ("rate_limited", "phone_busy")
    # Another developer's push reaches Daraja, which refuses a second live prompt on the phone.
    other = new_tenant()
    busy = _call(schema["/stk_push"]["POST"], send_headers=other.headers, body=body)
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "payer_busy"


def test_a_forged_callback_for_a_real_payment_gets_a_documented_404(conformance: ConformanceSession) -> None:
    payment = conformance.pending_payment
    body = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": payment["merchant_request_id"],
                "CheckoutRequestID": payment["checkout_request_id"],
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": payment["amount"]},
                        {"Name": "MpesaReceiptNumber", "Value": "FORGED0001"},
                    ]
                },
            }
        }
    }
    forged = _call(
        schema["/mpesa_callback/{callback_token}"]["POST"],
        path_parameters={"callback_token": secrets.token_urlsafe(24)},
        body=body,
    )
    # An unknown URL token is refused (and quarantined) whatever CheckoutRequestID the body names.
    assert forged.status_code == 404
    assert forged.json()["error"]["code"] == "unknown_callback_token"


# ------------------------------------------------------------------------ found by fuzzing the running stack
# Inputs schemathesis does not generate (lone UTF-16 surrogates, Firestore-reserved names) that the gateway must
# still refuse with a documented 400, and without prompting anyone.
def _raw_push(conformance: ConformanceSession, raw_json: str) -> requests.Response:
    return requests.post(
        support.function_url("stk_push"),
        data=raw_json.encode("utf-8"),
        headers={**conformance.developer.headers, "Content-Type": "application/json"},
        timeout=REQUEST_TIMEOUT_S,
    )


def _assert_documented_400(response: requests.Response) -> None:
    assert response.status_code == 400, (
        f"{response.status_code} {response.headers.get('Content-Type')}: {response.text[:300]}"
    )
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["request_id"] == response.headers["X-Request-Id"]


def _pushes_to(phone: str) -> list[dict[str, Any]]:
    return [r for r in support.simulator_requests(kind="stk_push") if r.get("phone") == phone]


def test_a_lone_surrogate_in_metadata_is_a_400(conformance: ConformanceSession) -> None:
    phone = support.unique_phone()
    body = f'{{"phone":"{phone}","amount":5,"account_reference":"A","description":"B","metadata":{{"a":"\\ud800"}}}}'
    _assert_documented_400(_raw_push(conformance, body))
    assert _pushes_to(phone) == []


def test_an_unknown_parameter_named_with_a_lone_surrogate_is_a_json_400(conformance: ConformanceSession) -> None:
    _assert_documented_400(_raw_push(conformance, '{"\\ud800": 1}'))


def test_a_firestore_reserved_metadata_key_is_refused_before_the_payer_is_prompted(
    conformance: ConformanceSession,
) -> None:
    phone = support.unique_phone()
    body = f'{{"phone":"{phone}","amount":5,"account_reference":"A","description":"B","metadata":{{"__a__":1}}}}'
    _assert_documented_400(_raw_push(conformance, body))
    assert _pushes_to(phone) == [], "the payer was prompted for a payment the gateway then failed to record"
