"""Writing outputs so that a failed run leaves nothing half-written: folders and JSON files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rtsr.errors import InputError


@contextlib.contextmanager
def staged_output_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh folder beside ``target``; on success move its files into ``target``.

    A run that fails part-way leaves nothing behind: ``target`` never holds a partial set of
    outputs that looks complete. Files already in ``target`` with the same names are replaced.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a folder")
    parent = target.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=parent))
    except OSError as e:
        raise InputError(f"{target}: cannot create output folder ({e.strerror})") from None
    try:
        yield stage
        if not target.exists():
            stage.rename(target)
            return
        for item in stage.iterdir():
            item.replace(target / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_json(document: dict[str, Any], path: str | Path) -> None:
    """Write a JSON document atomically: readers never see a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
