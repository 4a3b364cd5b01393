"""scripts/stack_config.py: the stack's ports and project id come from firebase.json and .firebaserc, and a client's
environment variables win over them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import stack_config

ROOT = Path(__file__).resolve().parents[2]


def write_config(root: Path, project: str = "demo-other", **ports: int) -> Path:
    def entry(name: str, default: int) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": ports.get(name, default)}

    firebase = {
        "emulators": {
            "auth": entry("auth", 19099),
            "firestore": {**entry("firestore", 18080), "websocketPort": ports.get("firestore_websocket", 19150)},
            "functions": entry("functions", 15001),
            "hosting": entry("hosting", 15000),
            "hub": entry("hub", 14400),
            "logging": entry("logging", 14500),
            "tasks": entry("tasks", 19499),
        },
        "devservers": {"secretManager": entry("secret_manager", 18086), "daraja": entry("daraja", 18089)},
    }
    (root / "firebase.json").write_text(json.dumps(firebase))
    (root / ".firebaserc").write_text(json.dumps({"projects": {"default": project}}))
    return root


def test_the_repository_files_describe_the_whole_stack() -> None:
    config = stack_config.load()
    firebase = json.loads((ROOT / "firebase.json").read_text())
    assert config.project_id == json.loads((ROOT / ".firebaserc").read_text())["projects"]["default"]
    # The gateway trusts the Auth emulator only for a demo- project.
    assert config.project_id.startswith("demo-")
    for name in ("auth", "firestore", "functions", "hosting", "hub", "logging", "tasks"):
        assert config.ports[name] == firebase["emulators"][name]["port"], name
    assert config.ports["firestore_websocket"] == firebase["emulators"]["firestore"]["websocketPort"]
    assert len(set(config.ports.values())) == len(config.ports), "two services on one port"


def test_the_env_follows_the_files(tmp_path: Path) -> None:
    config = stack_config.load(write_config(tmp_path, "demo-other", firestore=28080, functions=25001))
    assert config.env() == {
        "GCLOUD_PROJECT": "demo-other",
        "GOOGLE_CLOUD_PROJECT": "demo-other",
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:28080",
        "FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:19099",
        "SECRET_MANAGER_EMULATOR_HOST": "127.0.0.1:18086",
        "DARAJA_SIMULATOR_URL": "http://127.0.0.1:18089",
        "FUNCTIONS_BASE_URL": "http://127.0.0.1:25001/demo-other/us-central1",
        "HOSTING_URL": "http://127.0.0.1:15000",
    }
    # Emulator hosts are host:port: the client libraries add the scheme.
    for name in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST", "SECRET_MANAGER_EMULATOR_HOST"):
        assert "://" not in config.env()[name]


def test_addresses_come_from_the_files_when_the_environment_is_silent(tmp_path: Path) -> None:
    config = stack_config.load(write_config(tmp_path))
    found = stack_config.addresses({}, config)
    assert found == stack_config.Addresses(
        project_id="demo-other",
        auth_host="127.0.0.1:19099",
        firestore_host="127.0.0.1:18080",
        secret_manager_host="127.0.0.1:18086",
        daraja_url="http://127.0.0.1:18089",
        functions_url="http://127.0.0.1:15001/demo-other/us-central1",
        hosting_url="http://127.0.0.1:15000",
    )
    assert found.function_url("stk_push") == "http://127.0.0.1:15001/demo-other/us-central1/stk_push"
    assert found.callback_base_url == "http://127.0.0.1:15000/hooks/daraja"


def test_environment_variables_win(tmp_path: Path) -> None:
    config = stack_config.load(write_config(tmp_path))
    environ = {
        "FIRESTORE_EMULATOR_HOST": "10.0.0.1:8080",
        "DARAJA_SIMULATOR_URL": "http://sim.test:9000/",
        "FIREBASE_AUTH_EMULATOR_HOST": "",  # empty counts as unset
    }
    found = stack_config.addresses(environ, config)
    assert found.firestore_host == "10.0.0.1:8080"
    assert found.daraja_url == "http://sim.test:9000"
    assert found.auth_host == "127.0.0.1:19099"


def test_a_project_from_the_environment_moves_the_default_functions_url(tmp_path: Path) -> None:
    config = stack_config.load(write_config(tmp_path))
    assert stack_config.addresses({"GCLOUD_PROJECT": "demo-ci"}, config).functions_url == (
        "http://127.0.0.1:15001/demo-ci/us-central1"
    )
    explicit = {"GCLOUD_PROJECT": "demo-ci", "FUNCTIONS_BASE_URL": "http://fn.test/p/r/"}
    assert stack_config.addresses(explicit, config).functions_url == "http://fn.test/p/r"


@pytest.mark.parametrize(
    ("firebase", "firebaserc", "message"),
    [
        ({"emulators": {}}, {"projects": {"default": "demo-x"}}, '"emulators"."auth"'),
        (None, {"projects": {}}, ".firebaserc needs"),
        ("not json", {"projects": {"default": "demo-x"}}, "cannot read"),
    ],
)
def test_a_missing_entry_is_named(tmp_path: Path, firebase: Any, firebaserc: Any, message: str) -> None:
    write_config(tmp_path)
    if firebase is not None:
        text = firebase if isinstance(firebase, str) else json.dumps(firebase)
        (tmp_path / "firebase.json").write_text(text)
    (tmp_path / ".firebaserc").write_text(json.dumps(firebaserc))
    with pytest.raises(stack_config.StackConfigError, match=message.replace(".", r"\.")):
        stack_config.load(tmp_path)
