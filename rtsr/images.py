"""Reading, listing and writing 8-bit RGB images.

Arrays are ``numpy.uint8`` in HWC layout with channels in RGB order, values on [0, 255].
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rtsr.errors import InputError

#: File endings read as images (case-insensitive).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def list_images(folder: str | Path) -> list[Path]:
    """Return the image files directly inside ``folder``, sorted by name.

    Raises:
        InputError: the folder is missing, is not a folder, holds no image, or holds two
            images with the same stem (``a.png`` and ``a.jpg``), which would make pairing by
            stem ambiguous.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        endings = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"{folder}: no images found (looked for {endings})")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise InputError(f"{folder}: {seen[path.stem].name} and {path.name} share a name")
        seen[path.stem] = path
    return paths


@contextmanager
def _opening(shown: str) -> Iterator[None]:
    """Turn Pillow's failures to open or decode a file into an InputError naming ``shown``."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as e:
        raise InputError(f"{shown}: not a readable image ({e.__class__.__name__})") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array.

    Grayscale, palette and alpha images are converted to RGB (alpha is dropped).

    Raises:
        InputError: the file is missing or is not an image Pillow can decode.
    """
    path = Path(path)
    with _opening(str(path)), Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            raise InputError(f"{path}: {img.mode} images are not supported, only 8-bit")
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header without decoding it; errors
    name the file only (an upload's full path is the server's business).

    Raises:
        InputError: the file is missing or not an image Pillow can open.
    """
    with _opening(Path(path).name), Image.open(path) as img:
        width, height = img.size
    return height, width


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = 0) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB array: PNG when ``jpeg_quality`` is 0, else JPEG.

    ``jpeg_quality`` is on Pillow's scale (1-95); chroma subsampling is Pillow's default
    (4:2:0), as in the challenge's ``prepare_data.py``.
    """
    img = Image.fromarray(image)
    if jpeg_quality:
        img.save(path, "JPEG", quality=jpeg_quality)
    else:
        img.save(path, "PNG")
