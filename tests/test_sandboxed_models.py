"""The app's models run in the sandbox: registered submissions, hostile ones among them,
served through ModelPool as the app serves them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from rtsr.errors import ModelError
from rtsr.serving import ModelPool, serve
from rtsr.submissions.registry import Registry, entry_for
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.sandboxed_models import SERVING_LIMITS, SandboxedModels
from rtsr.submissions.submission import open_submission
from tests.conftest import make_submission, photo
from tests.test_sandbox import SECRET, hostile, marker, running_with

#: A model whose forward does what its input's width asks: 64 upscales, 65 exits the process,
#: 66 hangs, 67 exhausts memory.
MOODY_ARCH = """
import os
import time

import torch.nn.functional as F
from torch import nn


class Moody(nn.Module):
    def forward(self, x):
        width = x.shape[-1]
        if width == 65:
            os._exit(3)
        if width == 66:
            time.sleep(1000)
        if width == 67:
            hoard = []
            while True:
                hoard.append(bytearray(256 * 1024 * 1024))
        return F.interpolate(x, scale_factor=2, mode="nearest")


def srmodel():
    return Moody()
"""


#: A model that, on a 68-wide input, writes to the app's channel itself: a progress message
#: whose total is more tiles than the input has pixels, as if to keep the app waiting.
FORGER_ARCH = """
import json
import os
import socket
import struct

import torch.nn.functional as F
from torch import nn


class Forger(nn.Module):
    def forward(self, x):
        if x.shape[-1] == 68:
            channel = socket.socket(fileno=int(os.environ["RTSR_CHANNEL_FD"]))
            forged = json.dumps({"progress": [1, 10**12]}).encode()
            channel.sendall(struct.pack(">I", len(forged)) + forged)
        return F.interpolate(x, scale_factor=2, mode="nearest")


def srmodel():
    return Forger()
