"""FirebaseAuthenticator against REAL firebase-admin verification, with tokens signed here by a local RS256 key.

The Auth emulator skips signature and expiry checks, so those checks are only tested here: the verifier fetches
its certificates from a tiny local HTTP server instead of Google, and every token is made with PyJWT.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import firebase_admin
import google.auth.credentials
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from firebase_admin import _token_gen, credentials
from firebase_admin import auth as firebase_auth

from gateway import errors
from gateway.auth import FirebaseAuthenticator
from gateway.http import Developer
from gateway.settings import Settings

PROJECT_ID = "my-project"
KID = "kid1"
EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"


# --- keys, certificates and the local certificate server -------------------------------------------------------


def _issuer(project_id: str) -> str:
    return f"https://securetoken.google.com/{project_id}"


def _self_signed_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Keys:
    signing: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey  # never published: a token it signs under KID must fail the signature check


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        signing=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class _CertServer(ThreadingHTTPServer):
    certs_body = b"{}"
    hits = 0


class _CertHandler(BaseHTTPRequestHandler):
    server: _CertServer

    def do_GET(self) -> None:
        self.server.hits += 1
        if self.path == "/certs":
            status, body = 200, self.server.certs_body
        else:
            status, body = 500, b'{"error": "backend exploded"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Cache-Control", "public, max-age=3600, must-revalidate, no-transform")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def cert_server(keys: Keys) -> Iterator[_CertServer]:
    server = _CertServer(("127.0.0.1", 0), _CertHandler)
    server.certs_body = json.dumps({KID: _self_signed_pem(keys.signing)}).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _url(server: _CertServer, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/certs"


# --- firebase_admin apps -------------------------------------------------------------------------------------------


class _AnonymousCredential(credentials.Base):
    """No Application Default Credentials lookup (it would probe the GCE metadata server): verifying an ID token
    needs only the public certificates."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()


@pytest.fixture(autouse=True)
def _real_auth_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # firebase-admin reads this variable from os.environ on every verification; when set it skips signatures.
    monkeypatch.delenv(EMULATOR_ENV, raising=False)


def _new_app(project_id: str | None, cert_url: str | None) -> firebase_admin.App:
    """A named App whose auth client was created while ID_TOKEN_CERT_URI pointed at `cert_url`."""
    from firebase_admin import auth as firebase_auth

    options = {"projectId": project_id} if project_id else {}
    app = firebase_admin.initialize_app(_AnonymousCredential(), options, name=f"test-auth-{uuid.uuid4().hex}")
    if cert_url is not None:
        with pytest.MonkeyPatch.context() as patch:
            # TokenVerifier copies the module constant when the App's auth client is created (and caches the client
            # on the App), so the patch only needs to cover this call.
            patch.setattr(_token_gen, "ID_TOKEN_CERT_URI", cert_url)
            firebase_auth._get_client(app)
    return app


@pytest.fixture
def make_app() -> Iterator[Callable[[str | None, str | None], firebase_admin.App]]:
    created: list[firebase_admin.App] = []

    def make(project_id: str | None, cert_url: str | None) -> firebase_admin.App:
        app = _new_app(project_id, cert_url)
        created.append(app)
        return app

    yield make
    for app in created:
        firebase_admin.delete_app(app)


@pytest.fixture(scope="module")
def verifying_app(cert_server: _CertServer) -> Iterator[firebase_admin.App]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(EMULATOR_ENV, raising=False)
        app = _new_app(PROJECT_ID, _url(cert_server, "/certs"))
    yield app
    firebase_admin.delete_app(app)


def _settings(**overrides: Any) -> Settings:
    return Settings(**{"project_id": PROJECT_ID, "check_revoked_tokens": False, **overrides})


@pytest.fixture
def authenticator(verifying_app: firebase_admin.App) -> FirebaseAuthenticator:
    return FirebaseAuthenticator(_settings(), app_factory=lambda: verifying_app)


# --- tokens ---------------------------------------------------------------------------------------------------------


def _claims(project_id: str = PROJECT_ID, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": _issuer(project_id),
        "aud": project_id,
        "sub": "dev-123",
        "iat": now - 10,
        "exp": now + 3600,
        "auth_time": now - 10,
        "email": "dev@example.com",
        "email_verified": True,
    }
    claims.update(overrides)
    return claims


