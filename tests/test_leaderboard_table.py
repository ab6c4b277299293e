import csv
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from rtsr.errors import InputError
from rtsr.leaderboard import (
    COLUMNS,
    EVALUATIONS_DIR,
    OFFICIAL_CSV,
    SOURCE_EVALUATED,
    SOURCE_OFFICIAL,
    column,
    datasets,
    filter_leaderboard,
    load_evaluations,
    load_leaderboard,
    load_leaderboard_leniently,
    load_official,
    pareto_front,
    to_csv,
)
from rtsr.scoring import psnr_for_score, score
from tests.conftest import ROOT

EXPECTED_KEYS = [
    "track",
    "scale",
    "method",
    "source",
    "dataset",
    "device",
    "precision",
    "score",
    "psnr_rgb",
    "psnr_y",
    "ssim_rgb",
    "ssim_y",
    "psnr_gain",
    "runtime_ms",
    "relative_runtime",
    "fps",
    "params_m",
    "flops_g",
    "is_reference",
    "model_id",
]


def _raw_documents():
    return {path.name: json.loads(path.read_text()) for path in sorted(EVALUATIONS_DIR.glob("*.json"))}


def _row(df, **match):
    keep = np.ones(len(df), dtype=bool)
    for key, value in match.items():
        keep &= (df[key] == value).to_numpy()
    rows = df[keep]
    assert len(rows) == 1, (match, len(rows))
    return rows.iloc[0]


def _assert_dtypes(df):
    assert list(df.columns) == EXPECTED_KEYS
    for c in COLUMNS:
        dtype = df[c.key].dtype
        if c.kind == "str":
            assert pd.api.types.is_string_dtype(dtype), (c.key, dtype)
        else:
            assert dtype.kind == {"int": "i", "float": "f", "bool": "b"}[c.kind], (c.key, dtype)


# --- columns ----------------------------------------------------------------------------------


def test_columns_are_named_once_in_display_order():
    assert [c.key for c in COLUMNS] == EXPECTED_KEYS
    assert all(c.label and c.description for c in COLUMNS)
    assert column("psnr_gain").kind == "float"
    with pytest.raises(KeyError, match="nope"):
        column("nope")


def test_default_paths_are_the_repos_leaderboard():
    assert OFFICIAL_CSV == ROOT / "leaderboard" / "ntire23_track1_final.csv"
    assert EVALUATIONS_DIR == ROOT / "leaderboard" / "evaluations"


# --- the official table -------------------------------------------------------------------------


def test_official_table_has_24_teams_and_the_bicubic_reference():
    df = load_official()
    _assert_dtypes(df)
    assert len(df) == 25
    assert df["is_reference"].sum() == 1
    assert (df["source"] == SOURCE_OFFICIAL).all()
    assert (df["track"] == 1).all() and (df["scale"] == 2).all()
    assert (df["dataset"] == "NTIRE 2023 test").all()
    assert (df["device"] == "NVIDIA RTX 3090 (reported)").all()
    assert (df["precision"] == "fp16").all()
    assert (df["model_id"] == "").all()
    assert df["ssim_y"].isna().all()


def test_official_rows_carry_the_csvs_values():
    df = load_official()
    # Read by hand from leaderboard/ntire23_track1_final.csv.
    first = _row(df, method="Noah TerminalVision")
    assert not first["is_reference"]
    assert first["score"] == 24.13
    assert first["params_m"] == 2.3523
    assert first["flops_g"] == 9.062
    assert first["psnr_rgb"] == 35.02
    assert first["psnr_y"] == 37.74
    assert first["ssim_rgb"] == 0.8957
    assert first["runtime_ms"] == 3.19
    assert first["psnr_gain"] == pytest.approx(35.02 - 33.92)
    assert first["relative_runtime"] == pytest.approx(3.19 / 0.46)
    assert first["fps"] == pytest.approx(1000 / 3.19)

    last = _row(df, method="Organizers' baseline")
    assert (last["score"], last["params_m"], last["flops_g"]) == (9.27, 0.0445, 171.99)
    assert (last["psnr_rgb"], last["psnr_y"], last["ssim_rgb"], last["runtime_ms"]) == (34.22, 37.01, 0.8854, 7.09)


def test_official_reference_scores_zero_with_no_gain():
    bicubic = _row(load_official(), method="Bicubic")
    assert bicubic["is_reference"]
    assert bicubic["score"] == 0.0
    assert bicubic["psnr_gain"] == 0.0
    assert bicubic["relative_runtime"] == 1.0
    assert (bicubic["psnr_rgb"], bicubic["psnr_y"], bicubic["ssim_rgb"], bicubic["runtime_ms"]) == (
        33.92,
        36.66,
        0.8829,
        0.46,
    )
    # The table leaves bicubic's size empty: unknown, not zero.
    assert math.isnan(bicubic["params_m"]) and math.isnan(bicubic["flops_g"])


