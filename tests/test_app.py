"""The app as users and API clients reach it: ``python app.py`` in a child process, driven
with gradio_client, its answers checked against rtsr's library on the same arrays."""

import json
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from skimage import data

from rtsr.degradation import crop_for_scale, degrade
from rtsr.inference import upscale
from rtsr.metrics import measure
from rtsr.models import Bicubic
from rtsr.scoring import score
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry, entry_for
from rtsr.submissions.submission import open_submission
from tests.conftest import APP_SETTINGS, ROOT, RunningApp, make_submission, photo

EXAMPLES = ROOT / "examples"
CPU = torch.device("cpu")


def read(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def predict(app: RunningApp, tmp_path, **request):
    """One /upscale call; returns its six outputs."""
    client = Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    arguments = {"mode_id": "simulate", "jpeg_quality": 90, "gt_upload": None, "which": "bicubic", **request}
    return client.predict(**arguments, api_name="/upscale")


def test_upscale_returns_exactly_the_scaled_image(app, tmp_path):
    lr = photo("chelsea")  # 300x451: odd width
    Image.fromarray(lr).save(tmp_path / "chelsea.png")
    slider, metrics_md, timing_md, details, png, model_input = predict(
        app, tmp_path, model_id="rtsrn-x3", mode_id="upscale", upload=handle_file(tmp_path / "chelsea.png"), which="lr"
    )
    sr = read(png)
    assert sr.shape == (900, 1353, 3)
    assert details["output_size"] == [900, 1353] and details["input_size"] == [300, 451]
    # the PNG is the registered model's own output on the upload (run here by hand)
    module = Registry.read(BUNDLED_REGISTRY).load("rtsrn-x3").module.eval()
    expected = upscale(module, lr, 3, CPU, "fp32")
    assert np.abs(sr.astype(int) - expected).max() <= 1  # threads may round a last bit differently
    before, after = (read(p) for p in slider)
    assert before.shape == after.shape == (900, 1353, 3)
    # "before" is the LR input with its pixels repeated 3x3: each block is one colour
    blocks = before.reshape(300, 3, 451, 3, 3).astype(int)
    assert (blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))).max() <= 24  # JPEG preview noise only
    assert details["metrics"] is None and "No ground truth" in metrics_md
    assert read(model_input).shape == lr.shape
    assert "FP32" in timing_md and "wall clock" in timing_md and "input 451x300 → 1353x900" in timing_md


def test_simulate_metrics_equal_rtsr_metrics_on_the_same_arrays(app, tmp_path):
    gt = read(str(EXAMPLES / "coffee.png"))  # 400x600
    *_, metrics_md, timing_md, details, png, _ = predict(
        app, tmp_path, model_id="rtsrn-x2", jpeg_quality=75, upload=handle_file(EXAMPLES / "coffee.png")
    )
    sr = read(png)
    lr = degrade(crop_for_scale(gt, 2), 2, 75)
    bicubic = upscale(Bicubic(2), lr, 2, CPU, "fp32")
    ours, reference = measure(sr, gt), measure(bicubic, gt)
    for key, value in ours.as_dict().items():
        assert details["metrics"][key] == pytest.approx(value, abs=1e-9), key
    for key, value in reference.as_dict().items():
        assert details["bicubic"][key] == pytest.approx(value, abs=1e-9), key
    gain = ours.psnr_rgb - reference.psnr_rgb
    assert gain > 0.3 and details["psnr_gain"] == pytest.approx(gain)
    assert details["score"] == pytest.approx(score(ours.psnr_rgb, details["forward_ms"], reference.psnr_rgb))
    assert details["jpeg_quality"] == 75 and details["precision"] == "fp32" and details["device_type"] == "cpu"
    assert f"| **RTSRN x2** | {ours.psnr_rgb:.3f} | {ours.ssim_rgb:.4f}" in metrics_md
    assert f"Gain over bicubic: {gain:+.3f} dB" in metrics_md
    for stage in ("decode", "degrade", "model", "bicubic", "metrics", "encode"):
        assert details["timings_ms"][stage] >= 0 and f"{stage} " in timing_md
    assert details["request_ms"] >= sum(details["timings_ms"].values()) - 1


def test_upscale_mode_measures_against_an_uploaded_ground_truth(app, tmp_path):
    gt = read(str(EXAMPLES / "coffee.png"))
    Image.fromarray(degrade(gt, 2, 90)).save(tmp_path / "lr.png")
    *_, metrics_md, _, details, png, _ = predict(
        app,
        tmp_path,
        model_id="rtsrn-x2",
        mode_id="upscale",
        upload=handle_file(tmp_path / "lr.png"),
        gt_upload=handle_file(EXAMPLES / "coffee.png"),
    )
    ours = measure(read(png), gt)
    assert details["metrics"] == pytest.approx(ours.as_dict(), abs=1e-9)
    assert details["jpeg_quality"] is None and details["psnr_gain"] > 0.3
    assert f"| **RTSRN x2** | {ours.psnr_rgb:.3f}" in metrics_md


