"""The challenge's submission format: finding a submission's files in a folder, a zip or a
Hub repository, and reading its metadata.

A submission is a folder (or ``submission_<id>.zip``) holding ``arch.py`` with a
``srmodel()`` that takes no arguments and returns the model with its weights loaded, an
optional ``utils/`` package, a checkpoint (``.pth``, ``.pt`` or ``.safetensors``), ``results/``
with the SR outputs as PNG, and ``requirements.txt`` for anything extra: the challenge's
layout, accepted as it is. ``submission.json``, our one addition, is optional: it holds what
the files cannot say (team, license, links) and may declare the scale and the pad multiple.
Without it the scale is unknown here (:attr:`SubmissionMeta.scale` is None) until the model
is run (:func:`rtsr.submissions.loader.infer_scale`, in the sandbox for unknown code), and
the submission goes by its name (the folder's, the zip's ``<id>``, the Hub repo's).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rtsr.constants import SCALES, TRACK_SCALES
from rtsr.errors import SubmissionError, first_line, printable
from rtsr.models import CHECKPOINT_SUFFIXES
from rtsr.submissions.layout import ARCH_FILE, METADATA_FILE, RESULTS_DIR
from rtsr.submissions.sandbox import format_bytes

#: Files and folders a zip may carry that are not part of the submission.
_JUNK = {"__MACOSX", ".DS_Store", "__pycache__", ".git"}
#: A zip that expands beyond this is refused (a zip bomb, or not a real-time model).
MAX_UNZIPPED_BYTES = 2 * 1024**3
#: Bounds on a zip's members, checked before anything is extracted: how many, how deep a path
#: (folders within folders), how long a path; and on the extraction's time, seconds.
MAX_ZIP_MEMBERS = 1000
MAX_ZIP_DEPTH = 16
MAX_ZIP_NAME = 255
MAX_UNZIP_S = 60.0
#: ``org/name@<40-hex commit>``: a Hub model repository pinned to one commit.
HUB_SPEC = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)@(?P<revision>[0-9a-f]{40})$")


@dataclass(frozen=True)
class SubmissionMeta:
    """The contents of ``submission.json``, every field optional (all empty without the file)."""

    #: 2 or 3; None when nothing declares it (no ``submission.json``, or none in it): then the
    #: model is run to find it, and :meth:`Submission.with_scale` records what was found.
    scale: int | None = None
    team: str = ""
    method: str = ""
    license: str = ""
    training_data: str = ""
    links: dict[str, str] = field(default_factory=dict)
    #: LR sides the model accepts must be multiples of this; 0 means "find out by trying".
    pad_multiple: int = 0

    @property
    def track(self) -> int | None:
        """The challenge track of the scale (1 for x2, 2 for x3), or None while it is unknown."""
        return next((t for t, s in TRACK_SCALES.items() if s == self.scale), None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SubmissionMeta:
        """Validate a parsed ``submission.json``; ``where`` names it in errors."""
        if not isinstance(data, dict):
            raise SubmissionError(f"{where}: must hold a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SubmissionError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "scale" in data and data["scale"] not in SCALES:
            raise SubmissionError(f"{where}: 'scale' must be 2 or 3 (or left out), got {data['scale']!r}")
        for key in ("team", "method", "license", "training_data"):
            if not isinstance(data.get(key, ""), str):
                raise SubmissionError(f"{where}: {key!r} must be a string")
        links = data.get("links", {})
        if not isinstance(links, dict) or not all(isinstance(v, str) for v in links.values()):
            raise SubmissionError(f"{where}: 'links' must map names to URLs")
        pad = data.get("pad_multiple", 0)
        if not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad <= 256:
            raise SubmissionError(f"{where}: 'pad_multiple' must be a whole number from 0 to 256")
        return cls(**data)


@dataclass(frozen=True)
class Submission:
    """A submission's files on local disk, and where they came from."""

    root: Path
    meta: SubmissionMeta
    #: What the user named: a folder, a zip, or ``org/name@revision``.
    source: str
    #: A short name: the folder's, the zip's ``<id>``, or the Hub repo's.
    name: str
    #: The Hub commit for Hub sources, else None.
    revision: str | None = None

    @property
    def arch(self) -> Path:
        return self.root / ARCH_FILE

    @property
    def checkpoints(self) -> list[Path]:
        """Weight files anywhere in the submission but ``results/``, sorted."""
        return sorted(p for p in _files(self.root) if p.suffix in CHECKPOINT_SUFFIXES)

    @property
    def code_files(self) -> list[Path]:
        """Python files that ``srmodel()`` may execute, sorted."""
        return sorted(p for p in _files(self.root) if p.suffix == ".py")

    @property
    def results_dir(self) -> Path:
        return self.root / RESULTS_DIR

    @property
    def has_metadata(self) -> bool:
        """Whether the submission ships a ``submission.json`` (it is optional)."""
        return (self.root / METADATA_FILE).is_file()

    def with_scale(self, scale: int) -> Submission:
        """This submission with its scale known: given by the user (``--scale``), recorded in
        the registry, or found by running the model.

        Raises:
            ValueError: ``scale`` is not one of the challenge's.
            SubmissionError: ``submission.json`` declares another scale.
        """
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        if self.meta.scale is not None and self.meta.scale != scale:
            raise SubmissionError(
                f"{self.root / METADATA_FILE} declares x{self.meta.scale}, not x{scale}; correct one or the other"
            )
        return replace(self, meta=replace(self.meta, scale=scale))

    def without_root(self, message: str) -> str:
        """``message`` without the server's path to the submission: for people who must not
        learn where it lies (a participant reading why a request failed)."""
        root = str(self.root)
        return message.replace(f"{root}/", "").replace(f"{root}: ", "").replace(root, ".")

    def hashes(self) -> dict[str, str]:
        """sha256 of every code and weight file, by path relative to the root (POSIX)."""
        return {p.relative_to(self.root).as_posix(): sha256_file(p) for p in self.code_files + self.checkpoints}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    """Every file below ``root`` except ``results/`` and junk."""
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).parts
        if rel[0] == RESULTS_DIR or any(part in _JUNK for part in rel) or not path.is_file():
            continue
        out.append(path)
    return out


