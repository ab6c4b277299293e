"""The leaderboard's columns, named once: the columns that say what a row is, and a column
for each metric of the specification (:data:`rtsr.results.metrics.METRICS`).

:data:`COLUMNS` is the frame's columns in display order: the row's identity (track, method,
team, source, test set, device, precision), the metrics, then the submission's license and
link and two keys for code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pandas as pd

from rtsr.results.metrics import METRICS, metric

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
    *(Column(m.key, m.label, "float", m.description) for m in METRICS),
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
