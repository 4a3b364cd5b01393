"""The Secret Manager emulator, driven through the real google-cloud-secret-manager REST client.

Over REST, google-api-core picks the exception class from the HTTP status alone: every 400 arrives as
``BadRequest`` (not ``InvalidArgument``/``FailedPrecondition``) and every 409 as ``Conflict`` (not
``AlreadyExists``). The tests therefore assert the class the client really raises and the Google status string
carried in the response body, as code handling these errors has to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from devservers.secret_manager_emulator import (
    SecretManagerEmulatorServer,
    crc32c,
    default_address,
    serve,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

PROJECT = "projects/demo-mpesa-gateway"
AUTOMATIC: dict[str, Any] = {"automatic": {}}

Client = secretmanager.SecretManagerServiceClient
State = secretmanager.SecretVersion.State


@pytest.fixture(scope="module")
def emulator() -> Iterator[SecretManagerEmulatorServer]:
    server, thread = serve("127.0.0.1", 0)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def client(emulator: SecretManagerEmulatorServer) -> Client:
    return Client(
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator.url),
        credentials=AnonymousCredentials(),
    )


@pytest.fixture(autouse=True)
def clean_state(emulator: SecretManagerEmulatorServer) -> None:
    request = urllib.request.Request(f"{emulator.url}/emulator/v1/state", method="DELETE")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def create_secret(client: Client, secret_id: str, parent: str = PROJECT) -> secretmanager.Secret:
    secret: dict[str, Any] = {} if "/locations/" in parent else {"replication": AUTOMATIC}
    return client.create_secret(request={"parent": parent, "secret_id": secret_id, "secret": secret})


def add_version(client: Client, secret_name: str, data: bytes, crc: int | None = None) -> secretmanager.SecretVersion:
    payload: dict[str, Any] = {"data": data}
    if crc is not None:
        payload["data_crc32c"] = crc
    return client.add_secret_version(request={"parent": secret_name, "payload": payload})


def google_status(error: exceptions.GoogleAPICallError) -> str:
    """The ``error.status`` string of Google's JSON error body, e.g. "FAILED_PRECONDITION"."""
    assert error.response is not None
    body = error.response.json()
    assert set(body["error"]) >= {"code", "message", "status"}
    assert body["error"]["code"] == error.code
    return str(body["error"]["status"])


def raw_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- admin routes and checksum ---------------------------------------------------------------------------------


def test_healthz_answers_200(emulator: SecretManagerEmulatorServer) -> None:
    assert raw_json(f"{emulator.url}/healthz") == (200, {"status": "ok"})


def test_reset_route_removes_all_secrets(emulator: SecretManagerEmulatorServer, client: Client) -> None:
    create_secret(client, "to-be-reset")
    request = urllib.request.Request(f"{emulator.url}/emulator/v1/state", method="DELETE")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert list(client.list_secrets(parent=PROJECT)) == []


def test_crc32c_is_castagnoli() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    sample = os.urandom(4096)
    assert crc32c(sample) == google_crc32c.value(sample)


# --- secrets ---------------------------------------------------------------------------------------------------


def test_create_get_and_delete_secret(client: Client) -> None:
    created = create_secret(client, "dev_abc-123")
    assert created.name == f"{PROJECT}/secrets/dev_abc-123"
    assert "automatic" in secretmanager.Replication.to_dict(created.replication)
    assert created.create_time.timestamp() > 0

    fetched = client.get_secret(name=created.name)
    assert fetched.name == created.name
    assert fetched.create_time == created.create_time

    client.delete_secret(name=created.name)
    with pytest.raises(exceptions.NotFound) as raised:
        client.get_secret(name=created.name)
    assert google_status(raised.value) == "NOT_FOUND"


def test_labels_are_kept(client: Client) -> None:
    created = client.create_secret(
        request={"parent": PROJECT, "secret_id": "labelled", "secret": {"replication": AUTOMATIC, "labels": {"a": "b"}}}
    )
    assert dict(client.get_secret(name=created.name).labels) == {"a": "b"}


