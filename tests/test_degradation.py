import numpy as np
import pytest
import torch
from PIL import Image

from rtsr.degradation import crop_for_scale, degrade, downsample, jpeg_roundtrip, prepare_data
from rtsr.errors import InputError
from rtsr.images import read_rgb
from rtsr.metrics import psnr
from tests.support.data import photo


def test_crop_drops_the_remainder_rows_and_columns():
    image = np.arange(7 * 8 * 3, dtype=np.uint8).reshape(7, 8, 3)
    out = crop_for_scale(image, 3)
    assert out.shape == (6, 6, 3)
    assert np.array_equal(out, image[:6, :6])


def test_centre_crop():
    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    out = crop_for_scale(image, 2, (4, 6))
    assert np.array_equal(out, image[3:7, 3:9])


@pytest.mark.parametrize(("crop", "message"), [((5, 6), "divisible"), ((12, 6), "larger than")])
def test_bad_crops_are_refused(crop, message):
    with pytest.raises(InputError, match=message):
        crop_for_scale(np.zeros((10, 12, 3), np.uint8), 2, crop)


@pytest.mark.parametrize("scale", [2, 3])
def test_pil_and_matlab_agree_away_from_the_borders(scale):
    gt = crop_for_scale(photo("astronaut"), scale)
    pil, matlab = downsample(gt, scale, "pil"), downsample(gt, scale, "matlab")
    assert pil.shape == matlab.shape == (gt.shape[0] // scale, gt.shape[1] // scale, 3)
    # Both are antialiased Keys cubics (a = -0.5). Pillow treats the borders differently and
    # rounds and clips to 8 bits between its passes, which moves a few pixels at saturated
    # edges by several levels; elsewhere they agree to a level.
    inner = np.abs(pil[4:-4, 4:-4].astype(int) - matlab[4:-4, 4:-4].astype(int))
    assert inner.mean() < 0.2
    assert np.percentile(inner, 99.9) <= 1
    assert not np.array_equal(pil, matlab)


def test_matlab_downsample_is_rounded_imresize():
    from resize_right import resize

    gt = crop_for_scale(photo("coffee"), 2)
    ref = resize(gt.astype(np.float64), scale_factors=(0.5, 0.5, 1), pad_mode="symmetric")
    expected = np.clip(np.round(ref), 0, 255).astype(np.uint8)
    diff = np.abs(downsample(gt, 2, "matlab").astype(int) - expected)
    # float64 sums in another order may land on the other side of .5 in a rare pixel
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_jpeg_roundtrip_equals_reading_the_saved_file(tmp_path):
    image = downsample(crop_for_scale(photo("chelsea"), 2), 2)
    Image.fromarray(image).save(tmp_path / "lr.jpg", "JPEG", quality=90)
    assert np.array_equal(jpeg_roundtrip(image, 90), read_rgb(tmp_path / "lr.jpg"))
    assert np.array_equal(jpeg_roundtrip(image, 0), image)


def test_degrade_loses_more_at_lower_quality():
    gt = crop_for_scale(photo("astronaut"), 2)
    clean = downsample(gt, 2)
    q90, q30 = (torch.from_numpy(degrade(gt, 2, q)) for q in (90, 30))
    assert psnr(q90, torch.from_numpy(clean)) > psnr(q30, torch.from_numpy(clean)) + 3


@pytest.mark.parametrize("scale", [2, 3])
def test_prepare_data_writes_pairs_named_by_stem(hr_dir, tmp_path, scale):
    lr_dir, gt_dir = tmp_path / "lr", tmp_path / "gt"
    pairs = prepare_data(hr_dir, lr_dir, gt_dir, scale, progress=False)
    assert sorted(p.name for p in pairs) == sorted(p.stem for p in hr_dir.iterdir())
    for pair in pairs:
        lr, gt = read_rgb(lr_dir / f"{pair.name}.jpg"), read_rgb(gt_dir / f"{pair.name}.png")
        assert gt.shape[0] == scale * lr.shape[0] and gt.shape[1] == scale * lr.shape[1]
        original = read_rgb(hr_dir / f"{pair.name}.png")
        assert np.array_equal(gt, crop_for_scale(original, scale))
        assert np.array_equal(lr, degrade(gt, scale))


def test_prepare_data_level_zero_is_lossless_png(hr_dir, tmp_path):
    prepare_data(hr_dir, tmp_path / "lr", tmp_path / "gt", 2, jpeg_quality=0, resize="matlab", progress=False)
    lr = read_rgb(tmp_path / "lr" / "coffee.png")
    gt = read_rgb(tmp_path / "gt" / "coffee.png")
    assert np.array_equal(lr, downsample(gt, 2, "matlab"))


def test_prepare_data_leaves_nothing_when_an_image_is_broken(hr_dir, tmp_path):
    (hr_dir / "zz-broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"zz-broken\.png: not an image file"):
        prepare_data(hr_dir, tmp_path / "lr", tmp_path / "gt", 2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr"]
