"""A leaderboard row's details: per-image results and provenance, read again from the row's
results document through its source (rtsr.leaderboard.details, sources' ``evaluation``)."""

import json
import shutil

import pytest

from rtsr.errors import InputError
from rtsr.leaderboard import EVALUATIONS_DIR, IMAGE_METRICS, EvaluationFolder, default_sources, load_leaderboard
from rtsr.leaderboard.details import BICUBIC_PSNR_KEY, GAIN_KEY, row_details
from rtsr.leaderboard.sources import SOURCE_EVALUATED, SOURCE_OFFICIAL, OfficialTable
from tests.test_leaderboard_sources import SUBMISSION, _row, _store_results

SET5 = ["baby", "bird", "butterfly", "head", "woman"]


def _bundled(tmp_path):
    """The bundled evaluations, copied so that a test may break or remove one."""
    folder = tmp_path / "evaluations"
    shutil.copytree(EVALUATIONS_DIR, folder)
    return EvaluationFolder(SOURCE_EVALUATED, folder)


def test_an_evaluated_row_has_its_per_image_results(tmp_path):
    source = _bundled(tmp_path)
    frame, _ = load_leaderboard([source])
    row = _row(frame, model_id="rtsrn-x2", dataset="Set5")
    assert row["document"] == "rtsrn-x2_Set5.json"
    details = row_details(row, [source])
    assert details.note == "" and details.images is not None
    images = details.images
    assert images["image"].tolist() == SET5
    assert list(images.columns) == ["image", *(m.key for m in IMAGE_METRICS), BICUBIC_PSNR_KEY, GAIN_KEY]
    # the document's means are the means of its images
    for m in IMAGE_METRICS:
        assert images[m.key].mean() == pytest.approx(row[m.key], abs=1e-9), m.key
    assert images[GAIN_KEY].tolist() == pytest.approx((images["psnr_rgb"] - images[BICUBIC_PSNR_KEY]).tolist())
    # bicubic's per-image PSNR in RTSRN's document is what bicubic's own document measured
    bicubic = json.loads((EVALUATIONS_DIR / "bicubic-x2_Set5.json").read_text())["metrics"]["images"]
    assert images[BICUBIC_PSNR_KEY].tolist() == pytest.approx([b["psnr_rgb"] for b in bicubic], abs=1e-9)
    assert (images[GAIN_KEY] > 0).all()  # RTSRN beats bicubic on every Set5 image
    assert details.device == "AMD EPYC (2 threads)" and details.engine == "eager"
    assert details.created.startswith("20") and "torch 2.13.0" in details.versions


def test_the_official_table_has_no_per_image_results():
    frame, _ = load_leaderboard()
    row = _row(frame, method="Noah TerminalVision")
    assert row["document"] == ""
    details = row_details(row, default_sources())
    assert details.images is None
    assert details.note == f"{SOURCE_OFFICIAL}: the challenge published only each team's means, not per-image results"
    assert details.device == "NVIDIA RTX 3090 (reported)"
    with pytest.raises(InputError, match="only each team's means"):
        OfficialTable().evaluation("anything.json")


def test_a_submission_names_its_repo_and_commit(tmp_path):
    store = EvaluationFolder("Submissions", _store_results(tmp_path), recursive=True)
    frame, _ = load_leaderboard([store])
    row = _row(frame, model_id="rtsrn-x2")
    assert row["document"] == "r-0001/Set5.json"
    details = row_details(row, [store])
    assert (details.repo, details.commit, details.link) == (SUBMISSION["repo"], SUBMISSION["commit"], SUBMISSION["url"])
    assert details.team == "Team Fast" and details.license == "apache-2.0"
    assert details.images is not None and details.images["image"].tolist() == SET5


def test_a_document_gone_or_broken_since_the_page_loaded_is_said_in_one_line(tmp_path):
    source = _bundled(tmp_path)
    frame, _ = load_leaderboard([source])
    row = _row(frame, model_id="rtsrn-x3", dataset="Set14")
    (source.folder / "rtsrn-x3_Set14.json").unlink()
    details = row_details(row, [source])
    assert details.images is None and "rtsrn-x3_Set14.json is no longer there" in details.note
    # a document whose per-image list is damaged keeps its row's means, and says why
    path = source.folder / "rtsrn-x2_Set5.json"
    document = json.loads(path.read_text())
    document["metrics"]["images"][2]["psnr_rgb"] = "high"
    path.write_text(json.dumps(document))
    details = row_details(_row(frame, model_id="rtsrn-x2", dataset="Set5"), [source])
    assert details.images is None and details.note.endswith("metrics.images[2].psnr_rgb is not a number ('high')")
    # and a source that is no longer loaded
    assert "no longer loaded" in row_details(row, []).note


def test_a_source_reads_only_documents_inside_its_folder(tmp_path):
    source = _bundled(tmp_path)
    (tmp_path / "outside.json").write_text((EVALUATIONS_DIR / "rtsrn-x2_Set5.json").read_text())
    for document in ("../outside.json", str(tmp_path / "outside.json"), "", "rtsrn-x2_Set5.csv"):
        with pytest.raises(InputError, match="no results document"):
            source.evaluation(document)
    assert source.evaluation("rtsrn-x2_Set5.json").model_id == "rtsrn-x2"
