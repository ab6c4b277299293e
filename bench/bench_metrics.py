"""Speed of rtsr.metrics against scikit-image at 4K, side by side in one run.

Both compute the same four numbers (PSNR and SSIM on RGB and on BT.601 Y) on a 3840x2160
natural image against its JPEG-compressed copy; then on two images against that one ground
truth, as the app measures each request (the model's output and bicubic's; here the JPEG
copy and a bicubic x2 round trip), where ``measure_against`` shares the ground truth's work
and is also timed against two ``measure`` calls. Each is run ``--repeat`` times and the
median is reported, with the ratio and the largest difference from scikit-image's results.

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

from bench.host import host_lines
from rtsr.constants import TARGET_SIZE
from rtsr.degradation import jpeg_roundtrip
from rtsr.metrics import measure, measure_against

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


Results = list[dict[str, float]]


def skimage_each(images: list[np.ndarray], gt: np.ndarray) -> Results:
    return [skimage_metrics(image, gt) for image in images]


def measure_each(images: list[np.ndarray], gt: np.ndarray, device: str) -> Results:
    """One ``measure`` call per image, as the app did before ``measure_against``."""
    return [measure(image, gt, device=device).as_dict() for image in images]


def measure_shared(images: list[np.ndarray], gt: np.ndarray, device: str) -> Results:
    return [m.as_dict() for m in measure_against(images, gt, device=device)]


def median_seconds(fn: Callable[[], Results], repeat: int) -> tuple[float, Results]:
    """Median wall time of ``fn`` over ``repeat`` runs, in seconds, and its last result."""
    times: list[float] = []
    result: Results = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def max_diff(ours: Results, ref: Results) -> float:
    """Largest absolute difference between matching numbers of two lists of results."""
    return max(abs(o[k] - r[k]) for o, r in zip(ours, ref, strict=True) for k in r)


def line(label: str, seconds: float, ref_seconds: float | None = None, diff: float | None = None) -> str:
    """One row of the report: time, and its speed-up and largest difference against scikit-image."""
    row = f"  {label:<28} {seconds:7.3f} s"
    if ref_seconds is not None and diff is not None:
        row += f"  {ref_seconds / seconds:5.2f}x faster  max |diff| {diff:.1e}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    h, w = TARGET_SIZE
    gt = np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC))
    sr = jpeg_roundtrip(gt, 75)
    half = Image.fromarray(gt).resize((w // 2, h // 2), Image.Resampling.BICUBIC)
    bicubic = np.asarray(half.resize((w, h), Image.Resampling.BICUBIC))
    print(f"4K: {w}x{h} RGB astronaut, its JPEG q=75 copy and bicubic x2 round trip; median of {args.repeat} runs")
    print("\n".join(host_lines()))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    print("One image against its ground truth:")
    ref_time, ref = median_seconds(functools.partial(skimage_each, [sr], gt), args.repeat)
    print(line("scikit-image (CPU)", ref_time))
    for device in devices:
        measure(sr[:64, :64], gt[:64, :64], device=device)  # warm up kernels and caches
        t, ours = median_seconds(functools.partial(measure_each, [sr], gt, device), args.repeat)
        print(line(f"measure ({device})", t, ref_time, max_diff(ours, ref)))

    print("Two images against one ground truth, as the app measures each request:")
    ref_time, ref = median_seconds(functools.partial(skimage_each, [sr, bicubic], gt), args.repeat)
    print(line("scikit-image (CPU)", ref_time))
    for device in devices:
        for label, fn in ((f"measure x2 ({device})", measure_each), (f"measure_against ({device})", measure_shared)):
            t, ours = median_seconds(functools.partial(fn, [sr, bicubic], gt, device), args.repeat)
            print(line(label, t, ref_time, max_diff(ours, ref)))


if __name__ == "__main__":
    main()
