"""Who is calling: verifies a Firebase ID token with firebase-admin, or hands a `Bearer mpg_…` secret API key to
gateway.services.api_keys, and resolves the calling developer. Both give the same `Developer(uid, …)`; a key also
sets its environment (sandbox for mpg_test_, production for mpg_live_) and its key id, for logs.

The Admin SDK bypasses security rules, so the uid returned here is the only tenant key the rest of the code
trusts. With FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin skips signature and expiry checks, so nothing is
verified while the settings' local-stack guard (`Settings.assert_safe`) refuses the configuration.

Who may be a developer: any signed-in Firebase user except anonymous sign-ins (no one to hold to account, and a new
uid for every sign-in), and, when REQUIRE_VERIFIED_EMAIL is on, only users whose e-mail address is verified. Both are
403 `permission_error`: the token is genuine, the account may not use the gateway.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.domain.api_key import looks_like_api_key
from gateway.http import Developer
from gateway.logs import Event, log_event
from gateway.settings import Settings

_BEARER = re.compile(r"Bearer[ ]+([A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]*\.[A-Za-z0-9\-_=+/]*)\s*$", re.IGNORECASE)
_BEARER_CREDENTIAL = re.compile(r"Bearer[ ]+(.*)$", re.IGNORECASE | re.DOTALL)
# Firestore document ids cannot contain "/" and cannot be "." or ".."; refuse such uids outright.
_SAFE_UID = re.compile(r"[^/]{1,128}")


class FirebaseAuthenticator:
    """Callable boundary: `Authorization` header value -> Developer, or a 401/403/503 GatewayError."""

    def __init__(
        self,
        settings: Settings,
        app_factory: Callable[[], Any] | None = None,
        api_keys: Callable[[str], Developer] | None = None,
    ) -> None:
        """`app_factory` returns the firebase_admin App to verify with; by default the default App (tests pass
        their own App so they can point it at local certificates). `api_keys` resolves a `Bearer mpg_…` secret API
        key (gateway.services.api_keys); without it such keys are refused like any malformed token."""
        self._settings = settings
        self._api_keys = api_keys
        self._app_factory = app_factory or self._default_app
        self._app: Any = None
        self._lock = threading.Lock()
        self._revocations = _RevocationCache(settings.revocation_cache_ttl_s, settings.revocation_cache_max_entries)

    def _default_app(self) -> Any:
        # firebase_admin is heavy to import; do it on the first authenticated request, once per instance.
        from gateway.firebase_app import default_app

        return default_app(self._settings.project_id)

    def _firebase_app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._app_factory()
        return self._app

    def __call__(self, authorization: str | None) -> Developer:
        # Before anything else: in emulator mode firebase-admin would accept an unsigned token for any uid.
        self._settings.assert_safe()
        api_key = _bearer_api_key(authorization)
        if api_key is not None:
            if self._api_keys is None:
                raise _rejected("invalid_api_key", "API keys are not accepted here")
            return self._api_keys(api_key)
        token = _bearer_token(authorization)
        claims = self._verify(token)
        uid = claims.get("uid") or claims.get("sub")
        if not isinstance(uid, str) or not _SAFE_UID.fullmatch(uid) or uid in (".", ".."):
            raise errors.AuthenticationError("invalid_token", "the ID token's subject is not a usable user id")
        self._check_may_develop(claims)
        email = claims.get("email")
        return Developer(uid=uid, email=email if isinstance(email, str) else None)

    def _check_may_develop(self, claims: dict[str, Any]) -> None:
        if _is_anonymous(claims):
            raise _denied(
                "anonymous_not_allowed",
                "anonymous sign-ins cannot use the gateway; sign in with an e-mail address or another provider",
            )
        if self._settings.require_verified_email and claims.get("email_verified") is not True:
            raise _denied(
                "email_not_verified",
                "this account's e-mail address is not verified; verify it, then sign in again for a fresh ID token",
            )

    def _verify(self, token: str) -> dict[str, Any]:
        from firebase_admin import auth as firebase_auth
        from firebase_admin import exceptions as firebase_exceptions

        try:
            # Signature and expiry are checked locally (Google's certificates are cached); revocation needs the
            # user's record from Firebase Auth, which is cached per uid for REVOCATION_CHECK_CACHE_SECONDS.
            claims: dict[str, Any] = firebase_auth.verify_id_token(token, app=self._firebase_app(), check_revoked=False)
            if self._settings.check_revoked_tokens:
                self._check_revoked(claims)
            return claims
        except firebase_auth.ExpiredIdTokenError:
            raise _rejected("token_expired", "the ID token has expired; get a fresh one and retry") from None
        except firebase_auth.RevokedIdTokenError:
            raise _rejected("token_revoked", "the ID token has been revoked; sign in again") from None
        except firebase_auth.UserDisabledError:
            raise _rejected("user_disabled", "this user account is disabled") from None
        except firebase_auth.UserNotFoundError:
            raise _rejected("invalid_token", "the ID token's user no longer exists") from None
        except firebase_auth.CertificateFetchError:
            log_event(Event.AUTH_REJECTED, "ERROR", code="certificate_fetch_failed")
            raise errors.ServiceUnavailable(
                "auth_unavailable", "could not fetch Google's token certificates; retry shortly"
            ) from None
        except firebase_auth.InvalidIdTokenError:
            raise _rejected("invalid_token", "the ID token is not a valid Firebase ID token for this project") from None
        except ValueError as error:
            # firebase-admin wraps every token defect in InvalidIdTokenError; a bare ValueError means our own setup
            # is wrong (no project id, a malformed emulator host), which is not the caller's fault. Its text may
            # quote the token, so only the type is logged.
            log_event(Event.AUTH_REJECTED, "ERROR", code="auth_misconfigured", exception=type(error).__name__)
            raise errors.ServiceUnavailable(
                "auth_misconfigured", "this deployment is misconfigured and cannot verify ID tokens"
            ) from None
        except firebase_exceptions.FirebaseError as error:
            # The revocation check talks to Firebase Auth; its outage is ours, not the caller's fault.
            log_event(Event.AUTH_REJECTED, "ERROR", code="auth_backend_error", exception=type(error).__name__)
            raise errors.ServiceUnavailable(
                "auth_unavailable", "could not verify the ID token; retry shortly"
            ) from None


    def _check_revoked(self, claims: dict[str, Any]) -> None:
        """What firebase-admin's `check_revoked=True` does (a disabled user, or a token issued before the user's
        tokens were revoked), with the user's record cached per uid for a short, settable time: the revocation delay."""
        from firebase_admin import auth as firebase_auth

        uid = claims.get("uid") or claims.get("sub")
        if not isinstance(uid, str):
            return  # refused by the caller as an unusable subject
        state = self._revocations.get(uid)
        if state is None:
            user = firebase_auth.get_user(uid, app=self._firebase_app())
            state = _UserState(bool(user.disabled), int(user.tokens_valid_after_timestamp or 0))
            self._revocations.put(uid, state)
        if state.disabled:
            raise firebase_auth.UserDisabledError("the user is disabled")
        issued_at = claims.get("iat")
        if isinstance(issued_at, int | float) and issued_at * 1000 < state.valid_after_ms:
            raise firebase_auth.RevokedIdTokenError("the ID token has been revoked")


