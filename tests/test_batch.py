"""rtsr.batch: several images through one served model, as a zip of PNGs and a CSV."""

import io
import math
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from rtsr.batch import CSV_COLUMNS, MAX_BATCH_IMAGES, png_name, serve_batch
from rtsr.errors import InputError
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from tests.support.data import ROOT

EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def pool():
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu")
    yield pool
    pool.close()


def _pngs(path):
    with zipfile.ZipFile(path) as archive:
        return {name: np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in archive.namelist()}


def test_simulate_a_batch_measures_each_image_and_keeps_going_past_a_bad_one(pool, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    images = [
        ("rocket.png", EXAMPLES / "rocket.png"),  # 427x640: cropped to 426x640 for x2
        ("notes.png", tmp_path / "notes.png"),
        ("coffee.png", EXAMPLES / "coffee.png"),
    ]
    seen = []
    batch = serve_batch(
        pool, "rtsrn-x2", images, tmp_path, mode="simulate", on_image=lambda i, n, name: seen.append((i, n, name))
    )
    assert seen == [(0, 3, "rocket.png"), (1, 3, "notes.png"), (2, 3, "coffee.png"), (3, 3, "")]
    assert batch.zip_path == tmp_path / "rtsrn-x2_outputs.zip" and batch.failed == 1
    rows = pd.read_csv(batch.csv_path, keep_default_na=False)
    assert list(rows.columns) == list(CSV_COLUMNS)
    assert rows["image"].tolist() == ["rocket.png", "notes.png", "coffee.png"]
    bad = rows.iloc[1]
    assert "notes.png" in bad["error"] and "\n" not in bad["error"] and bad["psnr_rgb"] == ""
    outputs = _pngs(batch.zip_path)
    assert sorted(outputs) == ["coffee_rtsrn-x2.png", "rocket_rtsrn-x2.png"]
    for name, stem in (("rocket.png", "rocket"), ("coffee.png", "coffee")):
        row = rows[rows["image"] == name].iloc[0]
        sr = outputs[f"{stem}_rtsrn-x2.png"]
        gt = np.asarray(Image.open(EXAMPLES / name).convert("RGB"))
        gt = gt[: gt.shape[0] // 2 * 2, : gt.shape[1] // 2 * 2]
        assert sr.shape == gt.shape and row["output_size"] == f"{gt.shape[1]}x{gt.shape[0]}"
        # the CSV's PSNR is the PNG's in the zip against the (cropped) upload, by scikit-image
        assert float(row["psnr_rgb"]) == pytest.approx(peak_signal_noise_ratio(gt, sr, data_range=255), abs=1e-9)
        assert float(row["psnr_gain"]) == pytest.approx(float(row["psnr_rgb"]) - float(row["bicubic_psnr_rgb"]))
        assert float(row["psnr_gain"]) > 0 and float(row["forward_ms"]) > 0
    # nothing else is left in the output folder: no scratch files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png", "rtsrn-x2_metrics.csv", "rtsrn-x2_outputs.zip"]


def test_upscale_a_batch_has_no_metrics_and_names_every_output(pool, tmp_path):
    small = tmp_path / "a b.png"
    Image.open(EXAMPLES / "chelsea.png").convert("RGB").resize((90, 60)).save(small)
    batch = serve_batch(pool, "bicubic-x3", [("a b.png", small), ("a b.png", small)], tmp_path)
    outputs = _pngs(batch.zip_path)
    assert sorted(outputs) == ["a_b_bicubic-x3.png", "a_b_bicubic-x3_2.png"]
    assert all(image.shape == (180, 270, 3) for image in outputs.values())
    assert batch.rows["input_size"].tolist() == ["90x60", "90x60"]
    assert all(math.isnan(v) for v in batch.rows["psnr_rgb"])
    assert batch.failed == 0


def test_a_batch_is_refused_whole_only_for_what_concerns_it_whole(pool, tmp_path):
    with pytest.raises(InputError, match="no images"):
        serve_batch(pool, "rtsrn-x2", [], tmp_path)
    too_many = [("coffee.png", EXAMPLES / "coffee.png")] * (MAX_BATCH_IMAGES + 1)
    with pytest.raises(InputError, match=f"at most {MAX_BATCH_IMAGES}"):
        serve_batch(pool, "rtsrn-x2", too_many, tmp_path)
    with pytest.raises(InputError, match="nope"):
        serve_batch(pool, "nope", [("coffee.png", EXAMPLES / "coffee.png")], tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_png_names_are_safe_and_distinct():
    taken: set[str] = set()
    assert png_name("../../etc/passwd", "rtsrn-x2", taken) == "passwd_rtsrn-x2.png"
    assert png_name("photo (1).JPG", "team/model@abc", taken) == "photo_1_team_model_abc.png"
    assert png_name("...", "m", taken) == "image_m.png"
    assert png_name("passwd.png", "rtsrn-x2", taken) == "passwd_rtsrn-x2_2.png"
