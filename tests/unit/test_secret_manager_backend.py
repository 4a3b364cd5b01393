"""SecretManagerBackend with the real google-cloud-secret-manager client against the Secret Manager emulator, which
this module starts in-process on a free port (it needs nothing else of the local stack)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import devservers.secret_manager_emulator as emulator_module
from devservers.secret_manager_emulator import SecretManagerEmulatorServer, serve
from gateway import errors
from gateway.secrets import CredentialStore, DarajaSecret, SecretManagerBackend
from gateway.settings import Settings

PROJECT_ID = "demo-test"


@pytest.fixture(scope="module")
def emulator() -> Iterator[SecretManagerEmulatorServer]:
    server, thread = serve("127.0.0.1", 0)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def backend(emulator: SecretManagerEmulatorServer) -> SecretManagerBackend:
    emulator.store.reset()
    return SecretManagerBackend(
        Settings(project_id=PROJECT_ID, secret_manager_emulator_host=f"127.0.0.1:{emulator.port}")
    )


def test_round_trip(backend: SecretManagerBackend, emulator: SecretManagerEmulatorServer) -> None:
    backend.add_version("daraja-credentials-abc", b'{"hello": "world"}')
    assert backend.access_latest("daraja-credentials-abc") == b'{"hello": "world"}'
    secret = emulator.store.get_secret(f"projects/{PROJECT_ID}/secrets/daraja-credentials-abc")
    assert secret.fields["labels"] == {"app": "mpesa-gateway"}
    assert secret.fields["replication"] == {"automatic": {}}


def test_the_latest_version_wins(backend: SecretManagerBackend) -> None:
    backend.add_version("s1", b"first")
    backend.add_version("s1", b"second")
    assert backend.access_latest("s1") == b"second"


def test_destroy_versions_destroys_every_version_and_keeps_the_secret(
    backend: SecretManagerBackend, emulator: SecretManagerEmulatorServer
) -> None:
    backend.add_version("s1", b"first")
    backend.add_version("s1", b"second")
    assert backend.destroy_versions("s1") is True
    assert backend.access_latest("s1") is None
    assert backend.access_version("s1", "1") is None and backend.access_version("s1", "2") is None
    assert backend.destroy_versions("s1") is False
    # The secret stays, so its version numbers go on growing: a re-created secret would count from 1 again, and
    # the registry's ordering of set-ups by version would refuse every new PUT.
    assert [s.name for s in emulator.store.list_secrets(f"projects/{PROJECT_ID}", 100, "").items] == [
        f"projects/{PROJECT_ID}/secrets/s1"
    ]
    assert backend.add_version("s1", b"third") == "3"
    assert backend.latest_version("s1") == "3"


def test_a_missing_secret_is_none(backend: SecretManagerBackend) -> None:
    assert backend.access_latest("never-written") is None
    assert backend.access_version("never-written", "1") is None
    assert backend.latest_version("never-written") is None
    assert backend.destroy_versions("never-written") is False
    backend.destroy_version("never-written", "1")  # nothing to do, no error


def test_versions_are_read_by_number(backend: SecretManagerBackend) -> None:
    assert [backend.add_version("s1", b"v%d" % n) for n in (1, 2)] == ["1", "2"]
    assert backend.access_version("s1", "1") == b"v1"
    assert backend.access_version("s1", "2") == b"v2"
    assert backend.access_version("s1", "3") is None
    for bad in ("latest", "0", "-1", "1/../2", "", "x" * 30):
        assert backend.access_version("s1", bad) is None, "only a version number ever reaches a resource name"


def test_a_disabled_latest_version_is_not_configured(
    backend: SecretManagerBackend, emulator: SecretManagerEmulatorServer
) -> None:
    backend.add_version("s1", b"first")
    emulator.store.change_version_state(f"projects/{PROJECT_ID}/secrets/s1/versions/1", "DISABLED")
    assert backend.access_latest("s1") is None


def test_a_corrupted_payload_is_refused(
    backend: SecretManagerBackend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend.add_version("s1", b"payload-that-must-not-be-logged")
    original = emulator_module.access_to_json

    def corrupted(version: object) -> dict[str, object]:
        answer = original(version)  # type: ignore[arg-type]
        answer["payload"]["dataCrc32c"] = "12345"
        return answer

    monkeypatch.setattr(emulator_module, "access_to_json", corrupted)
    with pytest.raises(errors.ServiceUnavailable) as raised:
        backend.access_latest("s1")
    assert raised.value.code == "secret_store_unavailable"
    logged = capsys.readouterr().out
    assert "crc32c_mismatch" in logged
    assert "payload-that-must-not-be-logged" not in logged


def test_an_unreachable_store_is_service_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    backend = SecretManagerBackend(
        Settings(project_id=PROJECT_ID, secret_manager_emulator_host=f"127.0.0.1:{free_port}")
    )
    with pytest.raises(errors.ServiceUnavailable):
        backend.access_latest("s1")
    with pytest.raises(errors.ServiceUnavailable):
        backend.add_version("s1", b"x")
    assert "secret_access_failed" in capsys.readouterr().out


def test_the_client_is_created_once_and_lazily(emulator: SecretManagerEmulatorServer) -> None:
    backend = SecretManagerBackend(
        Settings(project_id=PROJECT_ID, secret_manager_emulator_host=f"127.0.0.1:{emulator.port}")
    )
    assert backend._client is None
    backend.access_latest("s1")
    client = backend._client
    backend.access_latest("s2")
    assert client is not None and backend._client is client


def test_credential_store_over_the_emulator(backend: SecretManagerBackend) -> None:
    store = CredentialStore(Settings(project_id=PROJECT_ID), backend)
    with pytest.raises(errors.CredentialsNotConfigured):
        store.get("uid/with/slashes")
    secret = DarajaSecret("key", "secret", "passkey")
    store.put("uid/with/slashes", secret)
    fresh = CredentialStore(Settings(project_id=PROJECT_ID), backend)  # another instance: nothing cached
    assert fresh.get("uid/with/slashes") == secret
    assert fresh.delete("uid/with/slashes") is True
    with pytest.raises(errors.CredentialsNotConfigured):
        fresh.get("uid/with/slashes")


def test_missing_credentials_for_the_real_service_are_service_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No emulator host: the real client looks up Application Default Credentials, which point nowhere here.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    backend = SecretManagerBackend(Settings(project_id=PROJECT_ID))
    with pytest.raises(errors.ServiceUnavailable):
        backend.access_latest("s1")
    assert '"exception": "DefaultCredentialsError"' in capsys.readouterr().out


def test_a_new_version_keeps_the_others_until_told_which_to_destroy(
    backend: SecretManagerBackend, emulator: SecretManagerEmulatorServer
) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    secret_id = "daraja-credentials-rotate"
    for version in (1, 2, 3, 4):
        backend.add_version(secret_id, b'{"v": %d}' % version)
    client = secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{emulator.port}"),
        credentials=AnonymousCredentials(),
    )

    def states() -> list[tuple[str, str]]:
        versions = list(client.list_secret_versions(parent=f"projects/{PROJECT_ID}/secrets/{secret_id}"))
        return sorted((v.name.rsplit("/", 1)[1], v.state.name) for v in versions)

    # Adding never destroys: a concurrent PUT's version may be the one that lands.
    assert [state for _, state in states()] == ["ENABLED"] * 4
    backend.destroy_version(secret_id, "4")  # a PUT that lost destroys only its own
    assert backend.destroy_versions(secret_id, before="3") is True  # the one that landed, only older ones
    assert states() == [("1", "DESTROYED"), ("2", "DESTROYED"), ("3", "ENABLED"), ("4", "DESTROYED")]
    assert backend.access_latest(secret_id) is None, "latest is 4, destroyed"
    assert backend.access_version(secret_id, "3") == b'{"v": 3}'
    assert backend.destroy_versions(secret_id, before="3") is False
