"""argparse value types shared by the CLI and the app's settings: each turns bad text into
argparse's one-line usage error."""

from __future__ import annotations

import argparse


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


def byte_size(text: str) -> int:
    """``text`` as a number of bytes: ``8GB``, ``512MB``, ``2g`` (powers of 1024)."""
    from rtsr.submissions.sandbox import parse_size

    try:
        value = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value == 0:
        raise argparse.ArgumentTypeError("expected a size above 0")
    return value
