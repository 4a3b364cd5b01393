"""In-memory Google Secret Manager emulator that the real ``google-cloud-secret-manager`` client can use over REST.

Google ships no Secret Manager emulator, so local runs and tests point the official client at this server:

    SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint="http://127.0.0.1:8086"),
        credentials=AnonymousCredentials(),
    )

It serves the v1 REST paths that client sends (secrets and secret versions, with or without ``locations/{l}``),
answers with the real JSON field names, status codes and Google's error shape
``{"error": {"code", "message", "status"}}``, and keeps all state in memory behind one lock.
Standard library only. Payloads are never logged.

Run it with ``python -m devservers.secret_manager_emulator [--host H] [--port P]``; in tests use ``serve(host, 0)``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8086
HOST_ENV_VAR = "SECRET_MANAGER_EMULATOR_HOST"

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAGE_SIZE = 25_000
MAX_REQUEST_BYTES = 1024 * 1024
SECRET_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,255}")
VERSION_ID_PATTERN = re.compile(r"latest|[1-9][0-9]{0,18}")

ENABLED = "ENABLED"
DISABLED = "DISABLED"
DESTROYED = "DESTROYED"
# google.cloud.secretmanager.v1.SecretVersion.State numbers, sent when the client asks for enum-encoding=int.
VERSION_STATE_NUMBERS = {ENABLED: 1, DISABLED: 2, DESTROYED: 3}

# Secret fields the server owns; whatever the caller sends for them is ignored.
SECRET_OUTPUT_ONLY_FIELDS = ("name", "createTime", "etag")


# --------------------------------------------------------------------------------------------------------------
# CRC32C (Castagnoli, reflected polynomial 0x82F63B78) — what Secret Manager uses, not zlib's CRC-32.
# --------------------------------------------------------------------------------------------------------------


def _build_crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _build_crc32c_table()


def crc32c(data: bytes) -> int:
    """Return the CRC32C checksum of ``data`` as an unsigned 32-bit integer."""
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in Google's JSON error shape."""

    def __init__(self, http_status: HTTPStatus, status: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status = status
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": int(self.http_status), "message": self.message, "status": self.status}}


def invalid_argument(message: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, "FAILED_PRECONDITION", message)


def not_found(message: str) -> ApiError:
    return ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", message)


def already_exists(message: str) -> ApiError:
    return ApiError(HTTPStatus.CONFLICT, "ALREADY_EXISTS", message)


def unimplemented(message: str) -> ApiError:
    return ApiError(HTTPStatus.NOT_IMPLEMENTED, "UNIMPLEMENTED", message)


# --------------------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SecretVersionRecord:
    name: str
    create_time: str
    state: str
    payload: bytes | None
    payload_crc32c: int | None
    client_specified_checksum: bool
    etag: str
    destroy_time: str | None = None


@dataclasses.dataclass
class SecretRecord:
    name: str
    fields: dict[str, Any]
    create_time: str
    etag: str
    versions: dict[int, SecretVersionRecord] = dataclasses.field(default_factory=dict)
    last_version_number: int = 0


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str
    total_size: int


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_etag() -> str:
    return f'"{time.time_ns():x}"'


def _copy_version(version: SecretVersionRecord) -> SecretVersionRecord:
    return dataclasses.replace(version)


def _paginate(items: list[Any], page_size: int, page_token: str) -> Page:
    if page_size < 0:
        raise invalid_argument("page_size must not be negative.")
    size = MAX_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
    start = _decode_page_token(page_token) if page_token else 0
    end = start + size
    next_token = _encode_page_token(end) if end < len(items) else ""
    return Page(items=items[start:end], next_page_token=next_token, total_size=len(items))


def _encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_page_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, number = text.partition(":")
        offset = int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_argument("Invalid page_token.") from None
    if prefix != "offset" or offset < 0:
        raise invalid_argument("Invalid page_token.")
    return offset


class SecretStore:
    """Secrets and their versions, in memory; every method takes the one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, SecretRecord] = {}

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()

    # Secrets ------------------------------------------------------------------------------------------------

    def create_secret(self, parent: str, secret_id: str, fields: dict[str, Any]) -> SecretRecord:
        if not SECRET_ID_PATTERN.fullmatch(secret_id):
            raise invalid_argument(
                f"The provided Secret ID [{secret_id}] does not match the expected format [[a-zA-Z_0-9-]{{1,255}}]."
            )
        regional = "/locations/" in parent
        replication = fields.get("replication")
        if not regional and not (isinstance(replication, dict) and replication):
            raise invalid_argument("Secret.replication must be set: use {'automatic': {}} or 'userManaged'.")
        if regional and replication:
            raise invalid_argument("Secret.replication must not be set on a regional secret.")
        name = f"{parent}/secrets/{secret_id}"
        kept_fields = {key: value for key, value in fields.items() if key not in SECRET_OUTPUT_ONLY_FIELDS}
        with self._lock:
            if name in self._secrets:
                raise already_exists(f"Secret [{name}] already exists.")
            record = SecretRecord(name=name, fields=kept_fields, create_time=_now_rfc3339(), etag=_new_etag())
            self._secrets[name] = record
            return dataclasses.replace(record, versions={})

    def get_secret(self, name: str) -> SecretRecord:
        with self._lock:
            return dataclasses.replace(self._require_secret(name), versions={})

    def list_secrets(self, parent: str, page_size: int, page_token: str) -> Page:
        prefix = f"{parent}/secrets/"
        with self._lock:
            matching = [
                dataclasses.replace(record, versions={})
                for name, record in self._secrets.items()
                if name.startswith(prefix) and "/" not in name[len(prefix) :]
            ]
        return _paginate(matching, page_size, page_token)

    def delete_secret(self, name: str) -> None:
        with self._lock:
            self._require_secret(name)
            del self._secrets[name]

    # Versions -----------------------------------------------------------------------------------------------

    def add_version(self, secret_name: str, data: bytes, claimed_crc32c: int | None) -> SecretVersionRecord:
        if not data:
            raise invalid_argument("Secret Payload cannot be empty.")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise invalid_argument(f"Secret Payload cannot be larger than {MAX_PAYLOAD_BYTES} bytes.")
        actual_crc32c = crc32c(data)
        if claimed_crc32c is not None and claimed_crc32c != actual_crc32c:
            raise invalid_argument("Checksum mismatch: payload.data_crc32c does not match the CRC32C of payload.data.")
        with self._lock:
            secret = self._require_secret(secret_name)
            secret.last_version_number += 1
            version = SecretVersionRecord(
                name=f"{secret_name}/versions/{secret.last_version_number}",
                create_time=_now_rfc3339(),
                state=ENABLED,
                payload=data,
                payload_crc32c=actual_crc32c,
                client_specified_checksum=claimed_crc32c is not None,
                etag=_new_etag(),
            )
            secret.versions[secret.last_version_number] = version
            return _copy_version(version)

    def get_version(self, name: str) -> SecretVersionRecord:
        with self._lock:
            return _copy_version(self._require_version(name))

    def list_versions(self, secret_name: str, page_size: int, page_token: str) -> Page:
        with self._lock:
            secret = self._require_secret(secret_name)
            newest_first = [_copy_version(secret.versions[n]) for n in sorted(secret.versions, reverse=True)]
        return _paginate(newest_first, page_size, page_token)

    def access_version(self, name: str) -> SecretVersionRecord:
        with self._lock:
            version = self._require_version(name)
            if version.state != ENABLED:
                raise failed_precondition(f"Secret Version [{version.name}] is in {version.state} state.")
            return _copy_version(version)

    def change_version_state(self, name: str, target_state: str) -> SecretVersionRecord:
        with self._lock:
            version = self._require_version(name)
            if version.state == DESTROYED:
                raise failed_precondition(f"Secret Version [{version.name}] is in DESTROYED state.")
            if version.state != target_state:
                version.state = target_state
                version.etag = _new_etag()
            if target_state == DESTROYED:
                version.payload = None
                version.payload_crc32c = None
                version.destroy_time = _now_rfc3339()
            return _copy_version(version)

    # Lookups (caller holds the lock) ------------------------------------------------------------------------

    def _require_secret(self, name: str) -> SecretRecord:
        secret = self._secrets.get(name)
        if secret is None:
            raise not_found(f"Secret [{name}] not found.")
        return secret

    def _require_version(self, name: str) -> SecretVersionRecord:
        secret_name, _, version_id = name.rpartition("/versions/")
        if not VERSION_ID_PATTERN.fullmatch(version_id):
            raise invalid_argument(
                f"The provided Secret Version ID [{version_id}] does not match the expected format "
                "[a positive integer or 'latest']."
            )
        secret = self._secrets.get(secret_name)
        if version_id == "latest":
            # As the real API does: "latest" is the most recently created version, whatever its state.
            if secret is None or not secret.versions:
                raise not_found(f"Secret [{secret_name}] not found or has no versions.")
            return secret.versions[max(secret.versions)]
        if secret is None:
            raise not_found(f"Secret [{secret_name}] not found or has no versions.")
        version = secret.versions.get(int(version_id))
        if version is None:
            raise not_found(f"Secret Version [{name}] not found.")
        return version


# --------------------------------------------------------------------------------------------------------------
# JSON rendering (proto3 JSON mapping: camelCase, int64 as strings, bytes as base64)
# --------------------------------------------------------------------------------------------------------------


def secret_to_json(secret: SecretRecord) -> dict[str, Any]:
    return {**secret.fields, "name": secret.name, "createTime": secret.create_time, "etag": secret.etag}


def version_to_json(version: SecretVersionRecord, numeric_enums: bool) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "name": version.name,
        "createTime": version.create_time,
        "state": VERSION_STATE_NUMBERS[version.state] if numeric_enums else version.state,
        "etag": version.etag,
        "clientSpecifiedPayloadChecksum": version.client_specified_checksum,
    }
    if version.destroy_time is not None:
        rendered["destroyTime"] = version.destroy_time
    return rendered


def access_to_json(version: SecretVersionRecord) -> dict[str, Any]:
    assert version.payload is not None and version.payload_crc32c is not None
    return {
        "name": version.name,
        "payload": {
            "data": base64.b64encode(version.payload).decode("ascii"),
            "dataCrc32c": str(version.payload_crc32c),
        },
    }


def decode_payload(body: dict[str, Any]) -> tuple[bytes, int | None]:
    """Read ``payload.data`` (base64, standard or URL-safe) and the optional ``payload.dataCrc32c``."""
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise invalid_argument("AddSecretVersionRequest.payload must be set.")
    encoded = payload.get("data", "")
    if not isinstance(encoded, str):
        raise invalid_argument("payload.data must be a base64 string.")
    normalized = encoded.replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    try:
        data = base64.b64decode(normalized, validate=True)
    except binascii.Error:
        raise invalid_argument("payload.data is not valid base64.") from None
    claimed = payload.get("dataCrc32c")
    if claimed is None:
        return data, None
    try:
        claimed_crc32c = int(claimed)
    except (TypeError, ValueError):
        raise invalid_argument("payload.data_crc32c must be an int64.") from None
    return data, claimed_crc32c


# --------------------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------------------

_SEGMENT = r"[^/:]+"
_PARENT = rf"projects/{_SEGMENT}(?:/locations/{_SEGMENT})?"
_SECRET = rf"{_PARENT}/secrets/{_SEGMENT}"
_VERSION = rf"{_SECRET}/versions/{_SEGMENT}"


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]

    @property
    def numeric_enums(self) -> bool:
        return "enum-encoding=int" in self.query.get("$alt", "")

    def int_param(self, key: str) -> int:
        raw = self.query.get(key, "0") or "0"
        try:
            return int(raw)
        except ValueError:
            raise invalid_argument(f"{key} must be an integer.") from None


Handler = Callable[[SecretStore, Request, str], tuple[HTTPStatus, dict[str, Any]]]


def _create_secret(store: SecretStore, request: Request, parent: str) -> tuple[HTTPStatus, dict[str, Any]]:
    secret = store.create_secret(parent, request.query.get("secretId", ""), request.body)
    return HTTPStatus.OK, secret_to_json(secret)


def _list_secrets(store: SecretStore, request: Request, parent: str) -> tuple[HTTPStatus, dict[str, Any]]:
    _reject_filter(request)
    page = store.list_secrets(parent, request.int_param("pageSize"), request.query.get("pageToken", ""))
    answer: dict[str, Any] = {"secrets": [secret_to_json(s) for s in page.items], "totalSize": page.total_size}
    if page.next_page_token:
        answer["nextPageToken"] = page.next_page_token
    return HTTPStatus.OK, answer


def _get_secret(store: SecretStore, request: Request, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return HTTPStatus.OK, secret_to_json(store.get_secret(name))


def _delete_secret(store: SecretStore, request: Request, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    store.delete_secret(name)
    return HTTPStatus.OK, {}


def _add_version(store: SecretStore, request: Request, secret_name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    data, claimed_crc32c = decode_payload(request.body)
    version = store.add_version(secret_name, data, claimed_crc32c)
    return HTTPStatus.OK, version_to_json(version, request.numeric_enums)


def _list_versions(store: SecretStore, request: Request, secret_name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    _reject_filter(request)
    page = store.list_versions(secret_name, request.int_param("pageSize"), request.query.get("pageToken", ""))
    answer: dict[str, Any] = {
        "versions": [version_to_json(v, request.numeric_enums) for v in page.items],
        "totalSize": page.total_size,
    }
    if page.next_page_token:
        answer["nextPageToken"] = page.next_page_token
    return HTTPStatus.OK, answer


def _get_version(store: SecretStore, request: Request, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return HTTPStatus.OK, version_to_json(store.get_version(name), request.numeric_enums)


def _access_version(store: SecretStore, request: Request, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
    return HTTPStatus.OK, access_to_json(store.access_version(name))


def _state_changer(target_state: str) -> Handler:
    def change_state(store: SecretStore, request: Request, name: str) -> tuple[HTTPStatus, dict[str, Any]]:
        return HTTPStatus.OK, version_to_json(store.change_version_state(name, target_state), request.numeric_enums)

    return change_state


def _reject_filter(request: Request) -> None:
    if request.query.get("filter"):
        raise invalid_argument("The Secret Manager emulator does not support the filter parameter.")


ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("POST", re.compile(rf"/v1/({_PARENT})/secrets"), _create_secret),
    ("GET", re.compile(rf"/v1/({_PARENT})/secrets"), _list_secrets),
    ("GET", re.compile(rf"/v1/({_SECRET})"), _get_secret),
    ("DELETE", re.compile(rf"/v1/({_SECRET})"), _delete_secret),
    ("POST", re.compile(rf"/v1/({_SECRET}):addVersion"), _add_version),
    ("GET", re.compile(rf"/v1/({_SECRET})/versions"), _list_versions),
    ("GET", re.compile(rf"/v1/({_VERSION})"), _get_version),
    ("GET", re.compile(rf"/v1/({_VERSION}):access"), _access_version),
    ("POST", re.compile(rf"/v1/({_VERSION}):disable"), _state_changer(DISABLED)),
    ("POST", re.compile(rf"/v1/({_VERSION}):enable"), _state_changer(ENABLED)),
    ("POST", re.compile(rf"/v1/({_VERSION}):destroy"), _state_changer(DESTROYED)),
]


class SecretManagerEmulatorServer(ThreadingHTTPServer):
    """HTTP server owning one SecretStore; ``url`` is the base URL to give the client as ``api_endpoint``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, log_requests: bool = False) -> None:
        self.store = SecretStore()
        self.log_requests = log_requests
        super().__init__((host, port), SecretManagerRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


class SecretManagerRequestHandler(BaseHTTPRequestHandler):
    server: SecretManagerEmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "SecretManagerEmulator/1"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        try:
            raw_body = self._read_body()
            status, answer = self._route(method, raw_body)
        except ApiError as error:
            status, answer = error.http_status, error.to_json()
        except Exception as error:  # noqa: BLE001 - a dev server answers 500 instead of dropping the connection
            self.log_error("internal error: %s", type(error).__name__)
            status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, ApiError(
                HTTPStatus.INTERNAL_SERVER_ERROR, "INTERNAL", "Internal error in the Secret Manager emulator."
            ).to_json()
        self._send_json(status, answer)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "INVALID_ARGUMENT", "Chunked request bodies are not supported.")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise invalid_argument("Invalid Content-Length.") from None
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "INVALID_ARGUMENT", "Request body too large.")
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, method: str, raw_body: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if path == "/healthz" and method == "GET":
            return HTTPStatus.OK, {"status": "ok"}
        if path == "/emulator/v1/state" and method == "DELETE":
            self.server.store.reset()
            return HTTPStatus.OK, {}
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        for route_method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                request = Request(method=method, path=path, query=query, body=_parse_json_object(raw_body))
                return handler(self.server.store, request, match.group(1))
        raise unimplemented(f"The Secret Manager emulator does not implement {method} {path}.")

    def _send_json(self, status: HTTPStatus, answer: dict[str, Any]) -> None:
        encoded = json.dumps(answer).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(encoded)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(encoded)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Method, path and status only: bodies (which carry payloads) are never logged.
        if self.server.log_requests:
            path = urlsplit(self.path).path
            sys.stderr.write(f"secret-manager-emulator {self.command} {path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            sys.stderr.write("secret-manager-emulator " + (format % args) + "\n")


def _parse_json_object(raw_body: bytes) -> dict[str, Any]:
    if not raw_body.strip():
        return {}
    try:
        parsed = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise invalid_argument("Request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise invalid_argument("Request body must be a JSON object.")
    return parsed


def serve(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_requests: bool = False
) -> tuple[SecretManagerEmulatorServer, threading.Thread]:
    """Start the emulator on a background thread; port 0 picks a free port (read it from ``server.port``).

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    server = SecretManagerEmulatorServer(host, port, log_requests=log_requests)
    thread = threading.Thread(target=server.serve_forever, name="secret-manager-emulator", daemon=True)
    thread.start()
    return server, thread


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def default_address() -> tuple[str, int]:
    """The bind address from SECRET_MANAGER_EMULATOR_HOST ("host:port"), else 127.0.0.1:8086."""
    configured = os.environ.get(HOST_ENV_VAR, "").strip()
    if not configured:
        return DEFAULT_HOST, DEFAULT_PORT
    host, _, port = configured.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"{HOST_ENV_VAR} must look like 127.0.0.1:8086, got {configured!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    default_host, default_port = default_address()
    parser = argparse.ArgumentParser(description="In-memory Google Secret Manager emulator (REST).")
    parser.add_argument("--host", default=default_host, help=f"bind address (default {default_host})")
    parser.add_argument("--port", type=int, default=default_port, help=f"port, 0 for any (default {default_port})")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)

    server, thread = serve(args.host, args.port, log_requests=not args.quiet)
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"secret manager emulator listening on {server.url}", flush=True)
    try:
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
