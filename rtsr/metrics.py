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

SSIM is computed over row strips with float64 matrix products, which keeps the working set
in cache. Per channel it filters the ground truth's mean once, and three maps per image
(its mean, ``x*g`` and ``x^2 + g^2``), which is all the formula needs; :func:`measure_against`
shares the ground truth's work among several images. ``bench/bench_metrics.py`` compares it
with scikit-image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
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

_RADIUS = SSIM_WINDOW // 2
_HALO = 2 * _RADIUS
#: Output rows of SSIM maps per strip: 32, 48 and 64 measured the same at 4K on 2 CPU cores,
#: and 32 needs the least memory (about 160 MB for two images against a 4K ground truth).
_STRIP_ROWS = 32
#: Output columns per block of the row filter; 24 measured fastest (12 and 32 were slower).
_BLOCK_COLS = 24
#: Output rows per product of the column filter: a short band wastes fewer multiplications
#: on zeros, and 12 measured fastest.
_BLOCK_ROWS = 12


@dataclass(frozen=True)
class ImageMetrics:
    """Fidelity of one image against its ground truth. PSNR in dB (``inf`` if identical)."""

    psnr_rgb: float
    ssim_rgb: float
    psnr_y: float
    ssim_y: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _luma_weights() -> tuple[float, float, float]:
    """BT.601 weights of R, G, B on [0, 255] input."""
    r, g, b = (w / PEAK for w in BT601_Y_WEIGHTS)
    return r, g, b


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a ``(..., 3, H, W)`` RGB tensor on [0, 255] -> ``(..., 1, H, W)`` on [16, 235].

    Computed in the input's dtype (use float64 for metrics); not rounded.
    """
    weights = torch.tensor(BT601_Y_WEIGHTS, dtype=rgb.dtype, device=rgb.device) / PEAK
    return BT601_Y_OFFSET + torch.einsum("...chw,c->...hw", rgb, weights).unsqueeze(-3)


def _luma_into(maps: torch.Tensor) -> None:
    """Write BT.601 Y of channels 0-2 of ``(rows, 4, W)`` float64 ``maps`` into channel 3, in place.

    Y is linear in RGB, so this also gives the Gaussian mean of Y from the means of R, G, B.
    """
    wr, wg, wb = _luma_weights()
    y = maps[:, 3]
    torch.mul(maps[:, 0], wr, out=y)
    y.add_(maps[:, 1], alpha=wg).add_(maps[:, 2], alpha=wb).add_(BT601_Y_OFFSET)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = PEAK) -> float:
    """PSNR in dB between two tensors of equal shape, values on [0, ``peak``]; ``inf`` if equal."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return _psnr_of_mse(mse, peak)


def _psnr_of_mse(mse: float, peak: float = PEAK) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


