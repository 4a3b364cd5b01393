"""Test tiers: tests/unit and tests/devservers need nothing running (a test that wants a dev server starts its own
in-process on a free port); tests/integration and tests/e2e need the local stack, which `make test` starts. Those
fail (not skip) when the stack is missing, so CI cannot go green without running them. A test sits in the tier of
what it needs: one that needs no shared stack belongs in tests/unit or tests/devservers, not in a stack tier.
"""

from __future__ import annotations

import pytest

from tests import support

STACK_TIERS = ("tests/integration", "tests/e2e", "tests/faults", "tests/browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(tier in str(item.path) for tier in STACK_TIERS):
            item.add_marker(pytest.mark.stack)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests import fuzz, ledger

    for line in fuzz.LINES:  # the fuzz run's requests and 5xx answers, per endpoint
        terminalreporter.write_line(line)
    if ledger.CHECKS:
        # The widest check is the e2e tier's, over every paid prompt of the run so far.
        widest = max(ledger.CHECKS, key=lambda check: check.prompts)
        terminalreporter.write_line(
            f"money trace ({len(ledger.CHECKS)} ledger checks); the widest, over the whole e2e run:"
        )
        terminalreporter.write_line(widest.line())


@pytest.fixture(scope="session")
def stack() -> None:
    missing = support.stack_missing()
    if missing:
        pytest.fail(f"the local stack is not running ({', '.join(missing)} down): use `make test` or `make dev`")


@pytest.fixture(autouse=True)
def _needs_stack(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("stack") is not None:
        request.getfixturevalue("stack")
