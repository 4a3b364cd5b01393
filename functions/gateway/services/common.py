"""What the use cases share: the timing policy from Settings, hashing of tokens and keys, the Daraja app that
acts for a developer (the set-up of the environment it acts in) or for one payment (the environment and shortcode
it was made with),
and the one way a payment is saved: with the events its change means, in the same commit (`save_payment`,
`update_payment`)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway import errors
from gateway.daraja import DarajaApp, DarajaClient
from gateway.domain.daraja_setup import SANDBOX, Setups, setups_of
from gateway.domain.events import events_for
from gateway.domain.limits import DeveloperLimits, PhoneLimits, RateLimited, SlidingWindow
from gateway.domain.payment import Payment, PaymentPolicy
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.repository import (
    AddEvent,
    Change,
    PaymentStore,
    SavePayment,
    SaveWindow,
    Versioned,
    Write,
    retry_on_conflict,
)
from gateway.repository import update_payment as _update_payment
from gateway.secrets import CredentialStore, SecretVersionUnavailable
from gateway.settings import Settings
from gateway.views import payment_view


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


def developer_limits(settings: Settings, registry: dict[str, Any], environment: str) -> DeveloperLimits:
    """The environment's push budget: the deployment's default, unless an operator set this developer's own in the
    registry entry (`limits.<environment>.per_second` / `.per_day`)."""
    defaults = {name: (per_second, per_day) for name, per_second, per_day in settings.push_limits}
    per_second, per_day = defaults.get(environment, defaults["sandbox"])
    override = (registry.get("limits") or {}).get(environment) or {}
    if isinstance(override, dict):
        per_second = _positive_or(override.get("per_second"), per_second)
        per_day = int(_positive_or(override.get("per_day"), per_day))
    return DeveloperLimits(per_second=per_second, per_day=per_day, shards=settings.limit_shards)


def _positive_or(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return default
    return float(value)


def admit_to_window(
    repository: PaymentStore, uid: str, name: str, limit: int, window_s: float, now: datetime, message: str
) -> None:
    """Count one more event in the developer's server-only window `name`, or raise 429 with Retry-After. The window
    document is saved with a precondition, so racing instances cannot both take the last place."""

    def attempt() -> None:
        loaded = repository.load_window(uid, name)
        admitted = (loaded.value if loaded else SlidingWindow()).admit(now, limit, window_s, name, message)
        if isinstance(admitted, RateLimited):
            log_event(Event.RATE_LIMITED, "WARNING", uid=uid, limit=name, retry_after_s=admitted.retry_after_s)
            raise errors.RateLimited(admitted.limit, admitted.message, admitted.retry_after_s)
        repository.commit([SaveWindow(uid, name, admitted, loaded.version if loaded else None)])

    retry_on_conflict(attempt, deadline_s=5.0)


def phone_limits(settings: Settings) -> PhoneLimits:
    return PhoneLimits(
        prompts_per_window=settings.phone_prompts_per_10_min, window_s=600.0, in_flight_s=settings.phone_in_flight_s
    )


def secret_owner(uid: str, environment: str) -> str:
    """Each environment's keys are their own secret, so a payment made in sandbox can still be queried with the
    sandbox keys after the developer moved to production."""
    return f"{uid}#{environment}"


def resolve_environment(requested: str | None, developer: Developer) -> str | None:
    """The environment a call acts in: the one it asked for (body or `?environment=`), else its API key's, else
    None (select_setup then decides). A key is bound to its environment: asking for the other one is a 403."""
    if requested is not None and developer.environment is not None and requested != developer.environment:
        key_kind = "test" if developer.environment == SANDBOX else "live"
        raise errors.PermissionDenied(
            "environment_mismatch",
            f"this {key_kind} API key can only act in the {developer.environment} environment",
            "environment",
        )
    return requested if requested is not None else developer.environment


def select_setup(record: dict[str, Any], environment: str | None) -> dict[str, Any]:
    """The set-up a push uses, from the developer's registry entry (old single-set layout included).

    With an environment: that environment's set-up, or 404 credentials_not_configured. Without: the only one when
    exactly one is configured; sandbox when both are, so a push never moves real money unless it asks to."""
    setups = setups_of(record.get("daraja"))
    if environment is not None:
        setup = setups.get(environment)
        if setup is None:
            raise errors.CredentialsNotConfigured(
                message=f"no {environment} Daraja credentials are registered; PUT them to developer_credentials "
                f'with "environment": "{environment}" first',
                param="environment",
            )
        return dict(setup)
    if not setups:
        raise errors.CredentialsNotConfigured()
    if len(setups) == 1:
        return dict(next(iter(setups.values())))
    return dict(setups[SANDBOX])


def app_for_setup(credentials: CredentialStore, uid: str, setup: dict[str, Any]) -> DarajaApp:
    """The app of a set-up, with the very secret version the set-up names (never another environment's, never an
    older one still in a cache)."""
    return DarajaApp(
        uid=uid,
        environment=setup["environment"],
        shortcode=setup["shortcode"],
        transaction_type=setup["transaction_type"],
        party_b=setup["party_b"],
        secret=credentials.get(secret_owner(uid, setup["environment"]), _version(setup)),
    )


def load_app(
    repository: PaymentStore,
    credentials: CredentialStore,
    developer: Developer,
    record: dict[str, Any],
    environment: str | None,
) -> tuple[dict[str, Any], DarajaApp]:
    """The set-up for `environment` from the registry entry `record` (see select_setup), and its app. When the
    secret version it names was retired between our read and our access (a PUT or DELETE landed meanwhile), the
    registry entry is read again, once: the set-up stored now names the version to use."""
    setup = select_setup(record, environment)
    try:
        return setup, app_for_setup(credentials, developer.uid, setup)
    except SecretVersionUnavailable:
        setup = select_setup(repository.ensure_developer(developer.uid, developer.email), environment)
        return setup, app_for_setup(credentials, developer.uid, setup)


def app_for_payment(credentials: CredentialStore, uid: str, payment: Payment, setups: Setups) -> DarajaApp:
    """The app that made the payment: its environment and shortcode, with that environment's current secret (from
    `setups`, the developer's set-ups as read). A query needs only the shortcode and the passkey, so the push-only
    fields are left empty."""
    setup = setups.get(payment.environment)
    if setup is None:
        raise errors.CredentialsNotConfigured()
    return DarajaApp(
        uid=uid,
        environment=payment.environment,
        shortcode=payment.shortcode,
        transaction_type="",
        party_b="",
        secret=credentials.get(secret_owner(uid, payment.environment), _version(setup)),
    )


def _version(setup: dict[str, Any]) -> str | None:
    version = setup.get("secret_version")
    return None if version is None else str(version)


# ------------------------------------------------------------------------------------------------ the outbox
def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def event_writes(uid: str, before: Payment | None, after: Payment) -> list[Write]:
    """The outbox entries for `before` -> `after`, each with the payment as the API shows it after the change."""
    types = events_for(before, after)
    if not types:
        return []
    view = payment_view(after)
    return [AddEvent(uid, new_event_id(), event.value, after.updated_at, after.id, view) for event in types]


def save_payment(uid: str, before: Payment | None, after: Payment, version: Any = None) -> list[Write]:
    """Every save of a payment a use case builds: the payment first (callers read its version at index 0), then
    its events, so a change and its events commit together or not at all. `before` None creates the payment."""
    return [SavePayment(uid, after, version), *event_writes(uid, before, after)]


def update_payment(
    repository: PaymentStore,
    uid: str,
    payment_id: str,
    change: Callable[[Payment], Change | None],
    loaded: Versioned[Payment] | None = None,
    load: Callable[[], Versioned[Payment] | None] | None = None,
) -> Payment | None:
    """gateway.repository.update_payment with the change's events added to its commit."""

    def with_events(before: Payment) -> Change | None:
        decided = change(before)
        if decided is None:
            return None
        after, writes = decided
        return after, [*writes, *event_writes(uid, before, after)]

    return _update_payment(repository, uid, payment_id, with_events, loaded, load)