@functools.lru_cache(maxsize=16)
def _band(rows_out: int, device: torch.device) -> torch.Tensor:
    """``(rows_out, rows_out + 10)`` matrix whose product with a column applies the Gaussian."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - _RADIUS
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g /= g.sum()
    band = torch.zeros(rows_out, rows_out + _HALO, dtype=torch.float64)
    for i in range(rows_out):
        band[i, i : i + SSIM_WINDOW] = g
    return band.to(device)


def _ssim_sse(
    gt: torch.Tensor, images: Sequence[torch.Tensor], peak: float = PEAK, luma: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and sum of squared errors of each image against ``gt``, per channel.

    Args:
        gt, images: ``(C, H, W)`` tensors of one shape on one device, values on [0, ``peak``],
            both sides >= 11.
        luma: the inputs are RGB (C = 3); measure BT.601 Y as a fourth channel too.

    Returns:
        Two float64 ``(len(images), C [+ 1])`` tensors: SSIM averaged over the valid region,
        and the squared differences summed over all pixels.
    """
    device, f64 = gt.device, torch.float64
    channels, height, width = gt.shape
    planes = channels + luma  # channels measured
    filtered = channels  # channels whose mean is filtered; Y's comes from R, G, B by linearity
    per_image = filtered + 2 * planes  # mean, x*g, x^2 + g^2
    n_maps = filtered + len(images) * per_image  # the GT's mean first
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2

    # Row filter: the width is cut into blocks of _BLOCK_COLS output columns, each a window of
    # _BLOCK_COLS + 10 input columns, so that it is one 2-D product with a small band. The
    # products are written straight into that window layout (rows, maps, blocks, window), so
    # the windows' copy comes with computing them; a batched product over a strided view of
    # the windows was 7x slower on the CPU (45x in a worker thread, where the app runs).
    blocks = -(-(width - _HALO) // _BLOCK_COLS)
    out_w = blocks * _BLOCK_COLS  # >= width - 10; the extra columns are dropped at the end
    rows_in = min(_STRIP_ROWS + _HALO, height)
    rows_out = rows_in - _HALO
    # Each source's rows in float64, right-padded with zeros to the windows' width (+ Y).
    src = torch.zeros(1 + len(images), rows_in, planes, out_w + _HALO, dtype=f64, device=device)
    gg = torch.empty(rows_in, planes, blocks, _BLOCK_COLS + _HALO, dtype=f64, device=device)
    maps = torch.empty(rows_in, n_maps, blocks, _BLOCK_COLS + _HALO, dtype=f64, device=device)
    # Rows filtered along the width, then along the height. Rows are the outer dimension so
    # that the height filter of _BLOCK_ROWS rows is one product over contiguous memory.
    across = torch.empty(rows_in, n_maps, out_w, dtype=f64, device=device)
    down = torch.empty(rows_out, n_maps, out_w, dtype=f64, device=device)
    # The means with Y's appended, where Y's comes from R, G and B (none without luma).
    means = torch.empty((1 + len(images)) * luma, rows_out, planes, width - _HALO, dtype=f64, device=device)
    work = torch.empty(5, rows_out, planes, width - _HALO, dtype=f64, device=device)
    diff = torch.empty(rows_in, planes, width, dtype=f64, device=device)
    band_t = _band(_BLOCK_COLS, device).T.contiguous()
    # Constants folded into the filtered maps: the filter's weights sum to 1, so filtering
    # x*g + c is filtering x*g, plus c; it saves a pass over each map.
    c12 = torch.tensor(c1 + c2, dtype=f64, device=device)
    c1_t = torch.tensor(c1, dtype=f64, device=device)
    half_c1 = torch.tensor(c1 / 2, dtype=f64, device=device)
    ssim_sum = torch.zeros(len(images), planes, dtype=f64, device=device)
    sse = torch.zeros(len(images), planes, dtype=f64, device=device)

    done = 0  # input rows filtered along the width so far
    prev_rows = 0
    for top in range(0, height - _HALO, _STRIP_ROWS):
        bottom = min(top + _STRIP_ROWS + _HALO, height)
        rows, fresh = bottom - top, bottom - done
        # The previous strip's last 10 rows are this strip's first: keep them, not recompute.
        kept = rows - fresh
        if kept:
            across[:kept].copy_(across[prev_rows - kept : prev_rows])
        for i, image in enumerate((gt, *images)):
            s = src[i, :fresh]
            s[:, :channels, :width].copy_(image[:, done:bottom].transpose(0, 1))
            if luma:
                _luma_into(s[..., :width])
        windows = src[:, :fresh].unfold(-1, _BLOCK_COLS + _HALO, _BLOCK_COLS)  # no copy
        g = windows[0]
        m = maps[:fresh]
        m[:, :filtered].copy_(g[:, :filtered])
        g2 = torch.addcmul(c12, g, g, out=gg[:fresh])  # g^2 + c1 + c2, shared by the images
        for k in range(len(images)):
            x, at = windows[1 + k], filtered + k * per_image
            m[:, at : at + filtered].copy_(x[:, :filtered])
            torch.addcmul(c12, x, g, value=2, out=m[:, at + filtered : at + filtered + planes])
            torch.addcmul(g2, x, x, out=m[:, at + filtered + planes : at + per_image])
            d = torch.sub(src[1 + k, :fresh, :, :width], src[0, :fresh, :, :width], out=diff[:fresh])
            sse[k] += torch.linalg.vector_norm(d, dim=(0, 2)).square_()  # one pass, not two
        torch.mm(m.view(-1, _BLOCK_COLS + _HALO), band_t, out=across[kept:rows].view(-1, _BLOCK_COLS))
        done, prev_rows = bottom, rows

        out = rows - _HALO
        for r in range(0, out, _BLOCK_ROWS):
            n = min(_BLOCK_ROWS, out - r)
            torch.mm(
                _band(n, device),
                across[r : r + n + _HALO].view(n + _HALO, -1),
                out=down[r : r + n].view(n, -1),
            )
        valid = down[:out, :, : width - _HALO]
        ssim_sum += _ssim_strip(valid, means[:, :out], work[:, :out], len(images), luma, c1_t, half_c1)

    ssim_mean = ssim_sum / ((height - _HALO) * (width - _HALO))
    return ssim_mean, sse


def _ssim_strip(
    valid: torch.Tensor,
    means: torch.Tensor,
    work: torch.Tensor,
    n_images: int,
    luma: bool,
    c1: torch.Tensor,
    half_c1: torch.Tensor,
) -> torch.Tensor:
    """Summed SSIM map of one strip for each image, per channel: ``(n_images, planes)``.

    ``valid`` holds the strip's filtered maps, ``(rows, maps, cols)``, laid out as in
    :func:`_ssim_sse`; ``means`` and ``work`` are scratch space, so nothing is allocated.
    """
    planes = means.shape[2]
    filtered = planes - luma
    per_image = filtered + 2 * planes

    def mean(i: int, at: int) -> torch.Tensor:
        if not luma:
            return valid[:, at : at + planes]
        mu = means[i]
        mu[:, :filtered].copy_(valid[:, at : at + filtered])
        _luma_into(mu)
        return mu

    mu_g = mean(0, 0)
    g1, t1, t2, t3, t4 = work
    torch.addcmul(c1, mu_g, mu_g, out=g1)  # mu_g^2 + c1, shared by the images
    sums = []
    for k in range(n_images):
        at = filtered + k * per_image
        mu_x = mean(1 + k, at)
        xg = valid[:, at + filtered : at + filtered + planes]  # 2 E[xg] + c1 + c2
        sq = valid[:, at + filtered + planes : at + per_image]  # E[x^2] + E[g^2] + c1 + c2
        # SSIM = (2 mu_x mu_g + c1) (2 cov + c2) / ((mu_x^2 + mu_g^2 + c1) (var_x + var_g + c2))
        torch.addcmul(half_c1, mu_x, mu_g, out=t1)  # mu_x mu_g + c1 / 2, half the first factor
        torch.addcmul(g1, mu_x, mu_x, out=t2)  # mu_x^2 + mu_g^2 + c1
        torch.sub(xg, t1, alpha=2, out=t3)  # 2 cov + c2
        torch.sub(sq, t2, out=t4)  # var_x + var_g + c2
        t1.mul_(t3)
        t2.mul_(t4)
        sums.append(t1.div_(t2).sum((0, 2)) * 2)  # t1 held half the numerator
    return torch.stack(sums)


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = PEAK) -> float:
    """Mean SSIM of two ``(C, H, W)`` tensors on [0, ``peak``], averaged over channels.

    Raises:
        ValueError: shapes differ, or a side is shorter than the 11-pixel window.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs both sides >= {SSIM_WINDOW} pixels, got {a.shape[1]}x{a.shape[2]}")
    ssim_mean, _ = _ssim_sse(b, [a], peak)
    return ssim_mean.mean().item()


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
    device: str | torch.device | None = "cpu",
) -> ImageMetrics:
    """PSNR and SSIM on RGB and on Y of an SR image against its ground truth.

    Args:
        sr, gt: ``(H, W, 3)`` uint8 RGB images of the same size.
        crop_border: pixels removed from each side of both images before measuring.
        device: where to compute (``"cpu"``, ``"cuda"``, or ``None`` for CUDA when present).

    Raises:
        InputError: the sizes differ or nothing is left after ``crop_border``.
    """
    return _measure([sr], ["SR"], gt, crop_border, device)[0]


def measure_against(
    images: Sequence[np.ndarray | torch.Tensor],
    gt: np.ndarray | torch.Tensor,
    crop_border: int = 0,
    device: str | torch.device | None = "cpu",
) -> list[ImageMetrics]:
    """:func:`measure` of each image against one ground truth, in order, in one pass.

    The ground truth's share of the work (its Y, its SSIM mean and squares) is done once, so
    two images cost about 1.7 times one rather than twice (``bench/bench_metrics.py``).

    Args:
        images: ``(H, W, 3)`` uint8 RGB images, each the size of ``gt``.
        gt, crop_border, device: as for :func:`measure`.

    Raises:
        InputError: as :func:`measure`, naming the image by its index.
    """
    return _measure(images, [f"image {i}" for i in range(len(images))], gt, crop_border, device)


def _measure(
    images: Sequence[np.ndarray | torch.Tensor],
    labels: Sequence[str],
    gt: np.ndarray | torch.Tensor,
    crop_border: int,
    device: str | torch.device | None,
) -> list[ImageMetrics]:
    """The code path of :func:`measure` and :func:`measure_against`; ``labels`` name the images in errors."""
    dev = resolve_device(device)
    gt_t = _to_chw(gt, dev)
    tensors = [_to_chw(image, dev) for image in images]
    for label, t in zip(labels, tensors, strict=True):
        if t.shape != gt_t.shape:
            raise InputError(
                f"size mismatch: {label} is {t.shape[1]}x{t.shape[2]}, GT is {gt_t.shape[1]}x{gt_t.shape[2]}"
            )
    if crop_border < 0:
        raise InputError(f"crop border must be >= 0, got {crop_border}")
    if crop_border:
        gt_t = gt_t[:, crop_border:-crop_border, crop_border:-crop_border]
        tensors = [t[:, crop_border:-crop_border, crop_border:-crop_border] for t in tensors]
    if min(gt_t.shape[1:]) < SSIM_WINDOW:
        raise InputError(
            f"image is {gt_t.shape[1]}x{gt_t.shape[2]} after cropping {crop_border} px,"
            f" smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
        )
    if not tensors:
        return []
    ssim_mean, sse = (t.tolist() for t in _ssim_sse(gt_t, tensors, luma=True))
    pixels = gt_t.shape[1] * gt_t.shape[2]
    return [
        ImageMetrics(
            psnr_rgb=_psnr_of_mse(sum(err[:3]) / (3 * pixels)),
            ssim_rgb=sum(s[:3]) / 3,
            psnr_y=_psnr_of_mse(err[3] / pixels),
            ssim_y=s[3],
        )
        for s, err in zip(ssim_mean, sse, strict=True)
    ]


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
