"""The exceptions rtsr raises for problems a user can act on.

Each carries a one-line message meant to be shown as is: the CLI prints it on stderr and
exits non-zero, the app shows it in the page. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` with every control or format character (ESC, a carriage return, a
    right-to-left override...) but a tab shown as ``?``: text from a submission, a folder
    name or a reason, safe to print on a terminal, where an escape sequence could redraw
    what came before."""
    return "".join("?" if unicodedata.category(c)[0] == "C" and c != "\t" else c for c in text)


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message cut to its first line (at most ``limit`` characters), or its
    class name when it has none: enough to act on, never a dump, and printable."""
    text = str(error).strip()
    return printable(text.splitlines()[0][:limit]) if text else error.__class__.__name__


class RTSRError(Exception):
    """Base class of every error that carries a message for the user."""


class InputError(RTSRError, ValueError):
    """An input file, folder or value that cannot be used (unreadable, mismatched, empty)."""


class ModelError(RTSRError):
    """A model that cannot be built, loaded or run as asked."""


class DeviceError(RTSRError):
    """A device or precision that this host cannot provide (e.g. CUDA without a GPU)."""


class SubmissionError(RTSRError):
    """A submission that is malformed, broken, or refused (missing files, bad code, hostile)."""
