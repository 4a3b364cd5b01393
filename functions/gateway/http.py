"""The HTTP boundary shared by every function: method check, authentication, body limits, JSON parsing, one error
envelope and a request id on every answer.

Handlers receive a `Call` and return an `ApiResponse`; they never build Flask responses or catch errors
themselves. An unexpected exception is logged with its type and answered as a generic 500, never with its text.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flask

from gateway import errors
from gateway.domain.errors import ValidationError
from gateway.logs import Event, bind_request_fields, clear_request_fields, log_event
from gateway.settings import get_settings

_LONG_DIGITS = re.compile(r"[0-9]{9,}")


@dataclass(frozen=True)
class Developer:
    """The authenticated caller. `uid` is the tenant key for every read and write."""

    uid: str
    email: str | None = None
    # Set by an API key: "sandbox" for mpg_test_ keys, "production" for mpg_live_ keys; None for an ID token.
    environment: str | None = None
    # The API key's id (key_…) when a key authenticated the call, for logs; never the key itself.
    api_key_id: str | None = None


@dataclass
class ApiResponse:
    status: int
    body: Mapping[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Call:
    """One request as the handlers see it: the verified developer, the parsed JSON body and the query."""

    def __init__(
        self,
        request: flask.Request,
        request_id: str,
        max_body_bytes: int,
        authenticate: Callable[[str | None], Developer] | None,
    ) -> None:
        self.request = request
        self.request_id = request_id
        self._max_body_bytes = max_body_bytes
        self._authenticate = authenticate
        self._developer: Developer | None = None
        self._raw: bytes | None = None

    @property
    def method(self) -> str:
        return self.request.method.upper()

    @property
    def developer(self) -> Developer:
        if self._developer is None:
            if self._authenticate is None:
                raise RuntimeError("this endpoint is not authenticated")
            self._developer = self._authenticate(self.request.headers.get("Authorization"))
            if self._developer.api_key_id is not None:
                # Every later log line of this request names the key that made it (its id, never the key).
                bind_request_fields(api_key_id=self._developer.api_key_id)
        return self._developer

    def query(self, name: str) -> str | None:
        value = self.request.args.get(name)
        return value if value is None else value.strip()

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def raw_body(self) -> bytes:
        """The body, read once (at most the limit) and kept, so json() and the callback's audit copy share it."""
        if self._raw is None:
            self._raw = self._read_body()
        return self._raw

    def _read_body(self) -> bytes:
        declared = self.request.content_length
        if declared is not None and declared > self._max_body_bytes:
            raise errors.PayloadTooLarge(
                "body_too_large", f"request body must be at most {self._max_body_bytes} bytes"
            )
        data = self.request.stream.read(self._max_body_bytes + 1)
        if len(data) > self._max_body_bytes:
            raise errors.PayloadTooLarge(
                "body_too_large", f"request body must be at most {self._max_body_bytes} bytes"
            )
        return bytes(data)

    def json(self) -> Any:
        data = self.raw_body()
        if not data.strip():
            raise errors.InvalidRequest("invalid_json", "request body must be a JSON object")
        try:
            parsed = json.loads(
                data.decode("utf-8"),
                parse_int=_bounded_int,
                parse_float=_finite_float,
                parse_constant=_refused_constant,
            )
        except _RefusedNumber as refused:
            raise errors.InvalidRequest("invalid_json", refused.message) from None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise errors.InvalidRequest("invalid_json", f"request body is not valid JSON: {_short(error)}") from None
        try:
            # JSON's \ud800 escapes decode to lone surrogates, which no later encoder (Firestore, our own answers)
            # accepts: refuse them here, once, as bad input.
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise errors.InvalidRequest("invalid_json", "request body contains invalid unicode escapes") from None
        except RecursionError:
            raise errors.InvalidRequest("invalid_json", "request body is nested too deeply") from None
        return parsed


