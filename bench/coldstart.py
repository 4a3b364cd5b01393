"""Cold start: the time to import functions/main.py in a fresh interpreter, against a one-function firebase-functions
hello world in the same venv, interleaved so both see the same machine load; plus which heavy client libraries the
import leaves unloaded (they must load lazily, on the first request that needs them).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

from bench.common import FUNCTIONS_DIR, FUNCTIONS_PYTHON, ROOT, progress
from bench.report import Figure, Run

PHASE = "cold start"
HELLO_DIR = ROOT / "bench" / "hello"
HEAVY_MODULES = ("google.cloud.firestore", "google.cloud.secretmanager", "firebase_admin", "grpc")
TARGET_RATIO = 1.1  # issue 14: cold import of main.py vs the hello world

_TIME_IMPORT = "import time; t=time.perf_counter(); import main; print(time.perf_counter()-t)"
_LIST_MODULES = f"import json, sys, main; print(json.dumps({{m: m in sys.modules for m in {HEAVY_MODULES!r}}}))"


# Both apps import from bytecode, as an instance does after its first start: this machine sets
# PYTHONDONTWRITEBYTECODE=1, which would make main.py's ~8,000 lines compile from source on every run and the
# one-file hello world not.
_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def _python(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(FUNCTIONS_PYTHON), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=_ENV
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing main in {cwd} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def _direct_imports(cwd: Path) -> list[tuple[str, float]]:
    """The modules `import main` imports itself, with their cumulative import seconds (python -X importtime),
    slowest first: where a cold start's time goes."""
    done = subprocess.run(
        [str(FUNCTIONS_PYTHON), "-X", "importtime", "-c", "import main"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=_ENV,
    )
    found: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        fields = line.split("|")
        if len(fields) != 3 or not fields[0].startswith("import time:") or not fields[1].strip().isdigit():
            continue
        name = fields[2]
        depth = len(name) - len(name.lstrip(" "))
        # A module is listed after everything it imported: main's own imports are the depth-3 lines just before
        # the depth-1 line of main itself (depth 1 is what the -c code imports, site's modules included).
        if depth == 3:
            found.append((name.strip(), int(fields[1]) / 1e6))
        elif depth == 1:
            if name.strip() == "main":
                return sorted(found, key=lambda item: -item[1])
            found = []
    return []


def run(result: Run, runs: int = 8) -> None:
    apps = {"main": FUNCTIONS_DIR, "hello": HELLO_DIR}
    for cwd in apps.values():
        _python(_TIME_IMPORT, cwd)  # not counted: writes __pycache__ and warms the page cache for both
    times: dict[str, list[float]] = {name: [] for name in apps}
    for i in range(runs):
        order = list(apps) if i % 2 == 0 else list(reversed(apps))  # alternate who goes first
        for name in order:
            times[name].append(float(_python(_TIME_IMPORT, apps[name])))
        progress(
            PHASE,
            f"run {i + 1}/{runs}: main {times['main'][-1] * 1000:.0f} ms, hello {times['hello'][-1] * 1000:.0f} ms",
        )
    main_s, hello_s = statistics.median(times["main"]), statistics.median(times["hello"])
    ratio = main_s / hello_s
    slowest = _direct_imports(FUNCTIONS_DIR)
    result.details["cold_start"] = {
        "runs": runs,
        "main_s": times["main"],
        "hello_s": times["hello"],
        "main_direct_imports_s": dict(slowest),
    }
    result.figures.append(
        Figure.against(
            PHASE,
            f"import main.py vs hello world (median of {runs})",
            ratio,
            f"{ratio:.2f}x ({main_s * 1000:.0f} ms vs {hello_s * 1000:.0f} ms)",
            f"<= {TARGET_RATIO}x",
            ratio <= TARGET_RATIO,
            "slowest imports of main.py (python -X importtime, one run): "
            + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in slowest[:4])
            + (
                ""
                if ratio <= TARGET_RATIO
                else f"; MISS: gateway.api ({dict(slowest).get('gateway.api', 0.0) * 1000:.0f} ms) is our own "
                "modules; every request needs them, so a lazy import would move that time into the first request, "
                "not remove it. Whether gRPC and the other heavy clients load is the next figure"
            ),
        )
    )

    loaded = {name: json.loads(_python(_LIST_MODULES, cwd)) for name, cwd in apps.items()}
    result.details["cold_start"]["heavy_modules_loaded"] = loaded
    ours = [m for m in HEAVY_MODULES if loaded["main"][m] and not loaded["hello"][m]]
    by_framework = [m for m in HEAVY_MODULES if loaded["main"][m] and loaded["hello"][m]]
    absent = [m for m in HEAVY_MODULES if not loaded["main"][m]]
    measured = f"not loaded: {', '.join(absent) or 'none'}"
    if ours:
        measured += f"; loaded by main: {', '.join(ours)}"
    note = ""
    if by_framework:
        measured += f"; {', '.join(by_framework)} loaded by firebase_functions itself"
        note = f"{', '.join(by_framework)} is imported by firebase_functions in the hello world too, so not by our code"
    if ours:
        culprits = [
            name
            for name, _ in slowest[:4]
            if json.loads(
                _python(f"import json, sys, {name}; print(json.dumps({ours!r}[0] in sys.modules))", FUNCTIONS_DIR)
            )
        ]
        note = "; ".join(
            part
            for part in (
                note,
                f"MISS: {ours[0]} is already loaded after importing "
                f"{', '.join(culprits) or 'one of the imports of main.py'} alone (each tried in a fresh interpreter)",
            )
            if part
        )
    result.figures.append(
        Figure.against(
            PHASE,
            "heavy clients left lazy by `import main`",
            float(len(ours)),
            measured,
            "none loaded by our code",
            not ours,
            note,
            check=True,
        )
    )
