"""Hostile and broken submissions through the real validator, its code checks in the sandbox."""

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from rtsr.inference import prepare, upscale
from rtsr.submissions.loader import load_submission
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import open_submission
from rtsr.submissions.validation import run_checks
from tests.conftest import make_submission, photo


def _status(checks):
    return {c.name: c.status for c in checks}


def _detail(checks, name):
    return next(c.detail for c in checks if c.name == name)


def test_a_good_submission_passes(tmp_path):
    checks = run_checks(open_submission(make_submission(tmp_path / "s")), limits=Limits(wall_seconds=120))
    status = _status(checks)
    assert status["srmodel()"] == status["forward fp32"] == status["fp16 fidelity"] == "pass"
    assert "fail" not in status.values()
    assert _detail(checks, "forward fp32") == "random input 32x48 -> 64x96, 27x41 -> 54x82, finite"
    assert status["output range"] == "pass"


HANGS = "import time\n\ndef srmodel():\n    while True:\n        time.sleep(0.1)\n"
NEEDS_ARGS = "def srmodel(scale):\n    pass\n"
CRASHES = "import os\n\ndef srmodel():\n    os._exit(7)\n"
WRONG_SIZE = "import torch\n\ndef srmodel():\n    return torch.nn.Upsample(scale_factor=3)\n"
NANS = "import torch\n\nclass N(torch.nn.Module):\n    def forward(self, x):\n        return torch.nn.functional.interpolate(x, scale_factor=2) * float('nan')\n\ndef srmodel():\n    return N()\n"  # noqa: E501
PRINTS = "import os\nprint('noise on stdout')\n\ndef srmodel():\n    raise RuntimeError(f'boom from pid {os.getpid()} in {os.getcwd()}')\n"  # noqa: E501


@pytest.mark.parametrize(
    ("arch", "step", "message"),
    [
        (NEEDS_ARGS, "srmodel()", "must take no arguments, but requires scale"),
        (CRASHES, "srmodel()", "process died (exit status 7)"),
        (WRONG_SIZE, "forward fp32", "expected (1, 3, 64, 96)"),
        (NANS, "forward fp32", "NaN or infinite"),
    ],
)
def test_hostile_submissions_fail_a_check_with_a_reason(tmp_path, arch, step, message):
    checks = run_checks(
        open_submission(make_submission(tmp_path / "s", arch, checkpoint=False)), limits=Limits(wall_seconds=120)
    )
    failed = [c for c in checks if c.status == "fail"]
    assert [c.name for c in failed] == [step]
    assert message in failed[0].detail


def test_a_hanging_srmodel_is_stopped_at_the_time_limit(tmp_path):
    checks = run_checks(
        open_submission(make_submission(tmp_path / "s", HANGS, checkpoint=False)), limits=Limits(wall_seconds=8)
    )
    failed = [c for c in checks if c.status == "fail"]
    assert [(c.name, c.detail) for c in failed] == [("srmodel()", "exceeded the wall-clock limit of 8 s")]


def test_a_code_running_pickle_fails_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    arch = "import torch\n\ndef srmodel():\n    return torch.load('checkpoint.pth', weights_only=False)\n"
    root = make_submission(tmp_path / "s", arch, checkpoint=False)
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR."  # protocol-0 pickle calling os.system
    (root / "checkpoint.pth").write_bytes(payload.encode())
    checks = run_checks(open_submission(root), limits=Limits(wall_seconds=120))
    assert _status(checks)["srmodel()"] == "fail"
    assert "UnpicklingError" in _detail(checks, "srmodel()") or "Weights only load failed" in _detail(
        checks, "srmodel()"
    )
    assert not marker.exists()


def test_what_the_code_does_stays_in_the_child(tmp_path):
    root = make_submission(tmp_path / "s", PRINTS, checkpoint=False)
    cwd, path = os.getcwd(), list(sys.path)
    checks = run_checks(open_submission(root), limits=Limits(wall_seconds=120))
    detail = _detail(checks, "srmodel()")
    # another process, in the submission's folder; its stdout never reaches the report
    pid = int(detail.split("boom from pid ")[1].split(" in ")[0])
    assert pid != os.getpid()
    assert detail.endswith(f" in {root}")
    assert all("noise on stdout" not in c.detail for c in checks)
    assert os.getcwd() == cwd and sys.path == path


