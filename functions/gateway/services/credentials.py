"""Register, show and remove a developer's Daraja credentials. Keys are verified with Daraja before anything is
stored; the secret goes to Secret Manager, the non-secret set-up to the developer's registry entry."""

from __future__ import annotations

from typing import Any

from gateway import errors
from gateway.domain.validation import key_hint, parse_credentials_request
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.secrets import DarajaSecret
from gateway.services.common import UseCase, require_setup, secret_owner

ENVIRONMENTS = ("sandbox", "production")


class Credentials(UseCase):
    def put(self, developer: Developer, body: Any) -> dict[str, Any]:
        request = parse_credentials_request(body)
        self._repo.ensure_developer(developer.uid, developer.email)
        try:
            self._daraja.verify_credentials(request.environment, request.consumer_key, request.consumer_secret)
        except errors.Unprocessable:
            log_event(Event.CREDENTIALS_REJECTED, uid=developer.uid, environment=request.environment)
            raise
        self._credentials.put(
            secret_owner(developer.uid, request.environment),
            DarajaSecret(request.consumer_key, request.consumer_secret, request.passkey),
        )
        now = self._now()
        setup = {
            "environment": request.environment,
            "shortcode": request.shortcode,
            "transaction_type": request.transaction_type,
            "party_b": request.party_b,
            "consumer_key_hint": key_hint(request.consumer_key),
            "verified_at": now,
            "updated_at": now,
        }
        self._repo.save_daraja_setup(developer.uid, developer.email, setup)
        log_event(Event.CREDENTIALS_STORED, uid=developer.uid, environment=request.environment)
        return setup

    def get(self, developer: Developer) -> dict[str, Any]:
        return require_setup(self._repo.ensure_developer(developer.uid, developer.email))

    def delete(self, developer: Developer) -> bool:
        """Every environment's secret goes, so nothing can act for the developer any more."""
        record = self._repo.ensure_developer(developer.uid, developer.email)
        existed = False
        for environment in ENVIRONMENTS:
            existed = self._credentials.delete(secret_owner(developer.uid, environment)) or existed
        if record.get("daraja"):
            self._repo.clear_daraja_setup(developer.uid)
        log_event(Event.CREDENTIALS_DELETED, uid=developer.uid)
        return bool(existed or record.get("daraja"))
