"""The set-up calls to the local stack that the test tiers, the benches and the demo share: Auth emulator accounts,
the Daraja simulator's admin routes (apps, payer scenarios, what it received and delivered), a Firestore client,
and random phones and shortcodes.

Nothing here resets shared state: every caller signs up its own developers, registers its own Daraja app with its
own shortcode and uses its own phone numbers, so tiers, benches and the demo can share one stack. Each call goes to
the stack `stack_config.addresses()` finds, unless given another URL (an in-process simulator) or a session.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

import requests

from scripts import stack_config

ADDRESSES = stack_config.addresses()
AUTH_API_KEY = "fake-api-key"  # the Auth emulator accepts any API key
DEFAULT_PASSWORD = "correct-horse-battery"


def unique_phone() -> str:
    """A random Safaricom-format number, so scenarios and the subscriber lock never collide across callers."""
    return "2547" + "".join(secrets.choice("0123456789") for _ in range(8))


def unique_shortcode() -> str:
    return str(secrets.randbelow(8_000_000) + 1_000_000)


# ------------------------------------------------------------------------------------------ Auth emulator
@dataclass(frozen=True)
class AuthUser:
    uid: str
    email: str
    password: str
    id_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token}"}


def _auth_url(action: str, auth_host: str | None) -> str:
    return f"http://{auth_host or ADDRESSES.auth_host}/identitytoolkit.googleapis.com/v1/accounts:{action}"


def sign_up(
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    *,
    email_prefix: str = "dev-",
    http: requests.Session | None = None,
    auth_host: str | None = None,
) -> AuthUser:
    """A fresh Auth emulator account (a random address under example.com unless `email` is given)."""
    email = email or f"{email_prefix}{secrets.token_hex(5)}@example.com"
    response = (http or requests).post(
        _auth_url("signUp", auth_host),
        params={"key": AUTH_API_KEY},
        json={"email": email, "password": password, "returnSecureToken": True},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    return AuthUser(body["localId"], email, password, body["idToken"])


def delete_auth_user(user: AuthUser, *, http: requests.Session | None = None, auth_host: str | None = None) -> None:
    (http or requests).post(
        _auth_url("delete", auth_host), params={"key": AUTH_API_KEY}, json={"idToken": user.id_token}, timeout=10
    ).raise_for_status()


# ------------------------------------------------------------------------------------------ Daraja simulator
@dataclass(frozen=True)
class DarajaApp:
    """A developer's own Daraja app, as Safaricom's portal would issue it."""

    consumer_key: str
    consumer_secret: str
    shortcode: str
    passkey: str

    @classmethod
    def new(cls, label: str = "test", shortcode: str | None = None) -> DarajaApp:
        return cls(
            consumer_key=f"ck_{label}_{secrets.token_hex(12)}",
            consumer_secret=f"cs_{label}_{secrets.token_hex(16)}",
            shortcode=shortcode or unique_shortcode(),
            passkey=secrets.token_hex(32),
        )

    def credentials_body(self, **overrides: Any) -> dict[str, Any]:
        """The gateway's PUT /developer_credentials body for this app."""
        body: dict[str, Any] = {
            "environment": "sandbox",
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "shortcode": self.shortcode,
            "passkey": self.passkey,
            "transaction_type": "CustomerPayBillOnline",
        }
        body.update(overrides)
        return body

    def register(self, http: requests.Session | None = None, simulator_url: str | None = None) -> None:
        """Make the simulator know this app, as the real Daraja knows an app created on the portal."""
        body = {
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "shortcode": self.shortcode,
            "passkey": self.passkey,
        }
        (http or requests).post(
            f"{simulator_url or ADDRESSES.daraja_url}/simulator/apps", json=body, timeout=10
        ).raise_for_status()


def register_simulator_app(label: str = "test", shortcode: str | None = None) -> DarajaApp:
    """A new DarajaApp, already registered in the stack's simulator."""
    app = DarajaApp.new(label, shortcode)
    app.register()
    return app


def set_scenario(
    phone: str,
    result_code: int | str = 0,
    delay_ms: int = 200,
    callbacks: int = 1,
    *,
    http: requests.Session | None = None,
    simulator_url: str | None = None,
    **faults: Any,
) -> None:
    """How the simulated payer answers the next prompt to `phone`; callbacks=0 means Daraja loses the callback.
    `faults` are the simulator's other scenario fields (push_answer, answer_delay_ms, query_answer; see
    docs/daraja-simulator.md)."""
    body = {"phone": phone, "result_code": result_code, "delay_ms": delay_ms, "callbacks": callbacks, **faults}
    (http or requests).post(
        f"{simulator_url or ADDRESSES.daraja_url}/simulator/scenarios", json=body, timeout=10
    ).raise_for_status()


def simulator_requests(
    kind: str | None = None,
    shortcode: str | None = None,
    *,
    http: requests.Session | None = None,
    simulator_url: str | None = None,
) -> list[dict[str, Any]]:
    """The requests the simulator received, optionally of one kind (oauth, stk_push, stk_query) and shortcode."""
    params = {name: value for name, value in {"kind": kind, "shortcode": shortcode}.items() if value}
    response = (http or requests).get(
        f"{simulator_url or ADDRESSES.daraja_url}/simulator/requests", params=params, timeout=10
    )
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["requests"]
    return [
        r
        for r in listed
        if (kind is None or r.get("kind") == kind) and (shortcode is None or r.get("shortcode") == shortcode)
    ]


def simulator_callbacks(
    checkout_request_id: str, *, http: requests.Session | None = None, simulator_url: str | None = None
) -> list[dict[str, Any]]:
    """The callbacks the simulator delivered (or tried to) for one STK push."""
    response = (http or requests).get(
        f"{simulator_url or ADDRESSES.daraja_url}/simulator/callbacks",
        params={"checkout_request_id": checkout_request_id},
        timeout=10,
    )
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["callbacks"]
    return [c for c in listed if c.get("checkout_request_id") == checkout_request_id]


# ------------------------------------------------------------------------------------------ Firestore emulator
def firestore_client() -> Any:
    """A google-cloud-firestore client of the stack's emulator (sets FIRESTORE_EMULATOR_HOST if it is missing)."""
    from google.cloud import firestore

    os.environ.setdefault("FIRESTORE_EMULATOR_HOST", ADDRESSES.firestore_host)
    return firestore.Client(project=ADDRESSES.project_id)
