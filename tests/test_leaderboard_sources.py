import csv
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from rtsr.errors import InputError
from rtsr.leaderboard.sources import (
    EVALUATIONS_DIR,
    OFFICIAL_CSV,
    SOURCE_EVALUATED,
    SOURCE_OFFICIAL,
    EvaluationFolder,
    OfficialTable,
    default_sources,
    load_leaderboard,
)
from rtsr.results.metrics import METRICS
from tests.support.data import ROOT
from tests.test_leaderboard_columns import assert_leaderboard_dtypes

SUBMISSION = {
    "request": "r-0001",
    "repo": "team/fastnet",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "team": "Team Fast",
    "license": "apache-2.0",
    "url": "https://huggingface.co/team/fastnet/tree/0123456789abcdef0123456789abcdef01234567",
}


def _raw_documents():
    return {path.name: json.loads(path.read_text()) for path in sorted(EVALUATIONS_DIR.glob("*.json"))}


def _row(df, **match):
    keep = np.ones(len(df), dtype=bool)
    for key, value in match.items():
        keep &= (df[key] == value).to_numpy()
    rows = df[keep]
    assert len(rows) == 1, (match, len(rows))
    return rows.iloc[0]


def _official():
    frame, problems = OfficialTable().load()
    assert problems == []
    return frame


def _evaluations(folder=EVALUATIONS_DIR, **kwargs):
    frame, problems = EvaluationFolder(SOURCE_EVALUATED, folder, **kwargs).load()
    assert problems == []
    return frame


# --- the list of sources ------------------------------------------------------------------------


def test_default_paths_are_the_repos_leaderboard():
    assert OFFICIAL_CSV == ROOT / "leaderboard" / "ntire23_track1_final.csv"
    assert EVALUATIONS_DIR == ROOT / "leaderboard" / "evaluations"


def test_default_sources_are_the_official_table_then_our_evaluations(tmp_path):
    official, evaluated = default_sources()
    assert isinstance(official, OfficialTable) and official.path == OFFICIAL_CSV
    assert isinstance(evaluated, EvaluationFolder) and evaluated.folder == EVALUATIONS_DIR
    assert [s.name for s in default_sources()] == [SOURCE_OFFICIAL, SOURCE_EVALUATED]
    elsewhere = default_sources(tmp_path)
    assert elsewhere[0].path == tmp_path / OFFICIAL_CSV.name
    assert elsewhere[1].folder == tmp_path / "evaluations"


@pytest.mark.parametrize("source", default_sources(), ids=lambda s: s.name)
def test_every_source_loads_typed_rows_of_its_own_name(source):
    frame, problems = source.load()
    assert problems == []
    assert len(frame) and (frame["source"] == source.name).all()
    assert_leaderboard_dtypes(frame)
    assert source.description
    # every row says which device measured it
    assert (frame["device"].str.len() > 0).all()


# --- the official table -------------------------------------------------------------------------


def test_official_table_has_24_teams_and_the_bicubic_reference():
    df = _official()
    assert len(df) == 25
    assert df["is_reference"].sum() == 1
    assert (df["source"] == SOURCE_OFFICIAL).all()
    assert (df["track"] == 1).all() and (df["scale"] == 2).all()
    assert (df["dataset"] == "NTIRE 2023 test").all()
    assert (df["device"] == "NVIDIA RTX 3090 (reported)").all()
    assert (df["precision"] == "fp16").all() and (df["engine"] == "eager").all()
    assert (df["model_id"] == "").all()
    assert ((df["team"] == "") & (df["license"] == "") & (df["link"] == "")).all()
    assert df["ssim_y"].isna().all()


def test_official_rows_carry_the_csvs_values():
    df = _official()
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
    bicubic = _row(_official(), method="Bicubic")
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
    df = _official()
    teams = df[~df["is_reference"]]
    with OFFICIAL_CSV.open() as f:
        reported = {r["team"]: float(r["score"]) for r in csv.DictReader(f) if r["score"]}
    assert dict(zip(teams["method"], teams["score"], strict=True)) == reported


