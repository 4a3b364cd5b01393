"""The credentials use case (gateway.services.credentials) over the in-memory fakes: keys are verified with Daraja
before anything is stored, each environment's secret is its own (secret owner "{uid}#{environment}"), and a delete
removes every environment."""

from __future__ import annotations

import json

import pytest

from gateway import errors
from gateway.domain.daraja_setup import setups_of
from gateway.domain.errors import ValidationError
from gateway.http import Developer
from gateway.secrets import CredentialStore
from gateway.services import Gateway
from gateway.views import credentials_view
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOB_CREDENTIALS,
    CREDENTIALS,
    ORDER,
    PASSKEY,
    PRODUCTION_CREDENTIALS,
    T0,
    World,
    make_world,
)


def secret_id(uid: str, environment: str) -> str:
    return CredentialStore.secret_id(f"{uid}#{environment}")


def stored_secret(world: World, uid: str, environment: str) -> dict[str, str]:
    payload: dict[str, str] = json.loads(world.backend.secrets[secret_id(uid, environment)])
    return payload


@pytest.fixture
def world() -> World:
    return make_world()


def test_rejected_credentials_are_verified_first_and_nothing_is_stored(world: World) -> None:
    world.daraja.verify_script.append(
        errors.Unprocessable("daraja_credentials_rejected", "Daraja rejected these keys", param="consumer_key")
    )

    with pytest.raises(errors.Unprocessable) as raised:
        world.gateway.credentials.put(ALICE, CREDENTIALS)

    assert raised.value.http_status == 422
    assert world.daraja.verify_calls == [("sandbox", CREDENTIALS["consumer_key"], CREDENTIALS["consumer_secret"])]
    assert world.backend.secrets == {} and world.backend.writes == 0
    assert world.repo.calls["save_daraja_setup"] == 0
    assert world.repo.developers[ALICE.uid]["daraja"] is None
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.credentials.get(ALICE)


def test_daraja_unreachable_during_verification_stores_nothing(world: World) -> None:
    world.daraja.verify_script.append(errors.DarajaError("daraja_unreachable", "down", http_status=504))

    with pytest.raises(errors.DarajaError):
        world.gateway.credentials.put(ALICE, CREDENTIALS)

    assert world.backend.secrets == {}
    assert world.repo.calls["save_daraja_setup"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {**CREDENTIALS, "environment": "staging"},
        {**CREDENTIALS, "passkey": "short"},
        {**CREDENTIALS, "unexpected": 1},
        {key: value for key, value in CREDENTIALS.items() if key != "consumer_secret"},
        ["not", "an", "object"],
    ],
)
def test_an_invalid_body_is_refused_before_daraja_is_asked(world: World, body: object) -> None:
    with pytest.raises(ValidationError):
        world.gateway.credentials.put(ALICE, body)

    assert world.daraja.verify_calls == []
    assert world.backend.secrets == {}


def test_accepted_credentials_are_stored_after_verification_per_environment(world: World) -> None:
    seen_at_verification: list[tuple[dict[str, bytes], object]] = []
    world.daraja.verify_script.append(
        lambda *_: seen_at_verification.append(
            (dict(world.backend.secrets), world.repo.developers[ALICE.uid].get("daraja"))
        )
    )

    setup = world.gateway.credentials.put(ALICE, CREDENTIALS)

    assert seen_at_verification == [({}, None)], "the keys must be verified before anything is stored"
    assert setup == {
        "environment": "sandbox",
        "shortcode": "174379",
        "transaction_type": "CustomerPayBillOnline",
        "party_b": "174379",
        "consumer_key_hint": "ckey...1234",
        "verified_at": T0,
        "updated_at": T0,
        "secret_version": "1",
    }
    # The secret is the sandbox environment's own: owner "{uid}#sandbox", never the bare uid.
    assert list(world.backend.secrets) == [secret_id(ALICE.uid, "sandbox")]
    assert CredentialStore.secret_id(ALICE.uid) not in world.backend.secrets
    assert stored_secret(world, ALICE.uid, "sandbox") == {
        "consumer_key": CREDENTIALS["consumer_key"],
        "consumer_secret": CREDENTIALS["consumer_secret"],
        "passkey": PASSKEY,
    }
    registry = world.repo.developers[ALICE.uid]
    assert registry["daraja"] == {"sandbox": setup} and registry["email"] == ALICE.email
    shown = json.dumps(credentials_view(setup)) + json.dumps(registry, default=str)
    for secret in (CREDENTIALS["consumer_key"], CREDENTIALS["consumer_secret"], PASSKEY):
        assert secret not in shown
    assert world.gateway.credentials.get(ALICE) == setup


