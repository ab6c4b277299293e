"""Serving upscale requests, as the app does: registered models loaded once, one request
through the challenge's degradation, the model and bicubic, the metrics and fast previews,
with the time each stage took.

Nothing here knows about Gradio: the app wires these functions to its components, and
``bench/bench_app.py`` times the same functions.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from PIL import Image
from torch import nn

from rtsr.constants import JPEG_QUALITY
from rtsr.degradation import check_jpeg_quality, crop_for_scale, degrade
from rtsr.devices import Precision, device_name, resolve_device, resolve_precision
from rtsr.engines import EngineChoice
from rtsr.errors import InputError, RTSRError
from rtsr.images import image_size, read_rgb
from rtsr.inference import prepare, upscale_timed
from rtsr.metrics import ImageMetrics, measure_against
from rtsr.models import Bicubic, ModelDescriptor
from rtsr.scoring import score
from rtsr.submissions.registry import Registry, RegistryEntry
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.sandboxed_models import SERVING_LIMITS, SandboxedModels, Upscaled
from rtsr.submissions.submission import Submission

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
#: Quality of the JPEG previews. A 4K JPEG encodes ~30x faster than Pillow's default PNG and
#: ~9x faster than WebP, Gradio's default (bench/bench_app.py); the PNG is made for download only.
PREVIEW_JPEG_QUALITY = 92
#: zlib level of the download PNG: level 1 is 4x faster than Pillow's default 6 at 4K and still
#: lossless, for a file about a quarter larger (bench/bench_app.py).
PNG_COMPRESS_LEVEL = 1

#: Side of a detail view's crops, in output pixels: small enough to show four side by side at
#: 1:1 on a laptop, large enough to judge edges and textures.
DETAIL_SIZE = 128

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


class ModelPool:
    """The registered models, served from sandboxes for one device.

    Every registry entry's files are checked against their hashes here, and the app never
    imports a submission's code: every forward pass runs in a sandboxed process
    (:class:`rtsr.submissions.sandboxed_models.SandboxedModels`). ``registry`` (the bundled
    models, reviewed when registered) is loaded at once in one process. ``evaluated`` (the
    store's registry: submissions the worker evaluated, that nobody reviewed) gets one
    process per model, started on first use, reused, and ended when more than
    ``max_live`` are running (the least recently used first); :meth:`refresh` picks up the
    entries added since. Entries that fail are kept in :attr:`failures` with the reason.
    Models run in FP16 on CUDA unless a descriptor says it does not support half
    precision, FP32 on the CPU. Bicubic, the reference, is rtsr's own and runs here.

    Raises:
        SubmissionError: the sandbox cannot be made here (see ``$RTSR_SANDBOX``).
    """

    def __init__(
        self,
        registry: Registry,
        device: str | torch.device | None = None,
        precision: Precision | None = None,
        limits: Limits = SERVING_LIMITS,
        evaluated: Registry | None = None,
        max_live: int = 4,
    ) -> None:
        self.device = resolve_device(device)
        self.precision: Precision = resolve_precision(self.device, precision)
        self.device_name = device_name(self.device)
        self.limits, self.max_live = limits, max_live
        self.failures: dict[str, str] = {}
        submissions = self._open(registry, registry.entries)
        self.sandboxed = SandboxedModels(submissions, self.device, limits)
        self.failures.update(self.sandboxed.failures)
        entries = {e.id: e for e in registry.entries}
        #: The served models' descriptors by registry id, in registry order; the registry's
        #: name and source are the public ones, as :meth:`Registry.load` gives them.
        self.models = {
            k: replace(d, name=entries[k].name, source=entries[k].public_source)
            for k, d in self.sandboxed.descriptors.items()
        }
        self._bicubic: dict[int, nn.Module] = {}
        #: The engine each model ran in, once it has run (models are built on first use).
        self.engines: dict[str, EngineChoice] = {}
        self._lock = threading.Lock()
        self._evaluated = evaluated
        self._pending: dict[str, Submission] = {}  # served on first use
        self._live: OrderedDict[str, SandboxedModels] = OrderedDict()
        self._starting = threading.Lock()
        if evaluated is not None:
            self.refresh()

    def _open(self, registry: Registry, entries: list[RegistryEntry]) -> dict[str, Submission]:
        submissions = {}
        for entry in entries:
            try:
                submissions[entry.id] = registry.open(entry)
            except RTSRError as e:
                logger.warning("registry entry %s failed its checks: %s", entry.id, e)
                self.failures[entry.id] = str(e)
        return submissions

    def refresh(self, registry: Registry | None = None) -> list[str]:
        """Serve the entries added to the evaluated registry since the last look (hashes
        checked now, loaded on first use); return their ids. ``registry`` is the evaluated
        registry as read now, wherever it lies (a store on the Hub reads each head into a
        folder of its own); by default, its file is read again."""
        if registry is not None:
            self._evaluated = registry
        if self._evaluated is None:
            return []
        registry = registry or Registry.read(self._evaluated.path)
        with self._lock:
            known = self.models.keys() | self.failures.keys()
            new = [e for e in registry.entries if e.id not in known]
            for entry_id, submission in self._open(registry, new).items():
                entry = registry.get(entry_id)
                self._pending[entry_id] = submission
                # what the registry knows until the model's process describes it
                self.models[entry_id] = ModelDescriptor(
                    id=entry_id, name=entry.name, scale=entry.scale, params=0, source=entry.public_source
                )
        return [e.id for e in new if e.id in self.models]

    def descriptors(self, scale: int | None = None) -> list[ModelDescriptor]:
        """The served models' descriptors, in registry order, optionally of one scale."""
        return [d for d in self.models.values() if scale is None or d.scale == scale]

    def descriptor(self, model_id: str) -> ModelDescriptor:
        """The descriptor of a served model.

        Raises:
            InputError: ``model_id`` is not served (not registered, or it failed to load).
        """
        try:
            return self.models[model_id]
        except KeyError:
            if model_id in self.failures:
                raise InputError(f"model {model_id!r} is unavailable: {self.failures[model_id]}") from None
            raise InputError(f"unknown model {model_id!r} (served: {', '.join(self.models) or 'none'})") from None

    def precision_of(self, model_id: str) -> Precision:
        """The precision ``model_id`` runs in here."""
        if self.precision == "fp16" and not self.descriptor(model_id).supports_half:
            return "fp32"
        return self.precision

    def _process_for(self, model_id: str) -> SandboxedModels:
        """The sandboxed process serving ``model_id``: the bundled models' one, or the
        model's own, started now if it is not running."""
        if model_id in self.sandboxed.descriptors:
            return self.sandboxed
        with self._lock:
            if model_id in self._live:
                self._live.move_to_end(model_id)
                return self._live[model_id]
        # one start at a time, so that two requests for a new model do not start two processes
        with self._starting:
            with self._lock:
                if model_id in self._live:
                    return self._live[model_id]
                submission = self._pending[model_id]
            process = SandboxedModels({model_id: submission}, self.device, self.limits)
            return self._register(model_id, process)

    def _register(self, model_id: str, process: SandboxedModels) -> SandboxedModels:
        with self._lock:
            if model_id in process.failures:
                process.close()
                self.failures[model_id] = process.failures[model_id]
                self.models.pop(model_id, None)
                raise InputError(f"model {model_id!r} is unavailable: {process.failures[model_id]}")
            described = process.descriptors[model_id]
            self.models[model_id] = replace(
                described, name=self.models[model_id].name, source=self.models[model_id].source
            )
            self._live[model_id] = process
            while len(self._live) > self.max_live:
                _, oldest = self._live.popitem(last=False)
                oldest.close()
        return process

    def upscale(
        self,
        model_id: str,
        image: np.ndarray,
        tile: int = 0,
        on_tile: Callable[[int, int], None] | None = None,
        engine: str = "auto",
    ) -> Upscaled:
        """Upscale an ``(H, W, 3)`` uint8 image with a served model in the sandbox, in the
        fastest faithful engine (``engine`` ``"auto"``, see :mod:`rtsr.engines`; another
        engine runs in :meth:`precision_of`), in tiles of ``tile`` LR pixels when above 0.

        Raises:
            InputError: the model is not served.
            ModelError: the model failed (one line naming it).
            torch.OutOfMemoryError: the device ran out of memory.
        """
        self.descriptor(model_id)
        process = self._process_for(model_id)
        done = process.upscale(model_id, image, self.precision_of(model_id), engine, tile, on_tile)
        with self._lock:
            first = self.engines.get(model_id) != done.engine
            self.engines[model_id] = done.engine
        if first:  # the model process logs into its sandbox: the choice is told here
            level = logging.WARNING if done.engine.passed_over else logging.INFO
            logger.log(level, "%s runs in %s", model_id, done.engine.describe())
        return done

    def bicubic(self, scale: int) -> nn.Module:
        """Bicubic upscaling by ``scale`` in FP32 on the pool's device: the reference."""
        with self._lock:
            if scale not in self._bicubic:
                self._bicubic[scale] = prepare(Bicubic(scale), self.device, "fp32")
            return self._bicubic[scale]

    def close(self) -> None:
        """End every sandboxed model process."""
        self.sandboxed.close()
        with self._lock:
            while self._live:
                self._live.popitem()[1].close()


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


def nearest_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each pixel ``scale`` times each way: the LR input shown at the output's size,
    its pixels visible as they are (no interpolation)."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def jpeg_preview(image: np.ndarray, quality: int = PREVIEW_JPEG_QUALITY) -> bytes:
    """An ``(H, W, 3)`` uint8 image as JPEG bytes for on-screen comparison.

    Chroma is not subsampled (4:4:4), so coloured edges are compared as the model drew them.
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def encode_preview(image: np.ndarray, path: str | Path, quality: int = PREVIEW_JPEG_QUALITY) -> Path:
    """Write :func:`jpeg_preview` of ``image`` to ``path``; return the path."""
    path = Path(path)
    path.write_bytes(jpeg_preview(image, quality))
    return path


def encode_png(image: np.ndarray, path: str | Path, compress_level: int = PNG_COMPRESS_LEVEL) -> Path:
    """Write an ``(H, W, 3)`` uint8 image as a lossless PNG; return the path."""
    Image.fromarray(image).save(path, "PNG", compress_level=compress_level)
    return Path(path)


def detail_box(height: int, width: int, scale: int, x: int, y: int, size: int = DETAIL_SIZE) -> tuple[int, int, int]:
    """The ``(top, left, side)`` of a square detail of an output of ``height x width``
    pixels, centred on the output pixel ``(x, y)`` as nearly as it fits inside.

    ``side`` is ``size`` rounded down to a multiple of ``scale`` (and to the output's shorter
    side), and ``top`` and ``left`` are multiples of ``scale`` too, so that the detail covers
    whole input pixels: the input's crop is exactly ``side // scale`` pixels a side.

    Raises:
        ValueError: ``scale`` or ``size`` is below 1, or smaller than ``scale``.
    """
    if scale < 1 or size < scale:
        raise ValueError(f"size must be at least the scale, got size {size} at x{scale}")
    side = min(size, height // scale * scale, width // scale * scale) // scale * scale
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)

    def start(centre: int, extent: int) -> int:
        first = min(max(centre - side // 2, 0), extent // scale * scale - side)
        return first // scale * scale

    return start(y, height), start(x, width), side


def detail_crops(
    lr: np.ndarray, outputs: dict[str, np.ndarray], x: int, y: int, size: int = DETAIL_SIZE
) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    """Crops of the same square detail of several images, at 1:1 for comparison.

    Args:
        lr: the model's input, ``(h, w, 3)``.
        outputs: images of the output's size ``(h * scale, w * scale, 3)`` by name (the
            model's output, bicubic, the ground truth).
        x, y: the output pixel to centre the detail on (see :func:`detail_box`).
        size: the detail's side in output pixels.

    Returns:
        The crops by name, ``"input"`` first: the input's pixels repeated ``scale`` times
        each way (:func:`nearest_upscale`) so that all crops show the same area at the same
        size; and the detail's ``(top, left, side)`` in output pixels.

    Raises:
        ValueError: no outputs, or an output that is not ``scale`` times the input.
    """
    if not outputs:
        raise ValueError("no images to crop")
    h, w = lr.shape[:2]
    height, width = next(iter(outputs.values())).shape[:2]
    scale = height // h
    for name, image in outputs.items():
        if scale < 1 or image.shape[:2] != (h * scale, w * scale):
            raise ValueError(f"{name} is {image.shape[1]}x{image.shape[0]}, not a whole multiple of the {w}x{h} input")
    top, left, side = detail_box(height, width, scale, x, y, size)
    rows, cols = slice(top // scale, (top + side) // scale), slice(left // scale, (left + side) // scale)
    crops = {"input": nearest_upscale(lr[rows, cols], scale)}
    crops.update({name: image[top : top + side, left : left + side] for name, image in outputs.items()})
    return crops, (top, left, side)


def _decode(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.asarray(img.convert("RGB"))


@dataclass(frozen=True)
class Previews:
    """The JPEG previews of one request: small enough to keep in a user's session (a few MB at
    4K, against ~80 MB of arrays), so that switching the comparison needs no model run."""

    sr: bytes
    bicubic: bytes
    #: The model's input, at its own size.
    lr: bytes
    #: The model's input at the output's size, pixels repeated (no interpolation).
    lr_nearest: bytes
    #: The ground truth the outputs were measured against, if any.
    gt: bytes | None = None

    @classmethod
    def encode(cls, result: UpscaleResult) -> Previews:
        """Encode the previews of ``result`` (the request's "encode" stage)."""
        return cls(
            sr=jpeg_preview(result.sr),
            bicubic=jpeg_preview(result.bicubic),
            lr=jpeg_preview(result.lr),
            lr_nearest=jpeg_preview(nearest_upscale(result.lr, result.model.scale)),
            gt=jpeg_preview(result.gt) if result.gt is not None else None,
        )

    def detail(self, x: int, y: int, size: int = DETAIL_SIZE) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
        """:func:`detail_crops` of the previews around output pixel ``(x, y)``: ``"input"``,
        ``"bicubic"``, ``"model"`` and, with a ground truth, ``"gt"``. The crops are of
        the previews (JPEG at :data:`PREVIEW_JPEG_QUALITY`, chroma not subsampled), which the
        session keeps instead of the arrays."""
        outputs = {"bicubic": _decode(self.bicubic), "model": _decode(self.sr)}
        if self.gt is not None:
            outputs["gt"] = _decode(self.gt)
        return detail_crops(_decode(self.lr), outputs, x, y, size)

    def pair(self, before: Literal["bicubic", "lr"], folder: str | Path) -> tuple[str, str]:
        """Write the before/after comparison into ``folder``: bicubic or the LR input (its
        pixels repeated), then the model's output; return the two paths."""
        folder = Path(folder)
        before_path, after_path = folder / f"before_{before}.jpg", folder / "after.jpg"
        before_path.write_bytes(self.lr_nearest if before == "lr" else self.bicubic)
        after_path.write_bytes(self.sr)
        return str(before_path), str(after_path)
