import json
import math

import pytest

from rtsr.errors import InputError
from rtsr.outputs import staged_output_dir, write_json


def test_stage_becomes_the_folder_on_success(tmp_path):
    with staged_output_dir(tmp_path / "out") as stage:
        (stage / "a.png").write_text("a")
        assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "a.png").read_text() == "a"


def test_stage_merges_into_an_existing_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.png").write_text("old")
    (out / "a.png").write_text("stale")
    with staged_output_dir(out) as stage:
        (stage / "a.png").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "old.png"]
    assert (out / "a.png").read_text() == "new"


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged_output_dir(tmp_path / "out") as stage:
        (stage / "a.png").write_text("a")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_target_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match="not a folder"), staged_output_dir(tmp_path / "out"):
        pass


def test_json_is_complete_and_keeps_infinity(tmp_path):
    path = tmp_path / "deep" / "r.json"
    write_json({"psnr": math.inf, "n": 1}, path)
    assert json.loads(path.read_text()) == {"psnr": math.inf, "n": 1}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
