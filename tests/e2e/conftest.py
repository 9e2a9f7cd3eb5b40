"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

Playwright's sync API runs an asyncio event loop in the test thread, which makes
Django refuse ORM calls from that thread ("async unsafe"). The test thread never
shares a connection with the browser's requests (those run in the live server's
thread), so allowing it here is safe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE_VIEWPORT = {"width": 390, "height": 844}
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session; skipped when it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh phone-sized tab with its own cookies; fails the test on any page error."""
    context = browser.new_context(viewport=PHONE_VIEWPORT, locale="zh-CN")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def demo(transactional_db: None) -> list[str]:
    """The demo borrowers, staff and loans, built through the real services."""
    del transactional_db
    from repayments.services.demo import demo_seed

    return demo_seed(now=timezone.now())


@pytest.fixture
def shoot() -> Any:
    """Save a full-page screenshot to var/screenshots/<name>.png."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(tab: Any, name: str) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


# The channel sandbox over real HTTP, and the portal's channel settings pointed at it,
# exactly as the integration tests use them (callbacks land at a receiver and are
# relayed to /callbacks/<channel>/ when the test says so).
from tests.integration.conftest import (  # noqa: E402
    channel_keys,
    portal_channels,
    running_sandbox,
    session_channel_keys,
)

__all__ = ["channel_keys", "portal_channels", "running_sandbox", "session_channel_keys"]


@pytest.fixture
def shoot_sizes(shoot: Any) -> Any:
    """Screenshot a page at phone (390x844) and desktop (1280x800) width."""

    def take(tab: Any, name: str) -> list[Path]:
        paths = []
        for label, size in (("phone", PHONE_VIEWPORT), ("desktop", DESKTOP_VIEWPORT)):
            tab.set_viewport_size(size)
            paths.append(shoot(tab, f"{name}-{label}"))
        tab.set_viewport_size(PHONE_VIEWPORT)
        return paths

    return take


DESKTOP_VIEWPORT = {"width": 1280, "height": 800}


JOURNEY_SCREENSHOT_DIR = SCREENSHOT_DIR / "journeys"


@pytest.fixture
def journey_shots() -> Any:
    """Save a full-page screenshot at phone and desktop width to
    var/screenshots/journeys/<name>-phone.png and <name>-desktop.png."""
    JOURNEY_SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(tab: Any, name: str) -> list[Path]:
        paths = []
        for label, size in (("phone", PHONE_VIEWPORT), ("desktop", DESKTOP_VIEWPORT)):
            tab.set_viewport_size(size)
            # From the top: a sticky header is drawn where the page was scrolled to.
            tab.evaluate("window.scrollTo(0, 0)")
            path = JOURNEY_SCREENSHOT_DIR / f"{name}-{label}.png"
            tab.screenshot(path=str(path), full_page=True)
            paths.append(path)
        tab.set_viewport_size(PHONE_VIEWPORT)
        return paths

    return take
