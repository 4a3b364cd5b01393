"""Webhook rules, pure: which URLs an endpoint may have, which addresses a delivery may reach (SSRF), what an
answer means, and when the next attempt is due (the Standard Webhooks schedule).

    attempt 1 at once; after the n-th failure wait RETRY_SCHEDULE_S[n] (x the settable scale), or what a 429/503
    asked for in Retry-After if that is longer; after the 10th failure the delivery has failed.
    2xx: delivered.  410 Gone: the receiver asked us to stop, the endpoint is disabled.  Anything else, a timeout,
    a refused connection or a refused address: a failed attempt.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final, Literal
from urllib.parse import urlsplit

from gateway.domain.errors import ValidationError
from gateway.domain.events import subscribed

# Standard Webhooks' suggested schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
RETRY_SCHEDULE_S: Final = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
MAX_ATTEMPTS: Final = len(RETRY_SCHEDULE_S)
MAX_URL_LENGTH: Final = 2048
MAX_DESCRIPTION_LENGTH: Final = 500
# A receiver asking for more than a day is treated as asking for a day.
MAX_RETRY_AFTER_S: Final = 86400.0

Verdict = Literal["delivered", "gone", "retry"]


def verdict_for(status: int | None) -> Verdict:
    """What one attempt's HTTP status (None: no answer at all) means for the delivery."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    return "retry"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 9:
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def requested_wait(status: int | None, retry_after: str | None, now: datetime) -> float | None:
    """The wait a receiver asked for: its Retry-After, heeded only on 429 Too Many Requests and 503 Unavailable."""
    return parse_retry_after(retry_after, now) if status in (429, 503) else None


def next_delay(failures: int, scale: float, retry_after_s: float | None = None) -> float | None:
    """Seconds to wait after the `failures`-th failed attempt, or None when no attempt is left."""
    if failures >= MAX_ATTEMPTS:
        return None
    delay = RETRY_SCHEDULE_S[failures] * scale
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


