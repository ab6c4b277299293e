"""The evaluator: claim pending requests, evaluate each submission in the sandbox, record
the results.

For each request, :func:`evaluate_submission` opens the submission (a Hub repo at its
pinned commit, or the copy in the store), runs the validation checklist in the sandbox, then
evaluates it as ``rtsr evaluate`` does on every test set: the test set's HR images are
degraded here as the challenge does, and the submission's code, in a sandboxed model process
(:mod:`rtsr.submissions.sandboxed_models`), receives the LR pixels only. Its outputs, the
metrics, bicubic and the score are computed here, outside the sandbox, and the runtime
protocol's timings are checked against the wall clock measured here.

A passing submission is added to the store's registry, pinned and hashed, so the app can run
it; a failing one gets its reason. Two backends evaluate:

* :class:`LocalBackend`: on this machine, one request at a time per worker thread.
* :class:`HfJobsBackend`: each request as a Hugging Face Job on one GPU flavor
  (``HfApi.run_job``), so every submission is timed on the same hardware in its own
  container; the job prints its results to its log with a per-job secret tag, and this
  worker, the only one that writes to the store, reads them back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Protocol

from rtsr.bundled import BUNDLED_PREFIX, bundled
from rtsr.bundled import folder as bundled_folder
from rtsr.constants import TARGET_SIZE, TIMED_PASSES, TRACK_SCALES, WARMUP_PASSES
from rtsr.engines import EngineChoice
from rtsr.errors import InputError, RTSRError, SubmissionError, first_line, printable
from rtsr.results import schema
from rtsr.submissions.registry import RegistryEntry, entry_for, reserved
from rtsr.submissions.requests import LeaseLost, Request, Store, StoreError
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import Submission, open_submission
from rtsr.submissions.validation import VALIDATION_LIMITS

logger = logging.getLogger(__name__)

#: The test sets bundled with rtsr; ``bundled:<name>`` names one wherever rtsr is installed
#: (the worker's machine, or a Job's container, where the path differs).
BUNDLED_TEST_SETS: Final = bundled("testsets")
#: The test set a fresh clone evaluates on: Set5, bundled in the repository.
BUNDLED_TEST_SET: Final = BUNDLED_TEST_SETS / "Set5"
#: What a job prints before its results (then the job's secret tag and one JSON line).
RESULT_TAG: Final = "RTSR-RESULT"
FAILED_TAG: Final = "RTSR-FAILED"


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
    from rtsr.evaluation import evaluate_with
    from rtsr.runtime import RuntimeReport, lr_size
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
        precision = model.precision
        reports: list[RuntimeReport] = []

        def runtime() -> RuntimeReport:
            # the protocol does not depend on the set: measure once, on the first set
            if not reports:
                size = lr_size(scale, settings.target_size)
                reports.append(model.runtime_report(size, settings.warmup, settings.repeat, progress))
            return reports[0]

        engines: list[EngineChoice] = []

        def upscaler(lr: Any) -> Any:
            # the outputs in the fastest engine of the protocol's precision (OpenVINO f32 on a
            # CPU equals FP32 eager to 1e-6): bf16, which the app serves, moved RTSRN's Set5
            # PSNR by 0.016 dB, which ranks submissions. The runtime above stays eager, the
            # challenge's rule.
            done = model.upscale(lr)
            engines[:] = [done.engine]
            return done.sr

        documents = {}
        for test_set in settings.test_sets:
            lr_dir, gt_dir = _prepared(test_set, test_set.folder(hub_token), scale, cache)
            logger.info("evaluating %s on %s", submission.source, test_set.name)
            try:
                document = evaluate_with(
                    model.descriptor, upscaler, runtime, lr_dir, gt_dir, device, precision, 0, test_set.name, progress
                )
            except (RTSRError, torch.OutOfMemoryError) as e:
                raise SubmissionError(submission.without_root(f"on {test_set.name}: {first_line(e)}")) from None
            # the paths of the private test set stay private
            document["dataset"].update(lr_dir=None, gt_dir=None)
            if engines:
                document["engine"] = engines[0].as_dict()
            if labels:
                document["submission"] = {k: v for k, v in labels.items() if k != "entry"}
            documents[test_set.name] = document
        return Evaluated(documents, device_name(device))


# --- backends -------------------------------------------------------------------------------


class Backend(Protocol):
    """Evaluates one claimed request; ``keepalive`` is called now and then while it runs."""

    def evaluate(
        self, request: Request, submission: Submission, store: Store, keepalive: Callable[[], None]
    ) -> Evaluated: ...


def entry_name(request: Request, submission: Submission) -> str:
    """The name a finished request is served and shown under: its method, told apart from
    every other entry as the board tells its row apart (:meth:`schema.SubmissionRecord.label`)."""
    labels = {k: v for k, v in _labels(request, submission, "").items() if k != "entry"}
    measured = schema.SubmissionRecord.from_document({"submission": labels}, request.id)
    assert measured is not None  # labels are always given here
    return measured.label(submission.meta.method or submission.name)


def _labels(request: Request, submission: Submission, entry_id: str) -> dict[str, Any]:
    return {
        "entry": entry_id,
        "request": request.id,
        "repo": request.repo,
        "commit": request.revision,
        "team": submission.meta.team,
        "license": submission.meta.license,
        "url": request.url,
        "submitter": request.submitter,
    }


@dataclass
class LocalBackend:
    """Evaluates on this machine."""

    settings: EvaluationSettings = field(default_factory=EvaluationSettings)
    progress: bool = False

    def evaluate(
        self, request: Request, submission: Submission, store: Store, keepalive: Callable[[], None]
    ) -> Evaluated:
        labels = _labels(request, submission, _entry_id(request, submission))
        return evaluate_submission(
            submission, request.track, self.settings, store.work_dir / "testsets", None, self.progress, labels
        )


class JobsApi(Protocol):
    """What :class:`HfJobsBackend` uses of ``huggingface_hub.HfApi``."""

    def run_job(
        self,
        *,
        image: str,
        command: list[str],
        secrets: dict[str, Any] | None = None,
        flavor: str | None = None,
        timeout: int | float | str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Any: ...

    def inspect_job(self, *, job_id: str) -> Any: ...

    def fetch_job_logs(self, *, job_id: str) -> Iterable[str]: ...


#: Job stages after which a job will not change (huggingface_hub's ``JobStage``).
TERMINAL_STAGES: Final = frozenset({"COMPLETED", "ERROR", "CANCELED", "DELETED"})


@dataclass
class HfJobsBackend:
    """Evaluates each request as a Hugging Face Job on ``flavor``.

    The job runs ``python -m rtsr.submissions.job`` in ``image`` (the Space's own image, so
    the job has the same rtsr and torch), receives the request and the settings on its
    command line and, as secrets, ``test_set_token`` (read-only, for a private test set; the
    job drops it before any submission code runs) and a tag that marks its result line.
    It never receives a write token: this worker writes the store.
    """

    api: JobsApi
    image: str
    flavor: str = "l4x1"
    settings: EvaluationSettings = field(default_factory=lambda: EvaluationSettings(device="cuda"))
    test_set_token: str | None = None
    #: Seconds a job may run before the Jobs service stops it.
    timeout_s: int = 3600
    poll_s: float = 10.0

    def command(self, request: Request, submission: Submission, copy: tuple[str, str] | None = None) -> list[str]:
        """The job's command line (also what the stand-in runs); ``copy``: the dataset and
        commit that hold a local submission's copy, which the job fetches."""
        payload: dict[str, Any] = {
            "spec": submission.source,
            "track": request.track,
            "settings": self.settings.as_dict(),
            "labels": _labels(request, submission, _entry_id(request, submission)),
        }
        if copy is not None:
            dataset, commit = copy
            payload["copy"] = {"dataset": dataset, "commit": commit, "folder": request.spec, "pin": request.revision}
        return ["python", "-m", "rtsr.submissions.job", json.dumps(payload)]

    def evaluate(
        self, request: Request, submission: Submission, store: Store, keepalive: Callable[[], None]
    ) -> Evaluated:
        copy = None if request.is_hub else store.remote_copy()
        if not request.is_hub and copy is None:
            raise SubmissionError(
                "a local submission in a store on one machine cannot travel to a Hub job: run a local worker for it,"
                " or keep the store on the Hub"
            )
        tag = secrets.token_hex(16)
        job_secrets = {"RTSR_RESULT_TAG": tag}
        if self.test_set_token:
            job_secrets["HF_TOKEN"] = self.test_set_token
        job = self.api.run_job(
            image=self.image,
            command=self.command(request, submission, copy),
            secrets=job_secrets,
            flavor=self.flavor,
            timeout=self.timeout_s,
            labels={"rtsr-request": request.id},
        )
        logger.info("%s: job %s on %s", request.id, job.id, self.flavor)
        while True:
            info = self.api.inspect_job(job_id=job.id)
            stage = getattr(info.status, "stage", None) or ""
            # the API gives the stage as a string; huggingface_hub's JobStage is a str enum
            stage = str(getattr(stage, "value", stage))
            if stage in TERMINAL_STAGES:
                break
            keepalive()
            time.sleep(self.poll_s)
        return parse_job_log(
            self.api.fetch_job_logs(job_id=job.id), tag, request, stage, getattr(info.status, "message", None)
        )


