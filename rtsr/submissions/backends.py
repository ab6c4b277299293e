"""Where a claimed request is evaluated:

* :class:`LocalBackend`: on this machine (:func:`rtsr.submissions.evaluating.evaluate_submission`).
* :class:`HfJobsBackend`: as a Hugging Face Job on one GPU flavor (``HfApi.run_job``), so every
  submission is timed on the same hardware in its own container; the job
  (:mod:`rtsr.submissions.job`) prints its results to its log with a per-job secret tag
  (:func:`result_line`), and the worker, the only one that writes to the store, reads them
  back (:func:`parse_job_log`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from rtsr.constants import TRACK_SCALES
from rtsr.errors import InputError, SubmissionError, first_line
from rtsr.results import schema
from rtsr.submissions.evaluating import Evaluated, EvaluationSettings, evaluate_submission
from rtsr.submissions.requests import Request, Store
from rtsr.submissions.submission import Submission

logger = logging.getLogger(__name__)

#: What a job prints before its results (then the job's secret tag and one JSON line).
RESULT_TAG: Final = "RTSR-RESULT"
FAILED_TAG: Final = "RTSR-FAILED"


def entry_id(request: Request, submission: Submission) -> str:
    """The id a finished request is served under: the repo's or folder's name."""
    base = request.repo.split("/")[-1] if request.repo else submission.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.").lower() or request.id


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
        labels = _labels(request, submission, entry_id(request, submission))
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
            "labels": _labels(request, submission, entry_id(request, submission)),
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


def result_line(tag: str, evaluation: Evaluated) -> str:
    """The line a job prints for the worker to read back."""
    return f"{RESULT_TAG} {tag} " + json.dumps({"documents": evaluation.documents, "device": evaluation.device})


def failure_line(tag: str, reason: str) -> str:
    return f"{FAILED_TAG} {tag} " + " ".join(reason.split())
