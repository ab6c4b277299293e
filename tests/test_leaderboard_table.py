import csv
import math

import numpy as np
import pandas as pd
import pytest

from rtsr.leaderboard.columns import COLUMNS, TABLE_KEYS, column
from rtsr.leaderboard.sources import (
    SOURCE_EVALUATED,
    SOURCE_OFFICIAL,
    EvaluationFolder,
    OfficialTable,
    default_sources,
    load_leaderboard,
)
from rtsr.leaderboard.table import (
    datasets,
    filter_leaderboard,
    find_row,
    matching,
    pareto_front,
    row_key,
    shown_table,
    table_columns,
    to_csv,
)
from rtsr.results.metrics import METRICS
from tests.test_leaderboard_columns import EXPECTED_KEYS
from tests.test_leaderboard_sources import SUBMISSION, _store_results


def _leaderboard():
    frame, problems = load_leaderboard()
    assert problems == []
    return frame


def _official():
    return OfficialTable().read()


# --- filters ------------------------------------------------------------------------------------


def test_filter_by_track_source_dataset_and_query():
    df = _leaderboard()
    track2 = filter_leaderboard(df, track=2)
    assert len(track2) == 6 and (track2["scale"] == 3).all()
    assert list(track2.index) == list(range(6))
    assert len(filter_leaderboard(df, track=1)) == 25 + 6
    assert len(filter_leaderboard(df, sources=[SOURCE_OFFICIAL])) == 25
    assert len(filter_leaderboard(df, sources=[SOURCE_EVALUATED])) == 12
    assert len(filter_leaderboard(df, sources=[])) == 0
    set5 = filter_leaderboard(df, track=1, dataset="Set5")
    assert sorted(set5["model_id"]) == ["bicubic-x2", "rtsrn-x2"]
    assert filter_leaderboard(df, query="  noah ")["method"].tolist() == ["Noah TerminalVision"]
    # the query also searches the device, and is plain text, not a pattern
    assert len(filter_leaderboard(df, query="epyc")) == 12
    assert len(filter_leaderboard(df, query="3090 (reported)")) == 25
    assert len(filter_leaderboard(df, query="R.I.P.")) == 1
    assert len(filter_leaderboard(df, query=".*")) == 0
    rtsrn = filter_leaderboard(df, track=2, sources=[SOURCE_EVALUATED], query="RTSRN")
    assert sorted(rtsrn["dataset"]) == ["Set14", "Set5", "Urban100_10"]
    assert filter_leaderboard(df).equals(df)


def test_datasets_official_first():
    df = _leaderboard()
    assert datasets(df, 1) == ["NTIRE 2023 test", "Set5", "Set14", "Urban100_10"]
    assert datasets(df, 2) == ["Set5", "Set14", "Urban100_10"]
    assert datasets(df.iloc[:0], 1) == []


# --- Pareto front -------------------------------------------------------------------------------


def _brute_force_front(df, y, x):
    result = []
    for i in range(len(df)):
        a = df.iloc[i]
        if not math.isfinite(a[x]) or math.isnan(a[y]):
            result.append(False)
            continue
        dominated = False
        for j in range(len(df)):
            b = df.iloc[j]
            if j == i or not math.isfinite(b[x]) or math.isnan(b[y]):
                continue
            if b[x] <= a[x] and b[y] >= a[y] and (b[x] < a[x] or b[y] > a[y]):
                dominated = True
                break
        result.append(not dominated)
    return result


@pytest.mark.parametrize("y", ["score", "psnr_rgb", "psnr_y", "ssim_rgb"])
@pytest.mark.parametrize("x", ["runtime_ms", "relative_runtime", "params_m"])
def test_pareto_front_equals_brute_force_on_the_official_table(y, x):
    df = _official()
    front = pareto_front(df, y, x)
    assert front.index.equals(df.index)
    assert front.tolist() == _brute_force_front(df, y, x)


def test_pareto_front_of_the_official_table_by_hand():
    df = _official()
    by_score = df.loc[pareto_front(df, "score"), "method"]
    # ALONG is the fastest team (1.91 ms), Noah TerminalVision has the best score; Bicubic
    # (0.46 ms) is faster than every team, so it is on the front too, at score 0.
    assert sorted(by_score) == ["ALONG", "Bicubic", "Noah TerminalVision"]
    by_psnr = df.loc[pareto_front(df, "psnr_rgb"), "method"]
    # z6 ties Noah TerminalVision's 35.02 dB at 11.19 ms instead of 3.19: dominated.
    assert sorted(by_psnr) == ["ALONG", "Bicubic", "ECNU SR", "Noah TerminalVision", "R.I.P. ShopeeVideo", "RTVSR"]


