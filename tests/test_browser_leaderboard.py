"""The Leaderboard tab in a real browser, on a desktop (1440x900) and a phone (390x844).

Playwright drives Debian's Chromium against ``python app.py`` (tests.support's ``app`` and
``browser``). The figure plotly drew is read from the page itself (``gd.data``), the table
from its cells. Screenshots go to ``artifacts/screenshots/`` for a person to look at.
"""

import re

import pandas as pd
import pytest

from rtsr.leaderboard import OFFICIAL_CSV
from tests.support.browser import VIEWPORTS, open_page
from tests.test_browser import screenshot

playwright = pytest.importorskip("playwright.sync_api")

TEAMS_AND_BICUBIC = len(pd.read_csv(OFFICIAL_CSV))
ROWS = "#leaderboard-table tbody tr"
POINTS = "#leaderboard-plot .scatterlayer .trace path.point"


@pytest.fixture
def board(browser, app, viewport):
    """The Leaderboard tab at each width, its plot drawn; ``board.screen`` names the width."""
    context, page = open_page(browser, app, VIEWPORTS[viewport])
    page.get_by_role("tab", name="Leaderboard").click()
    playwright.expect(page.locator(POINTS)).to_have_count(TEAMS_AND_BICUBIC)
    page.screen = viewport  # type: ignore[attr-defined]
    yield page
    context.close()


def shot(page, name: str, full_page: bool = True) -> None:
    """test_browser's screenshot, named for the width too."""
    screenshot(page, f"{name}_{page.screen}", full_page)


def traces(page) -> list[dict]:
    """The plot's traces as plotly holds them: name, marker symbols and opacities."""
    return page.evaluate(
        """() => {
            // numeric arrays arrive base64-encoded; plotly keeps the decoded ones beside them
            const list = (v) => (v === undefined ? [] : v._inputArray ? Array.from(v._inputArray) : [].concat(v));
            return document.querySelector('#leaderboard-plot .js-plotly-plot').data.map((t) => ({
                name: t.name, mode: t.mode, x: list(t.x),
                symbol: t.marker ? list(t.marker.symbol) : [],
                opacity: t.marker ? list(t.marker.opacity) : [],
                method: (t.customdata || []).map((c) => c[0]),
            }));
        }"""
    )


def stars(page) -> list[str]:
    """The methods drawn as stars (the Pareto front), bicubic's star-diamond included."""
    return sorted(
        method
        for t in traces(page)
        for method, symbol in zip(t["method"], t["symbol"], strict=False)
        if symbol.startswith("star")
    )


def table_column(page, label: str) -> list[str]:
    headers = [h.strip(" ▲▼") for h in page.locator("#leaderboard-table th").all_inner_texts()]
    index = headers.index(label)
    return [row.locator("td").nth(index).inner_text() for row in page.locator(ROWS).all()]


def search(page):
    return page.locator("#lb-query textarea, #lb-query input").first


def test_clearing_the_search_shows_every_row_again(board):
    expect = playwright.expect
    box = search(board)
    box.press_sequentially("z", delay=30)
    expect(board.locator(ROWS)).to_have_count(2)  # z6 and Noah TerminalVision... as the table says
    box.press("Backspace")
    expect(board.locator(ROWS)).to_have_count(TEAMS_AND_BICUBIC)
    box.press_sequentially("noah", delay=30)
    expect(board.locator(ROWS)).to_have_count(1)
    box.press("Control+a")
    box.press("Delete")
    expect(board.locator(ROWS)).to_have_count(TEAMS_AND_BICUBIC)
    expect(board.locator("#leaderboard-plot")).not_to_contain_text("no row matches")


def test_a_search_fades_other_rows_and_keeps_the_front(board):
    expect = playwright.expect
    before = stars(board)
    assert before == ["ALONG", "Bicubic", "Noah TerminalVision"]
    search(board).press_sequentially("RTSR", delay=30)
    expect(board.locator(ROWS)).to_have_count(1)
    assert board.locator(ROWS).first.inner_text().startswith("NJUST-RTSR")  # no star
    # every point is still drawn, the others faded; the front and Bicubic are unchanged
    expect(board.locator(POINTS)).to_have_count(TEAMS_AND_BICUBIC)
    assert stars(board) == before
    faded = {m: o for t in traces(board) for m, o in zip(t["method"], t["opacity"], strict=False)}
    assert faded["NJUST-RTSR"] == 1 and faded["ALONG"] < 1 and faded["Bicubic"] < 1
    shot(board, "leaderboard_search")


