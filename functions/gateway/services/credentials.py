"""Register, show and remove a developer's Daraja credentials, one set per environment. Keys are verified with
Daraja before anything is stored; the secret goes to Secret Manager (its environment's own secret), the non-secret
set-up to the developer's registry entry, naming the secret version it belongs to.

Rotation is race-free: a PUT adds a version, stores its set-up only if the stored one names an older version
(gateway.domain.daraja_setup), and then destroys only versions older than its own. A PUT that lost against a newer
one destroys only its own version. So concurrent PUTs end with exactly one complete, usable set: the newest.
"""

from __future__ import annotations

from typing import Any

from gateway import errors
from gateway.domain.daraja_setup import ENVIRONMENTS, Setups, is_live, setups_of, tombstone, with_setup
from gateway.domain.validation import key_hint, parse_credentials_request, parse_environment
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.secrets import DarajaSecret
from gateway.services.common import UseCase, admit_to_window, resolve_environment, secret_owner, select_setup


class Credentials(UseCase):
    def put(self, developer: Developer, body: Any) -> dict[str, Any]:
        request = parse_credentials_request(body)
        resolve_environment(request.environment, developer)  # a key may only replace its own environment's set
        self._repo.ensure_developer(developer.uid, developer.email)
        # Every PUT asks Daraja whether the keys are valid: throttled, so this is no key-checking oracle.
        admit_to_window(
            self._repo,
            developer.uid,
            "credential_puts",
            self._settings.credential_puts_per_minute,
            60.0,
            self._now(),
            f"at most {self._settings.credential_puts_per_minute} credential changes per minute",
        )
        try:
            self._daraja.verify_credentials(request.environment, request.consumer_key, request.consumer_secret)
        except errors.Unprocessable:
            log_event(Event.CREDENTIALS_REJECTED, uid=developer.uid, environment=request.environment)
            raise
        owner = secret_owner(developer.uid, request.environment)
        version = self._credentials.put(
            owner, DarajaSecret(request.consumer_key, request.consumer_secret, request.passkey)
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
            "secret_version": version,
        }
        # Should this write fail, the version is left as it is (the write may have landed): the next PUT or DELETE of
        # this environment destroys it with the other older ones.
        stored = self._repo.update_daraja(developer.uid, developer.email, lambda entries: with_setup(entries, setup))
        if stored is None:
            # A newer PUT (or a DELETE) landed first: this one is ordered before it, so its set-up was replaced at
            # once. Only its own version goes; the newer one is left alone.
            self._credentials.discard(owner, version)
            log_event(Event.CREDENTIALS_SUPERSEDED, uid=developer.uid, environment=request.environment, version=version)
            return setup
        self._credentials.retire(owner, version)
        log_event(Event.CREDENTIALS_STORED, uid=developer.uid, environment=request.environment, version=version)
        return setup

    def get(self, developer: Developer, environment: str | None = None) -> dict[str, Any]:
        """One environment's set-up (without one: the set a push would use, see select_setup), or 404
        credentials_not_configured."""
        wanted = resolve_environment(parse_environment(environment), developer)
        return select_setup(self._repo.ensure_developer(developer.uid, developer.email), wanted)

    def list(self, developer: Developer) -> list[dict[str, Any]]:
        """Every configured set-up, sandbox first; only its own environment's for an API key."""
        setups = setups_of(self._repo.ensure_developer(developer.uid, developer.email).get("daraja"))
        return [setup for env, setup in setups.items() if developer.environment in (None, env)]

    def delete(self, developer: Developer, environment: str | None = None) -> bool:
        """One environment's set (both when none is named, or the API key's own), secret versions included, so
        nothing can act for the developer there any more. True when there was something to delete."""
        wanted = resolve_environment(parse_environment(environment), developer)
        self._repo.ensure_developer(developer.uid, developer.email)
        existed = False
        for env in ENVIRONMENTS if wanted is None else (wanted,):
            existed = self._delete_one(developer, env) or existed
        log_event(Event.CREDENTIALS_DELETED, uid=developer.uid, environment=wanted)
        return existed

    def _delete_one(self, developer: Developer, environment: str) -> bool:
        owner = secret_owner(developer.uid, environment)
        # Every version added so far, PUTs still in flight included: the tombstone keeps those from landing later
        # and naming a version destroyed below.
        latest = self._credentials.latest_version(owner)
        had_setup = False
        through: str | None = latest

        def bury(entries: Setups) -> Setups | None:
            nonlocal had_setup, through
            stored = entries.get(environment)
            had_setup = is_live(stored)
            if stored is None and latest is None:
                return None  # nothing ever stored here
            grave = tombstone(environment, latest, stored, self._now())
            through = grave["secret_version"]
            return {**entries, environment: grave}

        self._repo.update_daraja(developer.uid, developer.email, bury)
        destroyed = self._credentials.delete(owner, through) if latest is not None else False
        return had_setup or destroyed
