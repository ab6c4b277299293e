"""Several images through one served model: each served as :func:`rtsr.serving.serve` serves
one (degraded and measured in simulate mode), the outputs gathered as one zip of PNGs and one
CSV of per-image metrics.

Images are streamed: each output goes into the zip as soon as it is made and only its metrics
are kept, so a batch needs the memory of one image. One image that fails (not an image, too
large, a model error) is a row of the CSV with the reason, and the others go on; the zip and
the CSV appear, whole, only when the batch is done.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd
import torch

from rtsr.constants import JPEG_QUALITY
from rtsr.errors import InputError, RTSRError, first_line
from rtsr.leaderboard.details import BICUBIC_PSNR_KEY, GAIN_KEY
from rtsr.previews import encode_png
from rtsr.results.metrics import IMAGE_METRICS
from rtsr.serving import Mode, UpscaleResult, serve
from rtsr.submissions.pool import ModelPool

#: The most images one batch takes (a request holds the queue for all of them).
MAX_BATCH_IMAGES: Final = 20

#: The CSV's columns: the image, its sizes, the model's metrics of IMAGE_METRICS, bicubic's
#: PSNR RGB and the gain (dB, simulate mode or a ground truth), the forward time and the
#: engine, and why an image failed (empty for the others).
CSV_COLUMNS: Final = (
    "image",
    "input_size",
    "output_size",
    *(m.key for m in IMAGE_METRICS),
    BICUBIC_PSNR_KEY,
    GAIN_KEY,
    "forward_ms",
    "engine",
    "error",
)

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Batch:
    """A finished batch: the zip of PNGs, the CSV, and the CSV's rows."""

    zip_path: Path
    csv_path: Path
    rows: pd.DataFrame

    @property
    def failed(self) -> int:
        """How many images failed (each has its reason in the ``error`` column)."""
        return int((self.rows["error"] != "").sum())


def png_name(upload_name: str, model_id: str, taken: set[str]) -> str:
    """The zip member of an output: ``<stem>_<model id>.png``, made of safe characters, and
    numbered when two uploads have the same stem."""
    stem = _UNSAFE.sub("_", Path(upload_name).stem).strip("._") or "image"
    base = f"{stem}_{_UNSAFE.sub('_', model_id)}"
    name, n = f"{base}.png", 2
    while name in taken:
        name, n = f"{base}_{n}.png", n + 1
    taken.add(name)
    return name


def _row(name: str, result: UpscaleResult) -> dict[str, object]:
    h, w = result.lr.shape[:2]
    oh, ow = result.sr.shape[:2]
    model, bicubic = result.metrics, result.bicubic_metrics
    return {
        "image": name,
        "input_size": f"{w}x{h}",
        "output_size": f"{ow}x{oh}",
        **{m.key: getattr(model, m.key) if model else math.nan for m in IMAGE_METRICS},
        BICUBIC_PSNR_KEY: bicubic.psnr_rgb if bicubic else math.nan,
        GAIN_KEY: result.psnr_gain if result.psnr_gain is not None else math.nan,
        "forward_ms": result.forward_ms,
        "engine": result.engine.label,
        "error": "",
    }


def serve_batch(
    pool: ModelPool,
    model_id: str,
    images: Sequence[tuple[str, str | Path]],
    out_dir: str | Path,
    mode: Mode = "upscale",
    jpeg_quality: int = JPEG_QUALITY,
    max_input_pixels: int | None = None,
    fit: bool = False,
    on_image: Callable[[int, int, str], None] | None = None,
) -> Batch:
    """Serve each of ``images`` (``(name, path)`` pairs: the name is the upload's, for the
    CSV and the zip) with ``model_id``, in ``mode`` as :func:`~rtsr.serving.serve` does, and
    write ``<out_dir>/<model id>_outputs.zip`` (the PNGs, see :func:`png_name`) and
    ``<out_dir>/<model id>_metrics.csv`` (:data:`CSV_COLUMNS`; metrics empty without a ground
    truth). ``on_image(done, total, name)`` is called before each image and at the end.

    Raises:
        InputError: no images, more than :data:`MAX_BATCH_IMAGES`, or a model the pool does
            not serve (a bad image is a row of the CSV instead).
    """
    if not images:
        raise InputError("no images to upscale: choose one or more files")
    if len(images) > MAX_BATCH_IMAGES:
        raise InputError(f"{len(images)} images: a batch takes at most {MAX_BATCH_IMAGES}")
    pool.descriptor(model_id)  # an unknown model is the request's error, not each image's
    out_dir = Path(out_dir)
    zip_path, csv_path = out_dir / f"{model_id}_outputs.zip", out_dir / f"{model_id}_metrics.csv"
    rows: list[dict[str, object]] = []
    taken: set[str] = set()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".batch-") as scratch:
        members = Path(scratch) / "outputs.zip"
        # PNGs are compressed already: stored, not deflated again
        with zipfile.ZipFile(members, "w", compression=zipfile.ZIP_STORED) as archive:
            for i, (name, path) in enumerate(images):
                if on_image is not None:
                    on_image(i, len(images), name)
                try:
                    result = serve(
                        pool, model_id, path, mode=mode, jpeg_quality=jpeg_quality,
                        max_input_pixels=max_input_pixels, fit=fit,
                    )  # fmt: skip
                except (RTSRError, MemoryError, torch.OutOfMemoryError) as e:
                    reason = "out of memory" if isinstance(e, MemoryError | torch.OutOfMemoryError) else first_line(e)
                    rows.append({**dict.fromkeys(CSV_COLUMNS, ""), "image": name, "error": reason})
                    continue
                png = encode_png(result.sr, Path(scratch) / "output.png")
                archive.write(png, png_name(name, model_id, taken))
                png.unlink()
                rows.append(_row(name, result))
        frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
        table = Path(scratch) / "metrics.csv"
        frame.to_csv(table, index=False)
        # the scratch folder is in out_dir: each appears whole, by a rename
        os.replace(members, zip_path)
        os.replace(table, csv_path)
    if on_image is not None:
        on_image(len(images), len(images), "")
    return Batch(zip_path, csv_path, frame)
