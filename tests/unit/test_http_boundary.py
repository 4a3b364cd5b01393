"""The request boundary (`gateway.http.serve`) driven by Flask test request contexts and tiny handlers, plus
`gateway.api.client_ip`. No emulator, no network."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest

from gateway import errors, http
from gateway.api import client_ip
from gateway.domain.errors import ValidationError
from gateway.http import MAX_JSON_INTEGER_DIGITS, ApiResponse, Call, Developer, serve
from gateway.settings import Settings

MAX_BODY = 64
REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")

_flask_app = flask.Flask(__name__)


@pytest.fixture(autouse=True)
def _safe_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() checks the process settings first; these tests are about everything after that check, so they see a
    safe configuration whatever the shell's environment (tests/unit/test_local_stack_guard.py covers the check)."""
    monkeypatch.setattr(http, "get_settings", lambda: Settings(project_id="unit-test-project"))


class AuthSpy:
    """Stands in for FirebaseAuthenticator and records every Authorization value it was asked about."""

    def __init__(self, result: Developer | Exception = Developer("dev-1", "dev@example.com")) -> None:
        self.result = result
        self.calls: list[str | None] = []

    def __call__(self, authorization: str | None) -> Developer:
        self.calls.append(authorization)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def _run(
    handler: Callable[[Call], ApiResponse],
    *,
    method: str = "POST",
    methods: tuple[str, ...] = ("POST",),
    data: bytes | None = None,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
    authenticate: Callable[[str | None], Developer] | None = None,
    error_body: Callable[[errors.GatewayError, str], Any] | None = None,
) -> flask.Response:
    context: dict[str, Any] = {"method": method, "headers": dict(headers or {})}
    if chunked:
        # No Content-Length: the boundary must still stop reading after max_body_bytes + 1.
        context["input_stream"] = io.BytesIO(data or b"")
        context["headers"]["Transfer-Encoding"] = "chunked"
        context["environ_overrides"] = {"wsgi.input_terminated": True}
    elif data is not None:
        context["data"] = data
    with _flask_app.test_request_context("/fn/path", **context):
        return serve(
            flask.request,
            methods=methods,
            handler=handler,
            max_body_bytes=MAX_BODY,
            authenticate=authenticate,
            error_body=error_body,
        )


def _body(response: flask.Response) -> dict[str, Any]:
    assert response.mimetype == "application/json"
    parsed = json.loads(response.get_data(as_text=True))
    assert isinstance(parsed, dict)
    return parsed


def _assert_common_headers(response: flask.Response) -> None:
    assert response.headers["Content-Type"].startswith("application/json")
    assert REQUEST_ID.fullmatch(response.headers["X-Request-Id"])
    assert response.headers["Cache-Control"] == "no-store"


