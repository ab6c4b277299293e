"""The leaderboard's data: the official NTIRE 2023 table and this tool's results documents,
as one table whose columns are named once, in :data:`COLUMNS`.

Two sources share the table:

* ``NTIRE 2023 (reported)``: ``leaderboard/ntire23_track1_final.csv``, the challenge's Track 1
  final table (x2, 1080p -> 4K), measured by the organizers in FP16 on an NVIDIA RTX 3090 on
  their test set. Kept as reported: its scores are not recomputed, its SSIM on Y is unknown.
* ``rtsr evaluate``: every ``leaderboard/evaluations/*.json``, one ``rtsr evaluate`` document
  (schema ``rtsr.evaluate`` v1) per model and set.

Reference rows (``is_reference``) are bicubic: the official table's ``Bicubic`` row and the
evaluated models whose id is ``bicubic`` or ``bicubic-x<scale>``. Their score is 0.0 in both
sources (the official table leaves it empty): :func:`rtsr.scoring.score` gives 0 for no
gain, and a number rather than NaN keeps the column sortable and plottable.

Runtimes in milliseconds compare only within one device and precision; ``relative_runtime``
(runtime over bicubic's, both timed on the same device for the same set) is the one that
travels across devices. Nothing here runs at import time; the table is read when asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from rtsr.constants import TRACK_SCALES
from rtsr.errors import InputError, first_line
from rtsr.evaluate import SCHEMA, SCHEMA_VERSION

ColumnKind = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    """One column of the leaderboard: its key in the frame, its header and its type."""

    key: str
    label: str
    kind: ColumnKind
    #: One sentence for the header's tooltip and the README.
    description: str


SOURCE_OFFICIAL: Final = "NTIRE 2023 (reported)"
SOURCE_EVALUATED: Final = "rtsr evaluate"
#: The official table's dataset, device and precision, as the challenge reports them.
OFFICIAL_DATASET: Final = "NTIRE 2023 test"
OFFICIAL_DEVICE: Final = "NVIDIA RTX 3090 (reported)"
OFFICIAL_PRECISION: Final = "fp16"
OFFICIAL_TRACK: Final = 1

LEADERBOARD_DIR: Final = Path(__file__).resolve().parents[1] / "leaderboard"
OFFICIAL_CSV: Final = LEADERBOARD_DIR / "ntire23_track1_final.csv"
EVALUATIONS_DIR: Final = LEADERBOARD_DIR / "evaluations"

#: The columns, in display order: the one source of truth for the table, the app's choices
#: and the plots.
COLUMNS: Final[tuple[Column, ...]] = (
    Column("track", "Track", "int", "Challenge track: 1 is x2 (1080p -> 4K), 2 is x3 (720p -> 4K)."),
    Column("scale", "Scale", "int", "Upscaling factor."),
    Column("method", "Method", "str", "Team (official table) or model name (rtsr evaluate)."),
    Column("source", "Source", "str", f"{SOURCE_OFFICIAL!r}: the challenge's final table; {SOURCE_EVALUATED!r}: ours."),
    Column("dataset", "Dataset", "str", "Test set the metrics are averaged over."),
    Column("device", "Device", "str", "Device the runtime was measured on."),
    Column("precision", "Precision", "str", "Numeric precision of the timed model (fp16, bf16, fp32)."),
    Column("score", "Score", "float", "2^(PSNR gain) * 2 / (0.1 * sqrt(runtime ms)); 0 for bicubic. Device-specific."),
    Column("psnr_rgb", "PSNR RGB (dB)", "float", "Mean PSNR on RGB, 8-bit, no border crop."),
    Column("psnr_y", "PSNR Y (dB)", "float", "Mean PSNR on BT.601 luma (official: the challenge's own Y)."),
    Column("ssim_rgb", "SSIM RGB", "float", "Mean SSIM on RGB."),
    Column("ssim_y", "SSIM Y", "float", "Mean SSIM on luma; unknown (empty) for the official table."),
    Column("psnr_gain", "PSNR gain (dB)", "float", "PSNR RGB over bicubic's on the same set."),
    Column("runtime_ms", "Runtime (ms)", "float", "Mean time for one 4K output, milliseconds."),
    Column(
        "relative_runtime", "× bicubic", "float", "Runtime over bicubic's on the same device; compares across devices."
    ),
    Column("fps", "FPS", "float", "Frames per second at this runtime: 1000 / runtime ms."),
    Column("params_m", "Params (M)", "float", "Parameters, millions."),
    Column("flops_g", "FLOPs (G)", "float", "FLOPs for one 4K output, billions; counters differ between sources."),
    Column("is_reference", "Reference", "bool", "True for bicubic, the reference every gain is measured against."),
    Column("model_id", "Model id", "str", "Registered model id (empty for the official table)."),
)

_DTYPES: Final[dict[str, str]] = {"str": "str", "int": "int64", "float": "float64", "bool": "bool"}
_OFFICIAL_FIELDS: Final = ("team", "score", "params_m", "flops_g", "psnr_rgb", "psnr_y", "ssim_rgb", "runtime_ms")
_OFFICIAL_REFERENCE: Final = "Bicubic"


def column(key: str) -> Column:
    """The column of ``key``.

    Raises:
        KeyError: no column has this key.
    """
    for c in COLUMNS:
        if c.key == key:
            return c
    raise KeyError(f"no leaderboard column {key!r}; known: {', '.join(c.key for c in COLUMNS)}")


def _typed(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame with exactly the columns of COLUMNS, in order, each of its kind's dtype."""
    frame = pd.DataFrame.from_records(records, columns=[c.key for c in COLUMNS])
    return frame.astype({c.key: _DTYPES[c.kind] for c in COLUMNS})