def test_duplicate_create_is_already_exists(client: Client) -> None:
    create_secret(client, "twice")
    with pytest.raises(exceptions.Conflict) as raised:
        create_secret(client, "twice")
    assert raised.value.code == 409
    assert google_status(raised.value) == "ALREADY_EXISTS"


@pytest.mark.parametrize("secret_id", ["bad id", "bad.id", "bad/id", "", "x" * 256])
def test_bad_secret_id_is_invalid_argument(client: Client, secret_id: str) -> None:
    with pytest.raises(exceptions.BadRequest) as raised:
        create_secret(client, secret_id)
    assert google_status(raised.value) == "INVALID_ARGUMENT"


def test_longest_valid_secret_id_is_accepted(client: Client) -> None:
    assert create_secret(client, "x" * 255).name.endswith("x" * 255)


def test_create_without_replication_is_invalid_argument(client: Client) -> None:
    with pytest.raises(exceptions.BadRequest) as raised:
        client.create_secret(request={"parent": PROJECT, "secret_id": "no-replication", "secret": {}})
    assert google_status(raised.value) == "INVALID_ARGUMENT"


def test_unknown_secret_is_not_found(client: Client) -> None:
    missing = f"{PROJECT}/secrets/missing"
    calls = [
        lambda: client.get_secret(name=missing),
        lambda: client.delete_secret(name=missing),
        lambda: add_version(client, missing, b"x"),
        lambda: client.access_secret_version(name=f"{missing}/versions/latest"),
        lambda: client.access_secret_version(name=f"{missing}/versions/1"),
        lambda: list(client.list_secret_versions(parent=missing)),
    ]
    for call in calls:
        with pytest.raises(exceptions.NotFound) as raised:
            call()
        assert google_status(raised.value) == "NOT_FOUND"


def test_list_secrets_paginates(client: Client) -> None:
    names = [create_secret(client, f"paged-{i}").name for i in range(5)]
    create_secret(client, "other-project", parent="projects/another-project")

    pager = client.list_secrets(request={"parent": PROJECT, "page_size": 2})
    pages = list(pager.pages)
    assert [len(page.secrets) for page in pages] == [2, 2, 1]
    assert [page.total_size for page in pages] == [5, 5, 5]
    assert pages[-1].next_page_token == ""
    assert [secret.name for page in pages for secret in page.secrets] == names
    assert [secret.name for secret in client.list_secrets(parent=PROJECT)] == names


def test_bad_page_token_is_invalid_argument(client: Client) -> None:
    with pytest.raises(exceptions.BadRequest) as raised:
        list(client.list_secrets(request={"parent": PROJECT, "page_token": "not-a-token"}))
    assert google_status(raised.value) == "INVALID_ARGUMENT"


# --- versions --------------------------------------------------------------------------------------------------


def test_add_and_access_versions_latest_and_by_number(client: Client) -> None:
    secret = create_secret(client, "creds")
    first = add_version(client, secret.name, b'{"consumer_key": "one"}')
    second = add_version(client, secret.name, b'{"consumer_key": "two"}')
    assert first.name == f"{secret.name}/versions/1"
    assert second.name == f"{secret.name}/versions/2"
    assert second.state == State.ENABLED
    assert second.client_specified_payload_checksum is False

    latest = client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert latest.name == second.name  # "latest" comes back resolved to the version number
    assert latest.payload.data == b'{"consumer_key": "two"}'
    assert latest.payload.data_crc32c == google_crc32c.value(latest.payload.data)

    by_number = client.access_secret_version(name=first.name)
    assert by_number.payload.data == b'{"consumer_key": "one"}'
    assert by_number.payload.data_crc32c == google_crc32c.value(b'{"consumer_key": "one"}')


def test_add_version_with_right_crc_is_accepted(client: Client) -> None:
    secret = create_secret(client, "checked")
    data = os.urandom(300)
    version = add_version(client, secret.name, data, crc=google_crc32c.value(data))
    assert version.client_specified_payload_checksum is True
    assert client.access_secret_version(name=version.name).payload.data == data


