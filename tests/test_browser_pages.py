"""The About and Submit tabs in a real browser at 1440 and 390 px: the links a visitor needs,
and prose that fits a phone (code blocks wrap instead of running off the screen)."""

import pytest

from space.about import CODALAB_URLS, NTIRE_URL, ORGANIZERS_REPO, REPORT_INDEX_URL
from tests.test_browser import SCREENSHOTS, TIMEOUT_MS, open_tab

playwright = pytest.importorskip("playwright.sync_api")

WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture(params=list(WIDTHS))
def page(request, browser, app):
    width, height = WIDTHS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload")
    page.screen = request.param  # type: ignore[attr-defined]
    yield page
    context.close()


def _code_blocks_fit(page) -> None:
    blocks = page.locator(".tabitem:visible pre")
    assert blocks.count() > 0
    for i in range(blocks.count()):
        scroll, client = blocks.nth(i).evaluate("(el) => [el.scrollWidth, el.clientWidth]")
        assert scroll <= client + 1, (blocks.nth(i).inner_text()[:60], scroll, client)


def test_about_links_the_challenge_its_code_and_report(page):
    open_tab(page, "About")
    about = page.locator(".tabitem:visible")
    for url in (NTIRE_URL, CODALAB_URLS[1], CODALAB_URLS[2], ORGANIZERS_REPO, REPORT_INDEX_URL):
        playwright.expect(about.locator(f'a[href="{url}"]')).to_have_count(1)
    playwright.expect(about.locator('a[href="https://huggingface.co/new"]')).to_have_count(1)
    playwright.expect(about).to_contain_text("Getting on the leaderboard")
    # the score rule with its two cases, and the commands, whole on a phone too
    playwright.expect(about).to_contain_text("if PSNR > PSNR_bicubic")
    _code_blocks_fit(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"about_links_{page.screen}.png"), full_page=True)


def test_submit_links_the_hub_and_the_steps(page):
    open_tab(page, "Submit")
    submit = page.locator(".tabitem:visible")
    playwright.expect(submit.locator('a[href="https://huggingface.co/new"]')).to_have_count(1)
    playwright.expect(submit).to_contain_text("the About tab has every step")
    # the queues' headers stay whole words on a phone (the table scrolls sideways instead)
    header = page.locator("#queue-pending th", has_text="Submitter").first
    box = header.bounding_box()
    assert box is not None and box["height"] < 3 * box["width"], box
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"submit_{page.screen}.png"), full_page=True)