def empty_leaderboard() -> pd.DataFrame:
    """A leaderboard with no rows and all the columns."""
    return _typed([])


def load_official(path: str | Path = OFFICIAL_CSV) -> pd.DataFrame:
    """The official Track 1 table (24 teams and the bicubic reference) as leaderboard rows.

    Scores are kept as reported (rounded to 0.01); the reference's empty score becomes 0.0.
    ``psnr_gain`` is each PSNR RGB minus the ``Bicubic`` row's, ``relative_runtime`` each
    runtime over the ``Bicubic`` row's; SSIM on Y is NaN (not reported).

    Raises:
        InputError: the file is missing or unreadable, lacks a column, holds a non-number,
            or has no single ``Bicubic`` row.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype={"team": "str"})
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(f"{path}: cannot read the official table ({first_line(e)})") from None
    missing = [f for f in _OFFICIAL_FIELDS if f not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    numbers: dict[str, np.ndarray] = {}
    for field in _OFFICIAL_FIELDS[1:]:
        try:
            numbers[field] = pd.to_numeric(raw[field], errors="raise").to_numpy(dtype="float64")
        except (ValueError, TypeError) as e:
            raise InputError(f"{path}: column {field} holds a non-number ({first_line(e)})") from None
    teams = raw["team"].fillna("").str.strip()
    is_reference = (teams == _OFFICIAL_REFERENCE).to_numpy()
    if is_reference.sum() != 1:
        raise InputError(f"{path}: expected one {_OFFICIAL_REFERENCE!r} row, found {int(is_reference.sum())}")
    reference = int(np.flatnonzero(is_reference)[0])
    bicubic_psnr, bicubic_ms = numbers["psnr_rgb"][reference], numbers["runtime_ms"][reference]
    records = []
    for i, team in enumerate(teams):
        runtime = numbers["runtime_ms"][i]
        records.append(
            {
                "track": OFFICIAL_TRACK,
                "scale": TRACK_SCALES[OFFICIAL_TRACK],
                "method": team,
                "source": SOURCE_OFFICIAL,
                "dataset": OFFICIAL_DATASET,
                "device": OFFICIAL_DEVICE,
                "precision": OFFICIAL_PRECISION,
                "score": 0.0 if is_reference[i] else numbers["score"][i],
                "psnr_rgb": numbers["psnr_rgb"][i],
                "psnr_y": numbers["psnr_y"][i],
                "ssim_rgb": numbers["ssim_rgb"][i],
                "ssim_y": math.nan,
                "psnr_gain": numbers["psnr_rgb"][i] - bicubic_psnr,
                "runtime_ms": runtime,
                "relative_runtime": runtime / bicubic_ms,
                "fps": 1000.0 / runtime,
                "params_m": numbers["params_m"][i],
                "flops_g": numbers["flops_g"][i],
                "is_reference": bool(is_reference[i]),
                "model_id": "",
            }
        )
    return _typed(records)


def _field(document: dict[str, Any], dotted: str, path: Path) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InputError(f"{path}: not a valid rtsr.evaluate v1 document (no {dotted})")
        value = value[part]
    return value


def _number(document: dict[str, Any], dotted: str, path: Path) -> float:
    value = _field(document, dotted, path)
    # bool is an int to Python, never a measurement to us
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{path}: {dotted} is not a number ({value!r})")
    return float(value)


def _is_bicubic(model_id: str) -> bool:
    # The registry names the reference "bicubic-x2"/"bicubic-x3"; the CLI's built-in is "bicubic".
    return model_id == "bicubic" or model_id.startswith("bicubic-x")


def read_evaluation(path: str | Path) -> dict[str, Any]:
    """One ``rtsr evaluate`` document as one leaderboard row (a dict keyed by column).

    Raises:
        InputError: the file is unreadable, not JSON, not schema ``rtsr.evaluate`` v1, or
            lacks a field the leaderboard needs.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable JSON file ({first_line(e)})") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: not an rtsr.evaluate document (top level is not an object)")
    schema, version = document.get("schema"), document.get("schema_version")
    if schema != SCHEMA or version != SCHEMA_VERSION:
        raise InputError(f"{path}: schema {schema!r} v{version!r}, expected {SCHEMA!r} v{SCHEMA_VERSION}")
    model_id = str(_field(document, "model.id", path))
    runtime = _number(document, "runtime.runtime.mean_ms", path)
    flops = _field(document, "model.flops", path)
    return {
        "track": int(_number(document, "model.track", path)),
        "scale": int(_number(document, "model.scale", path)),
        "method": str(_field(document, "model.name", path)),
        "source": SOURCE_EVALUATED,
        "dataset": str(_field(document, "dataset.name", path)),
        "device": str(_field(document, "device", path)),
        "precision": str(_field(document, "precision", path)),
        "score": _number(document, "score", path),
        "psnr_rgb": _number(document, "metrics.mean.psnr_rgb", path),
        "psnr_y": _number(document, "metrics.mean.psnr_y", path),
        "ssim_rgb": _number(document, "metrics.mean.ssim_rgb", path),
        "ssim_y": _number(document, "metrics.mean.ssim_y", path),
        "psnr_gain": _number(document, "psnr_gain", path),
        "runtime_ms": runtime,
        "relative_runtime": _number(document, "runtime.relative_to_bicubic", path),
        "fps": 1000.0 / runtime if runtime > 0 else math.nan,
        "params_m": _number(document, "model.params", path) / 1e6,
        # A counter that could not run leaves FLOPs unknown rather than zero.
        "flops_g": math.nan if flops is None else _number(document, "model.flops", path) / 1e9,
        "is_reference": _is_bicubic(model_id),
        "model_id": model_id,
    }


