import json
import math
import subprocess
import sys

import pytest

from rtsr.errors import InputError
from rtsr.leaderboard.sources import EVALUATIONS_DIR
from rtsr.results.schema import (
    FIELDS,
    SCHEMA,
    SCHEMA_VERSION,
    Evaluation,
    SubmissionRecord,
    read_evaluation,
    write_evaluation,
)
from tests.support.data import ROOT

SUBMISSION = {
    "request": "r-0001",
    "repo": "team/fastnet",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "team": "Team Fast",
    "license": "mit",
    "url": "https://huggingface.co/team/fastnet/tree/0123456789abcdef0123456789abcdef01234567",
}


def _document(name="rtsrn-x2_Set5.json"):
    return json.loads((EVALUATIONS_DIR / name).read_text())


def test_the_schema_is_named_once_and_evaluate_writes_it():
    import rtsr.evaluation

    assert (SCHEMA, SCHEMA_VERSION) == ("rtsr.evaluate", 1)
    assert (rtsr.evaluation.SCHEMA, rtsr.evaluation.SCHEMA_VERSION) == (SCHEMA, SCHEMA_VERSION)


@pytest.mark.parametrize("module", ["rtsr.leaderboard", "rtsr.results", "rtsr.results.schema"])
def test_reading_results_needs_no_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_bundled_document_is_valid_and_holds_every_field():
    paths = sorted(EVALUATIONS_DIR.glob("*.json"))
    assert len(paths) == 12
    for path in paths:
        evaluation = read_evaluation(path)
        assert evaluation.where == str(path)
        doc = json.loads(path.read_text())
        assert evaluation.model_id == doc["model"]["id"]
        assert (evaluation.track, evaluation.scale) == (doc["model"]["track"], doc["model"]["scale"])
        assert (evaluation.dataset, evaluation.device, evaluation.precision) == (
            doc["dataset"]["name"],
            doc["device"],
            doc["precision"],
        )
        assert evaluation.number("runtime.runtime.mean_ms") == doc["runtime"]["runtime"]["mean_ms"]
        assert evaluation.submission is None


def test_unknown_flops_read_as_nan():
    doc = _document()
    doc["model"]["flops"] = None
    assert math.isnan(Evaluation.from_document(doc, "x.json").number("model.flops"))


def _delete_relative(doc):
    del doc["runtime"]["relative_to_bicubic"]
    return json.dumps(doc)


def _with_model(**changes):
    def change(doc):
        doc["model"].update(changes)
        return json.dumps(doc)

    return change


def _with_mean(**changes):
    def change(doc):
        doc["metrics"]["mean"].update(changes)
        return json.dumps(doc)

    return change


def _with_runtime(**changes):
    def change(doc):
        for key, value in changes.items():
            (doc["runtime"]["runtime"] if key == "mean_ms" else doc["runtime"])[key] = value
        return json.dumps(doc)

    return change


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("broken.json", lambda doc: json.dumps(doc)[:-20], "not a readable JSON file"),
        ("empty.json", lambda doc: "", "not a readable JSON file"),
        ("metrics.json", lambda doc: json.dumps({**doc, "schema": "rtsr.metrics"}), "expected 'rtsr.evaluate' v1"),
        ("future.json", lambda doc: json.dumps({**doc, "schema_version": 2}), "expected 'rtsr.evaluate' v1"),
        ("list.json", lambda doc: json.dumps([doc]), "top level is not an object"),
        ("partial.json", _delete_relative, "no runtime.relative_to_bicubic"),
        ("text.json", lambda doc: json.dumps({**doc, "score": "high"}), "score is not a number"),
        ("yes.json", lambda doc: json.dumps({**doc, "psnr_gain": True}), "psnr_gain is not a number"),
        ("device.json", lambda doc: json.dumps({**doc, "device": 3090}), "device is not text"),
        ("track.json", _with_model(track=3), "model.track is 3, expected one of 1, 2"),
        ("scale.json", _with_model(scale=3), "model.scale is 3, but Track 1 is x2"),
        ("float.json", _with_model(scale=2.0), "model.scale is not an integer"),
        ("sub.json", lambda doc: json.dumps({**doc, "submission": "team/x"}), "submission is not an object"),
        (
            "link.json",
            lambda doc: json.dumps({**doc, "submission": {**SUBMISSION, "url": "javascript:alert(1)"}}),
            "submission.url is not a https://huggingface.co/ address",
        ),
        (
            "repo.json",
            lambda doc: json.dumps({**doc, "submission": {**SUBMISSION, "repo": "no slash"}}),
            "submission.repo is not org/name",
        ),
        (
            "team.json",
            lambda doc: json.dumps({**doc, "submission": {**SUBMISSION, "team": ["a"]}}),
            "submission.team is not text",
        ),
        # what the board shows is what the measurements give: a hand edit, NaN or inf is refused
        (
            "edited.json",
            lambda doc: json.dumps({**doc, "score": 1e12}),
            "score is 1e+12, but its measurements give 0.671351",
        ),
        ("nan.json", lambda doc: json.dumps({**doc, "score": math.nan}), "score is NaN"),
        ("nan_psnr.json", _with_mean(psnr_rgb=math.nan), "metrics.mean.psnr_rgb is NaN"),
        ("inf_psnr.json", _with_mean(psnr_rgb=math.inf), "metrics.mean.psnr_rgb is inf: outputs equal to the ground"),
        ("inf_y.json", _with_mean(psnr_y=math.inf), "metrics.mean.psnr_y is inf: outputs equal to the ground"),
        (
            "gain.json",
            lambda doc: json.dumps({**doc, "psnr_gain": 4.5}),
            "psnr_gain is 4.5, but its measurements give 1.56651",
        ),
        (
            "fast.json",
            _with_runtime(relative_to_bicubic=0.01),
            "relative_to_bicubic is 0.01, but its measurements give",
        ),
        ("zero.json", _with_runtime(mean_ms=0), "runtime.runtime.mean_ms is 0, not a positive number of ms"),
    ],
)
def test_bad_documents_raise_one_line_naming_the_file(tmp_path, name, change, needle):
    path = tmp_path / name
    path.write_text(change(_document()))
    with pytest.raises(InputError) as error:
        read_evaluation(path)
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: ") and needle in message, message


