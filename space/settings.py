"""The app's settings: command-line flags, each defaulting to an environment variable.

Flags win over variables, variables over the defaults; ``python app.py --help`` lists them.
Hugging Face Spaces sets ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``, which are honoured too.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rtsr.arguments import byte_size, parse_size, positive_int
from rtsr.leaderboard.sources import LEADERBOARD_DIR
from rtsr.submissions.registry import BUNDLED_REGISTRY
from rtsr.submissions.requests import DAILY_LIMIT, DEFAULT_STORE

#: The shipped leaderboard: the official table and ``evaluations/``.
DEFAULT_LEADERBOARD_DIR = LEADERBOARD_DIR


@dataclass(frozen=True)
class Settings:
    """How the app runs."""

    host: str = "127.0.0.1"
    port: int = 7860
    #: Largest model input in pixels; None picks by device (see rtsr.serving).
    max_input_pixels: int | None = None
    registry: Path = BUNDLED_REGISTRY
    leaderboard_dir: Path = DEFAULT_LEADERBOARD_DIR
    #: "cuda" or "cpu"; None uses CUDA when present.
    device: str | None = None
    #: Requests that run at once; 1 fits one GPU (and a 2-core CPU).
    concurrency: int = 1
    #: Requests that may wait in the queue before new ones are turned away.
    queue_size: int = 32
    #: Largest upload, e.g. "50mb" (powers of 1024, as Gradio counts).
    max_file_size: str = "50mb"
    #: Most the app's temporary folder (uploads, results) holds; the oldest files go first.
    temp_dir_size: str = "2gb"
    #: Seconds an upload or a result is kept.
    temp_file_age: int = 1800
    #: The request store: requests, results and the evaluated models' registry; a folder,
    #: or ``hf://datasets/ORG/NAME`` for a Hub dataset.
    store: str = str(DEFAULT_STORE)
    #: Requests one signed-in user may make in 24 hours.
    daily_limit: int = DAILY_LIMIT
    #: Seconds between the page's refreshes of the queues, the leaderboard and the models.
    refresh: int = 60
    #: "local": evaluate pending requests in a worker thread of the app; "none": leave them to
    #: ``python -m rtsr worker`` processes.
    worker: str = "none"
    #: Evaluated (unreviewed) models whose sandboxed processes may run at once.
    max_live_models: int = 4

    @property
    def max_file_bytes(self) -> int:
        """:attr:`max_file_size` in bytes."""
        return parse_size(self.max_file_size)

    @property
    def temp_dir_bytes(self) -> int:
        """:attr:`temp_dir_size` in bytes."""
        return parse_size(self.temp_dir_size)


def _size(text: str) -> str:
    """argparse type: a size (:func:`rtsr.arguments.parse_size`), checked, kept as written."""
    byte_size(text)
    return text.strip().lower()


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (``argv``, default ``sys.argv[1:]``) and ``environ`` (default
    ``os.environ``). Bad values exit with argparse's one-line usage error (status 2)."""
    env = os.environ if environ is None else environ
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="The Real-Time Super-Resolution Space: upscale with registered models, and the leaderboard.",
    )

    def env_default(name: str, fallback: object, *aliases: str) -> str | None:
        for key in (name, *aliases):
            if env.get(key):
                return env[key]
        return None if fallback is None else str(fallback)

    parser.add_argument(
        "--host",
        default=env_default("RTSR_HOST", defaults.host, "GRADIO_SERVER_NAME"),
        help="address to listen on [$RTSR_HOST, $GRADIO_SERVER_NAME; default %(default)s]",
    )
    parser.add_argument(
        "--port",
        type=positive_int,
        default=env_default("RTSR_PORT", defaults.port, "GRADIO_SERVER_PORT"),
        help="port [$RTSR_PORT, $GRADIO_SERVER_PORT; default %(default)s]",
    )
    parser.add_argument(
        "--max-input-pixels",
        type=positive_int,
        default=env_default("RTSR_MAX_INPUT_PIXELS", None),
        help="largest model input in pixels, run in tiles above the one-pass size"
        " [$RTSR_MAX_INPUT_PIXELS; default 3840*2160 on a GPU, 1920*1080 on a CPU]",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=env_default("RTSR_REGISTRY", defaults.registry),
        help="the registry of models to serve [$RTSR_REGISTRY; default submissions/registry.json]",
    )
    parser.add_argument(
        "--leaderboard-dir",
        type=Path,
        default=env_default("RTSR_LEADERBOARD_DIR", defaults.leaderboard_dir),
        help="folder with the official table and evaluations/ [$RTSR_LEADERBOARD_DIR; default leaderboard/]",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=env_default("RTSR_DEVICE", None),
        help="where models run [$RTSR_DEVICE; default cuda when present, else cpu]",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=env_default("RTSR_CONCURRENCY", defaults.concurrency),
        help="requests that run at once [$RTSR_CONCURRENCY; default %(default)s]",
    )
    parser.add_argument(
        "--queue-size",
        type=positive_int,
        default=env_default("RTSR_QUEUE_SIZE", defaults.queue_size),
        help="requests that may wait [$RTSR_QUEUE_SIZE; default %(default)s]",
    )
    parser.add_argument(
        "--max-file-size",
        type=_size,
        default=env_default("RTSR_MAX_FILE_SIZE", defaults.max_file_size),
        help="largest upload, e.g. 50mb [$RTSR_MAX_FILE_SIZE; default %(default)s]",
    )
    parser.add_argument(
        "--temp-dir-size",
        type=_size,
        default=env_default("RTSR_TEMP_DIR_SIZE", defaults.temp_dir_size),
        help="most the app's temporary folder (uploads, results) holds; the oldest files go first"
        " [$RTSR_TEMP_DIR_SIZE; default %(default)s]",
    )
    parser.add_argument(
        "--temp-file-age",
        type=positive_int,
        default=env_default("RTSR_TEMP_FILE_AGE", defaults.temp_file_age),
        help="seconds an upload or a result is kept [$RTSR_TEMP_FILE_AGE; default %(default)s]",
    )
    parser.add_argument(
        "--store",
        default=env_default("RTSR_STORE", defaults.store),
        help="the request store (requests, results, evaluated models): a folder, or hf://datasets/ORG/NAME,"
        " a Hub dataset, where the state outlives a Space's restarts [$RTSR_STORE; default store/]",
    )
    parser.add_argument(
        "--daily-limit",
        type=positive_int,
        default=env_default("RTSR_DAILY_LIMIT", defaults.daily_limit),
        help="requests one signed-in user may make in 24 hours [$RTSR_DAILY_LIMIT; default %(default)s]",
    )
    parser.add_argument(
        "--refresh",
        type=positive_int,
        default=env_default("RTSR_REFRESH", defaults.refresh),
        help="seconds between refreshes of the queues, leaderboard and models [$RTSR_REFRESH; default %(default)s]",
    )
    parser.add_argument(
        "--worker",
        choices=("none", "local"),
        default=env_default("RTSR_WORKER", defaults.worker),
        help="local: evaluate requests in a worker thread of the app; none: leave them to"
        " `python -m rtsr worker` [$RTSR_WORKER; default %(default)s]",
    )
    parser.add_argument(
        "--max-live-models",
        type=positive_int,
        default=env_default("RTSR_MAX_LIVE_MODELS", defaults.max_live_models),
        help="evaluated models whose sandboxed processes may run at once [$RTSR_MAX_LIVE_MODELS; default %(default)s]",
    )
    args = parser.parse_args(argv)
    if parse_size(args.temp_dir_size) < 3 * parse_size(args.max_file_size):
        # an input, its ground truth and the results must fit at once
        parser.error(
            f"--temp-dir-size {args.temp_dir_size} must hold at least 3 uploads of --max-file-size {args.max_file_size}"
        )
    # argparse applies `type` to string defaults too, so env values are checked like flags
    return Settings(
        host=args.host,
        port=args.port,
        max_input_pixels=args.max_input_pixels,
        registry=Path(args.registry),
        leaderboard_dir=Path(args.leaderboard_dir),
        device=args.device,
        concurrency=args.concurrency,
        queue_size=args.queue_size,
        max_file_size=args.max_file_size,
        temp_dir_size=args.temp_dir_size,
        temp_file_age=args.temp_file_age,
        store=str(args.store),
        daily_limit=args.daily_limit,
        refresh=args.refresh,
        worker=args.worker,
        max_live_models=args.max_live_models,
    )
