"""Where the local stack listens, read from its one source: `firebase.json` (the emulators' hosts and ports under
"emulators", our two dev servers' under "devservers") and `.firebaserc` (the default project id).

scripts/stack.py starts the stack from `load()` and exports `StackConfig.env()` to what it runs; every other client
(test tiers, benches, the demo) calls `addresses()`, in which a variable already set in the environment
(FIRESTORE_EMULATOR_HOST, FUNCTIONS_BASE_URL, ...) wins over the file. firebase-tools reads the same file; it
ignores the top-level "devservers" section (its schema check only logs unknown keys at debug level).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-central1"  # the functions' region; the emulator serves them under /<project>/<region>/<function>

# Our endpoint names, in status order -> (section of firebase.json, key in it). The Firestore emulator's websocket
# shares the firestore entry (its "websocketPort").
_SOURCES: dict[str, tuple[str, str]] = {
    "auth": ("emulators", "auth"),
    "firestore": ("emulators", "firestore"),
    "functions": ("emulators", "functions"),
    "hosting": ("emulators", "hosting"),
    "hub": ("emulators", "hub"),
    "logging": ("emulators", "logging"),
    "tasks": ("emulators", "tasks"),
    "firestore_websocket": ("emulators", "firestore"),
    "secret_manager": ("devservers", "secretManager"),
    "daraja": ("devservers", "daraja"),
}


class StackConfigError(ValueError):
    """firebase.json or .firebaserc lacks an entry the stack needs."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def address(self) -> str:
        """host:port, the form the *_EMULATOR_HOST variables take."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True)
class StackConfig:
    project_id: str
    endpoints: Mapping[str, Endpoint]  # the keys of _SOURCES, in that order

    @property
    def ports(self) -> dict[str, int]:
        return {name: endpoint.port for name, endpoint in self.endpoints.items()}

    @property
    def functions_base_url(self) -> str:
        return f"{self.endpoints['functions'].url}/{self.project_id}/{REGION}"

    def env(self) -> dict[str, str]:
        """The variables a client of this stack needs (tests, benches, the demo, SDK examples)."""
        return {
            "GCLOUD_PROJECT": self.project_id,
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            "FIRESTORE_EMULATOR_HOST": self.endpoints["firestore"].address,
            "FIREBASE_AUTH_EMULATOR_HOST": self.endpoints["auth"].address,
            "SECRET_MANAGER_EMULATOR_HOST": self.endpoints["secret_manager"].address,
            "DARAJA_SIMULATOR_URL": self.endpoints["daraja"].url,
            "FUNCTIONS_BASE_URL": self.functions_base_url,
            "HOSTING_URL": self.endpoints["hosting"].url,
        }


def functions_local_env(root: Path = ROOT) -> dict[str, str]:
    """functions/.env.local: the variables the Functions emulator loads into every worker of the local stack (the
    scheduler, tests and guards that act as those functions read them from here)."""
    env: dict[str, str] = {}
    for line in (root / "functions" / ".env.local").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() and not name.startswith("#") and value:
            env[name.strip()] = value.strip()
    return env


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StackConfigError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise StackConfigError(f"{path} must hold a JSON object")
    return data


def _endpoint(firebase: Mapping[str, Any], name: str) -> Endpoint:
    section, key = _SOURCES[name]
    entry = firebase.get(section, {}).get(key)
    port_key = "websocketPort" if name == "firestore_websocket" else "port"
    if not isinstance(entry, dict) or not isinstance(entry.get(port_key), int) or not entry.get("host"):
        raise StackConfigError(f'firebase.json needs "{section}"."{key}" with "host" and "{port_key}"')
    return Endpoint(str(entry["host"]), int(entry[port_key]))


def load(root: Path = ROOT) -> StackConfig:
    """The stack as firebase.json and .firebaserc under `root` describe it (no environment variable applies)."""
    firebase = _read_json(root / "firebase.json")
    project_id = _read_json(root / ".firebaserc").get("projects", {}).get("default")
    if not isinstance(project_id, str) or not project_id:
        raise StackConfigError('.firebaserc needs "projects": {"default": "<project id>"}')
    return StackConfig(project_id, {name: _endpoint(firebase, name) for name in _SOURCES})


@dataclass(frozen=True)
class Addresses:
    """Where a client finds the running stack."""

    project_id: str
    auth_host: str  # host:port
    firestore_host: str  # host:port
    secret_manager_host: str  # host:port
    daraja_url: str  # http://host:port, no trailing slash
    functions_url: str  # http://host:port/<project>/<region>, no trailing slash
    hosting_url: str = ""  # http://host:port of the Hosting emulator (the console, /api/*, /hooks/daraja/*)

    def function_url(self, name: str) -> str:
        return f"{self.functions_url}/{name}"

    @property
    def callback_base_url(self) -> str:
        """Where the functions point Daraja's callbacks locally: Hosting's neutral path (functions/.env.local)."""
        return f"{self.hosting_url}/hooks/daraja"


def addresses(environ: Mapping[str, str] | None = None, config: StackConfig | None = None) -> Addresses:
    """The stack's addresses from `config` (default: `load()`), each overridden by its variable in `environ`
    (default: os.environ) when that is set, as `scripts/stack.py run` and CI set them."""
    environ = os.environ if environ is None else environ
    config = config or load()
    file_env = config.env()

    def pick(name: str) -> str:
        return environ.get(name) or file_env[name]

    project_id = pick("GCLOUD_PROJECT")
    functions_default = f"{config.endpoints['functions'].url}/{project_id}/{REGION}"
    return Addresses(
        project_id=project_id,
        auth_host=pick("FIREBASE_AUTH_EMULATOR_HOST"),
        firestore_host=pick("FIRESTORE_EMULATOR_HOST"),
        secret_manager_host=pick("SECRET_MANAGER_EMULATOR_HOST"),
        daraja_url=pick("DARAJA_SIMULATOR_URL").rstrip("/"),
        functions_url=(environ.get("FUNCTIONS_BASE_URL") or functions_default).rstrip("/"),
        hosting_url=pick("HOSTING_URL").rstrip("/"),
    )
