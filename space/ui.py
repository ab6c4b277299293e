"""The Gradio app: components wired to the rtsr library, and nothing else.

Four tabs: Upscale (rtsr.serving), Leaderboard (rtsr.leaderboard), Submit (space.submit,
the request store) and About (space.about); the page refreshes what the store changes.
Errors a user can act on (rtsr's own exceptions) become a ``gr.Error`` with their one-line
message; anything else is logged with its traceback and shown
as a one-line internal error, and the server stays up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import gradio as gr
import torch

from rtsr.batch import serve_batch
from rtsr.constants import JPEG_QUALITY, TRACK_SCALES
from rtsr.engines import fidelity_text, substitution_reason
from rtsr.errors import InputError, RTSRError, first_line
from rtsr.images import image_size
from rtsr.leaderboard.sources import REFERENCE_IDS
from rtsr.serving import (
    STAGES,
    Mode,
    ModelPool,
    Previews,
    UpscaleResult,
    check_input_size,
    default_max_input_pixels,
    default_one_pass_pixels,
    default_tile,
    encode_png,
    fit_size,
    megapixels,
    serve,
)
from rtsr.submissions.requests import Store
from rtsr.submissions.sandbox import isolation_note
from rtsr.submissions.submission import MAX_UNZIPPED_BYTES
from space.about import ABOUT, INTRO, SUBMIT_INTRO, TITLE
from space.about import CSS as ABOUT_CSS
from space.batch import CSS as BATCH_CSS
from space.batch import build_batch_section
from space.doors import safe_name, save_data_url
from space.leaderboard_tab import CSS as LEADERBOARD_CSS
from space.leaderboard_tab import Board, LeaderboardView, build_leaderboard_tab, track_label
from space.settings import Settings
from space.submit import CSS as SUBMIT_CSS
from space.submit import build_submit_tab, plain, queue_version

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
MODE_CHOICES = [("Simulate the challenge (upload = ground truth)", "simulate"), ("Upscale this image", "upscale")]
COMPARE_CHOICES = [("Bicubic", "bicubic"), ("LR input (pixels as they are)", "lr")]
_STAGE_LABELS = {
    "decode": "reading the image",
    "degrade": "degrading as the challenge",
    "model": "running the model",
    "bicubic": "bicubic reference",
    "metrics": "measuring",
}

#: The Upscale tab's styles: the slider's caption centred under it, the one-image score small;
#: on a phone, a smaller title and upload box, so that the image, its examples and the button
#: fill the first screen.
UPSCALE_CSS = """
@media (max-width: 640px) {
  .prose h1 { font-size: 1.45rem; margin-bottom: 0.3rem; }
  #upload { height: 230px !important; }
  #examples .gallery { flex-wrap: nowrap; gap: 6px; }
  #examples .gallery-item .container.gallery { width: 72px; height: 72px; }
}
#slider-caption { text-align: center; }
#metrics small, #upload-note small { opacity: 0.85; }
#metrics table { font-size: var(--text-sm); }
#metrics td { white-space: nowrap; padding: 4px 6px; }
#metrics th { padding: 4px 6px; word-break: normal; overflow-wrap: normal; }
/* a model's name may be long (a queued entry names its team and request): it wraps, the
   numbers do not, and the table keeps to a phone's width */
