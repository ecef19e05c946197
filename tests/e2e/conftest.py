"""Real-browser fixtures: Debian's Chromium driven by Playwright, and a server on 127.0.0.1.

Chromium comes from Debian (`make test` installs the `chromium` package when it is missing); Playwright
only drives it through `executable_path` and never downloads a browser of its own. bench/chromium.py holds the
flags that keep it from reaching anything but 127.0.0.1. Pages post their host candidates as `.local` names,
as real users' browsers do by default; the names are made by the test, so no mDNS traffic leaves the machine.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from talkstream.adapters.server.build import ServerSettings, build_app

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from chromium import CHROMIUM, FLAGS, hide_addresses_like_a_browser  # bench/chromium.py

KEY = "e2e-user:e2e-secret"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[TestServer]:
    app = build_app(ServerSettings(keys=(KEY,)))
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is not installed: run `make test`, which installs it")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        await hide_addresses_like_a_browser(context)
        yield context
        await context.close()


async def until(page: Any, expression: str, within: float = 30.0, logs: Callable[[], str] = str) -> Any:
    """Wait for the page's `expression` to be true and return it; on failure say so, with `logs()`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{expression} not true within {within} s\n{logs()}".rstrip())
