"""Browser tests: Playwright driving the system's Chromium (Debian's /usr/bin/chromium,
or CTIHUB_CHROMIUM). No browser is ever downloaded: without Chromium, or without the
playwright package, the tests are skipped, and fail under CI=true (tests.conftest.missing).

Screenshots go to $CTIHUB_TEST_ARTIFACTS/browser/<test>/, by default test-artifacts/ at
the repository's root (ignored by git).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing

CHROMIUM = os.environ.get("CTIHUB_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing(f"Chromium at {CHROMIUM} (Debian package chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing("the playwright package (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("CTIHUB_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder = root / "browser" / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        # Chromium's sandbox refuses to start as root (CI runs as root).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = await playwright.chromium.launch(executable_path=chromium_path, headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()
