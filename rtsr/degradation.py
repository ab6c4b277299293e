"""The challenge's degradation: crop the ground truth, bicubic downsampling, JPEG.

``prepare_data.py`` of NTIRE 2023 RTSR downsamples with Pillow's BICUBIC and saves the LR
image as JPEG at quality 90. ``resize="matlab"`` swaps in MATLAB's antialiased bicubic
``imresize`` (the SR literature's standard) for comparison with published numbers.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from rtsr.constants import JPEG_QUALITY, SCALES
from rtsr.errors import InputError
from rtsr.images import list_images, read_rgb, write_image
from rtsr.imresize import imresize
from rtsr.outputs import staged_output_dir

logger = logging.getLogger(__name__)

ResizeMethod = Literal["pil", "matlab"]
RESIZE_METHODS: tuple[str, ...] = get_args(ResizeMethod)


def check_scale(scale: int) -> int:
    """Return ``scale`` if the challenge has a track for it (2 or 3); raise InputError if not."""
    if scale not in SCALES:
        raise InputError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale}")
    return scale


def check_jpeg_quality(quality: int) -> int:
    """Return ``quality`` if it is 0 (lossless PNG) or a JPEG quality on 1-100."""
    if not 0 <= quality <= 100:
        raise InputError(f"JPEG quality must be 0 (lossless PNG) or 1-100, got {quality}")
    return quality


def crop_for_scale(image: np.ndarray, scale: int, crop_size: tuple[int, int] | None = None) -> np.ndarray:
    """Crop an HWC image so that both sides divide by ``scale``.

    With ``crop_size = (H, W)`` take the centred ``H x W`` window (both must divide by
    ``scale``); otherwise drop the last ``side % scale`` rows and columns, as BasicSR's
    ``modcrop`` does.

    Raises:
        InputError: ``crop_size`` does not divide by ``scale`` or exceeds the image.
    """
    h, w = image.shape[:2]
    if crop_size is None:
        return image[: h - h % scale, : w - w % scale]
    ch, cw = crop_size
    if ch <= 0 or cw <= 0 or ch % scale or cw % scale:
        raise InputError(f"crop size {ch}x{cw} must be positive and divisible by the scale {scale}")
    if ch > h or cw > w:
        raise InputError(f"crop size {ch}x{cw} is larger than the image ({h}x{w})")
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def downsample(image: np.ndarray, scale: int, resize: ResizeMethod = "pil") -> np.ndarray:
    """Bicubic downsampling of an HWC uint8 image whose sides divide by ``scale``."""
    h, w = image.shape[:2]
    if h % scale or w % scale:
        raise InputError(f"image size {h}x{w} does not divide by the scale {scale}")
    if resize == "pil":
        # Pillow's BICUBIC antialiases when downscaling, with its own edge handling.
        small = Image.fromarray(image).resize((w // scale, h // scale), resample=Image.Resampling.BICUBIC)
        return np.array(small)  # a writable copy: Pillow's buffer is read-only
    if resize == "matlab":
        chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).double()
        small_t = imresize(chw, 1.0 / scale, out_size=(h // scale, w // scale))
        return small_t.round().clamp(0, 255).byte().numpy().transpose(1, 2, 0).copy()
    raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")


def jpeg_roundtrip(image: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Encode an HWC uint8 image as JPEG in memory and decode it again.

    The bytes are those :func:`rtsr.images.write_image` writes, so the result equals
    reading back a saved LR file. Quality 0 returns the image unchanged (lossless).
    """
    if quality == 0:
        return image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB")).copy()


def degrade(
    gt: np.ndarray,
    scale: int,
    jpeg_quality: int = JPEG_QUALITY,
    resize: ResizeMethod = "pil",
) -> np.ndarray:
    """Make the challenge's LR input from a ground truth whose sides divide by ``scale``."""
    return jpeg_roundtrip(downsample(gt, scale, resize), jpeg_quality)


@dataclass(frozen=True)
class PreparedPair:
    """One prepared image: its name and the LR and GT sizes as (H, W)."""

    name: str
    lr_size: tuple[int, int]
    gt_size: tuple[int, int]


def prepare_data(
    image_dir: str | Path,
    lr_out_dir: str | Path,
    gt_out_dir: str | Path,
    scale: int,
    jpeg_quality: int = JPEG_QUALITY,
    crop_size: tuple[int, int] | None = None,
    resize: ResizeMethod = "pil",
    progress: bool = True,
) -> list[PreparedPair]:
    """Degrade every image of ``image_dir`` as the challenge does, writing LR and GT folders.

    GT images are cropped (:func:`crop_for_scale`) and saved as PNG; LR images are saved as
    JPEG at ``jpeg_quality`` (PNG when 0). Output files keep the input's stem. Both folders
    appear only when every image succeeded.

    Raises:
        InputError: bad scale, quality or crop size, an empty or missing input folder, an
            unreadable image (named), or an image smaller than the crop.
    """
    check_scale(scale)
    check_jpeg_quality(jpeg_quality)
    if resize not in RESIZE_METHODS:
        raise InputError(f"resize must be one of {', '.join(RESIZE_METHODS)}, got {resize!r}")
    if Path(lr_out_dir).absolute() == Path(gt_out_dir).absolute():
        raise InputError("--lr-out-dir and --gt-out-dir must be different folders")
    if crop_size is not None:
        # Check the numbers before reading any image, so the error names the real problem.
        crop_for_scale(np.zeros((*crop_size, 3), np.uint8), scale, crop_size)
    paths = list_images(image_dir)
    lr_suffix = ".jpg" if jpeg_quality else ".png"
    pairs = []
    with staged_output_dir(lr_out_dir) as lr_stage, staged_output_dir(gt_out_dir) as gt_stage:
        for path in tqdm(paths, desc="prepare-data", unit="img", disable=not progress):
            image = read_rgb(path)
            try:
                gt = crop_for_scale(image, scale, crop_size)
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
            if min(gt.shape[:2]) < scale:
                raise InputError(f"{path}: too small ({image.shape[0]}x{image.shape[1]})")
            lr = downsample(gt, scale, resize)
            write_image(gt_stage / f"{path.stem}.png", gt)
            write_image(lr_stage / f"{path.stem}{lr_suffix}", lr, jpeg_quality)
            pairs.append(PreparedPair(path.stem, lr.shape[:2], gt.shape[:2]))
    logger.info("prepared %d images at x%d", len(pairs), scale)
    return pairs
