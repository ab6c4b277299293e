"""The challenge's own numbers, pinned by the literals of its scripts (github.com/
eduardzamfir/NTIRE23-RTSR), never by rtsr.constants: a change of a constant in rtsr fails here.

- ``data/prepare_data.py``: ``img.resize((w / s, h / s), resample=Image.BICUBIC)``, then
  ``img.save(..., "JPEG", quality=args.jpeg_level)`` with ``--jpeg-level`` defaulting to 90.
- ``demo/runtime_demo.py``: ``for _ in range(50)`` warm-up passes, then ``--repeat``
  (default 244) timed ones.
- The score of the challenge's scoring notebook: ``2 ** (psnr - psnr_bicubic) * 2 /
  (0.1 * sqrt(runtime_ms))``, as the official table's scores follow.

The shipped results documents are tied to the shipped weights here too: Set5 re-measured
through the CLI gives their numbers exactly.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from rtsr.degradation import degrade
from rtsr.leaderboard import EVALUATIONS_DIR
from tests.conftest import BUNDLED_SET5, ROOT, run_cli

#: prepare_data.py's --jpeg-level default.
CHALLENGE_JPEG_QUALITY = 90
#: runtime_demo.py's warm-up loop and its --repeat default.
CHALLENGE_WARMUP, CHALLENGE_REPEAT = 50, 244


def challenge_lr(gt: np.ndarray, scale: int) -> np.ndarray:
    """prepare_data.py's LR image of ``gt`` (sides divisible by ``scale``), done here with
    Pillow as it does, read back from the JPEG bytes."""
    image = Image.fromarray(gt)
    w, h = image.size
    small = image.resize((w // scale, h // scale), resample=Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=CHALLENGE_JPEG_QUALITY)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def challenge_score(psnr: float, runtime_ms: float, bicubic_psnr: float) -> float:
    return 2 ** (psnr - bicubic_psnr) * 2 / (0.1 * math.sqrt(runtime_ms))


def _read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("scale", [2, 3])
def test_degrade_on_its_defaults_is_prepare_data(photos, scale):
    for image in photos.values():
        gt = image[: image.shape[0] // scale * scale, : image.shape[1] // scale * scale]
        assert np.array_equal(degrade(gt, scale), challenge_lr(gt, scale))


def test_the_cli_prepare_data_on_its_defaults_writes_the_challenges_lr(tmp_path):
    run_cli("prepare-data", "--image-dir", BUNDLED_SET5, "--lr-out-dir", tmp_path / "lr",
            "--gt-out-dir", tmp_path / "gt", "--downsample-factor", "3", check=True)  # fmt: skip
    for gt in sorted((tmp_path / "gt").glob("*.png")):
        assert np.array_equal(_read(tmp_path / "lr" / f"{gt.stem}.jpg"), challenge_lr(_read(gt), 3)), gt.stem


def test_the_apps_simulate_mode_makes_the_challenges_input():
    from rtsr.serving import ModelPool, serve
    from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry

    upload = _read(ROOT / "examples" / "rocket.png")  # 427x640: cropped to 426x640 at x2
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu")
    try:
        result = serve(pool, "bicubic-x2", ROOT / "examples" / "rocket.png", "simulate")
    finally:
        pool.close()
    assert result.jpeg_quality == CHALLENGE_JPEG_QUALITY
    assert np.array_equal(result.lr, challenge_lr(upload[:426], 2))


def test_the_runtime_protocol_runs_runtime_demos_passes_by_default(tmp_path):
    # bicubic at a 64x64 output: the passes are the point, not their length
    out = tmp_path / "runtime.json"
    run_cli("runtime", "--model", "bicubic", "--scale", "2", "--crop-size", "64", "64", "--json", out, check=True)
    report = json.loads(out.read_text())
    assert report["warmup"] == CHALLENGE_WARMUP
    assert report["runtime"]["passes"] == CHALLENGE_REPEAT and report["bicubic"]["passes"] == CHALLENGE_REPEAT
    # and evaluate, the leaderboard's command, takes the same defaults
    from rtsr.cli import build_parser

    args = build_parser().parse_args(
        ["evaluate", "--model", "bicubic", "--scale", "2", "--lr-dir", "x", "--gt-dir", "y", "--out", "z.json"]
    )
    assert (args.warmup, args.repeat) == (CHALLENGE_WARMUP, CHALLENGE_REPEAT)


@pytest.mark.parametrize(("scale", "psnr"), [(2, 31.4324), (3, 28.6783)])
def test_the_shipped_results_are_what_the_shipped_weights_give(tmp_path, scale, psnr):
    """Set5, degraded on the defaults and upscaled by the shipped RTSRN (FP32, as written),
    measures exactly what the shipped documents say; each document's score follows from its
    own PSNRs and runtime."""
    lr, gt, sr = tmp_path / "lr", tmp_path / "gt", tmp_path / "sr"
    run_cli("prepare-data", "--image-dir", BUNDLED_SET5, "--lr-out-dir", lr, "--gt-out-dir", gt,
            "--downsample-factor", str(scale), check=True)  # fmt: skip
    run_cli("sr", "--model", f"rtsrn-x{scale}", "--engine", "eager", "--precision", "fp32",
            "--lr-dir", lr, "--out-dir", sr, check=True)  # fmt: skip
    run_cli("metrics", "--sr-dir", sr, "--gt-dir", gt, "--json", tmp_path / "m.json", check=True)
    measured = json.loads((tmp_path / "m.json").read_text())
    document = json.loads((EVALUATIONS_DIR / f"rtsrn-x{scale}_Set5.json").read_text())
    assert round(measured["mean"]["psnr_rgb"], 4) == psnr
    for key, value in document["metrics"]["mean"].items():
        assert measured["mean"][key] == pytest.approx(value, abs=1e-12), key
    for mine, theirs in zip(measured["images"], document["metrics"]["images"], strict=True):
        assert mine["name"] == theirs["name"] and mine["psnr_rgb"] == pytest.approx(theirs["psnr_rgb"], abs=1e-12)
    bicubic = document["bicubic"]["mean"]["psnr_rgb"]
    runtime = document["runtime"]["runtime"]["mean_ms"]
    assert document["psnr_gain"] == pytest.approx(document["metrics"]["mean"]["psnr_rgb"] - bicubic, abs=1e-12)
    expected = challenge_score(document["metrics"]["mean"]["psnr_rgb"], runtime, bicubic)
    assert document["score"] == pytest.approx(expected, rel=1e-12)
