"""rtsr: the NTIRE 2023 Real-Time Super-Resolution challenge as a library and a CLI.

The names below are what a notebook needs; each is imported on first use, so ``import rtsr``
stays cheap (torch loads with the first of them)::

    import rtsr
    gt = rtsr.read_rgb("baby.png")
    lr = rtsr.degrade(gt, 2)                            # bicubic x2, then JPEG q90
    loaded = rtsr.load("rtsrn-x2")                      # built-in, registered, or a checkpoint
    device = rtsr.resolve_device(None)                  # CUDA when there is one
    precision = rtsr.resolve_precision(device, None)    # FP16 on CUDA, FP32 on a CPU
    sr = rtsr.upscale(rtsr.prepare(loaded.module, device, precision), lr, 2, device, precision)
    print(rtsr.measure(sr, gt).psnr_rgb)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module it lives in.
_PUBLIC = {
    "read_rgb": "rtsr.images",
    "write_image": "rtsr.images",
    "degrade": "rtsr.degradation",
    "prepare_data": "rtsr.degradation",
    "psnr": "rtsr.metrics",
    "ssim": "rtsr.metrics",
    "measure": "rtsr.metrics",
    "score": "rtsr.scoring",
    "load": "rtsr.loading",
    "resolve_device": "rtsr.devices",
    "resolve_precision": "rtsr.devices",
    "prepare": "rtsr.inference",
    "upscale": "rtsr.inference",
    "measure_runtime": "rtsr.runtime",
    "evaluate": "rtsr.evaluation",
}

__all__ = [
    "__version__",
    "degrade",
    "evaluate",
    "load",
    "measure",
    "measure_runtime",
    "prepare",
    "prepare_data",
    "psnr",
    "read_rgb",
    "resolve_device",
    "resolve_precision",
    "score",
    "ssim",
    "upscale",
    "write_image",
]

if TYPE_CHECKING:
    from rtsr.degradation import degrade, prepare_data
    from rtsr.devices import resolve_device, resolve_precision
    from rtsr.evaluation import evaluate
    from rtsr.images import read_rgb, write_image
    from rtsr.inference import prepare, upscale
    from rtsr.loading import load
    from rtsr.metrics import measure, psnr, ssim
    from rtsr.runtime import measure_runtime
    from rtsr.scoring import score


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'rtsr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
