import json

import pytest
import torch

from rtsr.degradation import prepare_data
from rtsr.errors import InputError
from rtsr.evaluation import SCHEMA, SCHEMA_VERSION, evaluate
from rtsr.inference import upscale_folder
from rtsr.metrics import measure_folders
from rtsr.models import load_model, srmodel
from rtsr.outputs import write_json
from rtsr.scoring import score

CPU = torch.device("cpu")
FAST = {"target_size": (48, 48), "warmup": 0, "repeat": 2, "progress": False}


@pytest.fixture
def prepared(tmp_path, hr_dir):
    lr, gt = tmp_path / "lr", tmp_path / "gt"
    prepare_data(hr_dir, lr, gt, 3, progress=False)
    return lr, gt


def test_document_schema_and_numbers(prepared, tmp_path):
    lr, gt = prepared
    doc = evaluate(load_model("rtsrn", 3), lr, gt, CPU, "fp32", dataset="photos", **FAST)
    assert doc["schema"] == SCHEMA and doc["schema_version"] == SCHEMA_VERSION == 1
    assert doc["model"]["id"] == "rtsrn-x3" and doc["model"]["track"] == 2
    assert doc["dataset"] == {"name": "photos", "lr_dir": str(lr), "gt_dir": str(gt), "images": 4, "crop_border": 0}
    assert [r["name"] for r in doc["metrics"]["images"]] == ["astronaut", "chelsea", "coffee", "rocket"]
    assert set(doc["runtime"]) == {
        "timer", "input_size", "output_size", "warmup", "runtime", "bicubic", "relative_to_bicubic",
        "engine", "engines",
    }  # fmt: skip
    assert doc["runtime"]["input_size"] == (16, 16)
    # bicubic's per-image numbers are those of measuring bicubic's own SR folder
    bicubic = {r["name"]: r for r in doc["bicubic"]["images"]}
    upscale_folder(srmodel("bicubic", 3), 3, lr, tmp_path / "bic", progress=False)
    for name, m in measure_folders(tmp_path / "bic", gt, progress=False).items():
        assert bicubic[name]["psnr_rgb"] == pytest.approx(m.psnr_rgb, abs=1e-9)
    # the score is the challenge's formula on the document's own means and runtime
    gain = doc["metrics"]["mean"]["psnr_rgb"] - doc["bicubic"]["mean"]["psnr_rgb"]
    assert doc["psnr_gain"] == pytest.approx(gain)
    assert doc["score"] == score(
        doc["metrics"]["mean"]["psnr_rgb"], doc["runtime"]["runtime"]["mean_ms"], doc["bicubic"]["mean"]["psnr_rgb"]
    )
    write_json(doc, tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text())["model"] == doc["model"]


def test_untrained_rtsrn_is_below_bicubic_and_scores_zero(prepared):
    lr, gt = prepared
    doc = evaluate(load_model("rtsrn", 3), lr, gt, CPU, "fp32", **FAST)
    assert doc["psnr_gain"] < 0 and doc["score"] == 0.0


def test_scale_must_match_the_pairs(prepared):
    lr, gt = prepared
    with pytest.raises(InputError, match="expected x2 of its LR"):
        evaluate(load_model("bicubic", 2), lr, gt, CPU, "fp32", **FAST)


def test_bicubic_reference_does_not_move_with_the_models_precision(prepared):
    lr, gt = prepared
    fp32 = evaluate(load_model("bicubic", 3), lr, gt, CPU, "fp32", **FAST)
    bf16 = evaluate(load_model("bicubic", 3), lr, gt, CPU, "bf16", **FAST)
    assert bf16["bicubic"] == fp32["bicubic"]
    assert bf16["precision"] == "bf16" and bf16["metrics"] != fp32["metrics"]  # the model did run in bf16
