"""bench.gpu_check runs its CPU-safe sections anywhere (CI runs them here) and skips the CUDA
ones cleanly, with a summary table and an exit status that says whether a section failed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.gpu_check import SECTIONS
from tests.support.data import ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, bench/gpu_check.sh runs every section")
def test_the_gpu_check_runs_its_cpu_parts_and_skips_the_cuda_ones(tmp_path):
    out = tmp_path / "gpu_check.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    summary = report[report.index("### Summary") :]
    for title, _, needs_cuda in SECTIONS:
        row = next(line for line in summary.splitlines() if line.startswith(f"| {title} |"))
        assert ("| skipped: no CUDA device |" in row) == needs_cuda, row
        assert ("| ok |" in row) == (not needs_cuda), row
    # what the CPU sections found: engines beside eager with their fidelity, tiles equal to
    # one pass, a few training steps, and the app's path with its engine named
    assert "| openvino bf16 |" in report or "| channels-last bf16 |" in report or "| openvino fp32 |" in report
    # on a CPU, the app's path and tiling at 1080p (4K on a GPU): the same code, CI's sizes
    assert "- 540p -> 1080p in " in report and "12 tiles of 256 px equal one pass within" in report
    assert "step 4: loss" in report
    assert "- simulate request, 1080p GT -> 540p -> 1080p, " in report and ", 1 tile(s):" in report
