import struct
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageOps

from rtsr.errors import InputError
from rtsr.images import image_size, list_images, read_rgb, write_image
from tests.support.data import photo


def test_list_images_sorted_and_filtered(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", "c.webp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no images found"),
        (lambda d: (d / "x.png").write_bytes(b"") or (d / "x.jpg").write_bytes(b""), "share a name"),
    ],
)
def test_list_images_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(InputError, match=message):
        list_images(tmp_path)


def test_list_images_missing_and_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        list_images(tmp_path / "file")


def test_read_converts_gray_and_alpha_to_rgb(tmp_path):
    gray = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    rgba = np.dstack([photo("coffee")[:8, :8], np.full((8, 8), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.array_equal(read_rgb(tmp_path / "g.png"), np.dstack([gray] * 3))
    assert np.array_equal(read_rgb(tmp_path / "a.png"), rgba[..., :3])


def test_read_refuses_bad_files_in_words_naming_the_path_given(tmp_path):
    (tmp_path / "fake.png").write_text("hello")
    Image.fromarray(photo("coffee")).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 200] = b"\xff" * 200
    (tmp_path / "damaged.png").write_bytes(bytes(damaged))
    cases = {
        "fake.png": "fake.png: not an image file (or not one of bmp, jpeg, jpg, png, tif, tiff, webp)",
        "truncated.png": "truncated.png: not a readable image (the file is cut short)",
        "damaged.png": "damaged.png: not a readable image (its data is damaged)",
        "absent.png": "absent.png: no such file",
    }
    for name, message in cases.items():
        with pytest.raises(InputError) as error:
            read_rgb(tmp_path / name)
        # the CLI's messages name the path the user gave, whole
        assert str(error.value) == f"{tmp_path / name}{message.removeprefix(name)}"
        assert "Error" not in str(error.value)  # no exception class names
        with pytest.raises(InputError) as error:
            read_rgb(tmp_path / name, name)  # the app gives the name alone
        assert str(error.value) == message


def test_an_oversized_header_is_refused_with_the_limit(tmp_path):
    # 12000x12000 of one colour: a 420 KB PNG that would decode to 432 MB; Pillow refuses above
    # twice its MAX_IMAGE_PIXELS, which this test lowers for the duration
    Image.new("L", (12000, 12000)).save(tmp_path / "bomb.png", optimize=True)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 50_000_000
    try:
        for read in (read_rgb, image_size):
            with pytest.raises(InputError) as error:
                read(tmp_path / "bomb.png", "bomb.png")
            assert str(error.value) == (
                "bomb.png: 144,000,000 pixels is larger than this host reads (at most 100,000,000 pixels)"
            )
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def png_16_bit(values: np.ndarray) -> bytes:
    """A 16-bit PNG of ``values`` (H, W) gray or (H, W, 3) RGB, written by hand (Pillow writes
    16-bit grayscale but not 16-bit colour), rows filtered with PNG's Sub filter."""
    height, width = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    rows = []
    for row in values.reshape(height, width * channels).astype(">u2"):
        raw = np.frombuffer(row.tobytes(), np.uint8).astype(np.int64)
        step = 2 * channels  # bytes per pixel
        raw[step:] = (raw[step:] - np.frombuffer(row.tobytes(), np.uint8)[:-step]) % 256
        rows.append(b"\x01" + raw.astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 0 if channels == 1 else 2, 0, 0, 0)
    body = zlib.compress(b"".join(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_16_bit_gray_and_colour_are_scaled_to_8_bit_with_rounding(tmp_path, caplog):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    colour[0, :4, 0] = [0, 383, 511, 65535]  # 383 / 257 = 1.49 -> 1, 511 / 257 = 1.99 -> 2 (>> 8: 1)
    gray = colour[..., 1]
    (tmp_path / "colour16.png").write_bytes(png_16_bit(colour))
    Image.fromarray(gray).save(tmp_path / "gray16.png")  # Pillow writes 16-bit grayscale itself
    expected = np.rint(colour / 257).astype(np.uint8)
    assert expected[0, :4, 0].tolist() == [0, 1, 2, 255]
    with caplog.at_level("INFO", logger="rtsr.images"):
        assert np.array_equal(read_rgb(tmp_path / "colour16.png"), expected)
        assert np.array_equal(read_rgb(tmp_path / "gray16.png"), np.dstack([expected[..., 1]] * 3))
    assert "colour16.png: 16-bit colour reduced to 8 bits (values / 257, rounded)" in caplog.text
    assert "gray16.png: 16-bit grayscale reduced to 8 bits (values / 257, rounded)" in caplog.text
    assert image_size(tmp_path / "colour16.png") == (20, 30)


def jpeg_with_orientation(path, image: np.ndarray, orientation: int) -> None:
    """Save ``image`` as a JPEG whose EXIF says to show it with ``orientation`` (as phones do)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(image).save(path, "JPEG", quality=95, exif=exif)


def test_the_exif_orientation_is_applied_and_sizes_agree(tmp_path):
    stored = photo("chelsea")  # 300x451, stored as the sensor saw it: sideways
    jpeg_with_orientation(tmp_path / "phone.jpg", stored, 6)  # 6: turn 90 degrees clockwise to show
    with Image.open(tmp_path / "phone.jpg") as img:
        assert img.size == (451, 300) and img.getexif()[ExifTags.Base.Orientation] == 6
    upright = read_rgb(tmp_path / "phone.jpg")
    assert upright.shape == (451, 300, 3) and image_size(tmp_path / "phone.jpg") == (451, 300)
    with Image.open(tmp_path / "phone.jpg") as img:
        decoded = np.asarray(img.convert("RGB"))
        transposed = np.asarray(ImageOps.exif_transpose(img))
    # turned clockwise: the stored image's first column, read bottom to top, is the top row
    assert np.array_equal(upright, np.rot90(decoded, k=-1))
    assert np.array_equal(upright, transposed)  # as Pillow's own exif_transpose, and browsers


def test_png_is_lossless_and_jpeg_is_not(tmp_path):
    image = photo("astronaut")
    write_image(tmp_path / "x.png", image)
    write_image(tmp_path / "x.jpg", image, jpeg_quality=90)
    assert np.array_equal(read_rgb(tmp_path / "x.png"), image)
    assert not np.array_equal(read_rgb(tmp_path / "x.jpg"), image)


def tiff_16_bit(values: np.ndarray, order: str) -> bytes:
    """An uncompressed 16-bit RGB TIFF of ``values`` (H, W, 3), little-endian ("II") or
    big-endian ("MM"), written by hand (Pillow does not write one)."""
    height, width, _ = values.shape
    e = "<" if order == "II" else ">"
    pixels = values.astype(f"{e}u2").tobytes()
    bits_at = 8 + len(pixels)
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, bits_at), (259, 3, 1, 1), (262, 3, 1, 2)]
    tags += [(273, 4, 1, 8), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(pixels))]
    out = order.encode() + struct.pack(f"{e}HI", 42, bits_at + 6) + pixels + struct.pack(f"{e}3H", 16, 16, 16)
    out += struct.pack(f"{e}H", len(tags))
    for tag, kind, count, value in tags:
        layout = "HHIHH" if kind == 3 and count == 1 else "HHII"
        out += struct.pack(e + layout, tag, kind, count, value, *([0] if layout == "HHIHH" else []))
    return out + struct.pack(f"{e}I", 0)


@pytest.mark.parametrize("order", ["II", "MM"])
def test_16_bit_tiff_colour_is_scaled_too(tmp_path, order):
    colour = np.random.default_rng(2).integers(0, 65536, (9, 13, 3)).astype(np.uint16)
    (tmp_path / "deep.tif").write_bytes(tiff_16_bit(colour, order))
    assert np.array_equal(read_rgb(tmp_path / "deep.tif"), np.rint(colour / 257).astype(np.uint8))
