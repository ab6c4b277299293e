"""PSNR and SSIM on RGB and on the Y channel, in torch, on the CPU or a CUDA device.

Conventions (those of the challenge and of BasicSR's ``psnr_ssim.py``, with the luma bug fixed):

* Inputs are uint8 images of equal size, HWC, RGB order; values on [0, 255], peak 255.
* Accumulation in float64.
* PSNR = 10 log10(255^2 / MSE), MSE over all pixels and channels; identical images give
  ``inf`` (no epsilon fudge).
* SSIM of Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (not sample) covariances, averaged over the valid region (no padding) and
  then over channels. This is scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255)``.
* Y is ITU-R BT.601 luma computed from **RGB** as MATLAB's ``rgb2ycbcr`` does on [0, 1]
  input: ``16 + 65.481 R + 128.553 G + 24.966 B``, kept in float64 on [16, 235], not
  rounded. (The challenge's script converts OpenCV's BGR to RGB, then applies BasicSR's
  BGR-order ``bgr2ycbcr``, so its Y swaps the red and blue weights.)

SSIM filters row strips with float64 matrix products, which keeps the working set in cache;
``bench/bench_metrics.py`` compares it with scikit-image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rtsr.constants import (
    BT601_Y_OFFSET,
    BT601_Y_WEIGHTS,
    PEAK,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
)
from rtsr.devices import resolve_device
from rtsr.errors import InputError
from rtsr.images import list_images, read_rgb

#: Output rows of SSIM maps computed at once; 32 measured fastest on 2 CPU cores.
_STRIP_ROWS = 32
_RADIUS = SSIM_WINDOW // 2


@dataclass(frozen=True)
class ImageMetrics:
    """Fidelity of one image against its ground truth. PSNR in dB (``inf`` if identical)."""

    psnr_rgb: float
    ssim_rgb: float
    psnr_y: float
    ssim_y: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a ``(..., 3, H, W)`` RGB tensor on [0, 255] -> ``(..., 1, H, W)`` on [16, 235].

    Computed in the input's dtype (use float64 for metrics); not rounded.
    """
    weights = torch.tensor(BT601_Y_WEIGHTS, dtype=rgb.dtype, device=rgb.device) / PEAK
    return BT601_Y_OFFSET + torch.einsum("...chw,c->...hw", rgb, weights).unsqueeze(-3)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = PEAK) -> float:
    """PSNR in dB between two tensors of equal shape, values on [0, ``peak``]; ``inf`` if equal."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


@functools.lru_cache(maxsize=8)
def _band(rows_in: int, device: torch.device) -> torch.Tensor:
    """``(rows_in - 10, rows_in)`` matrix whose product with a column applies the Gaussian."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - _RADIUS
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g /= g.sum()
    rows_out = rows_in - 2 * _RADIUS
    band = torch.zeros(rows_out, rows_in, dtype=torch.float64)
    for i in range(rows_out):
        band[i, i : i + SSIM_WINDOW] = g
    return band.to(device)


