"""Firebase ID tokens for scripts and servers: email/password sign-in through the Firebase Auth REST API, with the
token cached and refreshed (securetoken `grant_type=refresh_token`) shortly before it expires.

Apps that already use a Firebase client SDK should pass its own token getter to `Gateway` instead.

Against the Auth emulator pass `auth_url="http://127.0.0.1:9099/identitytoolkit.googleapis.com"`; the refresh URL
then becomes `http://127.0.0.1:9099/securetoken.googleapis.com` (the emulator serves both under its host).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from mpesa_gateway import errors
from mpesa_gateway._version import __version__

DEFAULT_AUTH_URL = "https://identitytoolkit.googleapis.com"
DEFAULT_TOKEN_URL = "https://securetoken.googleapis.com"  # noqa: S105 - a URL, not a secret
_IDENTITY_TOOLKIT_HOST = "identitytoolkit.googleapis.com"
_SECURE_TOKEN_HOST = "securetoken.googleapis.com"  # noqa: S105 - a host name
DEFAULT_REFRESH_MARGIN = 300.0
_TIMEOUT: tuple[float, float] = (3.05, 30.0)
_USER_AGENT = f"mpesa-gateway-python/{__version__}"


@dataclass(frozen=True)
class FirebaseUser:
    """A signed-in Firebase user. Tokens are kept out of repr so they do not end up in logs."""

    uid: str
    email: str
    id_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float


def secure_token_url_for(auth_url: str) -> str:
    """The securetoken base URL that goes with an identitytoolkit base URL (real service or emulator)."""
    base = auth_url.rstrip("/")
    if base.endswith(_IDENTITY_TOOLKIT_HOST):
        return base[: -len(_IDENTITY_TOOLKIT_HOST)] + _SECURE_TOKEN_HOST
    raise ValueError(f"cannot derive the securetoken URL from {auth_url!r}: pass token_url explicitly")


def firebase_sign_up(
    api_key: str,
    email: str,
    password: str,
    auth_url: str = DEFAULT_AUTH_URL,
    *,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = _TIMEOUT,
) -> FirebaseUser:
    """Create an email/password user (`accounts:signUp`) and return it signed in. Meant for demos and tests."""
    body = _post(
        session,
        f"{auth_url.rstrip('/')}/v1/accounts:signUp",
        api_key,
        timeout=timeout,
        refused=errors.InvalidRequestError,
        what="sign-up",
        json_body={"email": email, "password": password, "returnSecureToken": True},
    )
    return _user_from(body, email)


def firebase_sign_in(
    api_key: str,
    email: str,
    password: str,
    auth_url: str = DEFAULT_AUTH_URL,
    *,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = _TIMEOUT,
) -> FirebaseUser:
    """Sign in with email and password (`accounts:signInWithPassword`)."""
    body = _post(
        session,
        f"{auth_url.rstrip('/')}/v1/accounts:signInWithPassword",
        api_key,
        timeout=timeout,
        refused=errors.AuthenticationError,
        what="sign-in",
        json_body={"email": email, "password": password, "returnSecureToken": True},
    )
    return _user_from(body, email)


class FirebasePasswordTokenProvider:
    """A thread-safe `id_token` callable for `Gateway`: signs in once, then refreshes the ID token
    `refresh_margin` seconds before it expires (Firebase ID tokens live an hour). If the refresh token is refused,
    it signs in with the password again."""

    def __init__(
        self,
        api_key: str,
        email: str,
        password: str,
        auth_url: str = DEFAULT_AUTH_URL,
        token_url: str | None = None,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = _TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._email = email
        self._password = password
        self._auth_url = auth_url.rstrip("/")
        self._token_url = (token_url or secure_token_url_for(auth_url)).rstrip("/")
        self._refresh_margin = refresh_margin
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._id_token: str | None = None
        self._refresh_token: str | None = None
        self._refresh_at = 0.0
        self.uid: str | None = None
        self.sign_ins = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"FirebasePasswordTokenProvider(email={self._email!r}, uid={self.uid!r})"

    def __call__(self) -> str:
        with self._lock:
            if self._id_token is not None and self._clock() < self._refresh_at:
                return self._id_token
            if self._refresh_token is not None:
                try:
                    self._refresh()
                    assert self._id_token is not None
                    return self._id_token
                except errors.AuthenticationError:
                    self._refresh_token = None  # revoked or expired: fall back to the password
            self._sign_in()
            assert self._id_token is not None
            return self._id_token

    def invalidate(self) -> None:
        """Make the next call fetch a fresh token (e.g. after the gateway answered token_expired)."""
        with self._lock:
            self._refresh_at = 0.0

    def _sign_in(self) -> None:
        user = firebase_sign_in(
            self._api_key,
            self._email,
            self._password,
            self._auth_url,
            session=self._session,
            timeout=self._timeout,
        )
        self.sign_ins += 1
        self.uid = user.uid
        self._store(user.id_token, user.refresh_token, user.expires_in)

    def _refresh(self) -> None:
        assert self._refresh_token is not None
        body = _post(
            self._session,
            f"{self._token_url}/v1/token",
            self._api_key,
            timeout=self._timeout,
            refused=errors.AuthenticationError,
            what="token refresh",
            data={"grant_type": "refresh_token", "refresh_token": self._refresh_token},
        )
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise errors.AuthenticationError("the token refresh answer has no id_token", code="invalid_auth_answer")
        self.refreshes += 1
        self.uid = str(body.get("user_id") or self.uid)
        self._store(id_token, str(body.get("refresh_token") or self._refresh_token), _seconds(body.get("expires_in")))

    def _store(self, id_token: str, refresh_token: str, expires_in: float) -> None:
        self._id_token = id_token
        self._refresh_token = refresh_token
        margin = min(self._refresh_margin, expires_in / 2)
        self._refresh_at = self._clock() + expires_in - margin


def firebase_password_token_provider(
    api_key: str,
    email: str,
    password: str,
    auth_url: str = DEFAULT_AUTH_URL,
    token_url: str | None = None,
    *,
    refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    session: requests.Session | None = None,
    timeout: float | tuple[float, float] = _TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> FirebasePasswordTokenProvider:
    """An `id_token` callable that signs in with email and password on first use and keeps the token fresh."""
    return FirebasePasswordTokenProvider(
        api_key,
        email,
        password,
        auth_url,
        token_url,
        refresh_margin=refresh_margin,
        session=session,
        timeout=timeout,
        clock=clock,
    )


# --------------------------------------------------------------------------------------------------- HTTP
def _post(
    session: requests.Session | None,
    url: str,
    api_key: str,
    *,
    timeout: float | tuple[float, float],
    refused: type[errors.GatewayError],
    what: str,
    json_body: Mapping[str, Any] | None = None,
    data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    poster = session if session is not None else requests
    try:
        response = poster.post(
            url,
            params={"key": api_key},
            json=json_body,
            data=data,
            headers={"User-Agent": _USER_AGENT},
            timeout=timeout,
        )
    except requests.RequestException as failure:
        error = errors.ConnectionError(
            f"could not reach Firebase Auth for {what}: {type(failure).__name__}",
            code="timeout" if isinstance(failure, requests.Timeout) else "network_error",
        )
        raise error from failure
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict):
        return body
    # Firebase answers {"error": {"code": 400, "message": "INVALID_PASSWORD"}} (sometimes "CODE : details").
    envelope = body.get("error") if isinstance(body, dict) else None
    message = str(envelope.get("message")) if isinstance(envelope, dict) and envelope.get("message") else ""
    code = message.split(":", 1)[0].strip().lower() or None
    error_class: type[errors.GatewayError] = refused
    if response.status_code == 429:
        error_class = errors.RateLimitError
    elif response.status_code >= 500:
        error_class = errors.ServerError
    raise error_class(
        f"Firebase Auth refused the {what}: {message or f'HTTP {response.status_code}'}",
        http_status=response.status_code,
        code=code,
        raw=body,
        headers=response.headers,
    )


def _user_from(body: Mapping[str, Any], email: str) -> FirebaseUser:
    id_token = body.get("idToken")
    refresh_token = body.get("refreshToken")
    uid = body.get("localId")
    if not (isinstance(id_token, str) and isinstance(refresh_token, str) and isinstance(uid, str)):
        raise errors.AuthenticationError("the Firebase Auth answer has no idToken", code="invalid_auth_answer")
    return FirebaseUser(
        uid=uid,
        email=str(body.get("email") or email),
        id_token=id_token,
        refresh_token=refresh_token,
        expires_in=_seconds(body.get("expiresIn")),
    )


def _seconds(value: Any) -> float:
    """expiresIn arrives as a string of seconds ("3600"); anything unreadable counts as a short-lived token."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 600.0
    return seconds if 0 < seconds < 86_400 else 600.0
