"""The Upscale tab's "Several images at once": many uploads through the chosen model and mode
(rtsr.batch), with a progress bar per image, a zip of the PNGs and a CSV of per-image metrics."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rtsr.batch import MAX_BATCH_IMAGES, Batch
from rtsr.leaderboard.details import GAIN_KEY
from rtsr.results.metrics import IMAGE_METRICS, metric
from rtsr.serving import Mode
from rtsr.submissions.pool import ModelPool
from space.text import plain

#: The summary's table scrolls sideways on a phone rather than breaking its headers.
CSS = """
#batch-summary table { display: block; overflow-x: auto; white-space: nowrap; }
"""

#: ``serve_batch`` as the app calls it (wrapped for a ZeroGPU Space where there is one).
ServeBatch = Callable[..., Batch]


def batch_markdown(batch: Batch, mode: Mode) -> str:
    """What the batch did: how many images, the failures with their reasons, and in simulate
    mode the mean gain and a table of each image's PSNR."""
    rows = batch.rows
    done = len(rows) - batch.failed
    lines = [f"**{done} of {len(rows)} images upscaled.**"]
    for _, row in rows[rows["error"] != ""].iterrows():
        lines.append(f"- {plain(row['image'])} failed: {plain(row['error'])}")
    measured = rows[(rows["error"] == "") & rows[GAIN_KEY].map(lambda v: isinstance(v, float) and not math.isnan(v))]
    if mode == "simulate" and len(measured):
        gain = measured[GAIN_KEY].astype(float).mean()
        lines.append(f"\nMean gain over bicubic: **{metric(GAIN_KEY).text(gain)} dB** on {len(measured)} images.")
        keys = [m.key for m in IMAGE_METRICS]
        lines.append("\n| Image | " + " | ".join(m.label for m in IMAGE_METRICS) + f" | {metric(GAIN_KEY).label} |")
        lines.append("|---|" + "---:|" * (len(keys) + 1))
        for _, row in measured.iterrows():
            values = [metric(k).text(float(row[k])) for k in [*keys, GAIN_KEY]]
            lines.append(f"| {plain(row['image'])} | " + " | ".join(values) + " |")
    elif done:
        lines.append("\nNo metrics: upscale mode has no ground truth (choose **Simulate the challenge** to measure).")
    return "\n".join(lines)


def build_batch_section(
    pool: ModelPool,
    model: gr.Dropdown,
    mode: gr.Radio,
    quality: gr.Slider,
    max_pixels: int,
    workdir: Path,
    run_batch: ServeBatch,
    user_error: Callable[[BaseException], gr.Error],
) -> None:
    """An accordion under the Upscale tab's controls: files in, a zip and a CSV out, with the
    tab's model, mode and JPEG quality. ``run_batch`` is :func:`rtsr.batch.serve_batch`;
    ``user_error`` turns an exception into the message the page shows."""
    with gr.Accordion(f"Several images at once (up to {MAX_BATCH_IMAGES})", open=False, elem_id="batch"):
        gr.Markdown(
            "Every image goes through the model and mode chosen above. You get a zip of the full-resolution PNGs"
            " and a CSV with each image's sizes, forward time and, in simulate mode, its PSNR/SSIM against the"
            " upload and bicubic's."
        )
        files = gr.File(file_count="multiple", file_types=["image"], label="Images", elem_id="batch-files")
        run = gr.Button("Upscale all", elem_id="batch-run")
        summary = gr.Markdown(elem_id="batch-summary")
        with gr.Row():
            zipped = gr.File(label="PNGs (zip)", interactive=False, elem_id="batch-zip")
            table = gr.File(label="Per-image metrics (CSV)", interactive=False, elem_id="batch-csv")

    def on_batch(
        model_id: str,
        mode_id: Mode,
        jpeg_quality: float,
        paths: list[str] | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress bar)
    ) -> Iterator[tuple[Any, ...]]:
        if not paths:
            gr.Warning("Choose one or more images first.")
            yield gr.skip(), gr.skip(), gr.skip()
            return
        folder = Path(tempfile.mkdtemp(dir=workdir))
        try:

            def step(done: int, total: int, name: str) -> None:
                progress(done / total, desc=f"image {done + 1} of {total}: {name}" if name else "writing the zip")

            try:
                batch = run_batch(
                    pool,
                    model_id,
                    [(Path(p).name, p) for p in paths],
                    folder,
                    mode=mode_id,
                    jpeg_quality=int(jpeg_quality),
                    max_input_pixels=max_pixels,
                    on_image=step,
                )
            except Exception as e:
                raise user_error(e) from None
            yield batch_markdown(batch, mode_id), str(batch.zip_path), str(batch.csv_path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # Gradio has its own copies

    def on_files(_: Any) -> tuple[str, None, None]:
        return "", None, None  # what the last batch made no longer belongs to these files

    # one queue with the single upscales: --concurrency bounds the model runs of both
    run.click(
        on_batch,
        [model, mode, quality, files],
        [summary, zipped, table],
        api_visibility="private",
        concurrency_id="upscale",
    )
    files.change(on_files, files, [summary, zipped, table], api_visibility="private")
