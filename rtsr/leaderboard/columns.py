"""The leaderboard's columns, named once: the metrics, one specification each, and the
columns that say what a row is.

:data:`METRICS` is the one list every view reads: the leaderboard's frame and its CSV, the
app's table and the plot's hover, the CLI's tables (``rtsr metrics``, ``evaluate``,
``score``) and the model card's ``model-index``. A metric says where its value comes from in
an ``rtsr.evaluate`` document (a dotted path of :data:`rtsr.leaderboard.schema.FIELDS`,
optionally converted), how to print it and which way is better; the official table's CSV
names its columns by the same keys. A new metric is one line in :data:`METRICS`.

:data:`COLUMNS` is the frame's columns in display order: the row's identity (track, method,
team, source, test set, device, precision), the metrics, then the submission's license and
link and two keys for code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pandas as pd

from rtsr.leaderboard.schema import Evaluation

ColumnKind = Literal["str", "int", "float", "bool", "url"]


@dataclass(frozen=True)
class Column:
    """One column of the leaderboard: its key in the frame (and the CSV's header), its
    header in the page and its type. The page's table shows the columns of
    :data:`TABLE_KEYS`; the CSV has all."""

    key: str
    label: str
    kind: ColumnKind
    #: One sentence for the header's tooltip and the README.
    description: str

    @property
    def shown(self) -> bool:
        """Whether the page's table has this column (:data:`TABLE_KEYS`)."""
        return self.key in TABLE_KEYS


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

    @property
    def column(self) -> Column:
        """The metric as a column of the frame."""
        return Column(self.key, self.label, "float", self.description)

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
#: not hold it yet, a field in rtsr.leaderboard.schema.FIELDS): the frame, the CSV, the page's
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

#: The columns, in display order: the one source of truth for the frame, the CSV, the app's
#: table and choices, and the plots.
COLUMNS: Final[tuple[Column, ...]] = (
    Column("track", "Track", "int", "Challenge track: 1 is x2 (1080p -> 4K), 2 is x3 (720p -> 4K)."),
    Column("scale", "Scale", "int", "Upscaling factor."),
    Column("method", "Method", "str", "Team (official table) or model name (rtsr evaluate)."),
    Column("team", "Team", "str", "The submitting team of an evaluated submission; empty for the others."),
    Column("source", "Source", "str", "The leaderboard source the row comes from (the app's Sources)."),
    Column("dataset", "Dataset", "str", "Test set the metrics are averaged over."),
    Column("device", "Device", "str", "Device the runtime was measured on."),
    Column("precision", "Precision", "str", "Numeric precision of the timed model (fp16, bf16, fp32)."),
    Column(
        "engine",
        "Engine",
        "str",
        "How the runtime was timed: eager, the challenge's rule. Faster engines (rtsr runtime --engine) are"
        " timed beside it, never ranked here.",
    ),
    Column(
        "device_type",
        "Device type",
        "str",
        "cuda (a GPU, timed with CUDA events) or cpu (wall clock); the plot draws FPS bands against GPU rows.",
    ),
    *(m.column for m in METRICS),
    Column("license", "License", "str", "The license of an evaluated submission; empty for the others."),
    Column("link", "Link", "url", "An evaluated submission on the Hub, at the commit measured; empty for the others."),
    Column("is_reference", "Reference", "bool", "True for bicubic, the reference every gain is measured against."),
    Column(
        "ranked",
        "Ranked",
        "bool",
        "False for a row timed at another output size than the challenge's 4K: its milliseconds are not per 4K"
        " output, so it has no score and no place on the Pareto front, and the page shows it only when asked.",
    ),
    Column("model_id", "Model id", "str", "Registered model id (empty for the official table)."),
    Column(
        "document",
        "Document",
        "str",
        "The row's results document, relative to its source's folder; empty for the official table.",
    ),
)

#: The page's table, left to right: the method, then what people compare it by (quality,
#: speed, size), then the rest of the metrics, then where and how it was measured.
TABLE_KEYS: Final[tuple[str, ...]] = (
    "method",
    "score",
    "psnr_rgb",
    "psnr_gain",
    "runtime_ms",
    "relative_runtime",
    "fps",
    "params_m",
    "flops_g",
    "ssim_rgb",
    "psnr_y",
    "ssim_y",
    "team",
    "device",
    "precision",
    "engine",
    "source",
    "license",
    "link",
)

_METRIC_KEYS: Final = frozenset(m.key for m in METRICS)

_DTYPES: Final[dict[ColumnKind, str]] = {"str": "str", "url": "str", "int": "int64", "float": "float64", "bool": "bool"}


def cell_text(key: str, value: Any) -> str:
    """``value`` of the column ``key`` as the page prints it: a metric by its format (unknown
    as an em dash), anything else as text (empty for unknown)."""
    if key in _METRIC_KEYS:
        return metric(key).text(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def column(key: str) -> Column:
    """The column of ``key``.

    Raises:
        KeyError: no column has this key.
    """
    for c in COLUMNS:
        if c.key == key:
            return c
    raise KeyError(f"no leaderboard column {key!r}; known: {', '.join(c.key for c in COLUMNS)}")


def metric(key: str) -> Metric:
    """The metric of ``key``.

    Raises:
        KeyError: no metric has this key.
    """
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(f"no metric {key!r}; known: {', '.join(m.key for m in METRICS)}")


def frame_of(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A leaderboard frame of ``records`` (dicts keyed by column): exactly the columns of
    :data:`COLUMNS`, in order, each of its kind's dtype."""
    frame = pd.DataFrame.from_records(list(records), columns=[c.key for c in COLUMNS])
    return retyped(frame)


def retyped(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each column of :data:`COLUMNS` in its kind's dtype."""
    return frame.astype({c.key: _DTYPES[c.kind] for c in COLUMNS})


def empty_leaderboard() -> pd.DataFrame:
    """A leaderboard with no rows and all the columns."""
    return frame_of([])
