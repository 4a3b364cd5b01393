"""The Daraja HTTP client: OAuth tokens cached per developer, STK Push and STK Push Query, every failure mapped to
one DarajaError.

    DarajaError (gateway.errors)          Daraja refused or failed; `daraja_code` keeps Daraja's errorCode
    └── DarajaOutcomeUnknown              an STK push may have reached Daraja but no answer came back: the payer
                                          may or may not have been prompted, so the caller must not blindly retry

Tokens, consumer secrets, passkeys, passwords and phone numbers never appear in logs or exception messages.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any, NoReturn

import requests
from requests.adapters import HTTPAdapter

from gateway import errors
from gateway.domain.callback import parse_query_result
from gateway.domain.daraja_password import nairobi_timestamp, stk_password
from gateway.domain.errors import ValidationError
from gateway.logs import Event, log_event
from gateway.secrets import DarajaSecret
from gateway.settings import Settings

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"

INVALID_TOKEN = "404.001.03"
MERCHANT_ERROR = "500.001.1001"  # wrong credentials, subscriber locked, or (on a query) "being processed"
RATE_LIMIT_CODES = frozenset({"500.003.02", "500.003.03"})  # spike arrest, quota

# Daraja says ~1 hour. When expires_in is missing or absurd we still cache for a while: a token minted on every
# request is the failure users complain about, and a stale one costs only the single re-mint below.
_FALLBACK_TOKEN_LIFETIME_S = 600.0
_MAX_TOKEN_LIFETIME_S = 3600.0
_MAX_DARAJA_MESSAGE = 200
# More pooled connections than requests' default 10, so a gen2 instance at full concurrency reuses them.
_POOL_SIZE = 32


class DarajaOutcomeUnknown(errors.DarajaError):
    """The STK push may have been sent, but its answer never came: prompting again could charge the payer twice."""

    def __init__(
        self,
        code: str = "daraja_timeout",
        message: str = "Daraja did not answer in time; the payer may or may not have been prompted",
        *,
        http_status: int = 504,
        daraja_code: str | None = None,
    ) -> None:
        super().__init__(code, message, http_status=http_status, daraja_code=daraja_code)


@dataclass(frozen=True)
class DarajaApp:
    """One developer's Daraja set-up and secret: everything needed to call Daraja on their behalf."""

    uid: str
    environment: str
    shortcode: str
    transaction_type: str
    party_b: str
    secret: DarajaSecret


@dataclass(frozen=True)
class StkPushOrder:
    amount: int
    phone: str  # 2547XXXXXXXX or 2541XXXXXXXX
    callback_url: str
    account_reference: str
    description: str


