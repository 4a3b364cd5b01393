"""firestore.rules as the running Firestore emulator enforces them on end-user clients.

Requests go to the emulator's REST API exactly as a web or mobile client's would, with `Authorization: Bearer <ID
token>` (Auth emulator tokens, plus one hand-made unsigned token). Data is seeded through the emulator's admin
path (`Authorization: Bearer owner`, which bypasses rules; verified below). For every collection the gateway uses:
owner reads pass only where the rules allow (developer doc, payments), other users and anonymous clients
read nothing, and no client can create, update or delete anything, the owner included.

Every run uses fresh users and ids, and deletes only the documents it wrote.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests import support

PROJECT_ID = support.PROJECT_ID
DOCUMENTS = f"http://{support.FIRESTORE_HOST}/v1/projects/{PROJECT_ID}/databases/(default)/documents"
ADMIN = {"Authorization": "Bearer owner"}

COLLECTIONS = [
    "developer",
    "payment",
    "payer",
    "idempotency_key",
    "callback",
    "callback_token",
    "quarantined_callback",
    "api_key",
    "limit",
    "counter",
]
# payers/{msisdn} is server-only: its id is a full phone number, which clients never see (the API masks it).
READABLE_BY_OWNER = {"developer", "payment"}
ACTORS = ["owner", "other", "anonymous"]


# ---------------------------------------------------------------------------------------------- REST helpers
def to_fields(data: dict[str, Any]) -> dict[str, Any]:
    def value(item: Any) -> dict[str, Any]:
        if isinstance(item, bool):
            return {"booleanValue": item}
        if isinstance(item, int):
            return {"integerValue": str(item)}
        return {"stringValue": str(item)}

    return {"fields": {name: value(item) for name, item in data.items()}}


def from_fields(document: dict[str, Any]) -> dict[str, Any]:
    return {name: next(iter(item.values())) for name, item in document.get("fields", {}).items()}


def headers_for(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def admin_put(path: str, data: dict[str, Any]) -> None:
    response = requests.patch(f"{DOCUMENTS}/{path}", json=to_fields(data), headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text


def admin_get(path: str) -> requests.Response:
    return requests.get(f"{DOCUMENTS}/{path}", headers=ADMIN, timeout=10)


def admin_delete(path: str) -> None:
    requests.delete(f"{DOCUMENTS}/{path}", headers=ADMIN, timeout=10)


def assert_denied(response: requests.Response) -> None:
    assert response.status_code == 403, f"expected 403, got {response.status_code}: {response.text[:300]}"
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def unsigned_token(uid: str, email: str | None = None) -> str:
    """An `alg: none` Firebase-style ID token, which the emulator accepts (production Firestore would not)."""
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT"}
    claims: dict[str, Any] = {
        "iss": f"https://securetoken.google.com/{PROJECT_ID}",
        "aud": PROJECT_ID,
        "auth_time": now,
        "iat": now,
        "exp": now + 3600,
        "sub": uid,
        "user_id": uid,
        "firebase": {"sign_in_provider": "custom", "identities": {}},
    }
    if email:
        claims["email"] = email

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


# ---------------------------------------------------------------------------------------------- seeded world
@dataclass
class World:
    owner: support.SignedUpDeveloper
    other: support.SignedUpDeveloper
    newcomer: support.SignedUpDeveloper  # signed up, but no developers/{uid} document yet
    existing: dict[str, str]  # collection -> path of a seeded document owned by `owner`
    fresh: dict[str, str]  # collection -> path of a document that does not exist (for create attempts)
    seeded: list[str]

    def path_owner(self, path: str) -> support.SignedUpDeveloper:
        """The user a document belongs to: the uid in developers/{uid}/..., or `owner` for the server-only top-level collections."""
        if path.startswith("developers/"):
            uid = path.split("/")[1]
            return next(user for user in (self.owner, self.other, self.newcomer) if user.uid == uid)
        return self.owner

    def token(self, actor: str, path: str) -> str | None:
        if actor == "owner":
            return self.path_owner(path).id_token
        if actor == "other":
            return self.other.id_token
        return None


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    owner, other, newcomer = support.sign_up(), support.sign_up(), support.sign_up()
    tag = secrets.token_hex(4)
    msisdn = support.unique_phone()
    dev = f"developers/{owner.uid}"
    existing = {
        "developer": dev,
        "payment": f"{dev}/payments/pay_rules_{tag}",
        "payer": f"{dev}/payers/{msisdn}",
        "idempotency_key": f"{dev}/idempotency_keys/key_{tag}",
        "callback": f"{dev}/payments/pay_rules_{tag}/callbacks/cb_{tag}",
        "callback_token": f"callback_tokens/rules_{tag}",
        "quarantined_callback": f"quarantined_callbacks/rules_{tag}",
        "api_key": f"api_keys/rules_{tag}",
        "limit": f"{dev}/limits/push-0",
        "counter": f"{dev}/counters/api_keys",
    }
    fresh = {
        "developer": f"developers/{newcomer.uid}",
        "payment": f"{dev}/payments/pay_new_{tag}",
        "payer": f"{dev}/payers/{support.unique_phone()}",
        "idempotency_key": f"{dev}/idempotency_keys/key_new_{tag}",
        "callback": f"{dev}/payments/pay_rules_{tag}/callbacks/cb_new_{tag}",
        "callback_token": f"callback_tokens/new_{tag}",
        "quarantined_callback": f"quarantined_callbacks/new_{tag}",
        "api_key": f"api_keys/new_{tag}",
        "limit": f"{dev}/limits/credential_puts",
        "counter": f"{dev}/counters/new_{tag}",
    }
    contents = {
        "developer": {"email": owner.email, "shortcode": "174379"},
        "payment": {"status": "pending", "amount": 10, "created_at": "2026-01-01T00:00:00Z"},
        "payer": {"msisdn": msisdn, "payments": 1},
        "idempotency_key": {"request_hash": "abc", "status_code": 201},
        "callback": {"raw": "{}", "action": "settled"},
        "callback_token": {"uid": owner.uid, "payment_id": f"pay_rules_{tag}"},
        "quarantined_callback": {"reason": "unknown_callback_token", "raw_body": "{}"},
        # Even the owner of a key may not read its record: the hash is the key's only stored trace.
        "api_key": {"uid": owner.uid, "key_id": f"key_{tag}", "environment": "sandbox", "hint": "mpg_test_...abcd"},
        "limit": {"day": "2026-12-01", "day_count": 3},
        "counter": {"active": 1},  # how many API keys the developer holds: server-only, like the keys
    }
    seeded = list(existing.values())
    for collection, path in existing.items():
        admin_put(path, contents[collection])
    # The other developer has their own tree, so "other" is a real, working developer identity.
    other_payment = f"developers/{other.uid}/payments/pay_other_{tag}"
    admin_put(f"developers/{other.uid}", {"email": other.email})
    admin_put(other_payment, {"status": "succeeded", "amount": 5, "created_at": "2026-01-01T00:00:00Z"})
    seeded += [f"developers/{other.uid}", other_payment]

    yield World(owner, other, newcomer, existing, fresh, seeded)

    for path in [*reversed(seeded), *fresh.values()]:
        admin_delete(path)
    for user in (owner, other, newcomer):
        support.delete_auth_user(user)


# ---------------------------------------------------------------------------------------------- the admin path
def test_the_owner_token_bypasses_rules_and_clients_do_not(world: World) -> None:
    path = f"callback_tokens/bypass_{secrets.token_hex(4)}"
    denied = requests.patch(f"{DOCUMENTS}/{path}", json=to_fields({"uid": "x"}), timeout=10)
    assert_denied(denied)
    assert admin_get(path).status_code == 404

    try:
        written = requests.patch(f"{DOCUMENTS}/{path}", json=to_fields({"uid": "x"}), headers=ADMIN, timeout=10)
        assert written.status_code == 200, written.text
        read = admin_get(path)
        assert read.status_code == 200
        assert from_fields(read.json()) == {"uid": "x"}
        # The same document through an ordinary client: denied, the rules are loaded and enforced.
        assert_denied(requests.get(f"{DOCUMENTS}/{path}", headers=world.owner.headers, timeout=10))
    finally:
        admin_delete(path)
    assert admin_get(path).status_code == 404


def test_seeded_documents_exist(world: World) -> None:
    for path in world.existing.values():
        assert admin_get(path).status_code == 200, path
    for path in world.fresh.values():
        assert admin_get(path).status_code == 404, path


# ---------------------------------------------------------------------------------------------- reads
@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_get(world: World, collection: str, actor: str) -> None:
    path = world.existing[collection]
    response = requests.get(f"{DOCUMENTS}/{path}", headers=headers_for(world.token(actor, path)), timeout=10)
    if actor == "owner" and collection in READABLE_BY_OWNER:
        assert response.status_code == 200, response.text
        assert response.json()["name"].endswith(f"/documents/{path}")
        assert from_fields(response.json()) == from_fields(admin_get(path).json())
    else:
        assert_denied(response)


def test_the_other_developer_reads_their_own_documents(world: World) -> None:
    """Sanity check of the "other" identity: it is denied above because of ownership, not a broken token."""
    mine = requests.get(f"{DOCUMENTS}/developers/{world.other.uid}", headers=world.other.headers, timeout=10)
    assert mine.status_code == 200, mine.text
    listed = requests.get(f"{DOCUMENTS}/developers/{world.other.uid}/payments", headers=world.other.headers, timeout=10)
    assert listed.status_code == 200, listed.text
    ids = [doc["name"].rsplit("/", 1)[1] for doc in listed.json()["documents"]]
    assert len(ids) == 1 and ids[0].startswith("pay_other_")


def test_an_unsigned_token_is_accepted_by_the_emulator(world: World) -> None:
    """The emulator does not check token signatures: an `alg: none` token carrying the owner's uid reads like the
    owner, and one carrying a stranger's uid is denied like any other user. Production Firestore verifies them."""
    as_owner = requests.get(
        f"{DOCUMENTS}/{world.existing['payment']}", headers=headers_for(unsigned_token(world.owner.uid)), timeout=10
    )
    assert as_owner.status_code == 200, as_owner.text
    stranger = requests.get(
        f"{DOCUMENTS}/{world.existing['payment']}", headers=headers_for(unsigned_token("stranger-uid")), timeout=10
    )
    assert_denied(stranger)