def _lr_dir_and_results(tmp_path, root, corrupt=False):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    model = prepare(load_submission(open_submission(root)).module, torch.device("cpu"), "fp32")
    (root / "results").mkdir()
    for name in ("chelsea", "coffee"):
        lr = photo(name)[:48, :64]
        Image.fromarray(lr).save(lr_dir / f"{name}.png")
        sr = upscale(model, lr, 2, torch.device("cpu"), "fp32")
        if corrupt and name == "coffee":
            sr = np.random.default_rng(0).integers(0, 256, sr.shape, dtype=np.uint8)
        Image.fromarray(sr).save(root / "results" / f"{name}.png")
    return lr_dir


def test_results_are_reproduced(tmp_path):
    root = make_submission(tmp_path / "s")
    lr_dir = _lr_dir_and_results(tmp_path, root)
    checks = run_checks(open_submission(root), lr_dir, limits=Limits(wall_seconds=120))
    assert _status(checks)["results/"] == _status(checks)["reproduce results/"] == "pass"
    # a rerun in another process may differ in the last bit of a rare pixel, no more
    db = float(_detail(checks, "reproduce results/").split("PSNR ")[1].split(" dB")[0])
    assert db > 60


def test_results_that_the_model_does_not_reproduce_fail(tmp_path):
    root = make_submission(tmp_path / "s")
    lr_dir = _lr_dir_and_results(tmp_path, root, corrupt=True)
    checks = run_checks(open_submission(root), lr_dir, limits=Limits(wall_seconds=120))
    assert _status(checks)["reproduce results/"] == "fail"


def test_missing_and_misfit_results(tmp_path):
    root = make_submission(tmp_path / "s")
    lr_dir = _lr_dir_and_results(tmp_path, root)
    (root / "results" / "coffee.png").unlink()
    assert "no coffee.png" in _detail(
        run_checks(open_submission(root), lr_dir, limits=Limits(wall_seconds=120)), "results/"
    )
    Image.fromarray(photo("coffee")[:10, :10]).save(root / "results" / "coffee.png")
    assert "expected x2 of 48x64" in _detail(
        run_checks(open_submission(root), lr_dir, limits=Limits(wall_seconds=120)), "results/"
    )


def test_requirements_are_checked_not_installed(tmp_path):
    root = make_submission(
        tmp_path / "s", files={"requirements.txt": "torch>=2.0\nnot-a-real-package-xyz==1.0\n# comment\n"}
    )
    checks = run_checks(open_submission(root), limits=Limits(wall_seconds=120))
    assert _detail(checks, "requirements") == "not installed here: not-a-real-package-xyz"
    assert _status(checks)["requirements"] == "warn"


def test_a_model_on_the_wrong_value_range_fails_with_a_hint(tmp_path):
    arch = "import torch\n\nclass X255(torch.nn.Module):\n    def forward(self, x):\n        return torch.nn.functional.interpolate(x, scale_factor=2) * 255\n\ndef srmodel():\n    return X255()\n"  # noqa: E501
    checks = run_checks(
        open_submission(make_submission(tmp_path / "s", arch, checkpoint=False)), limits=Limits(wall_seconds=120)
    )
    assert _status(checks)["output range"] == "fail"
    assert "is it on [0, 255]?" in _detail(checks, "output range")


# Writes a line that is not ours into the validator's report, then leaves without a trace.
TAMPERS = """
import json, os

def srmodel():
    with open(os.path.join(os.environ["HOME"], "report.jsonl"), "a") as report:
        report.write(json.dumps({"check": {"name": "all", "status": "bogus", "detail": "x" * 100000}}) + "\\n")
        report.write(json.dumps({"check": {"name": "time", "status": "pass", "detail": "forged"}}) + "\\n")
    os._exit(0)
"""


def test_a_tampered_report_fails_and_is_read_no_further(tmp_path):
    root = make_submission(tmp_path / "s", TAMPERS, checkpoint=False)
    checks = run_checks(open_submission(root), limits=Limits(wall_seconds=120))
    failed = [(c.name, c.detail) for c in checks if c.status == "fail"]
    assert failed == [("srmodel()", "the submission's process ended in the middle of this check")]
    assert all(c.detail != "forged" and len(c.detail) < 1200 for c in checks)
