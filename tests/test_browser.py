"""The app in a real browser: Playwright driving Debian's Chromium against ``python app.py``.

Each test saves a screenshot of its tab under ``artifacts/screenshots/`` (``$RTSR_ARTIFACTS``)
for a person to look at. The browser is tests.support.browser's: without Chromium the tests skip, except
under CI.
"""

import re
from pathlib import Path

import pytest

from rtsr.serving import serve
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from tests.support.app import ARTIFACTS
from tests.support.browser import TIMEOUT_MS, VIEWPORTS, attach
from tests.support.data import ROOT

playwright = pytest.importorskip("playwright.sync_api")

SCREENSHOTS = ARTIFACTS / "screenshots"


EXAMPLES = ROOT / "examples"


def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def upload(page, path: Path) -> None:
    page.locator("#upload input[type=file]").set_input_files(str(path))
    playwright.expect(page.locator("#upload img")).to_be_visible()


def pick_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    playwright.expect(page.locator("#model input")).to_have_value(name)


def run(page) -> None:
    """Click Upscale and wait for the whole result (the PNG comes last)."""
    page.locator("#run").click()
    playwright.expect(page.locator("#download a")).to_be_visible(timeout=TIMEOUT_MS)


def expect_cleared(page) -> None:
    """Nothing of an earlier result is left on the page, and no panel says Error."""
    expect = playwright.expect
    expect(page.locator("#slider img")).to_have_count(0)
    expect(page.locator("#slider-caption")).to_be_hidden()
    expect(page.locator("#metrics")).not_to_contain_text("PSNR")
    expect(page.locator("#timing")).not_to_contain_text("Model forward")
    expect(page.locator("#download a")).to_have_count(0)
    expect(page.locator("#lr-preview img")).to_have_count(0)
    expect(page.locator("#detail")).to_be_hidden()
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)


def model_input(page):
    """The model input's image, scrolled into view and loaded: Gradio's images load lazily,
    and one not loaded yet is 0x0 (a click on it lands nowhere)."""
    image = page.locator("#lr-preview img").first
    image.scroll_into_view_if_needed()
    page.wait_for_function("() => { const e = document.querySelector('#lr-preview img'); return e && e.complete"
                           " && e.naturalWidth > 0 && e.getBoundingClientRect().width > 0; }")  # fmt: skip
    return image


def open_tab(page, name: str) -> None:
    """Click a tab, from the "More tabs" menu where a narrow screen has put it."""
    tab = page.get_by_role("tab", name=name)
    if not tab.is_visible():
        page.get_by_role("button", name="More tabs").click()
        tab = page.get_by_role("button", name=name, exact=True)
    tab.click()


def toast(page):
    return page.get_by_test_id("toast-body")


