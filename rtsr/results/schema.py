"""The ``rtsr.evaluate`` results document: its schema, reading it back, writing it.

``rtsr.evaluate`` writes one document per model and test set (docs/cli.md documents every
field); the leaderboard, the app and the model card read them. This module names the schema
once and checks a document against it, without torch: the leaderboard reads documents that
were measured elsewhere.

Version 1 holds, besides what :data:`FIELDS` lists, the per-image metrics
(``metrics.images``, ``bicubic.images``), the rest of the runtime statistics and the model's
descriptor; readers rely only on :data:`FIELDS`. An optional ``submission`` object
(:class:`SubmissionRecord`) says which Hub submission a document measures, when an evaluation
worker wrote it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from rtsr.constants import TARGET_SIZE, TRACK_SCALES
from rtsr.errors import InputError, first_line
from rtsr.outputs import write_json

SCHEMA: Final = "rtsr.evaluate"
SCHEMA_VERSION: Final = 1

FieldKind = Literal["str", "int", "number", "number or null"]

#: What every document holds and readers rely on: dotted path -> kind. ``number`` is an int
#: or a float, never a bool, never NaN, and finite (the per-image lists may hold ``Infinity``,
#: the PSNR of identical images, but a mean may not);
#: ``number or null`` may be ``null`` for unknown (FLOPs when the counter could not run).
FIELDS: Final[dict[str, FieldKind]] = {
    "created": "str",
    "rtsr_version": "str",
    "model.id": "str",
    "model.name": "str",
    "model.scale": "int",
    "model.track": "int",
    "model.params": "number",
    "model.flops": "number or null",
    "dataset.name": "str",
    "dataset.images": "int",
    "device": "str",
    "precision": "str",
    **{
        f"{who}.mean.{m}": "number"
        for who in ("metrics", "bicubic")
        for m in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")
    },
    "runtime.timer": "str",
    "runtime.runtime.mean_ms": "number",
    "runtime.runtime.passes": "int",
    "runtime.bicubic.mean_ms": "number",
    "runtime.relative_to_bicubic": "number",
    "psnr_gain": "number",
    "score": "number",
}

#: The Hub's address of a model repo; a submission's link must be one (the page shows it as a link).
HUB_URL: Final = "https://huggingface.co/"
_URL = re.compile(r"https://huggingface\.co/[\w./@%+-]+")
_REPO = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class SubmissionRecord:
    """Which submission a document measures: the optional ``submission`` object that an
    evaluation worker adds. Every field may be absent or null (empty here): a local
    submission has no repo and no link."""

    #: The evaluation request's id.
    request: str = ""
    #: ``org/name`` on the Hub.
    repo: str = ""
    #: The evaluated commit (``sha256:...`` over the files of a local submission).
    commit: str = ""
    team: str = ""
    license: str = ""
    #: ``https://huggingface.co/org/name/tree/<commit>``: the repo at the evaluated commit.
    url: str = ""
    #: Who made the request (a Hub username, or who queued a local folder).
    submitter: str = ""

    def label(self, method: str) -> str:
        """How an evaluated entry reads wherever its name appears (the model lists, the
        slider, the metrics, the board, its legend and hover): ``method`` with the team (or
        the submitter), then the repo at its short commit for a Hub entry, or the request
        for a local one. Two entries of one method, say the bundled RTSRN queued twice, or
        queued beside the bundled one, never read alike: ``RTSRN x2 · rtsr baselines ·
        req-00001``."""
        who = self.team or self.submitter
        where = f"{self.repo}@{self.commit[:7]}" if self.repo else self.request
        return " · ".join(part for part in (method, who, where) if part)

    @property
    def link(self) -> str:
        """Where the submission can be seen: :attr:`url`, else the repo at :attr:`commit`
        on the Hub, else empty."""
        if self.url:
            return self.url
        if self.repo:
            return f"{HUB_URL}{self.repo}" + (f"/tree/{self.commit}" if self.commit else "")
        return ""

    @classmethod
    def from_document(cls, document: Mapping[str, Any], where: str) -> SubmissionRecord | None:
        """The document's ``submission``, or None without one.

        Raises:
            InputError: it is not an object, a field is not text, the repo is not
                ``org/name`` or the url not a ``https://huggingface.co/`` address.
        """
        raw = document.get("submission")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise InputError(f"{where}: submission is not an object ({type(raw).__name__})")
        values: dict[str, str] = {}
        for name in ("request", "repo", "commit", "team", "license", "url", "submitter"):
            value = raw.get(name)
            if value is not None and not isinstance(value, str):
                raise InputError(f"{where}: submission.{name} is not text ({value!r})")
            values[name] = (value or "").strip()
        if values["repo"] and not _REPO.fullmatch(values["repo"]):
            raise InputError(f"{where}: submission.repo is not org/name ({values['repo']!r})")
        if values["url"] and not _URL.fullmatch(values["url"]):
            raise InputError(f"{where}: submission.url is not a {HUB_URL} address ({values['url']!r})")
        return cls(**values)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A checked ``rtsr.evaluate`` document: every field of :data:`FIELDS` is there with its
    kind, the track and scale agree, and the ``submission`` (if any) is well formed.

    ``where`` names the document in messages (its path, for a file).
    """

    document: Mapping[str, Any]
    where: str
    submission: SubmissionRecord | None

    @classmethod
    def from_document(cls, document: Any, where: str) -> Evaluation:
        """Check ``document`` against the schema.

        Raises:
            InputError: not an object, another schema or version, a field missing or of the
                wrong kind, an unknown track, or a scale that is not its track's; one line
                that starts with ``where``.
        """
        if not isinstance(document, dict):
            raise InputError(f"{where}: not an {SCHEMA} document (top level is not an object)")
        schema, version = document.get("schema"), document.get("schema_version")
        if schema != SCHEMA or version != SCHEMA_VERSION:
            raise InputError(f"{where}: schema {schema!r} v{version!r}, expected {SCHEMA!r} v{SCHEMA_VERSION}")
        for dotted, kind in FIELDS.items():
            _check(_lookup(document, dotted, where), kind, dotted, where)
        track, scale = document["model"]["track"], document["model"]["scale"]
        if track not in TRACK_SCALES:
            raise InputError(f"{where}: model.track is {track}, expected one of {', '.join(map(str, TRACK_SCALES))}")
        if scale != TRACK_SCALES[track]:
            raise InputError(f"{where}: model.scale is {scale}, but Track {track} is x{TRACK_SCALES[track]}")
        _check_derived(document, where)
        return cls(document, where, SubmissionRecord.from_document(document, where))

    def text(self, dotted: str) -> str:
        """A ``str`` field of :data:`FIELDS`."""
        return str(_lookup(self.document, dotted, self.where))

    def integer(self, dotted: str) -> int:
        """An ``int`` field of :data:`FIELDS`."""
        return int(_lookup(self.document, dotted, self.where))

    def number(self, dotted: str) -> float:
        """A ``number`` field of :data:`FIELDS` as a float; NaN where a ``number or null``
        field is null."""
        value = _lookup(self.document, dotted, self.where)
        return math.nan if value is None else float(value)

    @property
    def model_id(self) -> str:
        return self.text("model.id")

    @property
    def dataset(self) -> str:
        return self.text("dataset.name")

    @property
    def timed_at_4k(self) -> bool:
        """Whether the runtime was timed at the challenge's 4K output (documents without the
        output size predate shortened protocols, and were)."""
        size = self.document.get("runtime", {}).get("output_size")
        return not (isinstance(size, list | tuple) and len(size) == 2 and tuple(size) != TARGET_SIZE)

    @property
    def device(self) -> str:
        """The device that measured it, e.g. ``NVIDIA H100 80GB HBM3``; with the output size
        when the runtime was timed at another than the challenge's 4K (its milliseconds then
        compare with nothing timed at 4K)."""
        if not self.timed_at_4k:
            h, w = self.document["runtime"]["output_size"]
            return f"{self.text('device')} (timed at {w}x{h}, not 4K)"
        return self.text("device")

    @property
    def precision(self) -> str:
        return self.text("precision")

    @property
    def device_type(self) -> str:
        """``"cuda"`` (a GPU) or ``"cpu"``: the document's ``device_type``, else what its
        runtime's timer implies (CUDA events on a GPU, a wall clock on a CPU)."""
        kind = self.document.get("device_type")
        if kind in ("cuda", "cpu"):
            return str(kind)
        return "cuda" if self.text("runtime.timer").startswith("cuda") else "cpu"

    def images(self, who: Literal["metrics", "bicubic"] = "metrics") -> list[dict[str, Any]]:
        """The per-image metrics of the model (``"metrics"``) or of bicubic: one dict per
        image with ``name`` and the four metrics of ``metrics.mean`` (floats), in the
        document's order.

        Raises:
            InputError: the document holds no per-image list, or an entry lacks a name or a
                metric (readers need not rely on them: they are not in :data:`FIELDS`).
        """
        raw = self.document.get(who, {}).get("images")
        if not isinstance(raw, list):
            raise InputError(f"{self.where}: no per-image results ({who}.images)")
        keys = list(self.document[who]["mean"])
        images = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise InputError(f"{self.where}: {who}.images[{i}] has no name")
            values = {}
            for key in keys:
                value = entry.get(key)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InputError(f"{self.where}: {who}.images[{i}].{key} is not a number ({value!r})")
                values[key] = float(value)
            images.append({"name": entry["name"], **values})
        return images

    @property
    def runtime_engine(self) -> str:
        """The engine the runtime was timed in: ``runtime.engine``, "eager" (the challenge's
        rule) where the document predates the field."""
        engine = self.document.get("runtime", {}).get("engine", "eager")
        return engine if isinstance(engine, str) and engine else "eager"

    @property
    def track(self) -> int:
        return self.integer("model.track")

    @property
    def scale(self) -> int:
        return self.integer("model.scale")