def test_official_table_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.csv"
    with pytest.raises(InputError, match=re.escape("absent.csv")):
        OfficialTable(missing).read()
    no_column = tmp_path / "no_runtime.csv"
    no_column.write_text("team,score,params_m,flops_g,psnr_rgb,psnr_y,ssim_rgb\nBicubic,,,,33.92,36.66,0.8829\n")
    with pytest.raises(InputError, match=r"no_runtime\.csv: missing column\(s\) runtime_ms"):
        OfficialTable(no_column).read()
    no_reference = tmp_path / "no_bicubic.csv"
    no_reference.write_text(OFFICIAL_CSV.read_text().replace("Bicubic,", "Nearest,"))
    with pytest.raises(InputError, match=re.escape("no_bicubic.csv: expected one 'Bicubic' row, found 0")):
        OfficialTable(no_reference).read()
    text = tmp_path / "text.csv"
    text.write_text(OFFICIAL_CSV.read_text().replace("3.190", "fast"))
    with pytest.raises(InputError, match=re.escape("text.csv: column runtime_ms holds a non-number")):
        OfficialTable(text).read()


def test_a_broken_official_table_loads_no_rows_and_says_why(tmp_path):
    frame, problems = OfficialTable(tmp_path / "missing.csv").load()
    assert len(frame) == 0
    assert_leaderboard_dtypes(frame)
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'missing.csv'}: cannot read the official table")


# --- folders of evaluations ---------------------------------------------------------------------


def test_evaluations_equal_the_raw_documents():
    df = _evaluations()
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
        assert row["engine"] == doc["runtime"].get("engine", "eager")
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
        assert (row["team"], row["license"], row["link"]) == ("", "", "")


def test_every_metric_of_a_row_is_read_as_the_specification_says():
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x3_Set14.json").read_text())
    row = _row(_evaluations(), model_id="rtsrn-x3", dataset="Set14")
    for m in METRICS:
        value = doc
        for part in m.field.split("."):
            value = value[part]
        assert row[m.key] == pytest.approx(m.convert(value) if m.convert else value, rel=1e-15), m.key


def test_relative_runtime_is_the_ratio_measured_in_the_same_run():
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    row = _row(_evaluations(), model_id="rtsrn-x2", dataset="Set5")
    expected = doc["runtime"]["runtime"]["mean_ms"] / doc["runtime"]["bicubic"]["mean_ms"]
    assert row["relative_runtime"] == pytest.approx(expected, rel=1e-12)
    assert row["relative_runtime"] == pytest.approx(46.64, abs=0.01)  # README's table says 46.6


def test_evaluated_reference_rows_score_zero():
    df = _evaluations()
    bicubic = df[df["is_reference"]]
    assert sorted(set(bicubic["model_id"])) == ["bicubic-x2", "bicubic-x3"]
    assert len(bicubic) == 6
    assert (bicubic["score"] == 0.0).all() and (bicubic["psnr_gain"] == 0.0).all()


def test_a_forged_or_perfect_document_is_named_and_left_out_and_the_rest_shows(tmp_path):
    """The board shows what the measurements give: a score edited by hand, a NaN, or a mean
    PSNR of inf (outputs equal to the ground truth, as a submission that read the test set's
    ground truth had) is left out with its reason; the other documents stay on the board."""
    shipped = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    (tmp_path / "good.json").write_text(json.dumps(shipped))
    (tmp_path / "edited.json").write_text(json.dumps({**shipped, "score": 1e12}))
    (tmp_path / "nan.json").write_text(json.dumps({**shipped, "score": math.nan}))
    perfect = json.loads(json.dumps(shipped))
    perfect["metrics"]["mean"]["psnr_rgb"] = math.inf
    perfect["psnr_gain"] = perfect["score"] = math.inf
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    loaded = EvaluationFolder("Evaluated", tmp_path).load()
    assert list(loaded.frame["document"]) == ["good.json"]
    assert loaded.frame["score"].iloc[0] == shipped["score"]
    assert [p.removeprefix(str(tmp_path) + "/") for p in loaded.problems] == [
        "edited.json: score is 1e+12, but its measurements give 0.671351",
        "nan.json: score is NaN",
        "perfect.json: metrics.mean.psnr_rgb is inf: outputs equal to the ground truth are not a result",
    ]