@dataclass(frozen=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    customer_message: str
    response_description: str


@dataclass(frozen=True)
class StkQueryAnswer:
    result_code: str
    result_desc: str
    merchant_request_id: str | None
    checkout_request_id: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


class _MintFlight:
    """One OAuth mint in progress; callers that need the same token meanwhile wait for its outcome."""

    __slots__ = ("done", "error", "token")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token = ""
        self.error: BaseException | None = None


# (uid, environment, consumer_key): a developer who PUTs other keys, or switches environment, gets a new token.
_TokenKey = tuple[str, str, str]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DarajaClient:
    """Calls Daraja for many developers from one instance; thread-safe, one HTTP session per instance."""

    def __init__(
        self,
        settings: Settings,
        session_factory: Callable[[], requests.Session] = requests.Session,
        clock: Callable[[], float] = time.monotonic,
        now_utc: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()
        self._clock = clock
        self._now_utc = now_utc
        # One lock guards the token cache and the mints in flight; it is never held across I/O.
        self._tokens_lock = threading.Lock()
        self._tokens: OrderedDict[_TokenKey, _Token] = OrderedDict()
        # One mint at a time per key: concurrent first calls wait for the mint in flight instead of each minting.
        # Entries live only while their mint does, so this stays as small as the instance's concurrency.
        self._mints_in_flight: dict[_TokenKey, _MintFlight] = {}

    # ------------------------------------------------------------------------------------------- public API

    def verify_credentials(self, environment: str, consumer_key: str, consumer_secret: str) -> None:
        """Mint a token to prove the keys work; Unprocessable (422) when Daraja rejects them."""
        response = self._request_token(environment, consumer_key, consumer_secret)
        if response.status_code in (400, 401):
            raise errors.Unprocessable(
                "daraja_credentials_rejected",
                f"Daraja rejected these consumer credentials for the {environment} environment",
                param="consumer_key",
            )
        _token_from(response)

    def _signed_fields(self, app: DarajaApp) -> dict[str, Any]:
        """Shortcode, Password and Timestamp, made fresh for every attempt so the Nairobi timestamp is current."""
        timestamp = nairobi_timestamp(self._now_utc())
        return {
            "BusinessShortCode": app.shortcode,
            "Password": stk_password(app.shortcode, app.secret.passkey, timestamp),
            "Timestamp": timestamp,
        }

    def stk_push(self, app: DarajaApp, order: StkPushOrder) -> StkPushAccepted:
        def body() -> dict[str, Any]:
            return {
                **self._signed_fields(app),
                "TransactionType": app.transaction_type,
                "Amount": int(order.amount),
                "PartyA": order.phone,
                "PartyB": app.party_b,
                "PhoneNumber": order.phone,
                "CallBackURL": order.callback_url,
                "AccountReference": order.account_reference,
                "TransactionDesc": order.description,
            }

        response = self._call(app, STK_PUSH_PATH, body, prompts_payer=True)
        if response.status_code != 200:
            _raise_for_daraja(response, prompts_payer=True)
        answer = _json_object(response)
        if answer is None:
            # Daraja said 200, so the push was probably accepted, but without its id we cannot track it.
            raise DarajaOutcomeUnknown()
        _require_accepted(answer, "the STK push")
        checkout_request_id = _text(answer.get("CheckoutRequestID"))
        if not checkout_request_id:
            raise DarajaOutcomeUnknown()
        return StkPushAccepted(
            merchant_request_id=_text(answer.get("MerchantRequestID")),
            checkout_request_id=checkout_request_id,
            customer_message=_text(answer.get("CustomerMessage")),
            response_description=_text(answer.get("ResponseDescription")),
        )

    def stk_query(self, app: DarajaApp, checkout_request_id: str) -> StkQueryAnswer | None:
        """The payment's result, or None while the payer has not answered yet."""

        def body() -> dict[str, Any]:
            return {**self._signed_fields(app), "CheckoutRequestID": checkout_request_id}

        response = self._call(app, STK_QUERY_PATH, body, prompts_payer=False)
        if response.status_code != 200:
            error = _json_object(response) or {}
            if (
                _text(error.get("errorCode")) == MERCHANT_ERROR
                and "being processed" in _text(error.get("errorMessage")).lower()
            ):
                return None
            _raise_for_daraja(response, prompts_payer=False)
        answer = _json_object(response)
        if answer is None:
            raise errors.DarajaError("daraja_unavailable", "Daraja answered the query with an unreadable body")
        _require_accepted(answer, "the query")
        try:
            parsed = parse_query_result(answer)
        except ValidationError:
            raise errors.DarajaError(
                "daraja_unavailable", "Daraja answered the query without a usable ResultCode"
            ) from None
        if parsed.checkout_request_id != checkout_request_id:
            # A third-party double answering with a fresh id: settling from it would settle the wrong payment.
            log_event(Event.STK_QUERY_MISMATCH, "ERROR", uid=app.uid, checkout_request_id=checkout_request_id)
            raise errors.DarajaError(
                "daraja_answer_mismatch", "Daraja answered the query about another CheckoutRequestID"
            )
        return StkQueryAnswer(
            result_code=parsed.result_code,
            result_desc=parsed.result_desc,
            merchant_request_id=parsed.merchant_request_id,
            checkout_request_id=parsed.checkout_request_id,
            raw=answer,
        )

    # ------------------------------------------------------------------------------------------- calls

    def _call(
        self, app: DarajaApp, path: str, body: Callable[[], dict[str, Any]], *, prompts_payer: bool
    ) -> requests.Response:
        """POST with the developer's token; on "Invalid Access Token" mint once more and retry once.

        Retrying is safe even for a push: Daraja refuses a bad token before it looks at the request.
        """
        key: _TokenKey = (app.uid, app.environment, app.secret.consumer_key)
        token = self._token(key, app.secret)
        response = self._post(app.environment, path, token, body(), prompts_payer=prompts_payer)
        if not _is_invalid_token(response):
            return response
        log_event(Event.OAUTH_TOKEN_REJECTED, "WARNING", uid=app.uid, environment=app.environment)
        self._evict(key, token)
        token = self._token(key, app.secret)
        # A fresh body: the timestamp (and so the password) must be current again.
        return self._post(app.environment, path, token, body(), prompts_payer=prompts_payer)

    def _post(
        self, environment: str, path: str, token: str, body: dict[str, Any], *, prompts_payer: bool
    ) -> requests.Response:
        url = self._settings.daraja_base_url(environment) + path
        try:
            return self._session_or_create().post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self._settings.daraja_timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as failure:
            raise _transport_error(failure, prompts_payer=prompts_payer) from None

    def _token(self, key: _TokenKey, secret: DarajaSecret) -> str:
        with self._tokens_lock:
            cached = self._cached_token_locked(key)
            if cached is not None:
                return cached
            flight = self._mints_in_flight.get(key)
            leading = flight is None
            if flight is None:
                flight = self._mints_in_flight[key] = _MintFlight()
        if not leading:
            # Waiting for the one mint in flight, and sharing its failure too: when Daraja is down, N callers fail
            # together after one timeout instead of minting one after another.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.token
        try:
            flight.token = self._mint(key, secret)
            return flight.token
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._tokens_lock:
                del self._mints_in_flight[key]
            flight.done.set()

    def _mint(self, key: _TokenKey, secret: DarajaSecret) -> str:
        uid, environment, _ = key
        response = self._request_token(environment, secret.consumer_key, secret.consumer_secret)
        if response.status_code in (400, 401):
            raise errors.DarajaError(
                "daraja_rejected_credentials",
                f"Daraja rejected the stored consumer credentials for the {environment} environment; "
                "PUT developer_credentials again",
                daraja_code=_text((_json_object(response) or {}).get("errorCode")) or None,
            )
        value, lifetime_s = _token_from(response)
        usable_s = max(0.0, lifetime_s - self._settings.oauth_token_margin_s)
        with self._tokens_lock:
            self._tokens[key] = _Token(value, self._clock() + usable_s)
            self._tokens.move_to_end(key)
            while len(self._tokens) > self._settings.oauth_cache_max_entries:
                self._tokens.popitem(last=False)
        log_event(Event.OAUTH_TOKEN_MINTED, uid=uid, environment=environment)
        return value

    def _request_token(self, environment: str, consumer_key: str, consumer_secret: str) -> requests.Response:
        url = self._settings.daraja_base_url(environment) + OAUTH_PATH
        try:
            return self._session_or_create().get(
                url,
                params={"grant_type": "client_credentials"},
                auth=(consumer_key, consumer_secret),
                timeout=self._settings.daraja_timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException:
            # Minting has no side effect, so whether the request left or not makes no difference to the caller.
            raise errors.DarajaError(
                "daraja_unreachable", "could not reach Daraja to get an access token; retry later", http_status=504
            ) from None

    def _cached_token_locked(self, key: _TokenKey) -> str | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if token.expires_at <= self._clock():
            del self._tokens[key]
            return None
        self._tokens.move_to_end(key)
        return token.value

    def _evict(self, key: _TokenKey, rejected: str) -> None:
        with self._tokens_lock:
            current = self._tokens.get(key)
            # Only the token Daraja rejected: a concurrent caller may already have minted its replacement.
            if current is not None and current.value == rejected:
                del self._tokens[key]

    def _session_or_create(self) -> requests.Session:
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    session = self._session_factory()
                    # The session is shared by every developer on this instance: a cookie one developer's call
                    # receives must never ride along on another's.
                    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=_POOL_SIZE, max_retries=0)
                    session.mount("https://", adapter)
                    session.mount("http://", adapter)
                    self._session = session
        return self._session


# ----------------------------------------------------------------------------------------------- mapping


def _require_accepted(answer: dict[str, Any], what: str) -> None:
    """A 200 whose ResponseCode is not "0" is still a refusal."""
    response_code = _text(answer.get("ResponseCode"))
    if response_code != "0":
        raise errors.DarajaError(
            "daraja_rejected_request",
            f"Daraja did not accept {what}: {_safe_message(answer.get('ResponseDescription'))}",
            http_status=400,
            daraja_code=response_code or None,
        )


def _raise_for_daraja(response: requests.Response, *, prompts_payer: bool = False) -> NoReturn:
    """Turn a non-200 Daraja answer (``{requestId, errorCode, errorMessage}``) into the one matching DarajaError."""
    body = _json_object(response) or {}
    daraja_code = _text(body.get("errorCode"))
    message = _safe_message(body.get("errorMessage"))
    status = response.status_code
    if daraja_code == INVALID_TOKEN:
        raise errors.DarajaError(
            "daraja_token_rejected",
            "Daraja rejected a freshly minted access token; retry later",
            daraja_code=daraja_code,
        )
    if daraja_code in RATE_LIMIT_CODES or status == 429:
        raise errors.DarajaError(
            "daraja_rate_limited",
            "Daraja is limiting requests for this app; retry later",
            http_status=429,
            daraja_code=daraja_code or None,
        )
    if daraja_code == MERCHANT_ERROR:
        if "lock" in message.lower():
            raise errors.DarajaError(
                "payer_busy",
                "the payer has another M-Pesa prompt open; retry in a minute",
                http_status=409,
                daraja_code=daraja_code,
            )
        raise errors.DarajaError(
            "daraja_rejected_credentials",
            f"Daraja rejected the shortcode, passkey or account set-up: {message}",
            daraja_code=daraja_code,
        )
    if daraja_code.startswith("400.") or (400 <= status < 500 and daraja_code):
        raise errors.DarajaError(
            "daraja_rejected_request",
            f"Daraja rejected the request: {message}",
            http_status=400,
            daraja_code=daraja_code,
        )
    if prompts_payer and status >= 500:
        # A server failure with no code we recognise as a refusal: Daraja's backend may well have prompted the
        # payer before its front end failed (a 504 timeout, a bare 500), so the outcome is unknown, not a refusal.
        raise DarajaOutcomeUnknown(
            "daraja_outcome_unknown",
            f"Daraja failed (HTTP {status}) after receiving the push; the payer may or may not have been prompted",
            daraja_code=daraja_code or None,
        )
    raise errors.DarajaError(
        "daraja_unavailable",
        f"Daraja failed to answer (HTTP {status}); retry later",
        daraja_code=daraja_code or None,
    )


def _transport_error(failure: requests.RequestException, *, prompts_payer: bool) -> errors.DarajaError:
    if _nothing_was_sent(failure):
        return errors.DarajaError(
            "daraja_unreachable", "could not connect to Daraja; nothing was sent, retry later", http_status=504
        )
    if prompts_payer:
        return DarajaOutcomeUnknown()
    return errors.DarajaError("daraja_timeout", "Daraja did not answer in time; retry later", http_status=504)


def _nothing_was_sent(failure: requests.RequestException) -> bool:
    """True only when the connection itself failed, so Daraja cannot have seen the request."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    if isinstance(failure, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    if isinstance(failure, requests.ConnectionError):
        reason = failure.args[0] if failure.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        # Refused, unresolvable or unroutable. A reset or close mid-exchange is not: the request may have left.
        return isinstance(reason, NewConnectionError)
    return False


def _is_invalid_token(response: requests.Response) -> bool:
    if response.status_code not in (400, 401, 404):
        return False
    return _text((_json_object(response) or {}).get("errorCode")) == INVALID_TOKEN


def _token_from(response: requests.Response) -> tuple[str, float]:
    """The access token and its lifetime in seconds from a mint answer, or the DarajaError it deserves."""
    if response.status_code != 200:
        _raise_for_daraja(response)
    body = _json_object(response) or {}
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise errors.DarajaError("daraja_unavailable", "Daraja answered the token request without a token")
    return token, _lifetime(body.get("expires_in"))


def _lifetime(raw: object) -> float:
    # Daraja sends expires_in as a string ("3599"); accept a number too, and survive anything else.
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return _FALLBACK_TOKEN_LIFETIME_S
    try:
        seconds = float(raw)
    except ValueError:
        return _FALLBACK_TOKEN_LIFETIME_S
    if not 0 < seconds < float("inf"):
        return _FALLBACK_TOKEN_LIFETIME_S
    return min(seconds, _MAX_TOKEN_LIFETIME_S)


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        parsed = response.json()
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _text(value: object) -> str:
    """Daraja's codes arrive as strings or numbers; compare them as text."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, (str, int)):
        return str(value).strip()
    return ""


def _safe_message(value: object) -> str:
    # Daraja's messages describe the field, not its value; still, cap them and drop control characters.
    text = value if isinstance(value, str) else ""
    cleaned = "".join(char for char in text if char.isprintable())
    return cleaned[:_MAX_DARAJA_MESSAGE] or "no details given"
