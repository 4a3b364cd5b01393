"""The running local stack, exercised with the real client libraries the gateway uses in production.

- Firestore emulator through `google-cloud-firestore`: write/read, concurrent transactions, collection-group query.
- Auth emulator ID tokens verified by `firebase-admin` (`auth.verify_id_token`, with and without check_revoked).
- Secret Manager emulator through `google-cloud-secret-manager` over REST: round trip, CRC32C, error statuses.
- Daraja simulator through `requests`: OAuth, STK push with a real callback to a listener started here, STK query,
  and one rejection per push validation rule.

Nothing here resets shared state: every test uses its own collection names, secret ids, Daraja app and phones.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import google_crc32c
import pytest
import requests

from gateway.domain.daraja_password import nairobi_timestamp, stk_password
from tests import support

PROJECT_ID = support.PROJECT_ID


# ================================================================================================== Firestore
@pytest.fixture(scope="module")
def db() -> Any:
    client = support.firestore_client()  # sets FIRESTORE_EMULATOR_HOST from the stack's env if it is missing
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == support.FIRESTORE_HOST
    return client


@pytest.fixture
def token() -> str:
    return secrets.token_hex(5)


def test_firestore_write_then_read_back(db: Any, token: str) -> None:
    from google.cloud import firestore

    ref = db.collection(f"it_docs_{token}").document("doc-1")
    ref.set({"name": "first", "amount": 10, "tags": ["a", "b"], "nested": {"ok": True}})
    ref.update({"amount": firestore.Increment(5), "updated_at": firestore.SERVER_TIMESTAMP})
    try:
        snapshot = ref.get()
        assert snapshot.exists
        data = snapshot.to_dict()
        assert data["name"] == "first"
        assert data["amount"] == 15
        assert data["tags"] == ["a", "b"]
        assert data["nested"] == {"ok": True}
        assert isinstance(data["updated_at"], datetime)
        assert not db.collection(f"it_docs_{token}").document("missing").get().exists
    finally:
        ref.delete()
    assert not ref.get().exists


def test_firestore_transactions_from_ten_threads_lose_no_update(db: Any, token: str) -> None:
    """10 threads read-modify-write one counter. All first attempts read 0 before any commits (a barrier between
    read and commit), so the emulator must abort at least 9 of them; the retries must still land every increment.

    The emulator resolves lock conflicts only by a ~2 s "Transaction lock timeout" that aborts every waiter, so
    retries that start within ~2 s of each other deadlock again (firebase-tools issues #6758, #8300). The client's
    built-in immediate retry (max_attempts>1) therefore livelocks here: 10 threads with max_attempts=50 failed after
    ~100 s, and a 0-0.3 s jitter livelocked too. Each retry is a fresh transaction after a random pause of up to
    1-4 s, which takes ~3 s in total.
    """
    from google.api_core import exceptions
    from google.cloud import firestore

    threads = 10
    ref = db.collection(f"it_counters_{token}").document("counter")
    ref.set({"count": 0})
    first_reads_done = threading.Barrier(threads, timeout=30)
    attempts: list[int] = []
    seen: list[int] = []
    lock = threading.Lock()

    @firestore.transactional
    def increment(transaction: Any, first_attempt: bool) -> None:
        current = ref.get(transaction=transaction).get("count")
        with lock:
            attempts.append(1)
            seen.append(current)
        if first_attempt:
            first_reads_done.wait()
        transaction.update(ref, {"count": current + 1})

    def worker(_: int) -> int:
        rng = random.Random()
        deadline = time.monotonic() + 90
        attempt = 0
        while time.monotonic() < deadline:
            try:
                increment(db.transaction(max_attempts=1), attempt == 0)
                return attempt + 1
            except (ValueError, exceptions.Aborted):
                attempt += 1
                time.sleep(rng.uniform(0.0, min(attempt, 4)))
        raise AssertionError(f"an increment never committed in 90 s ({attempt} attempts)")

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            tries = list(pool.map(worker, range(threads)))
        assert ref.get().get("count") == threads
        assert seen.count(0) >= threads  # every first attempt read the initial value...
        assert len(attempts) >= 2 * threads - 1  # ...so at least 9 of them had to be aborted and retried
        assert sum(tries) == len(attempts)
    finally:
        ref.delete()


def test_firestore_collection_group_query_spans_parents(db: Any, token: str) -> None:
    group = f"it_{token}"
    roots = db.collection(f"it_parents_{token}")
    written = [
        roots.document("parent-a").collection(group).document("child-1"),
        roots.document("parent-a").collection(group).document("child-2"),
        roots.document("parent-b").collection(group).document("child-3"),
    ]
    for index, ref in enumerate(written):
        ref.set({"index": index, "kind": "odd" if index % 2 else "even"})
    # A same-named collection at the root also belongs to the group.
    top_level = db.collection(group).document("root-child")
    top_level.set({"index": 99, "kind": "even"})
    try:
        found = {snap.reference.path for snap in db.collection_group(group).stream()}
        assert found == {ref.path for ref in [*written, top_level]}
        parents = {
            snap.reference.parent.parent.id
            for snap in db.collection_group(group).stream()
            if snap.reference.parent.parent
        }
        assert parents == {"parent-a", "parent-b"}

        evens = db.collection_group(group).where(filter=_field_filter("kind", "==", "even")).stream()
        assert {snap.id for snap in evens} == {"child-1", "child-3", "root-child"}
    finally:
        for ref in [*written, top_level]:
            ref.delete()


def _field_filter(field: str, op: str, value: Any) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(field, op, value)


# ================================================================================================== Auth
@pytest.fixture(scope="module")
def admin_app() -> Iterator[Any]:
    import firebase_admin

    assert os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"), "run with the stack's env (scripts/stack.py env)"
    app = firebase_admin.initialize_app(options={"projectId": PROJECT_ID}, name=f"it-stack-{secrets.token_hex(4)}")
    yield app
    firebase_admin.delete_app(app)


def test_auth_emulator_token_verifies_with_firebase_admin(admin_app: Any) -> None:
    from firebase_admin import auth

    developer = support.sign_up()
    try:
        claims = auth.verify_id_token(developer.id_token, app=admin_app)
        assert claims["uid"] == developer.uid
        assert claims["email"] == developer.email
        assert claims["aud"] == PROJECT_ID
        checked = auth.verify_id_token(developer.id_token, app=admin_app, check_revoked=True)
        assert checked["uid"] == developer.uid
        assert auth.get_user(developer.uid, app=admin_app).email == developer.email
    finally:
        support.delete_auth_user(developer)


def test_check_revoked_rejects_a_deleted_user(admin_app: Any) -> None:
    from firebase_admin import auth

    developer = support.sign_up()
    support.delete_auth_user(developer)
    with pytest.raises(auth.UserNotFoundError):
        auth.verify_id_token(developer.id_token, app=admin_app, check_revoked=True)
    # Without check_revoked the emulator token still "verifies": the emulator path checks no signature or user.
    assert auth.verify_id_token(developer.id_token, app=admin_app)["uid"] == developer.uid


# ================================================================================================== Secret Manager
@pytest.fixture(scope="module")
def secret_client() -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"http://{support.SECRET_MANAGER_HOST}"),
        credentials=AnonymousCredentials(),
    )


@pytest.fixture
def secret_name(secret_client: Any) -> Iterator[str]:
    secret_id = f"it-secret-{secrets.token_hex(6)}"
    secret = secret_client.create_secret(
        request={
            "parent": f"projects/{PROJECT_ID}",
            "secret_id": secret_id,
            "secret": {"replication": {"automatic": {}}, "labels": {"suite": "integration"}},
        }
    )
    yield secret.name
    from google.api_core import exceptions

    try:
        secret_client.delete_secret(request={"name": secret.name})
    except exceptions.NotFound:
        pass


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.Checksum(data).hexdigest(), 16)


def test_secret_round_trip_with_crc32c(secret_client: Any, secret_name: str) -> None:
    assert secret_name.startswith(f"projects/{PROJECT_ID}/secrets/it-secret-")
    assert secret_client.get_secret(request={"name": secret_name}).labels["suite"] == "integration"

    first = b'{"consumer_key": "ck-1"}'
    second = b'{"consumer_key": "ck-2", "unicode": "\xc3\xa9"}'
    v1 = secret_client.add_secret_version(
        request={"parent": secret_name, "payload": {"data": first, "data_crc32c": _crc32c(first)}}
    )
    v2 = secret_client.add_secret_version(
        request={"parent": secret_name, "payload": {"data": second, "data_crc32c": _crc32c(second)}}
    )
    assert v1.name == f"{secret_name}/versions/1"
    assert v2.name == f"{secret_name}/versions/2"

    latest = secret_client.access_secret_version(request={"name": f"{secret_name}/versions/latest"})
    assert latest.name == v2.name
    assert latest.payload.data == second
    assert latest.payload.data_crc32c == _crc32c(latest.payload.data)

    older = secret_client.access_secret_version(request={"name": v1.name})
    assert older.payload.data == first
    assert older.payload.data_crc32c == _crc32c(first)


def test_a_payload_with_a_wrong_crc32c_is_refused(secret_client: Any, secret_name: str) -> None:
    from google.api_core import exceptions

    data = b"payload"
    with pytest.raises(exceptions.BadRequest) as raised:
        secret_client.add_secret_version(
            request={"parent": secret_name, "payload": {"data": data, "data_crc32c": _crc32c(data) ^ 1}}
        )
    assert raised.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_a_missing_secret_is_not_found(secret_client: Any) -> None:
    from google.api_core import exceptions

    missing = f"projects/{PROJECT_ID}/secrets/it-never-created-{secrets.token_hex(6)}"
    with pytest.raises(exceptions.NotFound) as raised:
        secret_client.access_secret_version(request={"name": f"{missing}/versions/latest"})
    assert raised.value.response.json()["error"]["status"] == "NOT_FOUND"
    with pytest.raises(exceptions.NotFound):
        secret_client.get_secret(request={"name": missing})


def test_a_disabled_version_cannot_be_accessed(secret_client: Any, secret_name: str) -> None:
    from google.api_core import exceptions
    from google.cloud import secretmanager

    version = secret_client.add_secret_version(request={"parent": secret_name, "payload": {"data": b"v1"}})
    disabled = secret_client.disable_secret_version(request={"name": version.name})
    assert disabled.state == secretmanager.SecretVersion.State.DISABLED

    for name in (version.name, f"{secret_name}/versions/latest"):
        with pytest.raises(exceptions.BadRequest) as raised:
            secret_client.access_secret_version(request={"name": name})
        error = raised.value.response.json()["error"]
        assert error["status"] == "FAILED_PRECONDITION"
        assert error["code"] == 400
        assert "DISABLED" in error["message"]

    secret_client.enable_secret_version(request={"name": version.name})
    assert secret_client.access_secret_version(request={"name": version.name}).payload.data == b"v1"


# ================================================================================================== Daraja
DARAJA = support.DARAJA_URL


@pytest.fixture(scope="module")
def listener() -> Iterator[support.CallbackListener]:
    server = support.CallbackListener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def daraja_app() -> support.DarajaApp:
    return support.register_simulator_app()


def oauth_token(app: support.DarajaApp) -> str:
    response = requests.get(
        f"{DARAJA}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(app.consumer_key, app.consumer_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["expires_in"], str) and int(body["expires_in"]) > 0
    return str(body["access_token"])


@pytest.fixture(scope="module")
def access_token(daraja_app: support.DarajaApp) -> str:
    return oauth_token(daraja_app)


def push_body(app: support.DarajaApp, phone: str, callback_url: str, **overrides: Any) -> dict[str, Any]:
    timestamp = nairobi_timestamp(datetime.now(UTC))
    body: dict[str, Any] = {
        "BusinessShortCode": app.shortcode,
        "Password": stk_password(app.shortcode, app.passkey, timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 10,
        "PartyA": phone,
        "PartyB": app.shortcode,
        "PhoneNumber": phone,
        "CallBackURL": callback_url,
        "AccountReference": "INV-1",
        "TransactionDesc": "Order 1",
    }
    body.update(overrides)
    return body


def stk_push(token: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{DARAJA}/mpesa/stkpush/v1/processrequest",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def stk_query(token: str, app: support.DarajaApp, checkout_request_id: str) -> requests.Response:
    timestamp = nairobi_timestamp(datetime.now(UTC))
    return requests.post(
        f"{DARAJA}/mpesa/stkpushquery/v1/query",
        json={
            "BusinessShortCode": app.shortcode,
            "Password": stk_password(app.shortcode, app.passkey, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_oauth_rejects_wrong_credentials_and_grant(daraja_app: support.DarajaApp) -> None:
    bad = requests.get(
        f"{DARAJA}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=(daraja_app.consumer_key, "not-the-secret"),
        timeout=10,
    )
    assert bad.status_code == 400
    assert bad.json()["errorCode"] == "400.008.01"
    grant = requests.get(
        f"{DARAJA}/oauth/v1/generate",
        params={"grant_type": "password"},
        auth=(daraja_app.consumer_key, daraja_app.consumer_secret),
        timeout=10,
    )
    assert grant.status_code == 400
    assert grant.json()["errorCode"] == "400.008.02"


def test_stk_push_delivers_the_callback_and_query_follows_it(
    daraja_app: support.DarajaApp, access_token: str, listener: support.CallbackListener
) -> None:
    phone = support.unique_phone()
    callback_url = listener.new_url("/callbacks")
    # The payer "answers" after 1.5 s, so the first query lands while the prompt is still open.
    support.set_scenario(phone, result_code=0, delay_ms=1500, callbacks=1)

    response = stk_push(access_token, push_body(daraja_app, phone, callback_url, Amount=25))
    assert response.status_code == 200, response.text
    accepted = response.json()
    assert accepted["ResponseCode"] == "0"
    assert accepted["CheckoutRequestID"].startswith("ws_CO_")
    checkout_request_id = accepted["CheckoutRequestID"]
    merchant_request_id = accepted["MerchantRequestID"]

    pending = stk_query(access_token, daraja_app, checkout_request_id)
    assert pending.status_code == 500, pending.text
    assert pending.json()["errorCode"] == "500.001.1001"
    assert pending.json()["errorMessage"] == "The transaction is being processed"

    [body] = listener.wait_for(callback_url)
    callback = body["Body"]["stkCallback"]
    assert callback["MerchantRequestID"] == merchant_request_id
    assert callback["CheckoutRequestID"] == checkout_request_id
    assert callback["ResultCode"] == 0
    assert callback["ResultDesc"] == "The service request is processed successfully."
    items = {item["Name"]: item.get("Value") for item in callback["CallbackMetadata"]["Item"]}
    assert set(items) == {"Amount", "MpesaReceiptNumber", "Balance", "TransactionDate", "PhoneNumber"}
    assert items["Amount"] == 25.0
    assert isinstance(items["MpesaReceiptNumber"], str) and len(items["MpesaReceiptNumber"]) == 10
    assert items["Balance"] is None
    assert isinstance(items["TransactionDate"], int) and len(str(items["TransactionDate"])) == 14
    assert items["PhoneNumber"] == int(phone)

    result = stk_query(access_token, daraja_app, checkout_request_id)
    assert result.status_code == 200, result.text
    answer = result.json()
    assert answer["ResponseCode"] == "0"
    assert answer["CheckoutRequestID"] == checkout_request_id
    assert answer["MerchantRequestID"] == merchant_request_id
    assert answer["ResultCode"] == "0"
    assert answer["ResultDesc"] == "The service request is processed successfully."

    deliveries = support.wait_for(
        lambda: support.simulator_callbacks(checkout_request_id), what="the simulator's delivery record"
    )
    assert len(deliveries) == 1
    assert deliveries[0]["url"] == callback_url
    assert deliveries[0]["status"] == 200
    assert len(listener.bodies(callback_url)) == 1


def test_a_failed_payment_callback_has_no_metadata(
    daraja_app: support.DarajaApp, access_token: str, listener: support.CallbackListener
) -> None:
    phone = support.unique_phone()
    callback_url = listener.new_url("/callbacks")
    response = stk_push(access_token, push_body(daraja_app, phone, callback_url, Amount=1032))
    assert response.status_code == 200, response.text
    [body] = listener.wait_for(callback_url)
    callback = body["Body"]["stkCallback"]
    assert callback["CheckoutRequestID"] == response.json()["CheckoutRequestID"]
    assert callback["ResultCode"] == 1032
    assert callback["ResultDesc"] == "Request cancelled by user"
    assert "CallbackMetadata" not in callback


def _utc_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


INVALID = "400.002.02"
# rule -> (body overrides, HTTP status, errorCode, errorMessage); "token" and "timestamp-in-utc" are built in the test.
REJECTIONS: dict[str, tuple[dict[str, Any], int, str, str]] = {
    "token": ({}, 404, "404.001.03", "Invalid Access Token"),
    "password": ({"Password": "d3JvbmctcGFzc3dvcmQ="}, 500, "500.001.1001", "Wrong credentials"),
    "timestamp-in-utc": ({}, 400, INVALID, "Bad Request - Invalid Timestamp"),
    "transaction-type": ({"TransactionType": "CustomerPayBill"}, 400, INVALID, "Bad Request - Invalid TransactionType"),
    "decimal-amount": ({"Amount": 1.0}, 400, INVALID, "Bad Request - Invalid Amount"),
    "amount-over-limit": ({"Amount": 150_001}, 400, INVALID, "Bad Request - Invalid Amount"),
    "phone-07": ({"PhoneNumber": "0712345678"}, 400, INVALID, "Bad Request - Invalid PhoneNumber"),
    "account-reference-13": ({"AccountReference": "A" * 13}, 400, INVALID, "Bad Request - Invalid AccountReference"),
    "transaction-desc-14": ({"TransactionDesc": "D" * 14}, 400, INVALID, "Bad Request - Invalid TransactionDesc"),
    "callback-ftp": ({"CallBackURL": "ftp://127.0.0.1/callback"}, 400, INVALID, "Bad Request - Invalid CallBackURL"),
}


@pytest.mark.parametrize("rule", list(REJECTIONS))
def test_stk_push_rejections(
    daraja_app: support.DarajaApp, access_token: str, listener: support.CallbackListener, rule: str
) -> None:
    overrides, status, error_code, error_message = REJECTIONS[rule]
    phone = support.unique_phone()
    body = push_body(daraja_app, phone, listener.new_url("/callbacks"))
    body.update(overrides)
    if rule == "timestamp-in-utc":
        # A correct Password for a timestamp taken in UTC instead of Nairobi time: only the Timestamp is wrong.
        timestamp = _utc_timestamp()
        body["Timestamp"] = timestamp
        body["Password"] = stk_password(daraja_app.shortcode, daraja_app.passkey, timestamp)
    token = f"not-a-real-token-{secrets.token_hex(6)}" if rule == "token" else access_token

    response = stk_push(token, body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["errorCode"] == error_code
    assert error["errorMessage"] == error_message
    assert error["requestId"]
    assert "CheckoutRequestID" not in error

    # A rejected push takes no subscriber lock: a correct push to the same phone right after is accepted.
    retry = stk_push(access_token, push_body(daraja_app, phone, listener.new_url("/callbacks")))
    assert retry.status_code == 200, retry.text
