"""Use cases, one module per concern: `credentials` (register Daraja keys), `payments` (push and read),
`settlement` (callbacks, queries, reconciliation), bundled here as the `Gateway`; `api_keys` and `webhooks`, which
the container (gateway.container) builds on their own. They take adapters through their constructors, return domain
values and raise gateway errors; the HTTP layer (gateway.api) picks status codes and headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gateway.daraja import DarajaClient
from gateway.repository import PaymentStore, utcnow
from gateway.secrets import CredentialStore
from gateway.services.credentials import Credentials
from gateway.services.payments import Payments, PushResult
from gateway.services.settlement import Settlement
from gateway.settings import Settings


@dataclass(frozen=True)
class Gateway:
    credentials: Credentials
    payments: Payments
    settlement: Settlement

    @classmethod
    def build(
        cls,
        settings: Settings,
        repository: PaymentStore,
        credentials: CredentialStore,
        daraja: DarajaClient,
        now: Callable[[], datetime] = utcnow,
    ) -> Gateway:
        settlement = Settlement(settings, repository, credentials, daraja, now)
        return cls(
            credentials=Credentials(settings, repository, credentials, daraja, now),
            payments=Payments(settings, repository, credentials, daraja, settlement, now),
            settlement=settlement,
        )


__all__ = ["Credentials", "Gateway", "Payments", "PushResult", "Settlement"]