#metrics td:first-child { white-space: normal; min-width: 7em; }
/* a label naming two models wraps clear of the image's buttons (top right) */
#slider [data-testid="block-label"], #lr-preview [data-testid="block-label"] {
  max-width: calc(100% - 90px); white-space: normal; height: auto;
}
#detail .caption-label { white-space: normal; overflow-wrap: anywhere; max-width: calc(100% - 8px); }
#detail img { image-rendering: pixelated; }
#slider [data-testid="slider"]:focus-visible { outline: 3px solid var(--color-accent); outline-offset: 2px; }
#detail .grid-wrap { height: auto !important; min-height: 0 !important; max-height: none !important; }
@media (max-width: 700px) { #detail .grid-container { --grid-cols: 2 !important; } }
"""

#: The before/after slider's handle as a keyboard control: focusable (Tab), announced as a
#: slider with its position, moved by the arrow keys (5% of the width; with Shift, 1%) and
#: Home/End. Gradio's handle is dragged with d3-drag, which listens for a mousedown on the
#: handle and mousemoves on the window: a key press plays that drag, so the component keeps
#: its own state (the split, the clip of the "after" image) as it would under a mouse.
_SLIDER_KEYS_JS = """
const position = (handle) => {
  const after = document.querySelectorAll('#slider img')[1];
  const found = after && /inset\\([^)]*?([\\d.]+)%\\)/.exec(after.style.clipPath || '');
  return found ? Math.round(parseFloat(found[1])) : 50;
};
const attach = () => {
  const handle = document.querySelector('#slider [data-testid="slider"]');
  if (!handle || handle.dataset.keys) return;
  handle.dataset.keys = 'on';
  handle.tabIndex = 0;
  handle.setAttribute('role', 'slider');
  handle.setAttribute('aria-label', 'Before/after divider: left and right arrow keys move it');
  handle.setAttribute('aria-valuemin', '0');
  handle.setAttribute('aria-valuemax', '100');
  handle.setAttribute('aria-valuenow', String(position(handle)));
  handle.addEventListener('keydown', (event) => {
    if (!['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(event.key)) return;
    event.preventDefault();
    const area = handle.parentElement.getBoundingClientRect();
    const box = handle.getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    const step = area.width * (event.shiftKey ? 0.01 : 0.05);
    const to = event.key === 'Home' ? area.left : event.key === 'End' ? area.right
      : x + (event.key === 'ArrowRight' ? step : -step);
    const mouse = (cx) => ({
      bubbles: true, cancelable: true, clientX: cx, clientY: y, view: window, button: 0, buttons: 1,
    });
    handle.dispatchEvent(new MouseEvent('mousedown', mouse(x)));
    window.dispatchEvent(new MouseEvent('mousemove', mouse(to)));
    window.dispatchEvent(new MouseEvent('mouseup', mouse(to)));
    requestAnimationFrame(() => handle.setAttribute('aria-valuenow', String(position(handle))));
  });
};
attach();
new MutationObserver(attach).observe(document.body, {childList: true, subtree: true});
"""

#: After a click on the model input: the 1:1 detail, drawn above it in the page, brought into
#: view where it is not (on a phone it lands a screen above the finger that asked for it).
#: Gradio applies the outputs after the event ends; the script waits for the detail to show.
_DETAIL_INTO_VIEW_JS = """
() => {
  const started = performance.now();
  const look = () => {
    const note = document.querySelector('#detail-note');
    const detail = document.querySelector('#detail');
    const shown = detail && detail.offsetParent !== null && detail.querySelector('img');
    if (!shown) {
      if (performance.now() - started < 5000) setTimeout(look, 50);
      return;
    }
    const box = detail.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight - 120) (note || detail).scrollIntoView({block: 'start'});
  };
  look();
}
"""

#: The page's styles, each part from the module that builds what it styles (``launch(css=...)``).
PAGE_CSS = ABOUT_CSS + LEADERBOARD_CSS + SUBMIT_CSS + UPSCALE_CSS + BATCH_CSS

F = TypeVar("F", bound=Callable[..., Any])
Before = Literal["bicubic", "lr"]


def on_gpu(fn: F) -> F:
    """Run ``fn`` under ZeroGPU's decorator where the ``spaces`` package is present (on a
    ZeroGPU Space a GPU is attached only inside it); elsewhere ``fn`` as it is."""
    try:
        import spaces
    except ImportError:
        return fn
    return cast(F, spaces.GPU(duration=60)(fn))


def image_upload(inline_dir: Path, max_bytes: int, max_age_s: int, **kwargs: Any) -> gr.Image:
    """A ``gr.Image(type="filepath")`` whose handler receives the uploaded file's path
    undecoded.

    ``gr.Image`` opens every upload with Pillow before the handler runs, so a file that is not
    an image fails there with a many-line message, and a huge one is parsed before any size
    check; rtsr reads the header first and says what is wrong in one line. An image sent
    inline as a ``data:`` URL (which Gradio would decode whole) is written undecoded to a file
    of its own under ``inline_dir``, at most ``max_bytes``; the handler deletes it when done.
    The override is on the instance: a subclass would make Gradio write a ``.pyi`` stub
    beside this file.
    """
    component = gr.Image(type="filepath", **kwargs)

    def preprocess(payload: Any) -> Any:
        if payload is None:
            return None
        if (payload.url or "").startswith("data:"):
            try:
                return str(save_data_url(payload.url, inline_dir, payload.orig_name, max_bytes))
            except InputError as e:
                raise _refusal(first_line(e)) from None
        if not payload.path:
            raise _refusal("the request names no image: upload a file")
        path = Path(payload.path)
        if not path.is_file():
            # swept for its age, or to make room for newer uploads (space.doors.TempStore)
            kept = f"{max_age_s // 60} min" if max_age_s >= 120 else f"{max_age_s} s"
            raise _refusal(
                f"{safe_name(payload.orig_name or path.name)} is no longer on the server (uploads are kept"
                f" {kept} at most, less when space runs short): upload it again"
            )
        return str(path)

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def host_note(pool: ModelPool, max_input_pixels: int) -> str:
    """What the user should know about this host before uploading."""
    one_pass = default_one_pass_pixels(pool.device)
    limit = (
        f"Inputs up to {megapixels(max_input_pixels)} reach the model (larger ones can be downscaled to fit);"
        f" above {megapixels(one_pass)} they run in tiles of {default_tile(pool.device)} px"
    )
    unisolated = isolation_note()
    # each model's process serves every user of that model, and runs its submitter's code
    shared = (
        " One process runs each model for everyone who picks it: a submitted model sees every image sent to it"
        " and could keep one to answer another user with. Upload nothing private."
    )
    sandbox = (
        f"\n\n⚠️ Models run with resource limits but {unisolated}.{shared}"
        if unisolated
        else f"\n\nModels run in a sandbox: no network, read-only files, bounded memory and processes.{shared}"
    )
    engines = (
        "Each model runs in the fastest engine whose output stays within 45 dB PSNR of its FP32 output"
        " (checked once per model; each result names its engine)"
    )
    # the precisions named here and in each result, said once in words
    precisions = "FP32, FP16 and BF16 are 32-bit, 16-bit and bfloat16 floating-point arithmetic."
    if pool.device.type == "cuda":
        return f"Running on **{pool.device_name}**. {engines}. {limit}. {precisions}{sandbox}"
    return (
        f"⚠️ **This host has no GPU**: models run on the CPU ({pool.device_name}), so runtimes are far from the"
        f" challenge's FP16 GPU figures. {engines}. {limit} (a 1080p frame is 2.07 MP). {precisions}{sandbox}"
    )


def engine_markdown(result: UpscaleResult) -> str:
    """Which engine ran and how faithful it is, and whether the input was tiled."""
    choice = result.engine
    fidelity = fidelity_text(choice.fidelity_db)
    line = f"Engine: **{choice.label}** ({fidelity})"
    if choice.asked is not None:
        line += f" · {choice.asked.label} asked: {plain(substitution_reason(choice.asked, choice.spec))}"
    if choice.passed_over:
        # the reasons quote the model's own errors: shown as text, never as markup
        line += " · faster engines passed over: " + "; ".join(plain(p) for p in choice.passed_over)
    if result.tiles > 1:
        exact = (
            "each with the model's receptive field around it, so it equals one pass"
            if result.tiles_exact
            else "but this model looks at the whole image, so the result only approximates one pass"
        )
        line += f"\n\nTiled: the input ran in **{result.tiles} tiles**, {exact}"
    return line


def metrics_markdown(result: UpscaleResult, other: UpscaleResult | None = None) -> str:
    """What was done to the upload (downscaled to fit, cropped to the scale), then the metrics
    table of a request (with ``other``, a second model on the same input, in a row of its
    own), or a note that there is no ground truth."""
    notes = []
    if result.downscaled_from is not None and result.upload_size is not None:
        (h0, w0), (h, w) = result.downscaled_from, result.upload_size
        notes.append(f"Downscaled to fit: the {w0}x{h0} upload was resized to **{w}x{h}** (Lanczos) first.")
    if result.cropped and result.gt is not None and result.upload_size is not None:
        (h0, w0), (h, w) = result.upload_size, result.gt.shape[:2]
        scale = result.model.scale
        notes.append(
            f"Cropped: simulate mode cut the {w0}x{h0} image to **{w}x{h}** (sides divisible by {scale} for x{scale})"
            " before degrading it; the metrics are on that crop."
        )
    head = "".join(f"ℹ️ {n}\n\n" for n in notes)
    if result.metrics is None or result.bicubic_metrics is None:
        return head + "*No ground truth: choose **Simulate the challenge**, or add a ground truth, to measure.*"
    # model names come from submissions: shown as text, never as markup
    name_a = plain(result.model.name)
    name_b = plain(other.model.name) if other is not None else ""
    rows = [("**" + name_a + "**", result.metrics)]
    if other is not None and other.metrics is not None:
        rows.append((name_b + " (model B)", other.metrics))
    rows.append(("Bicubic", result.bicubic_metrics))
    lines = [head + "| | PSNR RGB (dB) | SSIM RGB | PSNR Y (dB) | SSIM Y |", "|---|---:|---:|---:|---:|"]
    for name, m in rows:
        lines.append(f"| {name} | {m.psnr_rgb:.3f} | {m.ssim_rgb:.4f} | {m.psnr_y:.3f} | {m.ssim_y:.4f} |")
    gain, score = result.psnr_gain, result.score
    assert gain is not None and score is not None  # both exist whenever metrics do
    lines.append("")
    lines.append(f"**Gain over bicubic: {gain:+.3f} dB**")
    if other is not None and other.psnr_gain is not None and other.metrics is not None:
        ahead = result.metrics.psnr_rgb - other.metrics.psnr_rgb
        lines.append(
            f"\n{name_b} (model B): {other.psnr_gain:+.3f} dB over bicubic;"
            f" {name_a} − {name_b}: **{ahead:+.3f} dB** PSNR RGB"
        )
    lines.append("")
    lines.append(
        "PSNR: peak signal-to-noise ratio against the ground truth, in dB (higher is better); SSIM: structural"
        " similarity, 0 to 1 (1 is identical); Y: the luma (brightness) channel alone, BT.601, as the"
        " super-resolution papers report it; RGB: all three colour channels."
    )
    lines.append("")
    rule = " (0: not above bicubic)" if score == 0 else ""
    scores = f"{score:.2f}{rule}"
    if other is not None and other.score is not None:
        other_rule = " (0: not above bicubic)" if other.score == 0 else ""
        scores += f"; {name_b} at {other.forward_ms:.1f} ms: {other.score:.2f}{other_rule}"
    lines.append(
        f"<small>Score on this one image at {result.forward_ms:.1f} ms: {scores}. It says little: the"
        f" official score is over a test set, FP16 on an RTX 3090 at 4K (this ran on"
        f" {result.device_type.upper()}, {result.engine.label}).</small>"
    )
    return "\n".join(lines)


def timing_markdown(result: UpscaleResult, request_ms: float, other: UpscaleResult | None = None) -> str:
    """The request's timings: the model's forward, the server time and the split by stage; with
    ``other`` (a second model on the same input), its forward and engine too."""
    timer = "CUDA events" if result.device_type == "cuda" else "wall clock"
    split = " · ".join(f"{stage} {result.timings_ms[stage]:.0f}" for stage in STAGES if stage in result.timings_ms)
    h, w = result.lr.shape[:2]
    text = (
        f"**Model forward: {result.forward_ms:.1f} ms** ({timer}) · **request: {request_ms:.0f} ms** server time\n\n"
        f"{result.device} · input {w}x{h} → {w * result.model.scale}x{h * result.model.scale}\n\n"
        f"{engine_markdown(result)}\n\nms by stage: {split}"
    )
    if other is not None:
        text += (
            f"\n\nModel B, {plain(other.model.name)}: forward **{other.forward_ms:.1f} ms** ({timer}) ·"
            f" {engine_markdown(other)}"
        )
    return text


def _refusal(message: str) -> gr.Error:
    """A message for the user that stays until dismissed; not logged as a server fault."""
    return gr.Error(message, duration=None, print_exception=False)


def _user_error(error: BaseException) -> gr.Error:
    """The ``gr.Error`` to show for an exception raised while serving."""
    if isinstance(error, RTSRError):
        return _refusal(first_line(error))
    if isinstance(error, torch.OutOfMemoryError):
        return _refusal("out of memory on this device: try a smaller image")
    logger.exception("request failed")
    # the message alone: first_line() falls back to the class name, which says nothing to a user
    text = str(error).strip()
    detail = f" ({first_line(error)})" if text else ""
    return gr.Error(f"internal error{detail}; the request was not completed", duration=None)


def model_choices(pool: ModelPool) -> list[tuple[str, str]]:
    """The Model dropdown's choices: one list grouped by track (Track 1 first), so that both
    tracks' ids are valid values of one component."""
    return [(f"Track {t} (x{s}) · {d.name}", d.id) for t, s in TRACK_SCALES.items() for d in pool.descriptors(s)]