def test_the_first_screen_starts_with_the_image(page, viewport):
    """The upload, its examples and the Upscale button are on the first screen, a phone's
    too; the host's details wait in a closed panel at the column's end."""
    expect = playwright.expect
    height = VIEWPORTS[viewport]["height"]
    for selector in ("#model", "#upload", "#run", "#examples"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, (selector, box, height)
    host = page.locator("#host")
    expect(page.locator("#host-note")).to_be_hidden()
    below = host.bounding_box()
    assert below is not None and below["y"] > height, below  # after the first screen
    expect(host).to_contain_text("About this machine (CPU, no GPU)")
    screenshot(page, f"upscale_first_screen_{viewport}", full_page=False)
    host.get_by_text("About this machine").click()
    expect(page.locator("#host-note")).to_contain_text("This host has no GPU")


def test_upscale_tab_runs_a_model_and_shows_its_metrics(page, viewport):
    expect = playwright.expect
    page.get_by_text("About this machine").click()  # the host's details, in a closed panel
    expect(page.locator("#host-note")).to_contain_text("This host has no GPU")
    expect(page.locator("#host-note")).to_contain_text("Models run in a sandbox: no network, read-only files")
    expect(page.locator("#host-note")).to_contain_text("a submitted model sees every image sent to it")
    upload(page, EXAMPLES / "astronaut.png")
    page.locator("#run").click()
    metrics = page.locator("#metrics")
    expect(metrics).to_contain_text("Gain over bicubic", timeout=TIMEOUT_MS)
    expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/rtsrn-x2_512x512\.png$"))

    # The numbers on the page are the library's on the same request, made here by hand.
    pool = ModelPool(Registry.read(BUNDLED_REGISTRY))
    try:
        expected = serve(pool, "rtsrn-x2", ROOT / "examples" / "astronaut.png", "simulate")
    finally:
        pool.close()  # its sandboxed model process
    text = metrics.inner_text()
    rows = {
        name: [float(v) for v in re.findall(r"\d+\.\d+", line)]
        for line in text.splitlines()
        for name in ("RTSRN x2", "Bicubic")
        if line.strip().startswith(name)
    }
    m, b = expected.metrics, expected.bicubic_metrics
    assert rows["RTSRN x2"] == pytest.approx([m.psnr_rgb, m.ssim_rgb, m.psnr_y, m.ssim_y], abs=1e-3)
    assert rows["Bicubic"] == pytest.approx([b.psnr_rgb, b.ssim_rgb, b.psnr_y, b.ssim_y], abs=1e-3)
    assert rows["RTSRN x2"][0] > rows["Bicubic"][0]
    expect(page.locator("#timing")).to_contain_text("Model forward")
    # the engine that ran, as the pool run here chose it (the same host, the same check)
    expect(page.locator("#timing")).to_contain_text(f"Engine: {expected.engine.label} (")
    assert page.locator("#slider img").count() == 2
    # the one-image score is a small line, not bold, and says what it is worth
    expect(metrics.locator("small")).to_contain_text("Score on this one image at")
    expect(metrics.locator("small")).to_contain_text("It says little")
    expect(metrics.locator("strong", has_text=re.compile("score", re.I))).to_have_count(0)
    # each side of the slider is named, and the PNG is the only download
    caption = page.locator("#slider-caption")
    expect(caption).to_contain_text("◀ left: Bicubic · right: RTSRN x2 ▶ (drag the handle to compare")
    expect(page.locator("#slider label").first).to_have_text(re.compile(r"Left: Bicubic \| Right: RTSRN x2"))
    expect(page.locator("#slider button[aria-label='Download']")).to_have_count(0)
    expect(page.locator("#download")).to_contain_text("Full-resolution PNG")
    page.locator("#slider").scroll_into_view_if_needed()
    screenshot(page, f"upscale_{viewport}")

    # switching the "before" image redraws the slider without running the model again
    before = page.locator("#slider img").first.get_attribute("src")
    page.get_by_label("LR input (pixels as they are)").check()
    expect(page.locator("#slider img").first).not_to_have_attribute("src", before or "")
    expect(caption).to_contain_text("◀ left: LR input (nearest) · right: RTSRN x2 ▶ (drag the handle to compare")
    expect(page.locator("#slider label").first).to_have_text(re.compile(r"Left: LR input \(nearest\) \| Right"))
    page.locator("#slider").scroll_into_view_if_needed()
    screenshot(page, f"upscale_lr_side_{viewport}", full_page=False)


def test_a_click_on_the_model_input_shows_a_detail_at_1_to_1(page, viewport):
    import io

    import numpy as np
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio

    expect = playwright.expect
    upload(page, EXAMPLES / "astronaut.png")  # 512x512: the model input is 256x256, the output 512x512
    run(page)
    lr = model_input(page)
    box = lr.bounding_box()
    lr.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.25})
    note = page.locator("#detail-note")
    expect(note).to_contain_text("Detail at 1:1: output pixels x ")
    # the detail, drawn above the model input, comes into view by itself (a phone's screen
    # holds one or the other)
    page.wait_for_function(
        "() => { const d = document.querySelector('#detail'); const b = d && d.getBoundingClientRect();"
        " return b && b.height > 0 && b.top >= 0 && b.top < window.innerHeight - 100; }"
    )
    left, right, top, bottom = (int(v) for v in re.findall(r"x (\d+)–(\d+), y (\d+)–(\d+)", note.inner_text())[0])
    # 128x128 output pixels around the spot clicked: 3/4 across and 1/4 down the 512x512 output
    assert right - left + 1 == bottom - top + 1 == 128
    assert left <= 0.75 * 512 <= right and top <= 0.25 * 512 <= bottom
    images = page.locator("#detail img")
    expect(images).to_have_count(4)
    alts = [images.nth(i).get_attribute("alt") for i in range(4)]
    assert alts == ["Input (LR), nearest", "Bicubic", "RTSRN x2", "Ground truth"]
    expect(note).to_contain_text("each repeated 2x2, nearest")
    # Gradio's gallery loads its images lazily: in view, and only once fetched, do they have a size
    page.wait_for_function(
        "() => [...document.querySelectorAll('#detail img')].every(e => e.complete && e.naturalWidth)"
    )
    for i in range(4):
        assert images.nth(i).evaluate("e => [e.naturalWidth, e.naturalHeight]") == [128, 128]
    # each caption is whole, a phone's two columns included
    captions = page.locator("#detail .caption-label")
    expect(captions).to_have_count(4)
    for caption in captions.all():
        assert caption.evaluate("e => e.scrollWidth <= e.clientWidth"), caption.inner_text()
    # the ground truth's crop is that square of the file uploaded (through the JPEG preview)
    gt = np.asarray(Image.open(EXAMPLES / "astronaut.png").convert("RGB"))[top : bottom + 1, left : right + 1]
    shown = np.asarray(Image.open(io.BytesIO(page.request.get(images.nth(3).get_attribute("src")).body())))
    assert peak_signal_noise_ratio(gt, shown[..., :3]) > 35
    # the input's crop: its pixels in 2x2 blocks of one colour each
    crop = np.asarray(Image.open(io.BytesIO(page.request.get(images.nth(0).get_attribute("src")).body())))
    blocks = crop[..., :3].reshape(64, 2, 64, 2, 3).astype(int)
    assert (blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))).max() == 0
    screenshot(page, f"upscale_detail_{viewport}", full_page=False)
    # a new upload: the detail was of the old result
    upload(page, EXAMPLES / "coffee.png")
    expect(page.locator("#detail")).to_be_hidden()
    expect(note).to_be_hidden()


def test_a_new_input_clears_the_old_result_and_no_image_is_a_hint(page, viewport):
    expect = playwright.expect
    # Upscale with no image: a warning that says what to do, and no panel in an error state
    page.locator("#run").click()
    expect(toast(page)).to_contain_text("Choose an image first")
    page.wait_for_timeout(1000)  # the toast slides in
    screenshot(page, f"upscale_no_image_{viewport}", full_page=False)
    expect(page.get_by_text("Error", exact=True)).to_have_count(0)
    expect(page.locator("#slider img")).to_have_count(0)
    page.get_by_test_id("toast-close").first.click()

    pick_model(page, "Track 1 (x2) · Bicubic x2")  # the quickest model: the result is not the point
    upload(page, EXAMPLES / "astronaut.png")
    run(page)
    expect(page.locator("#metrics")).to_contain_text("PSNR")
    # a new model: the result was another model's
    pick_model(page, "Track 1 (x2) · RTSRN x2")
    expect_cleared(page)
    pick_model(page, "Track 1 (x2) · Bicubic x2")
    run(page)
    # another mode: the image is now the input, not the ground truth
    page.get_by_label("Upscale this image").check()
    expect_cleared(page)
    run(page)
    expect(page.locator("#timing")).to_contain_text("input 512x512 → 1024x1024")
    # a new upload
    upload(page, EXAMPLES / "coffee.png")
    expect_cleared(page)
    run(page)
    expect(page.locator("#timing")).to_contain_text("input 600x400 → 1200x800")
    # the upload cleared
    page.locator("#upload button[aria-label='Remove Image']").click()
    expect(page.locator("#upload img")).to_have_count(0)
    expect_cleared(page)
    screenshot(page, f"upscale_cleared_{viewport}")


def test_an_oversized_upload_is_flagged_on_upload_and_can_be_downscaled_to_fit(page, viewport, tmp_path):
    from PIL import Image

    from tests.support.data import photo

    expect = playwright.expect
    big = Image.fromarray(photo("astronaut")).resize((2000, 1100), Image.Resampling.LANCZOS)
    big.save(tmp_path / "big.png")
    pick_model(page, "Track 1 (x2) · Bicubic x2")
    page.get_by_label("Upscale this image").check()
    upload(page, tmp_path / "big.png")
    # said at once, before any click: the limit, and the way forward
    note, fit = page.locator("#upload-note"), page.locator("#fit")
    expect(note).to_contain_text("image is 2000x1100 (2.20 MP); this host upscales inputs of at most 2.07 MP")
    # sqrt(1920 * 1080 / (2000 * 1100)) = 0.97085: 1941.7 x 1067.9, sides rounded down
    expect(note).to_contain_text("resizes it to 1941x1067")
    expect(fit).to_be_visible()
    expect(fit.locator("input")).to_be_checked()
    expect(fit).to_contain_text("Downscale to fit (1941x1067)")
    screenshot(page, f"upscale_oversized_{viewport}")
    # as a ground truth it fits: its x2 downscale, the model's input, is 1000x550
    page.get_by_label("Simulate the challenge (upload = ground truth)").check()
    expect(note).to_be_hidden()
    expect(fit).to_be_hidden()
    page.get_by_label("Upscale this image").check()
    expect(note).to_be_visible()
    # unticked, the request is refused in one line, as before
    fit.locator("input").uncheck()
    page.locator("#run").click()
    expect(toast(page)).to_contain_text("this host upscales inputs of at most 2.07 MP")
    expect(toast(page)).to_have_class(re.compile(r"\bwarning\b"))  # a refusal, not a failure
    expect_cleared(page)  # and no panel marked Error
    page.get_by_test_id("toast-close").first.click()
    # ticked, the model gets the downscaled image, and the result says so
    fit.locator("input").check()
    run(page)
    expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/bicubic-x2_3882x2134\.png$"))
    expect(page.locator("#timing")).to_contain_text("input 1941x1067 → 3882x2134")
    expect(page.locator("#metrics")).to_contain_text(
        "Downscaled to fit: the 2000x1100 upload was resized to 1941x1067 (Lanczos) first."
    )
    page.locator("#metrics").scroll_into_view_if_needed()
    screenshot(page, f"upscale_downscaled_{viewport}", full_page=False)


