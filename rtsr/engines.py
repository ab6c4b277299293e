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
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rtsr.devices import DTYPES, Precision, native_bf16, onednn_cap_allows_bf16, onednn_isa_cap
from rtsr.errors import DeviceError, first_line
from rtsr.metrics import psnr
from rtsr.models import PaddedModel

logger = logging.getLogger(__name__)

#: An engine's name: one of :data:`ENGINES`.
Engine = str
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


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def openvino_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin says this CPU computes (``OPTIMIZATION_CAPABILITIES``, e.g.
    ``FP32``, ``BF16``, ``INT8``); empty without OpenVINO."""
    if not openvino_available():
        return ()
    import openvino as ov

    return tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def openvino_bf16() -> bool:
    """Whether OpenVINO computes bf16 on this CPU: it says so, and no cap on oneDNN
    (``ONEDNN_MAX_CPU_ISA=AVX2``) forbids it. Where it does not (an AVX2-only CPU), a model
    compiled with the bf16 hint quietly runs in f32."""
    return "BF16" in openvino_capabilities() and onednn_cap_allows_bf16()


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

    #: The engine and the precision it computes in (which OpenVINO may have chosen).
    spec: EngineSpec
    #: PSNR of its output against the FP32 eager output on the check image, dB (the lowest of
    #: the sizes checked); None for FP32 eager itself, the reference.
    fidelity_db: float | None
    #: One line for each faster engine passed over, saying why.
    passed_over: tuple[str, ...] = field(default_factory=tuple)
    #: The engine that was asked for, where it computes in another precision (OpenVINO bf16
    #: on a CPU without bf16 runs f32); None where :attr:`spec` is what was asked.
    asked: EngineSpec | None = None

    @property
    def label(self) -> str:
        return self.spec.label

    def describe(self) -> str:
        """One line for logs and pages, e.g. ``"openvino bf16 (56.2 dB from FP32)"``, or
        ``"openvino fp32 (identical to FP32); openvino bf16 asked: OpenVINO has no bf16 on
        this CPU ..."``."""
        fidelity = fidelity_text(self.fidelity_db)
        asked = f"; {self.asked.label} asked: {substitution_reason(self.asked, self.spec)}" if self.asked else ""
        why = f"; passed over: {'; '.join(self.passed_over)}" if self.passed_over else ""
        return f"{self.label} ({fidelity}){asked}{why}"

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
        spec = _checked_spec(engine, precision)
        if not (db is None or (isinstance(db, int | float) and not isinstance(db, bool))):
            raise ValueError("a fidelity that is not a number")
        if not (isinstance(over, list) and all(isinstance(o, str) for o in over)):
            raise ValueError("passed_over that is not a list of texts")
        asked = data.get("asked")
        if asked is not None:
            if not isinstance(asked, dict):
                raise ValueError("an asked engine that is not an object")
            asked = _checked_spec(asked.get("engine"), asked.get("precision"))
        passed = tuple(o[:300] for o in over[:8])
        return cls(spec, None if db is None else float(db), passed, None if asked == spec else asked)

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.spec.engine,
            "precision": self.spec.precision,
            "fidelity_db": self.fidelity_db,
            "passed_over": list(self.passed_over),
            "asked": None if self.asked is None else {"engine": self.asked.engine, "precision": self.asked.precision},
        }


def _checked_spec(engine: Any, precision: Any) -> EngineSpec:
    if engine not in ENGINES or precision not in DTYPES:
        raise ValueError(f"an unknown engine {str(engine)[:40]!r} {str(precision)[:10]!r}")
    return EngineSpec(engine, precision)


def ran_as(engine: nn.Module, asked: EngineSpec) -> EngineSpec:
    """The engine and precision that ``engine``, built by :func:`build_engine` for ``asked``,
    computes in: ``asked``, except where OpenVINO compiled the model in another precision
    (the bf16 hint on a CPU without bf16 gives f32). Torch engines compute in the dtype they
    were cast to, natively or emulated."""
    inner = engine.inner if isinstance(engine, PaddedModel) else engine
    if isinstance(inner, _OpenVINO):
        return EngineSpec("openvino", inner.precision)
    return asked


