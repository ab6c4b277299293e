"""Tiled inference: any image size in memory bounded by the tile's.

The image is cut into tiles of ``tile`` x ``tile`` LR pixels; each is run with a margin of
the model's receptive field around it (measured by :func:`receptive_radius`, not guessed),
and only its core is kept. Where the margin covers the receptive field, every kept output
pixel saw exactly the input it sees in one pass, so the result equals the untiled output up
to floating-point rounding. Tiles start on multiples of the model's pad multiple, so that
models whose computation depends on position in a grid (windowed attention, pixel unshuffle)
see the grid they see in one pass.

Runtimes are never measured tiled: the challenge times one full-frame pass.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: LR side of the probe input the receptive field is first measured on; doubled up to
#: :data:`MAX_PROBE` while the perturbation reaches the probe's border.
PROBE = 64
MAX_PROBE = 256
#: An output change above this (on [0, 1], for a perturbation of 0.5) is dependence, not
#: rounding, in float64, where rounding is ~1e-16 and a global mean over a 64x64 probe moves
#: outputs by ~4e-5; in float32 (models that do not run in float64), rounding is ~1e-7.
_DEPENDENCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@dataclass(frozen=True)
class ReceptiveField:
    """How far, in LR pixels, an output pixel's inputs reach each way; ``radius`` None when
    the model looks at the whole image (a global pooling, attention over the image), where
    tiles can only approximate the untiled output."""

    radius: int | None

    @property
    def bounded(self) -> bool:
        return self.radius is not None

    def margin(self, multiple: int = 1) -> int:
        """The margin a tile needs around its core, LR pixels: the radius rounded up to the
        pad multiple, or :data:`MAX_PROBE` // 2 for an unbounded field."""
        r = self.radius if self.radius is not None else MAX_PROBE // 2
        return -(-r // multiple) * multiple


def receptive_radius(module: nn.Module, scale: int, device: torch.device) -> ReceptiveField:
    """Measure ``module``'s receptive field: change the centre pixel of a random input by 0.5
    and see how far from the centre the output changes, in float64 where the model runs in
    it (so that a global mean's small pull on every pixel shows), else in float32.

    Runs the model twice per probe size (64, then 128 and 256 LR pixels while the change
    reaches the border), on a copy: ``module`` is left as it was.
    """
    try:
        probed, dtype = copy.deepcopy(module).to(device=device, dtype=torch.float64), torch.float64
        with torch.inference_mode():
            probed(torch.rand(1, 3, 8, 8, device=device, dtype=dtype))
    except Exception:  # an op without float64: measure in float32
        probed, dtype = copy.deepcopy(module).to(device=device, dtype=torch.float32), torch.float32
    generator = torch.Generator().manual_seed(0)
    probe = PROBE
    while True:
        x = torch.rand(1, 3, probe, probe, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
        c = probe // 2
        bumped = x.clone()
        bumped[..., c, c] = (bumped[..., c, c] + 0.5) % 1.0
        with torch.inference_mode():
            changed = (probed(bumped) - probed(x)).abs().amax(dim=1)[0] > _DEPENDENCE[dtype]
        rows = torch.nonzero(changed.any(dim=1)).flatten()
        cols = torch.nonzero(changed.any(dim=0)).flatten()
        if rows.numel() == 0:
            return ReceptiveField(0)
        side = probe * scale
        reach_edge = rows.min() == 0 or cols.min() == 0 or rows.max() == side - 1 or cols.max() == side - 1
        if not reach_edge:
            # the output pixels of the centre input pixel span [c*s, c*s + s); the farthest
            # changed output pixel from that span, in LR pixels, rounded up
            lo, hi = c * scale, c * scale + scale - 1
            far = max(lo - int(rows.min()), int(rows.max()) - hi, lo - int(cols.min()), int(cols.max()) - hi, 0)
            return ReceptiveField(math.ceil(far / scale))
        if probe >= MAX_PROBE:
            return ReceptiveField(None)
        probe *= 2


@dataclass(frozen=True)
class Tile:
    """One tile: the LR rows/columns run (``run_*``) and the core kept (``core_*``), as
    half-open ``(start, stop)`` ranges of the whole image."""

    run_rows: tuple[int, int]
    run_cols: tuple[int, int]
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]


def _spans(length: int, tile: int, margin: int, multiple: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    spans = []
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        run_start = max(0, (start - margin) // multiple * multiple)
        run_stop = min(length, stop + margin)
        spans.append(((run_start, run_stop), (start, stop)))
    return spans


def plan_tiles(height: int, width: int, tile: int, margin: int, multiple: int = 1) -> list[Tile]:
    """The tiles covering a ``height`` x ``width`` LR image: cores of ``tile`` pixels (a
    multiple of ``multiple``; the last ones shorter), each run with ``margin`` pixels of
    context where the image has them, starting on a multiple of ``multiple``."""
    tile = max(multiple, tile // multiple * multiple)
    return [
        Tile(run_r, run_c, core_r, core_c)
        for run_r, core_r in _spans(height, tile, margin, multiple)
        for run_c, core_c in _spans(width, tile, margin, multiple)
    ]


def tiled_forward(
    run: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    scale: int,
    tiles: list[Tile],
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Upscale ``image`` (``(H, W, 3)`` uint8) tile by tile with ``run`` (one ``(h, w, 3)``
    uint8 tile -> ``(s*h, s*w, 3)`` uint8), keeping each tile's core.

    Memory beyond the output is one tile's. ``on_tile(done, total)`` is called after each.
    """
    h, w = image.shape[:2]
    out = np.empty((h * scale, w * scale, 3), np.uint8)
    for i, t in enumerate(tiles):
        (r0, r1), (c0, c1) = t.run_rows, t.run_cols
        sr = run(image[r0:r1, c0:c1])
        (k0, k1), (j0, j1) = t.core_rows, t.core_cols
        out[k0 * scale : k1 * scale, j0 * scale : j1 * scale] = sr[
            (k0 - r0) * scale : (k1 - r0) * scale, (j0 - c0) * scale : (j1 - c0) * scale
        ]
        if on_tile is not None:
            on_tile(i + 1, len(tiles))
    return out