def test_each_environment_keeps_its_own_secret(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.clock.advance(60)

    setup = world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)

    assert setup["environment"] == "production" and setup["shortcode"] == "600555"
    assert setup["verified_at"] == world.clock.now
    assert world.gateway.credentials.get(ALICE, "production") == setup
    assert world.gateway.credentials.get(ALICE)["environment"] == "sandbox", "with both sets, sandbox by default"
    assert set(world.backend.secrets) == {secret_id(ALICE.uid, "sandbox"), secret_id(ALICE.uid, "production")}
    # Moving to production leaves the sandbox keys in place: sandbox payments can still be queried with them.
    assert stored_secret(world, ALICE.uid, "sandbox")["consumer_key"] == CREDENTIALS["consumer_key"]
    assert stored_secret(world, ALICE.uid, "production")["consumer_key"] == PRODUCTION_CREDENTIALS["consumer_key"]
    assert [call[0] for call in world.daraja.verify_calls] == ["sandbox", "production"]
    # A push that asks for production uses that set-up and its environment's secret; one that does not, sandbox.
    world.gateway.payments.push(ALICE, {**ORDER, "environment": "production"}, None)
    world.gateway.payments.push(ALICE, ORDER, None)
    [(production, _), (sandbox, _)] = world.daraja.push_calls
    assert (production.environment, production.shortcode, production.secret.consumer_key) == (
        "production",
        "600555",
        PRODUCTION_CREDENTIALS["consumer_key"],
    )
    assert (sandbox.environment, sandbox.shortcode, sandbox.secret.consumer_key) == (
        "sandbox",
        "174379",
        CREDENTIALS["consumer_key"],
    )


def test_developers_never_share_a_secret(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(BOB, BOB_CREDENTIALS)

    assert stored_secret(world, ALICE.uid, "sandbox")["consumer_key"] == CREDENTIALS["consumer_key"]
    assert stored_secret(world, BOB.uid, "sandbox")["consumer_key"] == BOB_CREDENTIALS["consumer_key"]
    assert world.gateway.credentials.get(BOB)["shortcode"] == "600123"
    assert world.gateway.credentials.get(ALICE)["shortcode"] == "174379"


def test_delete_removes_both_environments_and_the_setup(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)
    world.gateway.credentials.put(BOB, BOB_CREDENTIALS)

    assert world.gateway.credentials.delete(ALICE) is True

    assert set(world.backend.secrets) == {secret_id(BOB.uid, "sandbox")}, "Bob's keys are not Alice's to delete"
    assert setups_of(world.repo.developers[ALICE.uid]["daraja"]) == {}
    assert world.gateway.credentials.list(ALICE) == []
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.credentials.get(ALICE)
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.payments.push(ALICE, ORDER, None)
    assert world.daraja.push_calls == []
    assert world.gateway.credentials.delete(ALICE) is False, "nothing left to delete"


def test_delete_removes_a_secret_left_without_a_setup(world: World) -> None:
    world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)
    world.repo.developers[ALICE.uid]["daraja"] = None

    assert world.gateway.credentials.delete(ALICE) is True
    assert world.backend.secrets == {}


def test_delete_without_credentials_is_false_and_get_is_not_configured(world: World) -> None:
    assert world.gateway.credentials.delete(ALICE) is False
    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        world.gateway.credentials.get(ALICE)
    assert raised.value.http_status == 404


# ------------------------------------------------------------------------------------ rotation (issue 10 item 2)
def rotated(n: int) -> dict[str, object]:
    return {**CREDENTIALS, "consumer_key": f"ckeyROTATED{n:08d}", "consumer_secret": f"csecretROTATED{n:08d}"}


