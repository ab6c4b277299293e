"""The leaderboard's plot: quality or score against runtime for one track and one dataset.

Every row of the frame is one marker, and nothing else in the figure has markers: the
entries (one trace per source, Pareto-optimal points drawn as larger stars), the bicubic
reference (its own trace), then lines only: the Pareto front, and in PSNR mode dotted
iso-score curves. FPS bands (60/30/24) shade the runtime axis.

FPS bands are the challenge's real-time targets, which it set for a GPU: they are drawn only
against GPU rows (``device_type`` cuda). Runtime in ms is absolute, so the bands sit at
1000/60, 1000/30 and 1000/24 ms whatever the GPU; with CPU rows only, there are none, and the
axis title says so. Relative runtime (× bicubic) is per device: the bands and iso-score
curves need bicubic's runtime in ms, so they are drawn only when all rows come from one GPU,
and the axis title names it; otherwise they are left out, and the axis title says why.

The Pareto front and the bicubic reference belong to the whole selection: a search
(``highlight``) fades the rows it does not match and changes nothing else.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Final, Literal, get_args

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rtsr.constants import FPS_BANDS
from rtsr.leaderboard.table import pareto_front
from rtsr.results.metrics import METRICS, metric
from rtsr.scoring import psnr_for_score

YAxis = Literal["score", "psnr_rgb"]
XAxis = Literal["runtime_ms", "relative_runtime"]

REFERENCE_NAME: Final = "Bicubic (reference)"
#: The legend's name for rows timed at another size than 4K (not ranked).
UNRANKED_NAME: Final = "Not timed at 4K (not ranked)"
PARETO_NAME: Final = "Pareto front"
EMPTY_MESSAGE: Final = "no results for this selection"
NO_MATCH_MESSAGE: Final = "no row matches the search"

#: The quality axes, each titled by its metric's label.
Y_AXES: Final[dict[str, str]] = {key: metric(key).label for key in get_args(YAxis)}
#: The runtime axes (always log scale), for the app's choices.
X_AXES: Final[dict[str, str]] = {"runtime_ms": "Runtime (ms)", "relative_runtime": "Runtime relative to bicubic"}
_X_TITLES: Final[dict[str, str]] = {
    "runtime_ms": "runtime per 4K output (ms, log scale)",
    "relative_runtime": "runtime (× bicubic, log scale)",
}
#: One colour per source, in the order of the sources (the official table's blue first).
_SOURCE_COLORS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
_BAND_COLORS: Final = ("rgba(44, 160, 44, 0.16)", "rgba(44, 160, 44, 0.10)", "rgba(44, 160, 44, 0.05)")
#: Score levels of the iso-score curves are drawn from these times powers of ten.
_NICE: Final = (1.0, 2.0, 5.0)
_MAX_LEVELS: Final = 5
_HEIGHT: Final = 560
#: The opacity of rows a search does not match.
_FADED: Final = 0.15


#: The hover's fields, by column key: the entry, each metric of the specification, and where
#: it was measured. The customdata of a marker is these fields' text, in this order.
HOVER_KEYS: Final[tuple[str, ...]] = (
    "method",
    "team",
    *(m.key for m in METRICS),
    "device",
    "precision",
    "engine",
    "source",
)


def _at(key: str) -> str:
    """The hover template's reference to the field ``key``."""
    return f"%{{customdata[{HOVER_KEYS.index(key)}]}}"


def _hover_template(rows: pd.DataFrame) -> str:
    """The hover of a legend entry's points: one line per metric, labelled as in the table,
    leaving out a metric none of ``rows`` has (the official table has no SSIM Y: its rows
    would all say "—")."""
    present = [m for m in METRICS if m.key in rows and rows[m.key].notna().any()]
    return (
        f"<b>{_at('method')}</b>{_at('team')}<br>"
        + "".join(f"{m.label}: {_at(m.key)}<br>" for m in present)
        + f"{_at('device')}, {_at('precision')} {_at('engine')}"
        + f"<extra>{_at('source')}</extra>"
    )


_METRIC_KEYS: Final = frozenset(m.key for m in METRICS)


def _hover_text(row: pd.Series, key: str) -> str:
    if key in _METRIC_KEYS:
        return metric(key).text(row[key])
    # Names come from submissions: plotly reads tags in hover text, so they go in as text.
    text = html.escape(str(row[key]), quote=False)
    if key == "team":
        # an evaluated submission's name says its team already (schema.SubmissionRecord.label)
        named = f" · {row['team']} ·" in f"{row['method']} ·"
        return f" ({text})" if text and not named else ""
    return text


