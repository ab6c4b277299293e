"""space.doors on real files: the bounded temporary folder and inline data: images."""

import base64
import os
import time

import pytest

from rtsr.errors import InputError
from space.doors import MIN_FILE_COST, TempStore, inspect_files, save_data_url


def write(path, size: int, age_s: float = 0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_the_oldest_files_go_first_and_the_kept_ones_stay(tmp_path):
    store = TempStore(tmp_path, max_bytes=10 * MIN_FILE_COST, max_age_s=3600)
    example = write(tmp_path / "a" / "example.png", MIN_FILE_COST)
    store.keep_present()
    # ctime cannot be set back, so the order of writing is the order of age
    files = []
    for i in range(8):
        files.append(write(tmp_path / f"u{i}" / "f.bin", MIN_FILE_COST))
        time.sleep(0.02)
    assert store.sweep(3 * MIN_FILE_COST)  # 9 stored + 3 coming > 10: the two oldest go
    assert [f.exists() for f in files] == [False, False] + [True] * 6
    assert example.exists()
    # the 3 reserved are counted until received: nothing more fits without evicting
    assert store.sweep(MIN_FILE_COST) and not files[2].exists()
    store.received(3 * MIN_FILE_COST)
    store.received(MIN_FILE_COST)
    assert store.used() <= 10 * MIN_FILE_COST
    # more than the folder can ever hold beside the kept file is refused, the kept file stays
    assert not store.sweep(10 * MIN_FILE_COST) and example.exists()


def test_files_past_their_age_go_and_tiny_files_count_64_kib(tmp_path):
    store = TempStore(tmp_path, max_bytes=100 * MIN_FILE_COST, max_age_s=60)
    old = write(tmp_path / "old" / "f.bin", 10)
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert store.used() == MIN_FILE_COST  # 10 bytes count as 64 KiB
    # ctime is now, so a file counts as old only when both its times are: here it is kept
    assert store.sweep() and old.exists()
    store.max_age_s = 0
    time.sleep(0.01)
    assert store.sweep() and not old.exists()


def test_inline_images_are_written_undecoded_and_bounded_from_their_length(tmp_path):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(100)).decode()
    path = save_data_url(f"data:image/png;base64,{png}", tmp_path, None, 1000)
    assert path.name == "upload.png" and path.read_bytes().startswith(b"\x89PNG")
    assert save_data_url(f"data:image/png;base64,{png}", tmp_path, "../../etc/x.png", 1000).name == "x.png"
    cases = [
        ("data:image/png;base64," + "A" * 4000, "big.png: larger than this host accepts (at most 1000b a file)"),
        ("data:image/png;base64,@@@@", "big.png: the data: URL's base64 is damaged"),
        ("data:image/png,%89PNG", "big.png: not a base64 data: URL (expected data:image/...;base64,...)"),
    ]
    for url, message in cases:
        with pytest.raises(InputError) as error:
            save_data_url(url, tmp_path, "big.png", 1000)
        assert str(error.value) == message


def test_requests_may_name_only_uploads_or_inline_images(tmp_path):
    uploads = tmp_path / "gradio"
    meta = {"_type": "gradio.FileData"}
    inline = {"data": ["m", {"path": "data:image/png;base64,AAAA", "meta": meta, "orig_name": "a.png"}]}
    assert inspect_files(inline, uploads)
    assert inline["data"][1] == {"path": "inline", "url": "data:image/png;base64,AAAA", "orig_name": "a.png"}
    uploaded = {"data": [{"path": str(uploads / "abc" / "x.png"), "meta": meta}]}
    assert not inspect_files(uploaded, uploads)
    for path, message in [
        ("/etc/passwd", "passwd: not a file uploaded to this server"),
        (str(uploads / ".." / "secret.png"), "secret.png: not a file uploaded to this server"),
        ("https://example.com/a.png", "a.png: send the file itself"),
    ]:
        with pytest.raises(InputError, match=message):
            inspect_files({"data": [{"path": path, "meta": meta}]}, uploads)


def test_a_file_without_gradios_mark_is_still_a_file(tmp_path):
    """Gradio's components read any object with a path as a file, marked or not: an unmarked
    server path, as a path or a URL, at any depth, is refused like a marked one, in the same
    words whether the file exists or not."""
    uploads = tmp_path / "gradio"
    secret = tmp_path / "bird.png"
    secret.write_bytes(b"")
    for file, message in [
        ({"path": str(secret)}, "bird.png: not a file uploaded to this server"),
        ({"path": str(tmp_path / "nothing.png")}, "nothing.png: not a file uploaded to this server"),
        ({"path": "testsets/Set5/bird.png"}, "bird.png: not a file uploaded to this server"),
        ({"path": str(secret), "orig_name": "innocent.png"}, "innocent.png: not a file uploaded to this server"),
        ({"url": str(secret)}, "file: send the file itself"),
        ({"path": ["/etc/passwd"]}, "file: send the file itself"),
        ({"path": "file:///etc/passwd"}, "passwd: send the file itself"),
        ({"background": {"path": str(secret)}, "layers": []}, "bird.png: not a file uploaded to this server"),
    ]:
        with pytest.raises(InputError) as error:
            inspect_files({"data": ["rtsrn-x2", [file]]}, uploads)
        assert str(error.value).startswith(message) and str(tmp_path) not in str(error.value)
    # an upload of this server's, unmarked, passes as it is
    assert not inspect_files({"data": [{"path": str(uploads / "abc" / "x.png")}]}, uploads)