def _filter_valid(maps: torch.Tensor) -> torch.Tensor:
    """Gaussian-filter ``(N, R, W)`` float64 maps over both axes, keeping the valid region."""
    # Rows first: one contiguous matrix product that also shrinks the data by 10 rows.
    vertical = _band(maps.shape[1], maps.device) @ maps  # (N, R - 10, W)
    # Columns: cut the width into blocks so that each is one small matrix product.
    width = maps.shape[2]
    block = _STRIP_ROWS
    out_w = width - 2 * _RADIUS
    blocks = -(-out_w // block)
    padded = F.pad(vertical, (0, blocks * block + 2 * _RADIUS - width))
    windows = padded.unfold(-1, block + 2 * _RADIUS, block)  # (N, R - 10, blocks, block + 10)
    band = _band(block + 2 * _RADIUS, maps.device)
    # One 2-D product over a contiguous copy of the windows: a batched product over the strided
    # view was 7x slower on the CPU, and 45x slower in a worker thread (where the app runs).
    out = windows.reshape(-1, block + 2 * _RADIUS) @ band.T  # (N * (R - 10) * blocks, block)
    return out.view(*windows.shape[:-1], block).flatten(-2)[..., :out_w]  # (N, R - 10, W - 10)


def _strips(height: int) -> Iterator[tuple[int, int]]:
    """Input row ranges whose valid SSIM rows tile ``[0, height - 10)`` exactly."""
    for top in range(0, height - 2 * _RADIUS, _STRIP_ROWS):
        yield top, min(top + _STRIP_ROWS + 2 * _RADIUS, height)


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = PEAK) -> float:
    """Mean SSIM of two ``(C, H, W)`` tensors on [0, ``peak``], averaged over channels.

    Raises:
        ValueError: shapes differ, or a side is shorter than the 11-pixel window.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    channels, height, width = a.shape
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs both sides >= {SSIM_WINDOW} pixels, got {height}x{width}")
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for top, bottom in _strips(height):
        x = a[:, top:bottom].double()
        y = b[:, top:bottom].double()
        mu_x, mu_y, xx, yy, xy = _filter_valid(torch.cat([x, y, x * x, y * y, x * y])).split(channels)
        var_x = xx - mu_x * mu_x
        var_y = yy - mu_y * mu_y
        cov = xy - mu_x * mu_y
        num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
        total += (num / den).sum()
    valid = channels * (height - 2 * _RADIUS) * (width - 2 * _RADIUS)
    return (total / valid).item()


def _to_chw(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(image, np.ndarray) and not image.flags.writeable:
        image = image.copy()  # torch refuses to wrap read-only memory (Pillow's buffers) silently
    tensor = torch.as_tensor(image)
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {tuple(tensor.shape)} {tensor.dtype}")
    return tensor.to(device).permute(2, 0, 1)


def measure(
    sr: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    crop_border: int = 0,
    device: str | torch.device = "cpu",
) -> ImageMetrics:
    """PSNR and SSIM on RGB and on Y of an SR image against its ground truth.

    Args:
        sr, gt: ``(H, W, 3)`` uint8 RGB images of the same size.
        crop_border: pixels removed from each side of both images before measuring.
        device: where to compute (``"cpu"`` or ``"cuda"``).

    Raises:
        InputError: the sizes differ or nothing is left after ``crop_border``.
    """
    dev = resolve_device(device)
    sr_t, gt_t = _to_chw(sr, dev), _to_chw(gt, dev)
    if sr_t.shape != gt_t.shape:
        raise InputError(f"size mismatch: SR is {sr_t.shape[1]}x{sr_t.shape[2]}, GT is {gt_t.shape[1]}x{gt_t.shape[2]}")
    if crop_border < 0:
        raise InputError(f"crop border must be >= 0, got {crop_border}")
    if crop_border:
        sr_t = sr_t[:, crop_border:-crop_border, crop_border:-crop_border]
        gt_t = gt_t[:, crop_border:-crop_border, crop_border:-crop_border]
    if min(sr_t.shape[1:]) < SSIM_WINDOW:
        raise InputError(
            f"image is {sr_t.shape[1]}x{sr_t.shape[2]} after cropping {crop_border} px,"
            f" smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )
    sr_y, gt_y = rgb_to_y(sr_t.double()), rgb_to_y(gt_t.double())
    return ImageMetrics(
        psnr_rgb=psnr(sr_t, gt_t),
        ssim_rgb=ssim(sr_t, gt_t),
        psnr_y=psnr(sr_y, gt_y),
        ssim_y=ssim(sr_y, gt_y),
    )


def mean_metrics(metrics: list[ImageMetrics]) -> ImageMetrics:
    """Average each metric over images (the challenge's per-set figure)."""
    if not metrics:
        raise ValueError("no metrics to average")
    return ImageMetrics(
        **{k: float(np.mean([getattr(m, k) for m in metrics])) for k in ImageMetrics.__dataclass_fields__}
    )


def pair_by_stem(sr_dir: str | Path, gt_dir: str | Path, sr_label: str = "SR") -> list[tuple[Path, Path]]:
    """Pair the images of two folders by file stem (``0001.png`` with ``0001.jpg``).

    Raises:
        InputError: a folder is missing or empty, or an image has no partner (named).
    """
    sr_paths = {p.stem: p for p in list_images(sr_dir)}
    gt_paths = {p.stem: p for p in list_images(gt_dir)}
    _require_partners(gt_paths, sr_paths, sr_label, sr_dir)
    _require_partners(sr_paths, gt_paths, "GT", gt_dir)
    return [(sr_paths[s], gt_paths[s]) for s in sorted(gt_paths)]


def _require_partners(paths: dict[str, Path], partners: dict[str, Path], label: str, folder: str | Path) -> None:
    """Raise an InputError naming the first of ``paths`` with no partner of the same stem."""
    missing = sorted(stem for stem in paths if stem not in partners)
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:6])})" if len(missing) > 1 else ""
        raise InputError(f"{paths[missing[0]]}: no {label} image named {missing[0]}.* in {folder}{more}")


def measure_folders(
    sr_dir: str | Path,
    gt_dir: str | Path,
    crop_border: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, ImageMetrics]:
    """Metrics of every SR image against the GT of the same stem, keyed by stem, sorted.

    Raises:
        InputError: as :func:`pair_by_stem`, an unreadable image, or a size mismatch, each
            naming the file.
    """
    results = {}
    for sr_path, gt_path in tqdm(pair_by_stem(sr_dir, gt_dir), desc="metrics", unit="img", disable=not progress):
        sr, gt = read_rgb(sr_path), read_rgb(gt_path)  # their errors name the file already
        try:
            results[gt_path.stem] = measure(sr, gt, crop_border, device)
        except InputError as e:
            raise InputError(f"{sr_path} vs {gt_path}: {e}") from None
    return results
