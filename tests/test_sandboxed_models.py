"""The app's models run in the sandbox: registered submissions, hostile ones among them,
served through ModelPool as the app serves them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtsr.errors import ModelError
from rtsr.serving import serve
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import Registry, entry_for
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.sandboxed_models import SERVING_LIMITS, SandboxedModels
from rtsr.submissions.submission import open_submission
from rtsr.tensors import to_image
from tests.support.data import ROOT, photo
from tests.support.submissions import make_submission
from tests.test_app import descendants
from tests.test_runtime import MACS_PER_PIXEL_X2
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


RTSRN_X2 = ROOT / "submissions" / "rtsrn_x2"


@pytest.fixture
def rtsrn_x2_submission():
    return open_submission(RTSRN_X2)


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


def test_a_model_process_outlives_the_thread_that_started_it(tmp_path):
    """The app starts model processes from request threads, which its thread pool retires when
    idle; bubblewrap's --die-with-parent fires when the *thread* that started it exits, and
    killed every served model about a minute after its start. The same process (PID) must
    answer after its starting thread has gone, in about its forward time, leaving no zombie."""
    import threading

    import torch

    started: list[SandboxedModels] = []
    starter = threading.Thread(
        target=lambda: started.append(
            SandboxedModels({"tiny": open_submission(make_submission(tmp_path / "tiny"))}, torch.device("cpu"))
        )
    )
    starter.start()
    starter.join()  # the thread that started it has exited
    (models,) = started
    try:
        pid = models._process._process.pid
        time.sleep(2)
        image = np.ascontiguousarray(photo("astronaut")[:32, :48])
        t0 = time.monotonic()
        assert models.upscale("tiny", image, "fp32", "eager").sr.shape == (64, 96, 3)
        assert time.monotonic() - t0 < 5  # a forward pass, not a cold start (loading torch: 10 s and more)
        assert models._process._process.pid == pid and models._process.alive
        assert [p for p in descendants(os.getpid()) if _zombie(p)] == []
    finally:
        models.close()


def test_what_a_model_starts_during_a_request_is_killed_after_it(tmp_path):
    """A model process keeps no process of the submission's beyond its request: a spinner it
    detached with setsid is killed when the request is answered, and the model process itself
    (same PID) serves the next one."""
    import torch

    mark = marker(tmp_path)
    models = SandboxedModels({"spin": open_submission(hostile(tmp_path, "spinner", marker=mark))}, torch.device("cpu"))
    try:
        pid = models._process._process.pid
        image = np.ascontiguousarray(photo("astronaut")[:32, :48])
        for _ in range(3):
            assert models.upscale("spin", image, "fp32", "eager").sr.shape == (64, 96, 3)
            assert running_with(mark) == []  # killed as its request was answered
        # the runtime protocol's requests too
        models.runtime("spin", "fp32", (16, 16), warmup=1, repeat=2)
        assert running_with(mark) == []
        assert models._process._process.pid == pid and models._process.alive
    finally:
        models.close()
    assert running_with(mark) == []


def _zombie(pid: int) -> bool:
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False  # gone


def test_a_model_that_puts_fifos_in_place_of_its_logs_is_served_and_closed_at_once(tmp_path):
    """The app reads a model process's logs when the process ends: FIFOs in their place (which
    an open for reading would wait on forever, holding the app's only model slot and its
    shutdown) read as empty."""
    import torch

    models = SandboxedModels({"fifo": open_submission(hostile(tmp_path, "fifo_logs"))}, torch.device("cpu"))
    try:
        image = np.ascontiguousarray(photo("astronaut")[:32, :48])
        assert models.upscale("fifo", image, "fp32", "eager").sr.shape == (64, 96, 3)
    finally:
        started = time.monotonic()
        models.close()
        assert time.monotonic() - started < 15


def test_a_model_that_slows_the_timer_counts_its_passes_wall_time_or_fails(tmp_path):
    """The model process runs the submission's code, which can patch the timer the runtime
    protocol reads; the worker times each pass itself, from outside."""
    import torch

    from rtsr.submissions.sandboxed_models import FORGED_TIMER_MS, PASS_SLACK_FRACTION, PASS_SLACK_MS

    cheat = open_submission(hostile(tmp_path, "slow_clock"))
    models = SandboxedModels({"cheat": cheat}, torch.device("cpu"))
    try:
        # 8 passes of 40 ms reported as 0.4 ms: under the forged-timer bound in all, so each
        # counts as the wall time measured around it, less the slack; not as 0.4 ms
        stats, _, check = models.runtime("cheat", "fp32", (32, 32), warmup=1, repeat=8)
        assert 0.3 < check["reported_mean_ms"] < 0.5
        assert check["passes_raised_to_wall"] == 8
        assert stats.min_ms >= 40 * (1 - PASS_SLACK_FRACTION) - PASS_SLACK_MS
        # 40 passes leave over a second unexplained: a forged timer, failed with the reason
        assert FORGED_TIMER_MS < 40 * 39
        with pytest.raises(
            ModelError, match=r"^cheat: reported 0\.4\d\d ms per pass, but its passes took \d+\.\d+ ms each"
        ):
            models.runtime("cheat", "fp32", (32, 32), warmup=1, repeat=40)
    finally:
        models.close()


def test_a_model_that_skips_its_timed_passes_is_caught_by_their_outputs(tmp_path):
    """A model that answers timed passes with the output it kept from the pass before (and
    slows its timer besides) gives itself away: each timed pass has a fresh input, and the
    worker checks passes drawn at random against the model's own untimed output."""
    import torch

    cheat = open_submission(hostile(tmp_path, "stale_pass"))
    models = SandboxedModels({"cheat": cheat}, torch.device("cpu"))
    try:
        with pytest.raises(ModelError, match=r"^cheat: timed pass \d of 6 is \d+\.\d dB from the model's own output"):
            models.runtime("cheat", "fp32", (32, 48), warmup=2, repeat=6)
        # the same model computes honestly when it is asked to upscale: it was only the timing
        image = np.ascontiguousarray(photo("astronaut")[100:132, 200:248])
        sr = models.upscale("cheat", image, "fp32", "eager").sr
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, scale_factor=2, mode="bicubic"
        )
        assert np.abs(sr.astype(int) - to_image(expected).astype(int)).max() <= 1
    finally:
        models.close()


