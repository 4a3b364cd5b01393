"""Abuse limits, as pure values: how many pushes a developer may make, how often one payer's phone may be prompted,
and how often a developer may try credentials. Each limit is a small state plus a method that either returns the
next state or says when to come back (`RateLimited`). Storage and concurrency belong to the adapters: every state
here lives in a document that is saved with a precondition in the same commit as the payment's intent, so the
limits hold across instances without a lock.

Firestore sustains about one write per second per document, so the per-developer budget is split over a fixed
number of shards (`DeveloperLimits.shards`): each push draws from one shard, a token bucket refilled at
``per_second / shards`` that also counts the UTC day. The per-phone state sits in the payer's own document, which
the intent commit writes anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RateLimited:
    """A refusal: which limit, a sentence for the caller, and whole seconds until a retry can succeed (>= 1)."""

    limit: str
    message: str
    retry_after_s: int


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


# ------------------------------------------------------------------------------------------ per developer
@dataclass(frozen=True)
class DeveloperLimits:
    """One environment's push budget for one developer."""

    per_second: float
    per_day: int
    shards: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.per_day < 1 or self.shards < 1:
            raise ValueError("limits must be positive")

    @property
    def shard_rate(self) -> float:
        return self.per_second / self.shards

    @property
    def shard_capacity(self) -> float:
        # At least one token, or a shard could never admit anything; the burst across all shards is then at most
        # max(per_second, shards) pushes.
        return max(1.0, self.per_second / self.shards)

    @property
    def shard_day_cap(self) -> int:
        return max(1, math.ceil(self.per_day / self.shards))


@dataclass(frozen=True)
class PushBucket:
    """One shard's state for one environment: a token bucket and the count of the current UTC day."""

    tokens: float = 0.0
    refilled_at: datetime | None = None
    day: str = ""
    day_count: int = 0

    def take(self, limits: DeveloperLimits, now: datetime) -> PushBucket | RateLimited:
        today = now.date().isoformat()
        day_count = self.day_count if self.day == today else 0
        if day_count >= limits.shard_day_cap:
            tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=now.tzinfo)
            return RateLimited(
                "pushes_per_day",
                f"this developer's daily push limit ({limits.per_day}) is used up; it resets at 00:00 UTC",
                _whole_seconds((tomorrow - now).total_seconds()),
            )
        if self.refilled_at is None:
            tokens = limits.shard_capacity
        else:
            elapsed = max(0.0, (now - self.refilled_at).total_seconds())
            tokens = min(limits.shard_capacity, self.tokens + elapsed * limits.shard_rate)
        if tokens < 1.0:
            return RateLimited(
                "pushes_per_second",
                f"too many pushes: at most {limits.per_second:g} per second",
                _whole_seconds((1.0 - tokens) / limits.shard_rate),
            )
        return PushBucket(tokens=tokens - 1.0, refilled_at=now, day=today, day_count=day_count + 1)


@dataclass(frozen=True)
class PushShard:
    """One of a developer's limiter shards: a bucket per environment, so one document serves both."""

    buckets: tuple[tuple[str, PushBucket], ...] = ()

    def bucket(self, environment: str) -> PushBucket:
        return dict(self.buckets).get(environment, PushBucket())

    def take(self, environment: str, limits: DeveloperLimits, now: datetime) -> PushShard | RateLimited:
        taken = self.bucket(environment).take(limits, now)
        if isinstance(taken, RateLimited):
            return taken
        buckets = dict(self.buckets)
        buckets[environment] = taken
        return PushShard(tuple(sorted(buckets.items())))


# ------------------------------------------------------------------------------------------ sliding windows
@dataclass(frozen=True)
class SlidingWindow:
    """The times of recent events, kept only while they are inside the window."""

    times: tuple[datetime, ...] = ()

    def admit(self, now: datetime, limit: int, window_s: float, what: str, message: str) -> SlidingWindow | RateLimited:
        start = now - timedelta(seconds=window_s)
        recent = tuple(t for t in self.times if t > start)
        if len(recent) >= limit:
            oldest = min(recent)
            return RateLimited(what, message, _whole_seconds((oldest - start).total_seconds()))
        return SlidingWindow((*recent, now))


# ------------------------------------------------------------------------------------------ per payer phone
@dataclass(frozen=True)
class PhoneLimits:
    """At most one prompt on a phone at a time, and at most `prompts_per_window` in `window_s`.

    Daraja itself refuses a second prompt while one is showing; answering ours first spares the payer and the
    developer's Daraja quota. A prompt counts as in flight until its payment settles or `in_flight_s` passes (the
    phone's prompt times out after about a minute, and the callback follows)."""

    prompts_per_window: int = 5
    window_s: float = 600.0
    in_flight_s: float = 90.0


@dataclass(frozen=True)
class PhoneLock:
    """The payment whose prompt may be on the phone now, and until when it holds the phone."""

    payment_id: str
    until: datetime


def admit_prompt(
    recent: SlidingWindow, in_flight: PhoneLock | None, payment_id: str, limits: PhoneLimits, now: datetime
) -> tuple[SlidingWindow, PhoneLock] | RateLimited:
    """Whether one more prompt may go to this phone now; if so the new window and the lock the push holds."""
    if in_flight is not None and in_flight.until > now:
        return RateLimited(
            "phone_busy",
            "a payment prompt is already on this phone; wait for it to be answered",
            _whole_seconds((in_flight.until - now).total_seconds()),
        )
    window = recent.admit(
        now,
        limits.prompts_per_window,
        limits.window_s,
        "phone_prompts",
        f"this phone was prompted {limits.prompts_per_window} times in the last "
        f"{round(limits.window_s / 60)} minutes; try later",
    )
    if isinstance(window, RateLimited):
        return window
    return window, PhoneLock(payment_id, now + timedelta(seconds=limits.in_flight_s))


def release_prompt(in_flight: PhoneLock | None, payment_id: str) -> PhoneLock | None:
    """The payment left pending (settled, or refused before anyone was prompted): the phone is free again."""
    if in_flight is not None and in_flight.payment_id == payment_id:
        return None
    return in_flight
