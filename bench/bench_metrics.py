"""Speed of rtsr.metrics against scikit-image on a 4K pair, side by side in one run.

Both compute the same four numbers (PSNR and SSIM on RGB and on BT.601 Y) on a 3840x2160
natural image and its JPEG-compressed copy; each is run ``--repeat`` times and the median
is reported, with the ratio and the largest difference between their results.

    python -m bench.bench_metrics [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rtsr.constants import TARGET_SIZE
from rtsr.degradation import jpeg_roundtrip
from rtsr.metrics import measure

SSIM_ARGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}


def skimage_metrics(sr: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM on RGB and Y by scikit-image, Y from its BT.601 ``rgb2ycbcr``: the
    reference that ``rtsr.metrics`` is timed against here and tested against in tests/."""
    sr_y, gt_y = rgb2ycbcr(sr)[..., 0], rgb2ycbcr(gt)[..., 0]
    return {
        "psnr_rgb": peak_signal_noise_ratio(gt, sr, data_range=255),
        "ssim_rgb": structural_similarity(sr, gt, channel_axis=-1, **SSIM_ARGS),
        "psnr_y": peak_signal_noise_ratio(gt_y, sr_y, data_range=255),
        "ssim_y": structural_similarity(sr_y, gt_y, **SSIM_ARGS),
    }


def rtsr_metrics(sr: np.ndarray, gt: np.ndarray, device: str) -> dict[str, float]:
    return measure(sr, gt, device=device).as_dict()


def median_seconds(fn: Callable[[], dict[str, float]], repeat: int) -> tuple[float, dict[str, float]]:
    times, result = [], {}
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    h, w = TARGET_SIZE
    gt = np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC))
    sr = jpeg_roundtrip(gt, 75)
    print(f"4K pair: {w}x{h} RGB, astronaut and its JPEG q=75 copy; median of {args.repeat} runs")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    ref_time, ref = median_seconds(lambda: skimage_metrics(sr, gt), args.repeat)
    print(f"{'scikit-image (CPU)':<22} {ref_time:7.3f} s")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        measure(sr[:64, :64], gt[:64, :64], device=device)  # warm up kernels and caches
        t, ours = median_seconds(functools.partial(rtsr_metrics, sr, gt, device), args.repeat)
        diff = max(abs(ours[k] - ref[k]) for k in ref)
        print(f"{'rtsr.metrics (' + device + ')':<22} {t:7.3f} s  {ref_time / t:5.2f}x faster  max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
