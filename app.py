"""The Real-Time Super-Resolution Space: ``python app.py [--help]``.

Loads every registered model (hashes checked) and the shipped leaderboard, then serves the
Gradio app. Needs no network and no token; settings are in space/settings.py and README.md.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# On a ZeroGPU Space, spaces must be imported before torch initialises CUDA.
with contextlib.suppress(ImportError):
    import spaces  # noqa: F401

from rtsr.errors import RTSRError, first_line
from rtsr.leaderboard import EVALUATIONS_DIR, OFFICIAL_CSV, load_leaderboard_leniently
from rtsr.serving import ModelPool
from rtsr.submissions.registry import Registry
from space.settings import Settings, parse_settings
from space.ui import Board, build_demo

logger = logging.getLogger("rtsr.app")


def launch(settings: Settings) -> None:
    """Build the app from ``settings`` and serve it until interrupted."""
    pool = ModelPool(Registry.read(settings.registry), settings.device)
    for model_id, reason in pool.failures.items():
        logger.warning("not serving %s: %s", model_id, reason)
    logger.info("serving %s on %s (%s)", ", ".join(pool.models) or "no models", pool.device_name, pool.precision)
    frame, errors = load_leaderboard_leniently(
        settings.leaderboard_dir / OFFICIAL_CSV.name, settings.leaderboard_dir / EVALUATIONS_DIR.name
    )
    for error in errors:
        logger.warning("left out of the leaderboard: %s", error)
    board = Board(frame, [f"left out of the leaderboard: {e}" for e in errors])
    with tempfile.TemporaryDirectory(prefix="rtsr-space-") as workdir:
        demo = build_demo(pool, board, settings, Path(workdir))
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            max_file_size=settings.max_file_size,
            show_error=True,
            footer_links=["api", "gradio"],
        )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one line per HTTP request from Gradio's own client would drown the app's messages
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = parse_settings(argv)
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
