"""``rtsr publish``: validate, write the model card, stage the upload, push it to the Hub."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from rtsr.errors import SubmissionError
from rtsr.submissions.hub import model_card, publish_folder
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import Submission, submission_files
from rtsr.submissions.validation import VALIDATION_LIMITS, Check, run_validation


@dataclass(frozen=True)
class Publication:
    """What publishing did: the checks, the staged folder, and (unless a dry run) the commit."""

    checks: list[Check]
    stage: Path
    commit: str | None
    #: What was published, its scale known.
    submission: Submission

    def registry_command(self, repo_id: str) -> str:
        return f"python -m rtsr registry add {repo_id}@{self.commit}"


def card_evaluation(path: Path | None, submission: Submission) -> dict | None:
    """An ``rtsr evaluate`` document for the card, checked to be about the submission's scale
    when it is known (a submission without ``submission.json`` knows it once validated).

    Raises:
        SubmissionError: no such file, not an evaluation, or one of another scale.
    """
    if path is None:
        return None
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file (make it with python -m rtsr evaluate)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        scale = doc["model"]["scale"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise SubmissionError(f"{path}: not an rtsr evaluate document ({e.__class__.__name__})") from None
    if doc.get("schema") != "rtsr.evaluate":
        raise SubmissionError(f"{path}: not an rtsr evaluate document")
    _same_scale(scale, path, submission)
    return doc


def _same_scale(scale: object, path: Path, submission: Submission) -> None:
    """Refuse an evaluation (at ``path``) of another scale than the submission's, when known."""
    if submission.meta.scale is not None and scale != submission.meta.scale:
        raise SubmissionError(f"{path}: measures a x{scale} model, the submission is x{submission.meta.scale}")


def stage(submission: Submission, repo_id: str, evaluation: dict | None, out: Path) -> Path:
    """Copy exactly what will be uploaded into ``out`` (replaced if present), with README.md.

    Raises:
        SubmissionError: the submission's scale is unknown (validate it first).
    """
    if submission.meta.scale is None:
        raise SubmissionError(f"{submission.source}: its scale is unknown (no submission.json); validate it first")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for path in submission_files(submission):
        rel = path.relative_to(submission.root)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / rel)
    meta = {**submission.meta.as_dict(), "track": submission.meta.track}
    (out / "README.md").write_text(model_card(meta, repo_id, evaluation), encoding="utf-8")
    return out


def publish(
    submission: Submission,
    repo_id: str,
    out: Path,
    private: bool = False,
    dry_run: bool = False,
    evaluation: Path | None = None,
    lr_dir: Path | None = None,
    limits: Limits = VALIDATION_LIMITS,
) -> Publication:
    """Validate, stage into ``out`` and, unless ``dry_run``, upload as one commit. The card
    gives the scale validation confirmed, or found for a submission without
    ``submission.json`` (:attr:`Publication.submission`).

    Raises:
        SubmissionError: a failed check (nothing is staged or uploaded), a bad evaluation
            file, or a Hub refusal.
    """
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise SubmissionError(f"--repo-id must be user/name or org/name, got {repo_id!r}")
    measured = card_evaluation(evaluation, submission)  # before the slow checks: fail fast
    validation = run_validation(submission, lr_dir, limits)
    failed = [c for c in validation.checks if c.status == "fail"]
    if failed:
        raise SubmissionError(f"validation failed ({failed[0].name}: {failed[0].detail}); nothing was published")
    submission = validation.submission
    if measured is not None and evaluation is not None:
        _same_scale(measured["model"]["scale"], evaluation, submission)  # the scale may have just been found
    staged = stage(submission, repo_id, measured, out)
    commit = None if dry_run else publish_folder(staged, repo_id, private)
    return Publication(validation.checks, staged, commit, submission)
