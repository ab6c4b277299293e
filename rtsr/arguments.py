"""argparse value types shared by the CLI and the app's settings: each turns bad text into
argparse's one-line usage error."""

from __future__ import annotations

import argparse
import re

from rtsr.bundled import BUNDLED_PREFIX
from rtsr.bundled import folder as resolve_folder
from rtsr.errors import InputError

#: What a help text says of a folder of HR images that may be a bundled test set.
HR_FOLDER_HELP = f"a folder of HR images, or {BUNDLED_PREFIX}Set5 for the one bundled with rtsr"


def hr_folder(text: str) -> str:
    """A folder of HR images: a path as given, or ``bundled:<name>`` for a test set bundled
    with rtsr (found wherever rtsr is installed)."""
    try:
        return str(resolve_folder(text))
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def non_negative_int(text: str) -> int:
    """``text`` as a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """``text`` as a whole number >= 1."""
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"8GB"``, ``"512MiB"``, ``"50mb"`` (Gradio's notation), ``"2g"`` or a number of bytes, as
    bytes. Units are powers of 1024, as ``ulimit``, ``free`` and Gradio count them.

    Raises:
        ValueError: not a size above 0.
    """
    match = _SIZE.match(text)
    value = int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " ")) if match else 0
    if value <= 0:
        raise ValueError(f"expected a size such as 512MB or 8GB, got {text!r}")
    return value


def byte_size(text: str) -> int:
    """argparse type: :func:`parse_size`."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
