"""The committed bench/results/latest.json says what issue 14 asks of it: every figure against the floor is there with
PASS or MISS, a MISS always comes with its measured reason, and the earlier figures are still reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

LATEST = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"

# Substrings of figure names: the floor ratios and zero reads of issue 14, and the figures that came before it.
REQUIRED = [
    "warm stk_push p50 / floor, instant simulator",
    "warm stk_push p50 / floor, Daraja-like 300 ms",
    "settled callbacks/s / raw settlement commits/s",
    "import main.py vs hello world",
    "warm stk_push p95 / p50",
    "Firestore document reads per warm push",
    "Secret Manager accesses",
    "Daraja OAuth mints",
    "RSS growth",
    "exactly-once settlement",
]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(LATEST.read_text())
    return document


@pytest.fixture(scope="module")
def figures(run: dict[str, Any]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = run["figures"]
    return listed


@pytest.mark.parametrize("name", REQUIRED)
def test_each_required_figure_is_judged_against_its_target(
    run: dict[str, Any], figures: list[dict[str, Any]], name: str
) -> None:
    if any(arg.startswith("--only") for arg in run.get("argv", [])):
        pytest.skip(f"{LATEST.name} is from a partial run ({' '.join(run['argv'])}); `make bench` writes them all")
    matching = [f for f in figures if name in f["name"]]
    assert matching, f"no figure named like {name!r} in {LATEST.name}"
    for figure in matching:
        assert figure["result"] in ("PASS", "MISS"), figure


def test_every_miss_or_error_says_why(figures: list[dict[str, Any]]) -> None:
    unexplained = [f["name"] for f in figures if f["result"] in ("MISS", "ERROR") and not f["note"].strip()]
    assert unexplained == []


def test_a_figure_with_a_target_is_judged(figures: list[dict[str, Any]]) -> None:
    unjudged = [f["name"] for f in figures if f["target"] not in ("-", "") and f["result"] == "INFO"]
    assert unjudged == []