def load_evaluations(folder: str | Path = EVALUATIONS_DIR) -> pd.DataFrame:
    """Every ``*.json`` of ``folder`` (sorted by name) as one leaderboard row each; no rows
    when the folder is missing or empty.

    Raises:
        InputError: a file that is not a valid ``rtsr.evaluate`` v1 document (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return empty_leaderboard()
    return _typed([read_evaluation(p) for p in sorted(folder.glob("*.json"))])


def load_leaderboard(
    official_csv: str | Path | None = OFFICIAL_CSV, evaluations_dir: str | Path | None = EVALUATIONS_DIR
) -> pd.DataFrame:
    """The official rows, then the evaluated ones, with a fresh index; ``None`` leaves a
    source out.

    Raises:
        InputError: from :func:`load_official` or :func:`load_evaluations`.
    """
    parts = []
    if official_csv is not None:
        parts.append(load_official(official_csv))
    if evaluations_dir is not None:
        parts.append(load_evaluations(evaluations_dir))
    return _combine(parts)


def load_leaderboard_leniently(
    official_csv: str | Path = OFFICIAL_CSV, evaluations_dir: str | Path = EVALUATIONS_DIR
) -> tuple[pd.DataFrame, list[str]]:
    """:func:`load_leaderboard`, leaving out each file that cannot be read instead of failing:
    the rows, and one message per file left out. The app shows what it has and says what it
    left out; one broken evaluation must not empty the leaderboard."""
    parts, errors = [], []
    try:
        parts.append(load_official(official_csv))
    except InputError as e:
        errors.append(first_line(e))
    rows = []
    folder = Path(evaluations_dir)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rows.append(read_evaluation(path))
        except InputError as e:
            errors.append(first_line(e))
    parts.append(_typed(rows))
    return _combine(parts), errors


def _combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    # Empty frames would only muddy concat's dtype inference; the retyping settles the rest.
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_leaderboard()
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({c.key: _DTYPES[c.kind] for c in COLUMNS})


def filter_leaderboard(
    df: pd.DataFrame,
    track: int | None = None,
    sources: Sequence[str] | None = None,
    dataset: str | None = None,
    query: str = "",
) -> pd.DataFrame:
    """The rows of ``track``, from one of ``sources``, on ``dataset``, whose method or device
    contains ``query`` (case-insensitive, plain text); ``None`` or ``""`` does not filter.
    The result has a fresh index."""
    keep = pd.Series(True, index=df.index)
    if track is not None:
        keep &= df["track"] == track
    if sources is not None:
        keep &= df["source"].isin(list(sources))
    if dataset is not None:
        keep &= df["dataset"] == dataset
    query = query.strip()
    if query:
        matches = [df[key].str.contains(query, case=False, regex=False, na=False) for key in ("method", "device")]
        keep &= matches[0] | matches[1]
    return df[keep].reset_index(drop=True)


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part.lower()) for part in re.split(r"(\d+)", name) if part]


def datasets(df: pd.DataFrame, track: int | None = None) -> list[str]:
    """The datasets of ``track`` (all tracks for ``None``): the official table's first, then
    the others by name, numbers in names compared as numbers (Set5 before Set14)."""
    rows = df if track is None else df[df["track"] == track]
    official = rows.loc[rows["source"] == SOURCE_OFFICIAL, "dataset"].unique().tolist()
    others = sorted(set(rows["dataset"]) - set(official), key=_natural)
    return [*official, *others]


def pareto_front(df: pd.DataFrame, y: str, x: str = "runtime_ms") -> pd.Series:
    """Which rows are on the Pareto front of lower ``x`` and higher ``y``, aligned with
    ``df.index``.

    A row is on the front when no other row has ``x`` <= and ``y`` >= with at least one of
    the two strictly better; equal points are all on it. Only non-reference rows with a finite
    ``x`` and a non-NaN ``y`` take part; the others are False.
    """
    front = pd.Series(False, index=df.index, dtype="bool")
    xs = df[x].to_numpy(dtype="float64")
    ys = df[y].to_numpy(dtype="float64")
    usable = ~df["is_reference"].to_numpy(dtype="bool") & np.isfinite(xs) & ~np.isnan(ys)
    if not usable.any():
        return front
    xs, ys = xs[usable], ys[usable]
    # Group by x (ascending): a row is dominated by a row of smaller x with y at least its own,
    # or by a row of the same x with a greater y. So it is on the front exactly when its y is
    # its group's best and above the best y of every smaller x.
    unique_x, group = np.unique(xs, return_inverse=True)
    best = np.full(len(unique_x), -np.inf)
    np.maximum.at(best, group, ys)
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(best)[:-1]))
    on_front = (ys == best[group]) & (ys > best_before[group])
    front.iloc[np.flatnonzero(usable)] = on_front
    return front


def to_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV with the column keys as headers and no index (the download);
    return the path. Unknown values are empty cells, infinities ``inf``."""
    path = Path(path)
    df.to_csv(path, index=False)
    return path
