"""Reading, listing and writing 8-bit RGB images.

Arrays are ``numpy.uint8`` in HWC layout with channels in RGB order, values on [0, 255].
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from rtsr.errors import InputError

logger = logging.getLogger(__name__)

#: File endings read as images (case-insensitive).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

#: How to undo each EXIF orientation (2-8; 1 is upright), as ``PIL.ImageOps.exif_transpose``.
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: 16-bit grayscale modes: read in full and scaled to 8 bits.
_GRAY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
#: Pillow decodes 16-bit colour (PNG, TIFF) through these raw modes, keeping the high byte only;
#: each maps to the raw mode that reads the low byte of the same data instead.
_LOW_BYTE_RAWMODE = {
    f"{mode};16{order}": f"{mode};16{other}" for mode in ("RGB", "RGBA") for order, other in (("B", "L"), ("L", "B"))
}


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


def _too_large(shown: str, error: Image.DecompressionBombError) -> InputError:
    """The refusal of an image whose header declares more pixels than Pillow will decode."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow refuses above twice its warning threshold
    # Pillow's message is the only place the declared size survives: "Image size (N pixels) ..."
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "its size"
    return InputError(f"{shown}: {size} is larger than this host reads (at most {limit:,} pixels)")


@contextmanager
def _opening(shown: str) -> Iterator[None]:
    """Turn the failures to open or decode a file into an InputError naming ``shown``, saying
    what is wrong in words (no exception class names)."""
    try:
        yield
    except InputError:
        raise  # already says what is wrong
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{shown}: a folder, not an image file") from None
    except PermissionError:
        raise InputError(f"{shown}: cannot be read (permission denied)") from None
    except Image.DecompressionBombError as e:
        raise _too_large(shown, e) from None
    except UnidentifiedImageError:
        endings = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
        raise InputError(f"{shown}: not an image file (or not one of {endings})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow says "image file is truncated" / "Truncated File Read" for a short file
        why = "the file is cut short" if "truncated" in str(e).lower() else "its data is damaged"
        raise InputError(f"{shown}: not a readable image ({why})") from None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) read from the header; 1 where there is none."""
    # A PNG's getexif() decodes the whole image to look for an eXIf chunk after the pixels, so
    # only one before them counts (for image_size and read_rgb alike: their sizes must agree).
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block leaves the pixels as stored, as browsers do
        return 1
    return value if value in _UPRIGHT else 1


def _scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """16-bit values on [0, 65535] to 8 bits: divided by 257 and rounded (65535 -> 255)."""
    return np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)


def read_rgb(path: str | Path, name: str | None = None) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array, upright.

    Grayscale, palette and alpha images are converted to RGB (alpha is dropped). 16-bit images
    (grayscale or colour) are reduced to 8 bits by dividing by 257 and rounding, and the
    reduction is logged. The EXIF orientation is applied, as browsers and phones show the photo.

    Args:
        path: the file.
        name: how messages name the file (default ``path`` as given; the app passes the
            upload's own name, since its path on the server is no business of the user's).

    Raises:
        InputError: the file is missing, is not an image Pillow can decode, is larger than
            Pillow decodes, or holds 32-bit integer or floating-point pixels.
    """
    shown = str(path) if name is None else name
    with _opening(shown), Image.open(path) as img:
        orientation = _orientation(img)
        rawmode = _rawmode(img)
        img.load()
        if img.mode in ("I", "F"):
            kind = "32-bit integer" if img.mode == "I" else "floating-point"
            raise InputError(f"{shown}: {kind} pixels are not supported, only 8- and 16-bit")
        if img.mode in _GRAY16_MODES:
            rgb = Image.fromarray(_scale_16_to_8(np.asarray(img))).convert("RGB")
            logger.info("%s: 16-bit grayscale reduced to 8 bits (values / 257, rounded)", Path(shown).name)
        elif rawmode in _LOW_BYTE_RAWMODE:
            rgb = _colour16_to_rgb8(path, img, rawmode)
            logger.info("%s: 16-bit colour reduced to 8 bits (values / 257, rounded)", Path(shown).name)
        else:
            rgb = img.convert("RGB")
    if orientation in _UPRIGHT:
        rgb = rgb.transpose(_UPRIGHT[orientation])
    return np.asarray(rgb, dtype=np.uint8).copy()


def _rawmode(img: ImageFile.ImageFile) -> str | None:
    """The raw mode Pillow will decode ``img`` (opened, not loaded) with, where one is named."""
    modes = {_tile_rawmode(tile.args) for tile in img.tile}
    return modes.pop() if len(modes) == 1 else None


def _tile_rawmode(args: Any) -> str | None:
    # a PNG's tile names the raw mode alone, a TIFF's first among other arguments
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(args: Any, rawmode: str) -> Any:
    return rawmode if isinstance(args, str) else (rawmode, *args[1:])


def _colour16_to_rgb8(path: str | Path, high: Image.Image, rawmode: str) -> Image.Image:
    """The 8-bit RGB of a 16-bit colour image whose high bytes are ``high`` (loaded): the file is
    decoded once more with the raw mode that keeps the low bytes, to get every 16-bit value."""
    with Image.open(path) as low:
        low.tile = [tile._replace(args=_with_rawmode(tile.args, _LOW_BYTE_RAWMODE[rawmode])) for tile in low.tile]
        low.load()
        values = np.asarray(high).astype(np.uint16) * 256 + np.asarray(low)
    return Image.fromarray(_scale_16_to_8(values)).convert("RGB")  # RGB or RGBA by shape


def image_size(path: str | Path, name: str | None = None) -> tuple[int, int]:
    """``(height, width)`` of an image file as :func:`read_rgb` returns it (EXIF orientations
    5-8 swap the two), read from its header without decoding it.

    Args:
        path: the file.
        name: how messages name the file (default ``path`` as given).

    Raises:
        InputError: the file is missing, not an image Pillow can open, or declares more pixels
            than Pillow decodes (the limit is stated).
    """
    shown = str(path) if name is None else name
    with _opening(shown), Image.open(path) as img:
        width, height = img.size
        if _orientation(img) >= 5:  # a quarter turn or a transpose: the sides swap
            width, height = height, width
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
