"""The challenge's runtime protocol, FLOPs and parameters, with bicubic as a yardstick.

``runtime_demo.py`` of NTIRE 2023 RTSR feeds a random input of the LR size of a 4K target,
runs 50 untimed warm-up passes, then times 244 passes one by one between CUDA events and
reports their mean in milliseconds. We report the mean (the official figure) and its
spread, and time bicubic upscaling the same way in the same run: the ratio of the two can be
compared across GPUs, which absolute milliseconds cannot. On the CPU passes are timed with a
wall clock (``time.perf_counter``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from rtsr.constants import TARGET_SIZE, TIMED_PASSES, WARMUP_PASSES
from rtsr.devices import DTYPES, Precision, device_name
from rtsr.engines import EngineSpec, build_engine, fidelity, ran_as, substitution_reason
from rtsr.errors import InputError
from rtsr.inference import prepare
from rtsr.models import Bicubic, LoadedModel, ModelDescriptor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeStats:
    """Per-pass times in milliseconds over ``passes`` timed passes."""

    mean_ms: float
    median_ms: float
    p95_ms: float
    std_ms: float
    min_ms: float
    passes: int

    @classmethod
    def from_times(cls, times_ms: list[float]) -> RuntimeStats:
        arr = np.asarray(times_ms, dtype=np.float64)
        return cls(
            mean_ms=float(arr.mean()),
            median_ms=float(np.median(arr)),
            p95_ms=float(np.percentile(arr, 95)),
            std_ms=float(statistics.pstdev(times_ms)) if len(times_ms) > 1 else 0.0,
            min_ms=float(arr.min()),
            passes=len(times_ms),
        )


def time_passes(
    module: nn.Module,
    x: torch.Tensor,
    warmup: int = WARMUP_PASSES,
    repeat: int = TIMED_PASSES,
    progress: bool = True,
    desc: str = "timing",
) -> list[float]:
    """Time ``module(x)``: ``warmup`` untimed passes, then ``repeat`` passes timed one by one.

    On CUDA each pass is timed between CUDA events and the device is synchronised after each;
    on the CPU with ``time.perf_counter``. Returns the timed passes' times in ms, in order.
    """
    if repeat < 1 or warmup < 0:
        raise InputError(f"need repeat >= 1 and warmup >= 0, got {repeat} and {warmup}")
    cuda = x.device.type == "cuda"
    times: list[float] = []
    with torch.inference_mode():
        for _ in tqdm(range(warmup), desc=f"{desc} warm-up", leave=False, disable=not progress):
            module(x)
        if cuda:
            torch.cuda.synchronize(x.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in tqdm(range(repeat), desc=desc, leave=False, disable=not progress):
            if cuda:
                start.record()
                module(x)
                end.record()
                torch.cuda.synchronize(x.device)
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                module(x)
                times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_forward(
    module: nn.Module,
    x: torch.Tensor,
    warmup: int = WARMUP_PASSES,
    repeat: int = TIMED_PASSES,
    progress: bool = True,
    desc: str = "timing",
) -> RuntimeStats:
    """:func:`time_passes`, summarised."""
    return RuntimeStats.from_times(time_passes(module, x, warmup, repeat, progress, desc))


def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass as ``torch.utils.flop_counter`` counts them.

    It counts 2 FLOPs per multiply-add of convolutions and matrix products and nothing for
    element-wise ops or interpolation (bicubic counts 0). The pass runs on the meta device,
    so no memory is allocated and nothing is computed.
    """
    meta_module = copy.deepcopy(module).to(device="meta", dtype=torch.float32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_module(torch.empty(input_shape, device="meta"))
    return int(counter.get_total_flops())


def lr_size(scale: int, target_size: tuple[int, int] = TARGET_SIZE) -> tuple[int, int]:
    """The LR input size ``(H, W)`` whose x``scale`` output is ``target_size``.

    Raises:
        InputError: a side of ``target_size`` does not divide by ``scale``.
    """
    h, w = target_size
    if h <= 0 or w <= 0 or h % scale or w % scale:
        raise InputError(f"crop size {h}x{w} must be positive and divisible by the scale {scale}")
    return h // scale, w // scale


@dataclass(frozen=True)
class EngineTiming:
    """The protocol run on one engine beside the challenge's eager run (same input, same
    passes, same run): not the challenge's figure, which is always eager.

    Labelled by the precision the engine computed in, which OpenVINO may choose: asked for
    bf16 on a CPU without it, it computes f32, and is timed and named as such.
    """

    engine: str
    #: The precision it computed in.
    precision: Precision
    stats: RuntimeStats
    #: PSNR of its output against the model's FP32 eager output on the check image, dB
    #: (:func:`rtsr.engines.fidelity`); None for FP32 eager itself.
    fidelity_db: float | None
    #: Mean time over the eager run's mean (below 1: faster).
    relative_to_eager: float
    #: The precision asked for (``rtsr runtime --engine openvino-bf16``).
    asked_precision: Precision
    #: Why :attr:`precision` is not :attr:`asked_precision`; empty where they agree.
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclass(frozen=True)
class RuntimeReport:
    """One run of the protocol: a model and bicubic, timed the same way on one device."""

    model: dict[str, Any]
    device: str
    device_type: str
    precision: Precision
    timer: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    warmup: int
    runtime: RuntimeStats
    bicubic: RuntimeStats
    flops: int
    params: int
    #: The challenge's engine, which :attr:`runtime` times: always eager.
    engine: str = "eager"
    #: Other engines timed beside it (``rtsr runtime --engine``).
    engines: tuple[EngineTiming, ...] = ()
    #: How the trusted side vouched for :attr:`runtime` when the model ran in a process it
    #: does not trust (the worker: :meth:`rtsr.submissions.sandboxed_models.SandboxedModels.runtime`);
    #: None where the timing process is trusted (``rtsr runtime``).
    check: dict[str, Any] | None = None

    @property
    def relative_to_bicubic(self) -> float:
        """The model's mean runtime over bicubic's, measured side by side."""
        return self.runtime.mean_ms / self.bicubic.mean_ms

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relative_to_bicubic": self.relative_to_bicubic}


def protocol_input(size: tuple[int, int], device: torch.device, precision: Precision) -> torch.Tensor:
    """The protocol's input: uniform noise on [0, 1] of ``size`` (H, W), batch 1, seeded (the
    same tensor in every process that times), in ``precision`` on ``device``."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand((1, 3, *size), generator=generator).to(device=device, dtype=DTYPES[precision])


#: One timed pass's output is committed to by a probe: the output's 8-bit levels at one pixel
#: in four (a phase drawn for the pass), times random signs, summed in this many blocks. The
#: worker recomputes the same probe from the model's untimed output for the same input
#: (:func:`probe_agreement_db`). Sampling one pixel in four reads a quarter of a 4K output
#: (about 6 M values; a millisecond or less of GPU memory traffic, by its bandwidth: not
#: measured yet); the model still has to compute every position of every layer but the last.
PROBE_STRIDE = 2
PROBE_BLOCKS = 1024


def pass_input(seed: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A fresh input for one timed pass: ``(1, 3, H, W)`` uint8 levels drawn from ``seed`` on
    ``device``, the same in every process of the same torch on the same kind of device (the
    worker draws it again to check the pass)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, 256, (1, 3, *size), generator=generator, device=device, dtype=torch.uint8)


def probe_weights(seed: int, output_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The random signs (+1/-1, FP32) a run's probes weigh the sampled levels with, drawn from
    the run's ``seed`` for an output of ``output_size`` (H, W)."""
    h, w = (-(-side // PROBE_STRIDE) for side in output_size)
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (3, h, w), generator=generator).float().mul_(2.0).sub_(1.0)
    return signs.to(device)


def _phase(seed: int) -> tuple[int, int]:
    return seed % PROBE_STRIDE, (seed // PROBE_STRIDE) % PROBE_STRIDE


def output_probe(output: torch.Tensor, weights: torch.Tensor, seed: int) -> tuple[list[float], int]:
    """The probe of one pass's ``(1, 3, H, W)`` output on [0, 1]: its 8-bit levels (clamped
    and rounded as :func:`rtsr.tensors.to_image` does, non-finite values as 0) at the pass's
    phase, weighed by ``weights`` (:func:`probe_weights`) and summed in
    :data:`PROBE_BLOCKS` blocks; with the number of levels sampled. The sums are whole
    numbers below 2^24, exact in FP32."""
    dy, dx = _phase(seed)
    # sampled first: the conversion then costs a quarter of the output's
    sample = output[0, :, dy::PROBE_STRIDE, dx::PROBE_STRIDE].float().nan_to_num(0.0).clamp(0.0, 1.0)
    levels = sample.mul_(255.0).round_()
    weighed = (levels * weights[:, : levels.shape[1], : levels.shape[2]]).flatten()
    blocks = min(PROBE_BLOCKS, weighed.numel())
    padded = torch.nn.functional.pad(weighed, (0, (-weighed.numel()) % blocks))
    return padded.view(blocks, -1).sum(1).tolist(), weighed.numel()


def probe_agreement_db(probe: list[float], reference: list[float], sampled: int) -> float:
    """How close the output behind ``probe`` is to the one behind ``reference`` (same input,
    phase and weights), as a PSNR in dB over the sampled levels.

    With random signs, each block's difference squared has the expectation of the squared
    level differences it sums, so their total over ``sampled`` estimates the MSE between the
    two outputs (the estimate's spread over 1024 blocks is about 0.2 dB); identical outputs
    give inf.
    """
    if len(probe) != len(reference):
        return -math.inf
    squared = sum((a - b) ** 2 for a, b in zip(probe, reference, strict=True))
    if squared == 0:
        return math.inf
    return 10 * math.log10(255.0**2 * sampled / squared)


def report_beside_bicubic(
    model: ModelDescriptor,
    stats: RuntimeStats,
    flops: int,
    x: torch.Tensor,
    precision: Precision,
    warmup: int = WARMUP_PASSES,
    repeat: int = TIMED_PASSES,
    progress: bool = True,
) -> RuntimeReport:
    """The report of a model timed on ``x`` (``stats``, here or in another process): bicubic
    is timed the same way on the same input, here."""
    device, (h, w), scale = x.device, tuple(x.shape[-2:]), model.scale
    bicubic = time_forward(prepare(Bicubic(scale), device, precision), x, warmup, repeat, progress, "bicubic")
    return RuntimeReport(
        model=model.as_dict(),
        device=device_name(device),
        device_type=device.type,
        precision=precision,
        timer="cuda-event" if device.type == "cuda" else "wall-clock",
        input_size=(h, w),
        output_size=(h * scale, w * scale),
        warmup=warmup,
        runtime=stats,
        bicubic=bicubic,
        flops=flops,
        params=model.params,
    )


@dataclass(frozen=True)
class BuiltEngine:
    """An engine built for timing: what was asked, what it computes in, and how faithful it is."""

    asked: EngineSpec
    #: The engine and precision it computes in (:func:`rtsr.engines.ran_as`).
    ran: EngineSpec
    module: nn.Module
    #: Its fidelity to FP32 eager on the check image, dB; None for FP32 eager itself.
    fidelity_db: float | None


def build_engines(loaded: LoadedModel, specs: list[EngineSpec], device: torch.device) -> list[BuiltEngine]:
    """Each engine of ``specs`` built for ``loaded``, with the precision it computes in and
    its fidelity to FP32 eager on the check image: done before any timing, so that an engine
    that cannot run here fails at once.

    Raises:
        EngineError: an engine does not run here or does not take the model.
    """
    if not specs:  # the plain protocol: no reference to build
        return []
    faithful = build_engine(loaded.module, device, EngineSpec("eager", "fp32"))
    built = []
    for spec in specs:
        module = build_engine(loaded.module, device, spec)
        ran = ran_as(module, spec)
        db = None if ran == EngineSpec("eager", "fp32") else fidelity(module, faithful, device)
        if ran != spec:  # the report says so beside its figure
            logger.info("%s computes as %s here: %s", spec.label, ran.label, substitution_reason(spec, ran))
        built.append(BuiltEngine(spec, ran, module, db))
    return built


def time_engines(
    built: list[BuiltEngine],
    x: torch.Tensor,
    eager: RuntimeStats,
    warmup: int = WARMUP_PASSES,
    repeat: int = TIMED_PASSES,
    progress: bool = True,
) -> tuple[EngineTiming, ...]:
    """Time each engine of :func:`build_engines` as :func:`time_passes` does, on ``x`` (FP32
    input; each engine casts it as it runs), beside the ``eager`` run's statistics; each is
    labelled by the precision it computes in."""
    timings = []
    for b in built:
        stats = time_forward(b.module, x.float(), warmup, repeat, progress, desc=b.ran.label)
        timings.append(
            EngineTiming(
                b.ran.engine,
                b.ran.precision,
                stats,
                b.fidelity_db,
                stats.mean_ms / eager.mean_ms,
                asked_precision=b.asked.precision,
                note=substitution_reason(b.asked, b.ran),
            )
        )
    return tuple(timings)


def measure_runtime(
    loaded: LoadedModel,
    device: torch.device,
    precision: Precision,
    target_size: tuple[int, int] = TARGET_SIZE,
    warmup: int = WARMUP_PASSES,
    repeat: int = TIMED_PASSES,
    progress: bool = True,
    engines: list[EngineSpec] | None = None,
) -> RuntimeReport:
    """Run the challenge's runtime protocol on a model and, the same way, on bicubic; then on
    each of ``engines`` (:func:`time_engines`), labelled and beside it.

    The input is :func:`protocol_input` at the LR size of ``target_size`` (4K by default),
    in ``precision`` (weights and input both), on ``device``; the model runs eager, the
    challenge's rule.

    Raises:
        EngineError: one of ``engines`` does not run here or does not take the model.
    """
    h, w = lr_size(loaded.descriptor.scale, target_size)
    built = build_engines(loaded, engines or [], device)
    flops = count_flops(loaded.module, (1, 3, h, w))
    x = protocol_input((h, w), device, precision)
    module = prepare(loaded.module, device, precision)
    name = loaded.descriptor.id
    logger.info("timing %s on %s in %s, input %dx%d", name, device, precision, h, w)
    stats = time_forward(module, x, warmup, repeat, progress, desc=name)
    report = report_beside_bicubic(loaded.descriptor, stats, flops, x, precision, warmup, repeat, progress)
    if built:
        report = dataclasses.replace(report, engines=time_engines(built, x, stats, warmup, repeat, progress))
    return report
