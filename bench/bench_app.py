"""Where the time of one app request goes, through the app's own functions, side by side.

Part 1 encodes one 4K output (3840x2160, what a 1080p -> 4K request returns) in the formats
the app could send: its JPEG preview, Pillow's JPEG defaults, its download PNG (zlib level
1), Pillow's default PNG (level 6) and WebP (Gradio's default image format), with the ratio
of each to the preview JPEG.

Part 2 serves "simulate the challenge" requests with :func:`rtsr.serving.serve` and the
app's previews (:class:`rtsr.previews.Previews`: four JPEGs, the slider's pair written out),
on the CPU and on CUDA where present, at the largest input each device runs in one pass and
at the largest it accepts (run in tiles), and prints the engine and the time split (decode,
degrade, model, bicubic, metrics, encode of the previews, and the PNG made afterwards for
download).

    python -m bench.bench_app [--model rtsrn-x2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage import data

from bench.host import host_lines
from rtsr.constants import TARGET_SIZE
from rtsr.previews import Previews, encode_png, encode_preview
from rtsr.serving import STAGES, default_max_input_pixels, default_one_pass_pixels, serve
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import Registry


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def natural_image(height: int, width: int) -> np.ndarray:
    """scikit-image's astronaut resized (bicubic) to ``height x width``: a photo, not noise,
    so that encoders and metrics see realistic content."""
    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC))


def bench_encoders(folder: Path, repeat: int) -> None:
    h, w = TARGET_SIZE
    image = natural_image(h, w)
    encoders: list[tuple[str, Callable[[Path], object]]] = [
        ("JPEG q92 4:4:4 (app preview)", lambda p: encode_preview(image, p.with_suffix(".jpg"))),
        ("JPEG q75 4:2:0 (Pillow default)", lambda p: Image.fromarray(image).save(p.with_suffix(".jpg"))),
        ("PNG zlib 1 (app download)", lambda p: encode_png(image, p.with_suffix(".png"))),
        ("PNG zlib 6 (Pillow default)", lambda p: Image.fromarray(image).save(p.with_suffix(".png"))),
        ("WebP q80 (Gradio default)", lambda p: Image.fromarray(image).save(p.with_suffix(".webp"))),
    ]
    print(f"Encoding one {w}x{h} output, median of {repeat}:")
    base = None
    for name, encode in encoders:
        path = folder / name.split()[0].lower()
        ms = median_ms(functools.partial(encode, path), repeat)
        size = next(folder.glob(path.name + ".*")).stat().st_size
        base = base or ms
        print(f"  {name:<34} {ms:8.1f} ms  {ms / base:6.1f}x  {size / 1e6:6.2f} MB")


def timed_request(pool: ModelPool, model_id: str, gt_path: Path, folder: Path) -> dict[str, Any]:
    """One simulate request as the app serves it; its stage times, the request's and the
    download PNG's (made after the request has answered), in ms; the engine and the tiles."""
    t0 = time.perf_counter()
    result = serve(pool, model_id, gt_path, "simulate")
    t_enc = time.perf_counter()
    Previews.encode(result).pair("bicubic", folder)
    result.timings_ms["encode"] = (time.perf_counter() - t_enc) * 1e3
    request_ms = (time.perf_counter() - t0) * 1e3
    t_png = time.perf_counter()
    encode_png(result.sr, folder / "sr.png")
    png_ms = (time.perf_counter() - t_png) * 1e3
    timings = {**result.timings_ms, "request": request_ms, "png (after)": png_ms, "forward": result.forward_ms}
    return {**timings, "engine": result.engine.label, "tiles": result.tiles}


def bench_requests(folder: Path, model_id: str, repeat: int) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    registry = Registry.read()
    for device in devices:
        pool = ModelPool(registry, device)
        scale = pool.descriptor(model_id).scale
        # the largest 16:9 input run in one pass, then the largest accepted (run in tiles), as
        # the ground truth of a simulate request
        for limit in (default_one_pass_pixels(pool.device), default_max_input_pixels(pool.device)):
            lr_w = int((limit * 16 / 9) ** 0.5) // 8 * 8
            lr_h = lr_w * 9 // 16
            gt = natural_image(lr_h * scale, lr_w * scale)
            gt_path = folder / "gt.png"
            Image.fromarray(gt).save(gt_path, compress_level=1)
            # In a worker thread, as Gradio runs handlers: some CPU kernels run slower there than
            # on the main thread, and the app's numbers are the worker's.
            with ThreadPoolExecutor(max_workers=1) as worker:
                args = (pool, model_id, gt_path, folder)
                worker.submit(timed_request, *args).result()  # warm-up: the engine's build and check
                rows = [worker.submit(timed_request, *args).result() for _ in range(repeat)]
            keys = [*STAGES, "request", "png (after)"]
            med = {k: statistics.median(r[k] for r in rows) for k in [*keys, "forward"]}
            engine, tiles = rows[-1]["engine"], rows[-1]["tiles"]
            print(
                f"\n{model_id} on {pool.device_name}, {engine}, {tiles} tile(s): simulate request in a worker thread,"
                f" GT {lr_w * scale}x{lr_h * scale} -> input {lr_w}x{lr_h} -> output {lr_w * scale}x{lr_h * scale};"
                f" median of {repeat} (the forward passes alone: {med['forward']:.1f} ms)"
            )
            for k in keys:
                share = f"{med[k] / med['request']:6.1%}" if k in STAGES else ""
                print(f"  {k:<12} {med[k]:9.1f} ms  {share}")
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rtsrn-x2", help="a registry id (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(host_lines()))
    with tempfile.TemporaryDirectory() as tmp:
        bench_encoders(Path(tmp), args.repeat)
        bench_requests(Path(tmp), args.model, args.repeat)


if __name__ == "__main__":
    main()
