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
from rtsr.submissions.validation import VALIDATION_LIMITS, Check, run_checks


@dataclass(frozen=True)
class Publication:
    """What publishing did: the checks, the staged folder, and (unless a dry run) the commit."""

    checks: list[Check]
    stage: Path
    commit: str | None

    def registry_command(self, repo_id: str) -> str:
        return f"python -m rtsr registry add {repo_id}@{self.commit}"


def read_evaluation(path: Path | None, submission: Submission) -> dict | None:
    """An ``rtsr evaluate`` document for the card, checked to be about this scale."""
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
    if scale != submission.meta.scale:
        raise SubmissionError(f"{path}: measures a x{scale} model, the submission is x{submission.meta.scale}")
    return doc


def stage(submission: Submission, repo_id: str, evaluation: dict | None, out: Path) -> Path:
    """Copy exactly what will be uploaded into ``out`` (replaced if present), with README.md."""
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
    """Validate, stage into ``out`` and, unless ``dry_run``, upload as one commit.

    Raises:
        SubmissionError: a failed check (nothing is staged or uploaded), a bad evaluation
            file, or a Hub refusal.
    """
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise SubmissionError(f"--repo-id must be user/name or org/name, got {repo_id!r}")
    measured = read_evaluation(evaluation, submission)  # before the slow checks: fail fast
    checks = run_checks(submission, lr_dir, limits)
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise SubmissionError(f"validation failed ({failed[0].name}: {failed[0].detail}); nothing was published")
    staged = stage(submission, repo_id, measured, out)
    commit = None if dry_run else publish_folder(staged, repo_id, private)
    return Publication(checks, staged, commit)
