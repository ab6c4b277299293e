import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from bench.bench_metrics import SSIM_ARGS, skimage_metrics
from rtsr.degradation import crop_for_scale, jpeg_roundtrip
from rtsr.errors import InputError
from rtsr.images import read_rgb
from rtsr.metrics import ImageMetrics, mean_metrics, measure, measure_against, measure_folders, psnr, rgb_to_y, ssim
from tests.support.data import EVAL_DIR, PHOTOS, ROOT, needs_shared, photo

SET5 = ROOT / "testsets" / "Set5"


def _pairs():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (67, 91, 3), dtype=np.uint8)
    yield "random", noise, rng.integers(0, 256, noise.shape, dtype=np.uint8)
    yield "random-close", noise, np.clip(noise + rng.normal(0, 3, noise.shape), 0, 255).astype(np.uint8)
    for name in PHOTOS:
        gt = photo(name)
        yield f"{name}-jpeg", jpeg_roundtrip(gt, 30), gt
        yield f"{name}-noise", np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8), gt


@pytest.mark.parametrize(("name", "sr", "gt"), list(_pairs()), ids=lambda v: v if isinstance(v, str) else "")
def test_agrees_with_scikit_image(name, sr, gt):
    ours = measure(sr, gt).as_dict()
    ref = skimage_metrics(sr, gt)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6), key


