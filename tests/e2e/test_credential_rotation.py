"""Credential rotation and the two environments against the running stack (issue 10 item 2, issue 11 item 1).

The functions run in the Functions emulator; "other instances" are this process's own copies of the gateway library
(each with its own secret cache, Daraja client and Firestore client), pointed at the same emulators, as a second
Cloud Functions instance would be. What reached Daraja is read from the simulator's request log, never from our code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests import support
from tests.tenants import CREDENTIALS_URL, new_tenant, use_in_process_gateway

ORDER = {"amount": 10, "account_reference": "INV-1", "description": "Order 1"}


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A factory of gateway library instances over the stack. Credential PUTs are throttled per developer (a few a
    minute); these instances allow more, so ten PUTs can race."""
    from gateway.settings import get_settings

    use_in_process_gateway(monkeypatch, CREDENTIAL_PUTS_PER_MINUTE="1000")

    def new_instance() -> Any:
        from gateway.daraja import DarajaClient
        from gateway.repository import PaymentRepository
        from gateway.secrets import CredentialStore, SecretManagerBackend
        from gateway.services import Gateway

        settings = get_settings()
        return Gateway.build(
            settings,
            PaymentRepository(settings),
            CredentialStore(settings, SecretManagerBackend(settings)),
            DarajaClient(settings),
        )

    yield new_instance
    get_settings.cache_clear()


def developer_of(tenant_or_user: Any) -> Any:
    from gateway.http import Developer

    user = getattr(tenant_or_user, "developer", tenant_or_user)
    return Developer(user.uid, user.email)


def http_push(user: support.SignedUpDeveloper, phone: str, **extra: Any) -> dict[str, Any]:
    response = requests.post(
        support.function_url("stk_push"), json={"phone": phone, **ORDER, **extra}, headers=user.headers, timeout=60
    )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


def library_push(instance: Any, user: Any, phone: str, **extra: Any) -> None:
    result = instance.payments.push(developer_of(user), {"phone": phone, **ORDER, **extra}, None)
    assert result.accepted, result


def put(user: support.SignedUpDeveloper, app: support.DarajaApp, environment: str = "sandbox") -> dict[str, Any]:
    body = {**app.credentials_body(), "environment": environment}
    response = requests.put(CREDENTIALS_URL, json=body, headers=user.headers, timeout=60)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def consumer_keys_that_pushed(*phones: str) -> list[str]:
    return [r["consumer_key"] for r in support.simulator_requests("stk_push") if r.get("phone") in phones]


def secret_versions(uid: str, environment: str) -> dict[str, str]:
    """Each version of a developer's secret for one environment and its state, read from the Secret Manager emulator."""
    versions = support.secret_manager_client().list_secret_versions(parent=support.daraja_secret_name(uid, environment))
    return {v.name.rsplit("/", 1)[1]: v.state.name for v in versions}


def registry(uid: str) -> dict[str, Any]:
    return support.firestore_client().collection("developers").document(uid).get().to_dict() or {}


# ------------------------------------------------------------------------------------------------------ (a)
def test_after_a_put_an_instance_with_the_old_keys_cached_pushes_with_the_new_ones(library: Any) -> None:
    tenant = new_tenant()
    elsewhere = library()
    warm = [support.unique_phone() for _ in range(2)]
    library_push(elsewhere, tenant, warm[0])  # this instance now holds the old secret in its cache
    http_push(tenant.developer, warm[1])  # and so does a functions instance
    assert set(consumer_keys_that_pushed(*warm)) == {tenant.app.consumer_key}

    rotated = support.register_simulator_app()
    put(tenant.developer, rotated)
    after = [support.unique_phone() for _ in range(4)]
    library_push(elsewhere, tenant, after[0])
    http_push(tenant.developer, after[1])
    library_push(elsewhere, tenant, after[2])
    http_push(tenant.developer, after[3])

    assert consumer_keys_that_pushed(*after) == [rotated.consumer_key] * 4
    # The old keys cannot come back: their version is destroyed, only the new one is readable.
    assert sorted(secret_versions(tenant.developer.uid, "sandbox").values()) == ["DESTROYED", "ENABLED"]