@dataclass(frozen=True)
class _UserState:
    disabled: bool
    valid_after_ms: int  # tokens issued before this (ms since the epoch) are revoked


class _RevocationCache:
    """uid -> what the revocation check needs, for `ttl_s`; bounded, least recently used out first."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, _UserState]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uid: str) -> _UserState | None:
        if self._ttl_s <= 0:
            return None
        with self._lock:
            found = self._entries.get(uid)
            if found is None or time.monotonic() - found[0] >= self._ttl_s:
                return None
            self._entries.move_to_end(uid)
            return found[1]

    def put(self, uid: str, state: _UserState) -> None:
        if self._ttl_s <= 0:
            return
        with self._lock:
            self._entries[uid] = (time.monotonic(), state)
            self._entries.move_to_end(uid)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


def _bearer_api_key(authorization: str | None) -> str | None:
    """The credential of `Bearer mpg_…`, a secret API key (judged as one whatever follows), or None."""
    match = _BEARER_CREDENTIAL.match(authorization.strip()) if authorization else None
    credential = match.group(1).strip() if match else ""
    return credential if looks_like_api_key(credential) else None


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise _rejected("missing_token", "send the developer's Firebase ID token as 'Authorization: Bearer <token>'")
    match = _BEARER.match(authorization.strip())
    if match is None:
        raise _rejected("malformed_authorization", "the Authorization header must be 'Bearer <Firebase ID token>'")
    return match.group(1)


def _is_anonymous(claims: dict[str, Any]) -> bool:
    firebase = claims.get("firebase")
    provider = firebase.get("sign_in_provider") if isinstance(firebase, dict) else None
    # Firebase also writes a top-level provider_id for anonymous users (the Auth emulator writes both): either counts.
    return "anonymous" in (provider, claims.get("provider_id"))


def _denied(code: str, message: str) -> errors.PermissionDenied:
    log_event(Event.AUTH_REJECTED, "INFO", code=code)
    return errors.PermissionDenied(code, message)


def _rejected(code: str, message: str) -> errors.AuthenticationError:
    log_event(Event.AUTH_REJECTED, "INFO", code=code)
    return errors.AuthenticationError(code, message)