def test_add_version_with_wrong_crc_is_invalid_argument(client: Client) -> None:
    secret = create_secret(client, "corrupted")
    with pytest.raises(exceptions.BadRequest) as raised:
        add_version(client, secret.name, b"payload", crc=google_crc32c.value(b"payload") ^ 1)
    assert google_status(raised.value) == "INVALID_ARGUMENT"
    assert list(client.list_secret_versions(parent=secret.name)) == []


def test_payload_size_limit_is_64_kib(client: Client) -> None:
    secret = create_secret(client, "big")
    add_version(client, secret.name, b"a" * 65536)
    with pytest.raises(exceptions.BadRequest) as raised:
        add_version(client, secret.name, b"a" * 65537)
    assert google_status(raised.value) == "INVALID_ARGUMENT"


def test_list_versions_newest_first_with_pagination(client: Client) -> None:
    secret = create_secret(client, "many")
    for i in range(3):
        add_version(client, secret.name, f"value-{i}".encode())
    client.disable_secret_version(name=f"{secret.name}/versions/2")

    listed = list(client.list_secret_versions(request={"parent": secret.name, "page_size": 2}))
    assert [v.name.rsplit("/", 1)[1] for v in listed] == ["3", "2", "1"]
    assert [v.state for v in listed] == [State.ENABLED, State.DISABLED, State.ENABLED]
    pages = list(client.list_secret_versions(request={"parent": secret.name, "page_size": 2}).pages)
    assert [len(page.versions) for page in pages] == [2, 1]


def test_get_version_by_number_and_latest(client: Client) -> None:
    secret = create_secret(client, "meta")
    add_version(client, secret.name, b"1")
    add_version(client, secret.name, b"2")
    assert client.get_secret_version(name=f"{secret.name}/versions/1").name == f"{secret.name}/versions/1"
    assert client.get_secret_version(name=f"{secret.name}/versions/latest").name == f"{secret.name}/versions/2"


def test_disable_blocks_access_and_enable_restores_it(client: Client) -> None:
    secret = create_secret(client, "toggled")
    first = add_version(client, secret.name, b"old")
    second = add_version(client, secret.name, b"new")

    disabled = client.disable_secret_version(name=first.name)
    assert disabled.state == State.DISABLED
    with pytest.raises(exceptions.BadRequest) as raised:
        client.access_secret_version(name=first.name)
    assert google_status(raised.value) == "FAILED_PRECONDITION"
    assert f"Secret Version [{first.name}] is in DISABLED state." in str(raised.value)
    # An older version being disabled does not affect "latest".
    assert client.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"new"

    assert client.enable_secret_version(name=first.name).state == State.ENABLED
    assert client.access_secret_version(name=first.name).payload.data == b"old"
    assert second.state == State.ENABLED


def test_latest_is_the_newest_version_even_when_disabled(client: Client) -> None:
    """As in the real API, "latest" never falls back to an older enabled version."""
    secret = create_secret(client, "latest-disabled")
    add_version(client, secret.name, b"old")
    newest = add_version(client, secret.name, b"new")
    client.disable_secret_version(name=newest.name)

    with pytest.raises(exceptions.BadRequest) as raised:
        client.access_secret_version(name=f"{secret.name}/versions/latest")
    assert google_status(raised.value) == "FAILED_PRECONDITION"
    assert f"Secret Version [{newest.name}] is in DISABLED state." in str(raised.value)
    assert client.access_secret_version(name=f"{secret.name}/versions/1").payload.data == b"old"


