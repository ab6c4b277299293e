"""The participant's path as the documentation writes it: the About tab's "Submit a model"
steps and the participant's guide (docs/participants-guide.md), each command run as written, in order, in a fresh
clone of the repository's committed tree (no ../shared, no RTSR_SHARED, no network: the Hub is
the local stand-in of tests/hub_standin.py, or a local Hub cache).

The clone's own page and guide give the commands, and the clone's own code runs them, as a
participant's clone would (commit a change to test it here; CI tests a clean clone of main).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import hub_standin
from tests.hub_standin import HubStandIn
from tests.support.data import fresh_clone
from tests.support.submissions import populate_hub_cache
from tests.test_quickstart import fenced_blocks, section

#: The page's section, by its heading, and the guide's page.
PAGE_SECTION = "## Submit a model"
GUIDE = Path("docs") / "participants-guide.md"
#: The guide's step that writes my_team's files.
WRITE_THE_MODEL = "**1. Write the model.**"
#: A check line as `validate` prints it: two spaces, the status, two spaces, the check's name
#: (words with single spaces), then two spaces or more and what it found.
CHECK_LINE = re.compile(r"^  (PASS|FAIL|SKIP|WARN)  (\S+(?: \S+)*)(?: {2,}|$)")
#: The line that ends a checklist.
SUMMARY_LINE = re.compile(r"^(ok|FAILED): ")
#: Lines of the guide's transcripts that a run prints as they are, besides the verdict.
EXACT_LINES = ("validate ", "registered ", "dry run: ")
#: Each command's limit: a whole validation on a slow CPU stays well under it.
TIMEOUT_S = 300


# --- the documents' texts -----------------------------------------------------------------


def joined_lines(block: str) -> list[str]:
    """A block's lines, with shell continuations (a trailing backslash) joined."""
    lines: list[str] = []
    pending = ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].rstrip() + " "
            continue
        lines.append(pending + line.strip() if pending else line)
        pending = ""
    assert not pending, block
    return lines


def page_commands(clone: Path) -> list[str]:
    """Every line of the About tab's "Submit a model" blocks that runs rtsr, in order, as the
    clone's page writes it."""
    about = subprocess.run(
        [sys.executable, "-c", "from space.about import ABOUT; print(ABOUT)"],
        cwd=clone, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    commands = [
        line.strip()
        for _, block in fenced_blocks(section(about.stdout, PAGE_SECTION))
        for line in joined_lines(block)
        if line.strip().startswith("python -m rtsr")
    ]
    assert commands, f"no `python -m rtsr` command in the page's {PAGE_SECTION!r}"
    return commands


def guide(clone: Path) -> str:
    """The participant's guide, as the clone has it."""
    return (clone / GUIDE).read_text()


def model_files(guide_text: str) -> tuple[str, str]:
    """The guide's step 1: my_team's ``arch.py`` (the first python block after it) and its
    ``submission.json`` (the first json block after it)."""
    step = guide_text.split(WRITE_THE_MODEL, 1)
    assert len(step) == 2, f"no {WRITE_THE_MODEL!r} in the guide"
    blocks = fenced_blocks(step[1])
    arch = next(text for info, text in blocks if info == "python")
    metadata = next(text for info, text in blocks if info == "json")
    return arch + "\n", metadata + "\n"


def guide_transcripts(guide_text: str) -> list[tuple[str, list[str]]]:
    """Every ``$ python -m rtsr`` line of the guide's blocks, in order, with the lines the
    guide shows it printing (up to the next ``$`` line or the block's end)."""
    transcripts: list[tuple[str, list[str]]] = []
    for _, block in fenced_blocks(guide_text):
        for line in block.splitlines():
            if line.startswith("$ "):
                transcripts.append((line.removeprefix("$ "), []))
            elif transcripts and block.splitlines()[0].startswith("$ "):
                transcripts[-1][1].append(line)
    commands = [command for command, _ in transcripts]
    assert all(c.startswith("python -m rtsr") for c in commands), commands
    assert commands, "no `$ python -m rtsr` line in the guide"
    return transcripts


def fail_details(lines: list[str]) -> list[str]:
    """What each failing check says, without its absolute paths' folders and its numbers."""
    details = [line.removeprefix(m[0]).strip() for line in lines if (m := CHECK_LINE.match(line)) and m[1] == "FAIL"]
    return [re.sub(r"\d+", "N", re.sub(r"(?<!\S)/\S*/", "", detail)) for detail in details]


def checks(lines: list[str]) -> list[tuple[str, str]]:
    """The (status, check name) of each check line, in order."""
    return [(m[1], m[2]) for m in map(CHECK_LINE.match, lines) if m]


# --- the clone and the commands ------------------------------------------------------------


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A fresh clone of the repository's HEAD, alone in a folder of its own (one per test: the
    two tests write the same files)."""
    return fresh_clone(tmp_path / "fresh")


#: What a participant's environment would not have: this machine's shared data, its Hub
#: token and cache, its settings of rtsr (the clone's registry and store are beside its code).
NOT_THEIRS = ("RTSR_SHARED", "RTSR_REGISTRY", "RTSR_STORE", "HF_TOKEN", "HF_HUB_CACHE", "PYTHONPATH")


def clone_env(clone: Path, hf_home: Path, **extra: str) -> dict[str, str]:
    """The environment of a participant in ``clone``: nothing of this machine's rtsr settings,
    a Hugging Face home of the test's."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_THEIRS}
    return env | {"HF_HOME": str(hf_home), **extra}


