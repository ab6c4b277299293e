"""Hostile and broken submissions through the real validator, its code checks in the sandbox."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rtsr.images import read_rgb
from rtsr.inference import prepare, upscale
from rtsr.submissions import sandbox
from rtsr.submissions.loader import load_submission
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import open_submission
from rtsr.submissions.validation import run_checks, run_validation
from tests.support.cli import run_cli
from tests.support.data import photo
from tests.support.submissions import make_submission, populate_hub_cache
from tests.test_loader import challenge_submission, pickle_calling, write_checkpoint, zip_folder


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


BRANCHES = "import torch\n\nclass B(torch.nn.Module):\n    def forward(self, x):\n        up = torch.nn.functional.interpolate(x, scale_factor=2)\n        return up if x.mean() > 0.5 else up * 0.9\n\ndef srmodel():\n    return B()\n"  # noqa: E501


def test_the_checklist_exports_the_model_as_the_worker_counts_it(tmp_path):
    """The worker counts a submission's size on its torch.export graph at the track's 4K
    input: the tiny model's graph counts what its convolutions hold, and a forward whose Python
    branches on a tensor's value cannot be exported, which the checklist says in one line."""
    checks = run_checks(open_submission(make_submission(tmp_path / "s")), limits=Limits(wall_seconds=120))
    assert _status(checks)["torch.export"] == "pass"
    macs_per_pixel = 9 * 3 * 12  # TINY_ARCH: one 3x3 conv, 3 -> 12 channels, beside bicubic
    params = 3 * 12 * 9 + 12
    gflops = 2 * macs_per_pixel * 1080 * 1920 / 1e9
    assert _detail(checks, "torch.export") == (
        f"at 1920x1080 (a 4K output): {params:,} parameters, {gflops:.2f} GFLOPs, as the worker counts them"
    )
    checks = run_checks(open_submission(make_submission(tmp_path / "b", BRANCHES, checkpoint=False)))
    assert _status(checks)["torch.export"] == "fail"
    assert "\n" not in _detail(checks, "torch.export")
    assert _detail(checks, "torch.export").startswith("torch.export could not export it: ")


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
        (WRONG_SIZE, "scale", "x2 in submission.json, but a 37x43 -> 111x129 forward pass upscales x3"),
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


# --- the challenge's layout as it is: no submission.json, whole-model pickles ----------------

HOSTILE = Path(__file__).parent / "hostile"
REVISION = "5e1f0c2d3b4a69788796a5b4c3d2e1f0a9b8c7d6"


@pytest.fixture
def bubblewrap():
    """The sandboxed tests here run under bubblewrap where it works; they skip without it,
    except under CI, where .ci/run installs it."""
    problem = sandbox.bubblewrap_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; .ci/run installs bubblewrap")
        pytest.skip(problem)


def _line(stdout: str, name: str) -> tuple[str, str]:
    """The status and detail of the checklist line ``name`` (a name without spaces)."""
    status, _, detail = next(line.split(None, 2) for line in stdout.splitlines() if line.split()[1:2] == [name])
    return status, detail


def test_without_metadata_the_sandbox_finds_the_scale_and_checks_results_at_it(tmp_path, bubblewrap):
    root = make_submission(tmp_path / "team_x2")
    (root / "submission.json").unlink()
    lr_dir = _lr_dir_and_results(tmp_path, root)
    validation = run_validation(open_submission(root), lr_dir, limits=Limits(wall_seconds=120))
    assert validation.passed and validation.submission.meta.scale == 2
    assert _detail(validation.checks, "scale") == "x2 (inferred from a 37x43 -> 74x86 forward pass)"
    assert _detail(validation.checks, "metadata") == (
        "no submission.json (optional): scale from the model, named team_x2, team unknown"
    )
    assert _detail(validation.checks, "files") == "arch.py, checkpoint.pth"
    assert _detail(validation.checks, "results/") == "2 PNGs, one per LR image, all x2"
    names = [c.name for c in validation.checks]
    assert names.index("results/") < names.index("sandbox") < names.index("srmodel()") < names.index("scale")


def test_a_declared_scale_is_confirmed(tmp_path, bubblewrap):
    checks = run_checks(open_submission(make_submission(tmp_path / "s")), limits=Limits(wall_seconds=120))
    assert _detail(checks, "scale") == "x2 (as declared, confirmed by a 37x43 -> 74x86 forward pass)"


