"""Idempotency keys: what a stored claim means for a request that arrives with the same key. Pure, no I/O.

A keyed push stores its claim in the same commit as the payment's intent, so the claim always names a payment.
While the first request holds the claim (``in_progress``, within its lease), a second one is told to retry
shortly. After the lease, whoever held it is gone: the payment the claim created answers instead, and it is never
pushed a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

ClaimState = Literal["in_progress", "done"]


class Verdict(StrEnum):
    EXPIRED = "expired"  # past its 24 h life: as good as absent
    CONFLICT = "conflict"  # the key was used for another request body
    IN_PROGRESS = "in_progress"  # the first request still holds the lease
    LEASE_EXPIRED = "lease_expired"  # the first request died: answer from its payment
    REPLAY = "replay"  # answered before: answer the same payment again


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    payment_id: str
    state: ClaimState
    created_at: datetime
    expires_at: datetime
    lease_expires_at: datetime
    status: int | None = None  # the HTTP status of the first answer (201 or 202), once there is one

    @classmethod
    def claim(cls, fingerprint: str, payment_id: str, now: datetime, lease_s: float, ttl_s: float) -> IdempotencyRecord:
        return cls(
            fingerprint=fingerprint,
            payment_id=payment_id,
            state="in_progress",
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
            lease_expires_at=now + timedelta(seconds=lease_s),
        )

    def answered(self, status: int) -> IdempotencyRecord:
        return IdempotencyRecord(
            self.fingerprint, self.payment_id, "done", self.created_at, self.expires_at, self.lease_expires_at, status
        )

    def verdict(self, fingerprint: str, now: datetime) -> Verdict:
        if self.expires_at <= now:
            return Verdict.EXPIRED
        if self.fingerprint != fingerprint:
            return Verdict.CONFLICT
        if self.state == "done":
            return Verdict.REPLAY
        if self.lease_expires_at > now:
            return Verdict.IN_PROGRESS
        return Verdict.LEASE_EXPIRED

    def retry_after_s(self, now: datetime) -> int:
        """Seconds until the lease ends, at least 1 and at most 5: the first request usually answers well before."""
        remaining = (self.lease_expires_at - now).total_seconds()
        return int(min(max(remaining, 1.0), 5.0))
