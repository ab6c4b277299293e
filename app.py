"""The Real-Time Super-Resolution Space: ``python app.py [--help]``.

Loads every registered model (hashes checked) and the shipped leaderboard, then serves the
Gradio app. Needs no network and no token; settings are in space/settings.py and docs/app.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

# On a ZeroGPU Space, spaces must be imported before torch initialises CUDA.
with contextlib.suppress(ImportError):
    import spaces  # noqa: F401

from starlette.middleware import Middleware

from rtsr.errors import RTSRError, first_line
from rtsr.leaderboard import FollowedFolder, default_sources, load_leaderboard
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import Registry
from rtsr.submissions.requests import Store, StoreError
from rtsr.submissions.sandbox import isolation_note
from rtsr.submissions.stores import open_store
from space.doors import Doors, TempStore
from space.settings import Settings, parse_settings

logger = logging.getLogger("rtsr.app")


def launch(settings: Settings) -> None:
    """Build the app from ``settings`` and serve it until interrupted."""
    requests = open_store(settings.store)
    try:
        evaluated: Registry | None = requests.registry()
    except StoreError as e:
        # the page says so, and the models come once the store reads (the next poll)
        logger.warning("the evaluated models are not served for now: %s", first_line(e))
        evaluated = None
    pool = ModelPool(
        Registry.read(settings.registry),
        settings.device,
        evaluated=evaluated,
        max_live=settings.max_live_models,
    )
    stop = threading.Event()
    worker = _start_worker(settings, requests, stop)
    try:
        _serve(settings, pool, requests)
    finally:
        stop.set()
        if worker is not None:
            # between requests it stops at once; in the middle of one, it is left to die with
            # the app (its sandboxed processes with it) and its lease returns the request
            worker.join(timeout=5)
        pool.close()  # the sandboxed model processes, and their scratch folders


def _start_worker(settings: Settings, requests: Store, stop: threading.Event) -> threading.Thread | None:
    """With ``--worker local``, a thread that evaluates pending requests (each in the sandbox)."""
    if settings.worker != "local":
        return None
    from rtsr.submissions.backends import LocalBackend
    from rtsr.submissions.worker import Worker

    worker = Worker(requests, LocalBackend())
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop}, name="rtsr-worker", daemon=True)
    thread.start()
    logger.info("evaluating requests from %s in this process (worker %s)", requests.describe(), worker.name)
    return thread


def _serve(settings: Settings, pool: ModelPool, requests: Store) -> None:
    for model_id, reason in pool.failures.items():
        logger.warning("not serving %s: %s", model_id, reason)
    logger.info(
        "serving %s on %s, each in the fastest engine within 45 dB of its FP32 output (chosen on first use)",
        ", ".join(pool.models) or "no models",
        pool.device_name,
    )
    logger.info("models run in the sandbox: %s", isolation_note() or "bubblewrap (no network, read-only files)")
    logger.info("request store: %s", requests.describe())
    sources = [
        *default_sources(settings.leaderboard_dir),
        FollowedFolder(
            "Submissions",
            lambda: requests.results_dir,
            recursive=True,
            description="Submissions evaluated by this Space's worker, on its test set, on the device each row names.",
        ),
    ]
    frame, errors = load_leaderboard(sources)
    for error in errors:
        logger.warning("left out of the leaderboard: %s", error)
    # Everything the app writes, Gradio's uploads and cache included, lies in one folder that
    # goes when the app stops (main() turns SIGTERM into the same clean exit as Ctrl-C).
    with tempfile.TemporaryDirectory(prefix="rtsr-space-") as workdir:
        gradio_dir = Path(workdir) / "gradio"
        # Gradio reads this when it is imported (hence the import below) and as each component
        # is made
        os.environ["GRADIO_TEMP_DIR"] = str(gradio_dir)
        from space.leaderboard_tab import Board
        from space.ui import PAGE_CSS, build_demo

        board = Board(frame, [f"left out of the leaderboard: {e}" for e in errors], sources)
        store = TempStore(gradio_dir, settings.temp_dir_bytes, settings.temp_file_age)
        demo = build_demo(pool, board, settings, Path(workdir), gradio_dir / "inline", requests)
        # api_open=False: Gradio's /run/ routes, which skip the queue, refuse every handler
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size, api_open=False)
        public = frozenset(fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public" and fn.api_name)
        # a request may carry two images inline (base64: 4 characters for 3 bytes), and little else
        max_body = 3 * settings.max_file_bytes
        doors = Middleware(Doors, public=public, max_file_size=settings.max_file_bytes, max_body=max_body, store=store)
        store.keep_present()
        store.start()
        try:
            demo.launch(
                server_name=settings.host,
                server_port=settings.port,
                max_file_size=settings.max_file_bytes,
                show_error=True,
                css=PAGE_CSS,
                footer_links=["api", "gradio"],
                app_kwargs={"middleware": [doors]},
            )
        finally:
            store.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """``python app.py``: serve until interrupted; 1 with a one-line message if it cannot start."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one line per HTTP request from Gradio's own client would drown the app's messages
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = parse_settings(argv)
    # SIGTERM (docker stop, a Space restarting) ends the app as Ctrl-C does, so that its
    # temporary folder is deleted rather than left behind
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        launch(settings)
    except RTSRError as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
