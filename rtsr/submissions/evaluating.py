"""Evaluating one submission as the leaderboard trusts it: the test sets (bundled, a folder,
or a Hub dataset), degraded here as the challenge does; the validation checklist in the
sandbox; then the submission's code in a sandboxed model process
(:mod:`rtsr.submissions.confined`) that receives the LR pixels only. Its outputs, the metrics,
bicubic and the score are computed here, outside the sandbox, and the runtime protocol's
timings are vouched for here. One evaluation at a time per host (:func:`host_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from rtsr.bundled import BUNDLED_PREFIX, bundled
from rtsr.bundled import folder as bundled_folder
from rtsr.constants import TARGET_SIZE, TIMED_PASSES, TRACK_SCALES, WARMUP_PASSES
from rtsr.errors import InputError, RTSRError, SubmissionError, first_line
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import Submission
from rtsr.submissions.validation import VALIDATION_LIMITS

logger = logging.getLogger(__name__)

#: The test sets bundled with rtsr; ``bundled:<name>`` names one wherever rtsr is installed
#: (the worker's machine, or a Job's container, where the path differs).
BUNDLED_TEST_SETS: Final = bundled("testsets")
#: The test set a fresh clone evaluates on: Set5, bundled in the repository.
BUNDLED_TEST_SET: Final = BUNDLED_TEST_SETS / "Set5"


@dataclass(frozen=True)
class TestSet:
    """A folder of HR images, degraded here as the challenge does: a path, ``bundled:<name>``
    (``testsets/<name>`` of the installed rtsr), or a dataset ``datasets/org/name``
    (optionally ``@revision`` and ``:folder``) fetched with the job's read-only token."""

    __test__ = False  # not a pytest class, whatever its name

    name: str
    location: str

    @classmethod
    def parse(cls, spec: str) -> TestSet:
        """``NAME=LOCATION`` or ``LOCATION`` (named after its last folder)."""
        name, sep, location = spec.partition("=")
        if not sep:
            name, location = Path(spec.split(":")[-1].split("@")[0]).name, spec
        if not name or not location:
            raise InputError(f"{spec!r}: a test set is a folder of HR images, optionally NAME=FOLDER")
        return cls(name, location)

    @property
    def is_hub(self) -> bool:
        return self.location.startswith("datasets/")

    def folder(self, token: str | None = None) -> Path:
        """The HR folder, downloaded first for a Hub dataset.

        Raises:
            InputError: the folder does not exist, or the dataset cannot be had.
        """
        if not self.is_hub:
            path = bundled_folder(self.location)
            if not path.is_dir():
                raise InputError(f"test set {self.name}: {path} is not a folder")
            return path
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

        repo, _, sub = self.location.removeprefix("datasets/").partition(":")
        repo, _, revision = repo.partition("@")
        try:
            root = snapshot_download(repo, repo_type="dataset", revision=revision or None, token=token)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError) as e:
            raise InputError(f"test set {self.name}: {self.location} cannot be had ({first_line(e)})") from None
        return Path(root) / sub


