"""Evaluate a model on a set: upscale, metrics, the bicubic reference, runtime, score.

The result is one JSON document, the file the leaderboard reads. Its schema is versioned
(``schema_version``), named and checked in :mod:`rtsr.results.schema`; docs/cli.md
documents every field. Version 1:

``schema`` ("rtsr.evaluate"), ``schema_version`` (1), ``created`` (UTC, ISO 8601),
``rtsr_version``, ``torch_version``, ``model`` (the descriptor: id, name, scale, track,
params, flops, source, ...), ``dataset`` (name, lr_dir, gt_dir, images, crop_border),
``device``, ``device_type``, ``precision``, ``metrics`` and ``bicubic`` (each ``mean`` and
``images``: name, psnr_rgb, ssim_rgb, psnr_y, ssim_y), ``runtime`` (timer, input_size,
output_size, warmup, runtime and bicubic statistics in ms, relative_to_bicubic),
``psnr_gain`` (dB over bicubic, RGB) and ``score``. Optional: ``cpu`` (the CPU that computed
the outputs and metrics: model, kernel-relevant flags, oneDNN's ISA cap or null; FP32
convolutions round differently on AVX2 and AVX-512), ``engine`` (the engine that made the
outputs: engine, the precision it computed in, fidelity_db to FP32 eager, passed_over, and
``asked`` where it computed in another precision than asked), and in ``runtime``, ``engine``
(always "eager", the challenge's rule) and ``engines`` (other engines timed beside it: engine,
the precision it computed in, asked_precision, note, stats, fidelity_db, relative_to_eager).
PSNR of identical images is written as ``Infinity``, which Python's json and pandas read back.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import rtsr
from rtsr.constants import TARGET_SIZE, TIMED_PASSES, WARMUP_PASSES
from rtsr.devices import Precision, cpu_record
from rtsr.engines import EngineSpec, resolve_engine
from rtsr.errors import InputError, ModelError
from rtsr.images import read_rgb
from rtsr.inference import prepare, upscale
from rtsr.metrics import ImageMetrics, mean_metrics, measure_against, pair_by_stem
from rtsr.models import Bicubic, LoadedModel, ModelDescriptor
from rtsr.results.schema import SCHEMA, SCHEMA_VERSION
from rtsr.runtime import RuntimeReport, measure_runtime
from rtsr.scoring import score

logger = logging.getLogger(__name__)

_RUNTIME_KEYS = (
    "timer",
    "input_size",
    "output_size",
    "warmup",
    "runtime",
    "bicubic",
    "relative_to_bicubic",
    "engine",
    "engines",
    "check",
)


def _summary(per_image: dict[str, ImageMetrics]) -> dict[str, Any]:
    return {
        "mean": mean_metrics(list(per_image.values())).as_dict(),
        "images": [{"name": name, **m.as_dict()} for name, m in per_image.items()],
    }


#: Upscales one ``(H, W, 3)`` uint8 LR image to its ``(sH, sW, 3)`` uint8 output.
Upscaler = Callable[[np.ndarray], np.ndarray]


def evaluate(
    loaded: LoadedModel,
    lr_dir: str | Path,
    gt_dir: str | Path,
    device: torch.device,
    precision: Precision,
    crop_border: int = 0,
    dataset: str | None = None,
    target_size: tuple[int, int] = TARGET_SIZE,
    warmup: int = WARMUP_PASSES,
    repeat: int = TIMED_PASSES,
    progress: bool = True,
    engines: list[EngineSpec] | None = None,
) -> dict[str, Any]:
    """Evaluate a model on the LR/GT pairs of two folders; return the results document.

    The model upscales every LR image eager in ``precision`` on ``device`` (the document's
    ``engine`` says so, with its fidelity to FP32), bicubic in FP32 (the reference PSNR must
    not depend on the model's precision); both are measured against the GT of the same stem;
    then the runtime protocol runs at ``target_size`` (eager, the challenge's rule; each of
    ``engines`` is timed beside it, in ``runtime.engines``), and the score follows from the
    mean PSNRs and the eager mean runtime. ``dataset`` names the set in the document
    (default: the GT folder's name).

    Raises:
        InputError: unpaired or unreadable images, or a GT that is not ``scale`` times its LR.
        ModelError: the model's output has the wrong size or is not finite.
    """
    scale = loaded.descriptor.scale
    module, choice = resolve_engine(loaded.module, device, "eager", precision, loaded.descriptor.supports_half)

    def upscaler(lr: np.ndarray) -> np.ndarray:
        return upscale(module, lr, scale, device, "fp32")  # the engine casts its FP32 input

    def runtime() -> RuntimeReport:
        return measure_runtime(loaded, device, precision, target_size, warmup, repeat, progress, engines)

    document = evaluate_with(
        loaded.descriptor, upscaler, runtime, lr_dir, gt_dir, device, precision, crop_border, dataset, progress
    )
    return {**document, "engine": choice.as_dict()}


def evaluate_with(
    descriptor: ModelDescriptor,
    upscaler: Upscaler,
    runtime: Callable[[], RuntimeReport],
    lr_dir: str | Path,
    gt_dir: str | Path,
    device: torch.device,
    precision: Precision,
    crop_border: int = 0,
    dataset: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`evaluate` for a model that runs elsewhere: ``upscaler`` gives its outputs (e.g.
    from a sandboxed process that never sees the GT) and ``runtime`` its runtime report;
    metrics and the bicubic reference are computed here, on ``device``.

    Raises:
        InputError: unpaired or unreadable images, or a GT that is not ``scale`` times its LR.
        ModelError: the model's output has the wrong size or is not finite.
    """
    scale = descriptor.scale
    pairs = pair_by_stem(lr_dir, gt_dir, sr_label="LR")
    # The reference is a property of the set, not of the model's precision: always FP32.
    bicubic = prepare(Bicubic(scale), device, "fp32")
    model_metrics: dict[str, ImageMetrics] = {}
    bicubic_metrics: dict[str, ImageMetrics] = {}
    for lr_path, gt_path in tqdm(pairs, desc=f"evaluate {descriptor.id}", unit="img", disable=not progress):
        lr, gt = read_rgb(lr_path), read_rgb(gt_path)
        if gt.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
            raise InputError(
                f"{gt_path}: GT is {gt.shape[0]}x{gt.shape[1]}, expected x{scale} of its LR"
                f" ({lr.shape[0]}x{lr.shape[1]})"
            )
        try:
            sr = upscaler(lr)
        except ModelError as e:
            raise ModelError(f"{lr_path.name}: {e}") from None
        if sr.shape != gt.shape or sr.dtype != np.uint8:
            raise ModelError(f"{lr_path.name}: the model's output is {sr.shape} {sr.dtype}, expected {gt.shape} uint8")
        bicubic_sr = upscale(bicubic, lr, scale, device, "fp32")
        model_metrics[gt_path.stem], bicubic_metrics[gt_path.stem] = measure_against(
            [sr, bicubic_sr], gt, crop_border, device
        )
    report = runtime()
    metrics, reference = _summary(model_metrics), _summary(bicubic_metrics)
    psnr, bicubic_psnr = metrics["mean"]["psnr_rgb"], reference["mean"]["psnr_rgb"]
    # The report's device, precision, FLOPs and params sit at the top level and in "model".
    # ("check" only where a worker vouched for timings taken in a process it does not trust)
    runtime_fields = {k: v for k, v in report.as_dict().items() if k in _RUNTIME_KEYS and v is not None}
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "rtsr_version": rtsr.__version__,
        "torch_version": torch.__version__,
        # the size the runtime report counted: a worker's, from the model's exported graph
        "model": {**descriptor.as_dict(), "params": report.params, "flops": report.flops},
        "dataset": {
            "name": dataset or Path(gt_dir).name,
            "lr_dir": str(lr_dir),
            "gt_dir": str(gt_dir),
            "images": len(pairs),
            "crop_border": crop_border,
        },
        "device": report.device,
        "device_type": report.device_type,
        "cpu": cpu_record(),
        "precision": precision,
        "metrics": metrics,
        "bicubic": reference,
        "runtime": runtime_fields,
        "psnr_gain": psnr - bicubic_psnr,
        "score": score(psnr, report.runtime.mean_ms, bicubic_psnr),
    }