def test_the_search_hint_finds_rows(board):
    hint = search(board).get_attribute("placeholder") or ""
    words = [w.strip() for w in hint.removeprefix("e.g.").split(",")]
    assert len(words) == 2
    for word in words:
        search(board).fill(word)
        playwright.expect(board.locator(ROWS).first).to_contain_text(word)


def test_the_plot_fits_the_screen(board):
    width = board.viewport_size["width"]
    plot = board.locator("#leaderboard-plot .main-svg").first.bounding_box()
    title = board.locator("#leaderboard-plot .gtitle").bounding_box()
    legend = board.locator("#leaderboard-plot .legend").bounding_box()
    ytitle = board.locator("#leaderboard-plot .ytitle").bounding_box()
    # the title and the y-axis title are whole, and the legend sits below the axes
    assert plot["x"] <= title["x"] and title["x"] + title["width"] <= plot["x"] + plot["width"]
    assert ytitle["x"] >= plot["x"] and ytitle["x"] + ytitle["width"] <= width
    axes = board.locator("#leaderboard-plot .draglayer .nsewdrag").first.bounding_box()
    assert legend["y"] >= axes["y"] + axes["height"]
    # the FPS band labels do not overlap one another
    labels = [board.locator("#leaderboard-plot .shapelayer text, #leaderboard-plot .layer-below text")]
    boxes = [b for b in (t.bounding_box() for t in labels[0].all()) if b]
    assert len(boxes) == 3
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart_x = a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
            apart_y = a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"]
            assert apart_x or apart_y, (a, b)
    # on a phone the toolbar does not cover the title
    if board.screen == "phone":
        assert not board.locator("#leaderboard-plot .modebar").is_visible()
    # a tooltip stays on screen
    board.locator(POINTS).nth(3).hover(force=True)
    tip = board.locator("#leaderboard-plot .hoverlayer .hovertext").first.bounding_box()
    assert tip is not None and tip["x"] >= 0 and tip["x"] + tip["width"] <= width
    shot(board, "leaderboard")


def test_the_table_reads_sorts_and_pins_the_method(board):
    expect = playwright.expect
    headers = [h.strip(" ▲▼") for h in board.locator("#leaderboard-table th").all_inner_texts()]
    assert headers[:7] == ["Method", "Score", "PSNR RGB (dB)", "PSNR gain (dB)", "Runtime (ms)", "× bicubic", "FPS"]
    assert "SSIM Y" not in headers  # the official table has none
    # one search box: the page's, not a second one of the table's own
    assert board.locator("#leaderboard-table input").count() == 0
    # every header explains itself
    assert "bicubic's on the same device" in board.locator("#leaderboard-table th", has_text="× bicubic").get_attribute(
        "title"
    )
    # rounded for reading, the same digits down each column
    assert all(re.fullmatch(r"\d+\.\d", v) for v in table_column(board, "FPS"))
    assert all(re.fullmatch(r"\d+\.\d\d", v) for v in table_column(board, "× bicubic"))
    # sorted by score to start with; a click on a header sorts by it, the better end first
    scores = [float(v) for v in table_column(board, "Score")]
    assert scores == sorted(scores, reverse=True)
    board.locator("#leaderboard-table th button", has_text="Runtime (ms)").click()
    runtimes = [float(v) for v in table_column(board, "Runtime (ms)")]
    assert runtimes == sorted(runtimes)
    board.locator("#leaderboard-table th button", has_text="Runtime (ms)").click()
    assert [float(v) for v in table_column(board, "Runtime (ms)")] == sorted(runtimes, reverse=True)
    # a new view (another quality axis) keeps the sort the reader chose
    board.locator("#lb-y").get_by_label("PSNR RGB (dB)").check()
    expect(board.locator("#leaderboard-plot .ytitle")).to_have_text("PSNR RGB (dB)")
    expect(board.locator("#leaderboard-table th[aria-sort]")).to_have_attribute("data-col", "runtime_ms")
    assert [float(v) for v in table_column(board, "Runtime (ms)")] == sorted(runtimes, reverse=True)
    # the method stays in view while the table scrolls sideways
    scroller = board.locator("#leaderboard-table .lb-scroll")
    method, score = board.locator(ROWS).first.locator("td").nth(0), board.locator(ROWS).first.locator("td").nth(1)
    scroller.evaluate("(el) => { el.scrollLeft = 0; }")  # clicking a header may have scrolled it
    board.wait_for_timeout(200)
    score_x = score.bounding_box()["x"]
    scroller.evaluate("(el) => { el.scrollLeft = 600; }")
    board.wait_for_timeout(200)
    scrolled = scroller.evaluate("(el) => el.scrollLeft")
    assert scrolled > 0
    assert score.bounding_box()["x"] == pytest.approx(score_x - scrolled, abs=1)  # the rest moved
    assert method.bounding_box()["x"] == pytest.approx(scroller.bounding_box()["x"], abs=2)  # pinned at its edge
    if board.screen == "desktop":
        # the columns people compare are on screen without scrolling
        board.locator("#leaderboard-table .lb-scroll").evaluate("(el) => { el.scrollLeft = 0; }")
        fps = board.locator("#leaderboard-table th", has_text="FPS").bounding_box()
        assert fps["x"] + fps["width"] <= board.viewport_size["width"]
    shot(board, "leaderboard_table")