def _customdata(rows: pd.DataFrame) -> list[list[str]]:
    # Preformatted strings: NaN (unknown SSIM Y, the reference's params) reads as a dash
    # instead of plotly's "NaN", and infinities survive JSON.
    return [[_hover_text(row, key) for key in HOVER_KEYS] for _, row in rows.iterrows()]


def _points(rows: pd.DataFrame, x: str, y: str, name: str, marker: dict[str, object]) -> go.Scatter:
    """``rows`` as one legend entry of markers, hovered as every point of the plot is."""
    return go.Scatter(
        x=rows[x],
        y=rows[y],
        mode="markers",
        name=name,
        marker=marker,
        customdata=_customdata(rows),
        hovertemplate=_hover_template(rows),
    )


def _note(text: str) -> str:
    """A second, smaller line under an axis title: one line each fits a phone's width."""
    return f"<br><sub>{html.escape(text, quote=False)}</sub>"


def _device_bicubic_ms(df: pd.DataFrame) -> tuple[float | None, str]:
    """Bicubic's runtime in ms and the device, when all rows share one device; else None."""
    devices = df["device"].unique()
    if len(devices) != 1:
        return None, "several devices"
    # Each row knows its device's bicubic runtime as runtime / relative runtime; the median
    # settles the small run-to-run differences between documents.
    ratio = (df["runtime_ms"] / df["relative_runtime"]).to_numpy(dtype="float64")
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    return (float(np.median(ratio)) if len(ratio) else None), str(devices[0])


def score_levels(scores: pd.Series | np.ndarray) -> list[float]:
    """A few round score levels (1, 2, 5 times a power of ten) that bracket the positive
    finite ``scores``: at most five, lowest and highest included; none without such scores."""
    values = np.asarray(scores, dtype="float64")
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return []
    low, high = float(values.min()), float(values.max())
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
    nice = sorted(m * 10.0**d for d in decades for m in _NICE)
    start = max(v for v in nice if v <= low * (1 + 1e-12))
    stop = min(v for v in nice if v >= high * (1 - 1e-12))
    levels = [v for v in nice if start <= v <= stop]
    if len(levels) > _MAX_LEVELS:
        picks = np.unique(np.linspace(0, len(levels) - 1, _MAX_LEVELS).round().astype(int))
        levels = [levels[i] for i in picks]
    # Round away float noise of 10.0**d (e.g. 0.30000000000000004).
    return [float(f"{v:.6g}") for v in levels]


def _empty_figure(title: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(
        text=EMPTY_MESSAGE, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 16}
    )
    figure.update_layout(
        template="plotly_white",
        height=_HEIGHT,
        title={"text": title} if title else None,
        xaxis={"visible": False},
        yaxis={"visible": False},
    )
    return figure


