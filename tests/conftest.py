"""Shared fixtures: real images (scikit-image's bundled photos, the held-out eval sets in
../shared) and a runner for the real CLI in a child process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

# No test may reach the Hub: huggingface_hub reads this when it is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RTSR_SHARED", ROOT.parent / "shared"))
EVAL_DIR = SHARED / "data" / "eval"

#: scikit-image's bundled RGB photographs, by name.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photo(name: str) -> np.ndarray:
    """A bundled scikit-image photograph as an (H, W, 3) uint8 array."""
    image = getattr(data, name)()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    return image


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return {name: photo(name) for name in PHOTOS}


@pytest.fixture
def hr_dir(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """A folder of HR photographs, saved as PNG, sides not all divisible by 2 or 3."""
    folder = tmp_path / "hr"
    folder.mkdir()
    for name, image in photos.items():
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


def needs_shared(path: Path) -> Path:
    """``path`` below ``$RTSR_SHARED``: the test skips without it, except under CI, whose
    runner provides the shared data, where a missing file is a failure, not a silent skip."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} not found: CI provides ../shared (set RTSR_SHARED)")
        pytest.skip(f"{path} not found (set RTSR_SHARED)")
    return path


# --- CPUs -----------------------------------------------------------------------------------

#: oneDNN capped at AVX2: torch's convolutions compute as on an AVX2-only CPU (no native bf16),
#: to the bit (Set5's PSNR is the AVX2 host's, 31.432395280501673 dB at x2), and OpenVINO's
#: oneDNN layers too (rtsr then compiles OpenVINO in f32, as OpenVINO does on such a CPU). A
#: no-op on such a CPU. OpenVINO's own view of the CPU (its capabilities) stays this CPU's.
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
#: qemu's user-mode emulation of an AVX2-only CPU: Haswell (AVX2 and FMA, no AVX-512), less the
#: features qemu's TCG lacks and warns of. Every library in the process sees that CPU, OpenVINO
#: included; child processes run on the host. Slow (importing torch takes 15 s), so used for
#: what AVX2_ENV cannot show: what OpenVINO itself does on a CPU without bf16.
QEMU_HASWELL = ("qemu-x86_64", "-cpu", "Haswell-v4,-x2apic,-tsc-deadline,-invpcid,-spec-ctrl,-pcid")


def without_openvino_bf16(argv: list[str]) -> list[str]:
    """``argv`` as a command that runs on a CPU where OpenVINO has no bf16: as it is where this
    CPU has none (an AVX2-only host), else under :data:`QEMU_HASWELL`. Without qemu-user the
    test skips, except under CI, where .ci/run installs it and its absence is a failure."""
    from rtsr.engines import openvino_capabilities

    if "BF16" not in openvino_capabilities():
        return argv
    qemu = shutil.which(QEMU_HASWELL[0])
    if qemu is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-x86_64 not found; .ci/run installs it (apt-get install qemu-user)")
        pytest.skip("this CPU has bf16 and qemu-x86_64 is not installed to emulate one without (qemu-user)")
    return [qemu, *QEMU_HASWELL[1:], *argv]


#: The repository's own copy of Set5 (the same five images as the held-out set's).
BUNDLED_SET5 = ROOT / "testsets" / "Set5"


@pytest.fixture(scope="session")
def set5() -> Path:
    """Set5: the held-out copy in ``$RTSR_SHARED/data/eval`` when it is there, else the
    repository's own (identical files), so that a clone alone runs these tests too."""
    folder = EVAL_DIR / "Set5"
    return folder if folder.is_dir() else BUNDLED_SET5