def _signed(key: rsa.RSAPrivateKey, kid: Any = KID, **claim_overrides: Any) -> str:
    return jwt.encode(_claims(**claim_overrides), key, algorithm="RS256", headers={"kid": kid})


def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _rs256_raw(key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RS256 by hand, for headers PyJWT refuses to write (a non-string kid)."""
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token with an empty signature segment, as the Auth emulator (or a forger using alg=none) makes them."""
    return f"{_b64(header)}.{_b64(claims)}."


def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _assert_token_not_logged(lines: list[dict[str, Any]], token: str) -> None:
    text = json.dumps(lines)
    assert token not in text
    for segment in token.split("."):
        if len(segment) > 8:
            assert segment not in text


# --- accepted -------------------------------------------------------------------------------------------------------


def test_a_valid_token_resolves_the_developer(
    authenticator: FirebaseAuthenticator, keys: Keys, cert_server: _CertServer, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _signed(keys.signing)

    developer = authenticator(f"Bearer {token}")

    assert developer == Developer(uid="dev-123", email="dev@example.com")
    # Proof that the certificates came from the local server, not from Google.
    assert cert_server.hits >= 1
    _assert_token_not_logged(_log_lines(capsys), token)


@pytest.mark.parametrize(
    "header_template",
    ["Bearer {t}", "bearer {t}", "BEARER {t}", "Bearer   {t}", "  Bearer {t}  ", "Bearer {t}\n"],
    ids=["canonical", "lowercase-scheme", "uppercase-scheme", "extra-spaces", "surrounding-whitespace", "newline"],
)
def test_the_bearer_scheme_is_parsed_leniently(
    authenticator: FirebaseAuthenticator, keys: Keys, header_template: str
) -> None:
    header = header_template.format(t=_signed(keys.signing))
    assert authenticator(header).uid == "dev-123"


def test_a_token_without_email_gives_a_developer_without_email(
    authenticator: FirebaseAuthenticator, keys: Keys
) -> None:
    token = jwt.encode(
        {k: v for k, v in _claims().items() if k != "email"}, keys.signing, algorithm="RS256", headers={"kid": KID}
    )
    assert authenticator(f"Bearer {token}") == Developer(uid="dev-123", email=None)


def test_a_non_string_email_claim_is_dropped(authenticator: FirebaseAuthenticator, keys: Keys) -> None:
    token = _signed(keys.signing, email=["a@example.com"])
    assert authenticator(f"Bearer {token}") == Developer(uid="dev-123", email=None)


def test_certificates_are_cached_per_their_cache_control_header(
    authenticator: FirebaseAuthenticator, keys: Keys, cert_server: _CertServer
) -> None:
    authenticator(f"Bearer {_signed(keys.signing)}")
    hits_after_first = cert_server.hits

    for _ in range(3):
        authenticator(f"Bearer {_signed(keys.signing, sub='dev-456')}")

    assert cert_server.hits == hits_after_first


# --- rejected: the Authorization header itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Basic abc", "malformed_authorization"),
        ("Basic ZGV2OnNlY3JldA==", "malformed_authorization"),
        ("Bearer", "malformed_authorization"),
        ("Bearer ", "malformed_authorization"),
        ("Bearer a b", "malformed_authorization"),
        ("Bearer abc", "malformed_authorization"),
        ("Bearer a.b.c d.e.f", "malformed_authorization"),
        ("Token abc.def.ghi", "malformed_authorization"),
        ("Bearerabc.def.ghi", "malformed_authorization"),
        ("abc.def.ghi", "malformed_authorization"),
        ("Bearer abc.def.ghi", "invalid_token"),
        ("Bearer ...", "malformed_authorization"),
    ],
)
def test_unusable_authorization_headers_are_401(
    authenticator: FirebaseAuthenticator,
    authorization: str | None,
    code: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(errors.AuthenticationError) as caught:
        authenticator(authorization)

    assert caught.value.http_status == 401
    assert caught.value.error_type == "authentication_error"
    assert caught.value.code == code
    lines = _log_lines(capsys)
    assert [(line["event"], line["code"]) for line in lines] == [("auth_rejected", code)]


# --- rejected: tokens that firebase-admin (or our uid rule) must refuse --------------------------------------------


def _forged_alg_none(keys: Keys) -> str:
    return _unsigned({"alg": "none", "kid": KID, "typ": "JWT"}, _claims())


def _hs256(keys: Keys) -> str:
    return jwt.encode(_claims(), secrets.token_bytes(32), algorithm="HS256", headers={"kid": KID})


def _expired(keys: Keys) -> str:
    now = int(time.time())
    return _signed(keys.signing, iat=now - 7200, auth_time=now - 7200, exp=now - 3600)


def _issued_in_the_future(keys: Keys) -> str:
    now = int(time.time())
    return _signed(keys.signing, iat=now + 600, exp=now + 4200)


def _tampered_payload(keys: Keys) -> str:
    """A genuine signature over one payload, glued onto another (the attacker swaps in a victim's uid)."""
    header, _payload, signature = _signed(keys.signing).split(".")
    return f"{header}.{_b64(_claims(sub='victim-uid'))}.{signature}"


REJECTED_TOKENS: list[tuple[str, Callable[[Keys], str], str]] = [
    ("expired", _expired, "token_expired"),
    ("wrong-audience", lambda k: _signed(k.signing, aud="other-project"), "invalid_token"),
    ("wrong-issuer", lambda k: _signed(k.signing, iss=_issuer("other-project")), "invalid_token"),
    ("issuer-not-securetoken", lambda k: _signed(k.signing, iss="https://evil.example/my-project"), "invalid_token"),
    ("signed-by-another-key-same-kid", lambda k: _signed(k.other), "invalid_token"),
    ("tampered-payload", _tampered_payload, "invalid_token"),
    ("unknown-kid", lambda k: _signed(k.signing, kid="kid-unknown"), "invalid_token"),
    ("kid-not-a-string", lambda k: _rs256_raw(k.signing, {"alg": "RS256", "kid": [KID]}, _claims()), "invalid_token"),
    ("no-kid", lambda k: jwt.encode(_claims(), k.signing, algorithm="RS256"), "invalid_token"),
    ("alg-none-forged", _forged_alg_none, "invalid_token"),
    ("hs256", _hs256, "invalid_token"),
    ("issued-in-the-future", _issued_in_the_future, "invalid_token"),
    ("sub-with-slash", lambda k: _signed(k.signing, sub="dev/../other"), "invalid_token"),
    ("sub-dot", lambda k: _signed(k.signing, sub="."), "invalid_token"),
    ("sub-dot-dot", lambda k: _signed(k.signing, sub=".."), "invalid_token"),
    ("sub-empty", lambda k: _signed(k.signing, sub=""), "invalid_token"),
    ("sub-too-long", lambda k: _signed(k.signing, sub="u" * 129), "invalid_token"),
    ("sub-not-a-string", lambda k: _signed(k.signing, sub=123), "invalid_token"),
    (
        "custom-token-audience",
        lambda k: _signed(
            k.signing, aud="https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit"
        ),
        "invalid_token",
    ),
]


@pytest.mark.parametrize(
    ("make_token", "code"), [row[1:] for row in REJECTED_TOKENS], ids=[r[0] for r in REJECTED_TOKENS]
)
def test_bad_tokens_are_401(
    authenticator: FirebaseAuthenticator,
    keys: Keys,
    make_token: Callable[[Keys], str],
    code: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = make_token(keys)

    with pytest.raises(errors.AuthenticationError) as caught:
        authenticator(f"Bearer {token}")

    assert caught.value.http_status == 401
    assert caught.value.code == code
    assert token not in caught.value.message
    lines = _log_lines(capsys)
    assert all(line["event"] == "auth_rejected" for line in lines)
    _assert_token_not_logged(lines, token)


def test_the_same_claims_pass_when_signed_properly(authenticator: FirebaseAuthenticator, keys: Keys) -> None:
    """Control for the table above: the rejections come from the one defect each row injects."""
    assert authenticator(f"Bearer {_signed(keys.signing, sub='u' * 128)}").uid == "u" * 128


# --- the verifier's own failures are 503, not the caller's fault ---------------------------------------------------


@pytest.mark.parametrize("where", ["closed-port", "http-500"])
def test_certificates_unreachable_is_503(
    make_app: Callable[[str | None, str | None], firebase_admin.App],
    cert_server: _CertServer,
    keys: Keys,
    where: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert_url = _closed_port_url() if where == "closed-port" else _url(cert_server, "/broken")
    app = make_app(PROJECT_ID, cert_url)
    token = _signed(keys.signing)

    with pytest.raises(errors.ServiceUnavailable) as caught:
        FirebaseAuthenticator(_settings(), app_factory=lambda: app)(f"Bearer {token}")

    assert caught.value.http_status == 503
    assert caught.value.error_type == "api_error"
    assert caught.value.code == "auth_unavailable"
    lines = _log_lines(capsys)
    assert [(line["event"], line["severity"], line["code"]) for line in lines] == [
        ("auth_rejected", "ERROR", "certificate_fetch_failed")
    ]
    _assert_token_not_logged(lines, token)


def test_an_app_without_project_id_is_a_503_misconfiguration(
    make_app: Callable[[str | None, str | None], firebase_admin.App],
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "GCP_PROJECT", "FIREBASE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    app = make_app(None, None)
    token = _signed(keys.signing)

    with pytest.raises(errors.ServiceUnavailable) as caught:
        FirebaseAuthenticator(_settings(project_id=""), app_factory=lambda: app)(f"Bearer {token}")

    assert (caught.value.http_status, caught.value.code) == (503, "auth_misconfigured")
    lines = _log_lines(capsys)
    assert [(line["event"], line["severity"], line["code"]) for line in lines] == [
        ("auth_rejected", "ERROR", "auth_misconfigured")
    ]
    _assert_token_not_logged(lines, token)


# --- emulator mode -------------------------------------------------------------------------------------------------


def _emulator_token(project_id: str, **claim_overrides: Any) -> str:
    return _unsigned({"alg": "none", "typ": "JWT"}, _claims(project_id, **claim_overrides))


@pytest.mark.parametrize("authorization", [None, "Bearer abc.def.ghi", "emulator-token"])
@pytest.mark.parametrize(
    ("functions_emulator", "service_identity"),
    [(False, ""), (False, "developer_credentials"), (True, "developer_credentials")],
    ids=["no-emulator-flag", "cloud-run", "emulator-flag-on-cloud-run"],
)
def test_emulator_host_outside_demo_project_and_emulator_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    authorization: str | None,
    functions_emulator: bool,
    service_identity: str,
) -> None:
    """The issue's case: FUNCTIONS_EMULATOR=true and an Auth emulator host in a real project used to accept an
    unsigned token for any uid. Outside a demo- project, only FUNCTIONS_EMULATOR without a Cloud Run identity is
    trusted (tests/unit/test_local_stack_guard.py has every combination)."""
    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9099")
    settings = _settings(
        project_id="prod-project",
        auth_emulator_host="127.0.0.1:9099",
        functions_emulator=functions_emulator,
        service_identity=service_identity,
    )
    factory_calls: list[int] = []

    def app_factory() -> Any:
        factory_calls.append(1)
        raise AssertionError("a refused deployment must not even start verifying")

    if authorization == "emulator-token":
        token = _emulator_token("prod-project")
        authorization = f"Bearer {token}"

    with pytest.raises(errors.ServiceUnavailable) as caught:
        FirebaseAuthenticator(settings, app_factory=app_factory)(authorization)

    assert (caught.value.http_status, caught.value.code) == (503, "unsafe_configuration")
    assert factory_calls == []
    lines = _log_lines(capsys)
    assert len(lines) == 1
    assert lines[0]["severity"] == "CRITICAL"
    assert lines[0]["event"] == "unsafe_configuration_refused"
    assert lines[0]["project_id"] == "prod-project"
    assert "FIREBASE_AUTH_EMULATOR_HOST" in lines[0]["reason"]
    assert "127.0.0.1:9099" not in lines[0]["reason"]  # variables are named, their values are not logged
    if authorization:
        _assert_token_not_logged(lines, authorization.removeprefix("Bearer "))


@pytest.mark.parametrize(
    ("project_id", "functions_emulator", "service_identity"),
    [("demo-x", False, ""), ("demo-x", True, "developer_credentials"), (PROJECT_ID, True, "")],
    ids=["demo-project", "demo-project-in-functions-emulator-worker", "functions-emulator-without-cloud-run"],
)
def test_emulator_tokens_are_accepted_where_allowed(
    make_app: Callable[[str | None, str | None], firebase_admin.App],
    monkeypatch: pytest.MonkeyPatch,
    project_id: str,
    functions_emulator: bool,
    service_identity: str,
) -> None:
    # Nothing listens there: with check_revoked off, emulator-mode verification makes no network call.
    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")
    app = make_app(project_id, None)
    settings = _settings(
        project_id=project_id,
        auth_emulator_host="127.0.0.1:9",
        functions_emulator=functions_emulator,
        service_identity=service_identity,
    )
    authenticate = FirebaseAuthenticator(settings, app_factory=lambda: app)

    developer = authenticate(f"Bearer {_emulator_token(project_id, sub='emu-user')}")

    assert developer == Developer(uid="emu-user", email="dev@example.com")


@pytest.mark.parametrize(
    ("claim_overrides", "code"),
    [
        ({"aud": "other-project"}, "invalid_token"),
        ({"iss": _issuer("other-project")}, "invalid_token"),
        ({"sub": "a/b"}, "invalid_token"),
    ],
    ids=["wrong-audience", "wrong-issuer", "sub-with-slash"],
)
def test_emulator_mode_still_checks_audience_issuer_and_uid(
    make_app: Callable[[str | None, str | None], firebase_admin.App],
    monkeypatch: pytest.MonkeyPatch,
    claim_overrides: dict[str, Any],
    code: str,
) -> None:
    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")
    app = make_app("demo-x", None)
    authenticate = FirebaseAuthenticator(
        _settings(project_id="demo-x", auth_emulator_host="127.0.0.1:9"), app_factory=lambda: app
    )

    with pytest.raises(errors.AuthenticationError) as caught:
        authenticate(f"Bearer {_emulator_token('demo-x', **claim_overrides)}")

    assert caught.value.code == code


# --- who may be a developer ----------------------------------------------------------------------------------------


def _anonymous_claims() -> dict[str, Any]:
    """What Firebase (and the Auth emulator) put in an anonymous user's ID token: no e-mail at all."""
    return {
        "email": None,
        "email_verified": None,
        "provider_id": "anonymous",
        "firebase": {"identities": {}, "sign_in_provider": "anonymous"},
    }


def _without_nones(claims: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in claims.items() if value is not None}


def _signed_with(keys: Keys, **claim_overrides: Any) -> str:
    return jwt.encode(_without_nones(_claims(**claim_overrides)), keys.signing, algorithm="RS256", headers={"kid": KID})


@pytest.mark.parametrize(
    "claim_overrides",
    [
        _anonymous_claims(),
        {"firebase": {"identities": {}, "sign_in_provider": "anonymous"}},
        {"provider_id": "anonymous"},
        {"firebase": {"sign_in_provider": "anonymous"}, "email": "dev@example.com", "email_verified": True},
    ],
    ids=["as-firebase-writes-it", "sign-in-provider-only", "legacy-provider-id-only", "even-with-a-verified-email"],
)
@pytest.mark.parametrize("require_verified_email", [False, True], ids=["verified-not-required", "verified-required"])
def test_anonymous_sign_ins_are_403(
    verifying_app: firebase_admin.App,
    keys: Keys,
    claim_overrides: dict[str, Any],
    require_verified_email: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = _signed_with(keys, **claim_overrides)
    authenticate = FirebaseAuthenticator(
        _settings(require_verified_email=require_verified_email), app_factory=lambda: verifying_app
    )

    with pytest.raises(errors.PermissionDenied) as caught:
        authenticate(f"Bearer {token}")

    assert (caught.value.http_status, caught.value.error_type) == (403, "permission_error")
    assert caught.value.code == "anonymous_not_allowed"
    lines = _log_lines(capsys)
    assert [(line["event"], line["code"]) for line in lines] == [("auth_rejected", "anonymous_not_allowed")]
    _assert_token_not_logged(lines, token)


@pytest.mark.parametrize(
    "provider", ["password", "google.com", "phone", "custom", "github.com"], ids=lambda provider: provider
)
def test_other_sign_in_providers_may_develop(verifying_app: firebase_admin.App, keys: Keys, provider: str) -> None:
    token = _signed_with(keys, firebase={"identities": {}, "sign_in_provider": provider})
    authenticate = FirebaseAuthenticator(_settings(), app_factory=lambda: verifying_app)
    assert authenticate(f"Bearer {token}").uid == "dev-123"


@pytest.mark.parametrize(
    ("claim_overrides", "required", "allowed"),
    [
        ({"email_verified": True}, True, True),
        ({"email_verified": False}, True, False),
        ({"email_verified": None}, True, False),  # no claim at all
        ({"email_verified": "true"}, True, False),  # only a real boolean true counts
        ({"email_verified": 1}, True, False),
        ({"email": None, "email_verified": None}, True, False),  # e.g. a phone sign-in: no address to verify
        ({"email_verified": False}, False, True),
        ({"email_verified": None}, False, True),
        ({"email": None, "email_verified": None}, False, True),
    ],
    ids=[
        "verified-required",
        "unverified-required",
        "missing-claim-required",
        "string-true-required",
        "one-required",
        "no-email-required",
        "unverified-not-required",
        "missing-claim-not-required",
        "no-email-not-required",
    ],
)
def test_unverified_email_addresses_are_403_when_required(
    verifying_app: firebase_admin.App,
    keys: Keys,
    claim_overrides: dict[str, Any],
    required: bool,
    allowed: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = _signed_with(keys, firebase={"identities": {}, "sign_in_provider": "password"}, **claim_overrides)
    authenticate = FirebaseAuthenticator(_settings(require_verified_email=required), app_factory=lambda: verifying_app)

    if allowed:
        assert authenticate(f"Bearer {token}").uid == "dev-123"
        return
    with pytest.raises(errors.PermissionDenied) as caught:
        authenticate(f"Bearer {token}")
    assert (caught.value.http_status, caught.value.code) == (403, "email_not_verified")
    lines = _log_lines(capsys)
    assert [(line["event"], line["code"]) for line in lines] == [("auth_rejected", "email_not_verified")]
    _assert_token_not_logged(lines, token)


def test_who_may_develop_is_checked_only_after_the_signature(keys: Keys, verifying_app: firebase_admin.App) -> None:
    """A forged token claiming a verified, non-anonymous user is still a 401, never let through by these checks."""
    forged = _signed_with(keys, firebase={"sign_in_provider": "anonymous"}, sub="victim")
    header, _payload, signature = forged.split(".")
    authenticate = FirebaseAuthenticator(_settings(require_verified_email=True), app_factory=lambda: verifying_app)
    with pytest.raises(errors.AuthenticationError):
        authenticate(f"Bearer {header}.{_b64(_claims(sub='victim'))}.{signature}")


def test_anonymous_emulator_tokens_are_403_in_a_demo_project(
    make_app: Callable[[str | None, str | None], firebase_admin.App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/e2e/test_who_may_develop.py does over HTTP: the Auth emulator's own anonymous token shape."""
    monkeypatch.setenv(EMULATOR_ENV, "127.0.0.1:9")
    app = make_app("demo-x", None)
    authenticate = FirebaseAuthenticator(
        _settings(project_id="demo-x", auth_emulator_host="127.0.0.1:9"), app_factory=lambda: app
    )
    claims = _without_nones(_claims("demo-x", **_anonymous_claims()))

    with pytest.raises(errors.PermissionDenied) as caught:
        authenticate(f"Bearer {_unsigned({'alg': 'none', 'typ': 'JWT'}, claims)}")

    assert caught.value.code == "anonymous_not_allowed"


# --- the App is resolved lazily, once --------------------------------------------------------------------------------


def test_the_app_factory_is_called_once_and_only_when_a_token_arrives(
    verifying_app: firebase_admin.App, keys: Keys
) -> None:
    calls: list[int] = []

    def factory() -> firebase_admin.App:
        calls.append(1)
        return verifying_app

    authenticate = FirebaseAuthenticator(_settings(), app_factory=factory)
    with pytest.raises(errors.AuthenticationError):
        authenticate(None)
    assert calls == []

    for _ in range(3):
        authenticate(f"Bearer {_signed(keys.signing)}")
    assert calls == [1]


def test_by_default_the_default_app_is_created_with_the_settings_project(
    monkeypatch: pytest.MonkeyPatch, verifying_app: firebase_admin.App
) -> None:
    created: list[dict[str, Any]] = []

    real_get_app = firebase_admin.get_app

    def no_default_app(name: str = "[DEFAULT]") -> firebase_admin.App:
        if name == "[DEFAULT]":
            raise ValueError("The default Firebase app does not exist.")
        return real_get_app(name)  # firebase-admin looks the App up by name to validate it

    def initialize_app(credential: Any = None, options: dict[str, Any] | None = None) -> firebase_admin.App:
        created.append(dict(options or {}))
        return verifying_app

    monkeypatch.setattr(firebase_admin, "get_app", no_default_app)
    monkeypatch.setattr(firebase_admin, "initialize_app", initialize_app)

    authenticate = FirebaseAuthenticator(_settings(project_id=PROJECT_ID))
    with pytest.raises(errors.AuthenticationError):
        authenticate("Bearer abc.def.ghi")

    assert created == [{"projectId": PROJECT_ID}]


def test_by_default_an_existing_default_app_is_reused(monkeypatch: pytest.MonkeyPatch, verifying_app: Any) -> None:
    def initialize_app(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("must not create a second default app")

    real_get_app = firebase_admin.get_app
    monkeypatch.setattr(
        firebase_admin, "get_app", lambda name="[DEFAULT]": verifying_app if name == "[DEFAULT]" else real_get_app(name)
    )
    monkeypatch.setattr(firebase_admin, "initialize_app", initialize_app)

    with pytest.raises(errors.AuthenticationError) as caught:
        FirebaseAuthenticator(_settings())("Bearer abc.def.ghi")
    assert caught.value.code == "invalid_token"


# --- revocation, cached per uid -------------------------------------------------------------------------------------


class _Record:
    def __init__(self, disabled: bool = False, valid_after_ms: int = 0) -> None:
        self.disabled = disabled
        self.tokens_valid_after_timestamp = valid_after_ms


@pytest.fixture
def user_records(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """firebase_admin.auth.get_user answered from this dict (uid -> _Record), counting the calls."""
    records: dict[str, Any] = {"calls": 0}

    def get_user(uid: str, app: Any = None) -> _Record:
        records["calls"] += 1
        record: _Record = records[uid]
        return record

    monkeypatch.setattr(firebase_auth, "get_user", get_user)
    return records


def _revocation_checking(app: firebase_admin.App, ttl_s: float) -> FirebaseAuthenticator:
    return FirebaseAuthenticator(
        _settings(check_revoked_tokens=True, revocation_cache_ttl_s=ttl_s), app_factory=lambda: app
    )


def test_the_revocation_check_reads_the_user_once_per_cache_period(
    verifying_app: firebase_admin.App, keys: Keys, user_records: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    user_records["dev-123"] = _Record()
    authenticator = _revocation_checking(verifying_app, ttl_s=30)
    token = _signed(keys.signing)

    for _ in range(5):
        assert authenticator(f"Bearer {token}").uid == "dev-123"

    assert user_records["calls"] == 1
    # Revoked meanwhile: honoured once the cached record is older than the period.
    user_records["dev-123"] = _Record(valid_after_ms=int(time.time() * 1000))
    later = time.monotonic() + 31
    monkeypatch.setattr("gateway.auth.time.monotonic", lambda: later)
    with pytest.raises(errors.AuthenticationError) as raised:
        authenticator(f"Bearer {token}")
    assert raised.value.code == "token_revoked"
    assert user_records["calls"] == 2


def test_a_token_issued_after_the_revocation_is_accepted(
    verifying_app: firebase_admin.App, keys: Keys, user_records: dict[str, Any]
) -> None:
    revoked_at = int(time.time()) - 60
    user_records["dev-123"] = _Record(valid_after_ms=revoked_at * 1000)
    authenticator = _revocation_checking(verifying_app, ttl_s=30)

    assert authenticator(f"Bearer {_signed(keys.signing)}").uid == "dev-123"  # issued 10 s ago
    with pytest.raises(errors.AuthenticationError) as raised:
        authenticator(f"Bearer {_signed(keys.signing, iat=revoked_at - 1, auth_time=revoked_at - 1)}")
    assert raised.value.code == "token_revoked"


def test_a_disabled_user_is_refused_and_a_zero_period_asks_every_time(
    verifying_app: firebase_admin.App, keys: Keys, user_records: dict[str, Any]
) -> None:
    user_records["dev-123"] = _Record(disabled=True)
    authenticator = _revocation_checking(verifying_app, ttl_s=0)
    for _ in range(2):
        with pytest.raises(errors.AuthenticationError) as raised:
            authenticator(f"Bearer {_signed(keys.signing)}")
        assert raised.value.code == "user_disabled"
    assert user_records["calls"] == 2
