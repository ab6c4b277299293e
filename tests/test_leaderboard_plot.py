import math
import re

import pandas as pd
import pytest

from rtsr.leaderboard import METRICS, filter_leaderboard, load_leaderboard, metric
from rtsr.leaderboard.plot import (
    EMPTY_MESSAGE,
    HOVER_KEYS,
    NO_MATCH_MESSAGE,
    PARETO_NAME,
    REFERENCE_NAME,
    leaderboard_figure,
    score_levels,
)
from rtsr.leaderboard.sources import SOURCE_EVALUATED, SOURCE_OFFICIAL
from rtsr.scoring import score

#: Read by hand from leaderboard/ntire23_track1_final.csv.
BICUBIC_PSNR, BICUBIC_MS = 33.92, 0.46
#: Pareto-optimal teams of Track 1 by runtime, and their runtimes in ms: ALONG is the fastest
#: team, Noah TerminalVision the best score, ECNU SR and R.I.P. ShopeeVideo the best PSNRs.
FRONT_BY_SCORE = {"ALONG": 1.91, "Noah TerminalVision": 3.19}
FRONT_BY_PSNR = {
    "ALONG": 1.91,
    "RTVSR": 2.24,
    "Noah TerminalVision": 3.19,
    "ECNU SR": 25.23,
    "R.I.P. ShopeeVideo": 29.73,
}
MODES = [(y, x) for y in ("score", "psnr_rgb") for x in ("runtime_ms", "relative_runtime")]


@pytest.fixture(scope="module")
def leaderboard():
    frame, problems = load_leaderboard()
    assert problems == []
    return frame


@pytest.fixture(scope="module")
def official(leaderboard):
    return filter_leaderboard(leaderboard, track=1, dataset="NTIRE 2023 test")


def _marker_traces(figure):
    return [t for t in figure.data if t.mode and "markers" in t.mode]


def _iso_traces(figure):
    return [t for t in figure.data if t.name and t.name.startswith("score = ")]


@pytest.mark.parametrize(("y", "x"), MODES)
def test_one_marker_per_row_official(official, y, x):
    figure = leaderboard_figure(official, y=y, x=x)
    markers = _marker_traces(figure)
    assert sum(len(t.x) for t in markers) == len(official) == 25
    assert {t.name for t in markers} == {SOURCE_OFFICIAL, REFERENCE_NAME}
    # everything else is lines only
    assert all(t.mode == "lines" for t in figure.data if t not in markers)


@pytest.mark.parametrize("dataset", ["Set5", "Set14", "Urban100_10"])
@pytest.mark.parametrize(("y", "x"), MODES)
def test_one_marker_per_row_evaluations(leaderboard, dataset, y, x):
    rows = filter_leaderboard(leaderboard, track=2, dataset=dataset)
    assert len(rows) == 2
    figure = leaderboard_figure(rows, y=y, x=x)
    assert sum(len(t.x) for t in _marker_traces(figure)) == 2
    reference = next(t for t in figure.data if t.name == REFERENCE_NAME)
    assert len(reference.x) == 1
    if y == "score":
        assert list(reference.y) == [0.0]


def test_mixed_sources_get_one_trace_each(leaderboard, official):
    set5 = filter_leaderboard(leaderboard, track=1, dataset="Set5")
    # the same dataset label on both, to plot them together as the app never would
    rows = pd.concat([official, set5.assign(dataset="NTIRE 2023 test")], ignore_index=True)
    figure = leaderboard_figure(rows, y="psnr_rgb", x="relative_runtime")
    markers = _marker_traces(figure)
    assert sum(len(t.x) for t in markers) == len(rows) == 27
    by_name = {t.name: len(t.x) for t in markers}
    assert by_name == {SOURCE_OFFICIAL: 24, SOURCE_EVALUATED: 1, REFERENCE_NAME: 2}


def _hover(trace, method):
    """The hover fields of ``method``'s marker in ``trace``, by name."""
    (fields,) = [row for row in trace.customdata if row[HOVER_KEYS.index("method")] == method]
    return dict(zip(HOVER_KEYS, fields, strict=True))


def test_hover_says_what_each_point_is(official):
    figure = leaderboard_figure(official)
    entries = next(t for t in figure.data if t.name == SOURCE_OFFICIAL)
    noah = _hover(entries, "Noah TerminalVision")
    assert (noah["score"], noah["psnr_rgb"], noah["runtime_ms"]) == ("24.13", "35.0200", "3.19")
    assert noah["device"] == "NVIDIA RTX 3090 (reported)" and noah["precision"] == "fp16"
    assert noah["ssim_y"] == "—"  # SSIM Y is not reported
    # every metric of the specification the official table reports, labelled, each field looked
    # up by its name; SSIM Y, which it does not report, has no line of "—" in its hover
    for m in METRICS:
        line = f"{m.label}: %{{customdata[{HOVER_KEYS.index(m.key)}]}}"
        assert (line in entries.hovertemplate) == (m.key != "ssim_y"), m.key
        assert noah[m.key] == m.text(official.loc[official["method"] == "Noah TerminalVision", m.key].iloc[0])
    assert f"%{{customdata[{HOVER_KEYS.index('device')}]}}" in entries.hovertemplate
    reference = next(t for t in figure.data if t.name == REFERENCE_NAME)
    assert _hover(reference, "Bicubic")["params_m"] == "—"  # the table leaves it empty


