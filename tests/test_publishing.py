import json

import pytest
import yaml

from rtsr.errors import SubmissionError
from rtsr.submissions.hub import CARD_TAGS, model_card, publish_folder
from rtsr.submissions.publishing import publish
from rtsr.submissions.submission import open_submission
from tests.conftest import make_submission

EVALUATION = {
    "schema": "rtsr.evaluate",
    "rtsr_version": "0.1.0",
    "model": {"scale": 2, "params": 1234, "flops": 5.5e9},
    "dataset": {"name": "Set5", "images": 5},
    "device": "NVIDIA H100 80GB HBM3",
    "precision": "fp16",
    "metrics": {"mean": {"psnr_rgb": 31.5, "ssim_rgb": 0.9, "psnr_y": 34.2, "ssim_y": 0.93}},
    "bicubic": {"mean": {"psnr_rgb": 29.9, "ssim_rgb": 0.86, "psnr_y": 33.2, "ssim_y": 0.91}},
    "runtime": {"runtime": {"mean_ms": 1.25, "passes": 244}, "timer": "cuda-event", "relative_to_bicubic": 3.1},
    "score": 54.3,
}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_metadata_and_measurements():
    meta = {"scale": 3, "track": 2, "team": "T", "method": "FastNet", "license": "mit", "links": {"code": "https://x"}}
    card = model_card(meta, "user/fastnet", {**EVALUATION, "model": {**EVALUATION["model"], "scale": 3}})
    front = _front_matter(card)
    assert set(CARD_TAGS) <= set(front["tags"]) and "x3" in front["tags"]
    assert front["license"] == "mit" and front["rtsr"] == {"scale": 3, "track": 2, "team": "T"}
    assert "| this model | 31.500 | 0.9000 | 34.200 | 0.9300 |" in card
    assert "NVIDIA H100 80GB HBM3" in card and "1.250 ms" in card and "Track 2" in card
    assert "Nothing measured" in model_card(meta, "user/fastnet", None)


def test_dry_run_stages_exactly_the_upload(tmp_path):
    root = make_submission(tmp_path / "team", files={"utils/m.py": "X = 1", "results/a.png": b"png"})
    (tmp_path / "eval.json").write_text(json.dumps(EVALUATION))
    out = tmp_path / "stage"
    result = publish(open_submission(root), "me/team", out, dry_run=True, evaluation=tmp_path / "eval.json")
    assert result.commit is None and result.stage == out
    staged = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert staged == ["README.md", "arch.py", "checkpoint.pth", "results/a.png", "submission.json", "utils/m.py"]
    assert "31.500" in (out / "README.md").read_text()


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
