"""The registry of submissions the app may run, each pinned and hashed.

``submissions/registry.json`` lists every entry: id, display name, team, scale and track,
source (a folder relative to the registry file, or a Hub repo pinned to a full commit) and the
sha256 of every code and weight file. Loading an entry re-hashes its files and refuses any
that differ, so only registered code, at its pinned revision, ever runs. The scale recorded
is the one validation confirmed (or found, for a submission without ``submission.json``).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rtsr.bundled import bundled
from rtsr.errors import SubmissionError
from rtsr.models import LoadedModel
from rtsr.outputs import write_json
from rtsr.submissions.loader import load_submission
from rtsr.submissions.submission import HUB_SPEC, Submission, open_submission

REGISTRY_SCHEMA_VERSION = 1
#: The registry the app serves, next to the bundled submissions.
BUNDLED_REGISTRY = bundled("submissions") / "registry.json"


def default_registry_path() -> Path:
    """``$RTSR_REGISTRY`` if set, else the bundled ``submissions/registry.json``."""
    return Path(os.environ.get("RTSR_REGISTRY") or BUNDLED_REGISTRY)


@dataclass(frozen=True)
class RegistryEntry:
    """One registered submission."""

    id: str
    name: str
    team: str
    scale: int
    track: int
    #: A folder relative to the registry file, or ``org/name`` on the Hub.
    source: str
    #: The full Hub commit for Hub sources; None for local folders.
    revision: str | None
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def is_hub(self) -> bool:
        return self.revision is not None

    @property
    def public_source(self) -> str:
        """Where the entry comes from, as shown to users: ``org/name@commit``, or the folder
        relative to the registry (never where it lies on the server)."""
        return f"{self.source}@{self.revision}" if self.is_hub else self.source

    def spec(self, registry_dir: Path) -> str:
        """What :func:`rtsr.submissions.submission.open_submission` takes for this entry."""
        return f"{self.source}@{self.revision}" if self.is_hub else str(registry_dir / self.source)


@functools.lru_cache(maxsize=1)
def reserved() -> tuple[frozenset[str], frozenset[str]]:
    """The ids and the teams (casefolded) of the bundled models: an evaluated submission takes
    neither, so that no row or model of a participant's can pass for one of ours (the
    reference row, the bundled RTSRN). ``bicubic`` is the CLI's built-in."""
    bundled = Registry.read(BUNDLED_REGISTRY).entries
    return frozenset({"bicubic", *(e.id for e in bundled)}), frozenset(e.team.casefold() for e in bundled)