def test_a_challenge_zip_as_it_is_validates_registers_and_runs_through_the_cli(tmp_path, bubblewrap):
    lr_images = {name: photo(name)[:48, :64] for name in ("chelsea", "coffee")}
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for name, image in lr_images.items():
        Image.fromarray(image).save(lr_dir / f"{name}.png")
    folder = challenge_submission(tmp_path / "rtsrn_pickled", lr_images)
    archive = zip_folder(folder, tmp_path / "submission_rtsrn_pickled.zip")
    env = {"RTSR_CACHE": str(tmp_path / "cache")}

    out = run_cli("validate", archive, "--lr-dir", lr_dir, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0] == f"validate {archive} (x2, Track 1)"
    assert _line(out.stdout, "scale") == ("PASS", "x2 (inferred from a 37x43 -> 74x86 forward pass)")
    assert _line(out.stdout, "files") == ("PASS", "arch.py, model.pth")
    assert _line(out.stdout, "metadata")[1].startswith("no submission.json (optional)")
    assert _line(out.stdout, "requirements") == ("PASS", "everything in requirements.txt is installed")
    assert _line(out.stdout, "results/") == ("PASS", "2 PNGs, one per LR image, all x2")
    status, detail = next((line.split()[0], line) for line in out.stdout.splitlines() if "reproduce results/" in line)
    assert status == "PASS" and float(detail.split("PSNR ")[1].split(" dB")[0]) > 60

    wrong = run_cli("validate", archive, "--scale", "3", env=env)
    assert wrong.returncode == 1 and wrong.stdout.splitlines()[0] == f"validate {archive} (x3, Track 2)"
    failed = [line for line in wrong.stdout.splitlines() if line.split()[:1] == ["FAIL"]]
    assert len(failed) == 1, wrong.stdout
    assert _line(wrong.stdout, "scale") == ("FAIL", "x3 given, but a 37x43 -> 74x86 forward pass upscales x2")

    # registered from the Hub at the scale validation found, then run by its id
    cache = tmp_path / "hub"
    populate_hub_cache(cache, "team/rtsrn-pickled", REVISION, folder)
    env = {"HF_HUB_CACHE": str(cache), "RTSR_REGISTRY": str(tmp_path / "registry.json")}
    added = run_cli("registry", "add", f"team/rtsrn-pickled@{REVISION}", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "registered rtsrn-pickled (x2, 4 files hashed)" in added.stdout
    entry = json.loads((tmp_path / "registry.json").read_text())["entries"][0]
    assert (entry["scale"], entry["track"], entry["name"], entry["team"]) == (2, 1, "rtsrn-pickled", "")
    run_cli("sr", "--model", "rtsrn-pickled", "--lr-dir", lr_dir, "--out-dir", tmp_path / "sr", env=env, check=True)
    for name in lr_images:
        ours = read_rgb(tmp_path / "sr" / f"{name}.png").astype(int)
        theirs = read_rgb(folder / "results" / f"{name}.png").astype(int)
        assert ours.shape == (96, 128, 3) and np.abs(ours - theirs).max() <= 1


def test_a_model_of_another_ratio_fails_one_line_in_the_cli(tmp_path, bubblewrap):
    arch = "import torch\n\ndef srmodel():\n    return torch.nn.Upsample(scale_factor=4)\n"
    root = make_submission(tmp_path / "x4", arch, checkpoint=False)
    (root / "submission.json").unlink()
    out = run_cli("validate", root)
    assert out.returncode == 1 and out.stdout.splitlines()[0] == f"validate {root} (scale unknown)"
    failed = [line for line in out.stdout.splitlines() if line.split()[:1] == ["FAIL"]]
    assert len(failed) == 1, out.stdout
    assert _line(out.stdout, "scale") == (
        "FAIL",
        "the model upscales a 37x43 input to 148x172: x4; the scale must be exactly x2 or x3",
    )


@pytest.mark.parametrize(
    ("name", "argument"),
    [
        ("os.system", "touch {marker}"),
        ("posix.system", "touch {marker}"),
        ("builtins.exec", "open('{marker}', 'w').close()"),
        ("numpy.ndarray", "{marker}"),
    ],
)
@pytest.mark.parametrize("isolation", ["bubblewrap", "none"])
def test_a_pickle_that_would_run_code_fails_naming_it_and_runs_nothing(
    tmp_path, monkeypatch, bubblewrap, name, argument, isolation
):
    # Without namespaces the payload could write the marker, had anything run: the refusal
    # itself is what stops it, not the sandbox.
    monkeypatch.setenv("RTSR_SANDBOX", isolation)
    marker = tmp_path / "ran"
    arch = (HOSTILE / "pickled_code.py").read_text().replace("{global_name}", name)
    root = make_submission(tmp_path / "s", arch, checkpoint=False)
    write_checkpoint(root / "model.pth", pickle_calling(name, argument.format(marker=marker)))
    checks = run_checks(open_submission(root), limits=Limits(wall_seconds=120))
    [(step, detail)] = [(c.name, c.detail) for c in checks if c.status == "fail"]
    assert step == "srmodel()" and "\n" not in detail
    assert f"UnpicklingError: model.pth: refused to unpickle {name} (" in detail
    assert not marker.exists()
