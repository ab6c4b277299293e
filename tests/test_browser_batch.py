"""Several images at once, in a real browser at 1440 and 390 px: uploads in, a zip of PNGs and a
CSV of per-image metrics out (downloaded through the page's links and opened here)."""

import io
import re
import zipfile

import pandas as pd
import pytest
from PIL import Image

from tests.support.browser import TIMEOUT_MS, attach
from tests.support.data import ROOT
from tests.test_browser import screenshot

playwright = pytest.importorskip("playwright.sync_api")


def test_several_images_give_a_zip_and_a_csv(page, viewport, tmp_path):
    expect = playwright.expect
    (tmp_path / "notes.png").write_text("not an image")
    page.locator("#batch").get_by_text("Several images at once").click()
    files = [ROOT / "examples" / "coffee.png", tmp_path / "notes.png", ROOT / "examples" / "rocket.png"]
    attach(page, "batch-files", *files)
    page.locator("#batch-run").click()
    summary = page.locator("#batch-summary")
    expect(summary).to_contain_text("2 of 3 images upscaled", timeout=TIMEOUT_MS)
    expect(summary).to_contain_text("notes.png")
    expect(summary).to_contain_text("Mean gain over bicubic")  # simulate mode, the default
    link = page.locator("#batch-zip a").first
    expect(link).to_have_attribute("href", re.compile(r"/rtsrn-x2_outputs\.zip$"))
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(link.get_attribute("href")).body()))
    assert sorted(archive.namelist()) == ["coffee_rtsrn-x2.png", "rocket_rtsrn-x2.png"]
    coffee = Image.open(io.BytesIO(archive.read("coffee_rtsrn-x2.png")))
    assert coffee.size == Image.open(files[0]).size  # simulate: the output is the upload's size (even sides)
    csv = page.locator("#batch-csv a").first.get_attribute("href")
    rows = pd.read_csv(io.BytesIO(page.request.get(csv).body()), keep_default_na=False)
    assert rows["image"].tolist() == ["coffee.png", "notes.png", "rocket.png"]
    assert rows.loc[1, "error"] != "" and rows.loc[0, "error"] == ""
    # its table keeps whole headers on a phone (it scrolls sideways instead)
    header = summary.locator("th", has_text="PSNR RGB").first.bounding_box()
    assert header is not None and header["height"] < header["width"], header
    summary.scroll_into_view_if_needed()
    screenshot(page, f"upscale_batch_{viewport}")
    # new files: the last batch's results go
    attach(page, "batch-files", files[0])
    expect(summary).to_have_text("")
