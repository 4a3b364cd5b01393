"""Check the local stack's lifecycle: `scripts/stack.py dev` brings every service up, and after one SIGTERM to it
no process it started is left alive and nothing listens on the stack's ports.

Usage (only while the stack's ports are free, e.g. from `make test` before the test stack starts):
    .venv/bin/python scripts/check_lifecycle.py [--ready-timeout 120] [--stop-timeout 90] [--grace 5] [--verbose]

Steps: start `stack.py dev` in its own session; wait for its "The local stack is up" line; check every port
listens; record the whole process tree (every descendant by parent pid, walked through /proc, plus every process in
a session led by one of them, since each service runs in its own session); send SIGTERM to stack.py only; wait for
it to exit; then require that no recorded process is alive (a pid counts only with its recorded start time, so a
reused pid is not mistaken for a survivor; zombies count as dead) and that no socket listens on any port of
PORTS. Prints the timings. Exit codes: 0 pass, 1 fail, 2 could not run (ports busy, stack not installed).
Whatever the outcome, processes of the recorded tree that survive are killed at the end (by pid, never by name).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python scripts/check_lifecycle.py`

from scripts import stack_config  # noqa: E402

STACK_SCRIPT = ROOT / "scripts" / "stack.py"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
READY_LINE = "The local stack is up"
PORTS = tuple(stack_config.load().ports.values())  # every port of the stack, from firebase.json
LISTEN_STATE = "0A"


def say(message: str) -> None:
    print(f"[lifecycle] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- /proc
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int
    start_ticks: int
    state: str
    command: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields after it start after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return Proc(
        pid=pid,
        state=fields[0],
        ppid=int(fields[1]),
        session=int(fields[3]),
        start_ticks=int(fields[19]),
        command=command or stat[stat.index("(") + 1 : stat.rindex(")")],
    )


def all_procs() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None:
                procs[proc.pid] = proc
    return procs


def process_tree(root_pid: int) -> dict[int, Proc]:
    """root_pid and all its descendants (children of children...), plus members of sessions they lead."""
    procs = all_procs()
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    tree: dict[int, Proc] = {}
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        if pid in tree or pid not in procs:
            continue
        tree[pid] = procs[pid]
        todo.extend(children.get(pid, []))
    leaders = set(tree)
    for proc in procs.values():
        if proc.session in leaders and proc.pid not in tree:
            tree[proc.pid] = proc
    return tree


def still_alive(proc: Proc) -> bool:
    now = read_proc(proc.pid)
    return now is not None and now.start_ticks == proc.start_ticks and now.state not in ("Z", "X")


# ---------------------------------------------------------------------------------------------- ports
def listening_ports() -> set[int]:
    """Ports with a TCP socket in LISTEN state on any address (IPv4 and IPv6), from /proc/net."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == LISTEN_STATE:
                found.add(int(parts[1].rsplit(":", 1)[1], 16))
    return found


def accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def busy_ports(ports: tuple[int, ...]) -> list[int]:
    listening = listening_ports()
    return [port for port in ports if port in listening or accepts(port)]


# ---------------------------------------------------------------------------------------------- the check
class OutputReader:
    """Reads the stack's combined output on a thread, so its pipe never fills, and spots the ready line."""

    def __init__(self, process: subprocess.Popen[str], verbose: bool) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._process = process
        self._verbose = verbose
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self._verbose:
                print(f"  | {line.rstrip()}", flush=True)
            if READY_LINE in line:
                self.ready.set()

    def tail(self, count: int = 40) -> str:
        return "\n".join(f"  | {line}" for line in self.lines[-count:])


def kill_survivors(tree: dict[int, Proc]) -> list[Proc]:
    survivors = [proc for proc in tree.values() if still_alive(proc)]
    for proc in survivors:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


def describe(procs: list[Proc]) -> str:
    return "\n".join(f"    pid {p.pid} (ppid {p.ppid}, sid {p.session}, {p.state}): {p.command[:160]}" for p in procs)


