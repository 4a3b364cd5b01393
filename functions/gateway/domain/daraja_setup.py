"""A developer's Daraja set-ups, one per environment, as the registry (`developers/{uid}.daraja`) holds them; pure.

    daraja = {"sandbox":    {environment, shortcode, transaction_type, party_b, consumer_key_hint,
                             verified_at, updated_at, secret_version},
              "production": {...}}

Each set-up names the Secret Manager version of its environment's secret that it belongs to (`secret_version`, the
version id Secret Manager gave it: "1", "2", ...). Version ids only ever grow for a secret, so they order the writes:
a set-up replaces the stored one only if its version is newer. Two PUTs racing on different instances therefore
always end with the newest version stored, whatever order their registry writes land in, and the loser knows it
lost and destroys only its own version.

A DELETE leaves a *tombstone*: `{environment, secret_version, deleted_at}` with the newest version it destroyed, so a
PUT whose version was added before the DELETE (and destroyed by it) cannot land afterwards and name a destroyed
version. A tombstone is not a set-up: nothing lists or selects it.

Registries written before set-ups were per environment hold one flat set-up (`daraja = {environment, shortcode,
...}`, no `secret_version`); `setups_of` reads it as that environment's set-up (migrate on read). A set-up without a
version uses its secret's latest version, as before; its environment's next PUT writes the new layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from gateway.domain.validation import ENVIRONMENTS

SANDBOX: Final = "sandbox"

Setup = dict[str, Any]
Setups = dict[str, Setup]


def entries_of(raw: object) -> Setups:
    """Every stored entry by environment, tombstones included, migrating the single-set layout on the way."""
    if not isinstance(raw, Mapping) or not raw:
        return {}
    if isinstance(raw.get("environment"), str):
        # The single-set layout: the whole map is one set-up, for the environment it names.
        environment = raw["environment"]
        if environment not in ENVIRONMENTS:
            return {}
        return {environment: {**dict(raw), "secret_version": raw.get("secret_version")}}
    return {
        environment: {**dict(entry), "environment": environment}
        for environment, entry in raw.items()
        if environment in ENVIRONMENTS and isinstance(entry, Mapping)
    }


def is_live(entry: Mapping[str, Any] | None) -> bool:
    return entry is not None and not entry.get("deleted_at") and bool(entry.get("shortcode"))


def setups_of(raw: object) -> Setups:
    """The usable set-ups by environment (sandbox first), without tombstones."""
    entries = entries_of(raw)
    return {environment: entries[environment] for environment in ENVIRONMENTS if is_live(entries.get(environment))}


def version_number(version: object) -> int | None:
    """A Secret Manager version id as a number; None for a set-up from before versions were recorded."""
    if isinstance(version, int) and not isinstance(version, bool):
        return version
    if isinstance(version, str) and version.isascii() and version.isdigit() and len(version) <= 19:
        return int(version)
    return None


def supersedes(version: str, stored: Mapping[str, Any] | None) -> bool:
    """Whether a set-up of secret version `version` may replace the stored entry (a set-up or a tombstone).

    Nothing stored, or a stored entry without a version (the old layout), is always replaced."""
    if stored is None:
        return True
    stored_number = version_number(stored.get("secret_version"))
    number = version_number(version)
    if number is None:
        return stored_number is None
    return stored_number is None or number > stored_number


def with_setup(entries: Setups, setup: Setup) -> Setups | None:
    """The entries with `setup` stored for its environment, or None when a newer version is already there."""
    environment = setup["environment"]
    if not supersedes(str(setup["secret_version"]), entries.get(environment)):
        return None
    return {**entries, environment: dict(setup)}


def tombstone(environment: str, through_version: str | None, stored: Mapping[str, Any] | None, now: datetime) -> Setup:
    """What a DELETE leaves: the newest version it destroys, so no PUT at or below it can land afterwards."""
    numbers = [n for n in (version_number(through_version), version_number((stored or {}).get("secret_version"))) if n]
    return {
        "environment": environment,
        "secret_version": str(max(numbers)) if numbers else None,
        "deleted_at": now,
    }
