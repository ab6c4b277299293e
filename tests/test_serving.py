"""rtsr.serving: one app request on real photos, checked against independent references
(Pillow for the degradation, torch's bicubic, scikit-image for the metrics)."""

import io
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, JpegImagePlugin
from skimage.metrics import peak_signal_noise_ratio

from bench.bench_metrics import skimage_metrics
from rtsr.engines import build_engine, serving_candidates
from rtsr.errors import InputError, ModelError
from rtsr.images import image_size
from rtsr.inference import prepare, upscale, upscale_timed
from rtsr.previews import Previews, detail_box, detail_crops, encode_png, encode_preview, nearest_upscale
from rtsr.serving import CPU_MAX_INPUT_PIXELS, MIN_INPUT_SIDE, check_input_size, downscale, fit_size, serve
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry, entry_for
from rtsr.submissions.submission import open_submission
from tests.support.data import photo
from tests.support.submissions import make_submission


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    # the CPU on every host: these tests compare with references computed on the CPU
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu")
    yield pool
    pool.close()


def pillow_degrade(gt: np.ndarray, scale: int, quality: int) -> np.ndarray:
    """The challenge's LR made with Pillow alone: crop to the scale, bicubic down, JPEG."""
    h, w = gt.shape[0] // scale * scale, gt.shape[1] // scale * scale
    small = Image.fromarray(gt[:h, :w]).resize((w // scale, h // scale), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def torch_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return (up[0] * 255).round().byte().permute(1, 2, 0).numpy()


def test_pool_serves_the_bundled_registry_in_fp32_on_the_cpu(pool):
    assert pool.failures == {}
    assert [d.id for d in pool.descriptors(2)] == ["bicubic-x2", "rtsrn-x2"]
    assert [d.id for d in pool.descriptors(3)] == ["bicubic-x3", "rtsrn-x3"]
    assert (pool.device.type, pool.precision) == ("cpu", "fp32")
    # what users see as the source: the registry's, not where the folder lies on the server
    assert pool.descriptor("rtsrn-x2").source == "rtsrn_x2"
    # the sandboxed model gives what the same registered model gives run here, in FP32 eager
    lr = photo("coffee")[:48, :64]
    in_process = prepare(Registry.read(BUNDLED_REGISTRY).load("rtsrn-x2").module, pool.device, "fp32")
    eager = pool.upscale("rtsrn-x2", lr, engine="eager")
    np.testing.assert_array_equal(eager.sr, upscale(in_process, lr, 2, pool.device, "fp32"))
    assert eager.forward_ms > 0 and eager.engine.label == "eager fp32" and eager.tiles == 1
    # by default, the fastest engine of this host that holds 45 dB to FP32 on the check image,
    # and it holds on this photo too
    fast = pool.upscale("rtsrn-x2", photo("coffee")[:200, :300])
    assert fast.engine.spec == serving_candidates(pool.device)[0] and fast.engine.fidelity_db >= 45
    reference = upscale(in_process, photo("coffee")[:200, :300], 2, pool.device, "fp32")
    assert peak_signal_noise_ratio(reference, fast.sr) >= 45
    assert pool.engines["rtsrn-x2"] == fast.engine


def test_pool_reports_an_entry_that_fails_and_serves_the_rest(tmp_path):
    registry = Registry(tmp_path / "registry.json", [])
    for name in ("good", "tampered"):
        folder = make_submission(tmp_path / name)
        registry.add(entry_for(open_submission(folder), tmp_path, name))
    registry.write()
    (tmp_path / "tampered" / "arch.py").write_text("import os  # changed after registration\n")
    pool = ModelPool(Registry.read(tmp_path / "registry.json"))
    assert list(pool.models) == ["good"]
    assert "arch.py does not match its registered sha256" in pool.failures["tampered"]
    with pytest.raises(InputError, match=r"'tampered' is unavailable: .*sha256"):
        serve(pool, "tampered", photo("chelsea"))
    with pytest.raises(InputError, match=r"unknown model 'nope' \(served: good\)"):
        serve(pool, "nope", photo("chelsea"))


def test_evaluated_models_are_served_one_process_each_started_on_first_use(tmp_path):
    empty = Registry(tmp_path / "bundled.json", [])
    evaluated = Registry(tmp_path / "registry.json", [])
    evaluated.write()
    pool = ModelPool(empty, "cpu", evaluated=Registry.read(evaluated.path), max_live=1)
    try:
        assert pool.models == {} and pool.refresh() == []
        # the worker registers two models after the app started: a refresh serves them
        for name in ("first", "second"):
            shutil.copytree(Path(BUNDLED_REGISTRY).parent / "rtsrn_x2", tmp_path / name)
            evaluated.add(entry_for(open_submission(tmp_path / name), tmp_path, name))
        evaluated.write()
        assert pool.refresh() == ["first", "second"] and pool.refresh() == []
        # what the registry knows until its process describes it, then the process's
        assert pool.descriptor("first").params == 0
        lr = photo("coffee")[:40, :56]
        reference = upscale(
            prepare(Registry.read(BUNDLED_REGISTRY).load("rtsrn-x2").module, pool.device, "fp32"),
            lr,
            2,
            pool.device,
            "fp32",
        )
        first = pool.upscale("first", lr, engine="eager").sr
        np.testing.assert_array_equal(first, reference)
        assert pool.descriptor("first").params == 193_356
        first_process = pool._live["first"]
        # one live process at most here: the second model's start ends the first's
        second = pool.upscale("second", lr, engine="eager").sr
        np.testing.assert_array_equal(second, reference)
        assert list(pool._live) == ["second"] and first_process._process is None
        # and the first starts again when asked for
        again = pool.upscale("first", lr, engine="eager").sr
        np.testing.assert_array_equal(again, reference)
    finally:
        pool.close()
    assert pool._live == {}


@pytest.mark.parametrize(("model_id", "quality"), [("rtsrn-x2", 90), ("rtsrn-x3", 60), ("bicubic-x2", 90)])
def test_simulate_degrades_upscales_and_measures_like_the_references(pool, model_id, quality):
    gt = photo("coffee")  # 400x600: crops to 399x600 at x3
    result = serve(pool, model_id, gt, mode="simulate", jpeg_quality=quality)
    scale = result.model.scale
    h, w = gt.shape[0] // scale * scale, gt.shape[1] // scale * scale
    np.testing.assert_array_equal(result.gt, gt[:h, :w])
    np.testing.assert_array_equal(result.lr, pillow_degrade(gt, scale, quality))
    # the model's output is what the registered model returns for that LR, run by hand in
    # the engine the pool chose
    module = Registry.read(BUNDLED_REGISTRY).load(model_id).module.eval()
    engine = build_engine(module, torch.device("cpu"), result.engine.spec)
    np.testing.assert_array_equal(result.sr, upscale(engine, result.lr, scale, torch.device("cpu"), "fp32"))
    np.testing.assert_array_equal(result.bicubic, torch_bicubic(result.lr, scale))
    for ours, image in ((result.metrics, result.sr), (result.bicubic_metrics, result.bicubic)):
        reference = skimage_metrics(image, gt[:h, :w])
        for key, value in reference.items():
            assert getattr(ours, key) == pytest.approx(value, abs=1e-6), key
    gain = result.metrics.psnr_rgb - result.bicubic_metrics.psnr_rgb
    assert result.psnr_gain == pytest.approx(gain)
    if model_id.startswith("rtsrn"):
        assert gain > 0.3
        assert result.score == pytest.approx(2 * 2**gain / (0.1 * math.sqrt(result.forward_ms)))
    else:
        assert gain == pytest.approx(0.0, abs=1e-9) and result.score == 0.0
    assert result.jpeg_quality == quality and result.device_type == "cpu"
    # the fastest engine that holds 45 dB to FP32 (bf16 where this CPU has it natively); bicubic,
    # the reference, as it is
    if model_id.startswith("rtsrn"):
        assert result.engine.spec == serving_candidates(pool.device)[0] and result.engine.fidelity_db >= 45
    else:
        assert result.engine.label == "eager fp32" and result.engine.fidelity_db is None
    assert set(result.timings_ms) == {"decode", "degrade", "model", "bicubic", "metrics"}
    assert 0 < result.forward_ms <= result.timings_ms["model"]


def test_upscale_mode_takes_the_upload_as_input_and_an_optional_gt(pool, tmp_path):
    lr = photo("chelsea")
    result = serve(pool, "rtsrn-x2", lr, mode="upscale")
    np.testing.assert_array_equal(result.lr, lr)
    assert result.sr.shape == (600, 902, 3)
    assert result.metrics is None and result.score is None and "metrics" not in result.timings_ms
    summary = result.summary()
    assert summary["metrics"] is None and summary["output_size"] == [600, 902]

    gt = np.asarray(Image.fromarray(lr).resize((902, 600), Image.Resampling.LANCZOS))
    Image.fromarray(gt).save(tmp_path / "gt.png")
    Image.fromarray(lr).save(tmp_path / "lr.png")
    measured = serve(pool, "rtsrn-x2", tmp_path / "lr.png", mode="upscale", gt=tmp_path / "gt.png")
    assert measured.metrics.psnr_rgb == pytest.approx(skimage_metrics(measured.sr, gt)["psnr_rgb"], abs=1e-6)

    Image.fromarray(gt[:-1]).save(tmp_path / "gt_short.png")
    with pytest.raises(InputError, match=r"ground truth is 902x599, but x2 of the 451x300 input is 902x600"):
        serve(pool, "rtsrn-x2", lr, mode="upscale", gt=tmp_path / "gt_short.png")


def test_an_oversized_upload_is_refused_from_its_header_before_decoding(pool, tmp_path):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[::7] = 255
    path = tmp_path / "big.png"
    Image.fromarray(big).save(path)
    # Cut the file after its header: decoding it would fail, reading its size does not.
    path.write_bytes(path.read_bytes()[:2000])
    assert image_size(path) == (3000, 4000)
    # a CPU host takes model inputs up to 1080p (in tiles above 960x540)
    too_big = r"image is 4000x3000 \(12.00 MP\); this host upscales inputs of at most 2.07 MP"
    with pytest.raises(InputError, match=too_big):
        serve(pool, "rtsrn-x2", path, mode="upscale")
    with pytest.raises(InputError, match=r"ground truths up to 8.29 MP at x2 \(a model input of at most 2.07 MP\)"):
        serve(pool, "rtsrn-x2", path, mode="simulate")


def test_size_limits_are_exact(pool):
    assert CPU_MAX_INPUT_PIXELS == 1920 * 1080
    check_input_size(540, 960, 2, "upscale", 960 * 540)
    with pytest.raises(InputError, match=r"at most 0\.52 MP"):
        check_input_size(541, 960, 2, "upscale", 960 * 540)
    check_input_size(1080, 1920, 2, "simulate", 960 * 540)  # its x2 downscale is 960x540
    check_input_size(1620, 2880, 3, "simulate", 960 * 540)
    with pytest.raises(InputError, match="at x3"):
        check_input_size(1623, 2880, 3, "simulate", 960 * 540)
    with pytest.raises(InputError, match=f"too small: it is 300x{MIN_INPUT_SIDE - 1}"):
        check_input_size(MIN_INPUT_SIDE - 1, 300, 2, "upscale", 960 * 540)
    with pytest.raises(InputError, match="too small: its x3 downscale is 100x10"):
        check_input_size(30, 300, 3, "simulate", 960 * 540)
    with pytest.raises(InputError, match="too small"):
        serve(pool, "rtsrn-x2", photo("chelsea")[:20], mode="simulate")


def test_fit_size_is_the_largest_size_of_the_same_shape_under_the_limit():
    # 4000x3000 (12 MP) into 1920x1080 (2 073 600 px): a ratio of sqrt(2073600 / 12e6) = 0.41569,
    # so 1662.76 x 1247.07, sides rounded down
    assert fit_size(3000, 4000, 2, "upscale", 1920 * 1080) == (1247, 1662)
    # simulate mode: the limit is on the x2 downscale, so the ground truth may be 4x larger
    assert fit_size(3000, 4000, 2, "simulate", 1920 * 1080) == (2494, 3325)
    assert fit_size(540, 960, 2, "upscale", 960 * 540) is None  # exactly at the limit
    for height, width, scale, mode, limit in [
        (1100, 2000, 2, "upscale", 1920 * 1080),
        (3001, 4001, 3, "simulate", 960 * 540),
        (5000, 333, 2, "upscale", 100_000),
        (777, 7777, 3, "simulate", 250_000),
    ]:
        h, w = fit_size(height, width, scale, mode, limit)
        check_input_size(h, w, scale, mode, limit)  # it fits ...
        factor = scale if mode == "simulate" else 1
        assert (h // factor) * (w // factor) > 0.98 * limit  # ... with little to spare
        assert abs(w / h - width / height) < 1.5 / min(h, w) * max(1, width / height)  # the same shape
    with pytest.raises(ValueError, match="positive"):
        fit_size(0, 10, 2, "upscale", 100)


def test_downscale_uses_a_real_resampler():
    from skimage.transform import resize

    image = photo("astronaut")  # 512x512
    small = downscale(image, (200, 300))
    assert small.shape == (200, 300, 3) and small.dtype == np.uint8
    # scikit-image's antialiased resize is an independent reference; plain subsampling is not close
    reference = (resize(image, (200, 300), anti_aliasing=True, order=3) * 255).round().astype(np.uint8)
    assert peak_signal_noise_ratio(reference, small) > 28
    rows, cols = np.arange(200) * 512 // 200, np.arange(300) * 512 // 300
    assert peak_signal_noise_ratio(reference, image[rows][:, cols]) < peak_signal_noise_ratio(reference, small) - 3


def test_an_oversized_upload_is_downscaled_to_fit_when_asked(pool, tmp_path):
    Image.fromarray(photo("chelsea")).save(tmp_path / "chelsea.png")  # 451x300
    limit = 200 * 150
    with pytest.raises(InputError, match=r"at most 0\.03 MP"):
        serve(pool, "bicubic-x2", tmp_path / "chelsea.png", mode="upscale", max_input_pixels=limit)
    result = serve(pool, "bicubic-x2", tmp_path / "chelsea.png", mode="upscale", max_input_pixels=limit, fit=True)
    # sqrt(30000 / (451 * 300)) = 0.47090: 212.38 x 141.27, rounded down
    assert result.lr.shape == (141, 212, 3) and result.sr.shape == (282, 424, 3)
    assert result.downscaled_from == (300, 451) and result.upload_size == (141, 212)
    assert result.summary()["downscaled_from"] == [300, 451]
    reference = np.asarray(Image.fromarray(photo("chelsea")).resize((212, 141), Image.Resampling.LANCZOS))
    assert np.array_equal(result.lr, reference)
    # simulate mode: the ground truth is downscaled, then cropped to the scale and degraded
    sim = serve(pool, "bicubic-x3", photo("chelsea"), mode="simulate", max_input_pixels=limit // 9, fit=True)
    assert sim.downscaled_from == (300, 451) and sim.upload_size is not None
    assert (sim.upload_size[0] // 3) * (sim.upload_size[1] // 3) <= limit // 9
    assert sim.gt is not None and sim.gt.shape[:2] == (sim.upload_size[0] // 3 * 3, sim.upload_size[1] // 3 * 3)
    # an image that fits is left as it is
    same = serve(pool, "bicubic-x2", photo("chelsea"), mode="upscale", fit=True)
    assert same.downscaled_from is None and np.array_equal(same.lr, photo("chelsea"))


def test_simulate_says_when_it_crops_the_upload_to_the_scale(pool):
    astronaut = photo("astronaut")  # 512x512: 512 = 3 * 170 + 2
    cropped = serve(pool, "bicubic-x3", astronaut, mode="simulate")
    assert cropped.cropped and cropped.upload_size == (512, 512) and cropped.gt.shape == (510, 510, 3)
    assert not serve(pool, "bicubic-x2", astronaut, mode="simulate").cropped
    assert not serve(pool, "bicubic-x3", astronaut, mode="upscale").cropped


def test_detail_box_is_centred_aligned_to_the_scale_and_inside():
    # the centre of a 1024x1024 x2 output: 128 px from 448, whole input pixels 224..288
    assert detail_box(1024, 1024, 2, 512, 512) == (448, 448, 128)
    # x3: 126 px (42 input pixels), starting on a multiple of 3 at or before 500 - 63 = 437
    assert detail_box(1536, 1536, 3, 500, 500) == (435, 435, 126)
    # corners: clamped inside, the last whole input pixels for a side not divisible by 3
    assert detail_box(426, 639, 3, 0, 0) == (0, 0, 126)
    assert detail_box(426, 639, 3, 638, 425) == (300, 513, 126)
    assert detail_box(428, 640, 3, 639, 427) == (300, 513, 126)  # 640 = 3 * 213 + 1: 513 + 126 = 639
    # narrower than the detail: its whole width, and a square of that side around y = 50
    assert detail_box(100, 60, 2, 30, 50) == (20, 0, 60)
    with pytest.raises(ValueError, match="at least the scale"):
        detail_box(100, 100, 3, 0, 0, size=2)


def test_detail_crops_show_the_same_area_of_each_image(pool):
    gt = photo("astronaut")  # 512x512
    result = serve(pool, "rtsrn-x2", gt, mode="simulate")
    outputs = {"bicubic": result.bicubic, "model": result.sr, "gt": result.gt}
    crops, box = detail_crops(result.lr, outputs, x=300, y=100)
    assert box == (36, 236, 128) and list(crops) == ["input", "bicubic", "model", "gt"]
    assert all(c.shape == (128, 128, 3) for c in crops.values())
    assert np.array_equal(crops["gt"], gt[36:164, 236:364])
    assert np.array_equal(crops["model"], result.sr[36:164, 236:364])
    # the input's 64x64 pixels under the same area, each shown as 2x2 (Pillow's nearest as reference)
    lr_area = Image.fromarray(result.lr[18:82, 118:182])
    assert np.array_equal(crops["input"], np.asarray(lr_area.resize((128, 128), Image.Resampling.NEAREST)))
    # the crops of the session's previews are those of the JPEG previews, ground truth included
    preview_crops, preview_box = Previews.encode(result).detail(300, 100)
    assert preview_box == box and list(preview_crops) == ["input", "bicubic", "model", "gt"]
    for name, crop in preview_crops.items():
        assert peak_signal_noise_ratio(crops[name], crop) > 35, name
    with pytest.raises(ValueError, match="not a whole multiple"):
        detail_crops(result.lr, {"gt": gt[:-1]}, 0, 0)


def test_bad_requests_get_clear_errors(pool, tmp_path):
    with pytest.raises(InputError, match="mode must be one of upscale, simulate"):
        serve(pool, "rtsrn-x2", photo("chelsea"), mode="enhance")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="JPEG quality must be"):
        serve(pool, "rtsrn-x2", photo("chelsea"), mode="simulate", jpeg_quality=101)
    (tmp_path / "notes.png").write_text("not an image")
    # an upload's messages name the file alone, not where it lies on the server
    with pytest.raises(InputError, match=r"^notes\.png: not an image file \(or not one of bmp, "):
        serve(pool, "rtsrn-x2", tmp_path / "notes.png")
    with pytest.raises(InputError, match=r"^missing\.png: no such file$"):
        serve(pool, "rtsrn-x2", tmp_path / "missing.png")


def test_upscale_timed_returns_what_upscale_returns(pool):
    lr = photo("rocket")[:64, :80]
    module = prepare(Registry.read(BUNDLED_REGISTRY).load("rtsrn-x3").module, pool.device, "fp32")
    out, ms = upscale_timed(module, lr, 3, pool.device, "fp32")
    np.testing.assert_array_equal(out, upscale(module, lr, 3, pool.device, "fp32"))
    assert out.shape == (192, 240, 3) and ms > 0


def test_previews_hold_the_four_jpegs_and_write_the_slider_pair(pool, tmp_path):
    result = serve(pool, "rtsrn-x3", photo("chelsea"), mode="simulate")
    previews = Previews.encode(result)
    decoded = {
        name: np.asarray(Image.open(io.BytesIO(getattr(previews, name))).convert("RGB"))
        for name in ("sr", "bicubic", "lr", "lr_nearest")
    }
    for name, reference in [
        ("sr", result.sr),
        ("bicubic", result.bicubic),
        ("lr", result.lr),
        ("lr_nearest", nearest_upscale(result.lr, 3)),
    ]:
        assert decoded[name].shape == reference.shape
        assert skimage_metrics(decoded[name], reference)["psnr_rgb"] > 38, name
    before, after = previews.pair("lr", tmp_path)
    assert Path(before).read_bytes() == previews.lr_nearest and Path(after).read_bytes() == previews.sr
    before, _ = previews.pair("bicubic", tmp_path)
    assert Path(before).read_bytes() == previews.bicubic


FAILING_ARCH = """
import torch.nn.functional as F
from torch import nn


class WideFails(nn.Module):
    def forward(self, x):
        if x.shape[-1] > 100:
            raise ValueError("widths over 100 are not supported\\nsecond line of detail")
        return F.interpolate(x, scale_factor=2, mode="nearest")


def srmodel():
    return WideFails()
"""


def test_a_model_that_fails_is_named_in_one_line(tmp_path):
    registry = Registry(tmp_path / "registry.json", [])
    folder = make_submission(tmp_path / "wide", arch=FAILING_ARCH, checkpoint=False)
    registry.add(entry_for(open_submission(folder), tmp_path, "wide"))
    pool = ModelPool(registry)
    assert serve(pool, "wide", photo("coffee")[:64, :64], mode="upscale").sr.shape == (128, 128, 3)
    with pytest.raises(ModelError, match=r"^wide failed on a 101x64 input: widths over 100 are not supported$"):
        serve(pool, "wide", photo("coffee")[:64, :101], mode="upscale")


def test_encoders(tmp_path):
    image = photo("astronaut")
    png = encode_png(image, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(png)), image)  # lossless
    jpeg = encode_preview(image, tmp_path / "a.jpg")
    with Image.open(jpeg) as img:
        assert JpegImagePlugin.get_sampling(img) == 0  # 4:4:4, chroma at full resolution
        decoded = np.asarray(img.convert("RGB"))
    assert skimage_metrics(decoded, image)["psnr_rgb"] > 38


def test_nearest_upscale_equals_pillows_nearest():
    lr = photo("chelsea")[:50, :70]
    expected = np.asarray(Image.fromarray(lr).resize((210, 150), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(nearest_upscale(lr, 3), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pool_runs_fp16_on_cuda():
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY))
    assert pool.precision == "fp16"
    result = serve(pool, "rtsrn-x2", photo("coffee"), mode="simulate")
    assert result.precision == "fp16" and result.psnr_gain > 0.3


def test_a_registry_whose_folders_are_missing_serves_nothing_and_says_why(tmp_path):
    # local sources are relative to the registry file: a copy elsewhere finds none of them
    shutil.copy(BUNDLED_REGISTRY, tmp_path / "registry.json")
    pool = ModelPool(Registry.read(tmp_path / "registry.json"))
    assert pool.models == {} and sorted(pool.failures) == ["bicubic-x2", "bicubic-x3", "rtsrn-x2", "rtsrn-x3"]
    missing = f"{tmp_path / 'rtsrn_x2'}: no such folder or zip (or Hub repo as org/name@<commit>)"
    assert pool.failures["rtsrn-x2"] == missing