#: Model B's choice for none.
NO_MODEL_B = ("None: compare with bicubic or the input", "")


def model_b_choices(pool: ModelPool, model_id: str) -> list[tuple[str, str]]:
    """Model B's choices: none, or another model of model A's scale. Not the bicubic
    reference: the metrics table has its row already, and the slider its image."""
    scale = pool.descriptor(model_id).scale
    same = [(d.name, d.id) for d in pool.descriptors(scale) if d.id != model_id and d.id not in REFERENCE_IDS]
    return [NO_MODEL_B, *same]


def model_b_state(pool: ModelPool, model_id: str, chosen: str) -> dict[str, Any]:
    """Model B's dropdown for model A ``model_id`` (its choices, value, whether it opens and
    its note), keeping ``chosen`` where it is still a choice. Where there is no other model
    of the track (the bundled models alone), it says so and cannot be opened, rather than
    offering a comparison that adds nothing."""
    choices = model_b_choices(pool, model_id)
    if len(choices) == 1:
        track = next(t for t, s in TRACK_SCALES.items() if s == pool.descriptor(model_id).scale)
        info = f"No other Track {track} model yet: the models the queue evaluates will appear here."
        return {"choices": choices, "value": "", "interactive": False, "info": info}
    return {
        "choices": choices,
        "value": chosen if chosen in {c[1] for c in choices} else "",
        "interactive": True,
        "info": "Another model of the same track on the same input: the slider and the table show both.",
    }


