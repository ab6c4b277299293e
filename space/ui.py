"""The Gradio app: components wired to the rtsr library, and nothing else.

Four tabs: Upscale (space.upscale_tab), Leaderboard (space.leaderboard_tab), Submit
(space.submit, the request store) and About (space.about); the page refreshes what the store
changes (:class:`Live`).
Errors a user can act on (rtsr's own exceptions) become a ``gr.Error`` with their one-line
message; anything else is logged with its traceback and shown
as a one-line internal error, and the server stays up.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rtsr.errors import RTSRError, first_line
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.requests import Store
from rtsr.submissions.submission import MAX_UNZIPPED_BYTES
from space.about import ABOUT, INTRO, SUBMIT_INTRO, TITLE
from space.about import CSS as ABOUT_CSS
from space.batch import CSS as BATCH_CSS
from space.leaderboard_tab import CSS as LEADERBOARD_CSS
from space.leaderboard_tab import Board, LeaderboardView, build_leaderboard_tab
from space.settings import Settings
from space.submit import CSS as SUBMIT_CSS
from space.submit import SubmitView, build_submit_tab, queue_version
from space.upscale_tab import UPSCALE_CSS, build_upscale_tab, model_b_state, model_choices

logger = logging.getLogger(__name__)

#: The page's styles, each part from the module that builds what it styles (``launch(css=...)``).
PAGE_CSS = ABOUT_CSS + LEADERBOARD_CSS + SUBMIT_CSS + UPSCALE_CSS + BATCH_CSS


def build_demo(
    pool: ModelPool,
    board: Board,
    settings: Settings,
    workdir: Path,
    inline_dir: Path,
    store: Store | None = None,
) -> gr.Blocks:
    """The whole app. ``workdir`` holds the files it writes (previews, PNGs, CSVs) until
    Gradio has copied them into its cache; ``inline_dir`` the images sent as data: URLs, each
    until its request is answered. With a request ``store``, the Submit tab takes requests
    and shows the queues, and the page refreshes what the workers add (see :class:`Live`)."""
    # Gradio deletes the uploads and results it knows of once settings.temp_file_age old
    # (space.doors.TempStore bounds the folder's size and sweeps the rest)
    delete_cache = (max(1, min(60, settings.temp_file_age // 2)), settings.temp_file_age)
    # no usage analytics: the app makes no network calls of its own
    with gr.Blocks(title=TITLE, delete_cache=delete_cache, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        submit_tab: SubmitView | None = None
        with gr.Tabs():
            with gr.Tab("Upscale", id="upscale"):
                upscale = build_upscale_tab(pool, settings, workdir, inline_dir)
            with gr.Tab("Leaderboard", id="leaderboard"):
                leaderboard = build_leaderboard_tab(board, workdir)
            if store is not None:
                with gr.Tab("Submit", id="submit"):
                    # a zip may expand to 4x an upload's size, within the app's temporary folder
                    unzipped = min(MAX_UNZIPPED_BYTES, 4 * settings.max_file_bytes)
                    submit_tab = build_submit_tab(store, settings.daily_limit, SUBMIT_INTRO, workdir, unzipped)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)
        if store is not None and submit_tab is not None:
            models = (upscale.model, upscale.model_b) if upscale is not None else None
            _wire_refresh(demo, Live(pool, board, store, settings.refresh), models, leaderboard, submit_tab)
    return demo


class Live:
    """The page's view of what changes while it runs: the evaluated models (``pool``), the
    leaderboard (``board``) and the queues (``store``). Every open page asks every
    :data:`POLL_S` seconds; the store is looked at once per :data:`POLL_S` for all of them
    (one query of a database, one request for a dataset's head on the Hub), and the models
    and the leaderboard are read again only when it changed (a request made, claimed,
    finished or failed; the Hub gone or back) or ``period`` seconds went by."""

    def __init__(self, pool: ModelPool, board: Board, store: Store, period: float) -> None:
        self.pool, self.board, self.store, self.period = pool, board, store, period
        self._lock = threading.Lock()
        self._version, self._loaded_at = queue_version(store), time.monotonic()
        self._looked_at = self._loaded_at
        self._shown = self._digest()

    def _digest(self) -> str:
        """What the pages show, in one short string: the store's version (the queues), the
        models served, the leaderboard's rows and the errors said above it, and whether the Hub
        answers. A reload that changed none of them changes nothing on any page: an open page
        is not redrawn, and the choices its reader is making are not overwritten."""
        digest = hashlib.sha256()
        for part in (
            self._version,
            repr(sorted((k, d.name) for k, d in self.pool.models.items())),
            self.board.frame.to_csv(),
            repr(self.board.errors),
            repr(self.store.unreachable),
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:16]

    def current(self, loading: bool = False) -> str:
        """The state the page should show: reloads first if the store changed or the period
        passed; returns a token (:meth:`_digest`) that changes when what is shown did. The store is
        looked at once per :data:`POLL_S`; for a page ``loading``, once per :data:`LOAD_S`
        (it shows the store as it is, not as it was a poll ago, and a burst of visitors
        still costs the Hub one request a second at most)."""
        with self._lock:
            now = time.monotonic()
            if now - self._looked_at >= (LOAD_S if loading else POLL_S):
                self._looked_at = now
                version = queue_version(self.store)
                if version != self._version or now - self._loaded_at >= self.period:
                    try:
                        added = self.pool.refresh(self.store.registry())
                    except RTSRError as e:  # the store unreadable: the models stay as they are
                        logger.warning("the evaluated registry cannot be read: %s", first_line(e))
                        added = []
                    self.board.reload()
                    if added:
                        logger.info("now serving %s", ", ".join(added))
                    self._version, self._loaded_at = version, now
                self._shown = self._digest()
            return self._shown


#: Seconds between the page's looks at the store (each one SQLite query, or one request for
#: the head of a dataset on the Hub).
POLL_S = 5.0
#: The oldest look at the store a page that has just loaded may be shown, in seconds.
LOAD_S = 1.0


def _wire_refresh(
    demo: gr.Blocks,
    live: Live,
    models: tuple[gr.Dropdown, gr.Dropdown] | None,
    leaderboard: LeaderboardView,
    submit_tab: SubmitView,
) -> None:
    """Every page shows the store's state as it loads (the page's first values are the
    state when the app started), then polls it once per :data:`POLL_S`."""
    # the state the page's first values show: a page loaded before anything changed is current
    seen = gr.State(live.current())
    timer = gr.Timer(POLL_S)
    # the models' dropdowns, and what model A and B are now (model B's choices follow A's)
    model_io = list(models or ())
    outputs = [seen, *model_io, *leaderboard.controls, *leaderboard.outputs, *submit_tab.outputs]
    inputs = [seen, *model_io, *leaderboard.refresh_inputs]

    def updates(token: str, last: str, values: tuple[Any, ...]) -> list[Any]:
        if token == last:
            return [gr.skip()] * len(outputs)
        changed: list[Any] = [token]
        if models is not None:
            model_a, model_b, *values = values  # type: ignore[assignment]
            a = model_a if model_a in live.pool.models else next(iter(live.pool.models))
            b_state = model_b_state(live.pool, a, model_b)
            changed += [gr.Dropdown(choices=model_choices(live.pool)), gr.Dropdown(**b_state)]
        changed += leaderboard.refresh(*values)
        changed += submit_tab.refresh()
        return changed

    def on_tick(last: str, *values: Any) -> Iterator[list[Any]]:
        yield updates(live.current(), last, values)

    def on_load(last: str, *values: Any) -> Iterator[list[Any]]:
        yield updates(live.current(loading=True), last, values)

    # every open page ticks: unlimited concurrency, so that ticks never wait behind an upscale
    # (or fill the queue that upscales wait in); most return at once with nothing to change
    for event, fn in ((timer.tick, on_tick), (demo.load, on_load)):
        event(
            fn,
            inputs,
            outputs,
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )
