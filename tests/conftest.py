"""Shared fixtures: real images (scikit-image's bundled photos, the held-out eval sets in
../shared) and a runner for the real CLI in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

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


@pytest.fixture(scope="session")
def set5() -> Path:
    folder = EVAL_DIR / "Set5"
    if not folder.is_dir():
        pytest.skip(f"held-out eval data not found at {folder} (set RTSR_SHARED)")
    return folder


def run_cli(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rtsr ARGS`` in a child process, as a user would, and capture its output."""
    result = subprocess.run(
        [sys.executable, "-m", "rtsr", "--quiet", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
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
