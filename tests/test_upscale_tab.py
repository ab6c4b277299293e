"""The Upscale tab's handlers, called as functions on the bundled models in their sandboxed
process: no server, no browser (test_browser.py drives the same handlers through the page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from space.upscale_tab import (
    BEFORE_NAMES,
    Kept,
    UpscaleContext,
    UpscaleRequest,
    check_upload,
    detail_view,
    left_side,
    page_model_b,
    run_request,
)
from tests.support.data import photo


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu")
    root = tmp_path_factory.mktemp("upscale-tab")
    (root / "work").mkdir()
    (root / "inline").mkdir()
    # 200x160 pixels at most reach the model, so that a small photo is "too large"
    yield UpscaleContext(pool, root / "work", root / "inline", max_pixels=200 * 160)
    pool.close()


def _png(folder: Path, name: str, image: np.ndarray) -> str:
    path = folder / name
    Image.fromarray(image).save(path)
    return str(path)


def test_an_upload_is_checked_from_its_header(ctx, tmp_path):
    fits = _png(tmp_path, "fits.png", photo("rocket")[:100, :120])
    assert check_upload(ctx, "rtsrn-x2", "simulate", fits).note is None
    assert check_upload(ctx, "rtsrn-x2", "simulate", None).note is None

    odd = _png(tmp_path, "odd.png", photo("rocket")[:101, :121])
    check = check_upload(ctx, "rtsrn-x2", "simulate", odd)
    assert check.note is not None and "crops this 121x101 image to 120x100" in check.note and check.fit_label is None

    large = _png(tmp_path, "large.png", photo("astronaut"))  # 512x512: above 200x160 pixels
    check = check_upload(ctx, "rtsrn-x2", "upscale", large)
    assert check.note is not None and check.note.startswith("⚠️ ") and "**Downscale to fit** (ticked)" in check.note
    assert check.fit_label is not None and check.fit_label.startswith("Downscale to fit (")

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    check = check_upload(ctx, "rtsrn-x2", "simulate", str(text))
    assert check.note is not None and "notes.png" in check.note and check.fit_label is None


def test_a_request_answers_twice_then_the_detail_and_model_b_read_from_what_it_kept(ctx, tmp_path):
    upload = _png(tmp_path, "rocket.png", photo("rocket")[:100, :120])
    seen: list[str] = []
    request = UpscaleRequest("rtsrn-x2", "simulate", 90, upload, model_b="bicubic-x2")
    first, last = list(run_request(ctx, request, lambda *_, desc="": seen.append(desc)))
    assert first.png is None and last.png is not None and Path(last.png).name == "rtsrn-x2_120x100.png"
    assert "running the model" in seen and any(d.startswith("running model B") for d in seen)
    assert "RTSRN x2" in first.metrics and "(model B)" in first.metrics and "Bicubic" in first.metrics
    assert "Model forward" in first.timing and first.details["model_b"]["model"]["id"] == "bicubic-x2"
    kept = last.kept
    assert (kept.name, kept.scale, kept.other_name) == ("RTSRN x2", 2, "Bicubic x2")
    assert left_side(kept, "lr") == "Bicubic x2 (model B)"  # model B takes the slider's left side
    assert left_side(Kept(kept.previews, kept.name, 2), "lr") == BEFORE_NAMES["lr"]
    # the files a request wrote are gone once it answered (Gradio has copied them)
    assert not Path(last.png).exists() and not any(ctx.workdir.iterdir())

    view = detail_view(kept, [30, 20], tmp_path)
    assert view is not None
    items, note = view
    assert [caption for _, caption in items] == [
        "Input (LR), nearest", "Bicubic", "RTSRN x2", "Bicubic x2 (model B)", "Ground truth",
    ]  # fmt: skip
    assert all(Image.open(path).size == Image.open(items[0][0]).size for path, _ in items)
    assert note.startswith("**Detail at 1:1**")
    assert detail_view(kept, "no pixel", tmp_path) is None


def test_model_b_runs_only_where_it_compares():
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY), "cpu")
    try:
        assert page_model_b(pool, "rtsrn-x2", "bicubic-x2") == "bicubic-x2"
        assert page_model_b(pool, "rtsrn-x2", "rtsrn-x2") == ""  # itself
        assert page_model_b(pool, "rtsrn-x2", "rtsrn-x3") == ""  # another scale, left from before
        assert page_model_b(pool, "rtsrn-x2", "") == ""
    finally:
        pool.close()


def test_no_upload_is_refused_in_one_line(ctx):
    import gradio as gr

    with pytest.raises(gr.Error, match="Upload an image or pick an example first"):
        next(run_request(ctx, UpscaleRequest("rtsrn-x2", "simulate", 90, None), lambda *_, **__: None))
