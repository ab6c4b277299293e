"""Each engine of rtsr.engines on the shipped RTSRN x2 and x3, side by side in one run.

For each model, every engine this device runs is built, checked against FP32 eager on the
check image (dB), and timed on the same input as the baseline: eager FP32 on a CPU, eager
FP16 on CUDA (the challenge's rule). Times are medians of ``--repeat`` passes after
``--warmup``; the ratio is to the baseline measured in the same run.

    python -m bench.bench_engines [--repeat 5] [--warmup 2] [--size H W] [--emulated]

The default input is the app's one-pass size on a CPU (540x960) and the challenge's on CUDA
(1080p for x2, 720p for x3). On a CPU without native bf16, torch's bf16 engines are
emulated and many times slower than FP32 (``--emulated`` times them anyway), and OpenVINO
bf16 would compute f32: both are listed as not run, with the reason. The first line names
the CPU's flags, which decide the kernels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.host import host_lines
from rtsr.constants import TARGET_SIZE
from rtsr.devices import device_name, native_bf16, resolve_device
from rtsr.engines import DEVICE_ENGINES, EngineError, EngineSpec, openvino_available, openvino_bf16
from rtsr.models import load_model
from rtsr.runtime import build_engines, lr_size, protocol_input, time_forward
from rtsr.submissions.registry import BUNDLED_REGISTRY

SUBMISSIONS = Path(BUNDLED_REGISTRY).parent


def specs_for(device: torch.device) -> tuple[EngineSpec, list[EngineSpec]]:
    """The baseline and the engines to time beside it on ``device``."""
    if device.type == "cuda":
        others = [EngineSpec(e, "fp16") for e in DEVICE_ENGINES["cuda"] if e != "eager"]
        return EngineSpec("eager", "fp16"), [*others, EngineSpec("eager", "fp32")]
    engines = [e for e in DEVICE_ENGINES["cpu"] if e != "openvino" or openvino_available()]
    others = [EngineSpec(e, p) for p in ("fp32", "bf16") for e in engines if (e, p) != ("eager", "fp32")]
    return EngineSpec("eager", "fp32"), others


def not_native(spec: EngineSpec, device: torch.device) -> str:
    """Why ``spec`` would not compute natively here (empty where it would)."""
    if device.type != "cpu" or spec.precision != "bf16":
        return ""
    if spec.engine == "openvino":
        return "" if openvino_bf16() else "OpenVINO computes no bf16 here (it would run f32)"
    return "" if native_bf16() else "this CPU emulates bf16 in torch (many times slower than FP32)"


def bench(
    scale: int,
    device: torch.device,
    size: tuple[int, int] | None,
    warmup: int,
    repeat: int,
    skip: tuple[str, ...] = (),
    emulated: bool = False,
) -> list[str]:
    """The table of one model: each engine's median time, its ratio to the baseline measured
    in the same run, and its fidelity; ``skip`` names engines left out, and engines that
    would not compute natively (:func:`not_native`) are left out unless ``emulated``."""
    loaded = load_model(SUBMISSIONS / f"rtsrn_x{scale}" / "model.safetensors")
    if size is None:
        size = lr_size(scale, TARGET_SIZE) if device.type == "cuda" else (540, 960)
    baseline, others = specs_for(device)
    x = protocol_input(size, device, "fp32")
    rows = []
    built = build_engines(loaded, [baseline], device)
    for spec in others:
        if spec.engine in skip:
            continue
        why = not_native(spec, device)
        if why and not (emulated and spec.engine != "openvino"):
            rows.append(f"| {spec.label} | — | — | not run: {why} |")
            continue
        try:
            built += build_engines(loaded, [spec], device)
        except EngineError as e:
            rows.append(f"| {spec.label} | — | — | not run: {e} |")
    base_ms = None
    lines = [
        f"rtsrn-x{scale}, input {size[1]}x{size[0]} -> {size[1] * scale}x{size[0] * scale}, {device_name(device)};"
        f" median of {repeat} passes after {warmup}",
        "",
        f"| engine | ms | × {baseline.label} | dB from FP32 eager |",
        "|---|---:|---:|---:|",
    ]
    for b in built:
        stats = time_forward(b.module, x, warmup, repeat, progress=False, desc=b.ran.label)
        base_ms = base_ms or stats.median_ms
        fidelity = "reference" if b.fidelity_db is None else f"{b.fidelity_db:.1f}"
        label = b.ran.label if b.ran == b.asked else f"{b.ran.label} ({b.asked.precision} asked)"
        lines.append(f"| {label} | {stats.median_ms:.1f} | {stats.median_ms / base_ms:.2f} | {fidelity} |")
    return lines + rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="LR input size (default: see above)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--emulated", action="store_true", help="also time torch bf16 where the CPU emulates it")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print("\n".join(host_lines()))
    size = tuple(args.size) if args.size else None
    for scale in (2, 3):
        print()
        print("\n".join(bench(scale, device, size, args.warmup, args.repeat, emulated=args.emulated)))


if __name__ == "__main__":
    main()
