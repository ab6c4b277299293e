"""The metric specification, named once and without torch: what each measured quantity of a
result is, where an ``rtsr.evaluate`` document holds it (a dotted path of
:data:`rtsr.results.schema.FIELDS`, optionally converted), how to print it and which way is
better.

:data:`METRICS` is the one list every view reads: the leaderboard's frame and its CSV, the
app's table and the plot's hover, the CLI's tables (``rtsr metrics``, ``evaluate``,
``score``) and the model card's ``model-index``; the official table's CSV names its columns
by the same keys. A new metric is one entry in :data:`METRICS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from rtsr.results.schema import Evaluation


@dataclass(frozen=True)
class Metric:
    """One measured quantity of a row: the single specification every view reads."""

    #: The key in the frame, the CSV and the official table; the model card's metric type.
    key: str
    #: Short name; :attr:`label` adds the unit.
    name: str
    #: ``dB``, ``ms``, ``M``, ...; empty for a ratio or a plain number.
    unit: str
    #: One sentence: what it is and how it is measured.
    description: str
    #: Format spec of a value for people (``".4f"``, ``"+.4f"``).
    fmt: str
    higher_is_better: bool
    #: Where an ``rtsr.evaluate`` document holds it: a dotted path of the schema's FIELDS.
    field: str
    #: From the document's value to this metric's (e.g. parameters to millions); None: as is.
    convert: Callable[[float], float] | None = None
    #: Whether the model card's ``model-index`` reports it.
    on_card: bool = False

    @property
    def label(self) -> str:
        """The header: ``"PSNR RGB (dB)"``, or the name alone without a unit."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def decimals(self) -> int:
        """Digits after the point that :attr:`fmt` shows (the page's table rounds to them)."""
        found = re.search(r"\.(\d+)", self.fmt)
        return int(found.group(1)) if found else 0

    @property
    def per_image(self) -> bool:
        """Measured on each image against its ground truth, and averaged: the document holds
        it per image and as a mean, for the model and for bicubic alike."""
        return self.field.startswith("metrics.mean.")

    @property
    def reference_field(self) -> str | None:
        """Where the document holds bicubic's value of a per-image metric; None otherwise."""
        return "bicubic." + self.field.removeprefix("metrics.") if self.per_image else None

    def read(self, evaluation: Evaluation) -> float:
        """This metric's value in a checked document (NaN where the document says unknown)."""
        value = evaluation.number(self.field)
        return self.convert(value) if self.convert else value

    def text(self, value: float) -> str:
        """``value`` for people: by :attr:`fmt`; unknown (NaN) as an em dash, infinite (the
        PSNR of identical images) as ``inf``."""
        number = float(value)
        if math.isnan(number):
            return "—"
        if math.isinf(number):
            return "inf" if number > 0 else "-inf"
        return format(number, self.fmt)


def _millions(count: float) -> float:
    return count / 1e6


def _billions(count: float) -> float:
    return count / 1e9


def _per_second(runtime_ms: float) -> float:
    return 1000.0 / runtime_ms if runtime_ms > 0 else math.nan


#: The metrics, in display order. A new metric is one entry here (and, if the document does
#: not hold it yet, a field in rtsr.results.schema.FIELDS): the frame, the CSV, the page's
#: table and hover, the CLI and the model card all take it from here.
METRICS: Final[tuple[Metric, ...]] = (
    Metric(
        "score", "Score", "", "2^(PSNR gain) * 2 / (0.1 * sqrt(runtime ms)); 0 for bicubic. Device-specific.",
        fmt=".2f", higher_is_better=True, field="score", on_card=True,
    ),
    Metric(
        "psnr_rgb", "PSNR RGB", "dB", "Mean PSNR on RGB, 8-bit, no border crop.",
        fmt=".4f", higher_is_better=True, field="metrics.mean.psnr_rgb", on_card=True,
    ),
    Metric(
        "ssim_rgb", "SSIM RGB", "", "Mean SSIM on RGB.",
        fmt=".4f", higher_is_better=True, field="metrics.mean.ssim_rgb", on_card=True,
    ),
    Metric(
        "psnr_y", "PSNR Y", "dB", "Mean PSNR on BT.601 luma (official: the challenge's own Y).",
        fmt=".4f", higher_is_better=True, field="metrics.mean.psnr_y", on_card=True,
    ),
    Metric(
        "ssim_y", "SSIM Y", "", "Mean SSIM on luma; unknown (empty) for the official table.",
        fmt=".4f", higher_is_better=True, field="metrics.mean.ssim_y", on_card=True,
    ),
    Metric(
        "psnr_gain", "PSNR gain", "dB", "PSNR RGB over bicubic's on the same set.",
        fmt="+.4f", higher_is_better=True, field="psnr_gain", on_card=True,
    ),
    Metric(
        "runtime_ms", "Runtime", "ms", "Mean time for one 4K output, milliseconds.",
        fmt=".2f", higher_is_better=False, field="runtime.runtime.mean_ms", on_card=True,
    ),
    Metric(
        "relative_runtime", "× bicubic", "", "Runtime over bicubic's on the same device; compares across devices.",
        fmt=".2f", higher_is_better=False, field="runtime.relative_to_bicubic", on_card=True,
    ),
    Metric(
        "fps", "FPS", "", "Frames per second at this runtime: 1000 / runtime ms.",
        fmt=".1f", higher_is_better=True, field="runtime.runtime.mean_ms", convert=_per_second,
    ),
    Metric(
        "params_m", "Params", "M", "Parameters, millions.",
        fmt=".4f", higher_is_better=False, field="model.params", convert=_millions,
    ),
    Metric(
        "flops_g", "FLOPs", "G", "FLOPs for one 4K output, billions; counters differ between sources.",
        fmt=".2f", higher_is_better=False, field="model.flops", convert=_billions,
    ),
)  # fmt: skip

#: The metrics measured per image (PSNR and SSIM on RGB and Y), in display order.
IMAGE_METRICS: Final = tuple(m for m in METRICS if m.per_image)


def metric(key: str) -> Metric:
    """The metric of ``key``.

    Raises:
        KeyError: no metric has this key.
    """
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(f"no metric {key!r}; known: {', '.join(m.key for m in METRICS)}")
