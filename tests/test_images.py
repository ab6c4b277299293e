import numpy as np
import pytest
from PIL import Image

from rtsr.errors import InputError
from rtsr.images import list_images, read_rgb, write_image
from tests.conftest import photo


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


def test_read_refuses_non_images_and_16_bit(tmp_path):
    (tmp_path / "fake.png").write_text("hello")
    with pytest.raises(InputError, match=r"fake\.png: not a readable image"):
        read_rgb(tmp_path / "fake.png")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(InputError, match="only 8-bit"):
        read_rgb(tmp_path / "deep.png")
    with pytest.raises(InputError, match="no such file"):
        read_rgb(tmp_path / "absent.png")


def test_png_is_lossless_and_jpeg_is_not(tmp_path):
    image = photo("astronaut")
    write_image(tmp_path / "x.png", image)
    write_image(tmp_path / "x.jpg", image, jpeg_quality=90)
    assert np.array_equal(read_rgb(tmp_path / "x.png"), image)
    assert not np.array_equal(read_rgb(tmp_path / "x.jpg"), image)