def test_official_scores_are_kept_as_reported_not_recomputed():
    df = load_official()
    teams = df[~df["is_reference"]]
    with OFFICIAL_CSV.open() as f:
        reported = {r["team"]: float(r["score"]) for r in csv.DictReader(f) if r["score"]}
    assert dict(zip(teams["method"], teams["score"], strict=True)) == reported


def test_official_table_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.csv"
    with pytest.raises(InputError, match=re.escape("absent.csv")):
        load_official(missing)
    no_column = tmp_path / "no_runtime.csv"
    no_column.write_text("team,score,params_m,flops_g,psnr_rgb,psnr_y,ssim_rgb\nBicubic,,,,33.92,36.66,0.8829\n")
    with pytest.raises(InputError, match=r"no_runtime\.csv: missing column\(s\) runtime_ms"):
        load_official(no_column)
    no_reference = tmp_path / "no_bicubic.csv"
    no_reference.write_text(OFFICIAL_CSV.read_text().replace("Bicubic,", "Nearest,"))
    with pytest.raises(InputError, match=re.escape("no_bicubic.csv: expected one 'Bicubic' row, found 0")):
        load_official(no_reference)
    text = tmp_path / "text.csv"
    text.write_text(OFFICIAL_CSV.read_text().replace("3.190", "fast"))
    with pytest.raises(InputError, match=re.escape("text.csv: column runtime_ms holds a non-number")):
        load_official(text)


# --- the evaluations ----------------------------------------------------------------------------


def test_evaluations_equal_the_raw_documents():
    df = load_evaluations()
    _assert_dtypes(df)
    documents = _raw_documents()
    assert len(documents) == 12
    assert len(df) == 12
    assert (df["source"] == SOURCE_EVALUATED).all()
    for name, doc in documents.items():
        row = _row(df, model_id=doc["model"]["id"], dataset=doc["dataset"]["name"])
        assert row["method"] == doc["model"]["name"], name
        assert row["track"] == doc["model"]["track"]
        assert row["scale"] == doc["model"]["scale"]
        assert row["device"] == doc["device"]
        assert row["precision"] == doc["precision"]
        for key in ("psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"):
            assert row[key] == doc["metrics"]["mean"][key], (name, key)
        assert row["score"] == doc["score"]
        assert row["psnr_gain"] == doc["psnr_gain"]
        assert row["runtime_ms"] == doc["runtime"]["runtime"]["mean_ms"]
        assert row["relative_runtime"] == doc["runtime"]["relative_to_bicubic"]
        assert row["fps"] == pytest.approx(1000 / doc["runtime"]["runtime"]["mean_ms"])
        assert row["params_m"] == pytest.approx(doc["model"]["params"] / 1e6)
        assert row["flops_g"] == pytest.approx(doc["model"]["flops"] / 1e9)
        assert row["is_reference"] == name.startswith("bicubic-"), name


def test_relative_runtime_is_the_ratio_measured_in_the_same_run():
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    row = _row(load_evaluations(), model_id="rtsrn-x2", dataset="Set5")
    expected = doc["runtime"]["runtime"]["mean_ms"] / doc["runtime"]["bicubic"]["mean_ms"]
    assert row["relative_runtime"] == pytest.approx(expected, rel=1e-12)
    assert row["relative_runtime"] == pytest.approx(50.76, abs=0.01)  # README's table says 50.8


def test_evaluated_reference_rows_score_zero():
    df = load_evaluations()
    bicubic = df[df["is_reference"]]
    assert sorted(set(bicubic["model_id"])) == ["bicubic-x2", "bicubic-x3"]
    assert len(bicubic) == 6
    assert (bicubic["score"] == 0.0).all() and (bicubic["psnr_gain"] == 0.0).all()


def test_infinity_is_read_back(tmp_path):
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    doc["metrics"]["mean"]["psnr_rgb"] = math.inf
    doc["psnr_gain"] = math.inf
    (tmp_path / "perfect.json").write_text(json.dumps(doc))
    assert "Infinity" in (tmp_path / "perfect.json").read_text()
    row = load_evaluations(tmp_path).iloc[0]
    assert row["psnr_rgb"] == math.inf and row["psnr_gain"] == math.inf


