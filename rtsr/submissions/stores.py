"""The store an address names: a Hub dataset (``hf://datasets/ORG/NAME``) or a local folder.
Above both kinds of store, so that neither imports the other."""

from __future__ import annotations

import os
from pathlib import Path

from rtsr.submissions.hub_store import HubStore
from rtsr.submissions.requests import DEFAULT_STORE, STORE_ENV, SqliteStore, Store


def open_store(spec: str | Path | None = None) -> Store:
    """The store ``spec`` names (``$RTSR_STORE``, else :data:`DEFAULT_STORE`, when
    None): ``hf://datasets/ORG/NAME`` is a Hub dataset, anything else a local folder.

    Raises:
        InputError: a folder that cannot be created, or an ``hf://`` address that is not a
            dataset's.
    """
    text = str(spec) if spec is not None else os.environ.get(STORE_ENV) or str(DEFAULT_STORE)
    if text.startswith("hf:"):  # hf:/datasets/... too (a path's spelling of it): never a folder
        return HubStore(text)
    return SqliteStore(text)
