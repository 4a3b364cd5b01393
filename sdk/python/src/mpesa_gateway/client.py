"""The Gateway client: one authenticated HTTP exchange per attempt, retries with full-jitter backoff, and the
resources (`credentials`, `payments`) built on top of `Gateway.request`.

Retry policy, in one place (`_should_retry_answer`, `_should_retry_failure`):
- retried: 429, 5xx, `idempotency_in_progress`, timeouts and dropped connections;
- but a request that may have reached the server is re-sent only when sending it twice is harmless: GET, PUT and
  DELETE, or a POST carrying an Idempotency-Key (payments.create always sends one). A retry re-sends the very same
  request: the same body and the same Idempotency-Key, never a new one;
- never retried: any 2xx (a 202 is a payment whose outcome is unknown, not a failure), an answer marked
  `Idempotent-Replayed: true` (it is the stored final answer), any other 4xx, and daraja_rejected_credentials (a 502
  that only new credentials fix);
- pauses: the answer's Retry-After when it has one (above `max_retry_after` the error is raised instead), else full
  jitter backoff;
- `idempotency_in_progress` (409 at once, with Retry-After, while the key's first request still runs) is waited out
  without using up `max_retries`, for at most `max_in_progress_wait` seconds in all.
"""

from __future__ import annotations

import json
import random as _random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from mpesa_gateway import errors
from mpesa_gateway._version import __version__
from mpesa_gateway.resources import ApiKeysResource, CredentialsResource, PaymentsResource
from mpesa_gateway.webhooks import EventsResource, WebhookEndpointsResource

USER_AGENT = f"mpesa-gateway-python/{__version__}"
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 30.0)
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_BASE_DELAY = 0.5
DEFAULT_RETRY_MAX_DELAY = 8.0
# A server asking us to come back in more than a minute is better answered by the caller than by a blocked thread.
DEFAULT_MAX_RETRY_AFTER = 60.0
# How long, in all, to keep asking while a key's first request still runs (409 idempotency_in_progress). The gateway
# answers from the payment once the first request's lease (60 s in production) has run out, so this outlasts it.
DEFAULT_MAX_IN_PROGRESS_WAIT = 75.0
IN_PROGRESS_CODE = "idempotency_in_progress"
MIN_IN_PROGRESS_PAUSE = 0.1
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# 5xx answers that asking again cannot change: Daraja refused the stored keys, passkey or shortcode.
PERMANENT_ERROR_CODES = frozenset({"daraja_rejected_credentials"})

IdTokenSource = str | Callable[[], str]
API_KEY_ENVIRONMENTS = {"mpg_test_": "sandbox", "mpg_live_": "production"}
Timeout = float | tuple[float, float]


