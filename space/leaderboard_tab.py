"""The Leaderboard tab: the plot and the table of rtsr.leaderboard for one track and test set,
wired to the page's controls, and a selected row's details.

The table is an HTML table of our own (``gr.HTML``) rather than ``gr.Dataframe``: a click on
a header sorts by it (the better end first), the method column stays pinned while the rest
scrolls, every header explains itself in a tooltip, and a click (or Enter) on a row shows its
per-image results. It holds text that the server formatted and escaped; the script only
reorders rows and reports which row was chosen, by a key the server checks against its
own rows.
"""

from __future__ import annotations

import html
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
    OfficialTable,
    Source,
    datasets,
    default_sources,
    filter_leaderboard,
    leaderboard_figure,
    load_leaderboard,
    to_csv,
)
from rtsr.leaderboard.columns import Column, cell_text
from rtsr.leaderboard.details import BICUBIC_PSNR_KEY, GAIN_KEY, RowDetails, row_details
from rtsr.leaderboard.plot import X_AXES, Y_AXES, XAxis, YAxis
from rtsr.leaderboard.table import (
    find_row,
    link_text,
    matching,
    pareto_front,
    row_key,
    shown_table,
    table_columns,
)
from rtsr.results.metrics import IMAGE_METRICS, metric
from space.about import LEADERBOARD_NOTE
from space.text import plain


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


#: The table's script: sorting by a header (the better end first, then flipping), keeping
#: the sort when the server sends new rows, and reporting the chosen row (click or Enter).
_TABLE_JS = """
const sortBy = (th, direction) => {
  const table = th.closest('table');
  const index = Array.prototype.indexOf.call(th.parentNode.children, th);
  const numeric = th.dataset.type === 'number';
  table.querySelectorAll('th[data-col]').forEach((h) => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', direction);
  element.dataset.sortCol = th.dataset.col;
  element.dataset.sortDir = direction;
  const body = table.tBodies[0];
  const value = (row) => {
    const cell = row.cells[index];
    return numeric ? parseFloat(cell.dataset.v) : cell.textContent.trim().toLowerCase();
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = value(a), y = value(b);
    if (numeric && (isNaN(x) || isNaN(y))) return isNaN(x) - isNaN(y);  // unknown last
    const order = x < y ? -1 : x > y ? 1 : 0;
    return direction === 'ascending' ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
};
const choose = (row) => {
  element.querySelectorAll('tr[aria-selected]').forEach((r) => r.removeAttribute('aria-selected'));
  row.setAttribute('aria-selected', 'true');
  trigger('select', {row: row.dataset.key});
};
element.addEventListener('click', (event) => {
  const th = event.target.closest('th[data-col]');
  if (th) {
    const current = th.getAttribute('aria-sort');
    const first = th.dataset.better === 'lower' || th.dataset.type !== 'number' ? 'ascending' : 'descending';
    const flipped = current === 'ascending' ? 'descending' : 'ascending';
    sortBy(th, current ? flipped : first);
    return;
  }
  if (event.target.closest('a')) return;
  const row = event.target.closest('tr[data-key]');
  if (row) choose(row);
});
element.addEventListener('keydown', (event) => {
  const row = event.target.closest('tr[data-key]');
  if (row && event.target === row && (event.key === 'Enter' || event.key === ' ')) {
    event.preventDefault();
    choose(row);
  }
});
watch('value', () => {
  const col = element.dataset.sortCol;
  const th = col && element.querySelector(`th[data-col="${col}"]`);
  if (th) sortBy(th, element.dataset.sortDir);
});
"""