# ------------------------------------------------------------------------------------------------ addresses
_NOT_PUBLIC_V4: Final = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, and the cloud metadata server 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_METADATA_V6: Final = ipaddress.ip_address("fd00:ec2::254")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: str) -> bool:
    """Whether a resolved address is on the public internet: loopback, private, link-local, metadata, multicast,
    reserved and documentation ranges are not (IPv4-mapped and 6to4/NAT64 forms are judged by their IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip == _METADATA_V6:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(str(embedded))
        return not (
            ip.is_loopback
            or ip.is_private
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
            or ip.is_site_local
        )
    return not any(ip in network for network in _NOT_PUBLIC_V4) and ip.is_global


def is_loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EndpointUrl:
    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, what goes on the request line


def parse_endpoint_url(raw: object, *, allow_local: bool, param: str = "url") -> EndpointUrl:
    """An endpoint URL: https with a host name or address, no credentials, no fragment. Plain http only to the
    loopback host, and only when `allow_local` (the trusted local stack)."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError("invalid_url", f"{param} must be an https:// URL", param)
    url = raw.strip()
    if len(url) > MAX_URL_LENGTH or not url.isascii() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationError("invalid_url", f"{param} must be a printable ASCII URL of at most 2048 characters", param)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError("invalid_url", f"{param} is not a valid URL", param) from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValidationError("invalid_url", f"{param} must be an https:// URL", param)
    if parts.username is not None or parts.password is not None:
        raise ValidationError("invalid_url", f"{param} must not carry credentials", param)
    if parts.fragment:
        raise ValidationError("invalid_url", f"{param} must not have a fragment", param)
    local = host == "localhost" or is_loopback_address(host)
    if parts.scheme == "http" and not (allow_local and local):
        raise ValidationError("insecure_url", f"{param} must use https://", param)
    if not allow_local:
        # Judged again after DNS resolution at every delivery; refusing literal addresses here is a clear early 400.
        if local or (_is_ip_literal(host) and not is_public_address(host)) or host.endswith((".internal", ".local")):
            raise ValidationError("url_not_public", f"{param} must point to a public address", param)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return EndpointUrl(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), target)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_description(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_DESCRIPTION_LENGTH:
        raise ValidationError(
            "invalid_description",
            f"description must be a string of at most {MAX_DESCRIPTION_LENGTH} characters",
            "description",
        )
    return raw


# ------------------------------------------------------------------------------------------------ entities
EndpointStatus = Literal["enabled", "disabled"]
DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed", "cancelled"]
FINISHED: Final = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class WebhookEndpoint:
    """A developer's receiver. It names the Secret Manager versions that sign for it, never a secret."""

    id: str
    url: str
    description: str
    enabled_events: tuple[str, ...]
    status: EndpointStatus
    created_at: datetime
    updated_at: datetime
    secret_version: str
    previous_secret_version: str | None = None
    previous_secret_expires_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    # The environment whose events it receives; None: both (only an ID token, the account itself, can make one).
    environment: str | None = None

    def receives(self, event_type: str, environment: str | None) -> bool:
        """Whether an event of this type, about a payment in this environment, goes to this endpoint: a test key's
        endpoint never hears of live money."""
        return (
            self.status == "enabled"
            and subscribed(self.enabled_events, event_type)
            and (self.environment is None or self.environment == environment)
        )

    def visible_to(self, environment: str | None) -> bool:
        """An API key (bound to one environment) sees only that environment's endpoints; an ID token sees all."""
        return environment is None or self.environment == environment

    def signing_versions(self, now: datetime) -> tuple[str, ...]:
        """The current secret's version, and the previous one while a rotation's overlap lasts."""
        if (
            self.previous_secret_version is not None
            and self.previous_secret_expires_at is not None
            and now < self.previous_secret_expires_at
        ):
            return (self.secret_version, self.previous_secret_version)
        return (self.secret_version,)

    def rotated(self, new_version: str, now: datetime, overlap_s: float) -> WebhookEndpoint:
        return replace(
            self,
            secret_version=new_version,
            previous_secret_version=self.secret_version,
            previous_secret_expires_at=now + timedelta(seconds=overlap_s),
            updated_at=now,
        )

    def succeeded(self, now: datetime) -> WebhookEndpoint:
        return self if self.failing_since is None else replace(self, failing_since=None, updated_at=now)

    def failed(self, now: datetime, disable_after_s: float) -> WebhookEndpoint:
        """Another failed attempt: disabled once it has failed without a success for `disable_after_s`."""
        since = self.failing_since or now
        if self.status == "enabled" and now - since >= timedelta(seconds=disable_after_s):
            return replace(self, status="disabled", disabled_reason="failing", failing_since=since, updated_at=now)
        return self if self.failing_since is not None else replace(self, failing_since=now, updated_at=now)

    def gone(self, now: datetime) -> WebhookEndpoint:
        """The receiver answered 410 Gone: disabled (an endpoint already disabled keeps its reason)."""
        if self.status != "enabled":
            return self
        return replace(self, status="disabled", disabled_reason="gone", updated_at=now)


@dataclass(frozen=True)
class Attempt:
    at: datetime
    endpoint_id: str
    url: str
    status_code: int | None
    latency_ms: int
    response_excerpt: str
    error: str | None
    trigger: str  # "automatic" or "manual"
    signatures: int


@dataclass(frozen=True)
class Delivery:
    """One event to one endpoint: its state, and every attempt so far (the delivery log)."""

    event_id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime
    failures: int = 0
    lease_until: datetime | None = None
    trigger: str = "automatic"
    attempts: tuple[Attempt, ...] = ()

    @classmethod
    def first(cls, event_id: str, endpoint_id: str, event_type: str, now: datetime) -> Delivery:
        return cls(event_id, endpoint_id, event_type, "pending", now, now, now)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def claim(self, now: datetime, lease_s: float) -> Delivery:
        return replace(self, status="delivering", lease_until=now + timedelta(seconds=lease_s), updated_at=now)

    def leased(self, now: datetime) -> bool:
        return self.status == "delivering" and self.lease_until is not None and now < self.lease_until

    def recorded(
        self, attempt: Attempt, verdict: Verdict, now: datetime, scale: float, retry_after_s: float | None
    ) -> Delivery:
        """The delivery after one attempt: ended, or pending with its next attempt scheduled."""
        attempts = (*self.attempts, attempt)
        if verdict == "delivered":
            return replace(self, status="succeeded", attempts=attempts, lease_until=None, updated_at=now)
        if verdict == "gone":
            return replace(self, status="failed", attempts=attempts, lease_until=None, updated_at=now)
        failures = self.failures + 1
        delay = next_delay(failures, scale, retry_after_s)
        if delay is None:
            return replace(
                self, status="failed", failures=failures, attempts=attempts, lease_until=None, updated_at=now
            )
        return replace(
            self,
            status="pending",
            failures=failures,
            attempts=attempts,
            lease_until=None,
            next_attempt_at=now + timedelta(seconds=delay),
            updated_at=now,
        )

    def cancelled(self, now: datetime) -> Delivery:
        return replace(self, status="cancelled", lease_until=None, updated_at=now)

    def resent(self, now: datetime) -> Delivery:
        """A manual redelivery: a fresh series of attempts, the log kept."""
        return replace(
            self, status="pending", failures=0, next_attempt_at=now, lease_until=None, trigger="manual", updated_at=now
        )
