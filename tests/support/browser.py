"""A real browser: Debian's Chromium driven by Playwright, at a laptop's and a phone's width."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.app import RunningApp

#: Debian's Chromium (apt-get install chromium; .ci/run installs it).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: How the probe of this machine runs Chromium: headless, as root, with no network chatter
#: (the sandbox refuses outside connections, and each refusal costs time).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """Chromium driven by Playwright. Without Chromium the test skips, except under CI, where
    .ci/run installs it and a missing browser is a failure."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    # expect()'s own default is 5 s, which a loaded 2-core host (two test workers, a model's
    # first engine build) can miss while the page is fine; waits are the page's, not a speed test
    sync_api.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


#: How long a browser test waits for the page (the first request of a model builds its engine).
TIMEOUT_MS = 120_000
#: How long an ``expect`` waits for what it asserts to become true.
EXPECT_TIMEOUT_MS = 30_000
#: The widths every browser test runs at: a laptop and a phone (an iPhone 12-14's CSS pixels).
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def open_page(browser, app: RunningApp, viewport: dict[str, int]):  # type: ignore[no-untyped-def]
    """A new browser context at ``viewport`` with the app loaded: (context, page)."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload")
    return context, page


def attach(page, elem_id: str, *paths: Path) -> None:  # type: ignore[no-untyped-def]
    """Give ``paths`` to the file input of the component ``elem_id`` and wait until each has
    landed on the server (its download link is shown), as a person waits before clicking on."""
    from playwright.sync_api import expect

    links = page.locator(f"#{elem_id} a[href*='/file=']")
    before = links.count()  # a component of several files adds to the ones it holds
    page.locator(f"#{elem_id} input[type=file]").set_input_files([str(p) for p in paths])
    expect(links).to_have_count(before + len(paths))


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    """The name of the width a browser test runs at ("desktop" or "phone")."""
    return request.param


@pytest.fixture
def page(browser, app, viewport):  # type: ignore[no-untyped-def]
    """The app in a browser page at each of :data:`VIEWPORTS`."""
    context, page = open_page(browser, app, VIEWPORTS[viewport])
    yield page
    context.close()
