"""Serving upscale requests, as the app does: one request through the challenge's degradation,
a registered model (from the pool of model processes, rtsr.submissions.pool) and bicubic, and
the metrics, with the time each stage took; the size limits an upload meets first. Its previews
are rtsr.previews'.

Nothing here knows about Gradio: the app wires these functions to its components, and
``bench/bench_app.py`` times the same functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image

from rtsr.constants import JPEG_QUALITY
from rtsr.degradation import check_jpeg_quality, crop_for_scale, degrade
from rtsr.devices import Precision
from rtsr.engines import EngineChoice
from rtsr.errors import InputError
from rtsr.images import image_size, read_rgb
from rtsr.inference import upscale_timed
from rtsr.metrics import ImageMetrics, measure_against
from rtsr.models import ModelDescriptor
from rtsr.scoring import score
from rtsr.submissions.pool import ModelPool

logger = logging.getLogger(__name__)

Mode = Literal["upscale", "simulate"]
MODES: tuple[str, ...] = get_args(Mode)

#: Largest model input (LR pixels) run in one pass on a GPU: a 1080p frame, the Track 1 input.
GPU_ONE_PASS_PIXELS = 1920 * 1080
#: On a CPU host: qHD (960x540). RTSRN x2 takes about 0.5 s at this size in OpenVINO bf16 on
#: the 2-core test host (2 s in FP32 eager).
CPU_ONE_PASS_PIXELS = 960 * 540
#: Default largest model input on a GPU: a 4K frame, run in tiles.
GPU_MAX_INPUT_PIXELS = 3840 * 2160
#: On a CPU host: a 1080p frame, run in tiles (about 2 s for RTSRN x2 on the test host).
CPU_MAX_INPUT_PIXELS = 1920 * 1080
#: LR side of the tiles of inputs above the one-pass size: memory stays that of a 1024x1024
#: (GPU) or 512x512 (CPU) input whatever the image's size.
GPU_TILE = 1024
CPU_TILE = 512
#: Smallest side the model sees: the SSIM window needs 11 output pixels, and smaller images
#: say nothing about a 4K model.
MIN_INPUT_SIDE = 16
#: The request's stages, in order, as they appear in :attr:`UpscaleResult.timings_ms`.
STAGES = ("decode", "degrade", "model", "bicubic", "metrics", "encode")


def default_max_input_pixels(device: torch.device) -> int:
    """The default largest model input on ``device``, in pixels."""
    return GPU_MAX_INPUT_PIXELS if device.type == "cuda" else CPU_MAX_INPUT_PIXELS


def default_one_pass_pixels(device: torch.device) -> int:
    """The default largest model input run in one pass on ``device``, in pixels; larger ones
    run in tiles of :func:`default_tile`."""
    return GPU_ONE_PASS_PIXELS if device.type == "cuda" else CPU_ONE_PASS_PIXELS


def default_tile(device: torch.device) -> int:
    """The default tile side on ``device``, in LR pixels."""
    return GPU_TILE if device.type == "cuda" else CPU_TILE


def megapixels(pixels: int) -> str:
    """``pixels`` as a short human figure, e.g. ``"2.07 MP"``."""
    return f"{pixels / 1e6:.2f} MP"


def check_input_size(height: int, width: int, scale: int, mode: Mode, max_input_pixels: int) -> None:
    """Refuse an upload whose model input would exceed ``max_input_pixels`` or be too small.

    In ``"upscale"`` mode the upload is the model's input; in ``"simulate"`` mode it is the
    ground truth, which is downscaled by ``scale`` first, so it may be ``scale**2`` larger.

    Raises:
        InputError: the input is too large or too small, with the limit in the message.
    """
    factor = scale if mode == "simulate" else 1
    lr_h, lr_w = height // factor, width // factor
    if lr_h * lr_w > max_input_pixels:
        limit = megapixels(max_input_pixels)
        if mode == "simulate":
            raise InputError(
                f"image is {width}x{height} ({megapixels(width * height)}); this host accepts ground truths up to"
                f" {megapixels(max_input_pixels * scale * scale)} at x{scale} (a model input of at most {limit})"
            )
        raise InputError(
            f"image is {width}x{height} ({megapixels(width * height)}); this host upscales inputs of at most {limit}"
        )
    if min(lr_h, lr_w) < MIN_INPUT_SIDE:
        what = f"its x{scale} downscale is {lr_w}x{lr_h}" if mode == "simulate" else f"it is {width}x{height}"
        raise InputError(f"image is too small: {what}, and the model input needs at least {MIN_INPUT_SIDE} px a side")


def fit_size(height: int, width: int, scale: int, mode: Mode, max_input_pixels: int) -> tuple[int, int] | None:
    """The largest ``(height, width)`` of the same aspect ratio (sides rounded down) whose
    model input fits ``max_input_pixels``, or None when the image fits as it is.

    In ``"simulate"`` mode the image is the ground truth, whose model input is its ``scale``
    downscale after cropping to a multiple of ``scale`` (as :func:`check_input_size` counts).

    Raises:
        ValueError: a side or the limit is not positive.
    """
    if height < 1 or width < 1 or max_input_pixels < 1:
        raise ValueError(f"sides and limit must be positive, got {width}x{height} and {max_input_pixels}")
    factor = scale if mode == "simulate" else 1

    def fits(h: int, w: int) -> bool:
        return (h // factor) * (w // factor) <= max_input_pixels

    if fits(height, width):
        return None
    ratio = min(1.0, ((max_input_pixels * factor * factor) / (height * width)) ** 0.5)
    h, w = max(1, int(height * ratio)), max(1, int(width * ratio))
    while not fits(h, w) and h > 1:  # float rounding may leave a row or a column too many
        h -= 1
        w = max(1, int(h * width / height))
    return h, w


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 image resized to ``size`` ``(height, width)`` with Pillow's
    Lanczos filter, whose support widens with the reduction so that it antialiases."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {width}x{height}")
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def read_upload(path: str | Path, scale: int, mode: Mode, max_input_pixels: int) -> np.ndarray:
    """Read an uploaded image as ``(H, W, 3)`` uint8 RGB after checking its size from the
    header, so that an oversized file is refused before it is decoded. Messages name the file
    alone: where an upload lies on the server is no business of the user's.

    Raises:
        InputError: unreadable, too large or too small.
    """
    name = Path(path).name
    height, width = image_size(path, name)
    check_input_size(height, width, scale, mode, max_input_pixels)
    return read_rgb(path, name)


@dataclass
class UpscaleResult:
    """One served request: the images, the metrics where a GT exists, and the timings."""

    model: ModelDescriptor
    mode: Mode
    #: The model's input: the upload, or the challenge's degradation of it.
    lr: np.ndarray
    sr: np.ndarray
    bicubic: np.ndarray
    #: The ground truth the outputs are measured against (cropped to divide by the scale).
    gt: np.ndarray | None
    jpeg_quality: int | None
    metrics: ImageMetrics | None
    bicubic_metrics: ImageMetrics | None
    #: The model's forward pass alone, ms (CUDA events on a GPU, wall clock on a CPU).
    forward_ms: float
    device: str
    device_type: str
    #: The engine the model ran in, and its precision.
    engine: EngineChoice
    #: How many tiles the input was upscaled in (1: one pass).
    tiles: int = 1
    #: False when the model looks at the whole image, so that a tiled result approximates
    #: the one-pass output instead of equalling it.
    tiles_exact: bool = True
    #: Milliseconds spent in each of :data:`STAGES` that ran.
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: ``(height, width)`` of the upload as read (before any crop for the scale); None for
    #: results made without one.
    upload_size: tuple[int, int] | None = None
    #: ``(height, width)`` of the file when it was downscaled to fit the size limit (``fit``).
    downscaled_from: tuple[int, int] | None = None

    @property
    def cropped(self) -> bool:
        """True when simulate mode cropped the upload so that its sides divide by the scale."""
        return self.gt is not None and self.upload_size is not None and self.gt.shape[:2] != self.upload_size

    @property
    def precision(self) -> Precision:
        """The precision the model ran in."""
        return self.engine.spec.precision

    @property
    def psnr_gain(self) -> float | None:
        """PSNR on RGB over bicubic's, dB; None without a GT."""
        if self.metrics is None or self.bicubic_metrics is None:
            return None
        return self.metrics.psnr_rgb - self.bicubic_metrics.psnr_rgb

    @property
    def score(self) -> float | None:
        """The challenge score of this one image at this request's forward time; None without
        a GT. Comparable with the official table only on the challenge's GPU, in FP16, at 4K."""
        if self.metrics is None or self.bicubic_metrics is None:
            return None
        # an immeasurably fast forward (bicubic on a GPU) would divide by zero
        return score(self.metrics.psnr_rgb, max(self.forward_ms, 1e-3), self.bicubic_metrics.psnr_rgb)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready account of the request (what the app's API returns as details)."""
        return {
            "model": self.model.as_dict(),
            "mode": self.mode,
            "jpeg_quality": self.jpeg_quality,
            "input_size": list(self.lr.shape[:2]),
            "output_size": list(self.sr.shape[:2]),
            "device": self.device,
            "device_type": self.device_type,
            "precision": self.precision,
            "engine": self.engine.as_dict(),
            "tiles": self.tiles,
            "tiles_exact": self.tiles_exact,
            "upload_size": list(self.upload_size) if self.upload_size else None,
            "downscaled_from": list(self.downscaled_from) if self.downscaled_from else None,
            "forward_ms": self.forward_ms,
            "timings_ms": dict(self.timings_ms),
            "metrics": self.metrics.as_dict() if self.metrics else None,
            "bicubic": self.bicubic_metrics.as_dict() if self.bicubic_metrics else None,
            "psnr_gain": self.psnr_gain,
            "score": self.score,
        }


@contextmanager
def _stage(timings: dict[str, float], name: str, on_stage: Callable[[str], None] | None) -> Iterator[None]:
    if on_stage is not None:
        on_stage(name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


def serve(
    pool: ModelPool,
    model_id: str,
    image: str | Path | np.ndarray,
    mode: Mode = "upscale",
    jpeg_quality: int = JPEG_QUALITY,
    gt: str | Path | np.ndarray | None = None,
    max_input_pixels: int | None = None,
    on_stage: Callable[[str], None] | None = None,
    one_pass_pixels: int | None = None,
    tile: int | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    fit: bool = False,
) -> UpscaleResult:
    """Serve one request: read, (degrade,) upscale with the model and bicubic, measure.

    Args:
        pool: the served models.
        model_id: a registry id the pool serves.
        image: a file path or an ``(H, W, 3)`` uint8 array. In ``"upscale"`` mode it is the
            model's input; in ``"simulate"`` mode the ground truth, cropped so its sides divide
            by the scale, downscaled (bicubic) and JPEG-compressed at ``jpeg_quality`` as the
            challenge made its inputs.
        jpeg_quality: 1-100 (Pillow's scale), or 0 for no JPEG; simulate mode only.
        gt: an optional ground truth in ``"upscale"`` mode (file or array), ``scale`` times the
            input's size.
        max_input_pixels: the largest model input accepted (default: by device, see
            :func:`default_max_input_pixels`).
        on_stage: called with each stage's name as it starts (for progress bars).
        one_pass_pixels: larger model inputs run in tiles (default: by device, see
            :func:`default_one_pass_pixels`).
        tile: the tiles' side in LR pixels (default: by device, see :func:`default_tile`).
        on_tile: called with (tiles done, tiles in all) as a tiled input progresses.
        fit: downscale an image above ``max_input_pixels`` to the largest size that fits
            (:func:`fit_size`, Lanczos) instead of refusing it.

    Raises:
        InputError: unreadable, too large or mismatched images, a bad mode or quality, or a
            model the pool does not serve.
        ModelError: the model failed, or its output has the wrong size or is not finite.
        torch.OutOfMemoryError: the device ran out of memory.
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    descriptor = pool.descriptor(model_id)
    scale = descriptor.scale
    limit = max_input_pixels if max_input_pixels is not None else default_max_input_pixels(pool.device)
    timings: dict[str, float] = {}

    with _stage(timings, "decode", on_stage):
        # the file's size from its header, read here only to fit it (read_upload reads it too)
        original: tuple[int, int] | None = None
        if fit:
            if isinstance(image, np.ndarray):
                original = (image.shape[0], image.shape[1])
            else:
                original = image_size(image, Path(image).name)
        target = fit_size(original[0], original[1], scale, mode, limit) if original is not None else None
        if target is not None:
            upload = downscale(image if isinstance(image, np.ndarray) else read_rgb(image, Path(image).name), target)
            check_input_size(upload.shape[0], upload.shape[1], scale, mode, limit)
        elif isinstance(image, np.ndarray):
            check_input_size(image.shape[0], image.shape[1], scale, mode, limit)
            upload = image
        else:
            upload = read_upload(image, scale, mode, limit)
        reference: np.ndarray | None = None
        if mode == "upscale" and gt is not None:
            expected = (upload.shape[0] * scale, upload.shape[1] * scale)
            # the header's size first: a wrong (or huge) file is refused before it is decoded
            gt_h, gt_w = gt.shape[:2] if isinstance(gt, np.ndarray) else image_size(gt, Path(gt).name)
            if (gt_h, gt_w) != expected:
                raise InputError(
                    f"ground truth is {gt_w}x{gt_h}, but x{scale} of the"
                    f" {upload.shape[1]}x{upload.shape[0]} input is {expected[1]}x{expected[0]}"
                )
            reference = gt if isinstance(gt, np.ndarray) else read_rgb(gt, Path(gt).name)
    quality: int | None = None
    if mode == "simulate":
        quality = check_jpeg_quality(jpeg_quality)
        with _stage(timings, "degrade", on_stage):
            reference = crop_for_scale(upload, scale)
            lr = degrade(reference, scale, quality)
    else:
        lr = upload

    one_pass = one_pass_pixels if one_pass_pixels is not None else default_one_pass_pixels(pool.device)
    tile_side = 0
    if lr.shape[0] * lr.shape[1] > one_pass:
        tile_side = tile if tile is not None else default_tile(pool.device)
    with _stage(timings, "model", on_stage):
        done = pool.upscale(model_id, lr, tile_side, on_tile)
    with _stage(timings, "bicubic", on_stage):
        bicubic, _ = upscale_timed(pool.bicubic(scale), lr, scale, pool.device, "fp32")
    metrics = bicubic_metrics = None
    if reference is not None:
        with _stage(timings, "metrics", on_stage):
            # one pass over the ground truth for both (rtsr.metrics.measure_against)
            metrics, bicubic_metrics = measure_against([done.sr, bicubic], reference, device=pool.device)
    return UpscaleResult(
        model=descriptor,
        mode=mode,
        lr=lr,
        sr=done.sr,
        bicubic=bicubic,
        gt=reference,
        jpeg_quality=quality,
        metrics=metrics,
        bicubic_metrics=bicubic_metrics,
        forward_ms=done.forward_ms,
        device=pool.device_name,
        device_type=pool.device.type,
        engine=done.engine,
        tiles=done.tiles,
        tiles_exact=done.bounded,
        timings_ms=timings,
        upload_size=(upload.shape[0], upload.shape[1]),
        downscaled_from=original if target is not None else None,
    )