def test_y_is_bt601_from_rgb_order():
    red = torch.tensor([255.0, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    blue = torch.tensor([0.0, 0.0, 255.0], dtype=torch.float64).view(3, 1, 1)
    assert rgb_to_y(red).item() == pytest.approx(16 + 65.481)
    assert rgb_to_y(blue).item() == pytest.approx(16 + 24.966)
    white = torch.full((3, 1, 1), 255.0, dtype=torch.float64)
    assert rgb_to_y(white).item() == pytest.approx(235.0)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    gt = photo("chelsea")
    m = measure(gt, gt.copy())
    assert math.isinf(m.psnr_rgb) and math.isinf(m.psnr_y)
    assert m.ssim_rgb == pytest.approx(1.0) and m.ssim_y == pytest.approx(1.0)


def test_psnr_by_hand():
    a = torch.zeros(4, 4)
    assert psnr(a, torch.full((4, 4), 255.0)) == pytest.approx(0.0)
    one_off = a.clone()
    one_off[0, 0] = 255.0  # MSE = 255^2 / 16, so PSNR = 10 log10(16)
    assert psnr(a, one_off) == pytest.approx(10 * math.log10(16))


def test_ssim_window_edges_are_exact_for_every_size():
    # Strips of rows (whose last 10 rows are carried over to the next strip) and blocks of
    # columns must tile the valid region whatever the size; compare odd sizes around them.
    rng = np.random.default_rng(1)
    for h in (11, 12, 42, 43, 52, 75, 107):
        for w in (11, 23, 34, 35, 59):
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
            b = rng.integers(0, 256, (h, w), dtype=np.uint8)
            ours = ssim(torch.from_numpy(a)[None], torch.from_numpy(b)[None])
            assert ours == pytest.approx(structural_similarity(a, b, **SSIM_ARGS), abs=1e-9), (h, w)


def test_crop_border_equals_measuring_the_cropped_images():
    gt = photo("coffee")
    sr = jpeg_roundtrip(gt, 20)
    cropped = measure(sr[4:-4, 4:-4], gt[4:-4, 4:-4])
    assert measure(sr, gt, crop_border=4) == cropped


def _bicubic_x2(gt: np.ndarray) -> np.ndarray:
    """Bicubic x2 down and up again: what the app's bicubic baseline gives of a clean image."""
    h, w = gt.shape[:2]
    small = Image.fromarray(gt).resize((w // 2, h // 2), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def _assert_agrees_with_scikit_image(images: list[np.ndarray], gt: np.ndarray, results: list[ImageMetrics]):
    assert len(results) == len(images)
    for i, (image, ours) in enumerate(zip(images, results, strict=True)):
        ref = skimage_metrics(image, gt)
        for key, value in ref.items():
            assert getattr(ours, key) == pytest.approx(value, abs=1e-6), (i, key)


@pytest.mark.parametrize("name", ["baby", "bird", "butterfly", "head", "woman"])
def test_measure_against_agrees_with_scikit_image_on_set5(name):
    # The app's request: a model's output and bicubic's, against one ground truth.
    gt = crop_for_scale(read_rgb(SET5 / f"{name}.png"), 2)
    images = [jpeg_roundtrip(gt, 40), _bicubic_x2(gt)]
    _assert_agrees_with_scikit_image(images, gt, measure_against(images, gt))


def test_measure_against_agrees_with_scikit_image_on_a_large_held_out_image():
    path = needs_shared(EVAL_DIR / "Urban100_10" / "img_002.png")  # 1024x768: many strips and column blocks
    gt = read_rgb(path)
    rng = np.random.default_rng(2)
    images = [_bicubic_x2(gt), np.clip(gt + rng.normal(0, 5, gt.shape), 0, 255).astype(np.uint8)]
    _assert_agrees_with_scikit_image(images, gt, measure_against(images, gt))


def test_measure_against_equals_measure_on_each_image():
    gt = read_rgb(SET5 / "woman.png")  # 228x344: sides that are no multiple of a strip or block
    rng = np.random.default_rng(3)
    noisy = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).astype(np.uint8)
    images = [jpeg_roundtrip(gt, 20), gt.copy(), _bicubic_x2(gt), noisy]
    for crop in (0, 4):
        together = measure_against(images, gt, crop_border=crop)
        alone = [measure(image, gt, crop_border=crop) for image in images]
        assert math.isinf(together[1].psnr_rgb) and math.isinf(together[1].psnr_y)
        for i, (a, b) in enumerate(zip(together, alone, strict=True)):
            for key, value in b.as_dict().items():
                assert getattr(a, key) == pytest.approx(value, rel=1e-12), (crop, i, key)


def test_measure_against_names_the_image_of_the_wrong_size():
    gt = photo("coffee")
    with pytest.raises(InputError, match="size mismatch: image 1 is"):
        measure_against([gt, gt[:-2]], gt)


def test_measure_against_no_images_gives_no_metrics():
    assert measure_against([], photo("coffee")) == []


def test_size_mismatch_is_an_input_error():
    gt = photo("coffee")
    with pytest.raises(InputError, match="size mismatch"):
        measure(gt[:-2], gt)


def test_too_small_after_crop_is_an_input_error():
    gt = photo("coffee")[:20, :20]
    with pytest.raises(InputError, match="SSIM window"):
        measure(gt, gt, crop_border=5)


def test_mean_is_the_plain_average():
    gt = photo("astronaut")
    a, b = measure(jpeg_roundtrip(gt, 10), gt), measure(jpeg_roundtrip(gt, 50), gt)
    mean = mean_metrics([a, b])
    assert mean.psnr_rgb == pytest.approx((a.psnr_rgb + b.psnr_rgb) / 2)
    assert mean.ssim_y == pytest.approx((a.ssim_y + b.ssim_y) / 2)


def test_folders_pair_by_stem_and_name_the_missing_partner(tmp_path):
    from PIL import Image

    sr_dir, gt_dir = tmp_path / "sr", tmp_path / "gt"
    sr_dir.mkdir()
    gt_dir.mkdir()
    for name in ("chelsea", "coffee"):
        gt = photo(name)
        Image.fromarray(gt).save(gt_dir / f"{name}.png")
        Image.fromarray(gt).save(sr_dir / f"{name}.jpg", quality=80)
    results = measure_folders(sr_dir, gt_dir, progress=False)
    assert list(results) == ["chelsea", "coffee"]
    assert 25 < results["coffee"].psnr_rgb < 60
    (gt_dir / "chelsea.png").rename(gt_dir / "cat.png")
    with pytest.raises(InputError, match=r"cat\.png: no SR image named cat"):
        measure_folders(sr_dir, gt_dir, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu():
    gt = photo("astronaut")
    sr = jpeg_roundtrip(gt, 40)
    cpu, cuda = measure(sr, gt, device="cpu").as_dict(), measure(sr, gt, device="cuda").as_dict()
    for key, value in cpu.items():
        assert cuda[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_against_on_cuda_agrees_with_scikit_image():
    gt = crop_for_scale(read_rgb(SET5 / "baby.png"), 2)
    images = [jpeg_roundtrip(gt, 40), _bicubic_x2(gt)]
    _assert_agrees_with_scikit_image(images, gt, measure_against(images, gt, device="cuda"))