def run_cli(
    *args: str | Path, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rtsr ARGS`` in a child process, as a user would, and capture its output."""
    result = subprocess.run(
        [sys.executable, "-m", "rtsr", "--quiet", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"rtsr {args} exited {result.returncode}:\n{result.stderr}")
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """The run failed with a one-line message on stderr that says each of ``needles``."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# --- submissions ---------------------------------------------------------------------------

#: A small valid x2 model: a conv to 12 channels, pixel shuffle, plus bicubic as a skip. Its
#: srmodel() opens checkpoint.pth by a relative path, as real submissions do.
TINY_ARCH = """
import torch
import torch.nn.functional as F
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        return up + 0.01 * self.shuffle(self.conv(x))


def srmodel():
    model = Tiny()
    model.load_state_dict(torch.load("checkpoint.pth", map_location="cuda"))
    return model
"""


def tiny_state_dict() -> dict:
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 12, 3, padding=1)
    return {"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach()}


def make_submission(
    folder: Path,
    arch: str = TINY_ARCH,
    scale: int = 2,
    meta: dict | None = None,
    files: dict[str, str | bytes] | None = None,
    checkpoint: bool = True,
) -> Path:
    """Write a submission folder: arch.py, submission.json, checkpoint.pth, extra files."""
    import json

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arch.py").write_text(arch)
    metadata = {"scale": scale, "team": "Test Team", "method": "Tiny", "license": "mit", **(meta or {})}
    (folder / "submission.json").write_text(json.dumps(metadata))
    if checkpoint:
        torch.save(tiny_state_dict(), folder / "checkpoint.pth")
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


def populate_hub_cache(cache: Path, repo_id: str, revision: str, folder: Path) -> None:
    """Lay ``folder`` out as huggingface_hub's cache holds a model repo at ``revision``:
    content-addressed blobs, a snapshot of relative symlinks, and refs/main."""
    import hashlib

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs" / "main").write_text(revision)


class PickleExploit:
    """Unpickling this runs a shell command that creates ``marker``: a full ``torch.load``
    of a checkpoint holding it would execute code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


# --- the app -------------------------------------------------------------------------------

#: Every setting of `python app.py`: its flag and its environment variable.
APP_SETTINGS = (
    ("--host", "RTSR_HOST"),
    ("--port", "RTSR_PORT"),
    ("--max-input-pixels", "RTSR_MAX_INPUT_PIXELS"),
    ("--registry", "RTSR_REGISTRY"),
    ("--leaderboard-dir", "RTSR_LEADERBOARD_DIR"),
    ("--device", "RTSR_DEVICE"),
    ("--concurrency", "RTSR_CONCURRENCY"),
    ("--queue-size", "RTSR_QUEUE_SIZE"),
    ("--max-file-size", "RTSR_MAX_FILE_SIZE"),
    ("--temp-dir-size", "RTSR_TEMP_DIR_SIZE"),
    ("--temp-file-age", "RTSR_TEMP_FILE_AGE"),
    ("--store", "RTSR_STORE"),
    ("--daily-limit", "RTSR_DAILY_LIMIT"),
    ("--refresh", "RTSR_REFRESH"),
    ("--worker", "RTSR_WORKER"),
    ("--max-live-models", "RTSR_MAX_LIVE_MODELS"),
)

#: Where tests leave what a person should look at (browser screenshots); CI keeps it.
ARTIFACTS = Path(os.environ.get("RTSR_ARTIFACTS", ROOT / "artifacts"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """``python app.py`` in a child process of its own session, on a free local port."""

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port), *map(str, args)],
            cwd=ROOT,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # a request store of its own beside the log, unless the test names one: never the
            # repository's store/
            env={
                **os.environ,
                "GRADIO_ANALYTICS_ENABLED": "False",
                "RTSR_STORE": str(log.parent / "store"),
                **(env or {}),
            },
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180.0) -> RunningApp:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"app not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log_file.close()


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory):
    """The app on its bundled defaults (registry, leaderboard), as ``python app.py`` starts it,
    with an empty request store of its own."""
    running = RunningApp(log=tmp_path_factory.mktemp("app") / "app.log").wait_ready()
    yield running
    running.stop()


# --- a real browser ------------------------------------------------------------------------

#: Debian's Chromium (apt-get install chromium; .ci/run installs it).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: How the probe of this machine runs Chromium: headless, as root, with no network chatter
#: (the sandbox refuses outside connections, and each refusal costs time).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """Chromium driven by Playwright. Without Chromium the test skips, except under CI, where
    .ci/run installs it and a missing browser is a failure."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs it (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    # expect()'s own default is 5 s, which a loaded 2-core host (two test workers, a model's
    # first engine build) can miss while the page is fine; waits are the page's, not a speed test
    sync_api.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


#: How long a browser test waits for the page (the first request of a model builds its engine).
TIMEOUT_MS = 120_000
#: How long an ``expect`` waits for what it asserts to become true.
EXPECT_TIMEOUT_MS = 30_000
#: The widths every browser test runs at: a laptop and a phone (an iPhone 12-14's CSS pixels).
VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def open_page(browser, app: RunningApp, viewport: dict[str, int]):  # type: ignore[no-untyped-def]
    """A new browser context at ``viewport`` with the app loaded: (context, page)."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#upload")
    return context, page


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    """The name of the width a browser test runs at ("desktop" or "phone")."""
    return request.param


@pytest.fixture
def page(browser, app, viewport):  # type: ignore[no-untyped-def]
    """The app in a browser page at each of :data:`VIEWPORTS`."""
    context, page = open_page(browser, app, VIEWPORTS[viewport])
    yield page
    context.close()
