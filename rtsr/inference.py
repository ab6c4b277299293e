"""Running a model on images: tensor conversion, one image, a folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from rtsr.devices import DTYPES, Precision, resolve_device, resolve_precision
from rtsr.errors import ModelError
from rtsr.images import list_images, read_rgb, write_image
from rtsr.outputs import staged_output_dir

logger = logging.getLogger(__name__)


def prepare(module: nn.Module, device: torch.device, precision: Precision) -> nn.Module:
    """Move a model to ``device`` and cast its weights to ``precision``, in eval mode."""
    return module.to(device=device, dtype=DTYPES[precision]).eval()


def to_tensor(image: np.ndarray, device: torch.device, precision: Precision) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` on [0, 1] in the given precision."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None]
    return x.float().div_(255.0).to(DTYPES[precision])


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` on [0, 1] -> ``(H, W, 3)`` uint8, clamped and rounded."""
    # clamp out of place: .float() of an FP32 tensor is the tensor itself, which stays untouched
    out = tensor[0].float().clamp(0.0, 1.0).mul_(255.0).round_().byte()
    # HWC on the device, where the reordering is nearly free, so the array arrives contiguous
    return out.permute(1, 2, 0).contiguous().cpu().numpy()


def upscale(
    module: nn.Module,
    image: np.ndarray,
    scale: int,
    device: torch.device,
    precision: Precision,
) -> np.ndarray:
    """Upscale one ``(H, W, 3)`` uint8 image with a prepared model.

    Raises:
        ModelError: the model's output is not ``(scale * H, scale * W)`` or not finite.
    """
    return upscale_timed(module, image, scale, device, precision)[0]


def upscale_timed(
    module: nn.Module,
    image: np.ndarray,
    scale: int,
    device: torch.device,
    precision: Precision,
) -> tuple[np.ndarray, float]:
    """:func:`upscale`, also returning the model's forward time in milliseconds.

    The time covers ``module(x)`` alone (no transfers or conversions): between CUDA events
    on a GPU, with ``time.perf_counter`` on the CPU.

    Raises:
        ModelError: the model's output is not ``(scale * H, scale * W)`` or not finite.
    """
    h, w = image.shape[:2]
    expected = (1, 3, scale * h, scale * w)
    with torch.inference_mode():
        x = to_tensor(image, device, precision)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = module(x)
            end.record()
            torch.cuda.synchronize(device)
            forward_ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            out = module(x)
            forward_ms = (time.perf_counter() - t0) * 1e3
        if tuple(out.shape) != expected:
            raise ModelError(f"model returned {tuple(out.shape)} for a {h}x{w} input, expected {expected}")
        if not torch.isfinite(out).all():
            raise ModelError(f"model returned non-finite values for a {h}x{w} input")
        return to_image(out), forward_ms


def upscale_folder(
    module: nn.Module,
    scale: int,
    lr_dir: str | Path,
    out_dir: str | Path,
    device: str | torch.device = "cpu",
    precision: Precision | None = None,
    progress: bool = True,
) -> list[Path]:
    """Upscale every image of ``lr_dir`` into PNGs named as the inputs in ``out_dir``.

    The output folder appears only when every image succeeded.
    """
    dev = resolve_device(device)
    prec = resolve_precision(dev, precision)
    module = prepare(module, dev, prec)
    paths = list_images(lr_dir)
    written = []
    with staged_output_dir(out_dir) as stage:
        for path in tqdm(paths, desc=f"sr x{scale} {prec}", unit="img", disable=not progress):
            try:
                sr = upscale(module, read_rgb(path), scale, dev, prec)
            except ModelError as e:
                raise ModelError(f"{path}: {e}") from None
            write_image(stage / f"{path.stem}.png", sr)
            written.append(Path(out_dir) / f"{path.stem}.png")
    return written