# ---------------------------------------------------------------------------------------------- list queries
def run_query(parent: str, collection_id: str, token: str | None, all_descendants: bool = False) -> requests.Response:
    url = f"{DOCUMENTS}/{parent}:runQuery" if parent else f"{DOCUMENTS}:runQuery"
    query = {"structuredQuery": {"from": [{"collectionId": collection_id, "allDescendants": all_descendants}]}}
    return requests.post(url, json=query, headers=headers_for(token), timeout=10)


def test_the_owner_can_list_their_payments_but_not_their_payers(world: World) -> None:
    dev = f"developers/{world.owner.uid}"
    payments = run_query(dev, "payments", world.owner.id_token)
    assert payments.status_code == 200, payments.text
    names = [row["document"]["name"] for row in payments.json() if "document" in row]
    assert names == [f"projects/{PROJECT_ID}/databases/(default)/documents/{world.existing['payment']}"]

    # Listing payers would show full phone numbers as document ids.
    assert_denied(requests.get(f"{DOCUMENTS}/{dev}/payers", headers=world.owner.headers, timeout=10))
    assert_denied(run_query(dev, "payers", world.owner.id_token))


@pytest.mark.parametrize("actor", ["other", "anonymous"])
def test_listing_another_developers_payments_is_denied(world: World, actor: str) -> None:
    dev = f"developers/{world.owner.uid}"
    token = world.other.id_token if actor == "other" else None
    assert_denied(run_query(dev, "payments", token))
    assert_denied(requests.get(f"{DOCUMENTS}/{dev}/payments", headers=headers_for(token), timeout=10))


