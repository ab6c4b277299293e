"""Real images (scikit-image's bundled photos, the held-out eval sets in ../shared, the
repository's Set5), the paths to them, and ways to run on a CPU other than this one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("RTSR_SHARED", ROOT.parent / "shared"))
EVAL_DIR = SHARED / "data" / "eval"


def git_toplevel(folder: Path) -> Path | None:
    """The root of the git work tree ``folder`` is in; None outside one, or without git."""
    if shutil.which("git") is None:
        return None
    top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    return Path(top.stdout.strip()).resolve() if top.returncode == 0 else None


def fresh_clone(parent: Path) -> Path:
    """A fresh clone of the repository's HEAD, as ``parent/rtsr``: what a newcomer gets.
    Outside a git work tree the test skips, except under CI, where it fails."""
    if git_toplevel(ROOT) != ROOT:
        reason = f"{ROOT} is not the root of a git repository (or git is missing): nothing to clone"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(parent / "rtsr")], check=True, timeout=120)
    return parent / "rtsr"


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