def test_labels_follow_the_mode_and_simulate_says_when_it_crops(page, viewport):
    expect = playwright.expect
    label = page.locator("#upload label").first
    expect(label).to_contain_text("Ground truth (simulate mode)")
    page.get_by_label("Upscale this image").check()
    expect(label).to_contain_text("Input image (upscale mode)")
    expect(label).not_to_contain_text("Ground truth")
    page.get_by_label("Simulate the challenge (upload = ground truth)").check()
    expect(label).to_contain_text("Ground truth (simulate mode)")

    pick_model(page, "Track 2 (x3) · RTSRN x3")
    page.get_by_role("button", name="rocket.png").or_(page.locator("img[src*='rocket']")).first.click()
    expect(page.locator("#upload img")).to_be_visible()
    # rocket.png is 640x427: cropped to 639x426 for x3, said on upload and with the result
    expect(page.locator("#upload-note")).to_contain_text("crops this 640x427 image to 639x426")
    run(page)
    expect(page.locator("#download a")).to_have_attribute("href", re.compile(r"/rtsrn-x3_639x426\.png$"))
    expect(page.locator("#metrics")).to_contain_text("RTSRN x3")
    expect(page.locator("#metrics")).to_contain_text("Cropped: simulate mode cut the 640x427 image to 639x426")
    expect(page.locator("#timing")).to_contain_text("input 213x142 → 639x426")
    screenshot(page, f"upscale_x3_example_{viewport}")


def test_model_b_says_there_is_no_other_model_of_the_track_yet(page, viewport):
    """The bundled models alone: one learned model and bicubic per track. Model B offers no
    bicubic (the table has its row already), so it offers nothing, and says so."""
    expect = playwright.expect
    model_b = page.locator("#model-b")
    expect(model_b).to_contain_text("No other Track 1 model yet: the models the queue evaluates will appear here.")
    expect(model_b.locator("input")).to_be_disabled()
    expect(model_b.locator("input")).to_have_value("None: compare with bicubic or the input")
    pick_model(page, "Track 2 (x3) · RTSRN x3")
    expect(model_b).to_contain_text("No other Track 2 model yet")
    expect(page.locator("#compare")).to_be_visible()  # the slider compares with bicubic or the input


