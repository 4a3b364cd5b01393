"""A developer with their own Daraja app, as the end-to-end and integration tiers drive one over HTTP, and reads of
their Firestore subtree for assertions that the HTTP API does not expose (payer records, raw callbacks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from scripts import stack_config
from tests import support

PUSH_URL = support.function_url("stk_push")
STATUS_URL = support.function_url("payment_status")
CREDENTIALS_URL = support.function_url("developer_credentials")


@dataclass
class Tenant:
    developer: support.SignedUpDeveloper
    app: support.DarajaApp

    @property
    def headers(self) -> dict[str, str]:
        return self.developer.headers

    def push(self, phone: str, amount: int = 10, key: str | None = None, **extra: Any) -> requests.Response:
        body = {"phone": phone, "amount": amount, "account_reference": "INV-1", "description": "Order 1", **extra}
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return requests.post(PUSH_URL, json=body, headers=headers, timeout=60)

    def status(self, **params: Any) -> requests.Response:
        return requests.get(STATUS_URL, params=params, headers=self.headers, timeout=60)

    def wait_settled(self, payment_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            payment: dict[str, Any] = self.status(id=payment_id).json()
            return payment if payment["status"] != "pending" else None

        result: dict[str, Any] = support.wait_for(settled, timeout_s, 0.3, f"payment {payment_id} to settle")
        return result


def new_tenant() -> Tenant:
    developer = support.sign_up()
    app = support.register_simulator_app()
    response = requests.put(CREDENTIALS_URL, json=app.credentials_body(), headers=developer.headers, timeout=60)
    assert response.status_code == 200, response.text
    return Tenant(developer, app)


def _developer_doc(tenant: Tenant) -> Any:
    return support.firestore_client().collection("developers").document(tenant.developer.uid)


def payment_doc(tenant: Tenant, payment_id: str) -> dict[str, Any]:
    snapshot = _developer_doc(tenant).collection("payments").document(payment_id).get()
    assert snapshot.exists
    return snapshot.to_dict() or {}


def raw_callbacks(tenant: Tenant, payment_id: str) -> list[dict[str, Any]]:
    ref = _developer_doc(tenant).collection("payments").document(payment_id).collection("callbacks")
    return [doc.to_dict() or {} for doc in ref.stream()]


def payer_record(tenant: Tenant, msisdn: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = _developer_doc(tenant).collection("payers").document(msisdn).get().to_dict()
    return record


def quarantined(*, token: str | None = None, checkout_request_id: str | None = None) -> list[dict[str, Any]]:
    """Quarantined callbacks (server-only) for one callback URL token or one CheckoutRequestID."""
    import hashlib

    from google.cloud import firestore

    query: Any = support.firestore_client().collection("quarantined_callbacks")
    if token is not None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        query = query.where(filter=firestore.FieldFilter("token_sha256", "==", digest))
    if checkout_request_id is not None:
        query = query.where(filter=firestore.FieldFilter("checkout_request_id", "==", checkout_request_id))
    return [doc.to_dict() or {} for doc in query.stream()]


def local_env() -> dict[str, str]:
    """The variables functions/.env.local gives the functions in the local stack."""
    return stack_config.functions_local_env()


def local_settings() -> Any:
    """The gateway's Settings as the stack's functions have them, so tests read leases, windows and delays from
    there rather than repeat their values."""
    from gateway.settings import Settings

    return Settings.from_env({**local_env(), "GCLOUD_PROJECT": support.PROJECT_ID})


def use_in_process_gateway(monkeypatch: Any, **settings: str) -> None:
    """Point this process's gateway library at the stack, as the scheduler's instance of reconcile_payments is: with
    the functions' own local settings (functions/.env.local, so both sides agree on leases and windows), then
    `settings` on top."""
    from gateway import container
    from gateway.settings import get_settings

    for name, value in local_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GCLOUD_PROJECT", support.PROJECT_ID)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", support.FIRESTORE_HOST)
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", support.SECRET_MANAGER_HOST)
    monkeypatch.setenv("DARAJA_SANDBOX_BASE_URL", support.DARAJA_URL)
    monkeypatch.setenv("DARAJA_PRODUCTION_BASE_URL", support.DARAJA_URL)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    monkeypatch.setattr(container, "_gateway", None)
