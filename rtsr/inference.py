"""Running a model on images: one image, a tiled image, a folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from rtsr.devices import DTYPES, Precision, resolve_device
from rtsr.engines import EngineChoice, resolve_engine
from rtsr.errors import ModelError
from rtsr.images import list_images, read_rgb, write_image
from rtsr.outputs import staged_output_dir
from rtsr.tensors import to_image, to_tensor
from rtsr.tiling import ReceptiveField, plan_tiles, receptive_radius, tiled_forward

logger = logging.getLogger(__name__)


def prepare(module: nn.Module, device: torch.device, precision: Precision) -> nn.Module:
    """Move a model to ``device`` and cast its weights to ``precision``, in eval mode."""
    return module.to(device=device, dtype=DTYPES[precision]).eval()


def timed_forward(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``module(x)`` and its time in ms, as the challenge times a pass: between CUDA events,
    the device synchronised, on a GPU; with ``time.perf_counter`` on the CPU. Call it inside
    ``torch.inference_mode()``."""
    if x.device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = module(x)
        end.record()
        torch.cuda.synchronize(x.device)
        return out, start.elapsed_time(end)
    t0 = time.perf_counter()
    out = module(x)
    return out, (time.perf_counter() - t0) * 1e3


def upscale(
    module: nn.Module,
    image: np.ndarray,
    scale: int,
    device: torch.device,
    precision: Precision,
) -> np.ndarray:
    """Upscale one ``(H, W, 3)`` uint8 image with a prepared model.

    Raises:
        ModelError: the model's output is not ``(scale * H, scale * W)`` or not finite.
    """
    return upscale_timed(module, image, scale, device, precision)[0]


def upscale_timed(
    module: nn.Module,
    image: np.ndarray,
    scale: int,
    device: torch.device,
    precision: Precision,
) -> tuple[np.ndarray, float]:
    """:func:`upscale`, also returning the model's forward time in milliseconds.

    The time covers ``module(x)`` alone (no transfers or conversions): between CUDA events
    on a GPU, with ``time.perf_counter`` on the CPU.

    Raises:
        ModelError: the model's output is not ``(scale * H, scale * W)`` or not finite.
    """
    h, w = image.shape[:2]
    expected = (1, 3, scale * h, scale * w)
    with torch.inference_mode():
        out, forward_ms = timed_forward(module, to_tensor(image, device, precision))
        if tuple(out.shape) != expected:
            raise ModelError(f"model returned {tuple(out.shape)} for a {h}x{w} input, expected {expected}")
        if not torch.isfinite(out).all():
            raise ModelError(f"model returned non-finite values for a {h}x{w} input")
        return to_image(out), forward_ms


def upscale_tiled(
    module: nn.Module,
    image: np.ndarray,
    scale: int,
    device: torch.device,
    precision: Precision,
    tile: int,
    field: ReceptiveField,
    multiple: int = 1,
    on_tile: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, float, int]:
    """:func:`upscale_timed` in tiles of ``tile`` LR pixels a side (see :mod:`rtsr.tiling`),
    each run with the margin ``field`` needs; return the output, the forward time summed
    over the tiles in ms, and the number of tiles (1: the image fit in one).

    Raises:
        ModelError: the model's output is not ``(scale * h, scale * w)`` or not finite on a tile.
    """
    h, w = image.shape[:2]
    if tile <= 0 or (h <= tile and w <= tile):
        out, ms = upscale_timed(module, image, scale, device, precision)
        return out, ms, 1
    tiles = plan_tiles(h, w, tile, field.margin(multiple), multiple)
    total_ms = 0.0

    def run(part: np.ndarray) -> np.ndarray:
        nonlocal total_ms
        out, ms = upscale_timed(module, part, scale, device, precision)
        total_ms += ms
        return out

    return tiled_forward(run, image, scale, tiles, on_tile), total_ms, len(tiles)


def upscale_folder(
    module: nn.Module,
    scale: int,
    lr_dir: str | Path,
    out_dir: str | Path,
    device: str | torch.device = "cpu",
    precision: Precision | None = None,
    progress: bool = True,
    engine: str | None = "eager",
    tile: int = 0,
    multiple: int = 1,
) -> tuple[list[Path], EngineChoice]:
    """Upscale every image of ``lr_dir`` into PNGs named as the inputs in ``out_dir``; return
    the paths written and the engine that ran.

    ``engine`` is one of :data:`rtsr.engines.ENGINES` in ``precision`` (default by device), or
    ``"auto"``: the fastest faithful engine (:func:`rtsr.engines.resolve_engine`). With
    ``tile`` above 0, images with a side above it run in tiles of that many LR pixels
    (:func:`upscale_tiled`). The output folder appears only when every image succeeded.

    Raises:
        EngineError: the engine does not run here or does not take the model.
        ModelError: the model failed on an image (its name leads the message).
    """
    dev = resolve_device(device)
    runner, choice = resolve_engine(module, dev, engine, precision)
    field = receptive_radius(module, scale, dev) if tile > 0 else ReceptiveField(0)

    def upscale_one(image: np.ndarray, on_tile: Callable[[int, int], None]) -> np.ndarray:
        return upscale_tiled(runner, image, scale, dev, "fp32", tile, field, multiple, on_tile)[0]

    return upscale_folder_with(upscale_one, lr_dir, out_dir, f"sr x{scale} {choice.label}", progress, tile), choice


#: Upscales one ``(H, W, 3)`` uint8 image, telling ``on_tile(done, total)`` of its tiles.
TileUpscaler = Callable[[np.ndarray, Callable[[int, int], None]], np.ndarray]


def upscale_folder_with(
    upscale_one: TileUpscaler, lr_dir: str | Path, out_dir: str | Path, desc: str, progress: bool = True, tile: int = 0
) -> list[Path]:
    """Upscale every image of ``lr_dir`` with ``upscale_one`` (here, or in a model process)
    into PNGs named as the inputs in ``out_dir``, with a progress bar (and one of tiles for an
    image with a side above ``tile``, when above 0); return the paths written. The output
    folder appears only when every image succeeded.

    Raises:
        ModelError: the model failed on an image (its path leads the message).
    """
    paths = list_images(lr_dir)
    written = []
    with staged_output_dir(out_dir) as stage:
        for path in tqdm(paths, desc=desc, unit="img", disable=not progress):
            image = read_rgb(path)
            tiled = tile > 0 and max(image.shape[:2]) > tile
            bar = tqdm(desc=f"  {path.name}", unit="tile", leave=False, disable=not (progress and tiled))

            def on_tile(done: int, total: int, bar: tqdm = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                sr = upscale_one(image, on_tile)
            except ModelError as e:
                raise ModelError(f"{path}: {e}") from None
            finally:
                bar.close()
            write_image(stage / f"{path.stem}.png", sr)
            written.append(Path(out_dir) / f"{path.stem}.png")
    return written