#: Styles of the tab: the table (pinned method column and header, selected row), and the
#: plot on a phone (no toolbar over the title: pinch to zoom instead).
CSS = """
#leaderboard-table .lb-scroll {
  overflow: auto;
  max-height: 560px;
  border: 1px solid var(--border-color-primary);
  border-radius: 6px;
}
#leaderboard-table table {
  color: var(--body-text-color);
  font-family: var(--font);
  border-collapse: separate;
  border-spacing: 0;
  width: max-content;
  min-width: 100%;
  font-size: 14px;
}
#leaderboard-table th, #leaderboard-table td {
  padding: 6px 10px;
  /* whole-pixel rows: the pinned Method cells are drawn on a layer of their own, and at a
     fractional row height their lines land a pixel away from the scrolled cells' */
  line-height: 20px;
  border-bottom: 1px solid var(--border-color-primary);
  text-align: right;
  white-space: nowrap;
  background: var(--background-fill-primary);
}
#leaderboard-table th { position: sticky; top: 0; z-index: 2; background: var(--background-fill-secondary); }
#leaderboard-table th button { all: unset; cursor: pointer; font-weight: 600; }
#leaderboard-table th button:focus-visible { outline: 2px solid var(--color-accent); }
#leaderboard-table th[aria-sort="ascending"] button::after { content: " ▲"; }
#leaderboard-table th[aria-sort="descending"] button::after { content: " ▼"; }
#leaderboard-table th.text, #leaderboard-table td.text { text-align: left; }
#leaderboard-table th:first-child, #leaderboard-table td:first-child {
  position: sticky;
  left: 0;
  z-index: 1;
  border-right: 1px solid var(--border-color-primary);
  max-width: 45vw;
  overflow: hidden;
  text-overflow: ellipsis;
}
#leaderboard-table th:first-child { z-index: 3; }
#leaderboard-table tbody tr { cursor: pointer; }
#leaderboard-table tbody tr:hover td { background: var(--background-fill-secondary); }
#leaderboard-table tbody tr[aria-selected="true"] td { background: var(--color-accent-soft); }
#leaderboard-table tbody tr.reference td { font-style: italic; }
#leaderboard-details table { display: block; overflow-x: auto; white-space: nowrap; }
@media (max-width: 640px) { #leaderboard-plot .modebar-container { display: none; } }
"""


def _cell(c: Column, row: pd.Series, text: str, on_front: bool) -> str:
    """One cell of the table: ``text`` as :func:`rtsr.leaderboard.shown_table` prints it,
    escaped; a number keeps its value for sorting, a link its address."""
    value = row[c.key]
    if c.kind == "url":
        if not value:
            return '<td class="text"></td>'
        link = f'<a href="{html.escape(str(value))}" target="_blank" rel="noopener">{html.escape(text)}</a>'
        return f'<td class="text">{link}</td>'
    if c.kind == "float":
        number = float(value)
        sort = "NaN" if number != number else repr(number)
        return f'<td data-v="{sort}">{html.escape(text)}</td>'
    shown = html.escape(text)
    if c.key == "method" and on_front:
        shown = f'<span title="On the Pareto front" aria-label="On the Pareto front">★</span> {shown}'
    if c.key == "method" and not row.get("ranked", True):
        note = "Not timed at 4K: not ranked"
        shown += f' <span class="unranked" title="{note}" aria-label="{note}">(not 4K)</span>'
    return f'<td class="text">{shown}</td>'


