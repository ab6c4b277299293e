"""The app in a real browser: Playwright driving Debian's Chromium against ``python app.py``.

Each test saves a screenshot of its tab under ``artifacts/screenshots/`` (``$RTSR_ARTIFACTS``)
for a person to look at. The browser is conftest's: without Chromium the tests skip, except
under CI.
"""

import re
from pathlib import Path

import pandas as pd
import pytest

from rtsr.leaderboard import OFFICIAL_CSV
from rtsr.serving import ModelPool, serve
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from tests.conftest import ARTIFACTS, ROOT

playwright = pytest.importorskip("playwright.sync_api")

SCREENSHOTS = ARTIFACTS / "screenshots"
TIMEOUT_MS = 120_000


@pytest.fixture
def page(browser, app):
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload")
    yield page
    context.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_upscale_tab_runs_a_model_and_shows_its_metrics(page):
    expect = playwright.expect
    expect(page.locator("#host-note")).to_contain_text("This host has no GPU")
    expect(page.locator("#host-note")).to_contain_text("Models run in a sandbox: no network, read-only files")
    page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.png"))
    expect(page.locator("#upload img")).to_be_visible()
    page.locator("#run").click()
    metrics = page.locator("#metrics")
    expect(metrics).to_contain_text("Gain over bicubic", timeout=TIMEOUT_MS)
    expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/rtsrn-x2_512x512\.png$"))

    # The numbers on the page are the library's on the same request, made here by hand.
    expected = serve(
        ModelPool(Registry.read(BUNDLED_REGISTRY)), "rtsrn-x2", ROOT / "examples" / "astronaut.png", "simulate"
    )
    text = metrics.inner_text()
    rows = {
        name: [float(v) for v in re.findall(r"\d+\.\d+", line)]
        for line in text.splitlines()
        for name in ("RTSRN x2", "Bicubic")
        if line.strip().startswith(name)
    }
    m, b = expected.metrics, expected.bicubic_metrics
    assert rows["RTSRN x2"] == pytest.approx([m.psnr_rgb, m.ssim_rgb, m.psnr_y, m.ssim_y], abs=1e-3)
    assert rows["Bicubic"] == pytest.approx([b.psnr_rgb, b.ssim_rgb, b.psnr_y, b.ssim_y], abs=1e-3)
    assert rows["RTSRN x2"][0] > rows["Bicubic"][0]
    expect(page.locator("#timing")).to_contain_text("Model forward")
    # the engine that ran, as the pool run here chose it (the same host, the same check)
    expect(page.locator("#timing")).to_contain_text(f"Engine: {expected.engine.label} (")
    assert page.locator("#slider img").count() == 2
    page.locator("#slider").scroll_into_view_if_needed()
    screenshot(page, "upscale")

    # switching the "before" image redraws the slider without running the model again
    before = page.locator("#slider img").first.get_attribute("src")
    page.get_by_label("LR input (pixels as they are)").check()
    expect(page.locator("#slider img").first).not_to_have_attribute("src", before or "")


def test_an_example_through_a_track_2_model(page):
    expect = playwright.expect
    page.locator("#model input").click()
    page.get_by_role("option", name="Track 2 (x3) · RTSRN x3").click()
    page.get_by_role("button", name="rocket.png").or_(page.locator("img[src*='rocket']")).first.click()
    expect(page.locator("#upload img")).to_be_visible()
    page.locator("#run").click()
    # rocket.png is 427x640: cropped to 426x639 for x3, so the output is 639x426
    expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/rtsrn-x3_639x426\.png$"))
    expect(page.locator("#metrics")).to_contain_text("RTSRN x3")
    expect(page.locator("#timing")).to_contain_text("input 213x142 → 639x426")
    screenshot(page, "upscale_x3_example")


def test_upscale_tab_shows_a_refusal_and_keeps_working(page, tmp_path):
    from PIL import Image

    Image.new("RGB", (2000, 1100), "gray").save(tmp_path / "big.png")
    page.get_by_label("Upscale this image").check()
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "big.png"))
    page.locator("#run").click()
    playwright.expect(page.get_by_text("this host upscales inputs of at most 2.07 MP").first).to_be_visible()
    page.wait_for_timeout(1500)  # the toast slides in; a screenshot taken at once misses it
    screenshot(page, "upscale_refused", full_page=False)  # the toast is fixed to the viewport


def test_leaderboard_plots_one_marker_per_entry(page):
    expect = playwright.expect
    page.get_by_role("tab", name="Leaderboard").click()
    points = page.locator("#leaderboard-plot .scatterlayer .trace path.point")
    expect(page.locator("#leaderboard-plot .gtitle")).to_contain_text("Track 1")
    official = pd.read_csv(OFFICIAL_CSV)  # 24 teams and bicubic
    expect(points).to_have_count(len(official))
    table = page.locator("#leaderboard-table")
    expect(table).to_contain_text("Noah TerminalVision")
    expect(table).to_contain_text("NVIDIA RTX 3090 (reported)")
    # hover on a marker names its team
    points.first.hover(force=True)
    expect(page.locator("#leaderboard-plot .hoverlayer")).to_contain_text("PSNR")
    screenshot(page, "leaderboard")

    # PSNR mode: the same markers, plus iso-score curves (lines, no markers)
    page.locator("#lb-y").get_by_label("PSNR RGB (dB)").check()
    expect(page.locator("#leaderboard-plot .ytitle")).to_have_text("PSNR RGB (dB)")  # the new figure is in
    expect(page.locator("#leaderboard-plot .legendtext", has_text="Pareto front")).to_have_count(1)
    expect(points).to_have_count(len(official))
    expect(page.locator("#leaderboard-plot .scatterlayer .trace .js-line")).not_to_have_count(0)
    screenshot(page, "leaderboard_psnr")

    # Our evaluations: Track 2 on Set5 holds bicubic-x3 and rtsrn-x3
    page.locator("#lb-track").get_by_label(re.compile("Track 2")).check()
    expect(page.locator("#leaderboard-plot .gtitle")).to_contain_text("Track 2")
    expect(page.locator("#leaderboard-table")).to_contain_text("RTSRN x3")
    expect(points).to_have_count(2)
    screenshot(page, "leaderboard_track2")

    # another test set of Track 2, picked from the dropdown the track change refilled
    page.locator("#lb-dataset input").click()
    page.get_by_role("option", name="Urban100_10").click()
    expect(page.locator("#leaderboard-plot .gtitle")).to_contain_text("Urban100_10")
    expect(points).to_have_count(2)
    # typing in the search box narrows the table and the plot to the matching rows
    page.locator("#lb-query textarea").press_sequentially("RTSRN", delay=30)
    expect(points).to_have_count(1)
    expect(page.locator("#leaderboard-table")).not_to_contain_text("Bicubic x3")


def test_about_tab_gives_the_formula_and_the_commands(page):
    page.get_by_role("tab", name="About").click()
    expect = playwright.expect
    expect(page.get_by_text("2 · 2^(PSNR − PSNR_bicubic) / (0.1 · √runtime_ms)")).to_be_visible()
    for command in (
        "python -m rtsr pack my_team",
        "python -m rtsr validate my_team",
        "python -m rtsr submit my-team/espcn-x2",
    ):
        expect(page.get_by_text(command).first).to_be_visible()
    screenshot(page, "about")
