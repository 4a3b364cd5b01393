"""The gateway's configuration, read once from the environment into one typed, immutable object.

This is the only module that reads environment variables. Everything else receives a `Settings`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

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
    max_amount: int = 150_000
    max_body_bytes: int = 16 * 1024
    # Per-instance caches: TTLs bound staleness, sizes bound memory whatever the number of developers.
    credential_cache_ttl_s: float = 300.0
    credential_cache_max_entries: int = 5_000
    oauth_token_margin_s: float = 60.0
    oauth_cache_max_entries: int = 5_000
    # Lost callbacks: payment_status asks Daraja about a payment pending longer than this, at most once per
    # interval; reconcile_payments sweeps payments pending longer than reconcile_after_s.
    pending_query_after_s: float = 30.0
    pending_query_interval_s: float = 30.0
    reconcile_after_s: float = 90.0
    reconcile_batch_size: int = 200
    idempotency_ttl_s: float = 24 * 3600.0
    check_revoked_tokens: bool = True
    # Optional allow-list of Daraja's callback source IPs; empty disables the check.
    callback_allowed_ips: tuple[str, ...] = ()
    # How many proxies in front of us append to X-Forwarded-For (Google's front end appends one).
    trusted_proxy_hops: int = 1
    secret_id_prefix: str = "daraja-credentials-"

    @property
    def emulated_auth_allowed(self) -> bool:
        """Emulator tokens carry no signature, so only a local emulator or a demo- project may accept them."""
        return self.functions_emulator or self.project_id.startswith("demo-")

    def daraja_base_url(self, environment: str) -> str:
        return self.daraja_production_url if environment == "production" else self.daraja_sandbox_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        project_id = _project_id(source)
        functions_emulator = source.get("FUNCTIONS_EMULATOR", "").lower() == "true"
        region = source.get("FUNCTION_REGION", "us-central1")
        default_callback = (
            f"http://127.0.0.1:5001/{project_id}/{region}/mpesa_callback"
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
            max_amount=int(_number(source, "MAX_AMOUNT", 150_000)),
            credential_cache_ttl_s=_number(source, "CREDENTIAL_CACHE_TTL_SECONDS", 300.0),
            credential_cache_max_entries=int(_number(source, "CREDENTIAL_CACHE_MAX_ENTRIES", 5_000)),
            oauth_token_margin_s=_number(source, "OAUTH_TOKEN_MARGIN_SECONDS", 60.0),
            oauth_cache_max_entries=int(_number(source, "OAUTH_CACHE_MAX_ENTRIES", 5_000)),
            pending_query_after_s=_number(source, "PENDING_QUERY_AFTER_SECONDS", 30.0),
            pending_query_interval_s=_number(source, "PENDING_QUERY_INTERVAL_SECONDS", 30.0),
            reconcile_after_s=_number(source, "RECONCILE_AFTER_SECONDS", 90.0),
            check_revoked_tokens=source.get("CHECK_REVOKED_TOKENS", "true").lower() != "false",
            callback_allowed_ips=tuple(
                ip.strip() for ip in source.get("CALLBACK_ALLOWED_IPS", "").split(",") if ip.strip()
            ),
            trusted_proxy_hops=int(_number(source, "TRUSTED_PROXY_HOPS", 1)),
        )


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
