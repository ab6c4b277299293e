"""The participant's path through the real CLI: validate, pack, publish --dry-run, register
from a Hub cache with HF_HUB_OFFLINE=1, and run the registered model."""

import json
import zipfile

from PIL import Image

from tests.conftest import assert_one_line_error, make_submission, photo, populate_hub_cache, run_cli

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


def test_pack_then_validate_the_zip(tmp_path):
    root = make_submission(tmp_path / "myteam")
    out = run_cli("pack", root, "--out-dir", tmp_path, check=True)
    assert "submission_myteam.zip" in out.stdout
    with zipfile.ZipFile(tmp_path / "submission_myteam.zip") as z:
        assert "arch.py" in z.namelist()
    result = run_cli("validate", tmp_path / "submission_myteam.zip", env={"RTSR_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout + result.stderr


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
    run_cli(
        "sr", "--model", f"team/tiny@{REVISION}", "--lr-dir", lr, "--out-dir", tmp_path / "sr2", env=env, check=True
    )
    wrong = run_cli("sr", "--model", "tiny-x2", "--scale", "3", "--lr-dir", lr, "--out-dir", tmp_path / "sr3", env=env)
    assert_one_line_error(wrong, "is a x2 model, but x3 was asked for")