# ------------------------------------------------------------------------------------------------------ (b)
def test_ten_concurrent_puts_end_with_get_and_the_next_push_agreeing_on_one(library: Any) -> None:
    tenant = new_tenant()
    apps = [support.register_simulator_app() for _ in range(10)]
    instances = [library() for _ in apps]  # ten instances, ten caches, ten Firestore clients
    start = threading.Barrier(len(apps))
    failures: list[BaseException] = []

    def put_from(instance: Any, app: support.DarajaApp) -> None:
        start.wait()
        try:
            instance.credentials.put(developer_of(tenant), app.credentials_body())
        except BaseException as failure:  # collected: a thread's exception would vanish
            failures.append(failure)

    threads = [threading.Thread(target=put_from, args=pair) for pair in zip(instances, apps, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []

    shown = requests.get(CREDENTIALS_URL, params={"environment": "sandbox"}, headers=tenant.headers, timeout=60)
    assert shown.status_code == 200, shown.text
    [winner] = [app for app in apps if app.shortcode == shown.json()["shortcode"]]
    assert shown.json()["consumer_key_hint"] == f"{winner.consumer_key[:4]}...{winner.consumer_key[-4:]}"
    phones = [support.unique_phone() for _ in range(3)]
    http_push(tenant.developer, phones[0])
    library_push(instances[0], tenant, phones[1])
    library_push(instances[-1], tenant, phones[2])
    assert consumer_keys_that_pushed(*phones) == [winner.consumer_key] * 3
    # Exactly one complete set is left: the stored version is the only enabled one.
    stored_version = registry(tenant.developer.uid)["daraja"]["sandbox"]["secret_version"]
    states = secret_versions(tenant.developer.uid, "sandbox")
    assert [v for v, state in states.items() if state == "ENABLED"] == [stored_version]
    assert stored_version == max(states, key=int), "the newest version is the one that landed"


# ------------------------------------------------------------------------------------------------------ (c)
def test_a_developer_with_both_sets_pushes_to_each_with_its_own_keys() -> None:
    user = support.sign_up()
    sandbox, production = support.register_simulator_app(), support.register_simulator_app()
    put(user, sandbox, "sandbox")
    put(user, production, "production")

    phones = {name: support.unique_phone() for name in ("sandbox", "production", "default")}
    to_sandbox = http_push(user, phones["sandbox"], environment="sandbox")
    to_production = http_push(user, phones["production"], environment="production")
    by_default = http_push(user, phones["default"])

    assert (to_sandbox["environment"], to_sandbox["shortcode"]) == ("sandbox", sandbox.shortcode)
    assert (to_production["environment"], to_production["shortcode"]) == ("production", production.shortcode)
    assert by_default["environment"] == "sandbox", "with both sets, a push that names none never moves real money"
    assert consumer_keys_that_pushed(phones["sandbox"]) == [sandbox.consumer_key]
    assert consumer_keys_that_pushed(phones["production"]) == [production.consumer_key]
    assert consumer_keys_that_pushed(phones["default"]) == [sandbox.consumer_key]

    status_url = support.function_url("payment_status")
    listed = requests.get(status_url, params={"environment": "production"}, headers=user.headers, timeout=60).json()
    assert [p["id"] for p in listed["data"]] == [to_production["id"]]
    narrowed = requests.get(
        status_url, params={"id": to_sandbox["id"], "environment": "production"}, headers=user.headers, timeout=60
    )
    assert narrowed.status_code == 404, narrowed.text

    bad = requests.post(
        support.function_url("stk_push"),
        json={"phone": support.unique_phone(), **ORDER, "environment": "live"},
        headers=user.headers,
        timeout=60,
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_environment"


# ------------------------------------------------------------------------------------------------------ (d)
def test_a_developer_stored_in_the_old_single_set_layout_keeps_working_and_migrates_on_the_next_put() -> None:
    user = support.sign_up()
    legacy = support.register_simulator_app()
    # What the gateway stored before sets were per environment: one flat set-up, its secret's latest version.
    client = support.secret_manager_client()
    secret_name = support.daraja_secret_name(user.uid, "sandbox")
    project, _, secret_id = secret_name.partition("/secrets/")
    client.create_secret(parent=project, secret_id=secret_id, secret={"replication": {"automatic": {}}})
    payload = {
        "consumer_key": legacy.consumer_key,
        "consumer_secret": legacy.consumer_secret,
        "passkey": legacy.passkey,
    }
    client.add_secret_version(parent=secret_name, payload={"data": json.dumps(payload).encode()})
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    support.firestore_client().collection("developers").document(user.uid).set(
        {
            "uid": user.uid,
            "email": user.email,
            "created_at": now,
            "updated_at": now,
            "daraja": {
                "environment": "sandbox",
                "shortcode": legacy.shortcode,
                "transaction_type": "CustomerPayBillOnline",
                "party_b": legacy.shortcode,
                "consumer_key_hint": f"{legacy.consumer_key[:4]}...{legacy.consumer_key[-4:]}",
                "verified_at": now,
                "updated_at": now,
            },
        }
    )

    listed = requests.get(CREDENTIALS_URL, headers=user.headers, timeout=60).json()
    assert [(v["environment"], v["shortcode"]) for v in listed["data"]] == [("sandbox", legacy.shortcode)]
    phone = support.unique_phone()
    assert http_push(user, phone)["shortcode"] == legacy.shortcode
    assert consumer_keys_that_pushed(phone) == [legacy.consumer_key]

    production = support.register_simulator_app()
    put(user, production, "production")

    daraja = registry(user.uid)["daraja"]
    assert set(daraja) == {"sandbox", "production"}, "the old layout's keys are gone from the top of the map"
    assert daraja["sandbox"]["shortcode"] == legacy.shortcode
    both = requests.get(CREDENTIALS_URL, headers=user.headers, timeout=60).json()
    assert [v["environment"] for v in both["data"]] == ["sandbox", "production"]
    phones = [support.unique_phone() for _ in range(2)]
    http_push(user, phones[0])
    http_push(user, phones[1], environment="production")
    assert consumer_keys_that_pushed(phones[0]) == [legacy.consumer_key]
    assert consumer_keys_that_pushed(phones[1]) == [production.consumer_key]