def substitution_reason(asked: EngineSpec, ran: EngineSpec) -> str:
    """Why an engine built for ``asked`` computes as ``ran``, one line (empty where it does
    as asked), e.g. ``"OpenVINO has no bf16 on this CPU (it offers FP32, INT8), so it ran
    fp32"``."""
    if asked == ran:
        return ""
    if asked.engine == "openvino" and asked.precision == "bf16" and not openvino_bf16():
        if "BF16" in openvino_capabilities():
            cap = onednn_isa_cap()
            return f"oneDNN is capped at {cap} (ONEDNN_MAX_CPU_ISA), which has no bf16, so it ran {ran.precision}"
        offers = ", ".join(openvino_capabilities()) or "nothing it names"
        return f"OpenVINO has no bf16 on this CPU (it offers {offers}), so it ran {ran.precision}"
    return f"{asked.engine} compiled this model in {ran.precision}"


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
    """A model compiled by OpenVINO for the CPU: FP32 NCHW tensors in, FP32 out.

    :attr:`precision` is what the compiled model computes in, read from its runtime graph:
    OpenVINO takes the bf16 hint as a wish and compiles f32 where the CPU has no bf16.
    """

    def __init__(self, module: nn.Module, precision: Precision, example: torch.Tensor) -> None:
        super().__init__()
        import openvino as ov

        if precision not in ("fp32", "bf16"):
            raise EngineError(f"openvino runs in fp32 or bf16 on the CPU, not {precision}")
        # f32 where OpenVINO cannot compute bf16: what it does itself on a CPU without bf16, and
        # under a oneDNN cap it would compile bf16 layers that then fail to run
        hint = "bf16" if precision == "bf16" and openvino_bf16() else "f32"
        with torch.no_grad(), warnings.catch_warnings():
            # the converter traces the model, and the tracer warns of every Python value it
            # freezes; the fidelity check on two sizes is what catches a trace that froze one
            warnings.simplefilter("ignore")
            converted = ov.convert_model(module, example_input=example, input=[ov.PartialShape([1, 3, -1, -1])])
        self.compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        self.precision: Precision = compiled_precision(self.compiled)

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


#: OpenVINO's element types as this project names precisions, narrowest first.
_OV_PRECISIONS: dict[str, Precision] = {"bf16": "bf16", "f16": "fp16", "f32": "fp32"}
#: Runtime layers that only carry a model's tensors in and out.
_OV_ENDS = frozenset({"Input", "Output", "Const"})


def compiled_precision(compiled: Any) -> Precision:
    """The precision an OpenVINO compiled model computes in: the narrowest float type any of
    its runtime layers runs in (their ``runtimePrecision``), so that a model compiled with
    the bf16 hint on a CPU without bf16 reads ``"fp32"``, as it computes. The compiled
    model's ``INFERENCE_PRECISION_HINT`` is not enough: it says bf16 for a graph that the
    plugin kept in f32."""
    found = set()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in _OV_ENDS:
            continue
        if "runtimePrecision" in info:
            found.add(info["runtimePrecision"].astype(str))
    return next((ours for theirs, ours in _OV_PRECISIONS.items() if theirs in found), "fp32")


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
    try:
        return engine_kind(spec.engine).build(module, device, spec.precision, example_size).eval()
    except EngineError:
        raise
    except Exception as e:  # the model's code, or a converter that does not take it
        raise EngineError(f"{spec.label} failed to build: {e.__class__.__name__}: {first_line(e)}") from None


def _moved(module: nn.Module, device: torch.device, precision: Precision, channels_last: bool) -> nn.Module:
    """A copy of ``module`` on ``device`` in ``precision``, channels-last where asked."""
    moved = _copy(module).to(device=device, dtype=DTYPES[precision]).eval()
    return moved.to(memory_format=torch.channels_last) if channels_last else moved  # type: ignore[call-overload]