# No field of this API needs more; Python refuses to convert integers of more than 4,300 digits (a ValueError).
MAX_JSON_INTEGER_DIGITS = 100


class _RefusedNumber(Exception):
    """Raised by the number hooks from inside json.loads: a number this API will not take, as a 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        raise _RefusedNumber(f"request body has an integer of more than {MAX_JSON_INTEGER_DIGITS} digits")
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        # 1e400 would silently become infinity, which no later encoder (Firestore, our answers) can write as JSON.
        raise _RefusedNumber("request body has a number too large to represent")
    return value


def _refused_constant(name: str) -> Any:
    # Python's json accepts NaN, Infinity and -Infinity by default; they are not JSON.
    raise _RefusedNumber(f"request body is not valid JSON: {name} is not a JSON value")


def _without_numbers(text: str) -> str:
    """Tracebacks can quote document paths such as payers/<msisdn>: long digit runs never reach the logs."""
    return _LONG_DIGITS.sub("[digits]", text)


def _short(error: Exception) -> str:
    return str(error).split("\n")[0][:120]


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def serve(
    request: flask.Request,
    *,
    methods: tuple[str, ...],
    handler: Callable[[Call], ApiResponse],
    max_body_bytes: int,
    authenticate: Callable[[str | None], Developer] | None,
    error_body: Callable[[errors.GatewayError, str], Mapping[str, Any]] | None = None,
) -> flask.Response:
    """Run one handler inside the error boundary and render its answer as JSON."""
    request_id = new_request_id()
    call = Call(request, request_id, max_body_bytes, authenticate)
    clear_request_fields()  # a worker thread serves many requests: nothing of the previous one carries over
    try:
        get_settings().assert_safe()  # every function, the unauthenticated callback too, refuses an unsafe setup
        if call.method not in methods:
            raise errors.MethodNotAllowed(methods)
        result = handler(call)
    except ValidationError as invalid:
        error = errors.InvalidRequest(invalid.code, invalid.message, invalid.param)
        return _error_response(error, request_id, error_body)
    except errors.GatewayError as error:
        if error.http_status >= 500:
            log_event(
                Event.REQUEST_FAILED,
                "ERROR",
                request_id=request_id,
                code=error.code,
                status=error.http_status,
                path=request.path,
            )
        return _error_response(error, request_id, error_body)
    except Exception as unexpected:  # noqa: BLE001 - the boundary must never leak internals
        log_event(
            Event.UNHANDLED_EXCEPTION,
            "ERROR",
            request_id=request_id,
            exception=type(unexpected).__name__,
            traceback=_without_numbers(traceback.format_exc(limit=12)),
            path=request.path,
        )
        internal = errors.ServerError("internal_error", "an internal error occurred; retry with the same request")
        return _error_response(internal, request_id, error_body)
    return _json_response(result.status, result.body, request_id, result.headers)


def _error_response(
    error: errors.GatewayError,
    request_id: str,
    error_body: Callable[[errors.GatewayError, str], Mapping[str, Any]] | None,
) -> flask.Response:
    body = error_body(error, request_id) if error_body else error.to_envelope(request_id)
    headers: dict[str, str] = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, errors.MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    if isinstance(error, errors.AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="mpesa-gateway"'
    return _json_response(error.http_status, body, request_id, headers)


def _json_response(
    status: int, body: Mapping[str, Any], request_id: str, headers: Mapping[str, str]
) -> flask.Response:
    response = flask.Response(
        # ASCII-only output cannot fail to encode, whatever text ends up in a message.
        json.dumps(body, separators=(",", ":"), ensure_ascii=True, default=str),
        status=status,
        mimetype="application/json",
    )
    response.headers["X-Request-Id"] = request_id
    response.headers["Cache-Control"] = "no-store"
    # Lets browser code (the JS SDK) read these across origins.
    response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Idempotent-Replayed, Retry-After"
    for name, value in headers.items():
        response.headers[name] = value
    return response
