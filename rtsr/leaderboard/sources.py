"""Where the leaderboard's rows come from: a list of sources, each with a name, a description
and ``load()``.

Two kinds:

* :class:`OfficialTable`: ``leaderboard/ntire23_track1_final.csv``, the challenge's Track 1
  final table (x2, 1080p -> 4K), measured by the organizers in FP16 on an NVIDIA RTX 3090 on
  their test set. Kept as reported: its scores are not recomputed, its SSIM on Y is unknown.
* :class:`EvaluationFolder`: a folder of ``rtsr evaluate`` documents (schema
  ``rtsr.evaluate`` v1), one row each: the bundled ``leaderboard/evaluations/``, or, with
  ``recursive=True``, the ``results/<request>/<set>.json`` of a submissions store.

:func:`default_sources` is the bundled pair; a source more is one more item, e.g.
``[*default_sources(), EvaluationFolder("Submissions", store.results_dir, recursive=True)]``.
:func:`load_leaderboard` loads a list of them into one frame. Loading never fails on a bad
file: each source loads what it can and names each file it left out (a corrupt or
half-written document, a broken table), so that one broken file never empties the page.

Reference rows (``is_reference``) are bicubic: the official table's ``Bicubic`` row and our
documents of ``bicubic``, ``bicubic-x2`` or ``bicubic-x3`` (never a worker's document of a
submission, whatever its id). Their score is 0.0 in both
(the official table leaves it empty): :func:`rtsr.scoring.score` gives 0 for no gain, and a
number rather than NaN keeps the column sortable and plottable.

Runtimes in milliseconds compare only within one device and precision; ``relative_runtime``
(runtime over bicubic's, both timed on the same device for the same set) is the one that
travels across devices. Nothing here runs at import time; files are read when asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

import numpy as np
import pandas as pd

from rtsr.bundled import bundled
from rtsr.constants import TRACK_SCALES
from rtsr.errors import InputError, RTSRError, first_line
from rtsr.leaderboard.columns import empty_leaderboard, frame_of, retyped
from rtsr.results.metrics import METRICS
from rtsr.results.schema import Evaluation, read_evaluation

LEADERBOARD_DIR: Final = bundled("leaderboard")
OFFICIAL_CSV: Final = LEADERBOARD_DIR / "ntire23_track1_final.csv"
EVALUATIONS_DIR: Final = LEADERBOARD_DIR / "evaluations"

#: The names of the default sources, as the Source column and the app's checkboxes show them.
SOURCE_OFFICIAL: Final = "NTIRE 2023 (reported)"
SOURCE_EVALUATED: Final = "rtsr evaluate"

#: The columns the official CSV must have (named as the metrics' keys), and its reference row.
_OFFICIAL_FIELDS: Final = ("team", "score", "params_m", "flops_g", "psnr_rgb", "psnr_y", "ssim_rgb", "runtime_ms")
_OFFICIAL_REFERENCE: Final = "Bicubic"


class Loaded(NamedTuple):
    """What a source (or the whole leaderboard) loaded: the rows, and one line per file left out."""

    frame: pd.DataFrame
    problems: list[str]


class Source(Protocol):
    """A source of leaderboard rows."""

    @property
    def name(self) -> str:
        """What the Source column and the app's checkbox say."""
        ...

    @property
    def description(self) -> str:
        """One sentence for people: what the rows are and who measured them."""
        ...

    def load(self) -> Loaded:
        """The rows (their ``source`` is :attr:`name`) and a message for each file left out;
        never raises for a bad file."""
        ...

    def evaluation(self, document: str) -> Evaluation:
        """The results document of one of its rows (the row's ``document`` column), read
        again: its per-image metrics and where it was measured.

        Raises:
            InputError: the source keeps no documents, or this one is gone or unreadable.
        """
        ...