def test_track_2_says_what_it_has(board):
    expect = playwright.expect
    board.locator("#lb-track").get_by_label(re.compile("Track 2")).check()
    expect(board.locator("#leaderboard-plot .gtitle")).to_contain_text("Track 2")
    expect(board.locator(POINTS)).to_have_count(2)
    # only the sources with rows, and a plain word on the missing official table
    expect(board.locator("#lb-sources label")).to_have_text(["rtsr evaluate"])
    expect(board.locator("#leaderboard-note")).to_contain_text("official Track 2 table is not included")
    expect(board.locator("#leaderboard-note")).not_to_contain_text("NTIRE 2023 (reported)")
    # CPU runtimes: no GPU frame-rate bands, and the axis says why
    assert board.locator("#leaderboard-plot .layer-below text").count() == 0
    expect(board.locator("#leaderboard-plot .xtitle")).to_contain_text("no FPS bands")
    # Bicubic x3 is the fastest: on the front, and starred
    assert "Bicubic x3" in stars(board)
    shot(board, "leaderboard_track2")
    board.locator("#lb-track").get_by_label(re.compile("Track 1")).check()
    expect(board.locator("#lb-sources label")).to_have_text(["NTIRE 2023 (reported)", "rtsr evaluate"])
    # a source unchecked here stays unchecked in the other track
    board.locator("#lb-sources").get_by_label("rtsr evaluate").uncheck()
    board.locator("#lb-track").get_by_label(re.compile("Track 2")).check()
    expect(board.locator("#lb-sources").get_by_label("rtsr evaluate")).not_to_be_checked()
    expect(board.locator(POINTS)).to_have_count(0)


def test_a_selected_row_shows_its_per_image_results(board):
    expect = playwright.expect
    details = board.locator("#leaderboard-details")
    board.locator(ROWS, has_text="Noah TerminalVision").click()
    expect(details).to_contain_text("published only each team's means")
    board.locator("#lb-dataset input").click()
    board.get_by_role("option", name="Set5", exact=True).click()
    expect(board.locator(ROWS)).to_have_count(2)
    row = board.locator(ROWS, has_text="RTSRN x2")
    row.focus()
    row.press("Enter")  # the keyboard reaches it too
    expect(details).to_contain_text("RTSRN x2 · Set5")
    for image in ("baby", "bird", "butterfly", "head", "woman"):
        expect(details.locator("td", has_text=image)).to_have_count(1)
    expect(details).to_contain_text("AMD EPYC")
    expect(details).to_contain_text("Engine: eager")
    expect(row).to_have_attribute("aria-selected", "true")
    details.scroll_into_view_if_needed()
    shot(board, "leaderboard_details")
    # another track clears what belonged to the last selection
    board.locator("#lb-track").get_by_label(re.compile("Track 2")).check()
    expect(details).to_have_text("")