def parse_job_log(lines: Any, tag: str, request: Request, stage: str, message: str | None) -> Evaluated:
    """The evaluation a job printed, from its log: the line tagged with this job's secret tag.

    Raises:
        SubmissionError: the job reported a failure, ended without a result, or printed one
            that is not an evaluation of this request.
    """
    from rtsr.results import schema

    result: dict[str, Any] | None = None
    for line in lines:
        parts = str(line).strip().split(" ", 2)
        if len(parts) == 3 and parts[1] == tag:
            if parts[0] == FAILED_TAG:
                raise SubmissionError(parts[2][:600])
            if parts[0] == RESULT_TAG:
                try:
                    result = json.loads(parts[2])
                except json.JSONDecodeError:
                    raise SubmissionError(f"job for {request.id}: its result line is not JSON") from None
    if result is None:
        why = f"{stage.lower()}{': ' + message if message else ''}" if stage else "ended"
        raise SubmissionError(f"the evaluation job ended without a result ({why})")
    documents, device = result.get("documents"), result.get("device")
    scale = TRACK_SCALES[request.track]
    if not (isinstance(documents, dict) and isinstance(device, str) and documents):
        raise SubmissionError(f"job for {request.id}: a result without documents")
    for name, document in documents.items():
        try:
            checked = schema.Evaluation.from_document(document, f"{name}")
        except InputError as e:
            raise SubmissionError(f"job for {request.id}: {first_line(e)}") from None
        if checked.scale != scale or checked.submission is None or checked.submission.request != request.id:
            raise SubmissionError(f"job for {request.id}: its {name} result is not an evaluation of this request")
    return Evaluated(documents, device)


