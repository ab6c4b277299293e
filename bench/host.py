"""The lines every benchmark prints first: what measured it. Figures from one CPU say little
of another (an AVX2-only host runs FP32 convolutions at half the vector width and has no
native bf16), so the CPU's flags stand beside every figure."""

from __future__ import annotations

import platform

import torch

from rtsr.devices import cpu_flags, native_bf16, onednn_isa_cap
from rtsr.engines import openvino_available, openvino_bf16


def host_lines() -> list[str]:
    """torch, Python and threads; then the CPU's kernel-relevant flags, oneDNN's cap where one
    is set, and where bf16 is native (torch's oneDNN, OpenVINO)."""
    cap = onednn_isa_cap()
    capped = f"; oneDNN capped at {cap} (ONEDNN_MAX_CPU_ISA)" if cap else ""
    openvino = ("yes" if openvino_bf16() else "no") if openvino_available() else "not installed"
    return [
        f"torch {torch.__version__}, Python {platform.python_version()}, {torch.get_num_threads()} CPU threads",
        f"CPU flags: {' '.join(cpu_flags()) or 'unknown'}{capped}",
        f"native bf16: torch {'yes' if native_bf16() else 'no'}, OpenVINO {openvino}",
    ]