def test_hover_names_the_team_of_a_submission(leaderboard):
    rows = filter_leaderboard(leaderboard, track=1, dataset="Set5").assign(team=["", "Team Fast"])
    figure = leaderboard_figure(rows)
    entries = next(t for t in figure.data if t.name == SOURCE_EVALUATED)
    assert _hover(entries, "RTSRN x2")["team"] == " (Team Fast)"
    assert _hover(next(t for t in figure.data if t.name == REFERENCE_NAME), "Bicubic x2")["team"] == ""
    # our own evaluations report SSIM Y: their hover has its line
    assert f"SSIM Y: %{{customdata[{HOVER_KEYS.index('ssim_y')}]}}" in entries.hovertemplate


def test_a_queued_entry_is_named_once_with_its_team(leaderboard):
    """A queued submission's method names its team already (schema.SubmissionRecord.label): the
    hover does not say it twice."""
    rows = filter_leaderboard(leaderboard, track=1, dataset="Set5")
    named = "RTSRN x2 · Team Fast · req-00007"
    rows = rows.assign(method=[rows["method"].iloc[0], named], team=["", "Team Fast"])
    entries = next(t for t in leaderboard_figure(rows).data if t.name == SOURCE_EVALUATED)
    assert _hover(entries, named)["team"] == ""


def test_a_source_keeps_its_colour_whichever_are_shown(leaderboard):
    rows = filter_leaderboard(leaderboard, track=1, dataset="Set5")
    names = [SOURCE_OFFICIAL, SOURCE_EVALUATED, "Submissions"]
    alone = leaderboard_figure(rows, sources=names)
    entries = next(t for t in alone.data if t.name == SOURCE_EVALUATED)
    assert entries.marker.color == "#d62728"  # the second source's, though the first is not shown
    store = rows.assign(source="Submissions")
    figure = leaderboard_figure(store, sources=names)
    assert next(t for t in figure.data if t.name == "Submissions").marker.color == "#2ca02c"


@pytest.mark.parametrize(("y", "front"), [("score", FRONT_BY_SCORE), ("psnr_rgb", FRONT_BY_PSNR)])
def test_pareto_line_goes_through_the_front_only(official, y, front):
    figure = leaderboard_figure(official, y=y)
    (line,) = [t for t in figure.data if t.name == PARETO_NAME]
    assert line.mode == "lines"
    # Bicubic, faster than every team, is on the front too
    assert list(line.x) == [BICUBIC_MS, *sorted(front.values())]
    # the front's points are highlighted in the entries' trace
    entries = next(t for t in figure.data if t.name == SOURCE_OFFICIAL)
    stars = sorted(x for x, symbol in zip(entries.x, entries.marker.symbol, strict=True) if symbol == "star")
    assert stars == sorted(front.values())
    # and the reference is starred when it is on the front
    reference = next(t for t in figure.data if t.name == REFERENCE_NAME)
    assert list(reference.marker.symbol) == ["star-diamond"]


def test_a_search_fades_rows_and_keeps_the_front_and_the_reference(official):
    """Searching "RTSR" matches NJUST-RTSR only: it must not become Pareto-optimal, and
    Bicubic and the whole selection's front stay."""
    found = official["method"].str.contains("RTSR")
    assert official.loc[found, "method"].tolist() == ["NJUST-RTSR"]
    whole = leaderboard_figure(official)
    searched = leaderboard_figure(official, highlight=found)
    line = next(t for t in searched.data if t.name == PARETO_NAME)
    assert list(line.x) == list(next(t for t in whole.data if t.name == PARETO_NAME).x)
    entries = next(t for t in searched.data if t.name == SOURCE_OFFICIAL)
    assert len(entries.x) == len(official) - 1  # every team is still drawn
    opacity = dict(zip((_hover_name(c) for c in entries.customdata), entries.marker.opacity, strict=True))
    assert opacity.pop("NJUST-RTSR") == 1.0 and set(opacity.values()) == {0.15}
    symbols = dict(zip((_hover_name(c) for c in entries.customdata), entries.marker.symbol, strict=True))
    assert symbols["NJUST-RTSR"] == "circle" and symbols["ALONG"] == "star"
    # the legend takes the first point's style: a plain, matched marker
    assert entries.marker.opacity[0] == 1.0 and entries.marker.symbol[0] == "circle"
    reference = next(t for t in searched.data if t.name == REFERENCE_NAME)
    assert list(reference.marker.opacity) == [0.15]
    nothing = leaderboard_figure(official, highlight=official["method"] == "no such team")
    assert NO_MATCH_MESSAGE in [a.text for a in nothing.layout.annotations]