def test_every_field_is_checked():
    for dotted in FIELDS:
        doc = _document()
        *parents, last = dotted.split(".")
        holder = doc
        for part in parents:
            holder = holder[part]
        del holder[last]
        with pytest.raises(InputError, match=f"no {dotted}"):
            Evaluation.from_document(doc, "doc")


def test_submission_fields_and_link():
    doc = {**_document(), "submission": SUBMISSION}
    submission = Evaluation.from_document(doc, "doc").submission
    assert submission == SubmissionRecord(**SUBMISSION)
    assert submission.link == SUBMISSION["url"]
    # a worker's local submission: no repo, no url; null fields read as empty
    local = {"request": "r-2", "repo": None, "commit": "sha256:0123456789abcdef", "team": "T", "url": None}
    submission = Evaluation.from_document({**doc, "submission": local}, "doc").submission
    assert (submission.repo, submission.url, submission.link, submission.team) == ("", "", "", "T")
    # without a url, the link is the repo at the commit
    no_url = SubmissionRecord(repo="team/fastnet", commit="abc")
    assert no_url.link == "https://huggingface.co/team/fastnet/tree/abc"


def test_an_evaluated_submission_reads_as_which_one_it_is():
    """The name of a queued entry, wherever it is shown: the method, the team (else the
    submitter), the repo at its short commit (else the request)."""
    hub = SubmissionRecord(request="req-00004", repo="team/fastnet", commit="0123456789abcdef", team="Team Fast")
    assert hub.label("FastNet x2") == "FastNet x2 · Team Fast · team/fastnet@0123456"
    local = SubmissionRecord(request="req-00001", commit="sha256:0123", team="rtsr baselines", submitter="maintainer")
    assert local.label("RTSRN x2") == "RTSRN x2 · rtsr baselines · req-00001"
    # no team (a challenge zip without submission.json): who submitted it
    anonymous = SubmissionRecord(request="req-00003", commit="sha256:4567", submitter="maintainer")
    assert anonymous.label("challenge_team") == "challenge_team · maintainer · req-00003"
    # the same method queued twice never reads alike
    assert local.label("RTSRN x2") != SubmissionRecord(request="req-00002", team="rtsr baselines").label("RTSRN x2")
    # the submitter is part of the document's submission, read back as written
    doc = {**_document(), "submission": {**SUBMISSION, "submitter": "alice"}}
    measured = Evaluation.from_document(doc, "doc").submission
    assert measured is not None and measured.submitter == "alice"


def test_write_checks_then_writes_what_reads_back(tmp_path):
    doc = {**_document(), "submission": SUBMISSION}
    doc["metrics"]["images"][0]["psnr_rgb"] = math.inf  # one image equal to its ground truth
    path = write_evaluation(doc, tmp_path / "sub" / "out.json")
    assert path == tmp_path / "sub" / "out.json"
    assert "Infinity" in path.read_text()
    back = read_evaluation(path)
    assert back.document == doc and back.images()[0]["psnr_rgb"] == math.inf
    assert back.submission == SubmissionRecord(**SUBMISSION)

    with pytest.raises(InputError, match=r"bad\.json: not a valid rtsr\.evaluate v1 document \(no score\)"):
        write_evaluation({k: v for k, v in doc.items() if k != "score"}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
