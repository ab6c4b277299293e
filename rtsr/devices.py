"""Choosing where and in which precision to run: devices, dtypes, their names, and what the
CPU computes natively."""

from __future__ import annotations

import functools
import os
import platform
import re
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


#: The flags of ``/proc/cpuinfo`` that decide which kernels oneDNN, OpenVINO and ATen run:
#: vector widths, fused multiply-add and the low-precision dot products.
_KERNEL_FLAGS = re.compile(r"sse4_[12]|avx.*|fma|f16c|amx.*")


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU's kernel-relevant flags from ``/proc/cpuinfo``, sorted (e.g. ``avx2``,
    ``avx512f``, ``avx512_bf16``); empty where the file is missing. FP32 convolutions
    accumulate in another order on AVX2 than on AVX-512, so a results document names them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return tuple(sorted(f for f in line.partition(":")[2].split() if _KERNEL_FLAGS.fullmatch(f)))


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN (torch's CPU convolutions) is capped at by
    ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``), e.g. ``"AVX2"``; None
    when uncapped. A cap makes this CPU compute as an older one does."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or None


#: oneDNN's instruction sets (values of ``ONEDNN_MAX_CPU_ISA``) without bf16 arithmetic: a cap
#: at one of them keeps every oneDNN in the process, torch's and OpenVINO's, from bf16.
_ISAS_WITHOUT_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})


def onednn_cap_allows_bf16() -> bool:
    """Whether oneDNN's cap (:func:`onednn_isa_cap`), if any, leaves it bf16 instructions."""
    cap = onednn_isa_cap()
    return cap is None or cap.upper() not in _ISAS_WITHOUT_BF16


def cpu_record() -> dict[str, object]:
    """What a results document records of the CPU that computed it: its model, its
    :func:`cpu_flags` and oneDNN's cap (:func:`onednn_isa_cap`, null when uncapped)."""
    return {"model": _cpu_model(), "flags": list(cpu_flags()), "onednn_max_cpu_isa": onednn_isa_cap()}


@functools.cache
def native_bf16() -> bool:
    """Whether torch computes bfloat16 natively on this CPU: the CPU has AVX512-BF16 or
    AMX-BF16 and oneDNN may use it (``ONEDNN_MAX_CPU_ISA`` can forbid it). Elsewhere torch
    emulates bf16, which an AVX2-only host measured at 8.8x the time of FP32 channels-last
    at 540x960 and 86x eager at 128x128: slower, not faster."""
    flags = cpu_flags()
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    # oneDNN's own answer: false where it may not use AVX-512 (ONEDNN_MAX_CPU_ISA=AVX2 or a
    # CPU without it), which the flags alone do not show; a cap at AVX512_CORE leaves it
    # AVX-512 but not bf16
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and onednn_cap_allows_bf16()


def _cpu_model() -> str:
    """The CPU's model name, e.g. ``"AMD EPYC"``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A human name of the device, e.g. ``"NVIDIA H100 80GB HBM3"`` or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{_cpu_model()} ({torch.get_num_threads()} threads)"
