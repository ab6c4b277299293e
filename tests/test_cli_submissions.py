"""The participant's path through the real CLI: validate, pack, publish --dry-run, register
from a Hub cache with HF_HUB_OFFLINE=1, and run the registered model."""

import json
import re
import zipfile

import numpy as np
from PIL import Image

from tests.support.cli import assert_one_line_error, run_cli
from tests.support.data import photo
from tests.support.submissions import make_submission, populate_hub_cache

REVISION = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def test_validate_pass_and_fail(tmp_path):
    out = run_cli("validate", make_submission(tmp_path / "good"), check=True)
    assert "PASS  srmodel()" in out.stdout and out.stdout.strip().splitlines()[-1].startswith("ok:")
    bad = run_cli("validate", make_submission(tmp_path / "bad", "def srmodel(a, b):\n    pass\n", checkpoint=False))
    assert bad.returncode == 1
    assert "FAIL  srmodel()" in bad.stdout and "requires a, b" in bad.stdout
    assert bad.stdout.strip().splitlines()[-1].startswith("FAILED:")


def test_validate_refuses_what_is_not_a_submission(tmp_path):
    (tmp_path / "x").mkdir()
    assert_one_line_error(run_cli("validate", tmp_path / "x"), "no arch.py")
    assert_one_line_error(run_cli("validate", "org/name@main"), "40-character commit")


def _checklist(report: str) -> list[tuple[str, str]]:
    """The (status, check) pairs of a validate report, in order."""
    return re.findall(r"^\s+(PASS|FAIL|SKIP)\s+(\S+(?: \S+)*?)\s{2,}", report, flags=re.MULTILINE)