@dataclass(frozen=True)
class ApiResponse:
    """A 2xx answer: its JSON object, headers, request id, whether it was an idempotent replay, attempts made."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(repr=False)
    request_id: str | None
    replayed: bool
    attempts: int


@dataclass(frozen=True)
class _Failure:
    error: errors.GatewayError
    retryable: bool


class Gateway:
    """Client for one developer's use of mpesa-gateway.

    Give exactly one credential:
    - `api_key`, a secret API key (`mpg_test_…` or `mpg_live_…`), for servers: it never expires, acts only in its
      own environment (test keys: sandbox credentials and payments; live keys: production) and cannot manage keys;
    - `id_token`, a Firebase ID token, or better a callable returning one: it is called before every attempt, so a
      provider that refreshes tokens (see `firebase_password_token_provider`) keeps long-lived clients working.
    """

    def __init__(
        self,
        base_url: str,
        id_token: IdTokenSource | None = None,
        *,
        api_key: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        session: requests.Session | None = None,
        retry_base_delay: float = DEFAULT_RETRY_BASE_DELAY,
        retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        max_in_progress_wait: float = DEFAULT_MAX_IN_PROGRESS_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL such as https://us-central1-PROJECT.cloudfunctions.net")
        if (id_token is None) == (api_key is None):
            raise TypeError("give exactly one of api_key (mpg_test_… / mpg_live_…) and id_token")
        if id_token is not None and not (isinstance(id_token, str) or callable(id_token)):
            raise TypeError("id_token must be a Firebase ID token string or a callable returning one")
        self.environment: str | None = None
        """"sandbox" or "production" for an API key (the only environment it can act in); None for an ID token."""
        if api_key is not None:
            if not isinstance(api_key, str) or api_key.strip()[:9] not in API_KEY_ENVIRONMENTS:
                # Never echo the value: it may be a secret pasted into the wrong place.
                raise ValueError("api_key must be a secret API key starting with mpg_test_ or mpg_live_")
            api_key = api_key.strip()
            self.environment = API_KEY_ENVIRONMENTS[api_key[:9]]
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_in_progress_wait < 0:
            raise ValueError("max_in_progress_wait must be >= 0")
        _check_timeout(timeout)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.max_retry_after = max_retry_after
        self.max_in_progress_wait = max_in_progress_wait
        self._id_token = id_token
        self._api_key = api_key
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self.credentials = CredentialsResource(self)
        self.payments = PaymentsResource(self)
        self.api_keys = ApiKeysResource(self)
        self.webhook_endpoints = WebhookEndpointsResource(self)
        self.events = EventsResource(self)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"Gateway(base_url={self.base_url!r}, max_retries={self.max_retries})"

    # --------------------------------------------------------------------------------------------- low level
    def request(
        self,
        method: str,
        function: str,
        *,
        params: Mapping[str, str | int | None] | None = None,
        json_body: Any = None,
        idempotency_key: str | None = None,
    ) -> ApiResponse:
        """Call one gateway function (`stk_push`, `payment_status`, `developer_credentials`), retrying transient
        failures with the same request (same body, same Idempotency-Key); returns the 2xx answer (201, or 202 for a
        push whose outcome is unknown) or raises the matching GatewayError."""
        method = method.upper()
        attempts = 0
        retries = 0  # retries that count against max_retries
        in_progress_waited = 0.0
        while True:
            outcome = self._attempt(method, function, params, json_body, idempotency_key)
            attempts += 1
            if isinstance(outcome, ApiResponse):
                return ApiResponse(
                    outcome.status, outcome.body, outcome.headers, outcome.request_id, outcome.replayed, attempts
                )
            error = outcome.error
            if not outcome.retryable:
                raise error
            retry_after = error.retry_after
            if retry_after is not None and retry_after > self.max_retry_after:
                raise error
            if error.code == IN_PROGRESS_CODE:
                # The key's first request still runs; its answer will be replayed to this very key. Not a failure:
                # wait as told, bounded by time rather than by max_retries.
                pause = retry_after if retry_after is not None else self.backoff(min(retries, 10))
                pause = max(pause, MIN_IN_PROGRESS_PAUSE)  # a Retry-After of 0 must not turn into a busy loop
                if in_progress_waited + pause > self.max_in_progress_wait:
                    raise error
                in_progress_waited += pause
            else:
                if retries >= self.max_retries:
                    raise error
                pause = retry_after if retry_after is not None else self.backoff(retries)
                retries += 1
            self._sleep(pause)

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)), so clients that failed together spread out."""
        ceiling = min(self.retry_max_delay, self.retry_base_delay * (2.0**attempt))
        return self._random() * ceiling

    def _attempt(
        self,
        method: str,
        function: str,
        params: Mapping[str, str | int | None] | None,
        json_body: Any,
        idempotency_key: str | None,
    ) -> ApiResponse | _Failure:
        headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {self._current_token()}",
            "User-Agent": USER_AGENT,
        }
        data: bytes | None = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        query = {name: str(value) for name, value in (params or {}).items() if value is not None}
        url = f"{self.base_url}/{function.lstrip('/')}"
        try:
            response = self._session.request(
                method,
                url,
                params=query or None,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as failure:
            timed_out = isinstance(failure, requests.Timeout)
            unreachable = errors.ConnectionError(
                f"no answer from {function} within the timeout"
                if timed_out
                else f"could not reach {function}: {type(failure).__name__}",
                code="timeout" if timed_out else "network_error",
            )
            unreachable.__cause__ = failure
            return _Failure(unreachable, _should_retry_failure(failure, method, idempotency_key))
        body = _parse_body(response)
        request_id = response.headers.get("X-Request-Id")
        if 200 <= response.status_code < 300:
            if not isinstance(body, dict):
                invalid = errors.ServerError(
                    f"{function} answered {response.status_code} without a JSON object",
                    http_status=response.status_code,
                    code="invalid_response",
                    request_id=request_id,
                    raw=body,
                    headers=response.headers,
                )
                return _Failure(invalid, retryable=False)
            replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
            return ApiResponse(response.status_code, body, response.headers, request_id, replayed, 1)
        error = errors.error_from_response(response.status_code, body, response.headers)
        return _Failure(error, _should_retry_answer(response, error, method, idempotency_key))

    def _current_token(self) -> str:
        if self._api_key is not None or self._id_token is None:
            return self._api_key or ""
        if isinstance(self._id_token, str):
            token: object = self._id_token
        else:
            try:
                token = self._id_token()
            except errors.GatewayError:
                raise
            except Exception as cause:
                raise errors.AuthenticationError(
                    f"the id_token provider failed: {type(cause).__name__}", code="id_token_unavailable"
                ) from cause
        if not isinstance(token, str) or not token.strip():
            raise errors.AuthenticationError("the id_token provider returned no token", code="id_token_unavailable")
        return token.strip()


def _safe_to_resend(method: str, idempotency_key: str | None) -> bool:
    return method in IDEMPOTENT_METHODS or idempotency_key is not None


def _should_retry_answer(
    response: requests.Response, error: errors.GatewayError, method: str, idempotency_key: str | None
) -> bool:
    if response.headers.get("Idempotent-Replayed", "").lower() == "true":
        return False  # the stored final answer for this key; asking again returns it again
    if response.status_code == 429:
        return True  # refused before doing any work
    if error.code == IN_PROGRESS_CODE:
        return True  # the first request with this key is still running; its answer will be replayed
    if error.code in PERMANENT_ERROR_CODES:
        return False
    return response.status_code >= 500 and _safe_to_resend(method, idempotency_key)


def _should_retry_failure(failure: requests.RequestException, method: str, idempotency_key: str | None) -> bool:
    if _nothing_was_sent(failure):
        return True
    transient = isinstance(
        failure,
        (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError),
    )
    return transient and _safe_to_resend(method, idempotency_key)


def _nothing_was_sent(failure: requests.RequestException) -> bool:
    """True only when the connection itself failed, so the server cannot have seen the request."""
    if isinstance(failure, (requests.ConnectTimeout, requests.exceptions.ProxyError, requests.exceptions.SSLError)):
        return True
    if isinstance(failure, requests.ConnectionError):
        reason = failure.args[0] if failure.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        # Refused or unresolvable. A reset mid-exchange is not: the request may have been processed.
        return isinstance(reason, NewConnectionError)
    return False


def _parse_body(response: requests.Response) -> Any:
    text = response.text
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_timeout(timeout: Timeout) -> None:
    parts = timeout if isinstance(timeout, tuple) else (timeout,)
    if len(parts) not in (1, 2) or not all(isinstance(p, (int, float)) and p > 0 for p in parts):
        raise ValueError("timeout must be a positive number of seconds or a (connect, read) pair")