def test_missing_or_empty_folder_gives_no_rows(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        for recursive in (False, True):
            df = _evaluations(folder, recursive=recursive)
            assert len(df) == 0
            assert_leaderboard_dtypes(df)


def _store_results(tmp_path):
    """A submissions store's results folder: results/<request>/<set>.json, as a worker writes them."""
    results = tmp_path / "results"
    for request, name in (("r-0001", "rtsrn-x2_Set5.json"), ("r-0002", "rtsrn-x3_Set14.json")):
        doc = json.loads((EVALUATIONS_DIR / name).read_text())
        doc["submission"] = {**SUBMISSION, "request": request}
        (results / request).mkdir(parents=True)
        (results / request / f"{doc['dataset']['name']}.json").write_text(json.dumps(doc))
    return results


def test_a_store_folder_is_read_with_its_sub_folders(tmp_path):
    results = _store_results(tmp_path)
    assert len(_evaluations(results)) == 0  # only the top level
    frame, problems = EvaluationFolder("Submissions", results, recursive=True).load()
    assert problems == []
    # sorted by path: r-0001 first; each named as the submission it measures
    assert frame["method"].tolist() == [f"RTSRN x{s} · Team Fast · team/fastnet@0123456" for s in (2, 3)]
    assert (frame["source"] == "Submissions").all()
    # a writer's temporary file (rtsr.outputs.write_json's .<name>.<random>) is not a document
    (results / "r-0001" / ".Set14.json.tmp.json").write_text("{")
    assert EvaluationFolder("Submissions", results, recursive=True).load().problems == []


def test_submission_fields_become_team_license_and_link(tmp_path):
    frame, _ = EvaluationFolder("Submissions", _store_results(tmp_path), recursive=True).load()
    row = frame.iloc[0]
    assert (row["team"], row["license"], row["link"]) == ("Team Fast", "apache-2.0", SUBMISSION["url"])
    # the method is the model's name, told apart from others of that name by the team and the
    # repo at its commit (schema.SubmissionRecord.label); the device still the one that measured it
    assert row["method"] == "RTSRN x2 · Team Fast · team/fastnet@0123456" and row["device"] == "AMD EPYC (2 threads)"


def test_a_corrupt_and_a_half_written_document_are_named_and_the_rest_load(tmp_path):
    results = _store_results(tmp_path)
    corrupt = results / "r-0003" / "Set5.json"
    corrupt.parent.mkdir()
    corrupt.write_text(json.dumps({"schema": "rtsr.evaluate", "schema_version": 1, "model": {}}))
    half = results / "r-0004" / "Set5.json"
    half.parent.mkdir()
    half.write_text((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text()[:1000])
    frame, problems = EvaluationFolder("Submissions", results, recursive=True).load()
    assert len(frame) == 2 and frame["model_id"].tolist() == ["rtsrn-x2", "rtsrn-x3"]
    assert problems == [
        f"{corrupt}: not a valid rtsr.evaluate v1 document (no created)",
        problems[1],
    ]
    assert problems[1].startswith(f"{half}: not a readable JSON file (")
    assert all(len(p.splitlines()) == 1 for p in problems)


def test_adding_a_store_is_one_more_source(tmp_path):
    results = _store_results(tmp_path)
    sources = [*default_sources(), EvaluationFolder("Submissions", results, recursive=True)]
    frame, problems = load_leaderboard(sources)
    assert problems == []
    assert frame["source"].value_counts().to_dict() == {SOURCE_OFFICIAL: 25, SOURCE_EVALUATED: 12, "Submissions": 2}
    assert frame["source"].iloc[-1] == "Submissions"
    with pytest.raises(ValueError, match="distinct names"):
        load_leaderboard([*sources, EvaluationFolder("Submissions", tmp_path)])


# --- the whole leaderboard ----------------------------------------------------------------------


def test_leaderboard_is_official_then_evaluated():
    df, problems = load_leaderboard()
    assert problems == []
    assert_leaderboard_dtypes(df)
    assert len(df) == 25 + 12
    assert list(df.index) == list(range(37))
    assert (df["source"].iloc[:25] == SOURCE_OFFICIAL).all()
    assert (df["source"].iloc[25:] == SOURCE_EVALUATED).all()
    assert df["method"].iloc[1] == "Noah TerminalVision"


def test_leaderboard_of_some_sources(tmp_path):
    only_official, _ = load_leaderboard([OfficialTable(), EvaluationFolder(SOURCE_EVALUATED, tmp_path / "absent")])
    assert len(only_official) == 25
    assert_leaderboard_dtypes(only_official)
    only_evaluated, _ = load_leaderboard(default_sources()[1:])
    assert len(only_evaluated) == 12
    nothing, problems = load_leaderboard([])
    assert len(nothing) == 0 and problems == []
    assert_leaderboard_dtypes(nothing)


def test_loading_leaves_out_each_unreadable_file_and_says_so(tmp_path):
    shutil.copytree(EVALUATIONS_DIR, tmp_path / "evaluations")
    shutil.copy(OFFICIAL_CSV, tmp_path)
    (tmp_path / "evaluations" / "broken.json").write_text("{")
    (tmp_path / "evaluations" / "other.json").write_text('{"schema": "something else"}')
    frame, errors = load_leaderboard(default_sources(tmp_path))
    pd.testing.assert_frame_equal(frame, load_leaderboard().frame)
    assert len(errors) == 2
    assert errors[0].startswith(f"{tmp_path / 'evaluations' / 'broken.json'}: not a readable JSON file")
    assert errors[1].startswith(f"{tmp_path / 'evaluations' / 'other.json'}: schema 'something else'")

    (tmp_path / "evaluations" / "broken.json").unlink()
    (tmp_path / "evaluations" / "other.json").unlink()
    (tmp_path / OFFICIAL_CSV.name).rename(tmp_path / "missing.csv")
    frame, errors = load_leaderboard(default_sources(tmp_path))
    pd.testing.assert_frame_equal(frame, load_leaderboard(default_sources()[1:]).frame)
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / OFFICIAL_CSV.name}: cannot read the official table")


def test_a_row_timed_below_4k_has_no_score_and_is_marked(tmp_path):
    """A submission timed at 960x540 (a shortened protocol) outranked its own 4K row (score
    1.11 against 0.64): its milliseconds are not per 4K output, so it is not ranked."""
    doc = json.loads((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    small = json.loads(json.dumps(doc))
    small["runtime"]["output_size"] = [540, 960]
    small["runtime"]["input_size"] = [270, 480]
    small["runtime"]["runtime"]["mean_ms"] = doc["runtime"]["runtime"]["mean_ms"] / 16
    small["runtime"]["bicubic"]["mean_ms"] = doc["runtime"]["bicubic"]["mean_ms"] / 16
    from rtsr.scoring import score

    small["score"] = score(
        small["metrics"]["mean"]["psnr_rgb"],
        small["runtime"]["runtime"]["mean_ms"],
        small["bicubic"]["mean"]["psnr_rgb"],
    )
    (tmp_path / "a_4k.json").write_text(json.dumps(doc))
    (tmp_path / "b_small.json").write_text(json.dumps(small))
    df = EvaluationFolder("Evaluated", tmp_path).load().frame
    full, short = df.iloc[0], df.iloc[1]
    assert full["ranked"] and full["score"] == doc["score"]
    assert not short["ranked"] and math.isnan(short["score"]) and small["score"] > doc["score"]
    assert short["device"].endswith("(timed at 960x540, not 4K)")
