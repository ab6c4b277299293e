"""The one-shot GPU check: every CUDA path of rtsr, run once on a lent GPU, as a Markdown
report for docs/engines-and-benchmarks.md.

    python -m bench.gpu_check [--out gpu_check.md]

Sections, each independent (a failure is reported and the next one runs):
1. the device;
2. the challenge's runtime protocol (eager FP16, 50 warm-up + 244 timed passes, CUDA events)
   for the shipped RTSRN and bicubic at the tracks' input sizes (1080p x2, 720p x3 -> 4K);
3. the sandbox with CUDA: a CUDA matmul under the memory limit as the sandbox applies it
   (RLIMIT_DATA), beside the same under RLIMIT_AS, which CUDA's address-space reservation
   breaks;
4. ``rtsr validate`` of the shipped RTSRN x2 in the sandbox, on the GPU;
5. the app's path: :class:`rtsr.submissions.pool.ModelPool` (the sandboxed model process) serving a
   1080p -> 4K request, against the same model run in this process, side by side;

Sections that run on a CPU too (engines, tiling, training steps, the app's path) do so at
CI's sizes there: a small input for the engines, 540p -> 1080p for tiling and the app.
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
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage import data

from rtsr.constants import TARGET_SIZE, TIMED_PASSES, TRACK_SCALES, WARMUP_PASSES
from rtsr.devices import Precision

ROOT = Path(__file__).resolve().parents[1]


def section(title: str, lines: list[str], body: Callable[[], list[str]]) -> tuple[str, float]:
    """Run one section into ``lines``; return ``"ok"`` or ``"FAILED"``, and its seconds."""
    first = len(lines)
    lines += ["", f"### {title}", ""]
    started = time.perf_counter()
    status = "ok"
    try:
        lines += body()
    except Exception:
        lines += ["```", traceback.format_exc()[-3000:], "```"]
        status = "FAILED"
    seconds = time.perf_counter() - started
    lines.append(f"\n({seconds:.1f} s)")
    print("\n".join(lines[first:]), flush=True)
    return status, seconds


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _frame() -> tuple[int, int]:
    """The output frame (H, W) the app's path and tiling work at: the challenge's 4K on CUDA;
    1080p on a CPU, where CI runs them for the code path (4K takes a CPU tens of seconds a
    pass and tells nothing more)."""
    return TARGET_SIZE if torch.cuda.is_available() else (1080, 1920)


def _named(h: int) -> str:
    """A frame's name by its height: ``4K``, ``1080p``, ``540p``."""
    return "4K" if h == 2160 else f"{h}p"


def device_info() -> list[str]:
    from bench.host import host_lines

    # the CPU's flags either way: the CPU sections' figures and the metrics depend on them
    cpu = [f"- {line}" for line in host_lines()[1:]]
    if not torch.cuda.is_available():
        from rtsr.devices import device_name

        return [f"- no CUDA device: {device_name(torch.device('cpu'))}, torch {torch.__version__}", *cpu]
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    return [
        f"- GPU: {torch.cuda.get_device_name()} ({smi.stdout.strip()})",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, Python {sys.version.split()[0]}",
        *cpu,
    ]


