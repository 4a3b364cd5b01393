"""Every failure the SDK raises, and the one function that turns a gateway answer into one of them.

GatewayError (message, http_status, code, param, request_id, type, raw, payment_id, retry_after, idempotency_key)
├── AuthenticationError        401, or the id_token provider failed (code "id_token_unavailable")
├── PermissionDeniedError      403
├── InvalidRequestError        400, 405, 409 without an idempotency type, 413, 415, 422
│   └── NotFoundError          404: payment_not_found, credentials_not_configured
├── IdempotencyError           409 idempotency_error: idempotency_conflict, idempotency_in_progress (with Retry-After)
├── RateLimitError             429; retry_after holds the server's Retry-After in seconds
├── DarajaError                Daraja refused or failed (any status); daraja_code is Daraja's own code
│   └── DarajaRateLimitError   Daraja's spike arrest or quota (429); also a RateLimitError
├── ServerError                5xx from the gateway, or a 2xx whose body is not a JSON object
├── ConnectionError            no answer: code "network_error" or "timeout"; __cause__ is the requests error
└── WaitTimeout                payments.wait reached its deadline; payment is the last one read

`payment_id` names the payment a refused push recorded as `failed` (the envelope's `payment_id`), `retry_after` is
the answer's Retry-After in seconds, and `idempotency_key` is the key `payments.create` sent (retry with THAT key,
never a new one: the payer may already have been prompted).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from mpesa_gateway.models import Payment


class GatewayError(Exception):
    """The root of every error the SDK raises. Quote `request_id` when you ask for support."""

    def __init__(
        self,
        message: str,
        http_status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        type: str | None = None,  # noqa: A002 - the envelope's own field name
        *,
        raw: Any = None,
        headers: Mapping[str, str] | None = None,
        payment_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.param = param
        self.request_id = request_id
        self.type = type
        self.raw = raw
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.payment_id = payment_id
        self.retry_after: float | None = parse_retry_after(self.headers.get("Retry-After"))
        # Set by payments.create on whatever it raises: the Idempotency-Key to retry with.
        self.idempotency_key: str | None = None

    def __str__(self) -> str:
        details = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("http_status", self.http_status),
                ("code", self.code),
                ("payment_id", self.payment_id),
                ("request_id", self.request_id),
            )
            if value is not None
        )
        return f"{self.message} ({details})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r}, code={self.code!r}, "
            f"param={self.param!r}, request_id={self.request_id!r}, type={self.type!r}, payment_id={self.payment_id!r})"
        )


class AuthenticationError(GatewayError):
    """401: the ID token is missing, malformed, expired or revoked; or the id_token provider failed."""


class PermissionDeniedError(GatewayError):
    """403."""


class InvalidRequestError(GatewayError):
    """The request itself is wrong (400, 405, 413, 415, 422); fix it before sending it again."""


class NotFoundError(InvalidRequestError):
    """404: no such payment for this developer (another developer's payment looks the same), or no credentials."""


class IdempotencyError(GatewayError):
    """409 idempotency_error: `idempotency_conflict`, the key was used with another body; or
    `idempotency_in_progress`, its first request is still running (`retry_after` says when to ask again, with the
    same key). The SDK itself retries `idempotency_in_progress` for up to `Gateway.max_in_progress_wait` seconds."""


class RateLimitError(GatewayError):
    """429: slow down. `retry_after` is the server's Retry-After in seconds, when it sent one."""


class DarajaError(GatewayError):
    """Daraja refused or failed the call. `daraja_code` is Daraja's own errorCode, e.g. 500.001.1001.

    `code` says what to do: payer_busy (409, the payer has another prompt open), daraja_rejected_credentials,
    daraja_rejected_request, daraja_unavailable, daraja_unreachable (504: nothing was sent; retry). A refused push
    names the payment it recorded as `failed` in `payment_id`. (A push whose outcome is unknown is not an error: it
    is a 202 with the pending payment, flag `outcome_unknown`.)
    """

    def __init__(self, *args: Any, daraja_code: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daraja_code = daraja_code


class DarajaRateLimitError(DarajaError, RateLimitError):
    """Daraja's spike arrest or quota (daraja_rate_limited, 429): both a DarajaError and a RateLimitError."""


class ServerError(GatewayError):
    """5xx from the gateway. The SDK has already retried it `max_retries` times."""


class ConnectionError(GatewayError):  # noqa: A001 - builtins.ConnectionError is unrelated; import it qualified
    """No answer came back. `code` is "timeout" or "network_error"; `__cause__` is the underlying requests error."""


class WaitTimeout(GatewayError):
    """payments.wait() reached its deadline while the payment was still pending. `payment` is the last one read."""

    def __init__(self, message: str, payment: Payment) -> None:
        super().__init__(message, code="wait_timeout")
        self.payment = payment


_CLASS_BY_TYPE: dict[str, type[GatewayError]] = {
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "invalid_request_error": InvalidRequestError,
    "idempotency_error": IdempotencyError,
    "rate_limit_error": RateLimitError,
    "daraja_error": DarajaError,
    "api_error": ServerError,
}


def _class_for_status(status: int) -> type[GatewayError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    if status >= 400:
        return InvalidRequestError
    return GatewayError


def error_from_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> GatewayError:
    """The one place that picks an error class: by the envelope's `type` first, then by the HTTP status."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        envelope = {}
    error_type = _text(envelope.get("type"))
    error_class = _CLASS_BY_TYPE.get(error_type or "") or _class_for_status(status)
    if error_class is InvalidRequestError and status == 404:
        error_class = NotFoundError
    if error_class is DarajaError and status == 429:
        error_class = DarajaRateLimitError
    header_id = headers.get("X-Request-Id") if headers is not None else None
    init: dict[str, Any] = {
        "http_status": status,
        "code": _text(envelope.get("code")),
        "param": _text(envelope.get("param")),
        # The header names this very request, even when the body is a replayed answer to an earlier one.
        "request_id": header_id or _text(envelope.get("request_id")),
        "type": error_type,
        "raw": body,
        "headers": headers,
        "payment_id": _text(envelope.get("payment_id")),
    }
    if issubclass(error_class, DarajaError):
        init["daraja_code"] = _text(envelope.get("daraja_code"))
    message = _text(envelope.get("message")) or _fallback_message(status, body)
    return error_class(message, **init)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _fallback_message(status: int, body: Any) -> str:
    text = body.strip()[:200] if isinstance(body, str) else ""
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds, from delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
