"""Tests of scripts/check_lifecycle.py against small fake stacks on free ports, so the checker itself is known to
catch leaks before it guards the real stack (which needs the real ports free and is run by `make test`).

A fake stack listens on one port, starts a child in its own session (like stack.py's services) that listens on a
second port and has a grandchild, prints the ready line, and on SIGTERM either stops its child's whole group
("clean") or exits leaving the child behind ("leaky").
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_STACK = textwrap.dedent(
    """
    import os, signal, socket, subprocess, sys, time

    port_a, port_b, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    child_code = (
        "import socket, subprocess, sys, time\\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n"
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\\n"
        "subprocess.Popen(['sleep', '300'])\\n"
        "time.sleep(300)\\n"
    )
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port_a))
    server.listen()
    child = subprocess.Popen([sys.executable, "-c", child_code, str(port_b)], start_new_session=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    if mode != "never-ready":
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port_b)) == 0:
                    break
            time.sleep(0.05)
        print("The local stack is up:", flush=True)
    while not stop:
        time.sleep(0.05)
    if mode != "leaky":
        os.killpg(child.pid, signal.SIGTERM)
        child.wait()
    server.close()
    sys.exit(0)
    """
)


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_lifecycle_under_test", ROOT / "scripts" / "check_lifecycle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def free_ports(count: int) -> tuple[int, ...]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def fake_stack(tmp_path: Path) -> Path:
    path = tmp_path / "fake_stack.py"
    path.write_text(FAKE_STACK)
    return path


@pytest.fixture
def spawned(lifecycle: ModuleType) -> Iterator[dict[int, Any]]:
    """Processes a test started and wants gone at the end, whatever happened; a pid is killed only while it still
    has its recorded start time, so a reused pid is never hit."""
    procs: dict[int, Any] = {}
    yield procs
    for proc in procs.values():
        if lifecycle.still_alive(proc):
            os.kill(proc.pid, 9)


def test_a_clean_stack_passes(lifecycle: ModuleType, fake_stack: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ports = free_ports(2)
    code = lifecycle.check(
        [sys.executable, str(fake_stack), str(ports[0]), str(ports[1]), "clean"],
        ports,
        ready_timeout=20,
        stop_timeout=20,
        grace=2,
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out
    assert "recorded 3 processes" in out  # the fake stack, its child in its own session, the grandchild
    assert lifecycle.busy_ports(ports) == []


def test_a_leaky_stack_fails_and_its_leftovers_are_cleaned_up(
    lifecycle: ModuleType,
    fake_stack: Path,
    capsys: pytest.CaptureFixture[str],
    spawned: dict[int, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = free_ports(2)
    original_tree = lifecycle.process_tree

    def recording_tree(pid: int) -> dict[int, Any]:
        tree = original_tree(pid)
        spawned.update(tree)
        return tree

    monkeypatch.setattr(lifecycle, "process_tree", recording_tree)
    code = lifecycle.check(
        [sys.executable, str(fake_stack), str(ports[0]), str(ports[1]), "leaky"],
        ports,
        ready_timeout=20,
        stop_timeout=20,
        grace=1,
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "still alive" in out
    assert f"ports still listening after stop: [{ports[1]}]" in out
    assert "cleaned up 2 leftover process(es)" in out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(lifecycle.still_alive(proc) for proc in spawned.values()):
        time.sleep(0.1)
    assert len(spawned) == 3
    assert not [proc for proc in spawned.values() if lifecycle.still_alive(proc)]


def test_a_stack_that_never_gets_ready_fails_and_is_stopped(
    lifecycle: ModuleType, fake_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = free_ports(2)
    code = lifecycle.check(
        [sys.executable, str(fake_stack), str(ports[0]), str(ports[1]), "never-ready"],
        ports,
        ready_timeout=1.5,
        stop_timeout=20,
        grace=1,
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "no 'The local stack is up' line within" in out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and lifecycle.busy_ports(ports):
        time.sleep(0.1)
    assert lifecycle.busy_ports(ports) == []


def test_busy_ports_refuse_to_run(lifecycle: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert lifecycle.check(["false"], (port,)) == 2
    assert "ports already in use" in capsys.readouterr().out


def test_listening_ports_sees_ipv4_and_ipv6_listeners(lifecycle: ModuleType) -> None:
    with socket.socket() as v4:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        assert v4.getsockname()[1] in lifecycle.listening_ports()
    if socket.has_ipv6:
        try:
            v6 = socket.socket(socket.AF_INET6)
            v6.bind(("::1", 0))
        except OSError:
            return
        with v6:
            v6.listen()
            assert v6.getsockname()[1] in lifecycle.listening_ports()


def test_process_tree_follows_grandchildren_and_pid_reuse_is_not_alive(lifecycle: ModuleType) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"]
    )
    try:
        deadline = time.monotonic() + 5
        tree: dict[int, Any] = {}
        while time.monotonic() < deadline and len(tree) < 2:
            tree = lifecycle.process_tree(parent.pid)
            time.sleep(0.05)
        assert parent.pid in tree
        assert len(tree) == 2
        assert all(lifecycle.still_alive(proc) for proc in tree.values())
        me = lifecycle.read_proc(os.getpid())
        assert me is not None and me.pid == os.getpid()
        impostor = type(me)(me.pid, me.ppid, me.session, me.start_ticks + 1, me.state, me.command)
        assert not lifecycle.still_alive(impostor)
    finally:
        for proc in lifecycle.process_tree(parent.pid).values():
            os.kill(proc.pid, 9)
        parent.wait()
    assert lifecycle.read_proc(parent.pid) is None
