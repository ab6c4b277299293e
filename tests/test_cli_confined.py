"""``sr``, ``runtime`` and ``evaluate`` on someone else's submission run its code in the
sandbox, as the worker does (rtsr.submissions.confined); built-in and bundled models, and
``--in-process``, run in the CLI's own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rtsr.degradation import degrade
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.data import ROOT, photo
from tests.test_sandbox import SECRET, hostile

BUNDLED_RTSRN = ROOT / "submissions" / "rtsrn_x2"


def _lr_and_gt(tmp_path: Path) -> tuple[Path, Path]:
    """Two photos cut to sides that divide by 2, and their LR as the challenge makes it."""
    lr_dir, gt_dir = tmp_path / "lr", tmp_path / "gt"
    lr_dir.mkdir()
    gt_dir.mkdir()
    for name in ("rocket", "coffee"):
        gt = photo(name)[:96, :128]
        Image.fromarray(gt).save(gt_dir / f"{name}.png")
        Image.fromarray(degrade(gt, 2)).save(lr_dir / f"{name}.png")
    return lr_dir, gt_dir


def test_the_env_snooper_through_rtsr_sr_sees_no_token(tmp_path):
    lr_dir, _ = _lr_and_gt(tmp_path)
    home = tmp_path / "home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text(SECRET)
    snoop = hostile(tmp_path, "env_snoop", secret=SECRET, token_file=str(home / ".cache" / "huggingface" / "token"))
    env = {"HF_TOKEN": SECRET, "HOME": str(home)}

    confined = run_cli("sr", "--model", snoop, "--lr-dir", lr_dir, "--out-dir", tmp_path / "out", env=env)
    assert SECRET not in confined.stdout + confined.stderr
    assert_one_line_error(confined, "srmodel() failed at arch.py", "RuntimeError: snooped: []")
    assert not (tmp_path / "out").exists()

    # what --in-process gives up: the same code, in the CLI's process, finds the token (run
    # from beside the folder, so that the one line's start, its relative path, leaves room)
    here = subprocess.run(
        [sys.executable, "-m", "rtsr", "--quiet", "sr", "--model", "env_snoop", "--in-process",
         "--lr-dir", str(lr_dir), "--out-dir", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert here.returncode == 1 and "sandbox" not in here.stderr
    assert "RuntimeError: snooped: ['env HF_TOKEN', " in here.stderr, here.stderr
    assert not (tmp_path / "out").exists()


def test_a_submission_folder_in_the_sandbox_upscales_as_its_registered_entry_does_here(tmp_path):
    lr_dir, _ = _lr_and_gt(tmp_path)
    confined = run_cli("sr", "--model", BUNDLED_RTSRN, "--lr-dir", lr_dir, "--out-dir", tmp_path / "a", check=True)
    assert "upscaled 2 images x2 with rtsrn_x2 on cpu, in the sandbox" in confined.stdout
    here = run_cli("sr", "--model", "rtsrn-x2", "--lr-dir", lr_dir, "--out-dir", tmp_path / "b", check=True)
    assert "sandbox" not in here.stderr + here.stdout  # the bundled entry runs in-process
    for name in ("rocket.png", "coffee.png"):
        a, b = (np.asarray(Image.open(tmp_path / d / name)) for d in ("a", "b"))
        assert a.shape == (96, 128, 3) and np.array_equal(a, b), name
    # the engine is chosen in the model process as it is here
    assert confined.stdout.splitlines()[1] == here.stdout.splitlines()[1]


def test_runtime_and_evaluate_in_the_sandbox_are_vouched_for_as_the_workers(tmp_path):
    lr_dir, gt_dir = _lr_and_gt(tmp_path)
    protocol = ["--crop-size", "96", "128", "--warmup", "1", "--repeat", "3"]
    out = tmp_path / "rtsrn.json"
    evaluated = run_cli(
        "evaluate", "--model", BUNDLED_RTSRN, "--lr-dir", lr_dir, "--gt-dir", gt_dir, "--out", out, *protocol,
        check=True,
    )  # fmt: skip
    assert evaluated.stdout.startswith("rtsrn_x2 on gt (2 images), FP32 on ") and f"wrote {out}" in evaluated.stdout
    doc = json.loads(out.read_text())
    check = doc["runtime"]["check"]
    # each of the 3 passes timed from here, and the exported graph compared with 2 of them
    assert check["passes_checked"] == 3 and check["graph_passes_compared"] == 2, check
    assert check["size_by"] == "exported graph"
    assert check["graph_agreement_db"] is None or check["graph_agreement_db"] >= 45  # None: identical
    assert doc["model"]["params"] == 193_356  # counted from the graph, as by hand
    assert doc["runtime"]["runtime"]["passes"] == 3 and doc["metrics"]["mean"]["psnr_rgb"] > 20

    timed = run_cli("runtime", "--model", BUNDLED_RTSRN, *protocol, check=True)
    assert "193,356 params" in timed.stdout
    assert "sandboxed each of 3 passes timed from outside the sandbox; size counted from its exported graph" in (
        timed.stdout
    )

    # without --quiet, the CLI says first where the code runs
    shown = subprocess.run(
        [sys.executable, "-m", "rtsr", "runtime", "--model", str(BUNDLED_RTSRN), *protocol],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert shown.stderr.startswith(
        "rtsr runtime: rtsrn_x2 runs in the sandbox, as the worker runs it"
        " (no network, no token, read-only files; --in-process runs your own code here)\n"
    )

    # timing engines beside eager needs the model in this process: said in one line
    refused = run_cli("runtime", "--model", BUNDLED_RTSRN, "--engine", "openvino", *protocol)
    assert_one_line_error(refused, "--engine times engines beside eager", "--in-process")