def test_a_put_stores_its_version_and_destroys_only_older_ones(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    setup = world.gateway.credentials.put(ALICE, rotated(2))
    assert setup["secret_version"] == "2"
    assert world.backend.live_versions(secret_id(ALICE.uid, "sandbox")) == ["2"]
    assert world.repo.developers[ALICE.uid]["daraja"]["sandbox"]["secret_version"] == "2"


def test_another_instance_with_the_old_secret_cached_pushes_with_the_new_one(world: World) -> None:
    # Two instances: one registry and one Secret Manager, a CredentialStore (cache) each.
    other = Gateway.build(
        world.settings, world.repo, CredentialStore(world.settings, world.backend), world.daraja, world.clock
    )
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    other.payments.push(ALICE, ORDER, None)  # `other` now has version 1 cached
    world.gateway.credentials.put(ALICE, rotated(2))

    other.payments.push(ALICE, ORDER, None)

    assert [app.secret.consumer_key for app, _ in world.daraja.push_calls] == [
        CREDENTIALS["consumer_key"],
        "ckeyROTATED00000002",
    ]


def test_a_put_that_loses_the_race_destroys_only_its_own_version(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """PUT A adds version 1; before its registry write, PUT B adds version 2 and lands. A must not overwrite B."""
    real_update = world.repo.update_daraja
    raced = []

    def update_after_another_put(uid: str, email: str | None, change: object) -> object:
        if not raced:
            raced.append(True)
            world.gateway.credentials.put(ALICE, rotated(2))
        return real_update(uid, email, change)  # type: ignore[arg-type]

    monkeypatch.setattr(world.repo, "update_daraja", update_after_another_put)

    world.gateway.credentials.put(ALICE, rotated(1))

    assert world.repo.developers[ALICE.uid]["daraja"]["sandbox"]["secret_version"] == "2"
    assert world.backend.live_versions(secret_id(ALICE.uid, "sandbox")) == ["2"]
    world.gateway.payments.push(ALICE, ORDER, None)
    [(app, _)] = world.daraja.push_calls
    assert app.secret.consumer_key == "ckeyROTATED00000002"


def test_ten_concurrent_puts_leave_exactly_one_complete_usable_set(world: World) -> None:
    import threading

    start = threading.Barrier(10)
    failures: list[BaseException] = []

    def put(n: int) -> None:
        start.wait()
        try:
            world.gateway.credentials.put(ALICE, rotated(n))
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    stored = world.gateway.credentials.get(ALICE, "sandbox")
    assert world.backend.live_versions(secret_id(ALICE.uid, "sandbox")) == [stored["secret_version"]] == ["10"]
    world.gateway.payments.push(ALICE, ORDER, None)
    [(app, _)] = world.daraja.push_calls
    assert app.secret.consumer_key[-4:] == stored["consumer_key_hint"][-4:]


def test_a_put_whose_version_a_delete_destroyed_cannot_land_afterwards(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    real_update = world.repo.update_daraja
    raced = []

    def update_after_a_delete(uid: str, email: str | None, change: object) -> object:
        if not raced:
            raced.append(True)
            assert world.gateway.credentials.delete(ALICE, "sandbox") is True
        return real_update(uid, email, change)  # type: ignore[arg-type]

    monkeypatch.setattr(world.repo, "update_daraja", update_after_a_delete)

    world.gateway.credentials.put(ALICE, rotated(2))

    assert world.gateway.credentials.list(ALICE) == []
    assert world.backend.live_versions(secret_id(ALICE.uid, "sandbox")) == []
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.payments.push(ALICE, ORDER, None)


def test_a_put_after_a_delete_lands(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.delete(ALICE, "sandbox")
    setup = world.gateway.credentials.put(ALICE, rotated(3))
    assert setup["secret_version"] == "2", "versions are never reused: the secret survived the delete"
    assert world.gateway.credentials.get(ALICE)["consumer_key_hint"] == setup["consumer_key_hint"]


def test_a_push_whose_version_was_retired_meanwhile_reloads_the_setup_once(world: World) -> None:
    from gateway.services.common import load_app

    world.gateway.credentials.put(ALICE, CREDENTIALS)
    record_read_before = world.repo.ensure_developer(ALICE.uid, ALICE.email)
    world.gateway.credentials.put(ALICE, rotated(2))  # retires version 1 while the push holds the old record

    setup, app = load_app(world.repo, CredentialStore(world.settings, world.backend), ALICE, record_read_before, None)

    assert setup["secret_version"] == "2" and app.secret.consumer_key == "ckeyROTATED00000002"


# ------------------------------------------------------------------------------------ both sets side by side
def test_delete_of_one_environment_keeps_the_other(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)

    assert world.gateway.credentials.delete(ALICE, "production") is True

    assert [s["environment"] for s in world.gateway.credentials.list(ALICE)] == ["sandbox"]
    assert world.backend.live_versions(secret_id(ALICE.uid, "production")) == []
    assert world.backend.live_versions(secret_id(ALICE.uid, "sandbox")) == ["1"]
    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        world.gateway.payments.push(ALICE, {**ORDER, "environment": "production"}, None)
    assert raised.value.param == "environment"
    assert world.gateway.payments.push(ALICE, ORDER, None).payment.environment == "sandbox"


def test_an_api_key_reaches_only_its_environment(world: World) -> None:
    world.gateway.credentials.put(ALICE, CREDENTIALS)
    world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)
    test_key = Developer(ALICE.uid, ALICE.email, environment="sandbox", api_key_id="key_1")
    live_key = Developer(ALICE.uid, ALICE.email, environment="production", api_key_id="key_2")

    assert world.gateway.payments.push(live_key, ORDER, None).payment.environment == "production"
    assert world.gateway.payments.push(test_key, ORDER, None).payment.environment == "sandbox"
    with pytest.raises(errors.PermissionDenied) as raised:
        world.gateway.payments.push(test_key, {**ORDER, "environment": "production"}, None)
    assert raised.value.code == "environment_mismatch"
    with pytest.raises(errors.PermissionDenied):
        world.gateway.credentials.put(test_key, PRODUCTION_CREDENTIALS)
    assert [s["environment"] for s in world.gateway.credentials.list(test_key)] == ["sandbox"]
    assert [app.environment for app, _ in world.daraja.push_calls] == ["production", "sandbox"]
    # Reads: a key sees only its environment's payments; an ID token may narrow with ?environment=.
    listed = world.gateway.payments.list(test_key, None, None, None)
    assert [p.environment for p in listed.payments] == ["sandbox"]
    production_id = world.gateway.payments.list(ALICE, None, None, None, "production").payments[0].id
    with pytest.raises(errors.NotFound):
        world.gateway.payments.get(test_key, production_id, None)
    assert world.gateway.payments.get(live_key, production_id, None).environment == "production"


def test_the_old_single_set_layout_is_read_and_migrated_by_the_next_put(world: World) -> None:
    # A registry entry and secret as the gateway stored them before sets were per environment.
    world.repo.ensure_developer(ALICE.uid, ALICE.email)
    world.backend.add_version(
        secret_id(ALICE.uid, "sandbox"),
        json.dumps({"consumer_key": "ckeyLEGACY00001111", "consumer_secret": "s" * 12, "passkey": PASSKEY}).encode(),
    )
    world.repo.developers[ALICE.uid]["daraja"] = {
        "environment": "sandbox",
        "shortcode": "174379",
        "transaction_type": "CustomerPayBillOnline",
        "party_b": "174379",
        "consumer_key_hint": "ckey...1111",
        "verified_at": T0,
        "updated_at": T0,
    }

    assert [s["consumer_key_hint"] for s in world.gateway.credentials.list(ALICE)] == ["ckey...1111"]
    world.gateway.payments.push(ALICE, ORDER, None)
    world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)

    daraja = world.repo.developers[ALICE.uid]["daraja"]
    assert set(daraja) == {"sandbox", "production"}, "no key of the old layout is left behind"
    assert daraja["sandbox"]["consumer_key_hint"] == "ckey...1111" and daraja["sandbox"]["secret_version"] is None
    world.gateway.payments.push(ALICE, ORDER, None)
    assert [app.secret.consumer_key for app, _ in world.daraja.push_calls] == ["ckeyLEGACY00001111"] * 2
    world.gateway.credentials.put(ALICE, rotated(5))
    assert world.repo.developers[ALICE.uid]["daraja"]["sandbox"]["secret_version"] == "2"
    assert world.backend.live_versions(secret_id(ALICE.uid, "sandbox")) == ["2"]
