"""The one-shot GPU check: every CUDA path of rtsr, run once on a lent GPU, as a Markdown
report for the README.

    python -m bench.gpu_check [--out gpu_check.md]

Sections, each independent (a failure is reported and the next one runs):
1. the device;
2. the challenge's runtime protocol (eager FP16, 50 warm-up + 244 timed passes, CUDA events)
   for the shipped RTSRN and bicubic at the tracks' input sizes (1080p x2, 720p x3 -> 4K);
3. the sandbox with CUDA: a CUDA matmul under the memory limit as the sandbox applies it
   (RLIMIT_DATA), beside the same under RLIMIT_AS, which CUDA's address-space reservation
   breaks;
4. ``rtsr validate`` of the shipped RTSRN x2 in the sandbox, on the GPU;
5. the app's path: :class:`rtsr.serving.ModelPool` (the sandboxed model process) serving a
   1080p -> 4K request, against the same model run in this process, side by side;
6. the evaluation worker: ``rtsr submit`` of the shipped RTSRN x2 and ``rtsr worker --once``
   on the GPU with the full protocol (validation, Set5, the runtime timed in the sandboxed
   model process and checked against the wall clock), beside section 2's in-process figure.

bench/gpu_check.sh runs this and the CUDA tests; it is what a session with a GPU runs once.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from rtsr.constants import TARGET_SIZE, TIMED_PASSES, TRACK_SCALES, WARMUP_PASSES

ROOT = Path(__file__).resolve().parents[1]


def section(title: str, lines: list[str], body: Callable[[], list[str]]) -> None:
    first = len(lines)
    lines += ["", f"### {title}", ""]
    started = time.perf_counter()
    try:
        lines += body()
    except Exception:
        lines += ["```", traceback.format_exc()[-3000:], "```"]
    lines.append(f"\n({time.perf_counter() - started:.1f} s)")
    print("\n".join(lines[first:]), flush=True)


def device_info() -> list[str]:
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    return [
        f"- GPU: {torch.cuda.get_device_name()} ({smi.stdout.strip()})",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, Python {sys.version.split()[0]}",
    ]


def runtime_protocol() -> list[str]:
    from rtsr.runtime import measure_runtime
    from rtsr.sources import load

    device = torch.device("cuda")
    rows = ["| model | input | mean ms | median ms | FPS | x bicubic |", "|---|---|---:|---:|---:|---:|"]
    for track, scale in TRACK_SCALES.items():
        h, w = TARGET_SIZE[0] // scale, TARGET_SIZE[1] // scale
        report = measure_runtime(load(f"rtsrn-x{scale}"), device, "fp16", progress=False)
        for name, timing in ((f"rtsrn-x{scale}", report.runtime), (f"bicubic x{scale}", report.bicubic)):
            rows.append(
                f"| {name} (Track {track}) | {w}x{h} | {timing.mean_ms:.3f} | {timing.median_ms:.3f} |"
                f" {1000 / timing.mean_ms:.0f} | {timing.mean_ms / report.bicubic.mean_ms:.2f} |"
            )
    return [f"Eager FP16, {WARMUP_PASSES} warm-up + {TIMED_PASSES} timed passes, CUDA events:", "", *rows]


_CUDA_PROBE = (
    "import torch; x = torch.rand(2048, 2048, device='cuda', dtype=torch.float16); print(float((x @ x).float().mean()))"
)


def sandbox_with_cuda() -> list[str]:
    from rtsr.submissions import sandbox

    lines = [f"- isolation here: {sandbox.isolation()} ({sandbox.isolation_note() or 'namespaces'})"]
    workdir = Path(tempfile.mkdtemp(prefix="rtsr-gpu-check-"))
    outcome, _ = sandbox.run([sys.executable, "-c", _CUDA_PROBE], workdir, gpu=True)
    lines.append(
        f"- CUDA matmul in the sandbox (RLIMIT_DATA {sandbox.format_bytes(outcome.limits.memory_bytes)}):"
        f" {'ok' if outcome.ok else outcome.failure()}, {outcome.elapsed_s:.1f} s"
    )
    limit = sandbox.DEFAULT_LIMITS.memory_bytes

    def address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    plain = subprocess.run(
        [sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True, preexec_fn=address_space, timeout=120
    )
    last = (plain.stderr.strip().splitlines() or ["(no message)"])[-1][:200]
    lines.append(
        f"- the same under RLIMIT_AS {sandbox.format_bytes(limit)}, no sandbox:"
        f" {'ok' if plain.returncode == 0 else f'fails (exit {plain.returncode}): {last}'}"
    )
    return lines


def validate_on_gpu() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "rtsr", "validate", str(ROOT / "submissions" / "rtsrn_x2")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    return ["```", result.stdout.strip() or result.stderr.strip(), "```"]


def app_path() -> list[str]:
    from rtsr.inference import prepare, upscale_timed
    from rtsr.serving import ModelPool, serve
    from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry

    registry = Registry.read(BUNDLED_REGISTRY)
    started = time.perf_counter()
    pool = ModelPool(registry, "cuda")
    lines = [f"- ModelPool on {pool.device_name}, {pool.precision}: started in {time.perf_counter() - started:.1f} s"]
    try:
        photo = Image.fromarray(data.astronaut())
        gt = np.asarray(photo.resize((TARGET_SIZE[1], TARGET_SIZE[0]), Image.Resampling.BICUBIC))
        for _ in range(2):  # the first request prepares the model on the GPU
            result = serve(pool, "rtsrn-x2", gt, mode="simulate")
        split = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
        # (the 4K GT is a photo enlarged by bicubic, so no model gains on it: timings only)
        lines.append(f"- simulate request, 4K GT -> 1080p -> 4K: forward {result.forward_ms:.2f} ms; ms: {split}")
        lr = result.lr
        here = prepare(registry.load("rtsrn-x2").module, pool.device, "fp16")
        ours, theirs = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            sandboxed, _ = pool.upscale("rtsrn-x2", lr)
            ours.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            direct, _ = upscale_timed(here, lr, 2, pool.device, "fp16")
            theirs.append((time.perf_counter() - t0) * 1e3)
        diff = int(np.abs(sandboxed.astype(int) - direct.astype(int)).max())
        lines.append(
            f"- 1080p -> 4K, whole call, median of 5: sandboxed process {statistics.median(ours):.1f} ms,"
            f" in this process {statistics.median(theirs):.1f} ms (ratio"
            f" {statistics.median(ours) / statistics.median(theirs):.2f}); outputs differ by at most {diff} levels"
        )
    finally:
        pool.close()
    return lines


def worker_on_gpu() -> list[str]:
    import json

    store = Path(tempfile.mkdtemp(prefix="rtsr-gpu-store-"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rtsr", "-q", *args, "--store", str(store)],
            capture_output=True,
            text=True,
            timeout=400,
            cwd=ROOT,
        )

    submitted = cli("submit", str(ROOT / "submissions" / "rtsrn_x2"))
    started = time.perf_counter()
    worker = cli("worker", "--once", "--device", "cuda")
    elapsed = time.perf_counter() - started
    lines = ["```", submitted.stdout.strip(), worker.stdout.strip(), worker.stderr.strip()[-1500:], "```"]
    (request,) = json.loads(cli("requests", "--json").stdout)
    lines.append(f"- worker: {request['status']} in {elapsed:.0f} s on {request['device']} {request['reason']}")
    for path in request["results"]:
        doc = json.loads((store / path).read_text())
        rt = doc["runtime"]
        lines.append(
            f"- {doc['dataset']['name']}: PSNR {doc['metrics']['mean']['psnr_rgb']:.4f} dB"
            f" (bicubic {doc['bicubic']['mean']['psnr_rgb']:.4f}), {doc['precision']}, runtime"
            f" {rt['runtime']['mean_ms']:.3f} ms mean / {rt['runtime']['median_ms']:.3f} median over"
            f" {rt['runtime']['passes']} passes at {rt['output_size'][1]}x{rt['output_size'][0]} ({rt['timer']}),"
            f" {rt['relative_to_bicubic']:.2f}x bicubic, score {doc['score']:.2f}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here: this check is for a host with a GPU")
    lines = ["## GPU check (python -m bench.gpu_check)"]
    section("Device", lines, device_info)
    section("The challenge's runtime protocol", lines, runtime_protocol)
    section("The sandbox with CUDA", lines, sandbox_with_cuda)
    section("rtsr validate submissions/rtsrn_x2, in the sandbox, on the GPU", lines, validate_on_gpu)
    section("The app's request path (sandboxed models)", lines, app_path)
    section("The evaluation worker on the GPU (rtsr submit, rtsr worker --once)", lines, worker_on_gpu)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
