"""The About and Submit tabs in a real browser at 1440 and 390 px: the links a visitor needs,
and prose that fits a phone (code blocks wrap instead of running off the screen)."""

import pytest

from space.about import CODALAB_URLS, NTIRE_URL, ORGANIZERS_REPO, REPORT_INDEX_URL
from tests.test_browser import open_tab, screenshot

playwright = pytest.importorskip("playwright.sync_api")


def _code_blocks_fit(page) -> None:
    blocks = page.locator(".tabitem:visible pre")
    assert blocks.count() > 0
    for i in range(blocks.count()):
        scroll, client = blocks.nth(i).evaluate("(el) => [el.scrollWidth, el.clientWidth]")
        assert scroll <= client + 1, (blocks.nth(i).inner_text()[:60], scroll, client)


def test_about_links_the_challenge_its_code_and_report(page, viewport):
    open_tab(page, "About")
    about = page.locator(".tabitem:visible")
    for url in (NTIRE_URL, CODALAB_URLS[1], CODALAB_URLS[2], ORGANIZERS_REPO, REPORT_INDEX_URL):
        playwright.expect(about.locator(f'a[href="{url}"]')).to_have_count(1)
    playwright.expect(about.locator('a[href="https://huggingface.co/new"]')).to_have_count(1)
    playwright.expect(about).to_contain_text("Getting on the leaderboard")
    # the score rule with its two cases, and the commands, whole on a phone too
    playwright.expect(about).to_contain_text("if PSNR > PSNR_bicubic")
    _code_blocks_fit(page)
    screenshot(page, f"about_links_{viewport}")


def test_submit_links_the_hub_and_the_steps(page, viewport):
    open_tab(page, "Submit")
    submit = page.locator(".tabitem:visible")
    playwright.expect(submit.locator('a[href="https://huggingface.co/new"]')).to_have_count(1)
    playwright.expect(submit).to_contain_text("the About tab has every step")
    # an empty queue says so in a word, not with an empty table's headers (the queues with
    # requests in them, at both widths: test_browser_submit)
    for status in ("pending", "running", "finished", "failed"):
        playwright.expect(page.locator(f"#queue-{status}")).to_have_text("None.")
    screenshot(page, f"submit_{viewport}")
