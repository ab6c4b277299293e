"""The sandbox against hostile submissions (tests/hostile/), through the real validator and
the real CLI: each attack is refused or contained with a one-line reason, nothing it started
is left running, and nothing outside is reached. The bundled submissions still pass."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from rtsr.arguments import parse_size
from rtsr.submissions import sandbox
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.submission import open_submission
from rtsr.submissions.validation import run_checks
from tests.support.cli import run_cli
from tests.support.submissions import make_submission, populate_hub_cache

HOSTILE = Path(__file__).parent / "hostile"
SECRET = "hf_fake_secret_123"


@pytest.fixture
def bubblewrap():
    """Tests of namespace isolation need bubblewrap: they skip without it, except under CI,
    where .ci/run installs it and its absence is a failure."""
    problem = sandbox.bubblewrap_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; .ci/run installs bubblewrap")
        pytest.skip(problem)


def hostile(tmp_path: Path, name: str, **values: str) -> Path:
    """A submission folder whose arch.py is tests/hostile/NAME.py with ``{key}`` filled in."""
    arch = (HOSTILE / f"{name}.py").read_text()
    for key, value in values.items():
        arch = arch.replace("{" + key + "}", value)
    return make_submission(tmp_path / name, arch, checkpoint=False)


def marker(tmp_path: Path) -> str:
    return f"rtsr-hostile-{os.getpid()}-{tmp_path.name}"


def running_with(text: str) -> list[int]:
    """PIDs of this machine's live processes (zombies, already dead, aside) whose command line
    holds ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if (
                    text.encode() in (entry / "cmdline").read_bytes()
                    and "\nState:\tZ" not in (entry / "status").read_text()
                ):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def failed(checks) -> list[tuple[str, str]]:
    return [(c.name, c.detail) for c in checks if c.status == "fail"]


def check(checks, name: str):
    return next(c for c in checks if c.name == name)


LIMITS = Limits(wall_seconds=120)


def test_a_token_in_the_environment_or_home_is_out_of_reach(tmp_path, bubblewrap, monkeypatch):
    home = tmp_path / "home"
    token_file = home / ".cache" / "huggingface" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", SECRET)
    monkeypatch.setenv("HOME", str(home))
    root = hostile(tmp_path, "env_snoop", secret=SECRET, token_file=str(token_file))
    checks = run_checks(open_submission(root), limits=LIMITS)
    [(name, detail)] = failed(checks)
    assert name == "srmodel()" and detail.endswith("RuntimeError: snooped: []"), detail
    assert all(SECRET not in c.detail for c in checks)
    # The same attack without namespaces still gets no token from its environment, but reads
    # the token file: what bubblewrap stops, and why validate warns without it.
    monkeypatch.setenv("RTSR_SANDBOX", "none")
    unisolated = run_checks(open_submission(root), limits=LIMITS)
    [(_, detail)] = failed(unisolated)
    assert f"{token_file}: {SECRET}" in detail and "env HF_TOKEN" not in detail


def test_the_cli_validator_hides_hf_token(tmp_path, bubblewrap):
    root = hostile(tmp_path, "env_snoop", secret=SECRET, token_file="/nonexistent")
    result = run_cli("validate", root, "--timeout", "120", env={"HF_TOKEN": SECRET})
    assert result.returncode == 1
    assert "snooped: []" in result.stdout and SECRET not in result.stdout + result.stderr


def test_a_memory_bomb_stops_at_the_memory_limit(tmp_path):
    # 2 GB: a CUDA build of torch maps about 1 GB of private memory when it is imported
    limits = Limits(memory_bytes=parse_size("2GB"), wall_seconds=120)
    checks = run_checks(open_submission(hostile(tmp_path, "memory_bomb")), limits=limits)
    [(name, detail)] = failed(checks)
    assert name == "srmodel()" and detail.endswith("(exceeded the memory limit of 2 GB)"), detail


def test_a_busy_loop_stops_at_the_cpu_limit(tmp_path):
    limits = Limits(wall_seconds=120, cpu_seconds=10)
    started = time.monotonic()
    checks = run_checks(open_submission(hostile(tmp_path, "busy_loop")), limits=limits)
    assert failed(checks) == [("srmodel()", "exceeded the CPU-time limit of 10 s")]
    assert time.monotonic() - started < 60  # stopped by the CPU limit, long before the wall clock's


def test_processes_left_behind_are_all_killed(tmp_path):
    mark = marker(tmp_path)
    started = time.monotonic()
    checks = run_checks(open_submission(hostile(tmp_path, "escape", marker=mark)), limits=LIMITS)
    # the submission itself is fine: it passes, with a warning naming what it left behind
    assert failed(checks) == []
    assert check(checks, "processes").detail == "22 processes it started were still running; all killed"
    assert running_with(mark) == []
    assert time.monotonic() - started < 100  # returned at once: nothing held the validator


def test_a_fork_bomb_stops_at_the_process_limit(tmp_path, bubblewrap):
    checks = run_checks(open_submission(hostile(tmp_path, "fork_bomb")), limits=Limits(wall_seconds=60, processes=64))
    [(name, detail)] = failed(checks)
    assert name == "srmodel()" and "BlockingIOError" in detail, detail
    assert detail.endswith("(exceeded the process limit of 64)")
    assert running_with(str(tmp_path / "fork_bomb")) == []