def table_html(rows: pd.DataFrame, front: pd.Series, sort_key: str) -> str:
    """The page's table of ``rows``: :func:`rtsr.leaderboard.table.table_columns`, each
    header a sort button whose tooltip is the column's description, rows sorted by
    ``sort_key`` (its better end first, unknown last), Pareto-optimal methods starred."""
    if rows.empty:
        return '<p class="lb-empty">No rows for this selection.</p>'
    sort = metric(sort_key)
    rows = rows.assign(_front=front.to_numpy(dtype="bool"))
    rows = rows.sort_values(sort_key, ascending=not sort.higher_is_better, na_position="last", kind="stable")
    columns = table_columns(rows)
    texts = shown_table(rows)  # the same columns, printed
    head = []
    for c in columns:
        numeric = c.kind == "float"
        better = ("higher" if metric(c.key).higher_is_better else "lower") if numeric else ""
        direction = ' aria-sort="descending"' if c.key == sort_key and sort.higher_is_better else ""
        direction = ' aria-sort="ascending"' if c.key == sort_key and not sort.higher_is_better else direction
        head.append(
            f'<th scope="col" data-col="{c.key}" data-type="{"number" if numeric else "text"}" data-better="{better}"'
            f' class="{"" if numeric else "text"}" title="{html.escape(c.description)}"{direction}>'
            f'<button type="button">{html.escape(c.label)}</button></th>'
        )
    body = []
    for i, (_, row) in enumerate(rows.iterrows()):
        cells = "".join(_cell(c, row, texts.iat[i, j], bool(row["_front"])) for j, c in enumerate(columns))
        reference = ' class="reference"' if row["is_reference"] else ""
        body.append(f'<tr data-key="{html.escape(row_key(row))}" tabindex="0"{reference}>{cells}</tr>')
    return (
        '<div class="lb-scroll"><table><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def details_markdown(details: RowDetails) -> str:
    """A selected row: where and how it was measured, and its per-image results."""
    lines = [f"### {plain(details.method)} · {plain(details.dataset)}", ""]
    facts = [
        ("Source", details.source),
        ("Device", details.device),
        ("Precision", details.precision),
        ("Engine", details.engine),
        ("Team", details.team),
        ("License", details.license),
        ("Measured", details.created),
        ("With", details.versions),
    ]
    lines.append(" · ".join(f"**{name}:** {plain(value)}" for name, value in facts if value))
    if details.link:
        where = f"{details.repo}@{details.commit[:7]}" if details.repo and details.commit else link_text(details.link)
        lines += ["", f"**Submission:** [{plain(where)}]({details.link}) (the repo at the commit measured)"]
    lines.append("")
    if details.images is None:
        lines.append(f"*No per-image results: {plain(details.note)}.*")
        return "\n".join(lines)
    keys = [m.key for m in IMAGE_METRICS]
    headers = ["Image", *(m.label for m in IMAGE_METRICS), "Bicubic PSNR RGB (dB)", metric(GAIN_KEY).label]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|---|" + "---:|" * (len(headers) - 1))
    for _, image in details.images.iterrows():
        values = [cell_text(k, image[k]) for k in keys]
        values += [cell_text("psnr_rgb", image[BICUBIC_PSNR_KEY]), cell_text(GAIN_KEY, image[GAIN_KEY])]
        lines.append(f"| {plain(str(image['image']))} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def search_placeholder(frame: pd.DataFrame) -> str:
    """The search box's hint: a method and a device that the first view has, so that the
    example finds rows."""
    rows = frame[~frame["is_reference"]] if len(frame) else frame
    if rows.empty:
        return "a method, team or device"
    best = rows.sort_values("score", ascending=False).iloc[0]
    device = str(best["device"]).split("(")[0].split()
    return f"e.g. {str(best['method']).split()[0]}" + (f", {device[-1]}" if device else "")


def track_note(board: Board, track: int) -> str:
    """What the selection of ``track`` holds: each source with rows in it, and a plain word
    where the challenge's own table for the track is not among them."""
    present = _present_sources(board, track)
    lines = [f"- **{s.name}**: {s.description}" for s in board.sources if s.name in present]
    official = [s for s in board.sources if isinstance(s, OfficialTable)]
    if official and not any(s.track == track for s in official):
        lines.append(
            f"- **The challenge's official Track {track} table is not included**: every row here is one of our"
            " own evaluations, measured on the device its row names."
        )
    if not lines:
        lines.append(f"- No results for Track {track} yet.")
    return "\n".join(lines) + "\n\n" + LEADERBOARD_NOTE


@dataclass
class LeaderboardView:
    """The tab's controls (:attr:`inputs`: track, test set, sources, axes, search), what a
    view writes (:attr:`outputs`: plot, table, CSV), and :meth:`refresh` for the page's timer,
    which reads :attr:`refresh_inputs` (the controls, then the Sources checkbox's state)."""

    board: Board
    inputs: list[Any]
    outputs: list[Any]
    refresh_inputs: list[Any]
    #: What a refresh writes besides the view: the errors, the test sets, the sources, the
    #: note and the Sources checkbox's state.
    controls: list[Any]
    view: Callable[..., Iterator[tuple[Any, str, str]]]

    def refresh(self, *values: Any) -> list[Any]:
        """Updates for :attr:`controls` then :attr:`outputs`, from the values of
        :attr:`refresh_inputs` (those of a tab never opened may be None), after the board
        reloaded. A source that has rows now and was not unchecked on this page is checked: a
        new one (the first submission of a track) shows at once."""
        track_id, dataset_name, checked, y, x, text, unranked, state = values
        track_id = track_id or 1
        names = datasets(self.board.frame, track_id)
        dataset_name = dataset_name if dataset_name in names else (names[0] if names else None)
        chosen, state = _sources_for(self.board, track_id, checked, state)
        updates: list[Any] = [
            errors_markdown(self.board),
            gr.Dropdown(choices=names, value=dataset_name),
            gr.CheckboxGroup(choices=state["shown"], value=chosen),
            track_note(self.board, track_id),
            state,
        ]
        for view in self.view(
            track_id, dataset_name, chosen, y or "score", x or "runtime_ms", text or "", bool(unranked)
        ):
            updates += list(view)
        return updates


def errors_markdown(board: Board) -> str:
    return "\n\n".join(f"⚠️ {error}" for error in board.errors)


def _sources_for(
    board: Board, track: int, checked: list[str] | None, state: dict[str, list[str]] | None
) -> tuple[list[str], dict[str, list[str]]]:
    """The Sources checkbox for ``track``: the sources with rows in it, each checked unless
    this page unchecked it; and the new state. ``checked`` is what the checkbox holds now,
    ``state`` which sources it shows (``shown``) and which were unchecked earlier
    (``unchecked``). Whatever it shows and does not hold was unchecked here; a source it did
    not show (another track's, or one that has just gained rows) keeps its earlier state, so
    a new source shows checked. Worked out from what the checkbox holds, not from an event
    of its own, so that a quick change of track cannot outrun it."""
    state = state or {"shown": [], "unchecked": []}
    held = set(checked or [])
    unchecked = [n for n in state["unchecked"] if n not in state["shown"]]
    unchecked += [n for n in state["shown"] if n not in held]
    present = _present_sources(board, track)
    return [n for n in present if n not in unchecked], {"shown": present, "unchecked": unchecked}


def _present_sources(board: Board, track: int) -> list[str]:
    """The names of the sources with rows in ``track``, in the board's order."""
    present = set(board.frame.loc[board.frame["track"] == track, "source"])
    return [s.name for s in board.sources if s.name in present]


def render_view(
    board: Board,
    track_id: int,
    dataset_name: str | None,
    source_names: list[str],
    y: YAxis,
    x: XAxis,
    text: str,
    unranked: bool,
    folder: Path,
) -> tuple[Any, str, str]:
    """One view of the board: the plot, the table (the rows that match ``text``; the Pareto
    front the whole selection's) and the CSV of those rows, written in ``folder``."""
    rows = filter_leaderboard(
        board.frame, track=track_id, sources=source_names, dataset=dataset_name, unranked=unranked
    )
    found = matching(rows, text)
    title = f"Track {track_id} · {dataset_name or 'no results'}"
    path = to_csv(rows[found], folder / f"rtsr_leaderboard_track{track_id}.csv")
    names = [s.name for s in board.sources]  # every source, for stable colours
    figure = leaderboard_figure(rows, y=y, x=x, title=title, sources=names, highlight=found)
    front = pareto_front(rows, y, x)
    return figure, table_html(rows[found], front[found], y), str(path)


def selected_details(board: Board, track_id: int, dataset_name: str | None, key: Any) -> str:
    """The per-image results of the row ``key`` (a row's key, as the table sends it), and
    where it was measured; a note where the row is gone (the board was reloaded)."""
    rows = filter_leaderboard(board.frame, track=track_id, dataset=dataset_name)
    row = find_row(rows, key) if isinstance(key, str) else None
    if row is None:
        return "*That row is no longer on the leaderboard (it was reloaded): select it again.*"
    return details_markdown(row_details(row, board.sources))


def _controls(board: Board, tracks: list[int]) -> dict[str, Any]:
    """The view's controls: track, test set, sources; the axes and the search; the unranked rows."""
    frame = board.frame
    first_sets = datasets(frame, tracks[0])
    first_sources = _present_sources(board, tracks[0])
    first_rows = filter_leaderboard(frame, track=tracks[0], dataset=first_sets[0] if first_sets else None)
    with gr.Row():
        track = gr.Radio(
            [(track_label(t), t) for t in tracks], value=tracks[0], label="Track", scale=2, elem_id="lb-track"
        )
        dataset = gr.Dropdown(
            first_sets,
            value=first_sets[0] if first_sets else None,
            label="Test set",
            scale=1,
            # wide enough for "NTIRE 2023 test": on a phone it takes a line of its own
            min_width=240,
            elem_id="lb-dataset",
        )
        sources = gr.CheckboxGroup(
            first_sources,
            value=first_sources,
            label="Sources",
            info="Only the sources with results for this track",
            scale=2,
            elem_id="lb-sources",
        )
    with gr.Row():
        y_axis = gr.Radio(
            [(label, key) for key, label in Y_AXES.items()],
            value="score",
            label="Quality axis",
            info="Score: the challenge's ranking (PSNR gain over bicubic against runtime); PSNR: quality alone",
            elem_id="lb-y",
        )
        x_axis = gr.Radio(
            [(label, key) for key, label in X_AXES.items()],
            value="runtime_ms",
            label="Runtime axis",
            info="Relative to bicubic on the same device compares across devices; milliseconds do not",
            elem_id="lb-x",
        )
        query = gr.Textbox(
            label="Search method, team or device",
            info="Fades the other points; the Pareto front stays the whole selection's",
            placeholder=search_placeholder(first_rows),
            elem_id="lb-query",
        )
    unranked = gr.Checkbox(
        False,
        label="Also show rows not timed at 4K (marked, not ranked)",
        info="Their milliseconds are not per 4K output: no score, no place on the Pareto front",
        elem_id="lb-unranked",
    )
    return {
        "track": track, "dataset": dataset, "sources": sources, "y": y_axis, "x": x_axis, "query": query,
        "unranked": unranked,
    }  # fmt: skip


def build_leaderboard_tab(board: Board, workdir: Path) -> LeaderboardView:
    """The tab's components and events; returns what the page's refresh needs."""
    # the board's frame is read at each view: a refresh replaces it
    errors = gr.Markdown(errors_markdown(board), elem_id="leaderboard-errors")
    frame = board.frame
    tracks = sorted(int(t) for t in frame["track"].unique()) if len(frame) else list(TRACK_SCALES)
    c = _controls(board, tracks)
    inputs = [c["track"], c["dataset"], c["sources"], c["y"], c["x"], c["query"], c["unranked"]]

    def on_view(
        track_id: int,
        dataset_name: str | None,
        source_names: list[str],
        y: YAxis,
        x: XAxis,
        text: str,
        unranked: bool = False,
    ) -> Iterator[tuple[Any, str, str]]:
        folder = Path(tempfile.mkdtemp(dir=workdir))
        try:
            yield render_view(board, track_id, dataset_name, source_names, y, x, text or "", bool(unranked), folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # Gradio has its own copy of the CSV

    view = (c["track"].value, c["dataset"].value, c["sources"].value, c["y"].value, c["x"].value)
    first = render_view(board, *view, "", False, workdir)
    plot = gr.Plot(first[0], elem_id="leaderboard-plot")
    note = gr.Markdown(track_note(board, tracks[0]), elem_id="leaderboard-note")
    gr.Markdown(
        "Click a header to sort by it (again to reverse); hover it for what it means. Select a row for its"
        " per-image results and where it was measured."
    )
    table = gr.HTML(first[1], js_on_load=_TABLE_JS, apply_default_css=False, elem_id="leaderboard-table")
    details = gr.Markdown(elem_id="leaderboard-details")
    csv = gr.DownloadButton("Download CSV (full precision)", value=first[2], elem_id="leaderboard-csv")
    # the sources the checkbox shows, and those this page unchecked (see _sources_for)
    shown_sources = gr.State({"shown": c["sources"].value, "unchecked": []})

    def on_track(track_id: int, checked: list[str] | None, state: dict[str, list[str]] | None) -> tuple[Any, ...]:
        sets = datasets(board.frame, track_id)
        chosen, state = _sources_for(board, track_id, checked, state)
        return (
            gr.Dropdown(choices=sets, value=sets[0] if sets else None),
            gr.CheckboxGroup(choices=state["shown"], value=chosen),
            track_note(board, track_id),
            "",
            state,
        )

    def on_select(track_id: int, dataset_name: str | None, event: gr.EventData) -> str:
        return selected_details(board, track_id, dataset_name, getattr(event, "row", None))

    outputs = [plot, table, csv]
    private: dict[str, Any] = {"api_visibility": "private"}
    # .then: the dataset's value may not change with the track (Set5 in both), so no .change fires
    track_outputs = [c["dataset"], c["sources"], note, details, shown_sources]
    changed = c["track"].change(on_track, [c["track"], c["sources"], shown_sources], track_outputs, **private)
    # One queue for every redraw, one at a time: each listener has a queue of its own, so two
    # quick changes (a source unticked, then the track) could otherwise be drawn in the wrong
    # order, the older view last. A redraw takes a few hundred ms.
    one_queue: dict[str, Any] = {"concurrency_id": "leaderboard-view", "concurrency_limit": 1}
    changed.then(on_view, inputs, outputs, **private, **one_queue)
    for control in (c["dataset"], c["sources"], c["y"], c["x"], c["unranked"]):
        control.input(on_view, inputs, outputs, **private, **one_queue)
    # .change, not .input: a box emptied by Backspace or select-all + Delete must show every row again
    c["query"].change(on_view, inputs, outputs, **private, trigger_mode="always_last", **one_queue)
    table.select(on_select, [c["track"], c["dataset"]], details, **private)
    controls = [errors, c["dataset"], c["sources"], note, shown_sources]
    return LeaderboardView(board, inputs, outputs, [*inputs, shown_sources], controls, on_view)
