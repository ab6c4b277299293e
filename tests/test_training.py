import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from rtsr.errors import InputError
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import open_submission
from rtsr.submissions.validation import run_checks
from rtsr.training import STATE_FILE, PatchSampler, TrainConfig, split, train
from tests.support.data import PHOTOS, photo


@pytest.fixture
def train_dir(tmp_path):
    """Two kinds of content one folder down, as data/train/<kind>/ holds them."""
    root = tmp_path / "train"
    for i, name in enumerate(PHOTOS):
        kind = root / ("photos" if i % 2 else "art")
        kind.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(name)[:200, :200]).save(kind / f"{name}.png")
    return root


def _config(train_dir, **kw):
    base = {"scale": 2, "train_dir": str(train_dir), "val_every_nth": 4, "steps": 10, "batch_size": 4,
            "patch": 16, "val_every": 5, "checkpoint_every": 5}  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_split_holds_out_every_nth(train_dir):
    train_paths, val_paths = split(_config(train_dir))
    assert len(val_paths) == 1 and len(train_paths) == 3 and not set(train_paths) & set(val_paths)


def test_patches_are_the_challenges_degradation(train_dir):
    from rtsr.degradation import degrade

    config = _config(train_dir, scale=3)
    sampler = PatchSampler(split(config)[0], config, torch.Generator().manual_seed(1))
    lr, hr = sampler.batch()
    assert lr.shape == (4, 3, 16, 16) and hr.shape == (4, 3, 48, 48)
    hr_uint8 = (hr[0].permute(1, 2, 0) * 255).round().byte().numpy()
    expected = torch.from_numpy(degrade(hr_uint8, 3)).permute(2, 0, 1).float() / 255
    assert torch.equal(lr[0], expected)


def test_training_writes_a_submission_that_validates(train_dir, tmp_path):
    folder = train(_config(train_dir), tmp_path / "run", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "arch.py", "model.safetensors", "submission.json"]
    assert json.loads((folder / "submission.json").read_text())["scale"] == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert "step 5: loss" in log and "step 10: loss" in log and "val PSNR" in log
    assert "10 steps of batch 4" in (folder / "README.md").read_text()
    checks = run_checks(open_submission(folder), limits=Limits(wall_seconds=120))
    assert [c.name for c in checks if c.status == "fail"] == []


def test_a_stopped_run_resumes_to_the_same_weights(train_dir, tmp_path, monkeypatch):
    straight = train(_config(train_dir), tmp_path / "straight", progress=False)

    calls = {"n": 0}
    original = PatchSampler.batch

    def stop_after_six(self):
        calls["n"] += 1
        if calls["n"] > 6:  # step 6 never finishes: the last checkpoint is step 5
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(PatchSampler, "batch", stop_after_six)
    with pytest.raises(KeyboardInterrupt):
        train(_config(train_dir), tmp_path / "stopped", progress=False)
    assert torch.load(tmp_path / "stopped" / STATE_FILE, weights_only=True)["step"] == 5
    monkeypatch.setattr(PatchSampler, "batch", original)
    resumed = train(_config(train_dir), tmp_path / "stopped", resume=True, progress=False)

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_and_restart_are_checked(train_dir, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        train(_config(train_dir), tmp_path / "run", resume=True, progress=False)
    train(_config(train_dir, steps=5), tmp_path / "run", progress=False)
    with pytest.raises(InputError, match="already there; pass --resume"):
        train(_config(train_dir, steps=5), tmp_path / "run", progress=False)
    with pytest.raises(InputError, match=r"other settings than the saved run \(lr\)"):
        train(_config(train_dir, steps=5, lr=0.5), tmp_path / "run", resume=True, progress=False)
