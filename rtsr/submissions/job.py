"""What a Hugging Face Job runs for :class:`rtsr.submissions.backends.HfJobsBackend`:

    python -m rtsr.submissions.job '<request JSON>'

It fetches the test sets (with ``$HF_TOKEN``, read-only, when they are private), then drops
the token and the result tag from its environment before any submission code runs, evaluates
the submission as a local worker would (validation and model process in the sandbox), and
prints one line, ``RTSR-RESULT <tag> <JSON>`` or ``RTSR-FAILED <tag> <reason>``, for the
worker to read from the job's log. The submission's processes write to files of the
sandbox, not to the job's log, and never see the tag, so they cannot print a result.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from rtsr.errors import RTSRError, SubmissionError, first_line
from rtsr.submissions.backends import failure_line, result_line
from rtsr.submissions.evaluating import EvaluationSettings, TestSet, evaluate_submission
from rtsr.submissions.requests import local_revision
from rtsr.submissions.submission import open_submission


def _fetch_copy(copy: dict[str, str], token: str | None) -> Path:
    """A local submission's copy in the store's dataset, at the commit given, fetched with the
    job's read token (a private store needs one that reads it).

    Raises:
        SubmissionError: it cannot be had (one line).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    folder = copy["folder"]
    try:
        root = snapshot_download(
            copy["dataset"], repo_type="dataset", revision=copy["commit"], allow_patterns=[f"{folder}/*"], token=token
        )
    except (HfHubHTTPError, OSError) as e:
        where = f"{copy['dataset']}@{copy['commit'][:12]}"
        raise SubmissionError(f"{where}: {folder} cannot be fetched ({first_line(e)})") from None
    return Path(root) / folder


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tag = os.environ.pop("RTSR_RESULT_TAG", "")
    token = os.environ.pop("HF_TOKEN", None)
    if not tag or len(argv) != 2:
        print("usage: RTSR_RESULT_TAG=... python -m rtsr.submissions.job '<request JSON>'", file=sys.stderr)
        return 2
    try:
        payload = json.loads(argv[1])
        settings = EvaluationSettings.from_dict(payload["settings"])
        # fetch what needs the token now, then forget it
        folders = [TestSet(t.name, str(t.folder(token))) for t in settings.test_sets]
        copied = _fetch_copy(payload["copy"], token) if "copy" in payload else None
        del token
        settings = replace(settings, test_sets=tuple(folders))
        submission = open_submission(copied or payload["spec"])
        if copied is not None and local_revision(submission) != payload["copy"]["pin"]:
            raise SubmissionError("the copy fetched from the store is not the submission that was requested")
        with tempfile.TemporaryDirectory(prefix="rtsr-job-") as cache:
            evaluation = evaluate_submission(
                submission, int(payload["track"]), settings, Path(cache), labels=payload["labels"]
            )
    except RTSRError as e:
        print(failure_line(tag, first_line(e, 600)), flush=True)
        return 1
    except (KeyError, TypeError, ValueError) as e:
        print(failure_line(tag, f"a malformed job request ({e.__class__.__name__}: {first_line(e)})"), flush=True)
        return 2
    print(result_line(tag, evaluation), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