def find_root(folder: Path) -> Path:
    """The folder holding ``arch.py``: ``folder`` itself, or its single top-level folder.

    Raises:
        SubmissionError: no ``arch.py`` in either place.
    """
    if (folder / ARCH_FILE).is_file():
        return folder
    entries = [p for p in folder.iterdir() if p.name not in _JUNK]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / ARCH_FILE).is_file():
        return entries[0]
    raise SubmissionError(f"{folder}: no {ARCH_FILE} (a submission needs {ARCH_FILE} with srmodel())")


def read_meta(root: Path) -> SubmissionMeta:
    """``root``'s ``submission.json``, or empty metadata (scale unknown) when it has none.

    Raises:
        SubmissionError: the file is not valid JSON or holds a bad field.
    """
    path = root / METADATA_FILE
    if not path.is_file():
        return SubmissionMeta()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SubmissionError(f"{path}: not valid JSON ({e})") from None
    return SubmissionMeta.from_dict(data, str(path))


def _extract_zip(path: Path, cache: Path, max_bytes: int = MAX_UNZIPPED_BYTES) -> Path:
    """Extract a zip once into ``cache/<sha256>``, within bounds: at most
    :data:`MAX_ZIP_MEMBERS` members, none deeper than :data:`MAX_ZIP_DEPTH` or named longer
    than :data:`MAX_ZIP_NAME`, none outside the folder, ``max_bytes`` in all (counted as they
    are written, whatever the zip declares) and :data:`MAX_UNZIP_S` seconds. Nothing is left
    of a zip that breaks one. Messages name the zip and the member, not where they lie.

    Raises:
        SubmissionError: not a zip, or a bound broken (one line).
    """
    digest = sha256_file(path)
    target = cache / digest
    if target.is_dir():
        return target
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ZIP_MEMBERS:
                raise SubmissionError(f"{name}: {len(members)} members, over the limit of {MAX_ZIP_MEMBERS}")
            for m in members:
                shown = printable(m.filename[:80]) + ("..." if len(m.filename) > 80 else "")
                member = Path(m.filename)
                if member.is_absolute() or ".." in member.parts:
                    raise SubmissionError(f"{name}: member {shown!r} would land outside the submission")
                if len(member.parts) > MAX_ZIP_DEPTH:
                    raise SubmissionError(f"{name}: member {shown!r} is nested over {MAX_ZIP_DEPTH} folders deep")
                if len(m.filename) > MAX_ZIP_NAME:
                    raise SubmissionError(f"{name}: member {shown!r} has a name over {MAX_ZIP_NAME} characters")
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise SubmissionError(
                    f"{name}: expands to {format_bytes(total)}, over the limit of {format_bytes(max_bytes)}"
                )
            cache.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=".unzip-", dir=cache))
            try:
                _extract_bounded(archive, members, stage, name, max_bytes)
                stage.rename(target)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
    except zipfile.BadZipFile:
        raise SubmissionError(f"{name}: not a valid zip file") from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as e:
        # an unsupported compression or encryption, or a truncated member
        raise SubmissionError(f"{name}: cannot be extracted ({first_line(e)})") from None
    return target