"""


def registry_of(tmp_path: Path, **folders: Path) -> Registry:
    registry = Registry(tmp_path / "registry.json", [])
    for entry_id, folder in folders.items():
        registry.add(entry_for(open_submission(folder), tmp_path, entry_id))
    registry.write()
    return registry


def test_a_model_that_kills_its_process_fails_one_request_and_the_next_is_served(tmp_path):
    moody = make_submission(tmp_path / "moody", MOODY_ARCH, checkpoint=False)
    pool = ModelPool(registry_of(tmp_path, moody=moody), limits=Limits(memory_bytes=2 * 1024**3, wall_seconds=None))
    try:
        image = photo("coffee")[:32]
        assert pool.upscale("moody", image[:, :64]).sr.shape == (64, 128, 3)
        with pytest.raises(ModelError, match=r"^moody failed on a 65x32 input: its process ended \(.*exit status 3"):
            pool.upscale("moody", image[:, :65])
        assert pool.upscale("moody", image[:, :64]).sr.shape == (64, 128, 3)  # a fresh process
        with pytest.raises(ModelError, match=r"^moody failed on a 67x32 input: MemoryError \(exceeded the memory"):
            pool.upscale("moody", image[:, :67])
        # the same photo through serve(): what the app calls
        assert serve(pool, "moody", image[:, :64]).sr.shape == (64, 128, 3)
    finally:
        pool.close()


def test_a_model_that_forges_progress_fails_its_request_and_the_next_is_served(tmp_path):
    forger = make_submission(tmp_path / "forger", FORGER_ARCH, checkpoint=False)
    pool = ModelPool(registry_of(tmp_path, forger=forger))
    try:
        image = photo("coffee")[:32]
        with pytest.raises(ModelError, match=r"^forger failed on a 68x32 input: the model process broke the protocol$"):
            pool.upscale("forger", image[:, :68])
        assert pool.upscale("forger", image[:, :64], tile=16).sr.shape == (64, 128, 3)
    finally:
        pool.close()


def test_a_model_that_hangs_is_stopped_and_replaced(tmp_path):
    moody = make_submission(tmp_path / "moody", MOODY_ARCH, checkpoint=False)
    submission = open_submission(moody)
    models = SandboxedModels({"moody": submission}, __import__("torch").device("cpu"), request_timeout_s=5)
    try:
        image = photo("coffee")[:32]
        with pytest.raises(ModelError, match=r"^moody did not answer within 5 s on a 66x32 input$"):
            models.upscale("moody", image[:, :66], "fp32")
        assert models.upscale("moody", image[:, :64], "fp32").sr.shape == (64, 128, 3)
    finally:
        models.close()


def test_the_app_never_imports_a_submissions_code(tmp_path):
    folder = make_submission(tmp_path / "tiny")
    pool = ModelPool(registry_of(tmp_path, tiny=folder))
    try:
        assert pool.upscale("tiny", photo("chelsea")[:40, :40]).sr.shape == (80, 80, 3)
        loaded_here = [m for m in list(sys.modules.values()) if str(getattr(m, "__file__", "")).startswith(str(folder))]
        assert loaded_here == []
    finally:
        pool.close()


def test_registered_code_sees_no_token_and_leaves_nothing_running(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    mark = marker(tmp_path)
    snoop = hostile(tmp_path, "env_snoop", secret=SECRET, token_file="/nonexistent")
    escape = hostile(tmp_path, "escape", marker=mark)
    pool = ModelPool(registry_of(tmp_path, snoop=snoop, escape=escape))
    try:
        assert list(pool.models) == ["escape"]
        assert pool.failures["snoop"].endswith("RuntimeError: snooped: []")
        # what escape's srmodel() started (the double fork's grandchild may still be starting)
        deadline = time.monotonic() + 30
        while len(running_with(mark)) < 22 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(running_with(mark)) == 22  # still running ...
        assert pool.upscale("escape", photo("rocket")[:30, :40]).sr.shape == (60, 80, 3)
    finally:
        pool.close()
    assert running_with(mark) == []  # ... until the pool closes


def test_serving_limits_have_no_clock():
    assert SERVING_LIMITS.wall_seconds is None and SERVING_LIMITS.cpu_seconds is None
    assert SERVING_LIMITS.memory_bytes == Limits().memory_bytes


def test_a_pool_never_closed_still_ends_its_process_and_scratch_folder(tmp_path, monkeypatch):
    import gc
    import tempfile

    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_parent))
    mark = marker(tmp_path)
    pool = ModelPool(registry_of(tmp_path, escape=hostile(tmp_path, "escape", marker=mark)))
    assert pool.upscale("escape", photo("rocket")[:30, :40]).sr.shape == (60, 80, 3)
    assert list(scratch_parent.glob("rtsr-sandbox-*"))
    del pool
    gc.collect()
    assert list(scratch_parent.iterdir()) == []
    assert running_with(mark) == []


def test_a_model_that_slows_the_timer_is_caught_by_the_wall_clock(tmp_path):
    """The model process runs the submission's code, which can patch the timer the runtime
    protocol reads; the call's wall time, measured outside, gives it away."""
    import torch

    from rtsr.submissions.sandboxed_models import RUNTIME_CALL_ALLOWANCE_MS

    cheat = open_submission(hostile(tmp_path, "slow_clock"))
    honest = open_submission(make_submission(tmp_path / "honest"))
    models = SandboxedModels({"cheat": cheat, "honest": honest}, torch.device("cpu"))
    try:
        # 21 passes of 40 ms: 840 ms of wall time, far more than the allowance
        with pytest.raises(ModelError, match=r"^cheat: reported 0\.4\d\d ms per pass, but its 21 passes took"):
            models.runtime("cheat", "fp32", (32, 32), warmup=1, repeat=20)
        # (caught only because its real time is well above the allowance for fixed costs)
        assert 2 * RUNTIME_CALL_ALLOWANCE_MS < 21 * 40
        # an honest model's short protocol passes, its fixed costs forgiven
        stats, flops = models.runtime("honest", "fp32", (32, 32), warmup=1, repeat=3)
        assert stats.passes == 3 and stats.mean_ms > 0 and flops >= 0
    finally:
        models.close()