def leaderboard_figure(
    df: pd.DataFrame,
    y: YAxis = "score",
    x: XAxis = "runtime_ms",
    title: str = "",
    sources: Sequence[str] = (),
    highlight: pd.Series | None = None,
) -> go.Figure:
    """Plot ``y`` (score, or PSNR RGB in dB) against ``x`` (runtime in ms, or relative to
    bicubic), log x, for leaderboard rows of one track and one dataset.

    One marker per row: entries per source (Pareto-optimal ones as larger stars; each source
    in the colour of its place in ``sources``, the names of all the leaderboard's sources, so
    that a source keeps its colour whichever are shown; sources not there follow) and the
    bicubic reference (at score 0 in score mode; a star too when it is on the front). Lines
    without markers: the Pareto front (staircase through the optimal rows), and in PSNR mode
    the iso-score curves of :func:`score_levels` of the entries' scores (dotted, named
    ``score = N``). FPS bands shade runtimes of 60 FPS and more, 30 to 60, and 24 to 30,
    against GPU rows only. ``highlight`` (aligned with ``df``'s rows; None: all) is a
    search's matches: the other rows are drawn faded, and the front stays the whole
    selection's. The legend sits below the axes, so that a narrow screen keeps the title and
    the plot. An empty ``df`` gives a figure that says so.

    Raises:
        ValueError: ``y`` or ``x`` is not one of the above, or ``df`` mixes tracks or datasets.
    """
    if y not in Y_AXES:
        raise ValueError(f"y must be one of {', '.join(Y_AXES)}, got {y!r}")
    if x not in _X_TITLES:
        raise ValueError(f"x must be one of {', '.join(_X_TITLES)}, got {x!r}")
    if df.empty:
        return _empty_figure(title)
    for key in ("track", "dataset"):
        if df[key].nunique() > 1:
            raise ValueError(f"plot one {key} at a time, got {', '.join(map(str, df[key].unique()))}")

    # Rows are matched to the front and the highlight by label: labels must be unique.
    if highlight is None:
        highlight = pd.Series(True, index=df.index)
    shown = pd.Series(highlight.to_numpy(dtype="bool"), index=range(len(df)))
    df = df.reset_index(drop=True)
    figure = go.Figure()
    reference = df["is_reference"].to_numpy(dtype="bool")
    ranked = df["ranked"].to_numpy(dtype="bool") if "ranked" in df else np.ones(len(df), dtype="bool")
    # rows timed at another size than 4K: drawn apart (hollow, their own legend entry), never
    # on the front and never on a source's trace beside the 4K rows
    entries, references, unranked = df[~reference & ranked], df[reference], df[~ranked]
    front = pareto_front(df, y, x)

    on_gpu = (df["device_type"] == "cuda").to_numpy(dtype="bool")
    bicubic_ms, device = _device_bicubic_ms(df)
    # x per unit in ms: 1 for runtime; bicubic's ms for relative runtime on one device
    ms_per_unit = 1.0 if x == "runtime_ms" else bicubic_ms
    x_title = _X_TITLES[x]
    if not on_gpu.any():
        bands = False
        x_title += _note("no FPS bands: these runtimes are from a CPU")
    elif x == "runtime_ms":
        bands = True
        if not on_gpu.all():
            x_title += _note("FPS bands: for the GPU rows")
    else:
        bands = ms_per_unit is not None and bool(on_gpu.all())
        x_title += _note(f"FPS bands for {device}" if bands else f"no FPS bands: {device}")

    xs = df[x].to_numpy(dtype="float64")
    xs = xs[np.isfinite(xs) & (xs > 0)]
    thresholds = [1000.0 / fps / ms_per_unit for fps in FPS_BANDS] if bands and ms_per_unit else []
    span = np.concatenate([xs, thresholds]) if len(xs) else np.asarray(thresholds or [1.0])
    x_low, x_high = float(span.min()) / 1.6, float(span.max()) * 1.6

    # FPS bands, fastest first; the first reaches the left edge of the axis.
    edges = [x_low, *thresholds]
    for i, fps in enumerate(FPS_BANDS if thresholds else ()):
        label = f"≥{fps} FPS" if i == 0 else f"{fps}–{FPS_BANDS[i - 1]} FPS"
        # Neighbouring bands' labels alternate between the top and the middle: the 24-30 band
        # is a tenth of a decade wide, a few pixels on a phone.
        position = "top right" if i % 2 == 0 else "middle right"
        figure.add_shape(
            type="rect",
            xref="x",
            yref="paper",
            x0=edges[i],
            x1=edges[i + 1],
            y0=0,
            y1=1,
            fillcolor=_BAND_COLORS[i],
            line={"width": 0},
            layer="below",
            name=label,
            # Upright along the band's right edge: the 24-30 FPS band is too narrow for a
            # horizontal label.
            label={
                "text": label,
                "textangle": -90,
                "textposition": position,
                "font": {"size": 11, "color": "#2b7a2b"},
            },
        )

    order = list(dict.fromkeys([*sources, *df["source"]]))
    faded = np.where(shown.to_numpy(dtype="bool"), 1.0, _FADED)
    for source in dict.fromkeys(entries["source"]):
        rows = entries[entries["source"] == source]
        # Front points last, drawn on top of the others; a plain matched marker first, since
        # the legend takes the first point's symbol and opacity.
        rank = front[rows.index].to_numpy(dtype="int") * 2 + ~shown[rows.index].to_numpy(dtype="bool")
        rows = rows.iloc[np.argsort(rank, kind="stable")]
        on_front = front[rows.index].to_numpy(dtype="bool")
        color = _SOURCE_COLORS[order.index(source) % len(_SOURCE_COLORS)]
        marker = {
            "color": color,
            "size": np.where(on_front, 16, 10),
            "symbol": np.where(on_front, "star", "circle"),
            "line": {"color": "#222222", "width": np.where(on_front, 1.5, 0.5)},
            "opacity": faded[rows.index],
        }
        figure.add_trace(_points(rows, x, y, source, marker))

    # (in score mode they have no point: they have no score)
    unranked = unranked[np.isfinite(unranked[y].to_numpy(dtype="float64"))]
    if len(unranked):
        marker = {
            "color": "#777777",
            "size": 10,
            "symbol": "circle-open",
            "line": {"width": 2},
            "opacity": faded[unranked.index],
        }
        figure.add_trace(_points(unranked, x, y, UNRANKED_NAME, marker))

    if front.any():
        optimal = df[front].sort_values(x)
        figure.add_trace(
            go.Scatter(
                x=optimal[x],
                y=optimal[y],
                mode="lines",
                name=PARETO_NAME,
                # A staircase: the region it bounds is what the front's methods attain.
                line={"color": "#555555", "width": 1.5, "shape": "hv"},
                hoverinfo="skip",
            )
        )

    if len(references):
        optimal = front[references.index].to_numpy(dtype="bool")
        marker = {
            "color": "#000000",
            "size": np.where(optimal, 16, 11),
            "symbol": np.where(optimal, "star-diamond", "diamond"),
            "line": {"color": "#ffffff", "width": 1},
            "opacity": faded[references.index],
        }
        figure.add_trace(_points(references, x, y, REFERENCE_NAME, marker))

    if not shown.any():
        figure.add_annotation(
            text=NO_MATCH_MESSAGE, xref="paper", yref="paper", x=0.5, y=0.98, showarrow=False, font={"size": 14}
        )

    ys = df[y].to_numpy(dtype="float64")
    ys = ys[np.isfinite(ys)]
    yaxis: dict[str, object] = {"title": {"text": Y_AXES[y]}, "zeroline": y == "score", "automargin": True}
    if y == "psnr_rgb" and len(ys):
        # Fixed to the data: the iso-score curves climb far above it and would flatten it.
        pad = max(0.08 * float(ys.max() - ys.min()), 0.1)
        y_low, y_high = float(ys.min()) - pad, float(ys.max()) + pad
        yaxis["range"] = [y_low, y_high]
        if ms_per_unit:
            _add_iso_score_curves(figure, df, entries, x_low, x_high, ms_per_unit, y_high)

    figure.update_layout(
        template="plotly_white",
        height=_HEIGHT,
        title={"text": title} if title else None,
        margin={"t": 50 if title else 20, "r": 10, "l": 10, "b": 10},
        # Below the axes, in the container's coordinates: plotly makes room for it however
        # many lines it wraps to on a narrow screen.
        legend={"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0, "x": 0, "xanchor": "left"},
        # Log axis ranges are in log10 units.
        xaxis={
            "type": "log",
            "title": {"text": x_title},
            "range": [math.log10(x_low), math.log10(x_high)],
            "automargin": True,
        },
        hoverlabel={"font": {"size": 11}},
        yaxis=yaxis,
        hovermode="closest",
    )
    return figure


def _add_iso_score_curves(
    figure: go.Figure,
    df: pd.DataFrame,
    entries: pd.DataFrame,
    x_low: float,
    x_high: float,
    ms_per_unit: float,
    y_high: float,
) -> None:
    """Dotted curves of constant score over the x range, in PSNR mode, each labelled at the
    right end of its visible part."""
    bicubic = (df["psnr_rgb"] - df["psnr_gain"]).to_numpy(dtype="float64")
    bicubic = bicubic[np.isfinite(bicubic)]
    if not len(bicubic):
        return
    # One dataset, so one bicubic PSNR; the median absorbs device-to-device noise in it.
    bicubic_psnr = float(np.median(bicubic))
    grid = np.geomspace(x_low, x_high, 240)
    for level in score_levels(entries["score"]):
        psnr = np.array([psnr_for_score(level, t * ms_per_unit, bicubic_psnr) for t in grid])
        # Below bicubic the formula's inverse is not a score that any method can have
        # (score() is 0 there); above the axis the curve is out of sight.
        visible = (psnr > bicubic_psnr) & (psnr <= y_high)
        if not visible.any():
            continue
        name = f"score = {level:g}"
        figure.add_trace(
            go.Scatter(
                x=grid[visible],
                y=psnr[visible],
                mode="lines",
                name=name,
                showlegend=False,
                line={"color": "#9a9a9a", "width": 1, "dash": "dot"},
                hoverinfo="skip",
            )
        )
        end = int(np.flatnonzero(visible)[-1])
        figure.add_annotation(
            # Annotations on a log axis take log10 of the position, unlike shapes and traces.
            x=math.log10(grid[end]),
            y=psnr[end],
            xref="x",
            yref="y",
            text=name,
            showarrow=False,
            xanchor="right",
            yanchor="bottom",
            font={"size": 10, "color": "#7a7a7a"},
        )
