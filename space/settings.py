"""The app's settings: command-line flags, each defaulting to an environment variable.

Flags win over variables, variables over the defaults; ``python app.py --help`` lists them.
Hugging Face Spaces sets ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``, which are honoured too.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rtsr.arguments import byte_size, parse_size, positive_int
from rtsr.leaderboard.sources import LEADERBOARD_DIR
from rtsr.submissions.registry import BUNDLED_REGISTRY
from rtsr.submissions.requests import DAILY_LIMIT, DEFAULT_STORE

#: The shipped leaderboard: the official table and ``evaluations/``.
DEFAULT_LEADERBOARD_DIR = LEADERBOARD_DIR


def setting(
    default: Any,
    env: str,
    help: str,
    type: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    aliases: tuple[str, ...] = (),
    shown_default: str | None = None,
) -> Any:
    """A field of :class:`Settings` with all that its flag needs: the environment variable it
    defaults to (then ``aliases``, e.g. Gradio's own), the argparse ``type`` or ``choices``
    that check flags and variables alike, and the help (the default said as ``shown_default``
    where the value itself would not tell it)."""
    meta = {"env": env, "help": help, "type": type, "choices": choices, "aliases": aliases, "shown": shown_default}
    return field(default=default, metadata=meta)


def _size(text: str) -> str:
    """argparse type: a size (:func:`rtsr.arguments.parse_size`), checked, kept as written."""
    byte_size(text)
    return text.strip().lower()


@dataclass(frozen=True)
class Settings:
    """How the app runs: each field is a flag of ``python app.py`` (``--max-file-size`` for
    ``max_file_size``) defaulting to an environment variable, declared here once."""

    host: str = setting("127.0.0.1", "RTSR_HOST", "address to listen on", aliases=("GRADIO_SERVER_NAME",))
    port: int = setting(7860, "RTSR_PORT", "port", positive_int, aliases=("GRADIO_SERVER_PORT",))
    #: Largest model input in pixels; None picks by device (see rtsr.serving).
    max_input_pixels: int | None = setting(
        None,
        "RTSR_MAX_INPUT_PIXELS",
        "largest model input in pixels, run in tiles above the one-pass size",
        positive_int,
        shown_default="3840*2160 on a GPU, 1920*1080 on a CPU",
    )
    registry: Path = setting(
        BUNDLED_REGISTRY,
        "RTSR_REGISTRY",
        "the registry of models to serve",
        Path,
        shown_default="submissions/registry.json",
    )
    leaderboard_dir: Path = setting(
        DEFAULT_LEADERBOARD_DIR,
        "RTSR_LEADERBOARD_DIR",
        "folder with the official table and evaluations/",
        Path,
        shown_default="leaderboard/",
    )
    #: "cuda" or "cpu"; None uses CUDA when present.
    device: str | None = setting(
        None, "RTSR_DEVICE", "where models run", choices=("cpu", "cuda"), shown_default="cuda when present, else cpu"
    )
    #: Requests that run at once; 1 fits one GPU (and a 2-core CPU).
    concurrency: int = setting(1, "RTSR_CONCURRENCY", "requests that run at once", positive_int)
    #: Requests that may wait in the queue before new ones are turned away.
    queue_size: int = setting(32, "RTSR_QUEUE_SIZE", "requests that may wait", positive_int)
    #: Largest upload, e.g. "50mb" (powers of 1024, as Gradio counts).
    max_file_size: str = setting("50mb", "RTSR_MAX_FILE_SIZE", "largest upload, e.g. 50mb", _size)
    #: Most the app's temporary folder (uploads, results) holds; the oldest files go first.
    temp_dir_size: str = setting(
        "2gb",
        "RTSR_TEMP_DIR_SIZE",
        "most the app's temporary folder (uploads, results) holds; the oldest files go first",
        _size,
    )
    #: Seconds an upload or a result is kept.
    temp_file_age: int = setting(1800, "RTSR_TEMP_FILE_AGE", "seconds an upload or a result is kept", positive_int)
    #: The request store: requests, results and the evaluated models' registry; a folder,
    #: or ``hf://datasets/ORG/NAME`` for a Hub dataset.
    store: str = setting(
        str(DEFAULT_STORE),
        "RTSR_STORE",
        "the request store (requests, results, evaluated models): a folder, or hf://datasets/ORG/NAME,"
        " a Hub dataset, where the state outlives a Space's restarts",
        shown_default="store/",
    )
    #: Requests one signed-in user may make in 24 hours.
    daily_limit: int = setting(
        DAILY_LIMIT, "RTSR_DAILY_LIMIT", "requests one signed-in user may make in 24 hours", positive_int
    )
    #: Seconds between the page's refreshes of the queues, the leaderboard and the models.
    refresh: int = setting(
        60, "RTSR_REFRESH", "seconds between refreshes of the queues, leaderboard and models", positive_int
    )
    #: "local": evaluate pending requests in a worker thread of the app; "none": leave them to
    #: ``python -m rtsr worker`` processes.
    worker: str = setting(
        "none",
        "RTSR_WORKER",
        "local: evaluate requests in a worker thread of the app; none: leave them to `python -m rtsr worker`",
        choices=("none", "local"),
    )
    #: Evaluated (unreviewed) models whose sandboxed processes may run at once.
    max_live_models: int = setting(
        4, "RTSR_MAX_LIVE_MODELS", "evaluated models whose sandboxed processes may run at once", positive_int
    )

    @property
    def max_file_bytes(self) -> int:
        """:attr:`max_file_size` in bytes."""
        return parse_size(self.max_file_size)

    @property
    def temp_dir_bytes(self) -> int:
        """:attr:`temp_dir_size` in bytes."""
        return parse_size(self.temp_dir_size)


def flag(name: str) -> str:
    """The flag of the field ``name``: ``--max-file-size`` for ``max_file_size``."""
    return "--" + name.replace("_", "-")


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags (``argv``, default ``sys.argv[1:]``) and ``environ`` (default
    ``os.environ``): a flag wins over its variable, the variable over the default. Bad values
    exit with argparse's one-line usage error (status 2)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="The Real-Time Super-Resolution Space: upscale with registered models, and the leaderboard.",
    )
    for f in fields(Settings):
        meta = f.metadata
        variables = (meta["env"], *meta["aliases"])
        given = next((env[v] for v in variables if env.get(v)), None)
        # argparse applies `type` to string defaults too, so a variable is checked as a flag is
        default = given if given is not None else (None if f.default is None else str(f.default))
        shown = meta["shown"] or "%(default)s"
        kwargs: dict[str, Any] = {"type": meta["type"]} if meta["type"] else {"choices": meta["choices"]}
        names = ", ".join(f"${v}" for v in variables)
        parser.add_argument(flag(f.name), default=default, help=f"{meta['help']} [{names}; default {shown}]", **kwargs)
    args = parser.parse_args(argv)
    if parse_size(args.temp_dir_size) < 3 * parse_size(args.max_file_size):
        # an input, its ground truth and the results must fit at once
        parser.error(
            f"--temp-dir-size {args.temp_dir_size} must hold at least 3 uploads of --max-file-size {args.max_file_size}"
        )
    return Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
