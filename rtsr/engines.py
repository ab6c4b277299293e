"""Engines: the ways to run a model on a device, the fastest faithful one chosen per model.

An engine turns a model (``(1, 3, H, W)`` on [0, 1] in, ``(1, 3, sH, sW)`` out) into a module
that takes the same FP32 input on the device and returns the output in whatever float type it
computes in. The engines:

* ``eager``: the model as written, weights and input cast to the precision; the challenge's
  runtime rule (FP16 on CUDA) and the faithful reference (FP32).
* ``channels-last``: the same with NHWC tensors, which oneDNN and cuDNN convolve faster.
* ``openvino``: the model converted by OpenVINO (Intel's CPU inference runtime) with dynamic
  height and width, compiled in f32 or bf16 (CPU only).
* ``cuda-graph``: the eager FP16 model captured once per input shape as a CUDA graph and
  replayed, which removes the per-kernel launch cost (CUDA only).
* ``compile``: ``torch.compile`` (Inductor).

:func:`choose_engine` picks, for serving, the first of :func:`serving_candidates` whose output
on a natural image is within :data:`MIN_FIDELITY_DB` of the model's FP32 eager output, and
says why it passed over the others. The challenge's runtime figure is always eager
(``rtsr.runtime``); the others are timed beside it, labelled.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from rtsr.devices import DTYPES, Precision
from rtsr.errors import DeviceError, first_line
from rtsr.metrics import psnr
from rtsr.models import PaddedModel

logger = logging.getLogger(__name__)

Engine = Literal["eager", "channels-last", "openvino", "cuda-graph", "compile"]
ENGINES: tuple[str, ...] = get_args(Engine)
#: The engines each device type can run.
DEVICE_ENGINES: dict[str, tuple[Engine, ...]] = {
    "cpu": ("eager", "channels-last", "openvino", "compile"),
    "cuda": ("eager", "channels-last", "cuda-graph", "compile"),
}
#: The least PSNR, in dB, of a fast engine's output against the FP32 eager output on the
#: check image for it to serve. FP16 and bfloat16 runs of the shipped RTSRN reach 55-63 dB;
#: 45 dB is an error no viewer sees, and far above what a model broken by the precision gives.
MIN_FIDELITY_DB = 45.0
#: A natural image the fast engines are checked on: a 112x96 crop of Set5's butterfly, whose
#: sharp coloured edges are where reduced precision shows first.
CHECK_IMAGE = Path(__file__).parent / "data" / "fidelity.png"
#: CUDA graphs kept per model, one per input shape, least recently used dropped first.
MAX_CUDA_GRAPHS = 4


class EngineError(DeviceError):
    """An engine this device or model cannot run (one line)."""


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), where bf16
    convolutions run about twice as fast as FP32; elsewhere they are emulated and slower."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class EngineSpec:
    """An engine in a precision, e.g. OpenVINO in bf16."""

    engine: Engine
    precision: Precision

    @property
    def label(self) -> str:
        """E.g. ``"openvino bf16"``."""
        return f"{self.engine} {self.precision}"

    @classmethod
    def parse(cls, text: str) -> EngineSpec:
        """``"openvino-bf16"`` or ``"openvino bf16"`` -> the spec.

        Raises:
            EngineError: an unknown engine or precision.
        """
        engine, _, precision = text.replace(" ", "-").rpartition("-")
        if engine not in ENGINES or precision not in DTYPES:
            raise EngineError(f"unknown engine {text!r} (an engine of {', '.join(ENGINES)}, then -fp32/-fp16/-bf16)")
        return cls(engine, precision)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EngineChoice:
    """The engine a model is served with, and why."""

    spec: EngineSpec
    #: PSNR of its output against the FP32 eager output on the check image, dB (the lowest of
    #: the sizes checked); None for FP32 eager itself, the reference.
    fidelity_db: float | None
    #: One line for each faster engine passed over, saying why.
    passed_over: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.spec.label

    def describe(self) -> str:
        """One line for logs and pages, e.g. ``"openvino bf16 (56.2 dB from FP32)"``."""
        fidelity = fidelity_text(self.fidelity_db)
        why = f"; passed over: {'; '.join(self.passed_over)}" if self.passed_over else ""
        return f"{self.label} ({fidelity}){why}"

    @classmethod
    def from_dict(cls, data: Any) -> EngineChoice:
        """The choice :meth:`as_dict` wrote, checked field by field (it may come from a
        process that ran a submission's code); texts are cut to 300 characters, 8 at most.

        Raises:
            ValueError: not such an object.
        """
        if not isinstance(data, dict):
            raise ValueError("an engine that is not an object")
        engine, precision, db, over = (data.get(k) for k in ("engine", "precision", "fidelity_db", "passed_over"))
        if engine not in ENGINES or precision not in DTYPES:
            raise ValueError(f"an unknown engine {str(engine)[:40]!r} {str(precision)[:10]!r}")
        if not (db is None or (isinstance(db, int | float) and not isinstance(db, bool))):
            raise ValueError("a fidelity that is not a number")
        if not (isinstance(over, list) and all(isinstance(o, str) for o in over)):
            raise ValueError("passed_over that is not a list of texts")
        return cls(EngineSpec(engine, precision), None if db is None else float(db), tuple(o[:300] for o in over[:8]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.spec.engine,
            "precision": self.spec.precision,
            "fidelity_db": self.fidelity_db,
            "passed_over": list(self.passed_over),
        }


def fidelity_text(db: float | None) -> str:
    """A fidelity as people read it: ``"56.2 dB from FP32"``, ``"identical to FP32"`` (the
    same 8-bit output), or ``"the FP32 reference"`` for None."""
    if db is None:
        return "the FP32 reference"
    return "identical to FP32" if db == math.inf else f"{db:.1f} dB from FP32"


class _Cast(nn.Module):
    """Casts the FP32 input to the model's precision and memory layout."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.inner, self.dtype, self.channels_last = inner, dtype, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.inner(x)


class _OpenVINO(nn.Module):
    """A model compiled by OpenVINO for the CPU: FP32 NCHW tensors in, FP32 out."""

    def __init__(self, module: nn.Module, precision: Precision, example: torch.Tensor) -> None:
        super().__init__()
        import openvino as ov

        hint = {"fp32": "f32", "bf16": "bf16"}.get(precision)
        if hint is None:
            raise EngineError(f"openvino runs in fp32 or bf16 on the CPU, not {precision}")
        with torch.no_grad(), warnings.catch_warnings():
            # the converter traces the model, and the tracer warns of every Python value it
            # freezes; the fidelity check on two sizes is what catches a trace that froze one
            warnings.simplefilter("ignore")
            converted = ov.convert_model(module, example_input=example, input=[ov.PartialShape([1, 3, -1, -1])])
        self.compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            result = self.compiled(x.float().numpy(force=True))
        except RuntimeError as e:
            # OpenVINO's first lines name its source files; the cause is further down
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            short = next((line for line in lines if _ALLOCATION.search(line)), None)
            if short is not None:  # worded as the sandbox and Python word it
                raise MemoryError(f"OpenVINO: cannot allocate memory ({short[:200]})") from None
            raise RuntimeError(f"OpenVINO: {lines[-1] if lines else e.__class__.__name__}") from None
        return torch.from_numpy(np.asarray(result[0]))


#: How OpenVINO's CPU plugin words a failed allocation ("Failed to allocate N bytes", "can't
#: alloc", std::bad_alloc).
_ALLOCATION = re.compile(r"alloc|out of memory", re.IGNORECASE)


class _CudaGraphs(nn.Module):
    """The model captured as a CUDA graph per input shape and replayed into static buffers.

    The output tensor is the graph's own buffer, overwritten by the next call of the same
    shape; callers convert it before calling again (as :func:`rtsr.inference.upscale` does).
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.graphs: OrderedDict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = (
            OrderedDict()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in self.graphs:
            static_in = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
                for _ in range(2):
                    self.inner(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.inner(static_in)
            self.graphs[key] = (graph, static_in, static_out)
            while len(self.graphs) > MAX_CUDA_GRAPHS:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out


def build_engine(
    module: nn.Module, device: torch.device, spec: EngineSpec, example_size: tuple[int, int] = (64, 64)
) -> nn.Module:
    """``module`` run by ``spec`` on ``device``: a module in eval mode taking an FP32
    ``(1, 3, H, W)`` tensor on the device. ``module`` itself is left as it was.

    A :class:`~rtsr.models.PaddedModel` keeps its padding in torch around the engine, so that
    engines that trace the model see only sizes it accepts.

    Raises:
        EngineError: the engine does not run on this device or in this precision, its package
            is missing, or the model does not convert (one line).
    """
    if spec.engine not in DEVICE_ENGINES[device.type]:
        raise EngineError(
            f"{spec.engine} does not run on {device.type} (there: {', '.join(DEVICE_ENGINES[device.type])})"
        )
    if spec.precision == "fp16" and device.type == "cpu":
        raise EngineError("fp16 needs a CUDA device (the CPU only emulates it)")
    if isinstance(module, PaddedModel):
        m = module.multiple
        size = (-(-example_size[0] // m) * m, -(-example_size[1] // m) * m)
        inner = build_engine(module.inner, device, spec, size)
        return PaddedModel(inner, module.scale, module.multiple).eval()
    dtype = DTYPES[spec.precision]
    try:
        if spec.engine == "openvino":
            if not openvino_available():
                raise EngineError("openvino is not installed (pip install openvino)")
            return _OpenVINO(_copy(module).float().eval(), spec.precision, torch.rand(1, 3, *example_size)).eval()
        moved = _copy(module).to(device=device, dtype=dtype).eval()
        if spec.engine in ("channels-last", "cuda-graph", "compile"):
            moved = moved.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if spec.engine == "cuda-graph":
            return _Cast(_CudaGraphs(moved), dtype, channels_last=True).eval()
        if spec.engine == "compile":
            # Dynamo keeps at most 8 compilations per code object, and every engine of one model
            # class shares its forward's code (each size and dtype is one): beyond that it runs
            # eager without a word. Each compiled engine starts from a fresh cache; one built
            # before recompiles on its next call.
            torch._dynamo.reset()
            return _Cast(torch.compile(moved), dtype, channels_last=True).eval()  # type: ignore[arg-type]
        return _Cast(moved, dtype, channels_last=spec.engine == "channels-last").eval()
    except EngineError:
        raise
    except Exception as e:  # the model's code, or a converter that does not take it
        raise EngineError(f"{spec.label} failed to build: {e.__class__.__name__}: {first_line(e)}") from None


def _copy(module: nn.Module) -> nn.Module:
    """A copy to cast and reformat, so that the caller's module keeps its FP32 weights."""
    return copy.deepcopy(module)


def serving_candidates(device: torch.device, supports_half: bool = True) -> list[EngineSpec]:
    """The engines to try for serving on ``device``, fastest first (``bench/bench_engines.py``
    measures the order), ending with the faithful one that always serves.

    On a CPU with native bfloat16: OpenVINO bf16, torch bf16 channels-last, then the FP32
    ones; without it, bf16 is emulated and slower, so OpenVINO f32 leads. On CUDA: FP16
    channels-last, then FP32 (for a model that says it does not support half precision, FP32
    only). CUDA graphs and ``torch.compile`` pay only for shapes served again and again, not
    for uploads of every size: ``rtsr runtime --engine`` times them.
    """
    specs: list[EngineSpec] = []
    if device.type == "cuda":
        if supports_half:
            specs += [EngineSpec("channels-last", "fp16"), EngineSpec("eager", "fp16")]
        return [*specs, EngineSpec("channels-last", "fp32"), EngineSpec("eager", "fp32")]
    if native_bf16():
        if openvino_available():
            specs.append(EngineSpec("openvino", "bf16"))
        specs.append(EngineSpec("channels-last", "bf16"))
    if openvino_available():
        specs.append(EngineSpec("openvino", "fp32"))
    return [*specs, EngineSpec("channels-last", "fp32"), EngineSpec("eager", "fp32")]


@functools.cache
def check_images() -> tuple[np.ndarray, ...]:
    """The natural images engines are checked on: :data:`CHECK_IMAGE` (112x96) and a crop of
    it of another, odd size (73x61), so that an engine that kept the first size it saw fails.
    Read once per process (every candidate of every model is checked on them); read-only."""
    from rtsr.images import read_rgb

    image = read_rgb(CHECK_IMAGE)
    image.flags.writeable = False
    return image, image[5:66, 9:82]


def fidelity(engine: nn.Module, reference: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> float:
    """The lowest PSNR (dB) of ``engine``'s output against ``reference``'s over
    :func:`check_images`; ``-inf`` where the engine's output is not finite or of the wrong shape.

    Raises:
        Exception: whatever the engine raises on the check images.
    """
    from rtsr.inference import to_tensor  # rtsr.inference builds on this module

    worst = math.inf
    with torch.inference_mode():
        for image in check_images():
            x = to_tensor(image, device, "fp32")
            want = reference(x).float()
            got = engine(x).float()
            if got.shape != want.shape or not torch.isfinite(got).all():
                return -math.inf
            # the outputs as an image shows them: clamped to [0, 1], the peak
            worst = min(worst, psnr(got.clamp(0, 1), want.clamp(0, 1), peak=1.0))
    return worst


def choose_engine(
    module: nn.Module,
    device: torch.device,
    supports_half: bool = True,
    candidates: list[EngineSpec] | None = None,
) -> tuple[nn.Module, EngineChoice]:
    """The fastest engine of ``candidates`` (default :func:`serving_candidates`) whose output on
    :func:`check_images` is at least :data:`MIN_FIDELITY_DB` from ``module``'s FP32 eager
    output, built; and the choice, with why faster ones were passed over (also logged).

    FP32 eager is the reference and the last resort: it is returned when nothing else passes,
    and for a model without parameters.

    Raises:
        Exception: the model fails in FP32 eager itself on the check images.
    """
    reference = build_engine(module, device, EngineSpec("eager", "fp32"))
    if not any(True for _ in module.parameters()):
        # no weights (bicubic): nothing for a lower precision to speed up, and bicubic is the
        # reference every gain is measured against, so it stays exactly itself
        return reference, EngineChoice(EngineSpec("eager", "fp32"), None)
    passed_over: list[str] = []
    for spec in candidates if candidates is not None else serving_candidates(device, supports_half):
        if spec == EngineSpec("eager", "fp32"):
            break
        try:
            engine = build_engine(module, device, spec)
            db = fidelity(engine, reference, device)
        except Exception as e:  # the engine does not take this model
            passed_over.append(f"{spec.label}: {first_line(e) or e.__class__.__name__}")
            continue
        if db >= MIN_FIDELITY_DB:
            choice = EngineChoice(spec, db, tuple(passed_over))
            logger.info("engine: %s", choice.describe())
            return engine, choice
        shown = "non-finite or misshapen output" if db == -math.inf else fidelity_text(db)
        passed_over.append(f"{spec.label}: {shown}, below {MIN_FIDELITY_DB:g} dB")
    choice = EngineChoice(EngineSpec("eager", "fp32"), None, tuple(passed_over))
    if passed_over:
        logger.warning("engine: %s", choice.describe())
    return reference, choice


#: What ``--engine`` takes: an engine, or ``auto`` for the fastest faithful one.
ENGINE_CHOICES: tuple[str, ...] = ("auto", *ENGINES)


def resolve_engine(
    module: nn.Module,
    device: torch.device,
    engine: str | None,
    precision: str | None = None,
    supports_half: bool = True,
) -> tuple[nn.Module, EngineChoice]:
    """``module`` built for ``device`` as asked, and the choice made.

    ``engine`` ``"auto"`` (or None) chooses with :func:`choose_engine`, among the engines in
    ``precision`` when one is given. Any other engine runs in ``precision`` (default FP16 on
    CUDA, FP32 on the CPU) as asked: its fidelity is measured and reported, not enforced.

    Raises:
        EngineError: the engine does not run here or does not take the model, or an unknown
            engine or precision.
    """
    from rtsr.devices import resolve_precision

    if engine in (None, "auto"):
        candidates = serving_candidates(device, supports_half)
        if precision is not None:
            wanted = resolve_precision(device, precision)
            candidates = [s for s in candidates if s.precision == wanted]
            if EngineSpec("eager", wanted) not in candidates:  # the last resort in that precision
                candidates.append(EngineSpec("eager", wanted))
        return choose_engine(module, device, supports_half, candidates)
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r} (use {', '.join(ENGINE_CHOICES)})")
    spec = EngineSpec(engine, resolve_precision(device, precision))  # type: ignore[arg-type]
    built = build_engine(module, device, spec)
    if spec == EngineSpec("eager", "fp32"):
        return built, EngineChoice(spec, None)
    try:
        db = fidelity(built, build_engine(module, device, EngineSpec("eager", "fp32")), device)
    except Exception as e:  # the model fails on the check images in this engine
        raise EngineError(f"{spec.label} fails on the check image: {first_line(e) or e.__class__.__name__}") from None
    return built, EngineChoice(spec, db)