def _eager(module: nn.Module, device: torch.device, precision: Precision, _: tuple[int, int]) -> nn.Module:
    return _Cast(_moved(module, device, precision, False), DTYPES[precision], channels_last=False)


def _channels_last(module: nn.Module, device: torch.device, precision: Precision, _: tuple[int, int]) -> nn.Module:
    return _Cast(_moved(module, device, precision, True), DTYPES[precision], channels_last=True)


def _openvino(module: nn.Module, device: torch.device, precision: Precision, size: tuple[int, int]) -> nn.Module:
    if not openvino_available():
        raise EngineError("openvino is not installed (pip install openvino)")
    return _OpenVINO(_copy(module).float().eval(), precision, torch.rand(1, 3, *size))


def _cuda_graph(module: nn.Module, device: torch.device, precision: Precision, _: tuple[int, int]) -> nn.Module:
    return _Cast(_CudaGraphs(_moved(module, device, precision, True)), DTYPES[precision], channels_last=True)


def _compile(module: nn.Module, device: torch.device, precision: Precision, _: tuple[int, int]) -> nn.Module:
    # Dynamo keeps at most 8 compilations per code object, and every engine of one model
    # class shares its forward's code (each size and dtype is one): beyond that it runs
    # eager without a word. Each compiled engine starts from a fresh cache; one built
    # before recompiles on its next call.
    torch._dynamo.reset()
    compiled = torch.compile(_moved(module, device, precision, True))
    return _Cast(compiled, DTYPES[precision], channels_last=True)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EngineKind:
    """One engine: its name (``--engine``), the device types it runs on, what it is (the
    CLI's help), and how a model is built into it (``build(module, device, precision,
    example_size)``, a module taking an FP32 ``(1, 3, H, W)`` tensor)."""

    name: str
    devices: tuple[str, ...]
    help: str
    build: Callable[[nn.Module, torch.device, Precision, tuple[int, int]], nn.Module]


#: The engines, one entry each: a new engine is one entry here. The CLI's choices and help,
#: :data:`ENGINES` and :data:`DEVICE_ENGINES` are read from it.
ENGINE_KINDS: tuple[EngineKind, ...] = (
    EngineKind("eager", ("cpu", "cuda"), "the model as written", _eager),
    EngineKind("channels-last", ("cpu", "cuda"), "torch with NHWC tensors", _channels_last),
    EngineKind("openvino", ("cpu",), "Intel's OpenVINO, converted from torch", _openvino),
    EngineKind("cuda-graph", ("cuda",), "torch replayed from a CUDA graph per input shape", _cuda_graph),
    EngineKind("compile", ("cpu", "cuda"), "torch.compile (Inductor)", _compile),
)
ENGINES: tuple[str, ...] = tuple(k.name for k in ENGINE_KINDS)
#: The engines each device type can run.
DEVICE_ENGINES: dict[str, tuple[str, ...]] = {
    device: tuple(k.name for k in ENGINE_KINDS if device in k.devices) for device in ("cpu", "cuda")
}


def engine_kind(name: str) -> EngineKind:
    """The engine ``name``.

    Raises:
        EngineError: no engine has this name.
    """
    for kind in ENGINE_KINDS:
        if kind.name == name:
            return kind
    raise EngineError(f"unknown engine {name!r} (one of {', '.join(ENGINES)})")


def engines_help() -> str:
    """The engines for a help text: ``eager`` (the model as written), ...; where each runs."""
    return "; ".join(f"{k.name} ({k.help}; {'/'.join(k.devices)})" for k in ENGINE_KINDS)


def _copy(module: nn.Module) -> nn.Module:
    """A copy to cast and reformat, so that the caller's module keeps its FP32 weights."""
    return copy.deepcopy(module)