@dataclass(frozen=True)
class OfficialTable:
    """The official Track 1 table (24 teams and the bicubic reference) as a CSV whose
    columns are :data:`_OFFICIAL_FIELDS`, named as the metrics' keys."""

    path: Path = OFFICIAL_CSV
    name: str = SOURCE_OFFICIAL
    description: str = (
        "The challenge's final Track 1 table as published: its test set, FP16 on an NVIDIA RTX 3090;"
        " scores as reported."
    )
    #: The dataset, device, precision and track of every row, as the challenge reports them.
    dataset: str = "NTIRE 2023 test"
    device: str = "NVIDIA RTX 3090 (reported)"
    precision: str = "fp16"
    track: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def read(self) -> pd.DataFrame:
        """The table's rows.

        Scores are kept as reported (rounded to 0.01); the reference's empty score becomes
        0.0. ``psnr_gain`` is each PSNR RGB minus the ``Bicubic`` row's, ``relative_runtime``
        each runtime over the ``Bicubic`` row's, ``fps`` 1000 over the runtime; a metric the
        CSV has no column for (SSIM on Y) is NaN.

        Raises:
            InputError: the file is missing or unreadable, lacks a column, holds a non-number,
                or has no single ``Bicubic`` row.
        """
        path = self.path
        try:
            raw = pd.read_csv(path, dtype={"team": "str"})
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise InputError(f"{path}: cannot read the official table ({first_line(e)})") from None
        missing = [f for f in _OFFICIAL_FIELDS if f not in raw.columns]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
        numbers: dict[str, np.ndarray] = {}
        for m in METRICS:
            if m.key not in raw.columns:
                continue
            try:
                numbers[m.key] = pd.to_numeric(raw[m.key], errors="raise").to_numpy(dtype="float64")
            except (ValueError, TypeError) as e:
                raise InputError(f"{path}: column {m.key} holds a non-number ({first_line(e)})") from None
        teams = raw["team"].fillna("").str.strip()
        is_reference = (teams == _OFFICIAL_REFERENCE).to_numpy()
        if is_reference.sum() != 1:
            raise InputError(f"{path}: expected one {_OFFICIAL_REFERENCE!r} row, found {int(is_reference.sum())}")
        reference = int(np.flatnonzero(is_reference)[0])
        runtime = numbers["runtime_ms"]
        derived = {
            "score": np.where(is_reference, 0.0, numbers["score"]),
            "psnr_gain": numbers["psnr_rgb"] - numbers["psnr_rgb"][reference],
            "relative_runtime": runtime / runtime[reference],
            "fps": 1000.0 / runtime,
        }
        values = {m.key: derived.get(m.key, numbers.get(m.key, np.full(len(raw), math.nan))) for m in METRICS}
        records = [
            {
                "track": self.track,
                "scale": TRACK_SCALES[self.track],
                "method": team,
                "team": "",
                "source": self.name,
                "dataset": self.dataset,
                "device": self.device,
                "precision": self.precision,
                "engine": "eager",
                "device_type": "cuda",
                **{key: column[i] for key, column in values.items()},
                "license": "",
                "link": "",
                "is_reference": bool(is_reference[i]),
                "ranked": True,  # the challenge's own protocol, at 4K
                "model_id": "",
                "document": "",
            }
            for i, team in enumerate(teams)
        ]
        return frame_of(records)

    def load(self) -> Loaded:
        """:meth:`read`; an unreadable table gives no rows and says why."""
        try:
            return Loaded(self.read(), [])
        except InputError as e:
            return Loaded(empty_leaderboard(), [first_line(e)])

    def evaluation(self, document: str) -> Evaluation:
        """Always raises: the challenge published one mean per team, not per image."""
        raise InputError(f"{self.name}: the challenge published only each team's means, not per-image results")


@dataclass(frozen=True)
class EvaluationFolder:
    """Every ``*.json`` of ``folder`` (and of its sub-folders, with ``recursive``), one row
    each. Files whose names start with a dot (a writer's temporary files) are skipped; a
    folder that does not exist (yet) has no rows."""

    name: str
    folder: Path
    recursive: bool = False
    description: str = "Results documents of rtsr evaluate, each with the device and precision that measured it."

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    def paths(self) -> list[Path]:
        """The documents, sorted by their path below :attr:`folder`."""
        if not self.folder.is_dir():
            return []
        found = self.folder.rglob("*.json") if self.recursive else self.folder.glob("*.json")
        return sorted((p for p in found if not p.name.startswith(".") and p.is_file()), key=lambda p: p.parts)

    def load(self) -> Loaded:
        """One row per valid document; each file that is not one is named, with why, and
        left out."""
        rows, problems = [], []
        for path in self.paths():
            try:
                document = path.relative_to(self.folder).as_posix()
                rows.append(evaluation_row(read_evaluation(path), self.name, document))
            except InputError as e:
                problems.append(first_line(e))
        return Loaded(frame_of(rows), problems)

    def evaluation(self, document: str) -> Evaluation:
        """The document at ``document`` below :attr:`folder` (never outside it)."""
        path = (self.folder / document).resolve()
        if not document or not path.is_relative_to(self.folder.resolve()) or path.suffix != ".json":
            raise InputError(f"{self.name}: no results document {document!r}")
        if not path.is_file():
            raise InputError(f"{self.name}: {document} is no longer there (removed since the page loaded)")
        return read_evaluation(path)