def test_a_model_that_exports_a_smaller_graph_than_it_runs_fails(tmp_path):
    """Parameters and FLOPs are counted from the model's exported graph, which the model
    process makes and so the submission controls: one that traces bicubic alone when exported
    and runs a conv besides otherwise is caught, since the graph, run where none of its code
    runs, does not compute what was timed."""
    import torch

    cheat = open_submission(hostile(tmp_path, "graph_swap"))
    models = SandboxedModels({"cheat": cheat}, torch.device("cpu"))
    try:
        with pytest.raises(
            ModelError, match=r"^cheat: its exported graph is \d+\.\d dB from timed pass \d of 4 on the"
        ):
            models.runtime("cheat", "fp32", (24, 30), warmup=1, repeat=4)
    finally:
        models.close()


def test_a_model_that_cannot_be_exported_fails_with_the_reason(tmp_path):
    """Its size cannot be counted where its code does not run: the worker says why in one line."""
    import torch

    from tests.test_validation import BRANCHES

    models = SandboxedModels(
        {"b": open_submission(make_submission(tmp_path / "b", BRANCHES, checkpoint=False))}, torch.device("cpu")
    )
    try:
        with pytest.raises(ModelError, match=r"^b: torch\.export could not export it: GuardOnDataDependentSymNode: "):
            models.runtime("b", "fp32", (24, 30), warmup=1, repeat=3)
    finally:
        models.close()


@pytest.mark.parametrize(
    ("attack", "refusal"),
    [
        ("guards", "its exported graph has guards, which are code"),
        ("target", "its exported graph calls 'torch.load': only aten operators are counted"),
        ("from_file", "its exported graph calls aten.from_file, which reaches outside the graph"),
        ("fifo", "its exported graph has no program.json of at most 64 MB that is a regular file"),
        ("huge", "its exported graph has no tensors.safetensors of at most 256 MB that is a regular file"),
    ],
)
def test_a_model_process_that_rewrites_its_graph_is_refused_in_one_line(tmp_path, attack, refusal):
    """The model process writes the graph the counter reads: code where torch's loader would
    run it, calls outside aten, a FIFO and a huge file are each refused, by name, before
    anything of theirs runs; what the process says of its own size (1 parameter) is not used."""
    import torch

    cheat = open_submission(hostile(tmp_path, "graph_trap", attack=attack))
    models = SandboxedModels({"cheat": cheat}, torch.device("cpu"))
    try:
        assert models.descriptors["cheat"].params == 1  # its own word
        started = time.monotonic()
        with pytest.raises(ModelError) as refused:
            models.runtime("cheat", "fp32", (24, 30), warmup=1, repeat=3)
        assert str(refused.value) == f"cheat: {refusal}"
        assert time.monotonic() - started < 60
    finally:
        models.close()


def test_an_honest_model_is_timed_and_vouched_for(rtsrn_x2_submission):
    """The bundled RTSRN through the worker's protocol: every pass answered with a fresh input,
    its untimed outputs identical to the timed ones on a CPU, its figure the model's own timer
    within the wall clock measured outside."""
    import torch

    models = SandboxedModels({"rtsrn": rtsrn_x2_submission}, torch.device("cpu"))
    try:
        stats, size, check = models.runtime("rtsrn", "fp32", (64, 96), warmup=1, repeat=5)
    finally:
        models.close()
    assert check["passes_checked"] == 3 and check["agreement_db"] is None  # identical outputs
    assert stats.passes == 5 and 0 < stats.mean_ms <= check["wall_mean_ms"]
    assert stats.mean_ms >= check["reported_mean_ms"]
    # its size, counted from its exported graph in a process that ran none of its code, by hand
    assert size.flops == 2 * MACS_PER_PIXEL_X2 * 64 * 96
    assert size.params == (3 * 64 * 9 + 64) + 5 * (64 * 64 * 9 + 64) + (64 * 12 * 9 + 12) == 193_356
    # the graph computes what was timed: identical on a CPU
    assert check["size_by"] == "exported graph"
    assert check["graph_passes_compared"] == 2 and check["graph_agreement_db"] is None