def test_examples_and_images_have_names_and_the_jargon_is_explained(page, viewport):
    expect = playwright.expect
    page.get_by_text("About this machine").click()  # the host's details, in a closed panel
    # each example button says which photo it loads (sizes as the files hold them)
    for name, size in [("astronaut", "512x512"), ("chelsea", "451x300"), ("coffee", "600x400"), ("rocket", "640x427")]:
        button = page.get_by_role("button", name=f"Example: {name}.png ({size})", exact=True)
        expect(button).to_be_visible()
    expect(page.locator("#examples img[alt='']")).to_have_count(0)
    # the terms of this tab, said where they appear
    expect(page.locator("#host-note")).to_contain_text("FP32, FP16 and BF16 are 32-bit, 16-bit and bfloat16")
    expect(page.locator("#mode")).to_contain_text("the low-resolution (LR) input")
    expect(page.locator("#compare")).to_contain_text("LR input: the low-resolution image the model received")
    page.get_by_role("button", name="Example: coffee.png (600x400)").click()
    expect(page.locator("#upload img")).to_have_attribute("alt", "The uploaded image")
    pick_model(page, "Track 1 (x2) · Bicubic x2")
    run(page)
    metrics = page.locator("#metrics")
    expect(metrics).to_contain_text("PSNR: peak signal-to-noise ratio against the ground truth, in dB")
    expect(metrics).to_contain_text("SSIM: structural similarity, 0 to 1")
    expect(metrics).to_contain_text("Y: the luma (brightness) channel alone")
    # bicubic is not above bicubic: the rule the About tab states gives 0
    expect(metrics.locator("small")).to_contain_text(": 0.00 (0: not above bicubic)")
    expect(page.locator("#lr-preview img")).to_have_attribute("alt", "The low-resolution image the model received")
    screenshot(page, f"upscale_accessible_{viewport}")

    # the slider's handle is a keyboard control: reached by Tab, moved by the arrow keys
    handle = page.locator("#slider [role=slider]")
    expect(handle).to_have_attribute("tabindex", "0")
    expect(handle).to_have_attribute("aria-valuenow", "50")
    handle.focus()
    for _ in range(3):
        handle.press("ArrowLeft")  # 5% of the width each
    expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^3[4-6]$"))
    after = page.locator("#slider img").nth(1)
    expect(after).to_have_attribute("style", re.compile(r"clip-path: inset\(0px 0px 0px 3[4-6][.\d]*%\)"))
    handle.press("End")
    expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^(99|100)$"))
    handle.press("Home")
    expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^[01]$"))


def test_about_tab_gives_the_formula_and_the_commands(page, viewport):
    open_tab(page, "About")
    expect = playwright.expect
    formula = page.get_by_text("2 · 2^(PSNR − PSNR_bicubic) / (0.1 · √runtime_ms)")
    expect(formula).to_be_visible()
    # one rule, as rtsr.scoring applies it: the formula above bicubic, 0 otherwise
    expect(formula).to_contain_text("if PSNR > PSNR_bicubic")
    expect(formula).to_contain_text(re.compile(r"else:\s+score = 0"))
    expect(page.get_by_text("starts at 20 / √runtime_ms")).to_be_visible()
    for command in (
        "python -m rtsr pack my_team",
        "python -m rtsr validate my_team",
        "python -m rtsr submit my-team/espcn-x2",
    ):
        expect(page.get_by_text(command).first).to_be_visible()
    screenshot(page, f"about_{viewport}")


def test_check_my_zip_speaks_plainly_and_forgets_an_old_file(page, viewport, tmp_path):
    """Check my zip: a file that is no zip, said once by name; a zip with one failing check,
    said as a person would; clearing the file (the way to give another) takes its report."""
    import zipfile

    expect = playwright.expect
    open_tab(page, "Submit")
    page.get_by_text("Check my zip").click()
    report = page.locator("#check-report")
    random = tmp_path / "random.zip"
    random.write_bytes(b"these bytes are no zip\n" * 10)
    attach(page, "check-zip", random)
    page.locator("#check-button").click()
    expect(report).to_have_text("random.zip cannot be checked: not a valid zip file", timeout=TIMEOUT_MS)

    # the bundled RTSRN with its srmodel() renamed: one check fails
    renamed = tmp_path / "submission_renamed.zip"
    with zipfile.ZipFile(renamed, "w") as z:
        for path in (ROOT / "submissions" / "rtsrn_x2").iterdir():
            data = path.read_bytes()
            if path.name == "arch.py":
                data = data.replace(b"def srmodel(", b"def build_model(")
            z.writestr(path.name, data)
    # replacing the file: clear it (the report of the old one goes with it), upload the new one
    page.locator("#check-zip button[aria-label='Clear']").click()
    expect(report).to_have_text("")
    attach(page, "check-zip", renamed)
    page.locator("#check-button").click()
    expect(report).to_contain_text(
        "submission_renamed.zip: the srmodel() check failed: fix it and check again.", timeout=TIMEOUT_MS
    )
    expect(report.locator("tr", has_text="FAIL")).to_have_count(1)
    # the status and the check's name stay whole words, a phone's width too
    one_line = (
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size === 1; }"
    )
    for cell in report.locator("td:nth-child(-n+2)").all():
        assert cell.evaluate(one_line), cell.inner_text()
    report.scroll_into_view_if_needed()
    screenshot(page, f"submit_check_zip_{viewport}", full_page=False)
    page.locator("#check-zip button[aria-label='Clear']").click()
    expect(report).to_have_text("")