def runtime_protocol() -> list[str]:
    from rtsr.loading import load
    from rtsr.runtime import measure_runtime

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
    from rtsr.previews import encode_png
    from rtsr.serving import serve
    from rtsr.submissions.pool import ModelPool
    from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry

    registry = Registry.read(BUNDLED_REGISTRY)
    started = time.perf_counter()
    device = _device()
    precision: Precision = "fp16" if device.type == "cuda" else "fp32"
    pool = ModelPool(registry, device)
    lines = [f"- ModelPool on {pool.device_name}: started in {time.perf_counter() - started:.1f} s"]
    try:
        photo = Image.fromarray(data.astronaut())
        h, w = _frame()
        gt = np.asarray(photo.resize((w, h), Image.Resampling.BICUBIC))
        # the first request builds and checks the model's engine; the second is the one timed
        # (on a CPU, CI's smoke run, one does)
        for _ in range(2 if device.type == "cuda" else 1):
            t0 = time.perf_counter()
            result = serve(pool, "rtsrn-x2", gt, mode="simulate")
            png = encode_png(result.sr, Path(tempfile.mkdtemp()) / "sr.png")
            whole_ms = (time.perf_counter() - t0) * 1e3
        split = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
        # (the 4K GT is a photo enlarged by bicubic, so no model gains on it: timings only)
        lines.append(
            f"- simulate request, {_named(h)} GT -> {_named(h // 2)} -> {_named(h)}, {result.engine.describe()},"
            f" {result.tiles} tile(s):"
            f" forward {result.forward_ms:.2f} ms; ms: {split}; with the PNG ({png.stat().st_size / 1e6:.1f} MB)"
            f" {whole_ms:.0f} ms"
        )
        lr = result.lr
        up = serve(pool, "rtsrn-x2", lr, mode="upscale")
        lines.append(
            f"- upscale request, {_named(h // 2)} -> {_named(h)}: {up.engine.label}, {up.tiles} tile(s),"
            f" forward {up.forward_ms:.1f} ms,"
            f" model stage {up.timings_ms['model']:.0f} ms"
        )
        here = prepare(registry.load("rtsrn-x2").module, pool.device, precision)
        ours, theirs = [], []
        # on a CPU (CI), one call on a quarter of the frame in each dimension: eager FP32 takes
        # seconds on a whole one
        calls, (h, w) = (5, lr.shape[:2]) if device.type == "cuda" else (1, (270, 480))
        lr = lr[:h, :w]
        for _ in range(calls):
            t0 = time.perf_counter()
            sandboxed = pool.upscale("rtsrn-x2", lr, engine="eager", tile=0).sr
            ours.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            direct, _ = upscale_timed(here, lr, 2, pool.device, precision)
            theirs.append((time.perf_counter() - t0) * 1e3)
        diff = int(np.abs(sandboxed.astype(int) - direct.astype(int)).max())
        lines.append(
            f"- {w}x{h} -> {2 * w}x{2 * h}, eager, whole call, median of {calls}: sandboxed process"
            f" {statistics.median(ours):.1f} ms,"
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


def engines() -> list[str]:
    """Each engine beside eager (FP16 on CUDA, FP32 on a CPU): on CUDA the full protocol at
    the tracks' sizes; on a CPU a few passes on a small input (CI runs this)."""
    from bench.bench_engines import bench

    device = _device()
    lines: list[str] = []
    for scale in (2, 3):
        if device.type == "cuda":
            lines += [*bench(scale, device, None, WARMUP_PASSES, TIMED_PASSES), ""]
        else:  # torch.compile is left out on a CPU: it compiles for each size, and serves nothing here
            lines += [*bench(scale, device, (96, 128), 1, 3, skip=("compile",)), ""]
    return lines


def tiling() -> list[str]:
    """RTSRN x2 on a photo, tiled against one pass on this device: equal within a level, with
    the memory each needs (CUDA's peak allocation; the CPU's is bounded by the same tiles).
    1080p in tiles of 512 on CUDA; on a CPU, 540p in tiles of 256: 12 tiles either way."""
    from rtsr.engines import resolve_engine
    from rtsr.inference import upscale_tiled, upscale_timed
    from rtsr.loading import load
    from rtsr.tiling import receptive_radius

    device = _device()
    loaded = load("rtsrn-x2")
    module, choice = resolve_engine(loaded.module, device, "auto")
    h, w = (size // 2 for size in _frame())
    tile = 512 if device.type == "cuda" else 256
    image = np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC))
    field = receptive_radius(loaded.module, 2, device)

    def peak(run: Callable[[], Any]) -> tuple[Any, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        out = run()
        return out, (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan"))

    (whole, _), whole_mb = peak(lambda: upscale_timed(module, image, 2, device, "fp32"))
    (tiled, _, tiles), tiled_mb = peak(lambda: upscale_tiled(module, image, 2, device, "fp32", tile, field))
    diff = int(np.abs(whole.astype(int) - tiled.astype(int)).max())
    if diff > 1:
        raise AssertionError(f"tiled differs from one pass by {diff} levels")
    memory = (
        f"; peak GPU memory {whole_mb:.0f} MiB in one pass, {tiled_mb:.0f} MiB in tiles" if whole_mb == whole_mb else ""
    )
    return [
        f"- {_named(h)} -> {_named(2 * h)} in {choice.label}, receptive field {field.radius} px: {tiles} tiles"
        f" of {tile} px equal one"
        f" pass within {diff} level(s){memory}"
    ]


def metrics_on_device() -> list[str]:
    """The metrics of a 4K pair on CUDA against the CPU's, and their times."""
    from rtsr.degradation import jpeg_roundtrip
    from rtsr.metrics import measure

    gt = np.asarray(Image.fromarray(data.astronaut()).resize((TARGET_SIZE[1], TARGET_SIZE[0])))
    sr = jpeg_roundtrip(gt, 75)
    times = {}
    results = {}
    for name in ("cpu", "cuda"):
        measure(sr[:64, :64], gt[:64, :64], device=torch.device(name))
        t0 = time.perf_counter()
        results[name] = measure(sr, gt, device=torch.device(name)).as_dict()
        times[name] = time.perf_counter() - t0
    worst = max(abs(results["cpu"][k] - results["cuda"][k]) for k in results["cpu"])
    if worst > 1e-6:
        raise AssertionError(f"CUDA metrics differ from the CPU's by {worst:g}")
    return [f"- 4K pair: CPU {times['cpu']:.3f} s, CUDA {times['cuda']:.3f} s; largest difference {worst:.1e}"]


def amp_training() -> list[str]:
    """A few training steps with the device's autocast (FP16 with gradient scaling on CUDA,
    bf16 on a CPU with native bf16), through the CLI."""
    out = Path(tempfile.mkdtemp(prefix="rtsr-train-")) / "run"
    result = subprocess.run(
        [sys.executable, "-m", "rtsr", "-q", "train", "--scale", "2", "--train-dir", str(ROOT / "testsets" / "Set5"),
         "--val-dir", str(ROOT / "testsets" / "Set5"), "--out", str(out), "--steps", "4", "--batch-size", "4",
         "--val-every", "2", "--checkpoint-every", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(result.stderr.strip()[-1500:])
    log = (out / "train.log").read_text().strip().splitlines()
    return ["```", *log[-4:], "```"]


#: Each section, and whether it needs CUDA (the others run on a CPU too, and in CI).
SECTIONS: list[tuple[str, Callable[[], list[str]], bool]] = [
    ("Device", device_info, False),
    ("The challenge's runtime protocol", runtime_protocol, True),
    ("Engines beside eager", engines, False),
    ("Tiling", tiling, False),
    ("Metrics on the device", metrics_on_device, True),
    ("Mixed-precision training steps", amp_training, False),
    ("The sandbox with CUDA", sandbox_with_cuda, True),
    ("rtsr validate submissions/rtsrn_x2, in the sandbox, on the GPU", validate_on_gpu, True),
    ("The app's request path (sandboxed models)", app_path, False),
    ("The evaluation worker on the GPU (rtsr submit, rtsr worker --once)", worker_on_gpu, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.md"))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    lines = ["## GPU check (python -m bench.gpu_check)"]
    summary = ["| section | result | s |", "|---|---|---:|"]
    failed = False
    for title, body, needs_cuda in SECTIONS:
        if needs_cuda and not cuda:
            summary.append(f"| {title} | skipped: no CUDA device | |")
            continue
        status, seconds = section(title, lines, body)
        failed |= status != "ok"
        summary.append(f"| {title} | {status} | {seconds:.1f} |")
    lines += ["", "### Summary", "", *summary]
    print("\n".join(["", *summary]))
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