@pytest.mark.parametrize(
    "collection_path",
    [
        "idempotency_keys",
        "payments/{payment}/callbacks",
        "../../callback_tokens",
        "../../quarantined_callbacks",
        "../../api_keys",
        "payers",
        "limits",
        "counters",
    ],
)
def test_the_owner_cannot_list_server_only_collections(world: World, collection_path: str) -> None:
    dev = f"developers/{world.owner.uid}"
    payment_id = world.existing["payment"].rsplit("/", 1)[1]
    if collection_path.startswith("../../"):
        parent, collection_id = "", collection_path.removeprefix("../../")
    else:
        full = f"{dev}/{collection_path.format(payment=payment_id)}"
        parent, collection_id = full.rsplit("/", 1)
    assert_denied(run_query(parent, collection_id, world.owner.id_token))


def test_collection_group_queries_are_denied_even_to_an_owner(world: World) -> None:
    """The rules match payments only under developers/{uid}, so a collection-group query (which could span every
    tenant) has no allowing rule at all."""
    assert_denied(run_query("", "payments", world.owner.id_token, all_descendants=True))


# ---------------------------------------------------------------------------------------------- writes
def attempt_write(operation: str, path: str, token: str | None) -> requests.Response:
    headers = headers_for(token)
    body = to_fields({"status": "succeeded", "amount": 1, "tampered": True})
    if operation == "create":
        parent, document_id = path.rsplit("/", 1)
        return requests.post(
            f"{DOCUMENTS}/{parent}", params={"documentId": document_id}, json=body, headers=headers, timeout=10
        )
    if operation == "update":
        return requests.patch(
            f"{DOCUMENTS}/{path}", params={"currentDocument.exists": "true"}, json=body, headers=headers, timeout=10
        )
    return requests.delete(f"{DOCUMENTS}/{path}", headers=headers, timeout=10)