def test_missing_or_empty_folder_gives_no_rows(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        df = load_evaluations(folder)
        assert len(df) == 0
        _assert_dtypes(df)


def _copy_with(tmp_path, name, change):
    folder = tmp_path / "evaluations"
    folder.mkdir(exist_ok=True)
    shutil.copy(EVALUATIONS_DIR / "bicubic-x2_Set5.json", folder / "good.json")
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    (folder / name).write_text(change(doc))
    return folder


def _delete_relative(doc):
    del doc["runtime"]["relative_to_bicubic"]
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("broken.json", lambda doc: json.dumps(doc)[:-20], "not a readable JSON file"),
        ("metrics.json", lambda doc: json.dumps({**doc, "schema": "rtsr.metrics"}), "expected 'rtsr.evaluate' v1"),
        ("future.json", lambda doc: json.dumps({**doc, "schema_version": 2}), "expected 'rtsr.evaluate' v1"),
        ("list.json", lambda doc: json.dumps([doc]), "top level is not an object"),
        ("partial.json", _delete_relative, "no runtime.relative_to_bicubic"),
        ("text.json", lambda doc: json.dumps({**doc, "score": "high"}), "score is not a number"),
    ],
)
def test_bad_documents_raise_one_line_naming_the_file(tmp_path, name, change, needle):
    folder = _copy_with(tmp_path, name, change)
    for load in (lambda: load_evaluations(folder), lambda: load_leaderboard(evaluations_dir=folder)):
        with pytest.raises(InputError) as error:
            load()
        message = str(error.value)
        assert len(message.splitlines()) == 1, message
        assert name in message and needle in message, message


# --- the whole table ----------------------------------------------------------------------------


def test_leaderboard_is_official_then_evaluated():
    df = load_leaderboard()
    _assert_dtypes(df)
    assert len(df) == 25 + 12
    assert list(df.index) == list(range(37))
    assert (df["source"].iloc[:25] == SOURCE_OFFICIAL).all()
    assert (df["source"].iloc[25:] == SOURCE_EVALUATED).all()
    assert df["method"].iloc[1] == "Noah TerminalVision"


def test_leaderboard_without_a_source(tmp_path):
    only_official = load_leaderboard(evaluations_dir=tmp_path / "absent")
    assert len(only_official) == 25
    _assert_dtypes(only_official)
    only_evaluated = load_leaderboard(official_csv=None)
    assert len(only_evaluated) == 12
    nothing = load_leaderboard(official_csv=None, evaluations_dir=None)
    assert len(nothing) == 0
    _assert_dtypes(nothing)


# --- filters ------------------------------------------------------------------------------------


def test_filter_by_track_source_dataset_and_query():
    df = load_leaderboard()
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
    df = load_leaderboard()
    assert datasets(df, 1) == ["NTIRE 2023 test", "Set5", "Set14", "Urban100_10"]
    assert datasets(df, 2) == ["Set5", "Set14", "Urban100_10"]
    assert datasets(df.iloc[:0], 1) == []


# --- Pareto front -------------------------------------------------------------------------------


def _brute_force_front(df, y, x):
    result = []
    for i in range(len(df)):
        a = df.iloc[i]
        if a["is_reference"] or not math.isfinite(a[x]) or math.isnan(a[y]):
            result.append(False)
            continue
        dominated = False
        for j in range(len(df)):
            b = df.iloc[j]
            if j == i or b["is_reference"] or not math.isfinite(b[x]) or math.isnan(b[y]):
                continue
            if b[x] <= a[x] and b[y] >= a[y] and (b[x] < a[x] or b[y] > a[y]):
                dominated = True
                break
        result.append(not dominated)
    return result


@pytest.mark.parametrize("y", ["score", "psnr_rgb", "psnr_y", "ssim_rgb"])
@pytest.mark.parametrize("x", ["runtime_ms", "relative_runtime", "params_m"])
def test_pareto_front_equals_brute_force_on_the_official_table(y, x):
    df = load_official()
    front = pareto_front(df, y, x)
    assert front.index.equals(df.index)
    assert front.tolist() == _brute_force_front(df, y, x)