@dataclass(frozen=True)
class FollowedFolder:
    """An :class:`EvaluationFolder` whose folder is asked for each time it is read: a store on
    the Hub reads each new head into a folder of its own. A folder that cannot be had now (the
    Hub unreachable at the first read) leaves the source's rows out, with why."""

    name: str
    where: Callable[[], Path]
    recursive: bool = False
    description: str = EvaluationFolder.description

    def _now(self) -> EvaluationFolder:
        return EvaluationFolder(self.name, self.where(), self.recursive, self.description)

    def load(self) -> Loaded:
        try:
            folder = self._now()
        except RTSRError as e:
            return Loaded(frame_of([]), [f"{self.name}: {first_line(e)}"])
        return folder.load()

    def evaluation(self, document: str) -> Evaluation:
        return self._now().evaluation(document)


#: The ids of the reference: the registry's ``bicubic-x2``/``bicubic-x3`` and the CLI's built-in.
REFERENCE_IDS: Final = frozenset({"bicubic", "bicubic-x2", "bicubic-x3"})


def _is_reference(evaluation: Evaluation) -> bool:
    # only our own bicubic: a worker's document (it names a submission) never is, whatever its id
    return evaluation.submission is None and evaluation.model_id in REFERENCE_IDS


def evaluation_row(evaluation: Evaluation, source: str, document: str = "") -> dict[str, Any]:
    """One checked document as one leaderboard row (a dict keyed by column) of ``source``:
    every metric read as :data:`METRICS` says, the submission's team, license and link where
    the document names a submission; ``document`` is where the source keeps it."""
    submission = evaluation.submission
    ranked = evaluation.timed_at_4k
    metrics = {m.key: m.read(evaluation) for m in METRICS}
    if not ranked:
        # its milliseconds are not per 4K output: no score to rank it by beside 4K rows
        metrics["score"] = math.nan
    return {
        "track": evaluation.track,
        "scale": evaluation.scale,
        # an evaluated submission reads as which one it is, beside others of its method
        "method": submission.label(evaluation.text("model.name")) if submission else evaluation.text("model.name"),
        "team": submission.team if submission else "",
        "source": source,
        "dataset": evaluation.dataset,
        "device": evaluation.device,
        "precision": evaluation.precision,
        "engine": evaluation.runtime_engine,
        "device_type": evaluation.device_type,
        **metrics,
        "license": submission.license if submission else "",
        "link": submission.link if submission else "",
        "is_reference": _is_reference(evaluation),
        "ranked": ranked,
        "model_id": evaluation.model_id,
        "document": document,
    }


def default_sources(leaderboard_dir: str | Path = LEADERBOARD_DIR) -> list[Source]:
    """The bundled sources below ``leaderboard_dir``: the official table
    (``ntire23_track1_final.csv``), then our evaluations (``evaluations/``)."""
    folder = Path(leaderboard_dir)
    return [
        OfficialTable(folder / OFFICIAL_CSV.name),
        EvaluationFolder(
            SOURCE_EVALUATED,
            folder / EVALUATIONS_DIR.name,
            description="Our evaluations of the bundled models with rtsr evaluate, each on the device"
            " and in the precision named in its row.",
        ),
    ]


def load_leaderboard(sources: Iterable[Source] | None = None) -> Loaded:
    """The rows of each source in turn (default: :func:`default_sources`), with a fresh
    index, and every source's problems, in order.

    Raises:
        ValueError: two sources have the same name (their rows could not be told apart).
    """
    sources = default_sources() if sources is None else list(sources)
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"leaderboard sources must have distinct names, got {', '.join(map(repr, names))}")
    frames, problems = [], []
    for source in sources:
        loaded = source.load()
        frames.append(loaded.frame)
        problems.extend(loaded.problems)
    return Loaded(combine(frames), problems)


def combine(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Leaderboard frames one after the other, with a fresh index."""
    # Empty frames would only muddy concat's dtype inference; the retyping settles the rest.
    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_leaderboard()
    return retyped(pd.concat(parts, ignore_index=True))
