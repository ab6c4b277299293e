"""Tiled inference: the receptive field measured, tiles that equal one pass on real photos,
models that depend on a grid, the CLI's --tile, and the app's path serving a 1080p input on a
CPU in memory a one-pass run does not fit in."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from rtsr.engines import EngineSpec, build_engine, openvino_available
from rtsr.errors import ModelError
from rtsr.images import read_rgb
from rtsr.inference import prepare, upscale, upscale_tiled
from rtsr.models import RTSRN, PaddedModel, load_model, srmodel
from rtsr.serving import serve
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from rtsr.submissions.sandboxed_models import SERVING_LIMITS
from rtsr.tiling import ReceptiveField, plan_tiles, receptive_radius
from tests.support.data import ROOT, photo

CPU = torch.device("cpu")
RTSRN_X2 = ROOT / "submissions" / "rtsrn_x2" / "model.safetensors"
RTSRN_X3 = ROOT / "submissions" / "rtsrn_x3" / "model.safetensors"


class GlobalMean(nn.Module):
    """Every output pixel depends on the whole image (as after a global pooling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x - x.mean() + 0.5, scale_factor=2, mode="nearest")


class Blocks8(nn.Module):
    """Mixes each 8x8 block of pixels as a whole (pixel unshuffle, a 1x1 convolution, pixel
    shuffle), as windowed attention does: the output depends on where the block grid lies."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mix = nn.Conv2d(192, 192 * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.pixel_shuffle(self.mix(F.pixel_unshuffle(x, 8)), 16))


def test_the_receptive_field_is_measured_from_the_architecture():
    # RTSRN: head, 5 body and 1 upsample 3x3 convolutions, one pixel each way apiece
    for path in (RTSRN_X2, RTSRN_X3):
        assert receptive_radius(load_model(path).module, load_model(path).descriptor.scale, CPU) == ReceptiveField(7)
    assert receptive_radius(RTSRN(num_blocks=2), 2, CPU) == ReceptiveField(4)
    # bicubic's 4 taps reach 2 LR pixels each way
    assert receptive_radius(srmodel("bicubic", 3), 3, CPU) == ReceptiveField(2)
    # a global mean moves every output a little: seen in float64, so the field is unbounded
    assert receptive_radius(GlobalMean(), 2, CPU) == ReceptiveField(None)
    assert ReceptiveField(None).margin(8) == 128 and ReceptiveField(7).margin(8) == 8


@pytest.mark.parametrize(("h", "w", "tile", "margin", "multiple"), [(100, 150, 32, 7, 1), (37, 91, 16, 9, 8)])
def test_tile_cores_cover_the_image_once_and_runs_start_on_the_grid(h, w, tile, margin, multiple):
    covered = np.zeros((h, w), int)
    for t in plan_tiles(h, w, tile, margin, multiple):
        (r0, r1), (c0, c1), (k0, k1), (j0, j1) = t.run_rows, t.run_cols, t.core_rows, t.core_cols
        covered[k0:k1, j0:j1] += 1
        assert r0 % multiple == 0 and c0 % multiple == 0
        assert r0 <= max(0, k0 - margin) and r1 >= min(h, k1 + margin)
        assert c0 <= max(0, j0 - margin) and c1 >= min(w, j1 + margin)
    assert (covered == 1).all()


@pytest.mark.parametrize("spec", [EngineSpec("eager", "fp32"), EngineSpec("openvino", "bf16")])
@pytest.mark.parametrize("tile", [64, 100, 8])
def test_tiled_equals_one_pass_on_a_photo(spec, tile):
    if spec.engine == "openvino" and not openvino_available():
        pytest.skip("openvino is not installed")
    loaded = load_model(RTSRN_X2)
    engine = build_engine(loaded.module, CPU, spec)
    image = read_rgb(ROOT / "testsets" / "Set5" / "butterfly.png")[:, :200]  # 256x200
    whole = upscale(engine, image, 2, CPU, "fp32")
    field = receptive_radius(loaded.module, 2, CPU)
    seen = []
    tiled, forward_ms, tiles = upscale_tiled(
        engine, image, 2, CPU, "fp32", tile, field, on_tile=lambda done, total: seen.append((done, total))
    )
    assert tiles == len(seen) == -(-256 // tile) * -(-200 // tile) and seen[-1] == (tiles, tiles)
    assert forward_ms > 0
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert peak_signal_noise_ratio(whole, tiled) > 50


def test_tiles_that_start_on_the_pad_grid_equal_one_pass_for_a_grid_model():
    model = PaddedModel(Blocks8(), 2, 8)
    image = photo("astronaut")[:75, :117]  # neither side a multiple of 8
    whole = upscale(prepare(model, CPU, "fp32"), image, 2, CPU, "fp32")
    field = receptive_radius(model, 2, CPU)
    assert field.radius is not None and field.radius < 8  # the block it lies in
    tiled, _, tiles = upscale_tiled(model, image, 2, CPU, "fp32", 24, field, multiple=8)
    assert tiles == 4 * 5
    np.testing.assert_array_equal(tiled, whole)


def test_a_global_model_is_tiled_with_a_wide_margin_and_only_approximates():
    image = photo("coffee")[:300, :400]
    whole = upscale(GlobalMean(), image, 2, CPU, "fp32")
    tiled, _, _ = upscale_tiled(GlobalMean(), image, 2, CPU, "fp32", 64, receptive_radius(GlobalMean(), 2, CPU))
    assert not np.array_equal(tiled, whole)  # what the app says of such a model


def test_sr_tile_on_the_cli_equals_whole_images(tmp_path):
    def sr(out: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rtsr", "-q", "sr", "--model", str(RTSRN_X2), "--lr-dir", "testsets/Set5",
             "--out-dir", str(tmp_path / out), "--engine", "eager", *extra],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip

    whole, tiled = sr("whole"), sr("tiled", "--tile", "96")
    assert whole.returncode == 0 and tiled.returncode == 0, tiled.stderr
    assert tiled.stdout.splitlines() == [
        "upscaled 5 images x2 with model on cpu, tiles of 96 px",
        "engine eager fp32 (the FP32 reference)",
        f"wrote {tmp_path / 'tiled'}",
    ]
    for path in sorted((tmp_path / "whole").iterdir()):
        a, b = np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "tiled" / path.name))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1 and peak_signal_noise_ratio(a, b) > 50, path.name


def test_the_app_serves_1080p_on_a_cpu_in_tiles_where_one_pass_does_not_fit():
    # 2.5 GB of address space for the model process (libraries, OpenVINO's threads and the
    # engine check included): measured on the test host, the 12 tiles of 512 px peak at 2.1 GB
    # (675 MB resident), one pass of the whole 1080p frame at 3.0 GB (1.6 GB resident)
    limits = dataclasses.replace(SERVING_LIMITS, memory_bytes=5 * 1024**3 // 2)
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu", limits=limits)
    try:
        frame = np.asarray(Image.fromarray(photo("astronaut")).resize((1920, 1080), Image.Resampling.BICUBIC))
        progress: list[tuple[int, int]] = []
        result = serve(pool, "rtsrn-x2", frame, mode="upscale", on_tile=lambda d, t: progress.append((d, t)))
        assert result.sr.shape == (2160, 3840, 3) and result.tiles == 4 * 3 and result.tiles_exact
        assert progress == [(i, 12) for i in range(1, 13)]
        assert result.summary()["tiles"] == 12
        # the same frame in one pass exceeds the memory limit: one line, and the pool serves on
        over = r"^rtsrn-x2 failed on a 1920x1080 input: .*\(exceeded the memory limit of 2.5 GB\)$"
        with pytest.raises(ModelError, match=over):
            serve(pool, "rtsrn-x2", frame, mode="upscale", one_pass_pixels=1920 * 1080)
        # the process that hit the limit was replaced: the next tiled request is served
        again = serve(pool, "rtsrn-x2", frame, mode="upscale")
        np.testing.assert_array_equal(again.sr, result.sr)
    finally:
        pool.close()