def test_pareto_front_of_the_official_table_by_hand():
    df = load_official()
    by_score = df.loc[pareto_front(df, "score"), "method"]
    # ALONG is the fastest team (1.91 ms), Noah TerminalVision has the best score.
    assert sorted(by_score) == ["ALONG", "Noah TerminalVision"]
    by_psnr = df.loc[pareto_front(df, "psnr_rgb"), "method"]
    # z6 ties Noah TerminalVision's 35.02 dB at 11.19 ms instead of 3.19: dominated.
    assert sorted(by_psnr) == ["ALONG", "ECNU SR", "Noah TerminalVision", "R.I.P. ShopeeVideo", "RTVSR"]


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
    # 10 and 14 are the same point (both on the front); 12 loses to 11 at equal runtime, 13 to
    # 11 at equal score; 15 is fastest; the reference 16 neither counts nor dominates; NaN is out.
    assert front.to_dict() == {10: True, 11: True, 12: False, 13: False, 14: True, 15: True, 16: False, 17: False}
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
    df = load_leaderboard()
    path = to_csv(df, tmp_path / "leaderboard.csv")
    with path.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == EXPECTED_KEYS
    assert len(rows) == 1 + 37
    assert rows[2][EXPECTED_KEYS.index("method")] == "Noah TerminalVision"
    assert float(rows[2][EXPECTED_KEYS.index("score")]) == 24.13
    assert rows[2][EXPECTED_KEYS.index("ssim_y")] == ""


# --- psnr_for_score -----------------------------------------------------------------------------


def test_psnr_for_score_by_hand():
    # 1 dB over bicubic at 4 ms: 2 * 2**1 / (0.1 * 2) = 20
    assert psnr_for_score(20.0, 4.0, 0.0) == pytest.approx(1.0)
    assert psnr_for_score(40.0, 4.0, 30.0) == pytest.approx(32.0)
    assert psnr_for_score(10.0, 16.0, 30.0) == pytest.approx(31.0)
    # score 10 at 1 ms needs no gain at all: 2 * 2**0 / (0.1 * 1) = 20 > 10, so below bicubic
    assert psnr_for_score(10.0, 1.0, 30.0) == pytest.approx(29.0)


def test_psnr_for_score_recovers_the_official_psnr():
    # Noah TerminalVision: 24.13 at 3.19 ms over bicubic's 33.92 dB, reported 35.02 dB; the
    # table rounds the PSNRs to 0.01 dB and the score to 0.01.
    assert psnr_for_score(24.13, 3.19, 33.92) == pytest.approx(35.02, abs=0.011)


@pytest.mark.parametrize("runtime", [0.3, 1.0, 3.19, 17.0, 92.79, 8681.0])
@pytest.mark.parametrize("level", [0.5, 2.0, 24.13, 100.0])
def test_psnr_for_score_round_trips_through_score(runtime, level):
    psnr = psnr_for_score(level, runtime, 33.92)
    if psnr > 33.92:
        assert score(psnr, runtime, 33.92) == pytest.approx(level, rel=1e-12)
    else:
        # unreachable: any gain at this runtime scores more than the level
        assert score(33.92 + 1e-9, runtime, 33.92) > level


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((0.0, 4.0, 30.0), "score"),
        ((-1.0, 4.0, 30.0), "score"),
        ((math.inf, 4.0, 30.0), "score"),
        ((20.0, 0.0, 30.0), "runtime"),
        ((20.0, math.nan, 30.0), "runtime"),
        ((20.0, 4.0, math.nan), "PSNR"),
    ],
)
def test_psnr_for_score_refuses_bad_arguments(args, needle):
    with pytest.raises(ValueError, match=needle):
        psnr_for_score(*args)


def test_lenient_loading_leaves_out_each_unreadable_file_and_says_so(tmp_path):
    shutil.copytree(EVALUATIONS_DIR, tmp_path / "evaluations")
    (tmp_path / "evaluations" / "broken.json").write_text("{")
    (tmp_path / "evaluations" / "other.json").write_text('{"schema": "something else"}')
    frame, errors = load_leaderboard_leniently(OFFICIAL_CSV, tmp_path / "evaluations")
    pd.testing.assert_frame_equal(frame, load_leaderboard(OFFICIAL_CSV, EVALUATIONS_DIR))
    assert len(errors) == 2
    assert errors[0].startswith(f"{tmp_path / 'evaluations' / 'broken.json'}: not a readable JSON file")
    assert errors[1].startswith(f"{tmp_path / 'evaluations' / 'other.json'}: schema 'something else'")

    frame, errors = load_leaderboard_leniently(tmp_path / "missing.csv", EVALUATIONS_DIR)
    pd.testing.assert_frame_equal(frame, load_leaderboard(None, EVALUATIONS_DIR))
    assert len(errors) == 1 and "missing.csv" in errors[0]


def test_the_readme_documents_every_column():
    readme = (ROOT / "README.md").read_text()
    for c in COLUMNS:
        assert f"| `{c.key}` | {c.label} | {c.description} |" in readme, c.key
