"""The newcomer's path: the README's Quick start main job, as written, in a fresh clone of the
repository's committed tree with nothing beside it (no ../shared, no RTSR_SHARED, no network)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.data import ROOT, fresh_clone

#: What the Quick start's main job line starts with; the packages are installed already and
#: the test has no network, so the test runs what follows it.
INSTALL = "pip install -r requirements.txt && "


def section(text: str, heading: str) -> str:
    """``text`` from the line ``heading`` up to the next level-2 heading."""
    assert f"\n{heading}\n" in f"\n{text}", f"no {heading!r} in the document"
    return f"\n{text}".split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of ``text``, in order: (info string, content). A fence may be
    indented (inside a list item); its content loses that indentation, and only that."""
    blocks: list[tuple[str, str]] = []
    fence: tuple[str, str, list[str]] | None = None  # indentation, info, lines
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if fence is None and stripped.startswith("```"):
            fence = (line[: len(line) - len(stripped)], stripped.removeprefix("```").strip(), [])
        elif fence is not None and line.strip() == "```":
            blocks.append((fence[1], "\n".join(fence[2])))
            fence = None
        elif fence is not None:
            fence[2].append(line.removeprefix(fence[0]))
    assert fence is None, "an unclosed fence"
    return blocks


def quick_start_blocks(readme: str) -> list[tuple[str, str]]:
    """The fenced blocks of the README's "## Quick start" section, in order: (info, text)."""
    return fenced_blocks(section(readme, "## Quick start"))


def main_job(readme: str) -> str:
    """The command line under the "# the main job" comment of the Quick start's bash block,
    without the install step."""
    lines = next(text for info, text in quick_start_blocks(readme) if info == "bash").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# the main job")]
    assert len(starts) == 1, lines
    command = next(line for line in lines[starts[0] + 1 :] if not line.startswith("#"))
    assert command.startswith(INSTALL), command
    return command.removeprefix(INSTALL)


def printed_output(readme: str) -> str:
    """The first plain block after the bash block: what the README says the main job prints."""
    infos = [info for info, _ in quick_start_blocks(readme)]
    after = infos.index("bash") + 1
    assert "" in infos[after:], "no output block after the Quick start's commands"
    return quick_start_blocks(readme)[infos.index("", after)][1]


def table_row(text: str, name: str) -> list[float]:
    """The numbers of the metrics table's row ``name`` (``model`` or ``bicubic``)."""
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, text
    return [float(cell) for cell in rows[0][1:]]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the repository's HEAD, alone in a temporary folder."""
    return fresh_clone(tmp_path_factory.mktemp("fresh"))


def test_the_quick_start_main_job_runs_in_a_fresh_clone(clone):
    assert sorted(p.name for p in clone.parent.iterdir()) == ["rtsr"]
    assert not (clone.parent / "shared").exists()  # what ../shared/data/eval would be beside it
    assert sorted(p.name for p in (clone / "testsets" / "Set5").iterdir()) == [
        "baby.png", "bird.png", "butterfly.png", "head.png", "woman.png",
    ]  # fmt: skip

    readme = (clone / "README.md").read_text()
    job = main_job(readme)
    assert "../shared" not in job and "testsets/Set5" in job
    env = {k: v for k, v in os.environ.items() if k != "RTSR_SHARED"} | {"HF_HUB_OFFLINE": "1"}
    stdout = ""
    for command in job.split(" && "):
        argv = shlex.split(command)
        assert argv[0] == "python", command
        result = subprocess.run(
            [sys.executable, *argv[1:]], cwd=clone, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\nexited {result.returncode}:\n{result.stderr}"
        stdout += result.stdout

    argv = shlex.split(job.split(" && ")[-1])
    out = clone / argv[argv.index("--out") + 1]
    assert out.is_file(), stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "rtsr.evaluate" and doc["model"]["id"] == "rtsrn-x2" and doc["model"]["scale"] == 2
    assert doc["dataset"]["name"] == "Set5" and doc["dataset"]["images"] == 5
    assert sorted(image["name"] for image in doc["metrics"]["images"]) == ["baby", "bird", "butterfly", "head", "woman"]
    # RTSRN x2 on Set5 (JPEG q90 LR) is about 31.4 dB RGB; bicubic below it
    model_psnr, bicubic_psnr = doc["metrics"]["mean"]["psnr_rgb"], doc["bicubic"]["mean"]["psnr_rgb"]
    assert 30.5 < model_psnr < 32.5
    assert 28.0 < bicubic_psnr < model_psnr
    assert doc["psnr_gain"] > 0 and doc["psnr_gain"] == pytest.approx(model_psnr - bicubic_psnr)
    assert doc["score"] > 0
    # the shortened protocol the line asks for
    assert doc["runtime"]["warmup"] == int(argv[argv.index("--warmup") + 1])
    assert doc["runtime"]["runtime"]["passes"] == int(argv[argv.index("--repeat") + 1])

    # What the README says the job prints is what it printed (PSNR and SSIM to 0.01: the
    # runtime differs from run to run, the numbers only by a CPU's rounding).
    shown = printed_output(readme)
    for name in ("model", "bicubic"):
        assert table_row(stdout, name) == pytest.approx(table_row(shown, name), abs=0.01), name
    assert f"wrote {argv[argv.index('--out') + 1]}" in stdout and f"wrote {out.relative_to(clone)}" in shown


def documentation() -> list[Path]:
    """The README and the pages of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_image_and_page_the_docs_show_is_in_the_repository():
    shown = 0
    for page in documentation():
        text = page.read_text()
        images = re.findall(r'<img src="([^"]+)"', text) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
        shown += len(images)
        for src in images:
            assert not src.startswith(("http:", "https:", "/")), src  # the Space's own files, read offline
            assert (page.parent / src).is_file(), f"{page.name}: {src}"
    assert shown >= 9


def test_every_link_between_the_docs_lands_on_a_heading():
    """A link to another page, or to a heading (``#anchor``, as GitHub and the Hub make them),
    finds it: the README's split into docs/ left none behind."""

    def anchors(text: str) -> set[str]:
        headings = [line for _, line in _outside_fences(text) if re.match(r"^#{1,6} ", line)]
        return {re.sub(r"[^\w\- ]", "", h.lstrip("#").strip().lower()).replace(" ", "-") for h in headings}

    pages = {page.resolve(): anchors(page.read_text()) for page in documentation()}
    links = 0
    for page in documentation():
        for target, anchor in re.findall(r"\]\(((?:[\w./-]+\.md)?)(?:#([\w-]+))?\)", page.read_text()):
            if not target and not anchor:
                continue
            links += 1
            landing = (page.parent / target).resolve() if target else page.resolve()
            assert landing in pages, f"{page.name}: ({target}#{anchor}) is no page of the docs"
            assert not anchor or anchor in pages[landing], f"{page.name}: ({target}#{anchor}) lands on no heading"
    assert links >= 15


def _outside_fences(text: str) -> list[tuple[int, str]]:
    """The lines of ``text`` outside fenced blocks, numbered."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def test_the_readme_is_a_front_page():
    """What a Space's page and a repository's front page should be: under 300 lines, the rest
    in docs/, each page linked from it."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    for page in documentation()[1:]:
        assert f"](docs/{page.name})" in readme, page.name