# --- the worker -------------------------------------------------------------------------------


def _entry_id(request: Request, submission: Submission) -> str:
    """The id a finished request is served under: the repo's or folder's name."""
    base = request.repo.split("/")[-1] if request.repo else submission.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.").lower() or request.id


def open_request(request: Request, folder: Path) -> Submission:
    """The request's files: the Hub repo at its commit, or the copy in the store's ``folder``."""
    if request.is_hub:
        return open_submission(request.spec)
    return open_submission(folder / request.spec)


@contextlib.contextmanager
def _heartbeat(store: Store, request: Request, worker: str, lease_s: float) -> Iterator[Callable[[], None]]:
    """Renew the lease every ``lease_s / 3`` seconds while the body runs; yields a function
    that raises :class:`LeaseLost` if a renewal found the request taken away."""
    stop = threading.Event()
    lost: list[LeaseLost] = []

    def renew() -> None:
        while not stop.wait(lease_s / 3):
            try:
                store.renew(request.id, worker, lease_s)
            except LeaseLost as e:
                lost.append(e)
                return
            except StoreError as e:
                # the store unreachable for now (the Hub down): try again at the next beat; if
                # it stays away past the lease, the request goes to another worker
                logger.warning("%s: the lease could not be renewed: %s", request.id, first_line(e))

    def check() -> None:
        if lost:
            raise lost[0]

    thread = threading.Thread(target=renew, name=f"lease-{request.id}", daemon=True)
    thread.start()
    try:
        yield check
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class Offer:
    """After a passing evaluation of a Hub repo, open a pull request on it that adds the
    results to its card (:func:`rtsr.submissions.hub.offer_results`), linking ``board_url``."""

    board_url: str | None = None