@dataclass(frozen=True)
class EvaluationSettings:
    """What every request is evaluated on, and how."""

    test_sets: tuple[TestSet, ...] = (TestSet("Set5", f"{BUNDLED_PREFIX}Set5"),)
    #: ``cuda``, ``cpu`` or None for the best available.
    device: str | None = None
    #: The runtime protocol: the output size, warm-up and timed passes.
    target_size: tuple[int, int] = TARGET_SIZE
    warmup: int = WARMUP_PASSES
    repeat: int = TIMED_PASSES
    #: Bounds for the validation run and for the model process.
    limits: Limits = VALIDATION_LIMITS

    def __post_init__(self) -> None:
        """Settings that would fail a participant's request for the maintainer's mistake are
        refused before anything is claimed: an output size that one track's scale does not
        divide, a protocol without timed passes, a local test set that is not there.

        Raises:
            InputError: one line that names the setting.
        """
        h, w = self.target_size
        for track, scale in TRACK_SCALES.items():
            if h <= 0 or w <= 0 or h % scale or w % scale:
                raise InputError(
                    f"--crop-size {h} {w}: Track {track} is x{scale}, and each side must divide by the scale of"
                    f" every track ({' and '.join(map(str, sorted(set(TRACK_SCALES.values()))))})"
                )
        if self.warmup < 0 or self.repeat < 1:
            raise InputError(f"the protocol needs --warmup >= 0 and --repeat >= 1, got {self.warmup} and {self.repeat}")
        for test_set in self.test_sets:
            if not test_set.is_hub:
                test_set.folder()

    def as_dict(self) -> dict[str, Any]:
        return {
            "test_sets": [[t.name, t.location] for t in self.test_sets],
            "device": self.device,
            "target_size": list(self.target_size),
            "warmup": self.warmup,
            "repeat": self.repeat,
            "limits": {k: getattr(self.limits, k) for k in self.limits.__dataclass_fields__},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationSettings:
        return cls(
            test_sets=tuple(TestSet(n, loc) for n, loc in data["test_sets"]),
            device=data["device"],
            target_size=(int(data["target_size"][0]), int(data["target_size"][1])),
            warmup=int(data["warmup"]),
            repeat=int(data["repeat"]),
            limits=Limits(**data["limits"]),
        )


@dataclass
class Evaluated:
    """A passing submission's results: one ``rtsr.evaluate`` document per test set."""

    documents: dict[str, dict[str, Any]]
    device: str


def _prepared(test_set: TestSet, hr_dir: Path, scale: int, cache: Path) -> tuple[Path, Path]:
    """The LR and GT folders of a test set at ``scale``, degraded once and kept in ``cache``."""
    from rtsr.degradation import prepare_data

    folder = cache / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', test_set.name)}_x{scale}"
    lr_dir, gt_dir = folder / "LR", folder / "GT"
    stamp = folder / "source.json"
    source = json.dumps(sorted((p.name, p.stat().st_size) for p in hr_dir.iterdir() if p.is_file()))
    folder.mkdir(parents=True, exist_ok=True)
    # workers sharing a store take turns: one degrades the set, the others wait and reuse it
    # (without the lock, one could read LR/ before the other had written GT/)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_text() == source and lr_dir.is_dir() and gt_dir.is_dir()):
            stamp.unlink(missing_ok=True)
            prepare_data(hr_dir, lr_dir, gt_dir, scale, progress=False)
            stamp.write_text(source)
    return lr_dir, gt_dir


def at_track_scale(submission: Submission, track: int) -> Submission:
    """``submission`` at its track's scale (a challenge submission without ``submission.json``
    does not say its own; the checks then confirm it by a forward pass).

    Raises:
        SubmissionError: its ``submission.json`` declares another scale.
    """
    scale = TRACK_SCALES[track]
    if submission.meta.scale is not None and submission.meta.scale != scale:
        raise SubmissionError(f"its submission.json declares x{submission.meta.scale}, but Track {track} is x{scale}")
    return submission.with_scale(scale)


def check_submission(submission: Submission, track: int, limits: Limits) -> Submission:
    """Run the validation checklist in the sandbox, at the track's scale; return the
    submission at that scale.

    Raises:
        SubmissionError: a check failed (its name and detail, without server paths), or the
            model is not of the track's scale.
    """
    from rtsr.submissions.validation import run_validation

    submission = at_track_scale(submission, track)
    # no torch.export check: the runtime protocol exports the model as it was timed, and fails
    # one that cannot be counted (a few seconds each, for every evaluation)
    for check in run_validation(submission, None, limits, export=False).checks:
        if check.status == "fail":
            detail = submission.without_root(check.detail)
            raise SubmissionError(detail if detail.startswith(check.name) else f"{check.name}: {detail}")
    return submission


#: The lock every evaluation on this host holds, whatever its store: one submission is
#: validated, run and timed at a time, so that no other submission (a neighbour's spinner,
#: its own evaluation) shares the CPU or GPU with a measurement.
#: ``$RTSR_HOST_LOCK`` where set (one path for every worker of the host).
HOST_LOCK: Final = Path(os.environ.get("RTSR_HOST_LOCK") or "/tmp/rtsr-evaluation.lock")


@contextlib.contextmanager
def host_lock(path: Path | None = None) -> Iterator[None]:
    """Hold this host's evaluation lock (``flock``; released if the process dies), waiting for
    the evaluation that holds it."""
    path = path or Path(os.environ.get("RTSR_HOST_LOCK") or HOST_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another evaluation on this host to end (%s)", path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def evaluate_submission(
    submission: Submission,
    track: int,
    settings: EvaluationSettings,
    cache: Path,
    hub_token: str | None = None,
    progress: bool = False,
    labels: dict[str, Any] | None = None,
) -> Evaluated:
    """Validate ``submission`` in the sandbox, then evaluate it on every test set with its
    code in a sandboxed model process that sees the LR images only.

    ``labels`` (the request, repo, commit, team...) go into every document as
    ``submission``. ``cache`` keeps the degraded test sets.

    Raises:
        SubmissionError: a failed check, a model that fails to load or run, or implausible
            timings (one line, without server paths).
        InputError: a test set that cannot be read.
    """
    # one evaluation at a time on this host (HOST_LOCK), validation included: its leftover
    # processes are killed when it ends, never during another's measurement
    with host_lock():
        return _evaluate(submission, track, settings, cache, hub_token, progress, labels)


def _evaluate(
    submission: Submission,
    track: int,
    settings: EvaluationSettings,
    cache: Path,
    hub_token: str | None,
    progress: bool,
    labels: dict[str, Any] | None,
) -> Evaluated:
    import torch

    from rtsr.devices import device_name, resolve_device
    from rtsr.submissions.confined import ConfinedModel

    submission = check_submission(submission, track, settings.limits)
    scale = TRACK_SCALES[track]
    device = resolve_device(settings.device)
    limits = replace(settings.limits, wall_seconds=None, cpu_seconds=None)
    with ConfinedModel(submission, device, None, limits) as model:
        if model.descriptor.scale != scale:
            raise SubmissionError(f"a x{model.descriptor.scale} model, but Track {track} is x{scale}")
        model.descriptor = replace(
            model.descriptor,
            id=str((labels or {}).get("entry") or submission.name),
            name=submission.meta.method or submission.name,
            source=submission.source if submission.revision else submission.name,
        )
        documents = {}
        for test_set in settings.test_sets:
            lr_dir, gt_dir = _prepared(test_set, test_set.folder(hub_token), scale, cache)
            logger.info("evaluating %s on %s", submission.source, test_set.name)
            try:
                document = model.evaluate(
                    lr_dir, gt_dir, settings.target_size, settings.warmup, settings.repeat, 0, test_set.name, progress
                )
            except (RTSRError, torch.OutOfMemoryError) as e:
                raise SubmissionError(submission.without_root(f"on {test_set.name}: {first_line(e)}")) from None
            # the paths of the private test set stay private
            document["dataset"].update(lr_dir=None, gt_dir=None)
            if labels:
                document["submission"] = {k: v for k, v in labels.items() if k != "entry"}
            documents[test_set.name] = document
        return Evaluated(documents, device_name(device))