def test_destroy_clears_payload_and_is_final(client: Client) -> None:
    secret = create_secret(client, "destroyed")
    version = add_version(client, secret.name, b"gone soon")

    destroyed = client.destroy_secret_version(name=version.name)
    assert destroyed.state == State.DESTROYED
    assert destroyed.destroy_time.timestamp() > 0
    assert client.get_secret_version(name=version.name).state == State.DESTROYED

    for access in (version.name, f"{secret.name}/versions/latest"):
        with pytest.raises(exceptions.BadRequest) as raised:
            client.access_secret_version(name=access)
        assert google_status(raised.value) == "FAILED_PRECONDITION"
        assert "is in DESTROYED state." in str(raised.value)
    for change in (client.enable_secret_version, client.disable_secret_version, client.destroy_secret_version):
        with pytest.raises(exceptions.BadRequest) as raised:
            change(name=version.name)
        assert google_status(raised.value) == "FAILED_PRECONDITION"
    assert version.name not in _stored_payload_names(client, secret.name)


def _stored_payload_names(client: Client, secret_name: str) -> list[str]:
    names = []
    for version in client.list_secret_versions(parent=secret_name):
        try:
            client.access_secret_version(name=version.name)
        except exceptions.BadRequest:
            continue
        names.append(version.name)
    return names


def test_unknown_version_is_not_found(client: Client) -> None:
    secret = create_secret(client, "few-versions")
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/latest")  # no versions yet
    add_version(client, secret.name, b"one")
    for call in (client.access_secret_version, client.get_secret_version, client.disable_secret_version):
        with pytest.raises(exceptions.NotFound) as raised:
            call(name=f"{secret.name}/versions/9")
        assert google_status(raised.value) == "NOT_FOUND"


@pytest.mark.parametrize("version_id", ["abc", "0", "-1", "LATEST"])
def test_bad_version_id_is_invalid_argument(client: Client, version_id: str) -> None:
    secret = create_secret(client, "version-ids")
    add_version(client, secret.name, b"one")
    with pytest.raises(exceptions.BadRequest) as raised:
        client.access_secret_version(name=f"{secret.name}/versions/{version_id}")
    assert google_status(raised.value) == "INVALID_ARGUMENT"


def test_deleted_secret_takes_its_versions_and_numbering_restarts(client: Client) -> None:
    secret = create_secret(client, "recreated")
    add_version(client, secret.name, b"one")
    add_version(client, secret.name, b"two")
    client.delete_secret(name=secret.name)
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/1")

    create_secret(client, "recreated")
    assert add_version(client, secret.name, b"fresh").name == f"{secret.name}/versions/1"


def test_regional_secret_paths(client: Client) -> None:
    parent = f"{PROJECT}/locations/us-central1"
    secret = create_secret(client, "regional", parent=parent)
    assert secret.name == f"{parent}/secrets/regional"
    add_version(client, secret.name, b"regional value")
    assert client.access_secret_version(name=f"{secret.name}/versions/latest").payload.data == b"regional value"
    assert [s.name for s in client.list_secrets(parent=parent)] == [secret.name]
    assert list(client.list_secrets(parent=PROJECT)) == []


def test_concurrent_adds_get_distinct_version_numbers(client: Client) -> None:
    secret = create_secret(client, "concurrent")
    names: list[str] = []
    names_lock = threading.Lock()

    def add(index: int) -> None:
        version = add_version(client, secret.name, f"value-{index}".encode())
        with names_lock:
            names.append(version.name)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(int(name.rsplit("/", 1)[1]) for name in names) == list(range(1, 21))


# --- raw REST details ------------------------------------------------------------------------------------------


def test_state_is_a_name_unless_numeric_enums_are_requested(
    emulator: SecretManagerEmulatorServer, client: Client
) -> None:
    secret = create_secret(client, "enum-encoding")
    add_version(client, secret.name, b"v")
    url = f"{emulator.url}/v1/{secret.name}/versions/1"
    assert raw_json(url)[1]["state"] == "ENABLED"
    assert raw_json(url + "?%24alt=json%3Benum-encoding%3Dint")[1]["state"] == 1