def assert_the_clones_code_runs(clone: Path, env: dict[str, str]) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import rtsr, space; print(rtsr.__file__); print(space.__file__)"],
        cwd=clone, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    for line in where.stdout.splitlines():
        assert Path(line).resolve().is_relative_to(clone.resolve()), where.stdout


def run(command: str, clone: Path, env: dict[str, str], returncode: int = 0) -> subprocess.CompletedProcess[str]:
    """``command`` (``python ...``) as written, in ``clone``; it must exit ``returncode``."""
    argv = shlex.split(command)
    assert argv[0] == "python", command
    result = subprocess.run(
        [sys.executable, *argv[1:]], cwd=clone, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == returncode, (
        f"$ {command}\nexited {result.returncode}, not {returncode}\n"
        f"--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr.lower(), (
        f"$ {command}\n--- stderr:\n{result.stderr}"
    )
    return result


def write_my_team(clone: Path) -> Path:
    """The guide's step 1 in ``clone``: arch.py and submission.json as written, and an
    untrained checkpoint of the model that arch.py defines."""
    import torch

    arch, metadata = model_files(guide(clone))
    folder = clone / "my_team"
    folder.mkdir()
    (folder / "arch.py").write_text(arch)
    (folder / "submission.json").write_text(metadata)
    json.loads(metadata)  # the guide's json block parses
    spec = importlib.util.spec_from_file_location("my_team_arch", folder / "arch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.ResidualESPCN(scale=2).state_dict(), folder / "checkpoint.pth")
    return folder


# --- the page ------------------------------------------------------------------------------


def test_the_pages_submit_steps_run_as_written_in_a_fresh_clone(
    clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = page_commands(clone)
    # The page publishes to the organisation my-team: the participant's token is a member's.
    # The stand-in lets its token write to its user's namespace and its organisations' only
    # (anything else is 403, as on the Hub), so my-team is made one of them, nothing else.
    assert "my-team" not in hub_standin.NAMESPACES
    monkeypatch.setattr(hub_standin, "NAMESPACES", (*hub_standin.NAMESPACES, "my-team"))
    monkeypatch.setitem(hub_standin.USER, "orgs", [*hub_standin.USER["orgs"], {"type": "org", "name": "my-team"}])
    write_my_team(clone)
    outputs: dict[str, str] = {}
    with HubStandIn() as hub:
        env = clone_env(clone, tmp_path / "hf") | hub.env()
        assert_the_clones_code_runs(clone, env)
        for command in commands:
            outputs[command] = run(command, clone, env).stdout

        def printed(subcommand: str) -> str:
            found = [out for command, out in outputs.items() if shlex.split(command)[3:4] == [subcommand]]
            assert len(found) == 1, f"one `{subcommand}` on the page, found {len(found)}: {commands}"
            return found[0]

        # sr wrote results/, and validate passed with them
        assert sorted(p.name for p in (clone / "my_team" / "results").glob("*.png")) == [
            "baby.png", "bird.png", "butterfly.png", "head.png", "woman.png",
        ]  # fmt: skip
        validated = printed("validate").splitlines()
        assert any(line.startswith("ok:") for line in validated), validated
        assert ("PASS", "results/") in checks(validated) and ("PASS", "reproduce results/") in checks(validated)

        document = json.loads((clone / "my_team_set5.json").read_text())
        assert document["schema"] == "rtsr.evaluate" and document["dataset"]["name"] == "Set5"
        assert document["dataset"]["images"] == 5 and document["model"]["scale"] == 2

        zipped = clone / "submission_my_team.zip"
        assert stat.S_IMODE(zipped.stat().st_mode) == 0o644
        with zipfile.ZipFile(zipped) as z:
            names = z.namelist()
        assert {"arch.py", "checkpoint.pth", "submission.json"} <= {n.rsplit("/", 1)[-1] for n in names}, names

        repo = hub.repos["model", "my-team/espcn-x2"]
        assert {"arch.py", "README.md", "submission.json", "checkpoint.pth"} <= set(repo.head.files)
        assert repo.head.files["arch.py"] == (clone / "my_team" / "arch.py").read_bytes()
        assert repo.head.oid in printed("publish")

        submitted = re.search(r"\b(req-\d+)\b", printed("submit"))
        assert submitted, printed("submit")
        listed = run("python -m rtsr requests", clone, env).stdout
        line = next((line for line in listed.splitlines() if line.startswith(submitted[1] + " ")), None)
        assert line is not None, listed
        assert line.split()[1] == "pending", line
        assert f"my-team/espcn-x2@{repo.head.oid[:12]}" in line.split(), line
        as_json = json.loads(run("python -m rtsr requests --json", clone, env).stdout)
        request = next(r for r in as_json if r["id"] == submitted[1])
        assert (request["status"], request["repo"], request["revision"], request["track"]) == (
            "pending", "my-team/espcn-x2", repo.head.oid, 1,
        )  # fmt: skip
    # the commands wrote into the clone, never into the working tree they ran the code of
    assert (clone / "store").is_dir()


# --- the guide -------------------------------------------------------------------


def whole_model_arch(arch: str) -> str:
    """The challenge's layout as the guide's prose has it: the guide's arch.py with an
    ``srmodel()`` that returns the whole model saved in ``model.pth``."""
    head = arch.split("\ndef srmodel", 1)[0].rstrip()
    return f'{head}\n\n\ndef srmodel():\n    return torch.load("model.pth")\n'


def write_their_team(clone: Path, env: dict[str, str]) -> None:
    """their_team: the challenge's layout with no submission.json, the model saved whole with
    ``torch.save(model)`` (its class imported from arch.py), its results/ and requirements."""
    arch, _ = model_files(guide(clone))
    folder = clone / "their_team"
    folder.mkdir()
    (folder / "arch.py").write_text(whole_model_arch(arch))
    (folder / "requirements.txt").write_text("torch\n")
    save = (
        "import torch; from arch import ResidualESPCN; "
        "torch.manual_seed(0); torch.save(ResidualESPCN(scale=2), 'model.pth')"
    )
    own = {k: v for k, v in env.items() if k != "PYTHONSAFEPATH"}  # the participant's own script, as they run it
    subprocess.run([sys.executable, "-c", save], cwd=folder, env=own, check=True, timeout=TIMEOUT_S)
    run("python -m rtsr sr --model their_team --lr-dir set5/lr_x2 --out-dir their_team/results", clone, env)


def write_from_script(clone: Path, scripts: Path, env: dict[str, str]) -> None:
    """from_script: the same layout, its model pickled by a training script that defines the
    class itself (``__main__.ResidualESPCN``)."""
    arch, _ = model_files(guide(clone))
    folder = clone / "from_script"
    folder.mkdir()
    (folder / "arch.py").write_text(whole_model_arch(arch))
    scripts.mkdir()
    train = scripts / "train.py"
    train.write_text(
        arch.split("\ndef srmodel", 1)[0].rstrip()
        + f"\n\n\ntorch.manual_seed(0)\ntorch.save(ResidualESPCN(scale=2), {str(folder / 'model.pth')!r})\n"
    )
    subprocess.run([sys.executable, str(train)], cwd=scripts, env=env, check=True, timeout=TIMEOUT_S)


def test_the_readme_guide_runs_as_written_in_a_fresh_clone(clone: Path, tmp_path: Path) -> None:
    import torch

    transcripts = guide_transcripts(guide(clone))
    hf_home = tmp_path / "hf"
    env = clone_env(clone, hf_home, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hf_home / "hub"))
    assert_the_clones_code_runs(clone, env)

    # what the guide's prose has the participant make first
    page_steps = [c for c in page_commands(clone) if shlex.split(c)[3:4] == ["prepare-data"]]
    assert len(page_steps) == 1 and "set5/lr_x2" in page_steps[0], page_steps
    run(page_steps[0], clone, env)
    write_my_team(clone)
    write_their_team(clone, env)
    write_from_script(clone, tmp_path / "scripts", env)

    cuda = torch.cuda.is_available()
    for command, shown in transcripts:
        argv = shlex.split(command)
        if argv[3:5] == ["registry", "add"]:
            # step 6: a local Hub cache holding the upload above, at the pinned commit
            repo_id, revision = argv[5].split("@")
            staged = clone / "publish-my_team"
            assert staged.is_dir(), "the dry run above stages the upload in publish-my_team"
            populate_hub_cache(hf_home / "hub", repo_id, revision, staged)
        failing = any(line.startswith("FAILED") for line in shown)
        result = run(command, clone, env, returncode=1 if failing else 0)
        printed = result.stdout.splitlines()
        expected = checks(shown)
        if cuda:  # the guide's transcripts are the CPU host's
            expected = [("PASS", name) if name == "forward fp16" else (s, name) for s, name in expected]
        assert checks(printed) == expected, f"$ {command}\n--- printed:\n{result.stdout}\n--- guide:\n" + "\n".join(
            shown
        )
        # the header and the verdict of a checklist, and what registers or stages, are the guide's
        for line in shown:
            if line.startswith(EXACT_LINES) or (SUMMARY_LINE.match(line) and not cuda):
                assert line in printed, f"$ {command}\n--- printed:\n{result.stdout}\n--- guide line:\n{line}"
        if "sr" in argv[3:5] and not cuda:
            # what ran, where (a participant's folder runs in the sandbox) and what it wrote
            assert [line for line in shown if not line.startswith("engine ")] == [
                line for line in printed if not line.startswith("engine ")
            ], f"$ {command}\n--- printed:\n{result.stdout}"
        if failing:
            # what a failing check says is the guide's, but for paths and numbers
            assert fail_details(printed) == fail_details(shown) != [], f"$ {command}\n--- printed:\n{result.stdout}"
        if argv[3:5] == ["registry", "list"]:
            for line in shown:
                assert line.split() in [p.split() for p in printed], f"{line!r} not listed:\n{result.stdout}"

    registry = json.loads((clone / "submissions" / "registry.json").read_text())
    assert "espcn-x2" in json.dumps(registry)
    assert (clone / "submission_their_team.zip").is_file() and (clone / "submission_my_team.zip").is_file()
