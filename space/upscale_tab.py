"""The Upscale tab: one image (or two models on it) through a registered model, with the
challenge's degradation, metrics against a ground truth, a before/after slider and a 1:1 detail.

The handlers live at module level and take an :class:`UpscaleContext` and plain values or an
:class:`UpscaleRequest` (:func:`check_upload`, :func:`run_request`, :func:`detail_view`), so
tests call them without a server; :func:`build_upscale_tab` lays out the components and wires
each event to one of them through a thin closure. The library does the work (rtsr.serving).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import gradio as gr
import torch

from rtsr.batch import serve_batch
from rtsr.constants import JPEG_QUALITY, TRACK_SCALES
from rtsr.engines import MIN_FIDELITY_DB, fidelity_text, substitution_reason
from rtsr.errors import InputError, RTSRError, first_line
from rtsr.images import image_size
from rtsr.leaderboard.sources import REFERENCE_IDS
from rtsr.previews import Previews, encode_png
from rtsr.results.metrics import IMAGE_METRICS
from rtsr.serving import (
    STAGES,
    Mode,
    UpscaleResult,
    check_input_size,
    default_max_input_pixels,
    default_one_pass_pixels,
    default_tile,
    fit_size,
    megapixels,
    serve,
)
from rtsr.submissions.pool import ModelPool
from rtsr.submissions.sandbox import isolation_note
from space.batch import build_batch_section
from space.doors import safe_name, save_data_url
from space.leaderboard_tab import track_label
from space.settings import Settings
from space.text import plain

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
        f"Each model runs in the fastest engine whose output stays within {MIN_FIDELITY_DB:g} dB PSNR of its FP32"
        " output"
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
    # the columns, headers and formats are the metric specification's (rtsr.results.metrics)
    lines = [
        head + "| | " + " | ".join(m.label for m in IMAGE_METRICS) + " |",
        "|---|" + "---:|" * len(IMAGE_METRICS),
    ]
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(m.text(values.as_dict()[m.key]) for m in IMAGE_METRICS) + " |")
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


#: What the upload is in each mode: its label.
UPLOAD_LABELS: dict[str, str] = {"simulate": "Ground truth (simulate mode)", "upscale": "Input image (upscale mode)"}
#: What the slider's left side shows, by the Before choice.
BEFORE_NAMES: dict[str, str] = {"bicubic": "Bicubic", "lr": "LR input (nearest)"}


@dataclass(frozen=True)
class Kept:
    """What a session keeps of its last result, for the slider's left side and the 1:1
    detail: JPEG previews (a few MB at 4K), not arrays; dropped an hour after the last use."""

    previews: Previews
    name: str
    scale: int
    #: Model B's previews and name, when a second model ran on the same input.
    other: Previews | None = None
    other_name: str | None = None


@dataclass(frozen=True)
class UpscaleRequest:
    """One press of *Upscale* (or one call of the ``/upscale`` API): what to run on what."""

    model_id: str
    mode: Mode
    jpeg_quality: int
    upload: str | None
    gt_upload: str | None = None
    before: Before = "bicubic"
    #: Downscale an upload above the size limit to fit (the page's checkbox; never the API's).
    fit: bool = False
    #: A second model of the same scale on the same input ("" for none).
    model_b: str = ""


@dataclass(frozen=True)
class Answer:
    """What a request gives the page, in the order of the tab's result components."""

    slider: tuple[str, str]
    metrics: str
    timing: str
    details: dict[str, Any]
    png: str | None
    lr_preview: str
    kept: Kept

    def values(self) -> tuple[Any, ...]:
        return (self.slider, self.metrics, self.timing, self.details, self.png, self.lr_preview, self.kept)


@dataclass(frozen=True)
class UpscaleContext:
    """What every handler of the tab works with: the models, the folders the app writes in
    (``workdir``) and receives inline images in (``inline_dir``), the size limit, and the
    serving function (under ZeroGPU's decorator on such a Space)."""

    pool: ModelPool
    workdir: Path
    inline_dir: Path
    max_pixels: int
    serve: Callable[..., UpscaleResult] = serve


