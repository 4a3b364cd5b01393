"""The gateway's configuration, read once from the environment into one typed, immutable object.

This is the only module that reads environment variables. Everything else receives a `Settings`.

It also holds the one guard for everything that trusts the local stack (`Settings.unsafe_configuration`): emulator
tokens carry no signature, the emulators check no credentials and plain-HTTP URLs carry secrets in clear, so those
are allowed only where a runtime signal that production cannot have says this is the local stack.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from gateway import errors
from gateway.logs import Event, log_event

SANDBOX_BASE_URL = "https://sandbox.safaricom.co.ke"
PRODUCTION_BASE_URL = "https://api.safaricom.co.ke"


class SettingsError(ValueError):
    """A configuration value is present but unusable; raised at first use, named by its variable."""


@dataclass(frozen=True)
class Settings:
    project_id: str
    region: str = "us-central1"
    # Emulator wiring. Empty string means "use the real service".
    functions_emulator: bool = False
    auth_emulator_host: str = ""
    firestore_emulator_host: str = ""
    secret_manager_emulator_host: str = ""
    # Daraja base URLs per environment; overridable so the simulator can stand in locally.
    daraja_sandbox_url: str = SANDBOX_BASE_URL
    daraja_production_url: str = PRODUCTION_BASE_URL
    daraja_timeout_s: float = 15.0
    # The public URL of the mpesa_callback function; each payment appends /<callback_token>.
    callback_base_url: str = ""
    # The origin of the project's Firebase Hosting site (the console; /api/* and /hooks/daraja/* rewrite to the
    # functions). When set, callbacks default to <hosting_url>/hooks/daraja: Safaricom refuses callback URLs that
    # contain words such as "mpesa", so the function's own URL cannot serve there.
    hosting_url: str = ""
    max_amount: int = 150_000
    max_body_bytes: int = 16 * 1024
    # Per-instance caches: TTLs bound staleness, sizes bound memory whatever the number of developers.
    credential_cache_ttl_s: float = 300.0
    credential_cache_max_entries: int = 5_000
    oauth_token_margin_s: float = 60.0
    oauth_cache_max_entries: int = 5_000
    # API keys: an instance trusts what it read about a key for this long, so a revoked key is refused by every
    # instance within it (at most MAX_API_KEY_CACHE_TTL_S). last_used_at is written at most once per interval.
    api_key_cache_ttl_s: float = 4.0
    api_key_cache_max_entries: int = 5_000
    api_key_use_mark_interval_s: float = 60.0
    max_api_keys_per_developer: int = 20
    # Lost callbacks: payment_status asks Daraja about a payment pending longer than this, at most once per
    # interval; reconcile_payments sweeps payments pending longer than reconcile_after_s.
    pending_query_after_s: float = 30.0
    pending_query_interval_s: float = 30.0
    reconcile_after_s: float = 90.0
    reconcile_batch_size: int = 200
    idempotency_ttl_s: float = 24 * 3600.0
    # A push still "sending" after this long lost its instance: a retry with its key answers from the payment, and
    # the reconciler marks it outcome_unknown. Longer than the Daraja timeout.
    push_lease_s: float = 60.0
    # A push whose outcome stayed unknown, with no callback within this window, ends "unconfirmed".
    unconfirmed_after_s: float = 3600.0
    check_revoked_tokens: bool = True
    # The revocation check reads the user's record from Firebase Auth; it is cached per uid for this long, which is
    # therefore how long a revoked or disabled user's unexpired ID token still works (0: ask Auth on every call).
    revocation_cache_ttl_s: float = 30.0
    revocation_cache_max_entries: int = 10_000
    # Optional allow-list of Daraja's callback source IPs; empty disables the check.
    callback_allowed_ips: tuple[str, ...] = ()
    # How many proxies in front of us append to X-Forwarded-For (Google's front end appends one).
    trusted_proxy_hops: int = 1
    secret_id_prefix: str = "daraja-credentials-"
    # Cloud Run's service identity (K_SERVICE, else K_REVISION or K_CONFIGURATION), which the platform sets in every
    # deployed function and nobody can override there. The Functions emulator sets K_SERVICE and K_REVISION in its
    # workers too, so inside the emulator only a demo- project makes the local stack trusted.
    service_identity: str = ""
    # Who may be a developer: anonymous sign-ins never; unverified e-mail addresses only while this is off. Off by
    # default because the Auth emulator's sign-ups are unverified; production deployments should turn it on.
    require_verified_email: bool = False
    # Emulator-only fault injection for the tests/faults tier (gateway.faults); guarded like every local-stack setting.
    fault_injection: bool = False
    # Webhooks (gateway.services.webhooks). One attempt's deadline; the Standard Webhooks retry schedule times
    # webhook_retry_scale (1 in production; small locally so retries take seconds); how long both secrets sign after
    # a rotation; how long an endpoint may fail without a success before it is disabled.
    webhook_timeout_s: float = 15.0
    webhook_retry_scale: float = 1.0
    webhook_rotation_overlap_s: float = 24 * 3600.0
    webhook_disable_after_s: float = 5 * 24 * 3600.0
    webhook_max_endpoints: int = 10
    # A delivery task that arrives before its attempt is due waits in place up to this long, else the queue retries
    # it later. Production queues honour the schedule time, so 0 there; the Tasks emulator runs every task at once.
    webhook_early_task_wait_s: float = 0.0
    # Firestore triggers are not retried (firebase-functions declares them retry=False), so the sweep
    # (Deliveries.sweep, the sweep_webhook_events schedule) fans out any event still not fanned out this long after
    # it was written. Longer than a healthy trigger takes; 5 s locally. The sweep reads pages of this many events and
    # at most webhook_sweep_max_events per run, so one run stays well inside a scheduled function's timeout.
    webhook_fan_out_grace_s: float = 120.0
    webhook_sweep_page_size: int = 100
    webhook_sweep_max_events: int = 2_000
    # Abuse limits (gateway.domain.limits). Pushes per developer and environment: production defaults to 10/s
    # (Daraja's own per-app throughput is of that order) and 10,000/day; sandbox to 2/s and 1,000/day (Safaricom's
    # sandbox is a test bed and rate-limits harder). An operator can raise one developer's limits in its registry
    # entry (`limits.<environment>.per_second` / `per_day`). The per-second budget is split over `limit_shards`
    # documents, so no document takes more than about one write per second.
    push_limits: tuple[tuple[str, float, int], ...] = (("production", 10.0, 10_000), ("sandbox", 2.0, 1_000))
    limit_shards: int = 10
    # One prompt in flight per phone, at most this many per phone per 10 minutes, per developer.
    phone_prompts_per_10_min: int = 5
    phone_in_flight_s: float = 90.0
    # Credential PUTs call Daraja to verify keys: throttled so the endpoint is no key-checking oracle.
    credential_puts_per_minute: int = 5

    @property
    def local_stack_trusted(self) -> bool:
        """Whether emulators, emulator tokens and plain-HTTP URLs may be used: only in a `demo-` project (which
        cannot exist in production), or with FUNCTIONS_EMULATOR=true where no Cloud Run service identity is set."""
        if self.project_id.startswith("demo-"):
            return True
        return self.functions_emulator and not self.service_identity

    def local_stack_in_use(self) -> tuple[str, ...]:
        """The variables (by name, never by value) whose current values trust the local stack."""
        in_use = [
            name
            for name, trusting in (
                ("FUNCTIONS_EMULATOR", self.functions_emulator),
                ("FIREBASE_AUTH_EMULATOR_HOST", bool(self.auth_emulator_host)),
                ("FIRESTORE_EMULATOR_HOST", bool(self.firestore_emulator_host)),
                ("SECRET_MANAGER_EMULATOR_HOST", bool(self.secret_manager_emulator_host)),
                ("DARAJA_SANDBOX_BASE_URL", _plain_http(self.daraja_sandbox_url)),
                ("DARAJA_PRODUCTION_BASE_URL", _plain_http(self.daraja_production_url)),
                ("CALLBACK_BASE_URL", _plain_http(self.callback_base_url)),
                ("HOSTING_URL", _plain_http(self.hosting_url)),
                ("GATEWAY_FAULT_INJECTION", self.fault_injection),
            )
            if trusting
        ]
        return tuple(in_use)

    def unsafe_configuration(self) -> str | None:
        """Why this configuration must not serve, or None when it may. Names variables, never their values."""
        in_use = self.local_stack_in_use()
        if not in_use or self.local_stack_trusted:
            return None
        if self.service_identity:
            why = "a Cloud Run service identity (K_SERVICE, K_REVISION or K_CONFIGURATION) is set"
        else:
            why = "FUNCTIONS_EMULATOR is not true"
        return (
            f"local-stack settings are in use ({', '.join(in_use)}: emulators, unsigned tokens or plain HTTP), but "
            f"the project id does not start with demo- and {why}; this instance refuses to serve"
        )

    def assert_safe(self) -> None:
        """Raise a 503 (and log the reason at CRITICAL) when this configuration must not serve."""
        reason = self.unsafe_configuration()
        if reason is None:
            return
        log_event(Event.UNSAFE_CONFIGURATION_REFUSED, "CRITICAL", reason=reason, project_id=self.project_id)
        raise errors.ServiceUnavailable(
            "unsafe_configuration", "this deployment is misconfigured and refuses to serve requests"
        )

    def daraja_base_url(self, environment: str) -> str:
        return self.daraja_production_url if environment == "production" else self.daraja_sandbox_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        project_id = _project_id(source)
        functions_emulator = source.get("FUNCTIONS_EMULATOR", "").lower() == "true"
        region = source.get("FUNCTION_REGION", "us-central1")
        hosting_url = _url(source, "HOSTING_URL", "") if source.get("HOSTING_URL", "").strip() else ""
        default_callback = (
            f"{hosting_url}/hooks/daraja"
            if hosting_url
            else f"http://127.0.0.1:5001/{project_id}/{region}/mpesa_callback"
            if functions_emulator
            else f"https://{region}-{project_id}.cloudfunctions.net/mpesa_callback"
        )
        return cls(
            project_id=project_id,
            region=region,
            functions_emulator=functions_emulator,
            auth_emulator_host=source.get("FIREBASE_AUTH_EMULATOR_HOST", ""),
            firestore_emulator_host=source.get("FIRESTORE_EMULATOR_HOST", ""),
            secret_manager_emulator_host=source.get("SECRET_MANAGER_EMULATOR_HOST", ""),
            daraja_sandbox_url=_url(source, "DARAJA_SANDBOX_BASE_URL", SANDBOX_BASE_URL),
            daraja_production_url=_url(source, "DARAJA_PRODUCTION_BASE_URL", PRODUCTION_BASE_URL),
            daraja_timeout_s=_number(source, "DARAJA_TIMEOUT_SECONDS", 15.0),
            callback_base_url=_url(source, "CALLBACK_BASE_URL", default_callback),
            hosting_url=hosting_url,
            max_amount=int(_number(source, "MAX_AMOUNT", 150_000)),
            credential_cache_ttl_s=_number(source, "CREDENTIAL_CACHE_TTL_SECONDS", 300.0),
            credential_cache_max_entries=int(_number(source, "CREDENTIAL_CACHE_MAX_ENTRIES", 5_000)),
            oauth_token_margin_s=_number(source, "OAUTH_TOKEN_MARGIN_SECONDS", 60.0),
            oauth_cache_max_entries=int(_number(source, "OAUTH_CACHE_MAX_ENTRIES", 5_000)),
            api_key_cache_ttl_s=_api_key_cache_ttl(source),
            api_key_cache_max_entries=int(_number(source, "API_KEY_CACHE_MAX_ENTRIES", 5_000)),
            max_api_keys_per_developer=int(_number(source, "MAX_API_KEYS_PER_DEVELOPER", 20)),
            pending_query_after_s=_number(source, "PENDING_QUERY_AFTER_SECONDS", 30.0),
            pending_query_interval_s=_number(source, "PENDING_QUERY_INTERVAL_SECONDS", 30.0),
            reconcile_after_s=_number(source, "RECONCILE_AFTER_SECONDS", 90.0),
            push_lease_s=_number(source, "PUSH_LEASE_SECONDS", 60.0),
            unconfirmed_after_s=_number(source, "UNCONFIRMED_AFTER_SECONDS", 3600.0),
            check_revoked_tokens=source.get("CHECK_REVOKED_TOKENS", "true").lower() != "false",
            revocation_cache_ttl_s=_number(source, "REVOCATION_CHECK_CACHE_SECONDS", 30.0),
            callback_allowed_ips=tuple(
                ip.strip() for ip in source.get("CALLBACK_ALLOWED_IPS", "").split(",") if ip.strip()
            ),
            trusted_proxy_hops=int(_number(source, "TRUSTED_PROXY_HOPS", 1)),
            service_identity=source.get("K_SERVICE") or source.get("K_REVISION") or source.get("K_CONFIGURATION") or "",
            require_verified_email=_flag(source, "REQUIRE_VERIFIED_EMAIL", default=False),
            fault_injection=_flag(source, "GATEWAY_FAULT_INJECTION", default=False),
            webhook_timeout_s=_number(source, "WEBHOOK_TIMEOUT_SECONDS", 15.0),
            webhook_retry_scale=_number(source, "WEBHOOK_RETRY_SCALE", 1.0),
            webhook_rotation_overlap_s=_number(source, "WEBHOOK_ROTATION_OVERLAP_SECONDS", 24 * 3600.0),
            webhook_disable_after_s=_number(source, "WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 24 * 3600.0),
            webhook_max_endpoints=int(_number(source, "WEBHOOK_MAX_ENDPOINTS", 10)),
            webhook_early_task_wait_s=_number(source, "WEBHOOK_EARLY_TASK_WAIT_SECONDS", 0.0),
            webhook_fan_out_grace_s=_number(source, "WEBHOOK_FAN_OUT_GRACE_SECONDS", 120.0),
            push_limits=(
                (
                    "production",
                    _positive(source, "PUSHES_PER_SECOND_PRODUCTION", 10.0),
                    int(_positive(source, "PUSHES_PER_DAY_PRODUCTION", 10_000)),
                ),
                (
                    "sandbox",
                    _positive(source, "PUSHES_PER_SECOND_SANDBOX", 2.0),
                    int(_positive(source, "PUSHES_PER_DAY_SANDBOX", 1_000)),
                ),
            ),
            limit_shards=int(_positive(source, "LIMIT_SHARDS", 10)),
            phone_prompts_per_10_min=int(_positive(source, "PHONE_PROMPTS_PER_10_MINUTES", 5)),
            phone_in_flight_s=_positive(source, "PHONE_IN_FLIGHT_SECONDS", 90.0),
            credential_puts_per_minute=int(_positive(source, "CREDENTIAL_PUTS_PER_MINUTE", 5)),
        )


def _positive(source: Mapping[str, str], name: str, default: float) -> float:
    value = _number(source, name, default)
    if value <= 0:
        raise SettingsError(f"{name} must be greater than zero")
    return value


MAX_API_KEY_CACHE_TTL_S = 5.0


def _api_key_cache_ttl(source: Mapping[str, str]) -> float:
    # The promise is that a revoked key stops working everywhere within 5 seconds; a longer TTL would break it.
    value = _number(source, "API_KEY_CACHE_TTL_SECONDS", 4.0)
    if value > MAX_API_KEY_CACHE_TTL_S:
        raise SettingsError(f"API_KEY_CACHE_TTL_SECONDS must be at most {MAX_API_KEY_CACHE_TTL_S:g}")
    return value


def _project_id(source: Mapping[str, str]) -> str:
    for name in ("GCLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"):
        if source.get(name):
            return source[name]
    return ""


def _url(source: Mapping[str, str], name: str, default: str) -> str:
    value = source.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL")
    return value.rstrip("/")


def _plain_http(url: str) -> bool:
    return url.lower().startswith("http://")


def _flag(source: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = source.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _number(source: Mapping[str, str], name: str, default: float) -> float:
    raw = source.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from error
    if not math.isfinite(value) or value < 0 or value > 1e12:
        raise SettingsError(f"{name} must be a finite, non-negative number, got {raw!r}")
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time)."""
    return Settings.from_env()
