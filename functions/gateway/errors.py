"""The gateway's one error tree. Every answer that is not a success is one of these, rendered as one envelope.

    GatewayError (http_status, type, code, message, param)
    ├── AuthenticationError        401  authentication_error
    ├── PermissionDenied           403  permission_error
    ├── InvalidRequest             400  invalid_request_error
    │   ├── NotFound               404
    │   ├── CredentialsNotConfigured 404  (no Daraja credentials stored for the developer)
    │   ├── MethodNotAllowed       405
    │   ├── PayloadTooLarge        413
    │   └── Unprocessable          422
    ├── IdempotencyConflict        409  idempotency_error
    ├── DarajaError                502 (or Daraja's 4xx)  daraja_error, carries daraja_code
    └── ServerError                500  api_error
        └── ServiceUnavailable     503

An exception that is not a GatewayError never reaches a caller: the HTTP boundary logs it and answers a generic
500 `internal_error`, so no internal text leaks.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    http_status: int = 500
    error_type: ClassVar[str] = "api_error"

    def __init__(
        self, code: str, message: str, param: str | None = None, *, retry_after_s: int | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        # When set, the answer carries `Retry-After`: the caller may retry after this many seconds.
        self.retry_after_s = retry_after_s
        self.code = code
        self.message = message
        self.param = param
        self.details = details

    def to_envelope(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.error_type, "code": self.code, "message": self.message}
        if self.param is not None:
            body["param"] = self.param
        body.update(self.details)
        body["request_id"] = request_id
        return {"error": body}


class AuthenticationError(GatewayError):
    http_status = 401
    error_type = "authentication_error"


class PermissionDenied(GatewayError):
    http_status = 403
    error_type = "permission_error"


class InvalidRequest(GatewayError):
    http_status = 400
    error_type = "invalid_request_error"


class NotFound(InvalidRequest):
    http_status = 404


class CredentialsNotConfigured(InvalidRequest):
    """The developer has no Daraja credentials stored yet: a 404 that tells them to PUT developer_credentials."""

    http_status = 404

    def __init__(self, code: str = "credentials_not_configured", message: str = "", param: str | None = None) -> None:
        super().__init__(
            code,
            message
            or "no Daraja credentials are registered for this developer; PUT them to developer_credentials first",
            param,
        )


class MethodNotAllowed(InvalidRequest):
    http_status = 405

    def __init__(self, allowed: tuple[str, ...]) -> None:
        super().__init__("method_not_allowed", f"use {' or '.join(allowed)}")
        self.allowed = allowed


class PayloadTooLarge(InvalidRequest):
    http_status = 413



class Unprocessable(InvalidRequest):
    http_status = 422


class IdempotencyConflict(GatewayError):
    http_status = 409
    error_type = "idempotency_error"



class RateLimited(GatewayError):
    """An abuse limit: always with `Retry-After`, and `limit` naming which one (pushes_per_second, pushes_per_day,
    phone_busy, phone_prompts, credential_puts)."""

    http_status = 429
    error_type = "rate_limit_error"

    def __init__(self, limit: str, message: str, retry_after_s: int) -> None:
        super().__init__("rate_limited", message, retry_after_s=retry_after_s, limit=limit)


class DarajaError(GatewayError):
    """Daraja refused or failed a call. `daraja_code` is Daraja's own errorCode, kept for the developer."""

    error_type = "daraja_error"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int = 502,
        daraja_code: str | None = None,
        param: str | None = None,
    ) -> None:
        details: dict[str, Any] = {"daraja_code": daraja_code} if daraja_code else {}
        super().__init__(code, message, param, **details)
        self.daraja_code = daraja_code
        self.http_status = http_status


class ServerError(GatewayError):
    http_status = 500
    error_type = "api_error"


class ServiceUnavailable(ServerError):
    http_status = 503