def test_access_returns_crc_as_int64_string(emulator: SecretManagerEmulatorServer, client: Client) -> None:
    secret = create_secret(client, "wire")
    add_version(client, secret.name, b"wire value")
    status, body = raw_json(f"{emulator.url}/v1/{secret.name}/versions/latest:access")
    assert status == 200
    assert body["payload"]["dataCrc32c"] == str(google_crc32c.value(b"wire value"))


def test_unsupported_method_is_unimplemented(emulator: SecretManagerEmulatorServer) -> None:
    status, body = raw_json(f"{emulator.url}/v1/{PROJECT}/secrets/x:getIamPolicy")
    assert status == 501
    assert body["error"]["status"] == "UNIMPLEMENTED"


def test_request_log_never_contains_payloads(capsys: pytest.CaptureFixture[str]) -> None:
    server, thread = serve("127.0.0.1", 0, log_requests=True)
    try:
        logged_client = Client(
            transport="rest",
            client_options=ClientOptions(api_endpoint=server.url),
            credentials=AnonymousCredentials(),
        )
        secret = create_secret(logged_client, "logged")
        payload = b"super-secret-consumer-key"
        add_version(logged_client, secret.name, payload)
        logged_client.access_secret_version(name=f"{secret.name}/versions/latest")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    logged = capsys.readouterr().err
    assert ":addVersion" in logged
    assert payload.decode() not in logged
    assert "c3VwZXItc2VjcmV0" not in logged  # base64 of the payload's start


# --- CLI -------------------------------------------------------------------------------------------------------


def test_default_address_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_MANAGER_EMULATOR_HOST", raising=False)
    assert default_address() == ("127.0.0.1", 8086)
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", "0.0.0.0:9186")
    assert default_address() == ("0.0.0.0", 9186)
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", "no-port")
    with pytest.raises(SystemExit):
        default_address()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_address_and_exits_cleanly_on_signal(stop_signal: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devservers.secret_manager_emulator", "--host", "127.0.0.1", "--port", "0", "--quiet"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        prefix = "secret manager emulator listening on "
        assert line.startswith(prefix + "http://127.0.0.1:")
        assert raw_json(f"{line[len(prefix):]}/healthz")[0] == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- what credential rotation relies on (gateway.secrets, gateway.domain.daraja_setup) ---------------------------


def test_version_numbers_keep_growing_after_every_version_is_destroyed(client: Client) -> None:
    """A DELETE destroys versions but keeps the secret, so the next PUT's version still orders after every earlier
    one; only deleting the secret restarts the numbering (test above)."""
    secret = create_secret(client, "rotated")
    for data in (b"one", b"two"):
        version = add_version(client, secret.name, data)
        client.destroy_secret_version(name=version.name)
    assert add_version(client, secret.name, b"three").name == f"{secret.name}/versions/3"


def test_versions_are_read_by_number_whatever_the_others_states(client: Client) -> None:
    secret = create_secret(client, "by-number")
    older, current, newer = (add_version(client, secret.name, data) for data in (b"old", b"current", b"in flight"))
    client.destroy_secret_version(name=older.name)
    client.destroy_secret_version(name=newer.name)  # a PUT that lost destroyed its own, newer version

    assert client.access_secret_version(name=current.name).payload.data == b"current"
    for gone in (older.name, newer.name, f"{secret.name}/versions/latest"):
        with pytest.raises(exceptions.BadRequest) as raised:
            client.access_secret_version(name=gone)
        assert google_status(raised.value) == "FAILED_PRECONDITION"
    with pytest.raises(exceptions.NotFound):
        client.access_secret_version(name=f"{secret.name}/versions/4")


def test_concurrent_adds_get_distinct_increasing_numbers(client: Client) -> None:
    secret = create_secret(client, "raced")
    names: list[str] = []
    lock = threading.Lock()

    def add(index: int) -> None:
        version = add_version(client, secret.name, f"value-{index}".encode())
        with lock:
            names.append(version.name)

    threads = [threading.Thread(target=add, args=(index,)) for index in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(int(name.rsplit("/", 1)[1]) for name in names) == list(range(1, 11))
