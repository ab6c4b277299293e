"""What rtsr ships beside its code, and where its state lives by default.

The bundled models and their registry (``submissions/``), the bundled test set
(``testsets/Set5``) and the leaderboard's tables (``leaderboard/``) are the repository's own
folders in a clone. Installed with pip they are package data under ``rtsr/data/``, read
through :mod:`importlib.resources`, so the library and the ``rtsr`` command work from any
folder. The store of requests is ``store/`` in a clone (the Space runs from one) and a user
folder otherwise.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Final

from rtsr.errors import InputError

#: The folder above the ``rtsr`` package: a clone's root, or site-packages once installed.
_ABOVE_PACKAGE: Final = Path(__file__).resolve().parents[1]
#: How a folder option names a bundled test set, wherever rtsr is installed: ``bundled:Set5``.
BUNDLED_PREFIX: Final = "bundled:"


def in_clone() -> bool:
    """Whether rtsr runs from a clone of its repository (not from an installed wheel)."""
    return (_ABOVE_PACKAGE / "pyproject.toml").is_file() and (_ABOVE_PACKAGE / "submissions").is_dir()


def bundled(name: str) -> Path:
    """The bundled folder ``name`` (``submissions``, ``testsets`` or ``leaderboard``): the
    clone's own folder, or the installed package data."""
    if in_clone():
        return _ABOVE_PACKAGE / name
    # a wheel installs as files, so the package data is a real folder
    return Path(str(resources.files("rtsr").joinpath("data", name)))


def test_set(name: str) -> Path:
    """The bundled test set ``name`` (a folder of HR images).

    Raises:
        InputError: no bundled test set of that name.
    """
    root = bundled("testsets")
    path = root / name
    if not name or "/" in name or not path.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) if root.is_dir() else "none"
        raise InputError(f"{BUNDLED_PREFIX}{name}: no such bundled test set (bundled: {known})")
    return path


test_set.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name


def folder(spec: str | Path) -> Path:
    """A folder option's value as a path: ``bundled:<name>`` is a bundled test set, anything
    else a path as given."""
    text = os.fspath(spec)
    if text.startswith(BUNDLED_PREFIX):
        return test_set(text.removeprefix(BUNDLED_PREFIX))
    return Path(text)


def default_store_folder() -> Path:
    """Where requests and results are kept unless ``$RTSR_STORE`` says otherwise: ``store/``
    in a clone, else ``$XDG_DATA_HOME/rtsr/store`` (``~/.local/share/rtsr/store``)."""
    if in_clone():
        return _ABOVE_PACKAGE / "store"
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "rtsr" / "store"
