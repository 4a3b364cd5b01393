"""The SDK's tests: test_sdk_unit.py needs nothing running; test_sdk_integration.py needs the local stack (started by
`make test` or `make dev`) and fails, never skips, when it is down. Every test that uses the `stack` fixture is
marked `stack`, so `pytest -m "not stack"` (as `make test-unit` runs) selects the ones that need nothing running."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack: needs the local emulator stack (started by `make test`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack() -> None:
    import sdk_stack  # reads the repository's firebase.json: only the stack's tests need it

    missing = sdk_stack.stack_missing()
    if missing:
        pytest.fail(f"the local stack is not running ({', '.join(missing)} down): use `make test` or `make dev`")