def test_psnr_mode_and_another_test_set(board):
    expect = playwright.expect
    # a hover names the entry and its metrics
    board.locator(POINTS).first.hover(force=True)
    expect(board.locator("#leaderboard-plot .hoverlayer")).to_contain_text("PSNR")
    # PSNR mode: the same markers, plus the dotted score lines (lines, no markers)
    board.locator("#lb-y").get_by_label("PSNR RGB (dB)").check()
    expect(board.locator("#leaderboard-plot .ytitle")).to_have_text("PSNR RGB (dB)")
    expect(board.locator("#leaderboard-plot .legendtext", has_text="Pareto front")).to_have_count(1)
    expect(board.locator(POINTS)).to_have_count(TEAMS_AND_BICUBIC)
    expect(board.locator("#leaderboard-plot .scatterlayer .trace .js-line")).not_to_have_count(0)
    shot(board, "leaderboard_psnr")
    # another test set of Track 2, from the dropdown the track change refilled
    board.locator("#lb-track").get_by_label(re.compile("Track 2")).check()
    expect(board.locator("#leaderboard-plot .gtitle")).to_contain_text("Track 2")
    board.locator("#lb-dataset input").click()
    board.get_by_role("option", name="Urban100_10").click()
    expect(board.locator("#leaderboard-plot .gtitle")).to_contain_text("Urban100_10")
    expect(board.locator(POINTS)).to_have_count(2)
    expect(board.locator(ROWS)).to_have_count(2)


def test_a_row_not_timed_at_4k_is_shown_only_when_asked_and_marked(browser, tmp_path):
    """A submission timed with a shortened protocol (960x540) would outrank its own 4K row on
    the runtime axis: the page leaves it out unless the reader asks, then shows it marked,
    hollow in the plot, with no score and never on the front."""
    import json

    from rtsr.leaderboard.sources import EVALUATIONS_DIR
    from rtsr.scoring import score
    from tests.support.app import RunningApp

    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    doc["model"]["name"] = "Shortcut"
    doc["submission"] = {"request": "req-00001", "team": "Team Short"}
    runtime = doc["runtime"]
    runtime["output_size"], runtime["input_size"] = [540, 960], [270, 480]
    runtime["runtime"]["mean_ms"] /= 16
    runtime["bicubic"]["mean_ms"] /= 16
    doc["score"] = score(
        doc["metrics"]["mean"]["psnr_rgb"], runtime["runtime"]["mean_ms"], doc["bicubic"]["mean"]["psnr_rgb"]
    )
    results = tmp_path / "store" / "results" / "req-00001"
    results.mkdir(parents=True)
    (results / "Set5.json").write_text(json.dumps(doc))
    running = RunningApp(env={"RTSR_STORE": str(tmp_path / "store")}, log=tmp_path / "app.log").wait_ready()
    try:
        context, page = open_page(browser, running, VIEWPORTS["desktop"])
        page.get_by_role("tab", name="Leaderboard").click()
        page.locator("#lb-dataset input").first.click()
        page.get_by_role("option", name="Set5", exact=True).click()
        # Set5's ranked rows: RTSRN x2 and Bicubic x2; the shortcut is not among them
        playwright.expect(page.locator(ROWS)).to_have_count(2)
        playwright.expect(page.locator("#leaderboard-table")).not_to_contain_text("Shortcut")
        page.locator("#lb-unranked input").check()
        playwright.expect(page.locator(ROWS)).to_have_count(3)
        playwright.expect(page.locator(ROWS).filter(has_text="Shortcut")).to_have_count(1)
        row = page.locator(ROWS).filter(has_text="Shortcut")
        assert "(not 4K)" in row.inner_text() and "★" not in row.inner_text()
        assert row.locator("td").nth(1).inner_text() == "—"  # no score
        # in PSNR mode it is a hollow point of its own trace, off the front
        page.get_by_label("PSNR RGB (dB)").check()
        playwright.expect(page.locator("#leaderboard-plot")).to_contain_text("Not timed at 4K (not ranked)")
        unranked = [t for t in traces(page) if t["name"] == "Not timed at 4K (not ranked)"]
        assert (
            unranked
            and unranked[0]["method"] == ["Shortcut · Team Short · req-00001"]
            and unranked[0]["symbol"] == ["circle-open"]
        )
        assert "Shortcut" not in stars(page)
        screenshot(page, "leaderboard_unranked_desktop")
        context.close()
    finally:
        running.stop()