def _hover_name(customdata):
    return customdata[HOVER_KEYS.index("method")]


def test_fps_bands_only_against_gpu_rows(leaderboard, official):
    # our evaluations ran on a CPU: no bands, and the axis title says why
    cpu = filter_leaderboard(leaderboard, track=2, dataset="Set5")
    assert set(cpu["device_type"]) == {"cpu"}
    for x in ("runtime_ms", "relative_runtime"):
        figure = leaderboard_figure(cpu, x=x)
        assert _bands(figure) == []
        assert "no FPS bands: these runtimes are from a CPU" in figure.layout.xaxis.title.text
    # GPU and CPU rows in ms: the bands are the GPU rows'
    both = pd.concat([official, cpu.assign(dataset="NTIRE 2023 test", track=1)], ignore_index=True)
    figure = leaderboard_figure(both)
    assert [b[2] for b in _bands(figure)] == ["≥60 FPS", "30–60 FPS", "24–30 FPS"]
    assert "FPS bands: for the GPU rows" in figure.layout.xaxis.title.text
    # relative runtimes of several devices have no one bicubic to convert them
    assert _bands(leaderboard_figure(both, x="relative_runtime")) == []


def test_band_labels_alternate_so_that_narrow_bands_do_not_collide(official):
    shapes = sorted(leaderboard_figure(official).layout.shapes, key=lambda shape: shape.x1)
    assert [shape.label.textposition for shape in shapes] == ["top right", "middle right", "top right"]


def test_the_layout_fits_a_phone(official):
    layout = leaderboard_figure(official, title="Track 1 · NTIRE 2023 test").layout
    # the legend below the axes, in the container's coordinates (plotly makes room for it)
    assert (layout.legend.orientation, layout.legend.yref, layout.legend.y) == ("h", "container", 0)
    assert layout.xaxis.automargin and layout.yaxis.automargin
    # each line of the axis titles fits a phone (about 50 characters at this size)
    for axis in ("runtime_ms", "relative_runtime"):
        title = leaderboard_figure(official, x=axis).layout.xaxis.title.text
        assert all(len(re.sub("<[^>]+>", "", part)) <= 50 for part in title.split("<br>")), title


def _bands(figure):
    return sorted(((s.x0, s.x1, s.label.text) for s in figure.layout.shapes), key=lambda band: band[1])


def test_fps_bands_in_ms(official):
    for y in ("score", "psnr_rgb"):
        bands = _bands(leaderboard_figure(official, y=y))
        assert [b[2] for b in bands] == ["≥60 FPS", "30–60 FPS", "24–30 FPS"]
        assert [b[1] for b in bands] == pytest.approx([1000 / 60, 1000 / 30, 1000 / 24])
        assert [b[0] for b in bands[1:]] == pytest.approx([1000 / 60, 1000 / 30])
        # the fastest band starts left of every point
        assert bands[0][0] < BICUBIC_MS


def test_fps_bands_in_relative_runtime_use_the_devices_bicubic(official):
    figure = leaderboard_figure(official, x="relative_runtime")
    assert [b[1] for b in _bands(figure)] == pytest.approx([1000 / 60 / 0.46, 1000 / 30 / 0.46, 1000 / 24 / 0.46])
    assert "NVIDIA RTX 3090 (reported)" in figure.layout.xaxis.title.text


def test_no_relative_fps_bands_across_devices(leaderboard, official):
    set5 = filter_leaderboard(leaderboard, track=1, dataset="Set5").assign(dataset="NTIRE 2023 test")
    rows = pd.concat([official, set5], ignore_index=True)
    figure = leaderboard_figure(rows, y="psnr_rgb", x="relative_runtime")
    assert len(figure.layout.shapes) == 0
    assert not _iso_traces(figure)
    assert "several devices" in figure.layout.xaxis.title.text
    # in ms, frame rates do not depend on the device
    assert len(leaderboard_figure(rows, y="psnr_rgb").layout.shapes) == 3