def test_pareto_front_on_a_hand_made_frame():
    df = pd.DataFrame(
        {
            "runtime_ms": [1.0, 2.0, 2.0, 3.0, 1.0, 0.5, 0.2, 5.0],
            "score": [1.0, 3.0, 2.0, 3.0, 1.0, 0.5, 9.0, math.nan],
            "is_reference": [False, False, False, False, False, False, True, False],
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )
    front = pareto_front(df, "score")
    # The reference 16 takes part like any row: fastest and best, it dominates every other
    # row; NaN is out.
    assert front.to_dict() == {10: False, 11: False, 12: False, 13: False, 14: False, 15: False, 16: True, 17: False}
    # without it: 10 and 14 are the same point (both on the front); 12 loses to 11 at equal
    # runtime, 13 to 11 at equal score; 15 is fastest
    teams = pareto_front(df.drop(index=16), "score")
    assert teams.to_dict() == {10: True, 11: True, 12: False, 13: False, 14: True, 15: True, 17: False}
    assert front.tolist() == _brute_force_front(df, "score", "runtime_ms")
    assert not pareto_front(df.iloc[:0], "score").any()


def test_pareto_front_on_random_frames_equals_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        df = pd.DataFrame(
            {
                # few distinct values, so that ties in x and in y are common
                "runtime_ms": rng.integers(1, 6, n).astype(float),
                "psnr_rgb": rng.integers(30, 34, n).astype(float),
                "is_reference": rng.random(n) < 0.1,
            }
        )
        assert pareto_front(df, "psnr_rgb").tolist() == _brute_force_front(df, "psnr_rgb", "runtime_ms")


# --- CSV download -------------------------------------------------------------------------------


def test_to_csv_writes_keys_as_headers(tmp_path):
    df = _leaderboard()
    path = to_csv(df, tmp_path / "leaderboard.csv")
    with path.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == EXPECTED_KEYS
    assert len(rows) == 1 + 37
    assert rows[2][EXPECTED_KEYS.index("method")] == "Noah TerminalVision"
    assert float(rows[2][EXPECTED_KEYS.index("score")]) == 24.13
    assert rows[2][EXPECTED_KEYS.index("ssim_y")] == ""


def test_to_csv_has_the_submission_columns_as_plain_text(tmp_path):
    store = EvaluationFolder("Submissions", _store_results(tmp_path), recursive=True)
    df, _ = load_leaderboard([*default_sources(), store])
    path = to_csv(df, tmp_path / "leaderboard.csv")
    rows = list(csv.DictReader(path.open()))
    assert rows[-1]["team"] == "Team Fast" and rows[-1]["link"] == SUBMISSION["url"]
    assert rows[0]["link"] == ""


def test_a_row_timed_below_4k_is_never_on_the_front_and_can_be_left_out():
    """A row timed at another size has milliseconds that are not per 4K output: it may look
    faster than everything, and still never takes a place on the front."""
    df = pd.DataFrame(
        {
            "method": ["4K", "4K slower", "960x540"],
            "track": [1, 1, 1],
            "runtime_ms": [100.0, 200.0, 20.0],
            "psnr_rgb": [30.0, 31.0, 32.0],
            "is_reference": [False, False, False],
            "ranked": [True, True, False],
            "team": ["", "", ""],
            "device": ["GPU", "GPU", "GPU (timed at 960x540, not 4K)"],
        }
    )
    assert pareto_front(df, "psnr_rgb").tolist() == [True, True, False]
    assert list(filter_leaderboard(df, unranked=False)["method"]) == ["4K", "4K slower"]
    assert list(filter_leaderboard(df)["method"]) == ["4K", "4K slower", "960x540"]


def test_pareto_front_takes_each_metric_the_way_it_is_better():
    df = pd.DataFrame(
        {
            "params_m": [1.0, 2.0, 3.0],
            "fps": [10.0, 30.0, 20.0],
            "runtime_ms": [100.0, 33.0, 50.0],
            "is_reference": [False, False, False],
        }
    )
    # fps is better higher: the 30 FPS row dominates the 20 FPS one, whichever axis it is on
    assert pareto_front(df, "fps", "params_m").tolist() == [True, True, False]
    assert pareto_front(df, "params_m", "fps").tolist() == [True, True, False]
    # runtime is better lower: the 33 ms row dominates both others at the same axis
    assert pareto_front(df, "fps", "runtime_ms").tolist() == [False, True, False]
    with pytest.raises(KeyError, match="no metric 'method'"):
        pareto_front(df.assign(method=[1.0, 2.0, 3.0]), "method", "params_m")


# --- the page's table ---------------------------------------------------------------------------


def test_shown_table_puts_what_people_compare_next_to_the_method(tmp_path):
    store = EvaluationFolder("Submissions", _store_results(tmp_path), recursive=True)
    df, _ = load_leaderboard([*default_sources(), store])
    table = shown_table(df)
    labels = list(table.columns)
    assert labels[:7] == ["Method", "Score", "PSNR RGB (dB)", "PSNR gain (dB)", "Runtime (ms)", "× bicubic", "FPS"]
    assert labels == [column(k).label for k in TABLE_KEYS]  # every column has a value somewhere here
    assert {c.key for c in COLUMNS if c.shown} == set(TABLE_KEYS)
    # printed as the specification formats them, the same digits in every row of a column
    noah = table[table["Method"] == "Noah TerminalVision"].iloc[0]
    assert noah["Score"] == "24.13" and noah["PSNR gain (dB)"] == "+1.1000" and noah["Link"] == ""
    assert noah["FPS"] == "313.5" and noah["× bicubic"] == "6.93" and noah["SSIM Y"] == "—"
    bicubic = table[table["Method"] == "Bicubic"].iloc[0]
    assert bicubic["FPS"] == "2173.9" and bicubic["Params (M)"] == "—"  # was 2173.913 and NaN
    rtsrn = table[table["Method"] == "RTSRN x2"]
    for m in METRICS:
        assert rtsrn[m.label].iloc[0] == format(df.loc[rtsrn.index[0], m.key], m.fmt), m.key
    # a submission links to the Hub at the commit measured, named org/name@commit
    submitted = table[table["Source"] == "Submissions"].iloc[0]
    assert submitted["Link"] == "team/fastnet@0123456"
    assert submitted["Team"] == "Team Fast" and submitted["License"] == "apache-2.0"
    # the frame itself, and so the CSV, keeps full precision
    assert df["link"].iloc[-1] == SUBMISSION["url"]
    assert df.loc[df["method"] == "Bicubic", "fps"].iloc[0] == pytest.approx(1000 / 0.46)


def test_shown_table_leaves_out_columns_empty_for_the_selection():
    official = _official()
    labels = list(shown_table(official).columns)
    # the challenge published no SSIM on Y, and its rows have no team, license or link
    for empty in ("SSIM Y", "Team", "License", "Link"):
        assert empty not in labels
    assert [c.key for c in table_columns(official)] == [
        k for k in TABLE_KEYS if k not in ("ssim_y", "team", "license", "link")
    ]
    evaluated = filter_leaderboard(_leaderboard(), sources=[SOURCE_EVALUATED])
    assert "SSIM Y" in shown_table(evaluated).columns
    # the method stays even with no rows
    assert list(shown_table(official.iloc[:0]).columns) == ["Method"]


def test_matching_and_row_keys_survive_a_reload(tmp_path):
    df = _leaderboard()
    assert matching(df, "").all() and matching(df, "  ").all()
    assert df.loc[matching(df, "RTSR"), "method"].tolist() == ["NJUST-RTSR", *["RTSRN x2"] * 3, *["RTSRN x3"] * 3]
    again = _leaderboard()
    for i in (0, 5, len(df) - 1):
        key = row_key(df.iloc[i])
        found = find_row(again, key)
        assert found is not None and found["method"] == df.iloc[i]["method"]
        assert found["dataset"] == df.iloc[i]["dataset"]
    assert len({row_key(r) for _, r in df.iterrows()}) == len(df)
    assert find_row(df, '["rtsr evaluate", "../../etc/passwd"]') is None


def test_search_finds_a_team_and_test_sets_of_every_source(tmp_path):
    store = EvaluationFolder("Submissions", _store_results(tmp_path), recursive=True)
    df, _ = load_leaderboard([*default_sources(), store])
    assert filter_leaderboard(df, query="team fast")["source"].tolist() == ["Submissions", "Submissions"]
    assert len(filter_leaderboard(df, sources=["Submissions"], track=2)) == 1
    # the first source's test set first, then every other source's by name
    assert datasets(df, 1) == ["NTIRE 2023 test", "Set5", "Set14", "Urban100_10"]
    only_store = filter_leaderboard(df, sources=["Submissions"])
    assert datasets(only_store) == ["Set5", "Set14"]