def _assert_envelope(
    response: flask.Response, status: int, error_type: str, code: str, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status
    _assert_common_headers(response)
    error = _body(response)["error"]
    assert error["type"] == error_type
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert error.get("param") == param
    return error


def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _echo_json(call: Call) -> ApiResponse:
    return ApiResponse(200, {"received": call.json()})


def _must_not_run(call: Call) -> ApiResponse:
    raise AssertionError("the handler must not run")


# --- success ---------------------------------------------------------------------------------------------------------


def test_a_handler_answer_is_rendered_as_json_with_its_headers() -> None:
    def handler(call: Call) -> ApiResponse:
        return ApiResponse(201, {"object": "payment", "uid": call.developer.uid}, {"Idempotent-Replayed": "true"})

    spy = AuthSpy()
    response = _run(handler, data=b"{}", headers={"Authorization": "Bearer a.b.c"}, authenticate=spy)

    assert response.status_code == 201
    _assert_common_headers(response)
    assert _body(response) == {"object": "payment", "uid": "dev-1"}
    assert response.headers["Idempotent-Replayed"] == "true"
    assert spy.calls == ["Bearer a.b.c"]


def test_the_developer_is_authenticated_once_per_request() -> None:
    def handler(call: Call) -> ApiResponse:
        return ApiResponse(200, {"same": call.developer is call.developer})

    spy = AuthSpy()
    response = _run(handler, headers={"Authorization": "Bearer x.y.z"}, authenticate=spy)

    assert _body(response) == {"same": True}
    assert spy.calls == ["Bearer x.y.z"]


def test_every_request_gets_its_own_request_id() -> None:
    ids = {_run(_must_not_run, method="GET").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    "payload",
    [{"a": 1}, [1, 2], "text", 7, None, {"phone": "0712345678", "name": "Wanjirũ"}],
    ids=["object", "array", "string", "number", "null", "unicode"],
)
def test_json_bodies_reach_the_handler_parsed(payload: Any) -> None:
    response = _run(_echo_json, data=json.dumps(payload, ensure_ascii=False).encode())
    assert response.status_code == 200
    assert _body(response) == {"received": payload}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_max_body_bytes_is_accepted(chunked: bool) -> None:
    data = json.dumps({"k": "x" * (MAX_BODY - 9)}).encode()
    assert len(data) == MAX_BODY
    response = _run(_echo_json, data=data, chunked=chunked)
    assert response.status_code == 200
    assert _body(response) == {"received": json.loads(data)}


# --- method ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "methods", "allow"),
    [
        ("GET", ("POST",), "POST"),
        ("DELETE", ("POST",), "POST"),
        ("POST", ("GET", "PUT", "DELETE"), "GET, PUT, DELETE"),
        ("PATCH", ("GET",), "GET"),
    ],
)
def test_a_wrong_method_is_405_with_allow_and_no_authentication(
    method: str, methods: tuple[str, ...], allow: str
) -> None:
    spy = AuthSpy()
    response = _run(
        _must_not_run,
        method=method,
        methods=methods,
        data=b"{}",
        headers={"Authorization": "Bearer a.b.c"},
        authenticate=spy,
    )

    _assert_envelope(response, 405, "invalid_request_error", "method_not_allowed")
    assert response.headers["Allow"] == allow
    assert spy.calls == []


# --- body ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [MAX_BODY + 1, 10 * MAX_BODY, 1024 * 1024])
def test_a_body_over_the_limit_is_413(chunked: bool, size: int) -> None:
    data = b'{"k": "' + b"x" * size + b'"}'
    response = _run(_echo_json, data=data, chunked=chunked)
    _assert_envelope(response, 413, "invalid_request_error", "body_too_large")


def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    class Exploding(io.BytesIO):
        def _explode(self, *args: Any) -> Any:
            raise AssertionError("the body must not be read when Content-Length is already too big")

        read = read1 = readinto = readline = _explode

    with _flask_app.test_request_context(
        "/fn", method="POST", input_stream=Exploding(), environ_overrides={"CONTENT_LENGTH": str(MAX_BODY + 1)}
    ):
        assert flask.request.content_length == MAX_BODY + 1
        response = serve(
            flask.request, methods=("POST",), handler=_echo_json, max_body_bytes=MAX_BODY, authenticate=None
        )
    _assert_envelope(response, 413, "invalid_request_error", "body_too_large")


