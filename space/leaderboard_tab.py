"""The Leaderboard tab: the plot and the table of rtsr.leaderboard for one track and test set,
wired to the page's controls, and nothing else."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from rtsr.constants import TARGET_SIZE, TRACK_SCALES
from rtsr.leaderboard import (
    COLUMNS,
    Source,
    datasets,
    default_sources,
    filter_leaderboard,
    leaderboard_figure,
    load_leaderboard,
    shown_table,
    to_csv,
)
from rtsr.leaderboard.plot import X_AXES, Y_AXES, XAxis, YAxis
from space.about import LEADERBOARD_NOTE


@dataclass
class Board:
    """The leaderboard the app shows, what went wrong loading it (shown, not raised), and
    the sources it was loaded from (the page's checkboxes, in this order)."""

    frame: pd.DataFrame
    errors: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=default_sources)

    def reload(self) -> None:
        """Read every source again (new results, a file fixed or broken since)."""
        frame, problems = load_leaderboard(self.sources)
        self.frame, self.errors = frame, [f"left out of the leaderboard: {p}" for p in problems]


def track_label(track: int) -> str:
    """E.g. ``"Track 1: x2, 1080p → 4K"``."""
    scale = TRACK_SCALES[track]
    h = TARGET_SIZE[0]
    return f"Track {track}: x{scale}, {h // scale}p → 4K"


@dataclass
class LeaderboardView:
    """What a refresh of the leaderboard tab reads and writes."""

    inputs: list[Any]
    outputs: list[Any]
    errors: gr.Markdown
    dataset: gr.Dropdown
    view: Callable[..., Iterator[tuple[Any, pd.DataFrame, str]]]


def errors_markdown(board: Board) -> str:
    return "\n\n".join(f"⚠️ {error}" for error in board.errors)


def build_leaderboard_tab(board: Board, workdir: Path) -> LeaderboardView:
    # the board's frame is read at each view: a refresh replaces it
    errors = gr.Markdown(errors_markdown(board), elem_id="leaderboard-errors")
    frame = board.frame
    tracks = sorted(int(t) for t in frame["track"].unique()) if len(frame) else list(TRACK_SCALES)
    with gr.Row():
        track = gr.Radio(
            [(track_label(t), t) for t in tracks], value=tracks[0], label="Track", scale=2, elem_id="lb-track"
        )
        first_sets = datasets(frame, tracks[0])
        dataset = gr.Dropdown(
            first_sets, value=first_sets[0] if first_sets else None, label="Test set", scale=1, elem_id="lb-dataset"
        )
        names = [s.name for s in board.sources]
        sources = gr.CheckboxGroup(
            names,
            value=names,
            label="Sources",
            scale=2,
            elem_id="lb-sources",
        )
    with gr.Row():
        y_axis = gr.Radio(
            [(label, key) for key, label in Y_AXES.items()], value="score", label="Quality axis", elem_id="lb-y"
        )
        x_axis = gr.Radio(
            [(label, key) for key, label in X_AXES.items()],
            value="runtime_ms",
            label="Runtime axis",
            elem_id="lb-x",
        )
        query = gr.Textbox(label="Search method, team or device", placeholder="e.g. RTSRN, 3090", elem_id="lb-query")

    def render(
        track_id: int, dataset_name: str | None, source_names: list[str], y: YAxis, x: XAxis, text: str, folder: Path
    ) -> tuple[Any, pd.DataFrame, str]:
        rows = filter_leaderboard(board.frame, track=track_id, sources=source_names, dataset=dataset_name, query=text)
        title = f"{track_label(track_id)} · {dataset_name or 'no results'}"
        path = to_csv(rows, folder / f"rtsr_leaderboard_track{track_id}.csv")
        figure = leaderboard_figure(rows, y=y, x=x, title=title, sources=names)
        return figure, shown_table(rows), str(path)

    def on_view(
        track_id: int, dataset_name: str | None, source_names: list[str], y: YAxis, x: XAxis, text: str
    ) -> Iterator[tuple[Any, pd.DataFrame, str]]:
        folder = Path(tempfile.mkdtemp(dir=workdir))
        try:
            yield render(track_id, dataset_name, source_names, y, x, text, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # Gradio has its own copy of the CSV

    first = render(track.value, dataset.value, sources.value, y_axis.value, x_axis.value, "", workdir)
    plot = gr.Plot(first[0], elem_id="leaderboard-plot")
    gr.Markdown("".join(f"- **{s.name}**: {s.description}\n" for s in board.sources) + "\n" + LEADERBOARD_NOTE)
    # links (the submission on the Hub at the commit measured) as Markdown, the rest as text
    datatype = ["markdown" if c.kind == "url" else "str" for c in COLUMNS if c.shown]
    table = gr.Dataframe(
        first[1],
        datatype=datatype,  # type: ignore[arg-type]
        interactive=False,
        show_search="filter",
        max_height=520,
        elem_id="leaderboard-table",
    )
    csv = gr.DownloadButton("Download CSV", value=first[2], elem_id="leaderboard-csv")

    def on_track(track_id: int) -> Any:
        names = datasets(board.frame, track_id)
        return gr.Dropdown(choices=names, value=names[0] if names else None)

    inputs = [track, dataset, sources, y_axis, x_axis, query]
    outputs = [plot, table, csv]
    # .then: the dataset's value may not change with the track (Set5 in both), so no .change fires
    changed = track.change(on_track, track, dataset, api_visibility="private")
    changed.then(on_view, inputs, outputs, api_visibility="private")
    for control in (dataset, sources, y_axis, x_axis):
        control.input(on_view, inputs, outputs, api_visibility="private")
    query.input(on_view, inputs, outputs, api_visibility="private", trigger_mode="always_last")
    return LeaderboardView(inputs, outputs, errors, dataset, on_view)