def check(
    command: list[str],
    ports: tuple[int, ...] = PORTS,
    ready_timeout: float = 120.0,
    stop_timeout: float = 90.0,
    grace: float = 5.0,
    verbose: bool = False,
) -> int:
    busy = busy_ports(ports)
    if busy:
        say(f"cannot run: ports already in use: {busy} (stop the running stack first)")
        return 2

    failures: list[str] = []
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    reader = OutputReader(process, verbose)
    tree: dict[int, Proc] = {}
    say(f"started stack.py dev as pid {process.pid}")
    try:
        while not reader.ready.wait(0.25):
            if process.poll() is not None:
                say(f"FAIL: stack.py exited with {process.returncode} before it was up\n{reader.tail()}")
                output = "\n".join(reader.lines)
                return 2 if "make install" in output or "ports already in use" in output else 1
            if time.monotonic() - started > ready_timeout:
                say(f"FAIL: no {READY_LINE!r} line within {ready_timeout:.0f}s\n{reader.tail()}")
                return 1
        up_after = time.monotonic() - started
        say(f"up after {up_after:.1f}s")

        closed = [port for port in ports if not accepts(port)]
        if closed:
            failures.append(f"ports not accepting connections while the stack is up: {closed}")

        # Two snapshots a second apart: late workers (gunicorn, java) are caught too.
        for _ in range(2):
            tree.update(process_tree(process.pid))
            time.sleep(1.0)
        tree.update(process_tree(process.pid))
        say(f"recorded {len(tree)} processes in the stack's tree")
        if verbose:
            print(describe(sorted(tree.values(), key=lambda p: p.pid)), flush=True)

        term_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            failures.append(f"stack.py did not exit within {stop_timeout:.0f}s of SIGTERM")
            code = None
        stopped_after = time.monotonic() - term_at
        if code is not None:
            say(f"stack.py exited with {code} {stopped_after:.1f}s after SIGTERM")
            if code != 0:
                failures.append(f"stack.py exited with {code} after SIGTERM (expected 0)")

        at_exit = [proc for proc in tree.values() if still_alive(proc)]
        open_at_exit = busy_ports(ports)
        deadline = time.monotonic() + grace
        alive, still_open = at_exit, open_at_exit
        while (alive or still_open) and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [proc for proc in tree.values() if still_alive(proc)]
            still_open = busy_ports(ports)
        if (at_exit or open_at_exit) and not (alive or still_open):
            say(
                f"note: when stack.py exited, {len(at_exit)} process(es) and ports {open_at_exit} were still "
                f"there; gone within {grace:.0f}s"
            )
        if alive:
            failures.append(f"{len(alive)} process(es) of the stack's tree still alive:\n{describe(alive)}")
        if still_open:
            failures.append(f"ports still listening after stop: {still_open}")
        say(f"timing: up {up_after:.1f}s, stop {stopped_after:.1f}s after SIGTERM, {len(tree)} processes checked")
    finally:
        # Early exits (not ready in time, a failed check) must not leave the stack running either.
        if process.poll() is None:
            tree.update(process_tree(process.pid))
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                tree.update(process_tree(process.pid))
                process.kill()
                process.wait()
        killed = kill_survivors(tree)
        if killed:
            say(f"cleaned up {len(killed)} leftover process(es) by pid")

    if failures:
        for failure in failures:
            say(f"FAIL: {failure}")
        say(f"last lines of the stack's output:\n{reader.tail(25)}")
        return 1
    say(f"PASS: everything up, then after SIGTERM no process left and nothing listening on {list(ports)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for the ready line")
    parser.add_argument("--stop-timeout", type=float, default=90.0, help="seconds stack.py may take to exit")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds for the kernel to finish closing")
    parser.add_argument("--verbose", action="store_true", help="echo the stack's output and the process tree")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        say("cannot run: this check walks /proc (Linux only)")
        return 2
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    return check(
        [str(python), str(STACK_SCRIPT), "dev"],
        PORTS,
        ready_timeout=args.ready_timeout,
        stop_timeout=args.stop_timeout,
        grace=args.grace,
        verbose=args.verbose,
    )


if __name__ == "__main__":
    sys.exit(main())
