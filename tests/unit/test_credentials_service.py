"""The credentials use case (gateway.services.credentials) over the in-memory fakes: keys are verified with Daraja
before anything is stored, each environment's secret is its own (secret owner "{uid}#{environment}"), and a delete
removes every environment."""

from __future__ import annotations

import json

import pytest

from gateway import errors
from gateway.domain.errors import ValidationError
from gateway.secrets import CredentialStore
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
    assert registry["daraja"] == setup and registry["email"] == ALICE.email
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
    assert world.gateway.credentials.get(ALICE) == setup
    assert set(world.backend.secrets) == {secret_id(ALICE.uid, "sandbox"), secret_id(ALICE.uid, "production")}
    # Moving to production leaves the sandbox keys in place: sandbox payments can still be queried with them.
    assert stored_secret(world, ALICE.uid, "sandbox")["consumer_key"] == CREDENTIALS["consumer_key"]
    assert stored_secret(world, ALICE.uid, "production")["consumer_key"] == PRODUCTION_CREDENTIALS["consumer_key"]
    assert [call[0] for call in world.daraja.verify_calls] == ["sandbox", "production"]
    # The next push uses the current set-up and its environment's secret.
    world.gateway.payments.push(ALICE, ORDER, None)
    [(app, _order)] = world.daraja.push_calls
    assert (app.environment, app.shortcode, app.secret.consumer_key) == (
        "production",
        "600555",
        PRODUCTION_CREDENTIALS["consumer_key"],
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
    assert world.repo.developers[ALICE.uid]["daraja"] is None
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.credentials.get(ALICE)
    with pytest.raises(errors.CredentialsNotConfigured):
        world.gateway.payments.push(ALICE, ORDER, None)
    assert world.daraja.push_calls == []
    assert world.gateway.credentials.delete(ALICE) is False, "nothing left to delete"


def test_delete_removes_a_secret_left_without_a_setup(world: World) -> None:
    world.gateway.credentials.put(ALICE, PRODUCTION_CREDENTIALS)
    world.repo.clear_daraja_setup(ALICE.uid)

    assert world.gateway.credentials.delete(ALICE) is True
    assert world.backend.secrets == {}


def test_delete_without_credentials_is_false_and_get_is_not_configured(world: World) -> None:
    assert world.gateway.credentials.delete(ALICE) is False
    with pytest.raises(errors.CredentialsNotConfigured) as raised:
        world.gateway.credentials.get(ALICE)
    assert raised.value.http_status == 404
