"""The SDK's tests: test_sdk_unit.py needs nothing running; test_sdk_integration.py needs the local stack (started by
`make test` or `make dev`) and fails, never skips, when it is down."""

from __future__ import annotations

import pytest

import sdk_stack


@pytest.fixture(scope="session")
def stack() -> None:
    missing = sdk_stack.stack_missing()
    if missing:
        pytest.fail(f"the local stack is not running ({', '.join(missing)} down): use `make test` or `make dev`")
