"""rtsr installed as a user installs it: ``pip install .`` from a fresh clone into a new
virtual environment, then the ``rtsr`` command and the library from a folder far from any
clone, on the data rtsr carries (the bundled models, Set5 and leaderboard tables).

Nothing is downloaded: the new environment sees this one's packages through a ``.pth`` file
(after its own), so pip resolves rtsr's declared dependencies against the pinned versions
and builds with this environment's setuptools (``--no-build-isolation``)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.data import ROOT, fresh_clone
from tests.test_quickstart import fenced_blocks, section


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(the new environment's bin folder, an environment for its commands, an empty folder to
    run them in) after ``pip install .`` of a fresh clone."""
    root = tmp_path_factory.mktemp("install")
    clone = fresh_clone(root / "fresh")
    venv = root / "venv"
    # no pip or setuptools of its own (ensurepip's would be older): this environment's are used
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    purelib = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # this environment's packages, after the new one's own: rtsr itself must come from the wheel
    Path(purelib, "this-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    home = root / "home"
    home.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    _run([bin_dir / "python", "-m", "pip", "install", "--no-build-isolation", "."], cwd=clone, env=env, timeout=600)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return bin_dir, env, elsewhere


def test_pip_install_gives_the_library_and_its_data_from_any_folder(installed):
    bin_dir, env, elsewhere = installed
    shown = json.loads(
        _run(
            [bin_dir / "python", "-c",
             "import importlib.metadata as m, json, rtsr, rtsr.bundled as b, rtsr.submissions.requests as r;"
             "print(json.dumps([m.version('rtsr'), rtsr.__version__, rtsr.__file__, b.in_clone(),"
             " str(b.test_set('Set5')), str(r.DEFAULT_STORE)]))"],
            cwd=elsewhere, env=env,
        )
    )  # fmt: skip
    version, package_version, package_file, in_clone, set5, store = shown
    assert version == package_version  # one version, read by the build from the package
    assert "site-packages" in package_file and not in_clone
    assert sorted(p.name for p in Path(set5).iterdir()) == [
        "baby.png", "bird.png", "butterfly.png", "head.png", "woman.png",
    ]  # fmt: skip
    assert store == f"{env['HOME']}/.local/share/rtsr/store"  # a user folder, not a clone's store/

    help_text = _run(["rtsr", "--help"], cwd=elsewhere, env=env)
    for command in ("prepare-data", "evaluate", "validate", "submit", "worker"):
        assert command in help_text
    assert _run(["rtsr", "--version"], cwd=elsewhere, env=env).strip() == f"rtsr {version}"


def test_the_readmes_installed_line_evaluates_the_bundled_model_on_the_bundled_set5(installed):
    _, env, elsewhere = installed
    readme = (ROOT / "README.md").read_text()
    blocks = fenced_blocks(section(readme, "### Installed, from any folder"))
    (line,) = [text for info, text in blocks if info == "bash"]
    assert line.startswith("cd /tmp && ")
    for command in line.removeprefix("cd /tmp && ").split(" && "):
        argv = shlex.split(command)
        assert argv[0] == "rtsr", command
        printed = _run([*argv, "--quiet"], cwd=elsewhere, env=env)  # in a folder of its own, not /tmp
    out = argv[argv.index("--out") + 1]
    assert f"wrote {out}" in printed
    doc = json.loads((elsewhere / out).read_text())
    assert doc["model"]["id"] == "rtsrn-x2" and doc["dataset"] == {**doc["dataset"], "name": "Set5", "images": 5}
    # RTSRN x2 on Set5 (JPEG q90 LR) is about 31.4 dB RGB; bicubic below it
    assert 30.5 < doc["metrics"]["mean"]["psnr_rgb"] < 32.5
    assert doc["psnr_gain"] > 0
    assert sorted(p.name for p in elsewhere.iterdir()) == sorted([out, "set5"])  # nothing else written here

    # a bundled test set that is not there is one line
    wrong = subprocess.run(["rtsr", "prepare-data", "--image-dir", "bundled:Set6", "--lr-out-dir", "a",
                            "--gt-out-dir", "b", "--downsample-factor", "2"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert wrong.returncode == 2
    assert (
        wrong.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "rtsr prepare-data: error: argument --image-dir: bundled:Set6: no such bundled test set (bundled: Set5)"
        )
    )


def test_the_librarys_example_runs_on_an_installed_rtsr(installed, tmp_path):
    """The names ``rtsr/__init__.py`` offers a notebook: docs/library.md's example, as written, on
    the bundled baby.png."""
    bin_dir, env, _ = installed
    page = (ROOT / "docs" / "library.md").read_text()
    code = next(text for info, text in fenced_blocks(page) if info == "python")
    shutil.copy(ROOT / "testsets" / "Set5" / "baby.png", tmp_path / "baby.png")
    checks = "\nassert 'torch' not in sys.modules  # import rtsr stays cheap\n"
    code = code.replace("import rtsr\n", "import sys\nimport rtsr" + checks, 1)
    assert checks in code
    printed = _run([bin_dir / "python", "-c", code], cwd=tmp_path, env=env)
    assert 33.0 < float(printed) < 35.0  # RTSRN x2 on baby, JPEG q90 LR


def test_every_package_of_rtsr_is_in_the_wheel():
    """pyproject.toml lists rtsr's packages by name (the bundled folders are mapped beside
    them): a package added to rtsr/ and not to the list would be missing from an install."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rtsr").rglob("__init__.py")}
    assert packages == {p for p in listed if not p.startswith("rtsr.data.")}
