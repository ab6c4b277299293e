"""The leaderboard as a table: selecting rows, the test sets, the Pareto front, the page's
view and the CSV. Every function takes a frame of :data:`rtsr.leaderboard.columns.COLUMNS`
(as :func:`rtsr.leaderboard.sources.load_leaderboard` gives) and returns a new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from rtsr.leaderboard.columns import TABLE_KEYS, Column, cell_text, column
from rtsr.results.metrics import metric
from rtsr.results.schema import HUB_URL

#: The columns the search box looks in.
_SEARCHED: Final = ("method", "team", "device")
_HUB_TREE: Final = re.compile(re.escape(HUB_URL) + r"(?P<repo>[^/]+/[^/]+)(?:/tree/(?P<commit>[^/]+))?/?")


def filter_leaderboard(
    df: pd.DataFrame,
    track: int | None = None,
    sources: Sequence[str] | None = None,
    dataset: str | None = None,
    query: str = "",
    unranked: bool = True,
) -> pd.DataFrame:
    """The rows of ``track``, from one of ``sources`` (by name), on ``dataset``, whose method,
    team or device contains ``query`` (case-insensitive, plain text); ``None`` or ``""`` does
    not filter; without ``unranked``, only the ranked rows (timed at 4K). The result has a
    fresh index."""
    keep = matching(df, query)
    if not unranked and "ranked" in df:
        keep &= df["ranked"].astype(bool)
    if track is not None:
        keep &= df["track"] == track
    if sources is not None:
        keep &= df["source"].isin(list(sources))
    if dataset is not None:
        keep &= df["dataset"] == dataset
    return df[keep].reset_index(drop=True)


def matching(df: pd.DataFrame, query: str) -> pd.Series:
    """Which rows' method, team or device contains ``query`` (case-insensitive, plain text),
    aligned with ``df.index``; all of them for a blank query."""
    query = query.strip()
    if not query:
        return pd.Series(True, index=df.index, dtype="bool")
    found = pd.Series(False, index=df.index, dtype="bool")
    for key in _SEARCHED:
        found |= df[key].str.contains(query, case=False, regex=False, na=False)
    return found


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part.lower()) for part in re.split(r"(\d+)", name) if part]


def datasets(df: pd.DataFrame, track: int | None = None) -> list[str]:
    """The datasets of ``track`` (all tracks for ``None``): those of the first source's rows
    first (with the default sources, the official table's test set), then the others; by
    name within each, numbers in names compared as numbers (Set5 before Set14)."""
    rows = df if track is None else df[df["track"] == track]
    if rows.empty:
        return []
    first = rows["source"].iloc[0]
    leading = sorted(set(rows.loc[rows["source"] == first, "dataset"]), key=_natural)
    others = sorted(set(rows["dataset"]) - set(leading), key=_natural)
    return [*leading, *others]


def pareto_front(df: pd.DataFrame, y: str, x: str = "runtime_ms") -> pd.Series:
    """Which rows are on the Pareto front of the metrics ``y`` and ``x``, each taken the way
    it is better (:attr:`~rtsr.leaderboard.columns.Metric.higher_is_better`: higher score or
    PSNR, lower runtime or size), aligned with ``df.index``.

    A row is on the front when no other row is at least as good in both with at least one of
    the two strictly better; equal points are all on it. Every ranked row (timed at 4K) with a
    finite ``x`` and a non-NaN ``y`` takes part, the bicubic reference included (it is the fastest of all, so it
    is on the front whenever nothing is both as fast and as good); the others are False.

    Raises:
        KeyError: ``y`` or ``x`` is not a metric.
    """
    front = pd.Series(False, index=df.index, dtype="bool")
    xs = df[x].to_numpy(dtype="float64")
    ys = df[y].to_numpy(dtype="float64")
    # a row timed at another size than 4K is not on the same runtime axis: never on the front
    ranked = df["ranked"].to_numpy(dtype="bool") if "ranked" in df else np.ones(len(df), dtype="bool")
    usable = np.isfinite(xs) & ~np.isnan(ys) & ranked
    if not usable.any():
        return front
    # Oriented so that lower x and higher y are better.
    xs = xs[usable] * (-1.0 if metric(x).higher_is_better else 1.0)
    ys = ys[usable] * (1.0 if metric(y).higher_is_better else -1.0)
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


def link_text(url: str) -> str:
    """A Hub link as people read it: ``org/name@<commit, 7 characters>``; empty for none."""
    if not url:
        return ""
    found = _HUB_TREE.fullmatch(url)
    if found:
        return found["repo"] + (f"@{found['commit'][:7]}" if found["commit"] else "")
    return url.removeprefix("https://")


def table_columns(df: pd.DataFrame) -> list[Column]:
    """The columns of the page's table for these rows: :data:`TABLE_KEYS` in order, less
    those with no value in any row (e.g. SSIM Y of the official table, or the team of rows
    that are not submissions); the method is always there."""
    kept = []
    for key in TABLE_KEYS:
        values = df[key]
        empty = values.isna()
        if not pd.api.types.is_numeric_dtype(values):
            empty |= values.astype(str).str.strip() == ""
        if key == "method" or not empty.all():
            kept.append(column(key))
    return kept


def shown_table(df: pd.DataFrame) -> pd.DataFrame:
    """The rows as the page's table prints them: :func:`table_columns`, headed by their
    labels, every cell text (metrics in their format, unknown as an em dash; links as
    ``org/name@abc1234``). The CSV (:func:`to_csv`) keeps every column at full precision."""
    columns = table_columns(df)
    table = pd.DataFrame(index=df.index)
    for c in columns:
        texts = df[c.key].map(link_text) if c.kind == "url" else df[c.key].map(lambda v, k=c.key: cell_text(k, v))
        table[c.label] = texts
    return table


def row_key(row: pd.Series) -> str:
    """A name for one row that survives reloads and sorting: its source and its document
    (or, in a table without documents, its method)."""
    return json.dumps([row["source"], row["document"] or row["method"]], ensure_ascii=False)


def find_row(df: pd.DataFrame, key: str) -> pd.Series | None:
    """The row of ``df`` whose :func:`row_key` is ``key``; None when there is none (the
    leaderboard changed since the key was given)."""
    for _, row in df.iterrows():
        if row_key(row) == key:
            return row
    return None


def to_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV with the column keys as headers and no index (the download);
    return the path. Unknown values are empty cells, infinities ``inf``."""
    path = Path(path)
    df.to_csv(path, index=False)
    return path