class Worker:
    """Claims requests from ``store`` and evaluates them with ``backend``."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        name: str | None = None,
        lease_s: float | None = None,
        offer: Offer | None = None,
    ) -> None:
        self.store, self.backend, self.lease_s = store, backend, lease_s or store.lease_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.offer = offer

    def process(self, request: Request) -> Request:
        """Evaluate one claimed request and record its outcome; return it as stored.

        Raises:
            LeaseLost: the request was taken away (this worker was presumed dead).
        """
        started = time.monotonic()
        with _heartbeat(self.store, request, self.name, self.lease_s) as keepalive:
            try:
                # one read of the store's files for both: a Hub store's folder is the head's
                # snapshot, which moves with every renewal of the lease
                folder = self.store.folder
                submission = open_request(request, folder)
                entry = self._entry(request, submission, folder)
                evaluation = self.backend.evaluate(request, submission, self.store, keepalive)
                keepalive()
            except LeaseLost:
                raise
            except RTSRError as e:
                reason = first_line(e, 600)
                logger.warning("%s failed: %s", request.id, reason)
                self.store.fail(request.id, self.name, reason)
                return self.store.get(request.id)
            except Exception as e:  # a fault of the worker's, not the submission's: keep serving
                logger.exception("%s: internal error", request.id)
                self.store.fail(
                    request.id, self.name, f"internal error in the worker ({e.__class__.__name__}); not retried"
                )
                return self.store.get(request.id)
            done = self.store.finish(request.id, self.name, evaluation.documents, entry, evaluation.device)
        logger.info("%s finished in %.0f s: served as %s", request.id, time.monotonic() - started, done.entry_id)
        if self.offer is not None and request.repo is not None:
            self._offer(request, request.repo, evaluation.documents)
        return done

    def _offer(self, request: Request, repo: str, documents: dict[str, dict[str, Any]]) -> None:
        """Offer the results to the participant's repo as a pull request; a repo that refuses
        it (discussions closed, no permission) is one line in the log, and the request stays
        finished."""
        from rtsr.submissions.hub import offer_results

        assert self.offer is not None
        try:
            url = offer_results(repo, request.revision, documents, request.id, self.offer.board_url)
        except Exception as e:  # the Hub's refusal, whatever its kind: never the request's failure
            logger.warning("%s: results not offered to %s: %s", request.id, repo, first_line(e))
        else:
            logger.info("%s: results offered to %s as a pull request: %s", request.id, repo, url)

    def _entry(self, request: Request, submission: Submission, folder: Path) -> RegistryEntry:
        """The registry entry a passing ``submission`` will be served as, a local one relative
        to the store's ``folder`` it was opened from.

        Raises:
            SubmissionError: it is not of the track's scale, or a participant's (a Hub repo)
                names the bundled models' team (a local folder is the maintainer's own, who
                may queue the bundled models themselves).
        """
        submission = at_track_scale(submission, request.track)
        if request.is_hub and submission.meta.team.strip().casefold() in reserved()[1]:
            raise SubmissionError(
                f"its submission.json names the team {submission.meta.team.strip()!r}, which is the bundled"
                " models': name your own team"
            )
        entry = entry_for(submission, folder, _entry_id(request, submission))
        return replace(entry, name=entry_name(request, submission))

    def run(self, once: bool = False, poll_s: float = 5.0, stop: threading.Event | None = None) -> list[Request]:
        """Claim and process requests until ``stop`` is set; with ``once``, until none is
        pending. Returns the requests this call processed."""
        stop = stop or threading.Event()
        done: list[Request] = []
        while not stop.is_set():
            try:
                request = self.store.claim(self.name, self.lease_s)
            except StoreError as e:
                # the maintainer's problem (a corrupt database, a full disk): said once a poll,
                # and no request is failed for it
                if once:
                    raise
                logger.warning("%s", e)
                stop.wait(poll_s)
                continue
            if request is None:
                if once:
                    break
                stop.wait(poll_s)
                continue
            logger.info("%s claimed: %s (Track %d)", request.id, printable(request.repo or request.spec), request.track)
            try:
                done.append(self.process(request))
            except LeaseLost as e:
                logger.warning("%s", e)
            except StoreError as e:
                # its results could not be recorded: nothing of them is left, and its lease
                # returns the request to pending for another try
                logger.warning("%s", e)
                if once:
                    raise
        return done


def run_workers(
    store: Store,
    backend: Backend,
    count: int,
    once: bool,
    poll_s: float,
    stop: threading.Event | None = None,
    lease_s: float | None = None,
    offer: Offer | None = None,
) -> list[Request]:
    """``count`` workers in threads of this process (for jobs, which mostly wait)."""
    if count == 1:
        return Worker(store, backend, lease_s=lease_s, offer=offer).run(once, poll_s, stop)
    results: list[list[Request]] = [[] for _ in range(count)]
    threads = [
        threading.Thread(
            target=lambda i=i: results[i].extend(
                Worker(store, backend, f"{socket.gethostname()}:{os.getpid()}:{i}", lease_s, offer).run(
                    once, poll_s, stop
                )
            ),
            name=f"worker-{i}",
        )
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for rs in results for r in rs]


def result_line(tag: str, evaluation: Evaluated) -> str:
    """The line a job prints for the worker to read back."""
    return f"{RESULT_TAG} {tag} " + json.dumps({"documents": evaluation.documents, "device": evaluation.device})


def failure_line(tag: str, reason: str) -> str:
    return f"{FAILED_TAG} {tag} " + " ".join(reason.split())


__all__: Sequence[str] = (
    "BUNDLED_TEST_SET",
    "Evaluated",
    "EvaluationSettings",
    "HfJobsBackend",
    "LocalBackend",
    "Offer",
    "TestSet",
    "Worker",
    "evaluate_submission",
    "run_workers",
)