def test_pack_then_validate_the_zip(tmp_path):
    root = make_submission(tmp_path / "myteam")
    out = run_cli("pack", root, "--out-dir", tmp_path, check=True)
    assert "submission_myteam.zip" in out.stdout
    with zipfile.ZipFile(tmp_path / "submission_myteam.zip") as z:
        assert "arch.py" in z.namelist()
    result = run_cli("validate", tmp_path / "submission_myteam.zip", env={"RTSR_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout + result.stderr
    # the zip's own checklist: the same checks as the folder's, all passed
    folder = run_cli("validate", root, check=True)
    assert _checklist(result.stdout) == _checklist(folder.stdout)
    assert len(_checklist(result.stdout)) >= 8
    assert "PASS  srmodel()" in result.stdout and "FAIL" not in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("ok:")
    # unpacked once into the cache, by content
    assert len([p for p in (tmp_path / "cache" / "zips").iterdir() if not p.name.startswith(".")]) == 1


def test_pack_takes_its_options_as_written_warns_without_srmodel_and_writes_a_readable_zip(tmp_path):
    import stat

    root = make_submission(tmp_path / "myteam")
    # an abbreviation of --out-dir is not --out-dir: refused, and nothing is written
    wrong = run_cli("pack", root, "--out", tmp_path / "X.zip")
    assert wrong.returncode == 2
    assert_one_line_error(wrong, "unrecognized arguments: --out")
    assert not (tmp_path / "X.zip").exists()
    out = run_cli("pack", root, "--out-dir", tmp_path / "zips", check=True)
    assert out.stderr == ""  # srmodel() is there: no warning
    assert stat.S_IMODE((tmp_path / "zips" / "submission_myteam.zip").stat().st_mode) == 0o644
    # an arch.py with no srmodel(): packed, with a warning that names what is missing
    arch = root / "arch.py"
    arch.write_text(arch.read_text().replace("def srmodel(", "def build_model("))
    warned = run_cli("pack", root, "--out-dir", tmp_path / "zips", check=True)
    assert warned.stderr == (
        "warning: arch.py defines no srmodel() at its top level: the challenge builds the model by calling it\n"
    )
    assert "wrote " in warned.stdout
    # an import of it counts, as the challenge's loader only calls it
    arch.write_text("from utils.model import srmodel\n")
    assert run_cli("pack", root, "--out-dir", tmp_path / "zips", check=True).stderr == ""


def test_a_folder_that_is_not_there_is_named_in_one_line(tmp_path):
    root = make_submission(tmp_path / "myteam")
    missing = tmp_path / "set5" / "lr_x2"
    assert_one_line_error(run_cli("validate", root, "--lr-dir", missing), f"{missing}: no such folder")
    assert_one_line_error(
        run_cli("prepare-data", "--image-dir", tmp_path / "Set5", "--lr-out-dir", tmp_path / "lr",
                "--gt-out-dir", tmp_path / "gt", "--downsample-factor", "2"),
        f"{tmp_path / 'Set5'}: no such folder",
    )  # fmt: skip
    assert_one_line_error(
        run_cli("sr", "--model", "bicubic", "--scale", "2", "--lr-dir", missing, "--out-dir", tmp_path / "o"),
        f"{missing}: no such folder",
    )
    assert not (tmp_path / "lr").exists() and not (tmp_path / "o").exists()


def test_publish_dry_run(tmp_path):
    root = make_submission(tmp_path / "myteam")
    out = run_cli("publish", root, "--repo-id", "me/myteam", "--dry-run", "--out", tmp_path / "stage", check=True)
    assert "dry run: nothing uploaded to me/myteam" in out.stdout
    assert (tmp_path / "stage" / "README.md").read_text().startswith("---\n")


def test_publish_for_real_offline_is_one_line(tmp_path):
    result = run_cli("publish", make_submission(tmp_path / "t"), "--repo-id", "me/t", "--out", tmp_path / "stage",
                     env={"HF_TOKEN": "hf_test"})  # fmt: skip
    assert_one_line_error(result, "HF_HUB_OFFLINE")


def test_register_a_hub_submission_and_run_it(tmp_path):
    cache = tmp_path / "hub"
    populate_hub_cache(cache, "team/tiny", REVISION, make_submission(tmp_path / "upload"))
    registry = tmp_path / "registry.json"
    env = {"HF_HUB_CACHE": str(cache), "RTSR_REGISTRY": str(registry)}
    out = run_cli("registry", "add", f"team/tiny@{REVISION}", "--id", "tiny-x2", env=env, check=True)
    assert "registered tiny-x2 (x2, 2 files hashed)" in out.stdout
    entry = json.loads(registry.read_text())["entries"][0]
    assert entry["source"] == "team/tiny" and entry["revision"] == REVISION
    listed = run_cli("registry", "list", env=env, check=True)
    assert "tiny-x2" in listed.stdout and REVISION[:12] in listed.stdout

    lr = tmp_path / "lr"
    lr.mkdir()
    Image.fromarray(photo("coffee")[:40, :60]).save(lr / "coffee.png")
    run_cli("sr", "--model", "tiny-x2", "--lr-dir", lr, "--out-dir", tmp_path / "sr", env=env, check=True)
    assert Image.open(tmp_path / "sr" / "coffee.png").size == (120, 80)
    hub = run_cli(
        "sr", "--model", f"team/tiny@{REVISION}", "--lr-dir", lr, "--out-dir", tmp_path / "sr2", env=env, check=True
    )
    assert f"wrote {tmp_path / 'sr2'}" in hub.stdout and "upscaled 1 images x2" in hub.stdout
    # the same commit's model, by its Hub id or by its registered id, gives the same pixels
    by_hub = np.asarray(Image.open(tmp_path / "sr2" / "coffee.png"))
    assert by_hub.shape == (80, 120, 3)
    assert np.array_equal(by_hub, np.asarray(Image.open(tmp_path / "sr" / "coffee.png")))
    wrong = run_cli("sr", "--model", "tiny-x2", "--scale", "3", "--lr-dir", lr, "--out-dir", tmp_path / "sr3", env=env)
    assert_one_line_error(wrong, "is a x2 model, but x3 was asked for")