def _extract_bounded(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], stage: Path, name: str, max_bytes: int
) -> None:
    """Write ``members`` below ``stage`` in chunks, counting the bytes written and the time."""
    deadline = time.monotonic() + MAX_UNZIP_S
    written = 0
    for m in members:
        out = stage / m.filename
        if m.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, out.open("wb") as dst:
            while chunk := src.read(1024 * 1024):
                written += len(chunk)
                if written > max_bytes:
                    raise SubmissionError(f"{name}: expands beyond the limit of {format_bytes(max_bytes)}")
                if time.monotonic() > deadline:
                    raise SubmissionError(f"{name}: took over {MAX_UNZIP_S:g} s to extract")
                dst.write(chunk)


def default_cache() -> Path:
    """Where extracted zips are kept: ``$RTSR_CACHE`` or ``~/.cache/rtsr``."""
    return Path(os.environ.get("RTSR_CACHE", Path.home() / ".cache" / "rtsr"))


def open_submission(spec: str | Path, cache: Path | None = None, max_unzipped: int = MAX_UNZIPPED_BYTES) -> Submission:
    """Find a submission from a folder, a ``.zip``, or a Hub repo pinned as ``org/name@<commit>``.

    Hub repositories come through ``huggingface_hub.snapshot_download`` and its cache (set
    ``HF_HUB_OFFLINE=1`` to use only the cache). A zip is extracted once into ``cache`` (see
    :func:`_extract_zip` for its bounds; ``max_unzipped`` bytes at most).

    ``submission.json`` is optional: without it the scale is unknown (None) until
    :meth:`Submission.with_scale` records it.

    Raises:
        SubmissionError: nothing there, no ``arch.py``, a bad ``submission.json``, a bad zip,
            or a Hub revision that cannot be had.
    """
    text = str(spec)
    path = Path(spec)
    revision = None
    if path.is_dir():
        folder, name = path, path.resolve().name
    elif path.is_file() and path.suffix == ".zip":
        folder = _extract_zip(path, (cache or default_cache()) / "zips", max_unzipped)
        name = path.stem.removeprefix("submission_")
    elif (match := HUB_SPEC.match(text)) and not path.exists():
        from rtsr.submissions.hub import download

        revision = match["revision"]
        folder, name = download(match["repo"], revision), match["repo"].split("/")[-1]
    elif path.exists():
        raise SubmissionError(f"{path}: not a submission folder or .zip")
    elif "/" in text and "@" in text and not HUB_SPEC.match(text):
        raise SubmissionError(f"{text}: a Hub submission is org/name@<full 40-character commit hash>")
    else:
        raise SubmissionError(f"{path}: no such folder or zip (or Hub repo as org/name@<commit>)")
    root = find_root(folder).resolve()
    return Submission(root=root, meta=read_meta(root), source=text, name=name, revision=revision)


def submission_files(submission: Submission) -> list[Path]:
    """What a packed or published submission holds: code, weights, results, requirements,
    metadata, and any other file in the folder; no caches or version-control junk."""
    files = _files(submission.root)
    if submission.results_dir.is_dir():
        files += [p for p in submission.results_dir.rglob("*") if p.is_file() and not (set(p.parts) & _JUNK)]
    return sorted(files)


def missing_entry_point(submission: Submission) -> str | None:
    """Why ``arch.py`` cannot give the challenge its model, read without running it: it does
    not parse, or defines no ``srmodel`` at its top level (a function, an import or an
    assignment). None when it does."""
    import ast

    arch = submission.root / ARCH_FILE
    try:
        tree = ast.parse(arch.read_bytes(), filename=ARCH_FILE)
    except (SyntaxError, ValueError) as e:
        return f"{ARCH_FILE} does not parse ({first_line(e)}): the model cannot be built"
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    if "srmodel" in names:
        return None
    return f"{ARCH_FILE} defines no srmodel() at its top level: the challenge builds the model by calling it"


#: The permissions of a written zip: readable by others (whoever it is sent to or served by),
#: as files written by a program usually are; mkstemp's own are 0600.
ZIP_MODE = 0o644


def pack(submission: Submission, out_dir: Path) -> Path:
    """Write ``submission_<id>.zip`` in the challenge's layout (files at the zip's top level),
    with :data:`ZIP_MODE`.

    The zip appears only when complete.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"submission_{submission.name}.zip"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=out_dir)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in submission_files(submission):
                archive.write(path, path.relative_to(submission.root).as_posix())
        os.chmod(tmp, ZIP_MODE)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
