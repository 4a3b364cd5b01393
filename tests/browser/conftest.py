"""The browser tier: the developer console (console/, served by the Hosting emulator) driven in Debian's chromium by
Playwright for Python, against the real local stack. Playwright's own browser download cannot work offline, so the
tests launch the system's chromium (`make test` installs it); CHROMIUM overrides its path.

Set CONSOLE_SCREENSHOTS=1 (as `make screenshots` does) to save a screenshot of each page under console/screenshots/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "console" / "screenshots"
DESKTOP = {"width": 1280, "height": 860}


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is missing: run `make test` as root, or `sudo apt-get install -y chromium`")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not (ROOT / "console" / "dist" / "index.html").exists():
        pytest.fail("the console is not built: run `make console` (make test builds it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            # Root in a container: chromium's sandbox needs user namespaces it may not have.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in fresh browser contexts (separate storage: one signed-in developer each)."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(viewport=options.pop("viewport", DESKTOP), **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.js_errors = errors
        return page

    yield make
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    if os.environ.get("CONSOLE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # Keys and signing secrets shown once are masked: a committed picture must not look like a leaked secret.
        page.screenshot(
            path=str(SCREENSHOTS / f"{name}.png"),
            full_page=True,
            mask=[page.locator("code.secret")],
            mask_color="#c9ced4",
        )


def console_url(path: str = "") -> str:
    return f"{support.HOSTING_URL}/{path}"