def test_bad_requests_get_one_line_messages_and_the_app_stays_up(app, tmp_path):
    big = np.zeros((1000, 1100, 3), np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    shutil.copy(EXAMPLES / "astronaut.png", tmp_path / "lr.png")
    Image.fromarray(photo("coffee")).save(tmp_path / "wrong_gt.png")
    (tmp_path / "notes.png").write_text("not an image")
    big, lr, wrong_gt = (handle_file(tmp_path / name) for name in ("big.png", "lr.png", "wrong_gt.png"))
    cases = [
        ({"mode_id": "upscale", "upload": big}, "this host upscales inputs of at most 0.52 MP"),
        (
            {"mode_id": "upscale", "upload": lr, "gt_upload": wrong_gt},
            "ground truth is 600x400, but x2 of the 512x512 input is 1024x1024",
        ),
        ({"upload": None}, "Upload an image or pick an example first."),
        ({"upload": handle_file(tmp_path / "notes.png")}, "notes.png: not a readable image (UnidentifiedImageError)"),
    ]
    for request, message in cases:
        with pytest.raises(AppError) as error:
            predict(app, tmp_path, model_id="rtsrn-x2", **request)
        text = str(error.value)
        assert message in text and "\n" not in text.strip() and "Traceback" not in text
    # still serving
    *_, details, png, _ = predict(app, tmp_path, model_id="bicubic-x2", upload=handle_file(tmp_path / "lr.png"))
    assert read(png).shape == (512, 512, 3) and details["psnr_gain"] == pytest.approx(0.0, abs=1e-12)


def test_the_api_lists_registered_models_by_track(app):
    info = Client(app.url, verbose=False).view_api(print_info=False, return_format="dict")
    (endpoint,) = info["named_endpoints"].values()
    model = next(p for p in endpoint["parameters"] if p["parameter_name"] == "model_id")
    assert model["type"]["enum"] == ["bicubic-x2", "rtsrn-x2", "bicubic-x3", "rtsrn-x3"]  # by track
    assert model["parameter_default"] == "rtsrn-x2"


def test_examples_are_scikit_images_photos():
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        np.testing.assert_array_equal(read(str(EXAMPLES / f"{name}.png")), getattr(data, name)())


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_app_help_lists_every_setting_and_its_variable():
    result = run_app("--help")
    assert result.returncode == 0
    for flag, variable in APP_SETTINGS:
        assert flag in result.stdout and variable in result.stdout


def test_app_refuses_a_broken_registry_in_one_line(tmp_path):
    (tmp_path / "registry.json").write_text("{not json")
    result = run_app("--registry", str(tmp_path / "registry.json"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'registry.json'}: not a valid registry")


def test_app_serves_what_loads_and_says_what_did_not(tmp_path):
    registry = Registry(tmp_path / "registry.json", [])
    for name in ("tiny", "tampered"):
        registry.add(entry_for(open_submission(make_submission(tmp_path / name)), tmp_path, name))
    registry.write()
    (tmp_path / "tampered" / "arch.py").write_text("import os\n")
    board = tmp_path / "leaderboard"
    shutil.copytree(ROOT / "leaderboard", board)
    (board / "evaluations" / "broken.json").write_text("{")
    running = RunningApp("--registry", registry.path, "--leaderboard-dir", board, log=tmp_path / "app.log").wait_ready()
    try:
        with urllib.request.urlopen(running.url + "config") as response:
            config = json.loads(response.read())
        texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
        assert "`tampered`: tampered: arch.py does not match its registered sha256" in texts
        assert f"left out of the leaderboard: {board / 'evaluations' / 'broken.json'}: not a readable JSON" in texts
        client = Client(running.url, verbose=False, download_files=str(tmp_path / "downloads"))
        *_, details, png, _ = client.predict(
            model_id="tiny",
            mode_id="simulate",
            jpeg_quality=90,
            upload=handle_file(EXAMPLES / "chelsea.png"),
            gt_upload=None,
            which="bicubic",
            api_name="/upscale",
        )
        assert details["model"]["id"] == "tiny" and read(png).shape == (300, 450, 3)
    finally:
        running.stop()
    log = (tmp_path / "app.log").read_text()
    assert "not serving tampered" in log
