"""Secret API keys for developers' servers: their format, checksum and parsing, and the create request. Pure.

A key reads `mpg_test_<40 random base62><6 checksum>` (or `mpg_live_…`):

- the prefix names the product and the mode, so a person (and a secret scanner) sees what leaked and whether it
  can move real money: `test` keys only ever reach the sandbox Daraja credentials, `live` keys only production;
- 40 characters drawn uniformly from 62 carry 238 bits of randomness (the requirement is at least 192);
- the last 6 characters are the CRC32 of everything before them, in base62 (as GitHub's tokens do). A scanner can
  tell a real key from a look-alike without asking us, and the gateway refuses a mistyped or made-up key before
  it reads anything. The checksum covers the prefix too, so turning a test key into a live one breaks it.

The checksum is not a secret and proves nothing about who made the key; only the stored SHA-256 does.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Literal, cast

from gateway.domain.errors import ValidationError

Environment = Literal["sandbox", "production"]
Mode = Literal["test", "live"]

BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_PREFIX: Final = "mpg_"
RANDOM_CHARS: Final = 40
CHECKSUM_CHARS: Final = 6  # 62**6 > 2**32: every CRC32 fits
KEY_ID_PREFIX: Final = "key_"
KEY_ID_RANDOM_CHARS: Final = 24
MAX_NAME_LENGTH: Final = 100
# A revoked key is still listed (and still answers `api_key_revoked`) for this long; then its record expires
# (`expires_at`, a Firestore TTL field) and the key is merely unknown (`invalid_api_key`).
REVOKED_KEYS_KEPT_FOR: Final = timedelta(days=30)

MODE_OF: Final[dict[Environment, Mode]] = {"sandbox": "test", "production": "live"}
ENVIRONMENT_OF: Final[dict[Mode, Environment]] = {"test": "sandbox", "live": "production"}

_KEY = re.compile(rf"mpg_(test|live)_([0-9A-Za-z]{{{RANDOM_CHARS}}})([0-9A-Za-z]{{{CHECKSUM_CHARS}}})")
_KEY_ID = re.compile(rf"key_[0-9A-Za-z]{{{KEY_ID_RANDOM_CHARS}}}")
_NAME = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_NAME_LENGTH}}}")
_CREATE_FIELDS: Final = ("name", "environment")


@dataclass(frozen=True)
class ApiKey:
    """A well-formed key whose checksum matches. Whether it exists or was revoked is for the store to say."""

    text: str
    mode: Mode

    @property
    def environment(self) -> Environment:
        return ENVIRONMENT_OF[self.mode]

    @property
    def hint(self) -> str:
        return hint(self.text)

    def __repr__(self) -> str:  # a key must never reach a log through a repr
        return f"ApiKey(mode={self.mode!r}, hint={self.hint!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class ApiKeyRecord:
    """What the gateway keeps about a key: never the key, only who it acts for and its life so far."""

    key_id: str
    uid: str
    email: str | None
    name: str
    environment: Environment
    hint: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def expires_at(self) -> datetime | None:
        """When the record may be deleted: REVOKED_KEYS_KEPT_FOR after its revocation; never while it is active."""
        return None if self.revoked_at is None else self.revoked_at + REVOKED_KEYS_KEPT_FOR

    def listed(self, now: datetime) -> bool:
        """Whether GET api_keys shows it: active, or revoked less than REVOKED_KEYS_KEPT_FOR ago (the TTL deletes
        records a day or so late; the list does not wait for it)."""
        return self.expires_at is None or now < self.expires_at

    def revoke(self, at: datetime) -> ApiKeyRecord:
        """Revoked once: revoking again keeps the first time."""
        return self if self.revoked else replace(self, revoked_at=at)

    def due_for_use_mark(self, now: datetime, interval_s: float) -> bool:
        """Whether `last_used_at` is old enough to be written again (at most once per interval per key)."""
        return self.last_used_at is None or now - self.last_used_at >= timedelta(seconds=interval_s)

    def used(self, at: datetime) -> ApiKeyRecord:
        return replace(self, last_used_at=at)


@dataclass(frozen=True)
class CreateKeyRequest:
    name: str
    environment: Environment


def to_base62(number: int, width: int) -> str:
    if number < 0:
        raise ValueError("negative")
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62[remainder])
    text = "".join(reversed(digits)).rjust(width, BASE62[0])
    if len(text) > width:
        raise ValueError("does not fit")
    return text


def checksum(payload: str) -> str:
    return to_base62(zlib.crc32(payload.encode("ascii")), CHECKSUM_CHARS)


def format_key(environment: Environment, random_part: str) -> ApiKey:
    """The key for `random_part` (RANDOM_CHARS characters the caller drew uniformly from BASE62)."""
    if len(random_part) != RANDOM_CHARS or any(char not in BASE62 for char in random_part):
        raise ValueError(f"random_part must be {RANDOM_CHARS} base62 characters")
    mode = MODE_OF[environment]
    payload = f"{KEY_PREFIX}{mode}_{random_part}"
    return ApiKey(payload + checksum(payload), mode)


def looks_like_api_key(credential: str) -> bool:
    """Whether a bearer credential claims to be an API key (and so must be judged as one, never as an ID token)."""
    return credential.startswith(KEY_PREFIX)


def parse_key(text: str) -> ApiKey | None:
    """The key if `text` is well formed and its checksum matches, else None. Constant work for any input length
    up to the key's own; longer input is refused without scanning it."""
    if len(text) != len(KEY_PREFIX) + 5 + RANDOM_CHARS + CHECKSUM_CHARS:
        return None
    match = _KEY.fullmatch(text)
    if match is None:
        return None
    payload = text[:-CHECKSUM_CHARS]
    if checksum(payload) != match.group(3):
        return None
    return ApiKey(text, cast(Mode, match.group(1)))


def hint(text: str) -> str:
    """The prefix and the last four characters (`mpg_test_...Ab3x`): enough to recognise a key, never to use it."""
    match = re.match(r"mpg_(test|live)_", text)
    prefix = match.group(0) if match else KEY_PREFIX
    return f"{prefix}...{text[-4:]}"


def is_key_id(value: str) -> bool:
    return _KEY_ID.fullmatch(value) is not None


def parse_create_request(body: object) -> CreateKeyRequest:
    """Validate a `POST api_keys` body: {name, environment}."""
    if not isinstance(body, Mapping):
        raise ValidationError("invalid_body", "the request body must be a JSON object")
    for field in body:
        if field not in _CREATE_FIELDS:
            shown = str(field)[:64]
            raise ValidationError(
                "unknown_parameter", f"unknown parameter {shown!r}; allowed: {', '.join(_CREATE_FIELDS)}", shown
            )
    if "name" not in body:
        raise ValidationError("missing_parameter", "name is required", "name")
    name = body["name"]
    # Only spaces are trimmed: what openapi.yaml calls a valid name must be one this accepts.
    if not isinstance(name, str) or _NAME.fullmatch(name.strip(" ")) is None:
        raise ValidationError(
            "invalid_name", f"name must be 1 to {MAX_NAME_LENGTH} characters without control characters", "name"
        )
    if "environment" not in body:
        raise ValidationError("missing_parameter", "environment is required", "environment")
    environment = body["environment"]
    if not isinstance(environment, str) or environment not in MODE_OF:
        raise ValidationError("invalid_environment", 'environment must be "sandbox" or "production"', "environment")
    return CreateKeyRequest(name=name.strip(" "), environment=cast(Environment, environment))
