"""What the app shows of a result, encoded fast: JPEG previews, the lossless PNG for download,
the LR input at the output's size, and the crops of a 1:1 detail."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from rtsr.serving import UpscaleResult

#: Quality of the JPEG previews. A 4K JPEG encodes ~30x faster than Pillow's default PNG and
#: ~9x faster than WebP, Gradio's default (bench/bench_app.py); the PNG is made for download only.
PREVIEW_JPEG_QUALITY = 92
#: zlib level of the download PNG: level 1 is 4x faster than Pillow's default 6 at 4K and still
#: lossless, for a file about a quarter larger (bench/bench_app.py).
PNG_COMPRESS_LEVEL = 1

#: Side of a detail view's crops, in output pixels: small enough to show four side by side at
#: 1:1 on a laptop, large enough to judge edges and textures.
DETAIL_SIZE = 128


def nearest_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each pixel ``scale`` times each way: the LR input shown at the output's size,
    its pixels visible as they are (no interpolation)."""
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def jpeg_preview(image: np.ndarray, quality: int = PREVIEW_JPEG_QUALITY) -> bytes:
    """An ``(H, W, 3)`` uint8 image as JPEG bytes for on-screen comparison.

    Chroma is not subsampled (4:4:4), so coloured edges are compared as the model drew them.
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def encode_preview(image: np.ndarray, path: str | Path, quality: int = PREVIEW_JPEG_QUALITY) -> Path:
    """Write :func:`jpeg_preview` of ``image`` to ``path``; return the path."""
    path = Path(path)
    path.write_bytes(jpeg_preview(image, quality))
    return path


def encode_png(image: np.ndarray, path: str | Path, compress_level: int = PNG_COMPRESS_LEVEL) -> Path:
    """Write an ``(H, W, 3)`` uint8 image as a lossless PNG; return the path."""
    Image.fromarray(image).save(path, "PNG", compress_level=compress_level)
    return Path(path)


def detail_box(height: int, width: int, scale: int, x: int, y: int, size: int = DETAIL_SIZE) -> tuple[int, int, int]:
    """The ``(top, left, side)`` of a square detail of an output of ``height x width``
    pixels, centred on the output pixel ``(x, y)`` as nearly as it fits inside.

    ``side`` is ``size`` rounded down to a multiple of ``scale`` (and to the output's shorter
    side), and ``top`` and ``left`` are multiples of ``scale`` too, so that the detail covers
    whole input pixels: the input's crop is exactly ``side // scale`` pixels a side.

    Raises:
        ValueError: ``scale`` or ``size`` is below 1, or smaller than ``scale``.
    """
    if scale < 1 or size < scale:
        raise ValueError(f"size must be at least the scale, got size {size} at x{scale}")
    side = min(size, height // scale * scale, width // scale * scale) // scale * scale
    x, y = min(max(x, 0), width - 1), min(max(y, 0), height - 1)

    def start(centre: int, extent: int) -> int:
        first = min(max(centre - side // 2, 0), extent // scale * scale - side)
        return first // scale * scale

    return start(y, height), start(x, width), side


def detail_crops(
    lr: np.ndarray, outputs: dict[str, np.ndarray], x: int, y: int, size: int = DETAIL_SIZE
) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
    """Crops of the same square detail of several images, at 1:1 for comparison.

    Args:
        lr: the model's input, ``(h, w, 3)``.
        outputs: images of the output's size ``(h * scale, w * scale, 3)`` by name (the
            model's output, bicubic, the ground truth).
        x, y: the output pixel to centre the detail on (see :func:`detail_box`).
        size: the detail's side in output pixels.

    Returns:
        The crops by name, ``"input"`` first: the input's pixels repeated ``scale`` times
        each way (:func:`nearest_upscale`) so that all crops show the same area at the same
        size; and the detail's ``(top, left, side)`` in output pixels.

    Raises:
        ValueError: no outputs, or an output that is not ``scale`` times the input.
    """
    if not outputs:
        raise ValueError("no images to crop")
    h, w = lr.shape[:2]
    height, width = next(iter(outputs.values())).shape[:2]
    scale = height // h
    for name, image in outputs.items():
        if scale < 1 or image.shape[:2] != (h * scale, w * scale):
            raise ValueError(f"{name} is {image.shape[1]}x{image.shape[0]}, not a whole multiple of the {w}x{h} input")
    top, left, side = detail_box(height, width, scale, x, y, size)
    rows, cols = slice(top // scale, (top + side) // scale), slice(left // scale, (left + side) // scale)
    crops = {"input": nearest_upscale(lr[rows, cols], scale)}
    crops.update({name: image[top : top + side, left : left + side] for name, image in outputs.items()})
    return crops, (top, left, side)


def _decode(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.asarray(img.convert("RGB"))


@dataclass(frozen=True)
class Previews:
    """The JPEG previews of one request: small enough to keep in a user's session (a few MB at
    4K, against ~80 MB of arrays), so that switching the comparison needs no model run."""

    sr: bytes
    bicubic: bytes
    #: The model's input, at its own size.
    lr: bytes
    #: The model's input at the output's size, pixels repeated (no interpolation).
    lr_nearest: bytes
    #: The ground truth the outputs were measured against, if any.
    gt: bytes | None = None

    @classmethod
    def encode(cls, result: UpscaleResult) -> Previews:
        """Encode the previews of ``result`` (the request's "encode" stage)."""
        return cls(
            sr=jpeg_preview(result.sr),
            bicubic=jpeg_preview(result.bicubic),
            lr=jpeg_preview(result.lr),
            lr_nearest=jpeg_preview(nearest_upscale(result.lr, result.model.scale)),
            gt=jpeg_preview(result.gt) if result.gt is not None else None,
        )

    def detail(self, x: int, y: int, size: int = DETAIL_SIZE) -> tuple[dict[str, np.ndarray], tuple[int, int, int]]:
        """:func:`detail_crops` of the previews around output pixel ``(x, y)``: ``"input"``,
        ``"bicubic"``, ``"model"`` and, with a ground truth, ``"gt"``. The crops are of
        the previews (JPEG at :data:`PREVIEW_JPEG_QUALITY`, chroma not subsampled), which the
        session keeps instead of the arrays."""
        outputs = {"bicubic": _decode(self.bicubic), "model": _decode(self.sr)}
        if self.gt is not None:
            outputs["gt"] = _decode(self.gt)
        return detail_crops(_decode(self.lr), outputs, x, y, size)

    def pair(self, before: Literal["bicubic", "lr"], folder: str | Path) -> tuple[str, str]:
        """Write the before/after comparison into ``folder``: bicubic or the LR input (its
        pixels repeated), then the model's output; return the two paths."""
        folder = Path(folder)
        before_path, after_path = folder / f"before_{before}.jpg", folder / "after.jpg"
        before_path.write_bytes(self.lr_nearest if before == "lr" else self.bicubic)
        after_path.write_bytes(self.sr)
        return str(before_path), str(after_path)