def serving_candidates(device: torch.device, supports_half: bool = True) -> list[EngineSpec]:
    """The engines to try for serving on ``device``, fastest first (``bench/bench_engines.py``
    measures the order), ending with the faithful one that always serves.

    On a CPU, bf16 leads where it is native, each engine asked on its own terms: OpenVINO
    bf16 where OpenVINO says it computes bf16 (:func:`openvino_bf16`), torch bf16
    channels-last where oneDNN does (:func:`rtsr.devices.native_bf16`); elsewhere bf16 is
    emulated and slower than FP32 (or, in OpenVINO, silently f32), so OpenVINO f32 leads. On
    CUDA: FP16 channels-last, then FP32 (for a model that says it does not support half
    precision, FP32 only). CUDA graphs and ``torch.compile`` pay only for shapes served
    again and again, not for uploads of every size: ``rtsr runtime --engine`` times them.
    """
    specs: list[EngineSpec] = []
    if device.type == "cuda":
        if supports_half:
            specs += [EngineSpec("channels-last", "fp16"), EngineSpec("eager", "fp16")]
        return [*specs, EngineSpec("channels-last", "fp32"), EngineSpec("eager", "fp32")]
    if openvino_bf16():
        specs.append(EngineSpec("openvino", "bf16"))
    if native_bf16():
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
    from rtsr.tensors import to_tensor

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
            ran = ran_as(engine, spec)
            if ran != spec:  # served under its own name or not at all, and it comes later if wanted
                passed_over.append(f"{spec.label}: {substitution_reason(spec, ran)}")
                continue
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
    spec = EngineSpec(engine, resolve_precision(device, precision))
    built = build_engine(module, device, spec)
    if spec == EngineSpec("eager", "fp32"):
        return built, EngineChoice(spec, None)
    ran = ran_as(built, spec)
    try:
        db = fidelity(built, build_engine(module, device, EngineSpec("eager", "fp32")), device)
    except Exception as e:  # the model fails on the check images in this engine
        raise EngineError(f"{ran.label} fails on the check image: {first_line(e) or e.__class__.__name__}") from None
    choice = EngineChoice(ran, db, asked=None if ran == spec else spec)
    if choice.asked is not None:
        logger.warning("engine: %s", choice.describe())
    return built, choice


#: The input, (H, W), on which :func:`emulated_bf16_warning` times bf16 against FP32.
_COST_PROBE_SIZE = (64, 64)


def emulated_bf16_warning(module: nn.Module, device: torch.device, name: str) -> str | None:
    """One line to say before running ``module`` in torch bf16 on ``device`` where the CPU
    emulates bf16: that it does, and what it costs on this model here (one eager pass each
    in bf16 and FP32 on a 64x64 input, after one untimed pass). None on CUDA, on a CPU with
    native bf16 (:func:`rtsr.devices.native_bf16`), and for a model without weights.
    """
    if device.type != "cpu" or native_bf16() or not any(True for _ in module.parameters()):
        return None
    line = "this CPU has no native bf16 (no avx512_bf16 or amx_bf16 that oneDNN may use), so torch emulates it"
    advice = "; --precision fp32 is exact and, on such a CPU, faster"
    try:
        seconds: dict[Precision, float] = {}
        x = torch.rand(1, 3, *_COST_PROBE_SIZE)
        precisions: tuple[Precision, ...] = ("fp32", "bf16")
        for precision in precisions:
            engine = build_engine(module, device, EngineSpec("eager", precision))
            with torch.inference_mode():
                engine(x)
                started = time.perf_counter()
                engine(x)
                seconds[precision] = time.perf_counter() - started
        ratio = seconds["bf16"] / seconds["fp32"]
        cost = f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"
        line += f": {name} took {cost} the time of FP32 here (one 64x64 pass each)"
        advice = "; --precision fp32 is faster and exact" if ratio > 1 else "; --precision fp32 is exact"
    except Exception:  # the model fails at this size: say what is known without the figure
        logger.debug("bf16 cost probe failed", exc_info=True)
    return line + advice