@dataclass(frozen=True)
class UploadCheck:
    """What the page says of an upload before it is run: a note (or None), and the label of
    the *Downscale to fit* checkbox where it is offered (ticked)."""

    note: str | None = None
    fit_label: str | None = None


def slider_caption(left: str, model_name: str) -> str:
    """The caption under the slider: what each side shows."""
    return (
        f"◀ left: **{plain(left)}** · right: **{plain(model_name)}** ▶ (drag the handle to compare;"
        " click the model input below for a detail at 1:1)"
    )


def slider_label(left: str, model_name: str) -> str:
    """The slider's own label (plain text: Gradio shows it as text)."""
    return f"Left: {left} | Right: {model_name}"


def check_upload(ctx: UpscaleContext, model_id: str, mode: Mode, upload: str | None) -> UploadCheck:
    """A new or changed upload, model or mode: the upload's size, from its header, against
    the limit and the scale (nothing is decoded)."""
    if not upload:
        return UploadCheck()
    scale = ctx.pool.descriptor(model_id).scale
    target = None
    try:
        height, width = image_size(upload, Path(upload).name)
        target = fit_size(height, width, scale, mode, ctx.max_pixels)
        check_input_size(height, width, scale, mode, ctx.max_pixels)
    except InputError as e:
        if target is None:  # unreadable, or not a size that downscaling mends (too small)
            return UploadCheck(f"⚠️ {first_line(e)}")
        th, tw = target  # too large: the message gives the limit
        note = (
            f"⚠️ {first_line(e)}. **Downscale to fit** (ticked) resizes it to {tw}x{th} first; untick it to be refused."
        )
        return UploadCheck(note, f"Downscale to fit ({tw}x{th})")
    if mode == "simulate" and (height % scale or width % scale):
        h, w = height // scale * scale, width // scale * scale
        return UploadCheck(
            f"ℹ️ <small>Simulate mode crops this {width}x{height} image to {w}x{h} (sides divisible by {scale}"
            f" for x{scale}) before degrading it.</small>"
        )
    return UploadCheck()


