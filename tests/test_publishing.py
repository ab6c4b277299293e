import json

import pytest
import yaml
from huggingface_hub import ModelCard

from rtsr.errors import InputError, SubmissionError
from rtsr.leaderboard import IMAGE_METRICS, METRICS, Evaluation
from rtsr.leaderboard.sources import EVALUATIONS_DIR
from rtsr.submissions.hub import CARD_TAGS, model_card, publish_folder
from rtsr.submissions.publishing import publish
from rtsr.submissions.submission import open_submission
from tests.support.submissions import make_submission


def _evaluation(name: str) -> dict:
    """A real rtsr evaluate document, as measured on a GPU in FP16."""
    doc = json.loads((EVALUATIONS_DIR / name).read_text())
    return {**doc, "device": "NVIDIA H100 80GB HBM3", "precision": "fp16"}


EVALUATION = _evaluation("rtsrn-x2_Set5.json")


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


META = {"scale": 3, "track": 2, "team": "T", "method": "FastNet", "license": "mit", "links": {"code": "https://x"}}


def test_model_card_metadata_and_measurements():
    doc = _evaluation("rtsrn-x3_Set5.json")
    card = model_card(META, "user/fastnet", doc)
    front = _front_matter(card)
    assert set(CARD_TAGS) <= set(front["tags"]) and "x3" in front["tags"]
    assert front["license"] == "mit" and front["rtsr"] == {"scale": 3, "track": 2, "team": "T"}
    mean, bicubic = doc["metrics"]["mean"], doc["bicubic"]["mean"]
    keys = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")
    assert "| | PSNR RGB (dB) | SSIM RGB | PSNR Y (dB) | SSIM Y |" in card
    assert "| this model | " + " | ".join(f"{mean[k]:.4f}" for k in keys) + " |" in card
    assert "| bicubic | " + " | ".join(f"{bicubic[k]:.4f}" for k in keys) + " |" in card
    assert "NVIDIA H100 80GB HBM3" in card and "Track 2" in card
    assert f"| {doc['score']:.2f} | {doc['psnr_gain']:+.4f} | {doc['runtime']['runtime']['mean_ms']:.2f} |" in card
    assert "Nothing measured" in model_card(META, "user/fastnet", None)
    assert "model-index" not in model_card(META, "user/fastnet", None)


def test_model_card_results_are_its_model_index():
    doc = _evaluation("rtsrn-x3_Set5.json")
    card = ModelCard(model_card(META, "user/fastnet", doc))
    assert card.data.model_name == "FastNet"
    results = card.data.eval_results
    expected = {m.key: m.read(Evaluation.from_document(doc, "doc")) for m in METRICS if m.on_card}
    assert {r.metric_type: r.metric_value for r in results} == expected
    assert expected["psnr_rgb"] == doc["metrics"]["mean"]["psnr_rgb"] and expected["score"] == doc["score"]
    assert expected["runtime_ms"] == doc["runtime"]["runtime"]["mean_ms"]
    labels = {m.key: m.label for m in METRICS}
    for r in results:
        assert r.metric_name == labels[r.metric_type]
        assert (r.task_type, r.dataset_type, r.dataset_name) == ("image-to-image", "Set5", "Set5")
        # the device that measured the numbers travels with them
        assert r.dataset_args == {"device": "NVIDIA H100 80GB HBM3", "precision": "fp16"}
        assert "x3" in r.task_name and "Track 2" in r.task_name
    assert {m.key for m in IMAGE_METRICS} <= set(expected)


def test_model_card_refuses_a_document_that_is_not_an_evaluation():
    broken = {k: v for k, v in EVALUATION.items() if k != "score"}
    with pytest.raises(
        InputError, match=r"the evaluation document: not a valid rtsr\.evaluate v1 document \(no score\)"
    ):
        model_card({**META, "scale": 2, "track": 1}, "user/fastnet", broken)


def test_dry_run_stages_exactly_the_upload(tmp_path):
    root = make_submission(tmp_path / "team", files={"utils/m.py": "X = 1", "results/a.png": b"png"})
    (tmp_path / "eval.json").write_text(json.dumps(EVALUATION))
    out = tmp_path / "stage"
    result = publish(open_submission(root), "me/team", out, dry_run=True, evaluation=tmp_path / "eval.json")
    assert result.commit is None and result.stage == out
    staged = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert staged == ["README.md", "arch.py", "checkpoint.pth", "results/a.png", "submission.json", "utils/m.py"]
    assert f"{EVALUATION['metrics']['mean']['psnr_rgb']:.4f}" in (out / "README.md").read_text()


def test_nothing_is_staged_when_validation_fails(tmp_path):
    root = make_submission(tmp_path / "team", "def srmodel(x):\n    pass\n", checkpoint=False)
    with pytest.raises(SubmissionError, match=r"validation failed \(srmodel\(\)"):
        publish(open_submission(root), "me/team", tmp_path / "stage", dry_run=True)
    assert not (tmp_path / "stage").exists()


def test_evaluation_of_another_scale_is_refused(tmp_path):
    root = make_submission(
        tmp_path / "team",
        scale=3,
        arch="import torch\n\ndef srmodel():\n    return torch.nn.Upsample(scale_factor=3)\n",
        checkpoint=False,
    )
    (tmp_path / "eval.json").write_text(json.dumps(EVALUATION))
    with pytest.raises(SubmissionError, match="measures a x2 model"):
        publish(open_submission(root), "me/team", tmp_path / "stage", dry_run=True, evaluation=tmp_path / "eval.json")


def test_bad_repo_id(tmp_path):
    with pytest.raises(SubmissionError, match="user/name"):
        publish(open_submission(make_submission(tmp_path / "s")), "noslash", tmp_path / "o", dry_run=True)


def test_real_upload_path_says_the_hub_is_unreachable_offline(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SubmissionError, match="HF_HUB_OFFLINE"):
        publish_folder(tmp_path, "me/team", private=True, token="hf_test")


def test_missing_evaluation_file_is_named_before_validating(tmp_path):
    root = make_submission(tmp_path / "team", "import time\ntime.sleep(60)\n", checkpoint=False)  # would be slow
    with pytest.raises(SubmissionError, match=r"nope\.json: no such file"):
        publish(open_submission(root), "me/team", tmp_path / "stage", dry_run=True, evaluation=tmp_path / "nope.json")