def test_no_connection_reaches_a_port_on_this_host(tmp_path, bubblewrap):
    mark = marker(tmp_path)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        checks = run_checks(open_submission(hostile(tmp_path, "socket", port=str(port), marker=mark)), limits=LIMITS)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    [(name, detail)] = failed(checks)
    assert name == "srmodel()" and "ConnectionRefusedError" in detail, detail


def test_nothing_is_written_outside_the_scratch_folder(tmp_path, bubblewrap):
    outside, own = tmp_path / "outside.txt", tmp_path / "write_outside" / "written.txt"
    root = hostile(tmp_path, "write_outside", outside=str(outside), own=str(own), marker=marker(tmp_path))
    checks = run_checks(open_submission(root), limits=LIMITS)
    [(name, detail)] = failed(checks)
    # outside: no such folder in the sandbox, or not the payload user's; its own folder: read-only
    assert name == "srmodel()" and detail.endswith("', 'Read-only file system']"), detail
    assert not outside.exists() and not own.exists()


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_a_link_out_of_the_folder_is_not_followed(tmp_path, bubblewrap, mode):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(mode)  # 0o600: a root host copies the folder for the payload's user
    root = hostile(tmp_path, "link_snoop")
    (root / "secret_link").symlink_to(secret)
    checks = run_checks(open_submission(root), limits=LIMITS)
    [(name, detail)] = failed(checks)
    assert name == "srmodel()" and "FileNotFoundError" in detail and SECRET not in detail, detail


def test_no_link_binds_another_file_of_a_hub_cache(tmp_path, bubblewrap, monkeypatch):
    """A local folder's link into a Hub cache's blobs/ is not followed (it bound the whole
    folder, and the private test set downloaded beside it); a Hub snapshot gets its own blobs,
    file by file, and nothing else of its repo's."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    testset = tmp_path / "testset"
    testset.mkdir()
    (testset / ".gitattributes").write_text("*.png filter=lfs\n")
    (testset / "0001.png").write_text(SECRET)  # the private test set, in the same cache
    populate_hub_cache(cache, "lab/testset", "a" * 40, testset)
    blobs = cache / "models--lab--testset" / "blobs"
    gitattributes = next(b for b in blobs.iterdir() if b.read_text().startswith("*.png"))
    local = hostile(tmp_path, "blob_snoop")
    (local / "cache_link").symlink_to(gitattributes)
    [(name, detail)] = failed(run_checks(open_submission(local), limits=LIMITS))
    assert name == "srmodel()" and "FileNotFoundError" in detail and SECRET not in detail, detail

    # the same code as a Hub repo whose blobs/ also holds a file of another revision
    populate_hub_cache(cache, "team/snoop", "c" * 40, hostile(tmp_path / "repo", "blob_snoop"))
    (cache / "models--team--snoop" / "blobs" / ("0" * 64)).write_text(SECRET)  # not of this snapshot
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    [(name, detail)] = failed(run_checks(open_submission(f"team/snoop@{'c' * 40}"), limits=LIMITS))
    assert name == "srmodel()" and "blobs: [" in detail and SECRET not in detail, detail


def test_the_report_names_the_isolation(tmp_path, bubblewrap):
    checks = run_checks(open_submission(make_submission(tmp_path / "s")), limits=LIMITS)
    assert check(checks, "sandbox").status == "pass"
    assert check(checks, "sandbox").detail.startswith("bubblewrap: no network, read-only files, 8 GB memory, 120 s")


def test_without_isolation_validate_says_so(tmp_path):
    result = run_cli("validate", make_submission(tmp_path / "s"), "--timeout", "120", env={"RTSR_SANDBOX": "none"})
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if "sandbox" in line]
    assert line.split()[:2] == ["WARN", "sandbox"]
    assert "no network/filesystem isolation on this host ($RTSR_SANDBOX=none)" in line


def test_a_bad_sandbox_setting_is_one_line(tmp_path):
    result = run_cli("validate", make_submission(tmp_path / "s"), env={"RTSR_SANDBOX": "docker"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == "rtsr validate: error: $RTSR_SANDBOX must be auto, bubblewrap or none, got 'docker'"


def test_the_limits_flags(tmp_path):
    root = hostile(tmp_path, "memory_bomb")
    result = run_cli("validate", root, "--memory-limit", "2GB", "--timeout", "120")
    assert result.returncode == 1
    assert "(exceeded the memory limit of 2 GB)" in result.stdout
    bad = run_cli("validate", root, "--memory-limit", "lots")
    assert bad.returncode == 2 and "expected a size such as 512MB or 8GB, got 'lots'" in bad.stderr


# What real submissions do: import their utils/, read their own files by relative paths, write
# temporary files.
ORDINARY_ARCH = """
import json
import tempfile

import torch

from utils.blocks import make


def srmodel():
    with open("utils/config.json") as f:
        config = json.load(f)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as scratch:
        scratch.write("cache")
        scratch.flush()
    model = make(config["scale"])
    model.load_state_dict(torch.load("checkpoint.pth"))
    return model