@dataclass
class Registry:
    """The entries of one registry file, in order."""

    path: Path
    entries: list[RegistryEntry]

    @classmethod
    def read(cls, path: str | Path | None = None) -> Registry:
        """Read a registry file; a missing file is an empty registry.

        Raises:
            SubmissionError: the file is not a registry (bad JSON, bad or duplicate entries).
        """
        path = Path(path) if path is not None else default_registry_path()
        if not path.exists():
            return cls(path, [])
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = [RegistryEntry(**e) for e in data["entries"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise SubmissionError(f"{path}: not a valid registry ({e.__class__.__name__}: {e})") from None
        registry = cls(path, [])
        for entry in entries:
            registry.add(entry)
        return registry

    def write(self) -> None:
        write_json(
            {"schema_version": REGISTRY_SCHEMA_VERSION, "entries": [asdict(e) for e in self.entries]},
            self.path,
        )

    def get(self, entry_id: str) -> RegistryEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        known = ", ".join(e.id for e in self.entries) or "none"
        raise SubmissionError(f"{entry_id!r} is not registered in {self.path} (registered: {known})")

    def add(self, entry: RegistryEntry) -> None:
        """Append an entry; an id already taken is refused, never overwritten."""
        self._require_free(entry.id)
        if entry.is_hub and not HUB_SPEC.match(f"{entry.source}@{entry.revision}"):
            raise SubmissionError(f"{entry.id}: a Hub source must be pinned to a full 40-character commit")
        self.entries.append(entry)

    def _require_free(self, entry_id: str) -> None:
        if any(e.id == entry_id for e in self.entries):
            raise SubmissionError(f"{self.path}: id {entry_id!r} is already registered")

    def check_addable(self, submission: Submission, entry_id: str | None = None) -> None:
        """Refuse, before any slow check, what registering ``submission`` would refuse: a
        taken id (default: the submission's name), or a local folder outside this registry's.

        Raises:
            SubmissionError: one of those.
        """
        self._require_free(entry_id or submission.name)
        _source(submission, self.path.parent)

    def open(self, entry: RegistryEntry) -> Submission:
        """The entry's files, after checking every hash, with the entry's scale (a submission
        without ``submission.json`` declares none; the registry recorded the one validated).

        Raises:
            SubmissionError: the source cannot be had, or a file is missing, extra or changed.
        """
        submission = open_submission(entry.spec(self.path.parent))
        actual = submission.hashes()
        for name, digest in entry.sha256.items():
            if name not in actual:
                raise SubmissionError(f"{entry.id}: registered file {name} is missing")
            if actual[name] != digest:
                raise SubmissionError(f"{entry.id}: {name} does not match its registered sha256")
        extra = sorted(set(actual) - set(entry.sha256))
        if extra:
            raise SubmissionError(f"{entry.id}: unregistered code or weights: {', '.join(extra)}")
        if submission.meta.scale not in (None, entry.scale):
            raise SubmissionError(
                f"{entry.id}: registered as x{entry.scale} but submission.json says x{submission.meta.scale}"
            )
        return submission.with_scale(entry.scale)

    def load(self, entry_id: str) -> LoadedModel:
        """Load one registered model in this process (hashes checked first): for the CLI's
        ``sr``/``runtime``/``evaluate --model ID``, run by a user who chose it. The app
        serves registered models from the sandbox instead (:mod:`rtsr.serving`)."""
        entry = self.get(entry_id)
        loaded = load_submission(self.open(entry))
        descriptor = loaded.descriptor
        # The registry's id, name and source are the public ones.
        public = replace(descriptor, id=entry.id, name=entry.name, source=entry.public_source)
        return LoadedModel(loaded.module, public)


def _source(submission: Submission, registry_dir: Path) -> str:
    """Where an entry for ``submission`` comes from: ``org/name`` on the Hub, or its folder
    relative to ``registry_dir``.

    Raises:
        SubmissionError: a local submission outside ``registry_dir``.
    """
    if submission.revision is not None:
        return submission.source.split("@")[0]
    try:
        return submission.root.resolve().relative_to(registry_dir.resolve()).as_posix()
    except ValueError:
        raise SubmissionError(
            f"{submission.root}: a local submission must sit below {registry_dir} to be registered;"
            " publish it to the Hub and register org/name@<commit> instead"
        ) from None


def entry_for(submission: Submission, registry_dir: Path, entry_id: str | None = None) -> RegistryEntry:
    """A registry entry describing ``submission`` as it is now (hashes computed here).

    Raises:
        SubmissionError: a local submission outside ``registry_dir``, or one whose scale is
            still unknown (no ``submission.json``: validate it first, which finds the scale,
            and register what :func:`rtsr.submissions.validation.run_validation` returns).
    """
    meta = submission.meta
    if meta.scale is None or meta.track is None:
        raise SubmissionError(
            f"{submission.source}: its scale is unknown (no submission.json); validate it first, or give --scale"
        )
    return RegistryEntry(
        id=entry_id or submission.name,
        name=meta.method or submission.name,
        team=meta.team,
        scale=meta.scale,
        track=meta.track,
        source=_source(submission, registry_dir),
        revision=submission.revision,
        sha256=submission.hashes(),
    )