def test_an_endless_chunked_body_is_read_only_up_to_the_limit() -> None:
    class Endless(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.requested: list[int | None] = []

        def read(self, size: int | None = -1) -> bytes:
            self.requested.append(size)
            if size is None or size < 0:
                raise AssertionError("an unbounded read of a client stream")
            return b"x" * size

    stream = Endless()
    with _flask_app.test_request_context(
        "/fn",
        method="POST",
        input_stream=stream,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    ):
        response = serve(
            flask.request, methods=("POST",), handler=_echo_json, max_body_bytes=MAX_BODY, authenticate=None
        )
    _assert_envelope(response, 413, "invalid_request_error", "body_too_large")
    assert stream.requested and sum(size or 0 for size in stream.requested) <= MAX_BODY + 1


@pytest.mark.parametrize(
    "data",
    [b"{", b"not json", b"{'single': 'quotes'}", b'{"a": 1,}', b"\xff\xfe{}", b"[" * 30 + b"]" * 29, b"[" * 30],
    ids=["truncated", "text", "single-quotes", "trailing-comma", "not-utf8", "unbalanced", "unclosed"],
)
def test_invalid_json_is_400(data: bytes) -> None:
    response = _run(_echo_json, data=data)
    _assert_envelope(response, 400, "invalid_request_error", "invalid_json")


def test_too_deeply_nested_json_is_400_not_500() -> None:
    depth = 20_000

    def handler(call: Call) -> ApiResponse:
        return ApiResponse(200, {"received": call.json()})

    with _flask_app.test_request_context("/fn", method="POST", data=b"[" * depth + b"]" * depth):
        response = serve(flask.request, methods=("POST",), handler=handler, max_body_bytes=2 * depth, authenticate=None)
    _assert_envelope(response, 400, "invalid_request_error", "invalid_json")


def _run_large(data: bytes, authenticate: Callable[[str | None], Developer] | None = None) -> flask.Response:
    with _flask_app.test_request_context("/fn", method="POST", data=data, headers={"Authorization": "Bearer a.b.c"}):
        return serve(
            flask.request, methods=("POST",), handler=_echo_json, max_body_bytes=64 * 1024, authenticate=authenticate
        )


HUGE_INTEGER = "9" * 5_000  # over Python's 4,300-digit limit for int(): a ValueError, once a 500


@pytest.mark.parametrize(
    "data",
    [
        HUGE_INTEGER,
        "-" + HUGE_INTEGER,
        '{"amount": ' + HUGE_INTEGER + "}",
        '{"metadata": {"n": [1, 2, ' + HUGE_INTEGER + "]}}",
        "1" + "0" * MAX_JSON_INTEGER_DIGITS,
        '{"amount": -1' + "0" * MAX_JSON_INTEGER_DIGITS + "}",
    ],
    ids=["bare", "negative", "in-an-object", "nested", "one-digit-over", "one-digit-over-negative"],
)
@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "unauthenticated-callback"])
def test_integers_with_too_many_digits_are_400_not_500(
    data: str, authenticated: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    response = _run_large(data.encode(), AuthSpy() if authenticated else None)

    error = _assert_envelope(response, 400, "invalid_request_error", "invalid_json")
    assert str(MAX_JSON_INTEGER_DIGITS) in error["message"]
    assert len(response.get_data()) < 1_000  # the number is not echoed back
    assert _log_lines(capsys) == []


@pytest.mark.parametrize(
    "literal",
    ["9" * MAX_JSON_INTEGER_DIGITS, "-" + "9" * MAX_JSON_INTEGER_DIGITS, "0", "-0", "150000"],
    ids=["max-digits", "max-digits-negative", "zero", "negative-zero", "amount"],
)
def test_integers_up_to_the_limit_reach_the_handler_exactly(literal: str) -> None:
    response = _run_large(('{"n": ' + literal + "}").encode())
    assert response.status_code == 200
    assert json.loads(response.get_data(as_text=True), parse_int=str) == {"received": {"n": str(int(literal))}}


@pytest.mark.parametrize(
    "data",
    [
        "1e400",
        "-1e400",
        '{"amount": 1E999}',
        '{"amount": 1.8e308}',
        "1" + "0" * 400 + ".5",
        '{"amount": NaN}',
        "Infinity",
        '{"amount": -Infinity}',
        "[1, NaN]",
    ],
    ids=[
        "1e400",
        "minus-1e400",
        "1E999",
        "just-over-max-float",
        "long-decimal",
        "nan",
        "infinity",
        "minus-infinity",
        "nan-in-array",
    ],
)
@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "unauthenticated-callback"])
def test_numbers_that_are_not_finite_are_400(data: str, authenticated: bool) -> None:
    response = _run_large(data.encode(), AuthSpy() if authenticated else None)
    _assert_envelope(response, 400, "invalid_request_error", "invalid_json")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [("1.5", 1.5), ("1e308", 1e308), ("-2.5E-3", -2.5e-3), ("1e-400", 0.0), ("10.0", 10.0)],
)
def test_finite_floats_reach_the_handler(literal: str, expected: float) -> None:
    response = _run_large(('{"x": ' + literal + "}").encode())
    assert response.status_code == 200
    assert _body(response) == {"received": {"x": expected}}


def test_nan_and_infinity_inside_strings_are_just_text() -> None:
    response = _run_large(b'{"a": "NaN", "b": "Infinity", "c": "1e400"}')
    assert _body(response) == {"received": {"a": "NaN", "b": "Infinity", "c": "1e400"}}


@pytest.mark.parametrize("data", [None, b"", b"   ", b"\n\t "], ids=["no-body", "empty", "spaces", "whitespace"])
def test_an_empty_body_is_400(data: bytes | None) -> None:
    response = _run(_echo_json, data=data)
    _assert_envelope(response, 400, "invalid_request_error", "invalid_json")


# --- errors raised by handlers ---------------------------------------------------------------------------------------