def run_request(ctx: UpscaleContext, request: UpscaleRequest, progress: Callable[..., Any]) -> Iterator[Answer]:
    """One request: yields its :class:`Answer` with the comparison on screen, then the same
    with the full-resolution PNG. With ``request.model_b``, that model runs on the same input
    too, and the slider compares the two.

    Raises:
        gr.Error: no upload, or a one-line reason the request failed.
    """
    if not request.upload:
        raise _refusal("Upload an image or pick an example first.")
    upload, gt_upload = request.upload, request.gt_upload
    t0 = time.perf_counter()
    folder = Path(tempfile.mkdtemp(dir=ctx.workdir))
    # the queue runs --concurrency of these at once; the log shows it (tests read it)
    logger.info("upscale started: %s, %s", request.model_id, request.mode)
    try:

        def stage(name: str) -> None:
            progress(STAGES.index(name) / len(STAGES), desc=_STAGE_LABELS.get(name, name))

        def tile(done: int, total: int) -> None:
            start = STAGES.index("model") / len(STAGES)
            progress(start + done / total / len(STAGES), desc=f"running the model: tile {done} of {total}")

        def run_model(run_id: str, on_stage: Any = None, on_tile: Any = None) -> UpscaleResult:
            return ctx.serve(
                ctx.pool,
                run_id,
                upload,
                mode=request.mode,
                jpeg_quality=int(request.jpeg_quality),
                gt=gt_upload if request.mode == "upscale" else None,
                max_input_pixels=ctx.max_pixels,
                on_stage=on_stage,
                on_tile=on_tile,
                fit=bool(request.fit),
            )

        try:
            result = run_model(request.model_id, stage, tile)
            other = other_previews = None
            if request.model_b:
                # the same upload through the same (deterministic) degradation: the same input
                progress(0.85, desc=f"running model B ({ctx.pool.descriptor(request.model_b).name})")
                other = run_model(request.model_b)
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
        if other is not None and other_previews is not None:
            summary["model_b"] = other.summary()
            before_path, after_path = folder / "before_model_b.jpg", folder / "after.jpg"
            before_path.write_bytes(other_previews.sr)
            after_path.write_bytes(previews.sr)
            slider_value: tuple[str, str] = (str(before_path), str(after_path))
        else:
            slider_value = previews.pair(request.before, folder)
        lr_path = folder / "input.jpg"
        lr_path.write_bytes(previews.lr)
        b_name = other.model.name if other is not None else None
        kept = Kept(previews, result.model.name, result.model.scale, other_previews, b_name)
        metrics, timing = metrics_markdown(result, other), timing_markdown(result, request_ms, other)
        yield Answer(slider_value, metrics, timing, summary, None, str(lr_path), kept)
        # The lossless PNG only for download, after the comparison is on screen. The last
        # answer repeats every value: it is what an API client receives.
        progress(0.95, desc="writing the full-resolution PNG")
        t_png = time.perf_counter()
        h, w = result.sr.shape[:2]
        png = encode_png(result.sr, folder / f"{result.model.id}_{w}x{h}.png")
        summary = {**summary, "png_ms": (time.perf_counter() - t_png) * 1e3}
        yield Answer(slider_value, metrics, timing, summary, str(png), str(lr_path), kept)
    finally:
        # Gradio has copied every yielded file into its own cache by now.
        shutil.rmtree(folder, ignore_errors=True)
        for path in (upload, gt_upload):  # an inline image's file is this request's alone
            if path and Path(path).is_relative_to(ctx.inline_dir):
                shutil.rmtree(Path(path).parent, ignore_errors=True)
        logger.info("upscale finished: %s in %.0f ms", request.model_id, (time.perf_counter() - t0) * 1e3)


def page_model_b(pool: ModelPool, model_id: str, model_b: str) -> str:
    """Model B as the page asks for it, or "" where it cannot compare: the same model, or one
    of another scale (left from before a change of model A)."""
    same_scale = model_b and pool.descriptor(model_b).scale == pool.descriptor(model_id).scale
    return model_b if same_scale and model_b != model_id else ""


def left_side(kept: Kept, before: Before) -> str:
    """What the slider's left side shows: model B where one ran, else the Before choice."""
    return f"{kept.other_name} (model B)" if kept.other_name else BEFORE_NAMES[before]