"""
BLOCKS = """
import torch.nn.functional as F
from torch import nn


class Tiny(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + 0.01 * self.shuffle(self.conv(x))


def make(scale):
    return Tiny(scale)
"""


def test_what_real_submissions_do_still_works(tmp_path):
    import torch

    files = {"utils/blocks.py": BLOCKS, "utils/config.json": '{"scale": 2}'}
    root = make_submission(tmp_path / "ordinary", ORDINARY_ARCH, files=files, checkpoint=False)
    namespace: dict = {}
    exec(BLOCKS, namespace)
    torch.save(namespace["make"](2).state_dict(), root / "checkpoint.pth")
    checks = run_checks(open_submission(root), limits=LIMITS)
    assert failed(checks) == []
    assert check(checks, "srmodel()").status == check(checks, "forward fp32").status == "pass"


@pytest.mark.parametrize("entry_id", [e.id for e in Registry.read(BUNDLED_REGISTRY).entries])
def test_the_bundled_submissions_pass_in_the_sandbox(entry_id):
    registry = Registry.read(BUNDLED_REGISTRY)
    checks = run_checks(registry.open(registry.get(entry_id)), limits=LIMITS)
    assert failed(checks) == []
    assert check(checks, "srmodel()").status == check(checks, "forward fp32").status == "pass"


def test_the_sandbox_environment_is_an_allow_list(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    (tmp_path / "work").mkdir()
    code = "import os, json; json.dump(dict(os.environ), open(os.environ['HOME'] + '/env.json', 'w'))"
    outcome, files = sandbox.run([sys.executable, "-c", code], tmp_path / "work", collect=["env.json"])
    assert outcome.ok, outcome.failure()
    env = __import__("json").loads(files["env.json"])
    assert SECRET not in files["env.json"].decode()
    assert env["OMP_NUM_THREADS"] == "2" and env["HF_HUB_OFFLINE"] == "1"
    assert Path(env["HOME"]).name.startswith("rtsr-sandbox-") and env["TMPDIR"] == env["HOME"] + "/tmp"


def test_a_cap_on_the_instruction_set_reaches_the_sandbox(tmp_path, monkeypatch):
    # a host pinned to AVX2 evaluates as an AVX2 CPU does, submissions included: their torch
    # then has no native bf16 (on any CPU: an AVX2-only one has none either way)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    (tmp_path / "work").mkdir()
    code = "import os, torch; print(os.environ['ONEDNN_MAX_CPU_ISA'], torch.ops.mkldnn._is_mkldnn_bf16_supported())"
    outcome, _ = sandbox.run([sys.executable, "-c", code], tmp_path / "work")
    assert outcome.ok, outcome.failure()
    assert outcome.stdout.split() == ["AVX2", "False"]


def test_fifos_in_place_of_its_logs_and_report_block_nothing(tmp_path):
    """The parent reads the scratch folder's logs and report without following links or
    blocking, and only regular files: FIFOs put in their place read as missing, at once."""
    started = time.monotonic()
    checks = run_checks(open_submission(hostile(tmp_path, "fifo_logs")), limits=Limits(wall_seconds=15))
    # its own report blocks the validator's child on a FIFO: that costs the submission alone
    assert failed(checks) == [("sandbox", "exceeded the wall-clock limit of 15 s")]
    assert time.monotonic() - started < 45  # the parent's reads of the FIFOs held nothing
    # what the collecting reads: a FIFO, a link and a regular file
    (tmp_path / "work").mkdir()
    code = (
        "import os; h = os.environ['HOME']; os.mkfifo(h + '/fifo'); os.symlink('/etc/passwd', h + '/link');"
        " open(h + '/plain', 'w').write('x' * 100)"
    )
    outcome, files = sandbox.run([sys.executable, "-c", code], tmp_path / "work", collect=["fifo", "link", "plain"])
    assert outcome.ok, outcome.failure()
    assert files == {"plain": b"x" * 100}


def test_the_scratch_folder_is_removed(tmp_path):
    (tmp_path / "work").mkdir()
    code = "import os; open(os.environ['TMPDIR'] + '/big', 'wb').write(b'x' * 1000); print(os.environ['HOME'])"
    outcome, _ = sandbox.run([sys.executable, "-c", code], tmp_path / "work")
    assert outcome.ok, outcome.failure()
    assert not Path(outcome.stdout.strip()).exists()


def test_a_missing_interpreter_is_the_sandbox_failing_not_the_submission(tmp_path):
    (tmp_path / "work").mkdir()
    outcome, _ = sandbox.run(["/nonexistent/python"], tmp_path / "work")
    assert outcome.returncode is None
    assert outcome.failure() is not None and outcome.failure().startswith("the sandbox failed: cannot start")


def test_the_corpus_is_complete():
    names = {p.stem for p in HOSTILE.glob("*.py")}
    lines = (HOSTILE / "README.md").read_text().splitlines()
    listed = {line.split("`")[1].removesuffix(".py") for line in lines if line.startswith("| `")}
    assert names == listed and len(names) == 16