def test_a_domain_validation_error_is_400_with_code_and_param(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(call: Call) -> ApiResponse:
        raise ValidationError("invalid_phone", "phone must be a Kenyan mobile number such as 0712345678", "phone")

    error = _assert_envelope(_run(handler), 400, "invalid_request_error", "invalid_phone", param="phone")
    assert error["message"] == "phone must be a Kenyan mobile number such as 0712345678"
    assert _log_lines(capsys) == []


GATEWAY_ERRORS: list[tuple[errors.GatewayError, int, str]] = [
    (errors.AuthenticationError("token_expired", "expired"), 401, "authentication_error"),
    (errors.PermissionDenied("not_yours", "not yours"), 403, "permission_error"),
    (errors.InvalidRequest("invalid_amount", "bad amount", "amount"), 400, "invalid_request_error"),
    (errors.NotFound("payment_not_found", "no such payment", "id"), 404, "invalid_request_error"),
    (errors.Unprocessable("bad_state", "cannot"), 422, "invalid_request_error"),
    (errors.IdempotencyConflict("idempotency_key_reused", "different body"), 409, "idempotency_error"),
    (
        errors.DarajaError("daraja_rejected", "Daraja said no", http_status=400, daraja_code="400.002.02"),
        400,
        "daraja_error",
    ),
    (errors.DarajaError("daraja_timeout", "Daraja timed out", http_status=504), 504, "daraja_error"),
    (errors.ServerError("storage_failed", "try again"), 500, "api_error"),
    (errors.ServiceUnavailable("auth_unavailable", "try again"), 503, "api_error"),
    (errors.RateLimited("phone_busy", "one prompt at a time", retry_after_s=90), 429, "rate_limit_error"),
]


@pytest.mark.parametrize(("error", "status", "error_type"), GATEWAY_ERRORS, ids=[e.code for e, _, _ in GATEWAY_ERRORS])
def test_gateway_errors_keep_their_status_type_code_and_param(
    error: errors.GatewayError, status: int, error_type: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(call: Call) -> ApiResponse:
        raise error

    response = _run(handler)

    body = _assert_envelope(response, status, error_type, error.code, param=error.param)
    assert body["message"] == error.message
    assert body.get("daraja_code") == getattr(error, "daraja_code", None)
    assert ("WWW-Authenticate" in response.headers) == (status == 401)
    # Only an error that names a wait answers with Retry-After, and browser code may read it.
    assert response.headers.get("Retry-After") == (None if error.retry_after_s is None else str(error.retry_after_s))
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    assert body.get("limit") == error.details.get("limit")
    lines = _log_lines(capsys)
    if status >= 500:
        assert [(line["event"], line["severity"], line["code"], line["status"]) for line in lines] == [
            ("request_failed", "ERROR", error.code, status)
        ]
        assert lines[0]["request_id"] == body["request_id"]
    else:
        assert lines == []


def test_an_authentication_failure_is_401_with_www_authenticate() -> None:
    def handler(call: Call) -> ApiResponse:
        return ApiResponse(200, {"uid": call.developer.uid})

    spy = AuthSpy(errors.AuthenticationError("missing_token", "send a token"))
    response = _run(handler, authenticate=spy)

    _assert_envelope(response, 401, "authentication_error", "missing_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert spy.calls == [None]


def test_an_unexpected_exception_is_a_generic_500_that_leaks_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(call: Call) -> ApiResponse:
        raise RuntimeError("secret-detail-xyz")

    response = _run(handler)

    error = _assert_envelope(response, 500, "api_error", "internal_error")
    assert "secret-detail-xyz" not in response.get_data(as_text=True)
    assert "secret-detail-xyz" not in json.dumps(dict(response.headers))
    assert "RuntimeError" not in response.get_data(as_text=True)
    lines = _log_lines(capsys)
    assert len(lines) == 1
    assert lines[0]["event"] == "unhandled_exception"
    assert lines[0]["severity"] == "ERROR"
    assert lines[0]["exception"] == "RuntimeError"
    assert lines[0]["request_id"] == error["request_id"]
    assert lines[0]["path"] == "/fn/path"


def test_a_logged_traceback_never_carries_a_phone_number(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(call: Call) -> ApiResponse:
        path = "developers/uid-1/payers/254712345678"
        raise RuntimeError(f"Document {path} failed")

    def locate(call: Call) -> ApiResponse:
        msisdn = "254712345678"  # a local in the failing frame, as Firestore's own frames hold document paths
        return handler(call) if msisdn else ApiResponse(200, {})

    _run(locate)
    [line] = _log_lines(capsys)
    assert "254712345678" not in json.dumps(line)
    assert "payers/[digits]" in line["traceback"]


def test_an_unexpected_exception_inside_authentication_is_also_a_generic_500() -> None:
    def handler(call: Call) -> ApiResponse:
        return ApiResponse(200, {"uid": call.developer.uid})

    response = _run(handler, authenticate=AuthSpy(KeyError("internal-key-abc")))

    _assert_envelope(response, 500, "api_error", "internal_error")
    assert "internal-key-abc" not in response.get_data(as_text=True)


def test_a_custom_error_body_replaces_the_envelope_but_keeps_status_and_request_id() -> None:
    def callback_body(error: errors.GatewayError, request_id: str) -> dict[str, Any]:
        return {"ResultCode": 1, "ResultDesc": error.code, "request_id": request_id}

    response = _run(_must_not_run, method="GET", error_body=callback_body)

    assert response.status_code == 405
    _assert_common_headers(response)
    assert _body(response) == {
        "ResultCode": 1,
        "ResultDesc": "method_not_allowed",
        "request_id": response.headers["X-Request-Id"],
    }


# --- the local-stack guard at the boundary ---------------------------------------------------------------------------


@pytest.mark.parametrize("authenticate", [AuthSpy(), None], ids=["authenticated", "unauthenticated-callback"])
def test_an_unsafe_configuration_is_503_before_anything_else(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    authenticate: Callable[[str | None], Developer] | None,
) -> None:
    unsafe = Settings(project_id="prod-project", firestore_emulator_host="127.0.0.1:8080", service_identity="stk_push")
    monkeypatch.setattr(http, "get_settings", lambda: unsafe)

    # Even a wrong method is answered with the 503: nothing is looked at while the setup is unsafe.
    response = _run(
        _must_not_run, method="GET", data=b"{}", headers={"Authorization": "Bearer a.b.c"}, authenticate=authenticate
    )

    error = _assert_envelope(response, 503, "api_error", "unsafe_configuration")
    assert "FIRESTORE_EMULATOR_HOST" not in error["message"]  # the reason goes to the logs, not to callers
    if isinstance(authenticate, AuthSpy):
        assert authenticate.calls == []
    lines = _log_lines(capsys)
    assert [(line["event"], line["severity"]) for line in lines] == [
        ("unsafe_configuration_refused", "CRITICAL"),
        ("request_failed", "ERROR"),
    ]
    assert "FIRESTORE_EMULATOR_HOST" in lines[0]["reason"]
    assert "127.0.0.1:8080" not in json.dumps(lines)


# --- client_ip ------------------------------------------------------------------------------------------------------


@pytest.fixture
def request_with() -> Iterator[Callable[[str | None], flask.Request]]:
    contexts: list[Any] = []

    def make(forwarded: str | None) -> flask.Request:
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        context = _flask_app.test_request_context("/cb", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.7"})
        context.push()
        contexts.append(context)
        return flask.request._get_current_object()  # type: ignore[attr-defined]

    yield make
    for context in reversed(contexts):
        context.pop()


@pytest.mark.parametrize(
    ("forwarded", "hops", "expected"),
    [
        ("1.2.3.4, 196.201.214.200", 1, "196.201.214.200"),  # the client-written left entry is ignored
        ("196.201.214.200", 1, "196.201.214.200"),
        ("1.2.3.4, 196.201.214.200, 35.191.0.1", 2, "196.201.214.200"),
        (" , 196.201.214.200 , ", 1, "196.201.214.200"),
        (None, 1, "10.0.0.7"),
        ("", 1, "10.0.0.7"),
        ("196.201.214.200", 2, "10.0.0.7"),  # fewer entries than our proxies append: not trustworthy
        ("1.2.3.4, 196.201.214.200", 0, "10.0.0.7"),  # no proxy in front: the socket peer is the caller
    ],
)
def test_client_ip_counts_trusted_hops_from_the_right(
    request_with: Callable[[str | None], flask.Request], forwarded: str | None, hops: int, expected: str
) -> None:
    assert client_ip(request_with(forwarded), hops) == expected