def detail_view(kept: Kept, index: Any, folder: Path) -> tuple[list[tuple[str, str]], str] | None:
    """The same square of the input, bicubic, the model's output (and model B's) and the
    ground truth, side by side at 1:1, around the model input's pixel at ``index`` (x, y);
    their PNGs are written in ``folder``. None for an index that is no pixel."""
    if not isinstance(index, list | tuple) or len(index) != 2:
        return None
    scale = kept.scale
    x, y = (int(v) * scale + scale // 2 for v in index)  # the input pixel's centre, in output pixels
    crops, (top, left, side) = kept.previews.detail(x, y)
    captions = {
        "input": "Input (LR), nearest",
        "bicubic": "Bicubic",
        "model": kept.name,
        "model_b": f"{kept.other_name} (model B)",
        "gt": "Ground truth",
    }
    if kept.other is not None:  # model B's crop after model A's, the ground truth last
        gt_crop = crops.pop("gt", None)
        crops["model_b"] = kept.other.detail(x, y)[0]["model"]
        if gt_crop is not None:
            crops["gt"] = gt_crop
    items = [(str(encode_png(c, folder / f"{k}.png")), captions[k]) for k, c in crops.items()]
    note = (
        f"**Detail at 1:1**: output pixels x {left}–{left + side - 1}, y {top}–{top + side - 1}"
        f" ({side}x{side} each, enlarged to fit with square pixels; the input's {side // scale}x{side // scale}"
        f" pixels at the output's size, each repeated {scale}x{scale}, nearest). Crops of the on-screen"
        " previews (JPEG, quality 92, full chroma); the PNG above is exact."
    )
    return items, note


@dataclass(frozen=True)
class UpscaleTab:
    """The tab's components that the page and its handlers use."""

    model: gr.Dropdown
    model_b: gr.Dropdown
    image: gr.Image
    gt: gr.Image
    gt_box: gr.Accordion
    upload_note: gr.Markdown
    fit: gr.Checkbox
    run: gr.Button
    api_run: gr.Button
    mode: gr.Radio
    quality: gr.Slider
    slider: gr.ImageSlider
    caption: gr.Markdown
    compare: gr.Radio
    detail_note: gr.Markdown
    detail: gr.Gallery
    download: gr.File
    metrics: gr.Markdown
    timing: gr.Markdown
    lr_preview: gr.Image
    details: gr.JSON
    kept: gr.State

    @property
    def results(self) -> list[Any]:
        """The components of an :class:`Answer`, in its order: what the API returns."""
        return [self.slider, self.metrics, self.timing, self.details, self.download, self.lr_preview, self.kept]

    @property
    def shown_with(self) -> list[Any]:
        """What goes with a result on the page but is no part of the API's answer."""
        return [self.caption, self.detail, self.detail_note]


def build_upscale_tab(pool: ModelPool, settings: Settings, workdir: Path, inline_dir: Path) -> UpscaleTab | None:
    """The Upscale tab; None where no model could be loaded."""
    ctx = UpscaleContext(
        pool, workdir, inline_dir, settings.max_input_pixels or default_max_input_pixels(pool.device), on_gpu(serve)
    )
    tracks = [t for t, s in TRACK_SCALES.items() if pool.descriptors(s)]
    if pool.failures:
        # the reasons quote the models' own errors: shown as text, never as markup
        failed = "\n".join(f"- {plain(k)}: {plain(v)}" for k, v in pool.failures.items())
        gr.Markdown(f"⚠️ Registered models that failed to load and are not served:\n{failed}", elem_id="load-failures")
    if not tracks:
        gr.Markdown("**No registered model could be loaded**, so there is nothing to run.")
        return None
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            left = _left_column(ctx, settings, tracks)
        with gr.Column(scale=3, min_width=300):
            right = _right_column()
    tab = UpscaleTab(**left, **right, kept=gr.State(None, time_to_live=3600))
    _wire_upscale_tab(ctx, tab)
    return tab


def _left_column(ctx: UpscaleContext, settings: Settings, tracks: list[int]) -> dict[str, Any]:
    """The model, the upload, the button and the examples first (a phone's first screen), then
    the options, the batch section and the host's details."""
    pool = ctx.pool
    choices = model_choices(pool)
    # a learned model rather than bicubic (no parameters), which heads each track
    default = next((d.id for t in tracks for d in pool.descriptors(TRACK_SCALES[t]) if d.params > 0), None)
    first = default or choices[0][1]
    info = " · ".join(track_label(t) for t in tracks)
    model = gr.Dropdown(choices, value=first, label="Model", info=info, elem_id="model")
    upload_limits = (ctx.inline_dir, settings.max_file_bytes, settings.temp_file_age)
    image = image_upload(
        *upload_limits,
        sources=["upload", "clipboard"],
        label=UPLOAD_LABELS["simulate"],
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
    _examples(image)
    # the options, below the image and its button, which come first on a phone's screen
    model_b = gr.Dropdown(**model_b_state(pool, first, ""), label="Compare with (model B, optional)", elem_id="model-b")
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
    build_batch_section(pool, model, mode, quality, ctx.max_pixels, ctx.workdir, on_gpu(serve_batch), _user_error)
    # the host's details matter to few, and not before the image: a closed panel, last
    where = pool.device_name if pool.device.type == "cuda" else "CPU, no GPU"
    with gr.Accordion(f"About this machine ({where})", open=False, elem_id="host"):
        gr.Markdown(host_note(pool, ctx.max_pixels), elem_id="host-note")
    return {
        "model": model, "model_b": model_b, "image": image, "gt": gt, "gt_box": gt_box, "upload_note": upload_note,
        "fit": fit, "run": run, "api_run": api_run, "mode": mode, "quality": quality,
    }  # fmt: skip


#: Gradio draws the examples as buttons holding an image with an empty alt: a screen reader
#: hears "button" four times. Each gets its file's name and size, set as Gradio draws them and
#: again whenever it redraws them.
_EXAMPLE_NAMES_JS = """
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


def _examples(image: gr.Image) -> None:
    """The example photos under the upload, each named for a screen reader."""
    examples = sorted(EXAMPLES_DIR.glob("*.png"))
    if not examples:
        return
    gr.Examples(
        [[str(p)] for p in examples],
        inputs=[image],
        label="Examples (scikit-image's photos)",
        api_visibility="private",  # the page's: it loads an example into the upload
        elem_id="examples",
    )
    names = {}
    for path in examples:
        h, w = image_size(path)
        names[path.name] = f"Example: {path.name} ({w}x{h})"
    js = _EXAMPLE_NAMES_JS.replace("NAMES", json.dumps(names))
    gr.HTML("", container=False, padding=False, elem_id="example-names", js_on_load=js)


def _right_column() -> dict[str, Any]:
    """The slider and its caption, the Before choice, the 1:1 detail, the PNG, the metrics,
    the timings, the model input and the request's JSON."""
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
    return {
        "slider": slider, "caption": caption, "compare": compare, "detail_note": detail_note, "detail": detail,
        "download": download, "metrics": metrics, "timing": timing, "lr_preview": lr_preview, "details": details,
    }  # fmt: skip


def _cleared() -> tuple[Any, ...]:
    """The results and the detail emptied: nothing of an earlier result is left on the page."""
    results = (gr.ImageSlider(value=None, label="Before / after"), "", "", None, None, None, None)
    return (*results, gr.Gallery(value=None, visible=False), gr.Markdown(visible=False))


def _wire_upscale_tab(ctx: UpscaleContext, tab: UpscaleTab) -> None:
    """The tab's events, each a thin call of a module-level handler above."""
    pool, no_detail = ctx.pool, (gr.Gallery(value=None, visible=False), gr.Markdown(visible=False))

    def on_input(model_id: str, mode: Mode, upload: str | None) -> tuple[Any, ...]:
        check = check_upload(ctx, model_id, mode, upload)
        note = gr.Markdown(check.note, visible=True) if check.note else gr.Markdown(visible=False)
        fit = (
            gr.Checkbox(visible=True, value=True, label=check.fit_label)
            if check.fit_label
            else gr.Checkbox(visible=False)
        )
        return (*_cleared(), gr.Markdown(visible=False), note, fit)

    def on_run(
        model_id: str,
        mode_id: Mode,
        jpeg_quality: float,
        upload: str | None,
        gt_upload: str | None,
        which: Before,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress bar)
    ) -> Iterator[tuple[Any, ...]]:
        # the parameters' names are the /upscale API's (docs/app.md); its inputs are as they
        # were before the page's "Downscale to fit": a client resizes its own images, and its
        # calls keep working
        request = UpscaleRequest(model_id, mode_id, int(jpeg_quality), upload, gt_upload, which)
        for answer in run_request(ctx, request, progress):
            yield answer.values()

    def on_page_run(
        model_id: str,
        mode: Mode,
        jpeg_quality: float,
        upload: str | None,
        gt_upload: str | None,
        before: Before,
        fit: bool,
        model_b: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> Iterator[tuple[Any, ...]]:
        if not upload:  # a hint, not an error: nothing failed, and no panel should say so
            gr.Warning("Choose an image first: upload one, paste one, or pick an example below.")
            yield tuple(gr.skip() for _ in range(len(tab.results) + len(tab.shown_with)))
            return
        b = page_model_b(pool, model_id, model_b)
        request = UpscaleRequest(model_id, mode, int(jpeg_quality), upload, gt_upload, before, bool(fit), b)
        try:
            for answer in run_request(ctx, request, progress):
                left, name = left_side(answer.kept, before), answer.kept.name
                pair = gr.ImageSlider(value=answer.slider, label=slider_label(left, name))
                caption = gr.Markdown(slider_caption(left, name), visible=True)
                yield (pair, *answer.values()[1:], caption, *no_detail)
        except gr.Error as e:
            # The message stays until dismissed; the panels drop what does not answer this
            # request, and none of them is marked as failed (an API client gets the error).
            gr.Warning(e.message, duration=None)
            cleared = _cleared()
            yield (*cleared[:7], gr.Markdown(visible=False), *cleared[7:])

    def on_compare(kept: Kept | None, before: Before) -> Iterator[Any]:
        if kept is None or kept.other_name:  # nothing shown, or model B on the left
            yield gr.skip(), gr.skip()
            return
        folder = Path(tempfile.mkdtemp(dir=ctx.workdir))
        try:
            left = BEFORE_NAMES[before]
            pair = gr.ImageSlider(value=kept.previews.pair(before, folder), label=slider_label(left, kept.name))
            yield pair, gr.Markdown(slider_caption(left, kept.name), visible=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def on_input_click(kept: Kept | None, evt: gr.SelectData) -> Iterator[Any]:
        # (the slider, a gr.ImageSlider, reports no clicks: the model input takes them)
        folder = Path(tempfile.mkdtemp(dir=ctx.workdir))
        try:
            view = detail_view(kept, evt.index, folder) if kept is not None else None
            if view is None:
                yield gr.skip(), gr.skip()
                return
            items, note = view
            yield gr.Gallery(value=items, visible=True), gr.Markdown(note, visible=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def on_model(model_id: str, b: str) -> Any:
        return gr.Dropdown(**model_b_state(pool, model_id, b))

    def on_mode(mode: str) -> tuple[Any, Any, Any]:
        simulate = mode == "simulate"
        return gr.Slider(visible=simulate), gr.Accordion(visible=not simulate), gr.Image(label=UPLOAD_LABELS[mode])

    private: dict[str, Any] = {"api_visibility": "private"}
    tab.model.change(on_model, [tab.model, tab.model_b], tab.model_b, **private, show_progress="hidden")
    tab.model_b.change(lambda b: gr.Radio(visible=not b), tab.model_b, tab.compare, **private, show_progress="hidden")
    tab.mode.change(on_mode, tab.mode, [tab.quality, tab.gt_box, tab.image], **private)
    checked = [*tab.results, tab.detail, tab.detail_note, tab.caption, tab.upload_note, tab.fit]
    for trigger in (tab.image.change, tab.model.change, tab.model_b.change, tab.mode.change, tab.gt.change):
        # a header read: never waits behind an upscale
        trigger(on_input, [tab.model, tab.mode, tab.image], checked, **private, show_progress="hidden",
                concurrency_limit=None)  # fmt: skip
    inputs = [tab.model, tab.mode, tab.quality, tab.image, tab.gt, tab.compare, tab.fit, tab.model_b]
    tab.run.click(on_page_run, inputs, [*tab.results, *tab.shown_with], **private, concurrency_id="upscale")
    tab.lr_preview.select(on_input_click, tab.kept, [tab.detail, tab.detail_note], **private).then(
        None, js=_DETAIL_INTO_VIEW_JS, **private
    )
    tab.api_run.click(on_run, inputs[:6], tab.results, api_name="upscale", concurrency_id="upscale")
    tab.compare.change(on_compare, [tab.kept, tab.compare], [tab.slider, tab.caption], **private)