def test_axes_are_log_runtime_with_units(official):
    figure = leaderboard_figure(official, y="psnr_rgb", title="Track 1")
    assert figure.layout.xaxis.type == "log"
    assert "ms" in figure.layout.xaxis.title.text
    assert "dB" in figure.layout.yaxis.title.text
    assert figure.layout.yaxis.title.text == metric("psnr_rgb").label
    assert figure.layout.title.text == "Track 1"
    # log axis ranges are log10: the range covers every point
    low, high = (10**v for v in figure.layout.xaxis.range)
    assert low < official["runtime_ms"].min() and high > official["runtime_ms"].max()


@pytest.mark.parametrize("x", ["runtime_ms", "relative_runtime"])
def test_iso_score_curves_keep_their_score(official, x):
    figure = leaderboard_figure(official, y="psnr_rgb", x=x)
    curves = _iso_traces(figure)
    # Official scores run from 2.25 to 24.13: levels 2, 5, 10, 20, 50 bracket them.
    assert [t.name for t in curves] == ["score = 2", "score = 5", "score = 10", "score = 20", "score = 50"]
    ms_per_unit = 1.0 if x == "runtime_ms" else BICUBIC_MS
    for curve in curves:
        level = float(curve.name.removeprefix("score = "))
        assert curve.mode == "lines" and curve.line.dash == "dot" and curve.hoverinfo == "skip"
        assert len(curve.x) > 10
        for runtime, psnr in zip(curve.x, curve.y, strict=True):
            assert score(psnr, runtime * ms_per_unit, BICUBIC_PSNR) == pytest.approx(level, rel=1e-9)


def test_no_iso_score_curves_in_score_mode(official):
    assert not _iso_traces(leaderboard_figure(official, y="score"))


def test_iso_score_curves_for_evaluations_on_a_cpu(leaderboard):
    rows = filter_leaderboard(leaderboard, track=1, dataset="Set5")
    rtsrn = rows[~rows["is_reference"]].iloc[0]
    bicubic_psnr = rtsrn["psnr_rgb"] - rtsrn["psnr_gain"]
    curves = _iso_traces(leaderboard_figure(rows, y="psnr_rgb"))
    # RTSRN x2 scores 0.67 on this CPU: bracketed by 0.5 and 1
    assert [t.name for t in curves] == ["score = 0.5", "score = 1"]
    for curve in curves:
        level = float(curve.name.removeprefix("score = "))
        for runtime, psnr in zip(curve.x, curve.y, strict=True):
            assert score(psnr, runtime, bicubic_psnr) == pytest.approx(level, rel=1e-9)


def test_score_levels():
    assert score_levels([2.25, 24.13, 9.27]) == [2, 5, 10, 20, 50]
    assert score_levels([0.0, 0.636]) == [0.5, 1]
    assert score_levels([5.0]) == [5]
    assert score_levels([0.0, math.nan, math.inf]) == []
    many = score_levels([0.011, 970.0])
    assert len(many) == 5 and many[0] == 0.01 and many[-1] == 1000


def test_empty_selection_says_so(official):
    figure = leaderboard_figure(official.iloc[:0])
    assert len(figure.data) == 0
    assert [a.text for a in figure.layout.annotations] == [EMPTY_MESSAGE]


def test_bad_arguments(leaderboard, official):
    with pytest.raises(ValueError, match="y must be"):
        leaderboard_figure(official, y="ssim_rgb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x must be"):
        leaderboard_figure(official, x="fps")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one dataset"):
        leaderboard_figure(filter_leaderboard(leaderboard, track=1))


def test_rendered_points_equal_rows_in_a_browser(tmp_path, leaderboard, official, browser):
    selections = {
        "official_psnr": (official, "psnr_rgb", "runtime_ms"),
        "official_score": (official, "score", "relative_runtime"),
        "set14_x3": (filter_leaderboard(leaderboard, track=2, dataset="Set14"), "psnr_rgb", "runtime_ms"),
    }
    page = browser.new_page()
    for name, (rows, y, x) in selections.items():
        html = tmp_path / f"{name}.html"
        leaderboard_figure(rows, y=y, x=x).write_html(html, include_plotlyjs=True)
        page.goto(html.as_uri())
        page.wait_for_selector(".scatterlayer .trace")
        assert page.locator(".scatterlayer .trace path.point").count() == len(rows), name
    page.close()


def test_names_in_the_hover_are_text_not_markup(leaderboard):
    rows = filter_leaderboard(leaderboard, track=1, dataset="Set5")
    rows = rows.assign(method=["Bicubic x2", "<a href='https://x'>Net</a>"], team=["", "A & <b>B</b>"])
    entries = next(t for t in leaderboard_figure(rows).data if t.name == SOURCE_EVALUATED)
    (fields,) = entries.customdata
    hover = dict(zip(HOVER_KEYS, fields, strict=True))
    assert hover["method"] == "&lt;a href='https://x'&gt;Net&lt;/a&gt;"
    assert hover["team"] == " (A &amp; &lt;b&gt;B&lt;/b&gt;)"
