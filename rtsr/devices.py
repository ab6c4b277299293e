"""Choosing where and in which precision to run: devices, dtypes and their names."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Literal, get_args

import torch

from rtsr.errors import DeviceError

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """A usable torch device: CUDA when present unless ``device`` names one.

    Raises:
        DeviceError: CUDA asked for on a host without it, or an unknown device string.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r} (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for but this host has no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {device!r} (use cpu or cuda)")
    return dev


def resolve_precision(device: torch.device, precision: str | None) -> Precision:
    """The precision to run in: FP16 on CUDA and FP32 on the CPU unless one is asked for.

    Raises:
        DeviceError: FP16 asked for on the CPU, where torch emulates it (about 40 times
            slower than FP32 on this project's 2-core test host), so timings would mislead.
    """
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise DeviceError("FP16 needs a CUDA device (the CPU only emulates it); use fp32 or bf16 on the CPU")
    return precision  # type: ignore[return-value]


def device_name(device: torch.device) -> str:
    """A human name of the device, e.g. ``"NVIDIA H100 80GB HBM3"`` or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
