"""The real CLI, ``python -m rtsr``, in a child process, and what its errors must look like."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.data import ROOT


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
