"""What the use cases share: the timing policy from Settings, hashing of tokens and keys, and the Daraja app that
acts for a developer (their current set-up) or for one payment (the environment and shortcode it was made with)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway import errors
from gateway.daraja import DarajaApp, DarajaClient
from gateway.domain.payment import Payment, PaymentPolicy
from gateway.repository import PaymentStore
from gateway.secrets import CredentialStore
from gateway.settings import Settings


class UseCase:
    """The adapters every use case works with, handed over once by `Gateway.build`."""

    def __init__(
        self,
        settings: Settings,
        repository: PaymentStore,
        credentials: CredentialStore,
        daraja: DarajaClient,
        now: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._repo = repository
        self._credentials = credentials
        self._daraja = daraja
        self._now = now
        self._policy = policy(settings)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def policy(settings: Settings) -> PaymentPolicy:
    return PaymentPolicy(
        push_lease_s=settings.push_lease_s,
        reconcile_after_s=settings.reconcile_after_s,
        query_interval_s=settings.pending_query_interval_s,
        pending_query_after_s=settings.pending_query_after_s,
        unconfirmed_after_s=settings.unconfirmed_after_s,
    )


def secret_owner(uid: str, environment: str) -> str:
    """Each environment's keys are their own secret, so a payment made in sandbox can still be queried with the
    sandbox keys after the developer moved to production."""
    return f"{uid}#{environment}"


def require_setup(record: dict[str, Any]) -> dict[str, Any]:
    setup = record.get("daraja")
    if not setup:
        raise errors.CredentialsNotConfigured()
    return dict(setup)


def app_for_setup(credentials: CredentialStore, uid: str, setup: dict[str, Any]) -> DarajaApp:
    return DarajaApp(
        uid=uid,
        environment=setup["environment"],
        shortcode=setup["shortcode"],
        transaction_type=setup["transaction_type"],
        party_b=setup["party_b"],
        secret=credentials.get(secret_owner(uid, setup["environment"])),
    )


def app_for_payment(credentials: CredentialStore, uid: str, payment: Payment) -> DarajaApp:
    """The app that made the payment: its environment and shortcode, with that environment's secret. A query
    needs only the shortcode and the passkey, so the push-only fields are left empty."""
    return DarajaApp(
        uid=uid,
        environment=payment.environment,
        shortcode=payment.shortcode,
        transaction_type="",
        party_b="",
        secret=credentials.get(secret_owner(uid, payment.environment)),
    )