def _build_upscale_tab(
    pool: ModelPool, settings: Settings, workdir: Path, inline_dir: Path
) -> tuple[gr.Dropdown, gr.Dropdown] | None:
    """The Upscale tab; returns what the page refreshes as models come and go (the Model
    dropdown and model B's), or None where no model could be loaded."""
    max_pixels = settings.max_input_pixels or default_max_input_pixels(pool.device)
    serve_on_gpu = on_gpu(serve)
    tracks = [t for t, s in TRACK_SCALES.items() if pool.descriptors(s)]
    choices = model_choices(pool)
    # a learned model rather than bicubic (no parameters), which heads each track
    default = next((d.id for t in tracks for d in pool.descriptors(TRACK_SCALES[t]) if d.params > 0), None)
    # what the upload is in each mode: its label, and what the slider's "before" side shows
    upload_labels = {
        "simulate": "Ground truth (simulate mode)",
        "upscale": "Input image (upscale mode)",
    }
    before_names = {"bicubic": "Bicubic", "lr": "LR input (nearest)"}

    if pool.failures:
        # the reasons quote the models' own errors: shown as text, never as markup
        failed = "\n".join(f"- {plain(k)}: {plain(v)}" for k, v in pool.failures.items())
        gr.Markdown(f"⚠️ Registered models that failed to load and are not served:\n{failed}", elem_id="load-failures")
    if not tracks:
        gr.Markdown("**No registered model could be loaded**, so there is nothing to run.")
        return None

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            first = default or choices[0][1]
            model = gr.Dropdown(
                choices,
                value=first,
                label="Model",
                info=" · ".join(track_label(t) for t in tracks),
                elem_id="model",
            )
            upload_limits = (inline_dir, settings.max_file_bytes, settings.temp_file_age)
            image = image_upload(
                *upload_limits,
                sources=["upload", "clipboard"],
                label=upload_labels["simulate"],
                height=320,
                elem_id="upload",
                alt_text="The uploaded image",
            )
            upload_note = gr.Markdown(visible=False, elem_id="upload-note")
            fit = gr.Checkbox(
                value=False,
                visible=False,
                label="Downscale to fit",
                info="Resize the image (Lanczos) to the largest size this host accepts before upscaling.",
                elem_id="fit",
            )
            run = gr.Button("Upscale", variant="primary", elem_id="run")
            examples = sorted(EXAMPLES_DIR.glob("*.png"))
            if examples:
                gr.Examples(
                    [[str(p)] for p in examples],
                    inputs=[image],
                    label="Examples (scikit-image's photos)",
                    api_visibility="private",  # the page's: it loads an example into the upload
                    elem_id="examples",
                )
                # Gradio draws the examples as buttons holding an image with an empty alt: a
                # screen reader hears "button" four times. Each gets its file's name and size,
                # set as Gradio draws them and again whenever it redraws them.
                names_js = """
                const names = NAMES;
                const label = () => document.querySelectorAll('#examples button.gallery-item').forEach((button) => {
                  const img = button.querySelector('img');
                  if (!img) return;
                  const name = names[decodeURIComponent(img.src.split('/').pop())];
                  if (name && button.getAttribute('aria-label') !== name) {
                    button.setAttribute('aria-label', name);
                    img.setAttribute('alt', name);
                  }
                });
                label();
                new MutationObserver(label).observe(document.body, { childList: true, subtree: true });
                """
                names = {}
                for path in examples:
                    h, w = image_size(path)
                    names[path.name] = f"Example: {path.name} ({w}x{h})"
                gr.HTML(
                    "",
                    container=False,
                    padding=False,
                    elem_id="example-names",
                    js_on_load=names_js.replace("NAMES", json.dumps(names)),
                )
            # the options, below the image and its button, which come first on a phone's screen
            model_b = gr.Dropdown(
                **model_b_state(pool, first, ""), label="Compare with (model B, optional)", elem_id="model-b"
            )
            mode = gr.Radio(
                MODE_CHOICES,
                value="simulate",
                label="Mode",
                info=(
                    "Simulate: your image is the ground truth; the app makes the low-resolution (LR) input from it"
                    " as the challenge did and measures the result. Upscale: your image is the LR input."
                ),
                elem_id="mode",
            )
            quality = gr.Slider(
                1,
                100,
                value=JPEG_QUALITY,
                step=1,
                label="JPEG quality of the simulated input",
                info=f"The challenge compressed its LR inputs at {JPEG_QUALITY}.",
            )
            with gr.Accordion("Ground truth (optional, upscale mode)", open=False, visible=False) as gt_box:
                gt = image_upload(*upload_limits, sources=["upload"], label="Ground truth, x scale of the input")
            # the /upscale endpoint of API clients (never shown): the page's button answers a
            # missing image with a warning, where a client needs an error
            api_run = gr.Button("Upscale (API)", visible=False)
            # several uploads through the model, mode and quality chosen above
            build_batch_section(pool, model, mode, quality, max_pixels, workdir, on_gpu(serve_batch), _user_error)
            # the host's details matter to few, and not before the image: a closed panel, last
            where = pool.device_name if pool.device.type == "cuda" else "CPU, no GPU"
            with gr.Accordion(f"About this machine ({where})", open=False, elem_id="host"):
                gr.Markdown(host_note(pool, max_pixels), elem_id="host-note")
        with gr.Column(scale=3, min_width=300):
            slider = gr.ImageSlider(
                type="filepath",
                label="Before / after",
                max_height=640,
                elem_id="slider",
                buttons=["fullscreen"],  # no JPEG download beside the full-resolution PNG's
            )
            caption = gr.Markdown(visible=False, elem_id="slider-caption")
            # Gradio's slider handle takes only a mouse or a finger; this makes it a keyboard
            # slider too (see _SLIDER_KEYS_JS)
            gr.HTML("", container=False, padding=False, elem_id="slider-keys", js_on_load=_SLIDER_KEYS_JS)
            compare = gr.Radio(
                COMPARE_CHOICES,
                value="bicubic",
                label="Before (the slider's left side)",
                info="LR input: the low-resolution image the model received, each pixel repeated to the output size.",
                elem_id="compare",
            )
            detail_note = gr.Markdown(visible=False, elem_id="detail-note")
            detail = gr.Gallery(
                label="Detail at 1:1",
                columns=4,
                height="auto",
                object_fit="contain",
                allow_preview=False,
                visible=False,
                elem_id="detail",
            )
            download = gr.File(label="Full-resolution PNG (lossless)", interactive=False, elem_id="download")
            metrics = gr.Markdown(elem_id="metrics")
            timing = gr.Markdown(elem_id="timing")
            lr_preview = gr.Image(
                label="Model input: click or tap it for a detail at 1:1",
                interactive=False,
                elem_id="lr-preview",
                alt_text="The low-resolution image the model received",
            )
            with gr.Accordion("Details (JSON)", open=False):
                details = gr.JSON(elem_id="details")
    # (previews, model name, scale, model B's previews, model B's name): JPEG bytes only (a few
    # MB at 4K), not the arrays; dropped an hour after the last use
    last = gr.State(None, time_to_live=3600)
    results = [slider, metrics, timing, details, download, lr_preview, last]
    # what goes with a result on the page but is no part of the API's answer
    shown_with = [caption, detail, detail_note]
    no_detail = (gr.Gallery(value=None, visible=False), gr.Markdown(visible=False))

    def slider_caption(left: str, model_name: str) -> str:
        return (
            f"◀ left: **{plain(left)}** · right: **{plain(model_name)}** ▶ (drag the handle to compare;"
            " click the model input below for a detail at 1:1)"
        )

    def slider_label(left: str, model_name: str) -> str:
        return f"Left: {left} | Right: {model_name}"

    def on_mode(mode_id: str) -> tuple[Any, Any, Any]:
        simulate = mode_id == "simulate"
        return gr.Slider(visible=simulate), gr.Accordion(visible=not simulate), gr.Image(label=upload_labels[mode_id])

    def on_input(model_id: str, mode_id: Mode, upload: str | None) -> tuple[Any, ...]:
        """A new or cleared upload, model or mode: the old result goes, and the upload's size
        is checked from its header at once."""
        results_cleared = (gr.ImageSlider(value=None, label="Before / after"), "", "", None, None, None, None)
        hidden = gr.Markdown(visible=False)
        cleared = (*results_cleared, *no_detail)
        if not upload:
            return (*cleared, hidden, hidden, gr.Checkbox(visible=False))
        scale = pool.descriptor(model_id).scale
        target = None
        try:
            height, width = image_size(upload, Path(upload).name)
            target = fit_size(height, width, scale, mode_id, max_pixels)
            check_input_size(height, width, scale, mode_id, max_pixels)
        except InputError as e:
            if target is None:  # unreadable, or not a size that downscaling mends (too small)
                return (*cleared, hidden, gr.Markdown(f"⚠️ {first_line(e)}", visible=True), gr.Checkbox(visible=False))
            th, tw = target  # too large: the message gives the limit
            note = (
                f"⚠️ {first_line(e)}. **Downscale to fit** (ticked) resizes it to {tw}x{th} first; untick it to be"
                " refused."
            )
            return (
                *cleared,
                hidden,
                gr.Markdown(note, visible=True),
                gr.Checkbox(visible=True, value=True, label=f"Downscale to fit ({tw}x{th})"),
            )
        if mode_id == "simulate" and (height % scale or width % scale):
            h, w = height // scale * scale, width // scale * scale
            note = (
                f"ℹ️ <small>Simulate mode crops this {width}x{height} image to {w}x{h} (sides divisible by {scale}"
                f" for x{scale}) before degrading it.</small>"
            )
            return (*cleared, hidden, gr.Markdown(note, visible=True), gr.Checkbox(visible=False))
        return (*cleared, hidden, hidden, gr.Checkbox(visible=False))

    def requested(
        model_id: str,
        mode_id: Mode,
        jpeg_quality: float,
        upload: str | None,
        gt_upload: str | None,
        which: Before,
        fit_input: bool,
        progress: gr.Progress,
        model_b: str = "",
    ) -> Iterator[tuple[Any, ...]]:
        """One request: yields the slider pair, metrics, timing, details, PNG, model input and
        what the session keeps (previews, names, scale), then the same with the PNG. With
        ``model_b``, that model runs on the same input too, and the slider compares the two."""
        if not upload:
            raise _refusal("Upload an image or pick an example first.")
        t0 = time.perf_counter()
        folder = Path(tempfile.mkdtemp(dir=workdir))
        # the queue runs --concurrency of these at once; the log shows it (tests read it)
        logger.info("upscale started: %s, %s", model_id, mode_id)
        try:

            def stage(name: str) -> None:
                progress(STAGES.index(name) / len(STAGES), desc=_STAGE_LABELS.get(name, name))

            def tile(done: int, total: int) -> None:
                start = STAGES.index("model") / len(STAGES)
                progress(start + done / total / len(STAGES), desc=f"running the model: tile {done} of {total}")

            try:

                def run_model(run_id: str, on_stage: Any = None, on_tile: Any = None) -> UpscaleResult:
                    return serve_on_gpu(
                        pool,
                        run_id,
                        upload,
                        mode=mode_id,
                        jpeg_quality=int(jpeg_quality),
                        gt=gt_upload if mode_id == "upscale" else None,
                        max_input_pixels=max_pixels,
                        on_stage=on_stage,
                        on_tile=on_tile,
                        fit=bool(fit_input),
                    )

                result = run_model(model_id, stage, tile)
                other = other_previews = None
                if model_b:
                    # the same upload through the same (deterministic) degradation: the same input
                    progress(0.85, desc=f"running model B ({pool.descriptor(model_b).name})")
                    other = run_model(model_b)
                    other_previews = Previews.encode(other)
                progress(0.9, desc="encoding the previews")
                t_encode = time.perf_counter()
                previews = Previews.encode(result)
                result.timings_ms["encode"] = (time.perf_counter() - t_encode) * 1e3
            except Exception as e:
                if isinstance(e, torch.OutOfMemoryError) and torch.cuda.is_available():
                    torch.cuda.empty_cache()  # hand the memory back for the next request
                raise _user_error(e) from None
            request_ms = (time.perf_counter() - t0) * 1e3
            summary = {**result.summary(), "request_ms": request_ms}
            if other is not None:
                summary["model_b"] = other.summary()
            if other is not None and other_previews is not None:
                before_path, after_path = folder / "before_model_b.jpg", folder / "after.jpg"
                before_path.write_bytes(other_previews.sr)
                after_path.write_bytes(previews.sr)
                slider_value: tuple[str, str] = (str(before_path), str(after_path))
            else:
                slider_value = previews.pair(which, folder)
            lr_path = folder / "input.jpg"
            lr_path.write_bytes(previews.lr)
            b_name = other.model.name if other is not None else None
            kept = (previews, result.model.name, result.model.scale, other_previews, b_name)
            shown = (slider_value, metrics_markdown(result, other), timing_markdown(result, request_ms, other))
            yield (*shown, summary, None, str(lr_path), kept)
            # The lossless PNG only for download, after the comparison is on screen. The last
            # yield repeats every value: it is what an API client receives.
            progress(0.95, desc="writing the full-resolution PNG")
            t_png = time.perf_counter()
            h, w = result.sr.shape[:2]
            png = encode_png(result.sr, folder / f"{result.model.id}_{w}x{h}.png")
            summary = {**summary, "png_ms": (time.perf_counter() - t_png) * 1e3}
            yield (*shown, summary, str(png), str(lr_path), kept)
        finally:
            # Gradio has copied every yielded file into its own cache by now.
            shutil.rmtree(folder, ignore_errors=True)
            for path in (upload, gt_upload):  # an inline image's file is this request's alone
                if path and Path(path).is_relative_to(inline_dir):
                    shutil.rmtree(Path(path).parent, ignore_errors=True)
            logger.info("upscale finished: %s in %.0f ms", model_id, (time.perf_counter() - t0) * 1e3)

    def on_run(
        model_id: str,
        mode_id: Mode,
        jpeg_quality: float,
        upload: str | None,
        gt_upload: str | None,
        which: Before,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress bar)
    ) -> Iterator[tuple[Any, ...]]:
        # the API's inputs are as they were before the page's "Downscale to fit": a client
        # resizes its own images, and its calls keep working
        yield from requested(model_id, mode_id, jpeg_quality, upload, gt_upload, which, False, progress)

    def on_page_run(
        model_id: str,
        mode_id: Mode,
        jpeg_quality: float,
        upload: str | None,
        gt_upload: str | None,
        which: Before,
        fit_input: bool,
        model_b: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Iterator[tuple[Any, ...]]:
        if not upload:  # a hint, not an error: nothing failed, and no panel should say so
            gr.Warning("Choose an image first: upload one, paste one, or pick an example below.")
            yield tuple(gr.skip() for _ in range(len(results) + len(shown_with)))
            return
        # a model of another scale (left from before a change of model A) cannot compare
        same_scale = model_b and pool.descriptor(model_b).scale == pool.descriptor(model_id).scale
        b = model_b if same_scale and model_b != model_id else ""
        runs = requested(model_id, mode_id, jpeg_quality, upload, gt_upload, which, fit_input, progress, b)
        try:
            for *values, kept in runs:
                left = f"{kept[4]} (model B)" if kept[4] else before_names[which]
                pair = gr.ImageSlider(value=values[0], label=slider_label(left, kept[1]))
                yield (pair, *values[1:], kept, gr.Markdown(slider_caption(left, kept[1]), visible=True), *no_detail)
        except gr.Error as e:
            # The message stays until dismissed; the panels drop what does not answer this
            # request, and none of them is marked as failed (an API client gets the error).
            gr.Warning(e.message, duration=None)
            cleared = (gr.ImageSlider(value=None, label="Before / after"), "", "", None, None, None, None)
            yield (*cleared, gr.Markdown(visible=False), *no_detail)

    def on_compare(kept: tuple[Previews, str, int, Previews | None, str | None] | None, which: Before) -> Iterator[Any]:
        if kept is None or kept[4]:  # nothing shown, or model B on the left
            yield gr.skip(), gr.skip()
            return
        previews, name = kept[0], kept[1]
        folder = Path(tempfile.mkdtemp(dir=workdir))
        try:
            left = before_names[which]
            pair = gr.ImageSlider(value=previews.pair(which, folder), label=slider_label(left, name))
            yield pair, gr.Markdown(slider_caption(left, name), visible=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def on_input_click(
        kept: tuple[Previews, str, int, Previews | None, str | None] | None, evt: gr.SelectData
    ) -> Iterator[Any]:
        """The same square of the input, bicubic, the model's output and the ground truth,
        side by side at 1:1, around the model input's pixel clicked. (The slider, a
        gr.ImageSlider, reports no clicks.)"""
        index = evt.index
        if kept is None or not isinstance(index, list | tuple) or len(index) != 2:
            yield gr.skip(), gr.skip()
            return
        previews, name, scale, other_previews, b_name = kept
        x, y = (int(v) * scale + scale // 2 for v in index)  # the input pixel's centre, in output pixels
        crops, (top, left, side) = previews.detail(x, y)
        captions = {
            "input": "Input (LR), nearest",
            "bicubic": "Bicubic",
            "model": name,
            "model_b": f"{b_name} (model B)",
            "gt": "Ground truth",
        }
        if other_previews is not None:  # model B's crop after model A's, the ground truth last
            gt_crop = crops.pop("gt", None)
            crops["model_b"] = other_previews.detail(x, y)[0]["model"]
            if gt_crop is not None:
                crops["gt"] = gt_crop
        folder = Path(tempfile.mkdtemp(dir=workdir))
        try:
            items = [(str(encode_png(c, folder / f"{k}.png")), captions[k]) for k, c in crops.items()]
            note = (
                f"**Detail at 1:1**: output pixels x {left}–{left + side - 1}, y {top}–{top + side - 1}"
                f" ({side}x{side} each, enlarged to fit with square pixels; the input's {side // scale}x{side // scale}"
                f" pixels at the output's size, each repeated {scale}x{scale}, nearest). Crops of the on-screen"
                " previews (JPEG, quality 92, full chroma); the PNG above is exact."
            )
            yield gr.Gallery(value=items, visible=True), gr.Markdown(note, visible=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def on_model(model_id: str, b: str) -> Any:
        return gr.Dropdown(**model_b_state(pool, model_id, b))

    def on_model_b(b: str) -> Any:
        return gr.Radio(visible=not b)

    model.change(on_model, [model, model_b], model_b, api_visibility="private", show_progress="hidden")
    model_b.change(on_model_b, model_b, compare, api_visibility="private", show_progress="hidden")
    mode.change(on_mode, mode, [quality, gt_box, image], api_visibility="private")
    checked = [*results, detail, detail_note, caption, upload_note, fit]
    for trigger in (image.change, model.change, model_b.change, mode.change, gt.change):
        # a header read: never waits behind an upscale
        trigger(
            on_input,
            [model, mode, image],
            checked,
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )
    inputs = [model, mode, quality, image, gt, compare, fit, model_b]
    run.click(on_page_run, inputs, [*results, *shown_with], api_visibility="private", concurrency_id="upscale")
    lr_preview.select(on_input_click, last, [detail, detail_note], api_visibility="private").then(
        None, js=_DETAIL_INTO_VIEW_JS, api_visibility="private"
    )
    api_run.click(on_run, inputs[:6], results, api_name="upscale", concurrency_id="upscale")
    compare.change(on_compare, [last, compare], [slider, caption], api_visibility="private")
    return model, model_b


def build_demo(
    pool: ModelPool,
    board: Board,
    settings: Settings,
    workdir: Path,
    inline_dir: Path,
    store: Store | None = None,
) -> gr.Blocks:
    """The whole app. ``workdir`` holds the files it writes (previews, PNGs, CSVs) until
    Gradio has copied them into its cache; ``inline_dir`` the images sent as data: URLs, each
    until its request is answered. With a request ``store``, the Submit tab takes requests
    and shows the queues, and the page refreshes what the workers add (see :class:`Live`)."""
    # Gradio deletes the uploads and results it knows of once settings.temp_file_age old
    # (space.doors.TempStore bounds the folder's size and sweeps the rest)
    delete_cache = (max(1, min(60, settings.temp_file_age // 2)), settings.temp_file_age)
    # no usage analytics: the app makes no network calls of its own
    with gr.Blocks(title=TITLE, delete_cache=delete_cache, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        submit_tab: dict[str, Any] | None = None
        with gr.Tabs():
            with gr.Tab("Upscale", id="upscale"):
                models = _build_upscale_tab(pool, settings, workdir, inline_dir)
            with gr.Tab("Leaderboard", id="leaderboard"):
                leaderboard = build_leaderboard_tab(board, workdir)
            if store is not None:
                with gr.Tab("Submit", id="submit"):
                    # a zip may expand to 4x an upload's size, within the app's temporary folder
                    unzipped = min(MAX_UNZIPPED_BYTES, 4 * settings.max_file_bytes)
                    submit_tab = build_submit_tab(store, settings.daily_limit, SUBMIT_INTRO, workdir, unzipped)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)
        if store is not None and submit_tab is not None:
            _wire_refresh(demo, Live(pool, board, store, settings.refresh), models, leaderboard, submit_tab)
    return demo


class Live:
    """The page's view of what changes while it runs: the evaluated models (``pool``), the
    leaderboard (``board``) and the queues (``store``). Every open page asks every
    :data:`POLL_S` seconds; the store is looked at once per :data:`POLL_S` for all of them
    (one query of a database, one request for a dataset's head on the Hub), and the models
    and the leaderboard are read again only when it changed (a request made, claimed,
    finished or failed; the Hub gone or back) or ``period`` seconds went by."""

    def __init__(self, pool: ModelPool, board: Board, store: Store, period: float) -> None:
        self.pool, self.board, self.store, self.period = pool, board, store, period
        self._lock = threading.Lock()
        self._version, self._loaded_at = queue_version(store), time.monotonic()
        self._looked_at = self._loaded_at
        self._shown = self._digest()

    def _digest(self) -> str:
        """What the pages show, in one short string: the store's version (the queues), the
        models served, the leaderboard's rows and the errors said above it, and whether the Hub
        answers. A reload that changed none of them changes nothing on any page: an open page
        is not redrawn, and the choices its reader is making are not overwritten."""
        digest = hashlib.sha256()
        for part in (
            self._version,
            repr(sorted((k, d.name) for k, d in self.pool.models.items())),
            self.board.frame.to_csv(),
            repr(self.board.errors),
            repr(self.store.unreachable),
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:16]

    def current(self, loading: bool = False) -> str:
        """The state the page should show: reloads first if the store changed or the period
        passed; returns a token (:meth:`_digest`) that changes when what is shown did. The store is
        looked at once per :data:`POLL_S`; for a page ``loading``, once per :data:`LOAD_S`
        (it shows the store as it is, not as it was a poll ago, and a burst of visitors
        still costs the Hub one request a second at most)."""
        with self._lock:
            now = time.monotonic()
            if now - self._looked_at >= (LOAD_S if loading else POLL_S):
                self._looked_at = now
                version = queue_version(self.store)
                if version != self._version or now - self._loaded_at >= self.period:
                    try:
                        added = self.pool.refresh(self.store.registry())
                    except RTSRError as e:  # the store unreadable: the models stay as they are
                        logger.warning("the evaluated registry cannot be read: %s", first_line(e))
                        added = []
                    self.board.reload()
                    if added:
                        logger.info("now serving %s", ", ".join(added))
                    self._version, self._loaded_at = version, now
                self._shown = self._digest()
            return self._shown


#: Seconds between the page's looks at the store (each one SQLite query, or one request for
#: the head of a dataset on the Hub).
POLL_S = 5.0
#: The oldest look at the store a page that has just loaded may be shown, in seconds.
LOAD_S = 1.0


def _wire_refresh(
    demo: gr.Blocks,
    live: Live,
    models: tuple[gr.Dropdown, gr.Dropdown] | None,
    leaderboard: LeaderboardView,
    submit_tab: dict[str, Any],
) -> None:
    """Every page shows the store's state as it loads (the page's first values are the
    state when the app started), then polls it once per :data:`POLL_S`."""
    # the state the page's first values show: a page loaded before anything changed is current
    seen = gr.State(live.current())
    timer = gr.Timer(POLL_S)
    # the models' dropdowns, and what model A and B are now (model B's choices follow A's)
    model_io = list(models or ())
    outputs = [seen, *model_io, *leaderboard.controls, *leaderboard.outputs, *submit_tab["outputs"]]
    inputs = [seen, *model_io, *leaderboard.refresh_inputs]

    def updates(token: str, last: str, values: tuple[Any, ...]) -> list[Any]:
        if token == last:
            return [gr.skip()] * len(outputs)
        changed: list[Any] = [token]
        if models is not None:
            model_a, model_b, *values = values  # type: ignore[assignment]
            a = model_a if model_a in live.pool.models else next(iter(live.pool.models))
            b_state = model_b_state(live.pool, a, model_b)
            changed += [gr.Dropdown(choices=model_choices(live.pool)), gr.Dropdown(**b_state)]
        changed += leaderboard.refresh(*values)
        changed += submit_tab["refresh"]()
        return changed

    def on_tick(last: str, *values: Any) -> Iterator[list[Any]]:
        yield updates(live.current(), last, values)

    def on_load(last: str, *values: Any) -> Iterator[list[Any]]:
        yield updates(live.current(loading=True), last, values)

    # every open page ticks: unlimited concurrency, so that ticks never wait behind an upscale
    # (or fill the queue that upscales wait in); most return at once with nothing to change
    for event, fn in ((timer.tick, on_tick), (demo.load, on_load)):
        event(
            fn,
            inputs,
            outputs,
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )
