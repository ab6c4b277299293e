"""The real CLI, end to end, in child processes: prepare-data -> sr -> metrics -> score,
runtime and evaluate, and every kind of bad input giving one line and a non-zero exit."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from bench.bench_metrics import skimage_metrics
from rtsr.cli import COMMANDS, build_parser
from rtsr.images import read_rgb
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.data import ROOT


@pytest.mark.parametrize("scale", [2, 3])
def test_prepare_sr_metrics_score(tmp_path, hr_dir, scale):
    lr, gt, sr = tmp_path / "lr", tmp_path / "gt", tmp_path / "sr"
    out = run_cli("prepare-data", "--image-dir", hr_dir, "--lr-out-dir", lr, "--gt-out-dir", gt,
                  "--downsample-factor", scale, "--jpeg-level", 90, check=True)  # fmt: skip
    assert f"prepared 4 images at x{scale}" in out.stdout
    assert sorted(p.name for p in lr.iterdir()) == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]

    out = run_cli("sr", "--model", "bicubic", "--scale", scale, "--lr-dir", lr, "--out-dir", sr, check=True)
    # bicubic has no weights to run faster in a lower precision: the reference engine
    expected = f"upscaled 4 images x{scale} with bicubic-x{scale} on cpu\nengine eager fp32 (the FP32 reference)\n"
    assert expected in out.stdout

    report = tmp_path / "metrics.json"
    out = run_cli("metrics", "--sr-dir", sr, "--gt-dir", gt, "--json", report, check=True)
    doc = json.loads(report.read_text())
    assert [r["name"] for r in doc["images"]] == ["astronaut", "chelsea", "coffee", "rocket"]
    # Recompute each number from the files on disk with scikit-image.
    for row in doc["images"]:
        ref = skimage_metrics(read_rgb(sr / f"{row['name']}.png"), read_rgb(gt / f"{row['name']}.png"))
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, abs=1e-6), (row["name"], key)
        assert 20 < row["psnr_rgb"] < 45
    mean_psnr = np.mean([r["psnr_rgb"] for r in doc["images"]])
    assert doc["mean"]["psnr_rgb"] == pytest.approx(mean_psnr)
    assert f"{mean_psnr:.4f}" in out.stdout.splitlines()[-2]  # the "mean" row, before "wrote"

    out = run_cli("score", "--psnr", mean_psnr + 1, "--runtime", 4, "--bicubic-psnr", mean_psnr, check=True)
    assert out.stdout.strip() == "20.00"  # as the leaderboard prints scores


def test_identical_folders_print_inf(tmp_path, hr_dir):
    out = run_cli("metrics", "--sr-dir", hr_dir, "--gt-dir", hr_dir, "--json", tmp_path / "m.json", check=True)
    mean_row = out.stdout.splitlines()[-2].split()
    assert mean_row == ["mean", "inf", "1.0000", "inf", "1.0000"]
    assert math.isinf(json.loads((tmp_path / "m.json").read_text())["mean"]["psnr_rgb"])


def test_score_json():
    out = run_cli("score", "--psnr", "35.02", "--runtime", "3.19", "--bicubic-psnr", "33.92", "--json", check=True)
    doc = json.loads(out.stdout)
    assert doc["score"] == pytest.approx(24.0, abs=0.01) and doc["psnr_gain"] == pytest.approx(1.1)


def test_runtime_report(tmp_path):
    report = tmp_path / "rt.json"
    out = run_cli("runtime", "--model", "rtsrn", "--scale", 3, "--repeat", 3, "--warmup", 1,
                  "--crop-size", 90, 120, "--json", report, check=True)  # fmt: skip
    assert "1x3x30x40 -> 90x120" in out.stdout and "wall-clock" in out.stdout
    doc = json.loads(report.read_text())
    assert doc["runtime"]["passes"] == 3 and doc["bicubic"]["passes"] == 3 and doc["warmup"] == 1
    assert doc["model"]["id"] == "rtsrn-x3" and doc["device_type"] == "cpu" and doc["precision"] == "fp32"
    assert doc["relative_to_bicubic"] == pytest.approx(doc["runtime"]["mean_ms"] / doc["bicubic"]["mean_ms"])
    assert doc["flops"] == 2 * 9 * (3 * 64 + 5 * 64 * 64 + 64 * 27) * 30 * 40


def test_evaluate_on_set5(tmp_path, set5):
    lr, gt = tmp_path / "lr", tmp_path / "gt"
    run_cli("prepare-data", "--image-dir", set5, "--lr-out-dir", lr, "--gt-out-dir", gt,
            "--downsample-factor", 2, check=True)  # fmt: skip
    result = tmp_path / "bicubic.json"
    out = run_cli("evaluate", "--model", "bicubic", "--scale", 2, "--lr-dir", lr, "--gt-dir", gt, "--out", result,
                  "--repeat", 2, "--warmup", 0, "--crop-size", 64, 64, check=True)  # fmt: skip
    doc = json.loads(result.read_text())
    assert doc["schema"] == "rtsr.evaluate" and doc["schema_version"] == 1
    assert doc["dataset"]["images"] == 5 and doc["model"]["track"] == 1
    # bicubic measured as the model and as the reference: the same numbers, no gain, score 0
    assert doc["metrics"]["mean"] == doc["bicubic"]["mean"]
    assert doc["psnr_gain"] == 0 and doc["score"] == 0
    assert 25 < doc["metrics"]["mean"]["psnr_rgb"] < 40
    assert "\nScore           0.00\n" in out.stdout  # each metric of the specification, labelled
    # The evaluate numbers equal those of the metrics command on the sr command's output.
    run_cli("sr", "--model", "bicubic", "--scale", 2, "--lr-dir", lr, "--out-dir", tmp_path / "sr", check=True)
    metrics = tmp_path / "m.json"
    run_cli("metrics", "--sr-dir", tmp_path / "sr", "--gt-dir", gt, "--json", metrics, check=True)
    assert json.loads(metrics.read_text())["mean"] == doc["metrics"]["mean"]


# --- bad input: one line, non-zero exit, nothing half-written ------------------------------


def _prepare(hr, tmp_path, *extra):
    return run_cli("prepare-data", "--image-dir", hr, "--lr-out-dir", tmp_path / "lr",
                   "--gt-out-dir", tmp_path / "gt", *extra)  # fmt: skip


def _outputs(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "hr")


def test_scale_other_than_2_or_3(tmp_path, hr_dir):
    result = _prepare(hr_dir, tmp_path, "--downsample-factor", 4)
    assert result.returncode == 2
    assert_one_line_error(result, "scale must be 2 or 3, got 4")
    assert _outputs(tmp_path) == []


def test_crop_size_that_does_not_divide(tmp_path, hr_dir):
    result = _prepare(hr_dir, tmp_path, "--downsample-factor", 3, "--crop-size", 100, 99)
    assert_one_line_error(result, "crop size 100x99", "divisible by the scale 3")
    assert _outputs(tmp_path) == []


def test_crop_larger_than_an_image(tmp_path, hr_dir):
    result = _prepare(hr_dir, tmp_path, "--downsample-factor", 2, "--crop-size", 500, 700)
    assert_one_line_error(result, "larger than the image")
    assert _outputs(tmp_path) == []


def test_non_image_file_among_images(tmp_path, hr_dir):
    (hr_dir / "readme.png").write_text("this is text")
    result = _prepare(hr_dir, tmp_path, "--downsample-factor", 2)
    assert_one_line_error(result, f"{hr_dir / 'readme.png'}: not an image file")  # the path as given
    assert _outputs(tmp_path) == []


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "hr").mkdir()
    assert_one_line_error(_prepare(tmp_path / "hr", tmp_path, "--downsample-factor", 2), "no images found")
    assert_one_line_error(_prepare(tmp_path / "nope", tmp_path, "--downsample-factor", 2), "no such folder")
    assert _outputs(tmp_path) == []


def test_metrics_missing_partner_and_size_mismatch(tmp_path, hr_dir):
    other = tmp_path / "other"
    other.mkdir()
    Image.open(hr_dir / "coffee.png").save(other / "coffee.png")
    result = run_cli("metrics", "--sr-dir", other, "--gt-dir", hr_dir)
    assert_one_line_error(result, "astronaut.png: no SR image named astronaut.*", "2 more: chelsea, rocket")
    Image.open(hr_dir / "coffee.png").crop((0, 0, 100, 100)).save(other / "coffee.png")
    result = run_cli("metrics", "--sr-dir", other, "--gt-dir", other.parent / "gt-only")
    assert_one_line_error(result, "no such folder")
    gt_one = tmp_path / "gt-one"
    gt_one.mkdir()
    Image.open(hr_dir / "coffee.png").save(gt_one / "coffee.png")
    assert_one_line_error(run_cli("metrics", "--sr-dir", other, "--gt-dir", gt_one), "coffee", "size mismatch")


def test_metrics_json_not_written_on_error(tmp_path, hr_dir):
    result = run_cli("metrics", "--sr-dir", tmp_path / "absent", "--gt-dir", hr_dir, "--json", tmp_path / "m.json")
    assert_one_line_error(result, "no such folder")
    assert not (tmp_path / "m.json").exists()


def test_unknown_model_and_cuda_without_gpu(tmp_path, hr_dir):
    result = run_cli("sr", "--model", "edsr", "--scale", 2, "--lr-dir", hr_dir, "--out-dir", tmp_path / "o")
    assert_one_line_error(result, "unknown model 'edsr'")
    result = run_cli("sr", "--model", "bicubic", "--scale", 2, "--fp16", "--device", "cpu",
                     "--lr-dir", hr_dir, "--out-dir", tmp_path / "o")  # fmt: skip
    assert_one_line_error(result, "FP16 needs a CUDA device")
    assert not (tmp_path / "o").exists()


def test_evaluate_with_mismatched_pairs(tmp_path, hr_dir):
    # GT at the LR's own size: not x2 of it.
    result = run_cli("evaluate", "--model", "bicubic", "--scale", 2, "--lr-dir", hr_dir, "--gt-dir", hr_dir,
                     "--out", tmp_path / "e.json", "--repeat", 1)  # fmt: skip
    assert_one_line_error(result, "expected x2 of its LR")
    assert not (tmp_path / "e.json").exists()


def test_prepare_data_matlab_lossless_crop(tmp_path, hr_dir):
    from rtsr.degradation import downsample

    result = _prepare(hr_dir, tmp_path, "--downsample-factor", 3, "--resize", "matlab", "--jpeg-level", 0,
                      "--crop-size", 300, 360)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "matlab bicubic, PNG" in result.stdout
    gt = read_rgb(tmp_path / "gt" / "rocket.png")
    assert gt.shape == (300, 360, 3)
    assert np.array_equal(read_rgb(tmp_path / "lr" / "rocket.png"), downsample(gt, 3, "matlab"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_cuda_asked_for_on_a_cpu_host(hr_dir):
    result = run_cli("metrics", "--sr-dir", hr_dir, "--gt-dir", hr_dir, "--device", "cuda")
    assert_one_line_error(result, "no CUDA device")


def test_train_through_the_cli(tmp_path, hr_dir):
    out = run_cli("train", "--scale", 2, "--train-dir", hr_dir, "--out", tmp_path / "run", "--steps", 4,
                  "--batch-size", 2, "--patch", 16, "--val-every", 2, "--checkpoint-every", 2, check=True)  # fmt: skip
    assert "trained RTSRN x2 for 4 steps" in out.stdout
    assert (tmp_path / "run" / "submission" / "model.safetensors").is_file()
    again = run_cli("train", "--scale", 2, "--train-dir", hr_dir, "--out", tmp_path / "run")
    assert_one_line_error(again, "a run is already there")
    assert_one_line_error(run_cli("train", "--scale", 2, "--train-dir", tmp_path / "no", "--out", tmp_path / "r2"),
                          "no such folder")  # fmt: skip


# --- global options, before or after the command -------------------------------------------


def _rtsr(*args: object) -> subprocess.CompletedProcess[str]:
    """``python -m rtsr ARGS`` exactly as given (run_cli puts --quiet first)."""
    return subprocess.run([sys.executable, "-m", "rtsr", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip


def _has_progress_bar(stderr: str) -> bool:
    return "100%|" in stderr and "img/s" in stderr


def test_quiet_after_the_command_hides_the_progress_bar(tmp_path, hr_dir):
    sr = ("sr", "--model", "bicubic", "--scale", 2, "--lr-dir", hr_dir)
    loud = _rtsr(*sr, "--out-dir", tmp_path / "loud")
    assert loud.returncode == 0, loud.stderr
    assert _has_progress_bar(loud.stderr) and "sr x2 eager fp32:" in loud.stderr  # what -q is to hide

    for where, argv in {
        "-q last": (*sr, "--out-dir", tmp_path / "a", "-q"),
        "--quiet among the options": ("sr", "--model", "bicubic", "--quiet", "--scale", 2, "--lr-dir", hr_dir,
                                      "--out-dir", tmp_path / "b"),
        "-q before the command": ("-q", *sr, "--out-dir", tmp_path / "c"),
    }.items():  # fmt: skip
        result = _rtsr(*argv)
        assert result.returncode == 0, (where, result.stderr)
        assert "img/s" not in result.stderr and "%|" not in result.stderr, (where, result.stderr)
        assert "upscaled 4 images x2 with bicubic-x2 on cpu" in result.stdout, where
    for out in ("a", "b", "c"):
        assert sorted(p.name for p in (tmp_path / out).iterdir()) == sorted(p.name for p in hr_dir.iterdir())


def test_verbose_after_the_command_logs(tmp_path, hr_dir):
    def prepare(n: int) -> tuple[object, ...]:
        return ("prepare-data", "--image-dir", hr_dir, "--downsample-factor", 2,
                "--lr-out-dir", tmp_path / f"lr{n}", "--gt-out-dir", tmp_path / f"gt{n}")  # fmt: skip

    plain = _rtsr(*prepare(0), "-q")
    assert plain.returncode == 0, plain.stderr
    assert "INFO" not in plain.stderr  # what -v adds
    for argv in ((*prepare(1), "-v", "-q"), ("-q", *prepare(2)[:3], "--verbose", *prepare(2)[3:]),
                 ("-v", *prepare(3), "-q")):  # fmt: skip
        result = _rtsr(*argv)
        assert result.returncode == 0, result.stderr
        # both flags hold, wherever each was given: the log line, and no progress bar
        assert result.stderr.strip() == "INFO rtsr.degradation: prepared 4 images at x2", argv
        assert "prepared 4 images at x2" in result.stdout


def test_unknown_option_after_the_command_is_still_refused(tmp_path, hr_dir):
    for bad in ("--bogus", "-x", "--quietly"):
        result = _rtsr("sr", "--model", "bicubic", "--scale", 2, "--lr-dir", hr_dir,
                       "--out-dir", tmp_path / "o", "-q", bad)  # fmt: skip
        assert result.returncode == 2, (bad, result.stderr)
        assert_one_line_error(result, f"unrecognized arguments: {bad}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "quiet", "verbose"),
    [
        (["registry", "list"], False, False),
        (["-q", "registry", "list"], True, False),
        (["registry", "list", "-q"], True, False),
        (["registry", "-v", "list"], False, True),
        (["-v", "registry", "list", "--quiet"], True, True),
        (["-q", "-v", "validate", "sub", "-q", "-v"], True, True),
        (["validate", "-v", "sub"], False, True),
        (["score", "--psnr", "30", "-qv", "--runtime", "4", "--bicubic-psnr", "29"], True, True),
    ],
)
def test_global_options_parse_the_same_anywhere(argv, quiet, verbose):
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose) == (quiet, verbose)


@pytest.mark.parametrize(
    "command", [*(c.name for c in COMMANDS if c.name != "registry"), "registry list", "registry add"]
)
def test_every_command_lists_the_global_options_in_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command.split(), "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "-q, --quiet" in help_text and "-v, --verbose" in help_text, help_text
    assert f"usage: rtsr {command} [-h] [-q] [-v]" in help_text.replace("\n", " ")
