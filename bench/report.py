"""The figures of a run: one row each (figure, measured, target, result), printed as a table and saved as JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PASS, MISS, INFO, ERROR = "PASS", "MISS", "INFO", "ERROR"


@dataclass
class Figure:
    phase: str
    name: str
    measured: str
    target: str = "-"
    result: str = INFO
    value: float | None = None  # the number the target applies to, for machines reading the JSON
    note: str = ""
    check: bool = False  # a correctness check, not a speed figure: a MISS here fails the run

    @staticmethod
    def against(
        phase: str, name: str, value: float, measured: str, target: str, ok: bool, note: str = "", check: bool = False
    ) -> Figure:
        return Figure(phase, name, measured, target, PASS if ok else MISS, value, note, check)


@dataclass
class Run:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    loadavg: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(f.result == ERROR or (f.check and f.result == MISS) for f in self.figures)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: other suites share this machine and its stack."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def table(figures: list[Figure]) -> str:
    headers = ("phase", "figure", "measured", "target", "result")
    rows = [(f.phase, f.name, f.measured, f.target, f.result) for f in figures]
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i]) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def save(run: Run, path: Path, total_s: float) -> None:
    document = {
        "date": run.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "duration_s": round(total_s, 1),
        "loadavg": run.loadavg,
        "phase_seconds": {name: round(s, 1) for name, s in run.phase_seconds.items()},
        "figures": [asdict(f) for f in run.figures],
        "table": table(run.figures),
        "details": run.details,
        "argv": sys.argv[1:],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
