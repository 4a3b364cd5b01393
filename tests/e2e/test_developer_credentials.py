"""developer_credentials over HTTP through the Functions emulator, with developers signed up in the Auth emulator
and Daraja apps registered in the simulator."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from tests import support

URL = support.function_url("developer_credentials")


def put(developer: support.SignedUpDeveloper, body: Any) -> requests.Response:
    return requests.put(URL, json=body, headers=developer.headers, timeout=30)


def get(developer: support.SignedUpDeveloper, environment: str = "sandbox") -> requests.Response:
    return requests.get(URL, params={"environment": environment}, headers=developer.headers, timeout=30)


def listed(developer: support.SignedUpDeveloper) -> dict[str, Any]:
    response = requests.get(URL, headers=developer.headers, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["object"] == "list"
    return body


def assert_error(response: requests.Response, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert error["request_id"].startswith("req_")
    if param is not None:
        assert error.get("param") == param, error
    return dict(error)


@pytest.fixture
def alice() -> support.SignedUpDeveloper:
    return support.sign_up()


@pytest.fixture
def bob() -> support.SignedUpDeveloper:
    return support.sign_up()


def test_two_developers_each_see_only_their_own_masked_credentials(
    alice: support.SignedUpDeveloper, bob: support.SignedUpDeveloper
) -> None:
    app_a, app_b = support.register_simulator_app(), support.register_simulator_app()

    stored_a = put(alice, app_a.credentials_body())
    stored_b = put(bob, app_b.credentials_body(transaction_type="CustomerBuyGoodsOnline", party_b="5432109"))
    assert stored_a.status_code == 200, stored_a.text
    assert stored_b.status_code == 200, stored_b.text

    view_a, view_b = get(alice).json(), get(bob).json()
    assert view_a["shortcode"] == app_a.shortcode
    assert view_b["shortcode"] == app_b.shortcode
    assert view_b["transaction_type"] == "CustomerBuyGoodsOnline" and view_b["party_b"] == "5432109"
    assert view_a["party_b"] == app_a.shortcode
    assert view_a["consumer_key_hint"] == f"{app_a.consumer_key[:4]}...{app_a.consumer_key[-4:]}"
    assert view_a["verified_at"] and view_a["environment"] == "sandbox"
    for view, app in ((view_a, app_a), (view_b, app_b)):
        text = json.dumps(view)
        assert app.consumer_secret not in text and app.passkey not in text and app.consumer_key not in text
    # Neither view mentions the other developer's app.
    assert app_b.shortcode not in json.dumps(view_a) and app_a.shortcode not in json.dumps(view_b)


def test_credentials_are_written_to_secret_manager_under_the_uid_and_environment_only(
    alice: support.SignedUpDeveloper,
) -> None:
    app = support.register_simulator_app()
    assert put(alice, app.credentials_body()).status_code == 200
    client = support.secret_manager_client()
    # One secret per developer and environment, so a sandbox payment can still be queried after a move to production.
    name = f"{support.daraja_secret_name(alice.uid, 'sandbox')}/versions/latest"
    payload = json.loads(client.access_secret_version(name=name).payload.data)
    assert payload == {"consumer_key": app.consumer_key, "consumer_secret": app.consumer_secret, "passkey": app.passkey}


def test_another_developer_cannot_read_replace_or_delete_credentials_by_any_input(
    alice: support.SignedUpDeveloper, bob: support.SignedUpDeveloper
) -> None:
    app_a = support.register_simulator_app()
    assert put(alice, app_a.credentials_body()).status_code == 200
    before = get(alice).json()

    # Bob knows Alice's uid and tries to point every input at it.
    attempts = [
        requests.get(URL, params={"uid": alice.uid}, headers=bob.headers, timeout=30),
        requests.get(f"{URL}/{alice.uid}", headers=bob.headers, timeout=30),
        requests.get(URL, headers={**bob.headers, "X-Developer-Id": alice.uid}, timeout=30),
        requests.delete(URL, params={"uid": alice.uid}, headers=bob.headers, timeout=30),
        requests.delete(f"{URL}/{alice.uid}", headers=bob.headers, timeout=30),
    ]
    for response in attempts:
        # Bob only ever reaches his own (empty) set-up.
        assert response.status_code in (200, 404), response.text
        assert app_a.shortcode not in response.text

    with_uid = put(bob, {**support.register_simulator_app().credentials_body(), "uid": alice.uid})
    assert_error(with_uid, 400, "unknown_parameter", "uid")
    assert get(alice).json() == before


def test_put_replaces_and_delete_destroys(alice: support.SignedUpDeveloper) -> None:
    first, second = support.register_simulator_app(), support.register_simulator_app()
    assert put(alice, first.credentials_body()).status_code == 200
    assert put(alice, second.credentials_body()).json()["shortcode"] == second.shortcode
    assert get(alice).json()["shortcode"] == second.shortcode

    deleted = requests.delete(URL, headers=alice.headers, timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"object": "developer_credentials", "deleted": True}
    assert_error(get(alice), 404, "credentials_not_configured")
    assert listed(alice)["data"] == []


def test_get_without_credentials_is_404_and_the_list_is_empty(alice: support.SignedUpDeveloper) -> None:
    assert_error(get(alice), 404, "credentials_not_configured", "environment")
    assert_error(get(alice, "production"), 404, "credentials_not_configured", "environment")
    assert listed(alice) == {"object": "list", "data": []}


def test_an_unknown_environment_is_400(alice: support.SignedUpDeveloper) -> None:
    assert_error(get(alice, "staging"), 400, "invalid_environment", "environment")
    response = requests.delete(URL, params={"environment": "live"}, headers=alice.headers, timeout=30)
    assert_error(response, 400, "invalid_environment", "environment")


def test_both_environments_side_by_side_listed_read_and_deleted_one_at_a_time(
    alice: support.SignedUpDeveloper,
) -> None:
    sandbox, production = support.register_simulator_app(), support.register_simulator_app()
    assert put(alice, sandbox.credentials_body()).status_code == 200
    assert put(alice, {**production.credentials_body(), "environment": "production"}).status_code == 200

    body = listed(alice)
    assert [(view["environment"], view["shortcode"]) for view in body["data"]] == [
        ("sandbox", sandbox.shortcode),
        ("production", production.shortcode),
    ]
    assert all(view["object"] == "developer_credentials" for view in body["data"])
    assert get(alice, "production").json()["shortcode"] == production.shortcode
    assert "secret_version" not in json.dumps(body), "bookkeeping stays inside"

    deleted = requests.delete(URL, params={"environment": "production"}, headers=alice.headers, timeout=30)
    assert deleted.json() == {"object": "developer_credentials", "deleted": True}
    assert [view["environment"] for view in listed(alice)["data"]] == ["sandbox"]
    assert_error(get(alice, "production"), 404, "credentials_not_configured")
    assert get(alice).json()["shortcode"] == sandbox.shortcode


def test_keys_rejected_by_daraja_are_422_and_nothing_is_stored(alice: support.SignedUpDeveloper) -> None:
    app = support.register_simulator_app()
    response = put(alice, app.credentials_body(consumer_secret="wrong-secret-value"))
    assert_error(response, 422, "daraja_credentials_rejected")
    assert_error(get(alice), 404, "credentials_not_configured")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("environment", "staging", "invalid_environment"),
        ("shortcode", "12ab", "invalid_shortcode"),
        ("shortcode", 174379, "invalid_shortcode"),
        ("transaction_type", "CustomerPay", "invalid_transaction_type"),
        ("consumer_key", "", "invalid_consumer_key"),
        ("consumer_secret", None, "invalid_consumer_secret"),
        ("passkey", "short", "invalid_passkey"),
        ("party_b", "x" * 20, "invalid_party_b"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    alice: support.SignedUpDeveloper, field: str, value: Any, code: str
) -> None:
    body = support.register_simulator_app().credentials_body(**{field: value})
    error = assert_error(put(alice, body), 400, code, field)
    assert error["type"] == "invalid_request_error"


def test_missing_field_is_400(alice: support.SignedUpDeveloper) -> None:
    body = support.register_simulator_app().credentials_body()
    del body["passkey"]
    assert_error(put(alice, body), 400, "missing_parameter", "passkey")


def test_buy_goods_requires_party_b(alice: support.SignedUpDeveloper) -> None:
    body = support.register_simulator_app().credentials_body(transaction_type="CustomerBuyGoodsOnline")
    assert_error(put(alice, body), 400, "missing_parameter", "party_b")


@pytest.mark.parametrize(
    ("make_headers", "code"),
    [
        (lambda: {}, "missing_token"),
        (lambda: {"Authorization": "Bearer not-a-jwt"}, "malformed_authorization"),
        (lambda: {"Authorization": "Bearer abc.def.ghi"}, "invalid_token"),
        (lambda: {"Authorization": "Basic dXNlcjpwYXNz"}, "malformed_authorization"),
    ],
)
def test_requests_without_a_valid_token_are_401(make_headers: Any, code: str) -> None:
    response = requests.get(URL, headers=make_headers(), timeout=30)
    error = assert_error(response, 401, code)
    assert error["type"] == "authentication_error"


def test_token_of_a_deleted_user_is_401() -> None:
    developer = support.sign_up()
    support.delete_auth_user(developer)
    assert_error(get(developer), 401, "invalid_token")


def test_wrong_method_is_405(alice: support.SignedUpDeveloper) -> None:
    response = requests.post(URL, json={}, headers=alice.headers, timeout=30)
    assert_error(response, 405, "method_not_allowed")
    assert "PUT" in response.headers["Allow"]


def test_body_over_16_kb_is_413(alice: support.SignedUpDeveloper) -> None:
    body = support.register_simulator_app().credentials_body(passkey="p" * 17_000)
    assert_error(put(alice, body), 413, "body_too_large")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2", b"null"])
def test_invalid_json_is_400(alice: support.SignedUpDeveloper, raw: bytes) -> None:
    response = requests.put(URL, data=raw, headers={**alice.headers, "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_body")


def test_no_secret_in_any_firestore_document_or_response(
    alice: support.SignedUpDeveloper, bob: support.SignedUpDeveloper
) -> None:
    apps = [support.register_simulator_app(), support.register_simulator_app()]
    responses = [put(alice, apps[0].credentials_body()), put(bob, apps[1].credentials_body())]
    responses += [get(alice), get(bob)]
    secrets_used = [value for app in apps for value in (app.consumer_secret, app.passkey)]
    for response in responses:
        for value in secrets_used:
            assert value not in response.text

    client = support.firestore_client()
    dumped = []
    for developer_doc in client.collection("developers").stream():
        dumped.append(json.dumps(developer_doc.to_dict(), default=str))
        for sub in developer_doc.reference.collections():
            for doc in sub.stream():
                dumped.append(json.dumps(doc.to_dict(), default=str))
    for top in client.collections():
        for doc in top.stream():
            dumped.append(json.dumps(doc.to_dict(), default=str))
    everything = "\n".join(dumped)
    assert alice.uid in everything  # the scan really saw our documents
    for value in secrets_used:
        assert value not in everything
        assert base64.b64encode(value.encode()).decode() not in everything


def test_no_secret_in_any_log_line(alice: support.SignedUpDeveloper) -> None:
    from pathlib import Path

    app = support.register_simulator_app()
    assert put(alice, app.credentials_body()).status_code == 200
    assert get(alice).status_code == 200
    logs = [Path(".stack/firebase.log"), Path(".stack/daraja.log"), Path(".stack/secret-manager.log")]

    def read_logs() -> str:
        return "\n".join(path.read_text(errors="replace") for path in logs if path.exists())

    support.wait_for(lambda: alice.uid in read_logs(), what="the functions' log lines for this developer")
    text = read_logs()
    for value in (app.consumer_secret, app.passkey, alice.id_token):
        assert value not in text
