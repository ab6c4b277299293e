import json
import zipfile

import pytest

from rtsr.errors import SubmissionError
from rtsr.submissions.submission import SubmissionMeta, open_submission, pack
from tests.support.submissions import make_submission


def test_folder(tmp_path):
    root = make_submission(tmp_path / "team", files={"utils/__init__.py": "", "results/0001.png": b"x"})
    sub = open_submission(root)
    assert sub.root == root.resolve() and sub.name == "team" and sub.revision is None
    assert sub.meta.scale == 2 and sub.meta.track == 1 and sub.meta.team == "Test Team"
    assert [p.name for p in sub.checkpoints] == ["checkpoint.pth"]
    assert sorted(sub.hashes()) == ["arch.py", "checkpoint.pth", "utils/__init__.py"]  # results/ not hashed


def _zip(folder, target, prefix=""):
    with zipfile.ZipFile(target, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, prefix + p.relative_to(folder).as_posix())
    return target


@pytest.mark.parametrize("prefix", ["", "my_team/"])
def test_zip_flat_or_under_one_folder(tmp_path, monkeypatch, prefix):
    monkeypatch.setenv("RTSR_CACHE", str(tmp_path / "cache"))
    folder = make_submission(tmp_path / "src")
    sub = open_submission(_zip(folder, tmp_path / "submission_42.zip", prefix))
    assert sub.name == "42"
    assert sub.hashes() == open_submission(folder).hashes()


@pytest.mark.parametrize("member", ["../../outside.py", "utils/../../outside.py", "/tmp/outside.py"])
def test_zip_that_escapes_is_refused(tmp_path, monkeypatch, member):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RTSR_CACHE", str(cache))
    bad = tmp_path / "submission_evil.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("arch.py", "def srmodel(): pass")
        z.writestr(member, "print('escaped')")
    with pytest.raises(SubmissionError, match=f"member '{member}' would land outside the submission"):
        open_submission(bad)
    # Nothing was extracted anywhere: not where the member points (the zips are unpacked two
    # levels below the cache, so "../../" is the cache itself), and not inside a folder either
    # (zipfile's extractall would strip the "..", so a missing refusal shows as a file here).
    assert [p for p in tmp_path.rglob("outside.py")] == []
    assert not (cache / "outside.py").exists()
    assert not (cache / "zips").exists() or [p.name for p in (cache / "zips").iterdir()] == []


def test_not_a_zip(tmp_path):
    (tmp_path / "submission_x.zip").write_text("nope")
    with pytest.raises(SubmissionError, match="not a valid zip"):
        open_submission(tmp_path / "submission_x.zip")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"scale": 4}, "'scale' must be 2 or 3"),
        ({"pad_multiple": -1}, "pad_multiple"),
        ({"colour": "red"}, "unknown field"),
        ({"links": ["x"]}, "'links' must map"),
    ],
)
def test_bad_metadata(tmp_path, meta, message):
    root = make_submission(tmp_path / "s", meta=meta)
    with pytest.raises(SubmissionError, match=message):
        open_submission(root)


def test_missing_pieces(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SubmissionError, match=r"no arch\.py"):
        open_submission(tmp_path / "empty")
    root = make_submission(tmp_path / "s")
    (root / "submission.json").write_text("{not json")
    with pytest.raises(SubmissionError, match="not valid JSON"):
        open_submission(root)
    with pytest.raises(SubmissionError, match="no such folder"):
        open_submission(tmp_path / "absent")
    with pytest.raises(SubmissionError, match="40-character commit"):
        open_submission("org/name@main")


def test_submission_json_is_optional(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSR_CACHE", str(tmp_path / "cache"))
    folder = make_submission(tmp_path / "src", files={"utils/__init__.py": "", "requirements.txt": "torch\n"})
    (folder / "submission.json").unlink()
    sub = open_submission(_zip(folder, tmp_path / "submission_team07.zip"))
    assert not sub.has_metadata and sub.name == "team07"
    assert sub.meta == SubmissionMeta() and sub.meta.scale is None and sub.meta.track is None
    known = sub.with_scale(3)
    assert (known.meta.scale, known.meta.track, known.root, known.name) == (3, 2, sub.root, "team07")
    assert sub.meta.scale is None  # frozen: with_scale makes a new one


def test_a_scale_is_optional_in_submission_json_but_never_contradicted(tmp_path):
    root = make_submission(tmp_path / "s", meta={"team": "T"})
    data = json.loads((root / "submission.json").read_text())
    del data["scale"]
    (root / "submission.json").write_text(json.dumps(data))
    sub = open_submission(root)
    assert sub.has_metadata and sub.meta.scale is None and sub.meta.team == "T"
    assert sub.with_scale(2).meta.scale == 2
    declared = open_submission(make_submission(tmp_path / "x2"))
    assert declared.with_scale(2) == declared
    with pytest.raises(SubmissionError, match=r"submission\.json declares x2, not x3"):
        declared.with_scale(3)
    with pytest.raises(ValueError, match="scale must be one of"):
        declared.with_scale(4)


def test_pack_writes_the_challenge_layout(tmp_path):
    root = make_submission(tmp_path / "team", files={"utils/modules.py": "X = 1", "results/a.png": b"png"})
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "arch.cpython-311.pyc").write_bytes(b"junk")
    target = pack(open_submission(root), tmp_path / "out")
    assert target.name == "submission_team.zip"
    with zipfile.ZipFile(target) as z:
        names = sorted(z.namelist())
    assert names == ["arch.py", "checkpoint.pth", "results/a.png", "submission.json", "utils/modules.py"]
    assert json.loads(zipfile.ZipFile(target).read("submission.json"))["scale"] == 2
