"""The bench's hello world is served by the local stack and never deployed: scripts/stack.py starts the emulators from
a config written from firebase.json plus the local-only codebases, while firebase.json (what `firebase deploy`
reads) lists the product's codebase alone. Nothing here starts a process."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """A fresh copy of scripts/stack.py whose emulator config goes to a temporary file."""
    spec = importlib.util.spec_from_file_location("stack_local_only", ROOT / "scripts" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "EMULATOR_CONFIG", tmp_path / ".firebase.local-stack.json")
    return module


def codebases(config: dict[str, Any]) -> list[dict[str, Any]]:
    functions = config["functions"]
    return list(functions) if isinstance(functions, list) else [functions]


def test_firebase_json_deploys_no_local_only_codebase(stack: ModuleType) -> None:
    deployed = codebases(json.loads((ROOT / "firebase.json").read_text()))
    local_sources = {codebase["source"] for codebase in stack.LOCAL_ONLY_CODEBASES}
    assert local_sources == {"bench/hello"}
    assert not local_sources & {codebase["source"] for codebase in deployed}
    assert not {c["codebase"] for c in stack.LOCAL_ONLY_CODEBASES} & {c.get("codebase") for c in deployed}


def test_the_emulators_get_firebase_json_plus_the_hello_world(stack: ModuleType) -> None:
    written = stack.emulator_config()
    config = json.loads(written.read_text())
    source = json.loads((ROOT / "firebase.json").read_text())
    assert written == stack.EMULATOR_CONFIG
    assert codebases(config) == [*codebases(source), *stack.LOCAL_ONLY_CODEBASES]
    # Everything else (ports, rules, hosting) is firebase.json's, the one source.
    assert {k: v for k, v in config.items() if k != "functions"} == {
        k: v for k, v in source.items() if k != "functions"
    }
    hello = ROOT / "bench" / "hello"
    assert (hello / "venv").resolve() == (ROOT / "functions" / "venv").resolve()
    assert (hello / "requirements.txt").exists()  # the emulator detects a Python codebase by it


def test_the_config_sits_beside_firebase_json(stack: ModuleType) -> None:
    """firebase-tools takes the directory of --config as the project directory (sources, rules, .firebaserc)."""
    real = importlib.util.spec_from_file_location("stack_paths", ROOT / "scripts" / "stack.py")
    assert real is not None and real.loader is not None
    module = importlib.util.module_from_spec(real)
    sys.modules[real.name] = module
    try:
        real.loader.exec_module(module)
        assert module.EMULATOR_CONFIG.parent == ROOT
    finally:
        del sys.modules[real.name]