@pytest.mark.parametrize("operation", ["create", "update", "delete"])
@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_client_write_is_denied(world: World, collection: str, actor: str, operation: str) -> None:
    path = world.fresh[collection] if operation == "create" else world.existing[collection]
    before = admin_get(path)

    assert_denied(attempt_write(operation, path, world.token(actor, path)))

    after = admin_get(path)
    assert after.status_code == before.status_code
    if operation == "create":
        assert after.status_code == 404
    else:
        assert after.status_code == 200
        assert after.json()["updateTime"] == before.json()["updateTime"]
        assert "tampered" not in from_fields(after.json())


def test_a_set_without_precondition_is_denied_to_the_owner(world: World) -> None:
    """PATCH with no precondition is the SDKs' set(): create-or-update, denied either way."""
    for path in (world.existing["payment"], world.fresh["payment"]):
        response = requests.patch(
            f"{DOCUMENTS}/{path}", json=to_fields({"status": "succeeded"}), headers=world.owner.headers, timeout=10
        )
        assert_denied(response)
    assert admin_get(world.fresh["payment"]).status_code == 404
    assert from_fields(admin_get(world.existing["payment"]).json())["status"] == "pending"


def test_a_batched_commit_is_denied_to_the_owner(world: World) -> None:
    """The SDKs' batch/transaction commit endpoint is checked per write, like single writes."""
    database = f"projects/{PROJECT_ID}/databases/(default)/documents"
    writes = [
        {"update": {"name": f"{database}/{world.existing['payment']}", **to_fields({"status": "succeeded"})}},
        {"update": {"name": f"{database}/{world.fresh['payer']}", **to_fields({"msisdn": "x"})}},
    ]
    response = requests.post(f"{DOCUMENTS}:commit", json={"writes": writes}, headers=world.owner.headers, timeout=10)
    assert_denied(response)
    assert from_fields(admin_get(world.existing["payment"]).json())["status"] == "pending"
    assert admin_get(world.fresh["payer"]).status_code == 404