def _lookup(document: Mapping[str, Any], dotted: str, where: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InputError(f"{where}: not a valid {SCHEMA} v{SCHEMA_VERSION} document (no {dotted})")
        value = value[part]
    return value


def _check(value: Any, kind: FieldKind, dotted: str, where: str) -> None:
    # bool is an int to Python, never a measurement or a count to us
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "str" and not isinstance(value, str):
        raise InputError(f"{where}: {dotted} is not text ({value!r})")
    if kind == "int" and not is_int:
        raise InputError(f"{where}: {dotted} is not an integer ({value!r})")
    numeric = kind == "number" or (kind == "number or null" and value is not None)
    if numeric and not (is_int or isinstance(value, float)):
        raise InputError(f"{where}: {dotted} is not a number ({value!r})")


#: How far a derived field may be from what its measurements give (relative): float rounding
#: only; the writer computes each from the same numbers.
DERIVED_TOLERANCE: Final = 1e-9


def _check_derived(document: Mapping[str, Any], where: str) -> None:
    """The measurements are numbers (no NaN; a runtime finite and positive; an infinite PSNR
    only per image, never in a mean the board shows), and what is derived from them (the
    gain, the score, the runtime over bicubic's) is what they give: the board shows nothing
    that a hand edit or a forged document could set apart from its measurements."""
    from rtsr.scoring import score

    for dotted, kind in FIELDS.items():
        value = _lookup(document, dotted, where)
        if kind != "str" and isinstance(value, float) and math.isnan(value):
            raise InputError(f"{where}: {dotted} is NaN")
    for dotted in ("runtime.runtime.mean_ms", "runtime.bicubic.mean_ms"):
        value = _lookup(document, dotted, where)
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{where}: {dotted} is {value}, not a positive number of ms")
    for who in ("metrics", "bicubic"):
        for metric in ("psnr_rgb", "psnr_y"):
            value = document[who]["mean"][metric]
            if not math.isfinite(value):
                raise InputError(
                    f"{where}: {who}.mean.{metric} is {value}: outputs equal to the ground truth are not a result"
                )
    psnr, bicubic_psnr = document["metrics"]["mean"]["psnr_rgb"], document["bicubic"]["mean"]["psnr_rgb"]
    runtime = document["runtime"]
    derived = {
        "psnr_gain": psnr - bicubic_psnr,
        "score": score(psnr, runtime["runtime"]["mean_ms"], bicubic_psnr),
        "runtime.relative_to_bicubic": runtime["runtime"]["mean_ms"] / runtime["bicubic"]["mean_ms"],
    }
    for dotted, expected in derived.items():
        value = _lookup(document, dotted, where)
        if not math.isclose(value, expected, rel_tol=DERIVED_TOLERANCE, abs_tol=DERIVED_TOLERANCE):
            raise InputError(f"{where}: {dotted} is {value:g}, but its measurements give {expected:g}")


def read_evaluation(path: str | Path) -> Evaluation:
    """Read and check one document.

    Raises:
        InputError: the file is unreadable or not JSON (a half-written file reads as such),
            or the document is not a valid ``rtsr.evaluate`` v1 document; one line that
            starts with the path.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a readable JSON file ({first_line(e)})") from None
    return Evaluation.from_document(document, str(path))


def write_evaluation(document: Mapping[str, Any], path: str | Path) -> Path:
    """Check ``document`` and write it as JSON, atomically (readers never see half of it);
    return the path. ``Infinity`` stands for an infinite PSNR, as Python's json and pandas
    read back.

    Raises:
        InputError: the document is not valid (nothing is written), or the file cannot be
            written.
    """
    path = Path(path)
    Evaluation.from_document(dict(document), str(path))
    write_json(dict(document), path)
    return path
