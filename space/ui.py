"""The Gradio app: components wired to the rtsr library, and nothing else.

Four tabs: Upscale (rtsr.serving), Leaderboard (rtsr.leaderboard), Submit (space.submit,
the request store) and About (space.about); the page refreshes what the store changes.
Errors a user can act on (rtsr's own exceptions) become a ``gr.Error`` with their one-line
message; anything else is logged with its traceback and shown
as a one-line internal error, and the server stays up.
"""

from __future__ import annotations

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

from rtsr.constants import JPEG_QUALITY, TRACK_SCALES
from rtsr.engines import fidelity_text
from rtsr.errors import InputError, RTSRError, first_line
from rtsr.leaderboard import (
    datasets,
)
from rtsr.serving import (
    STAGES,
    Mode,
    ModelPool,
    Previews,
    UpscaleResult,
    default_max_input_pixels,
    default_one_pass_pixels,
    default_tile,
    encode_png,
    megapixels,
    serve,
)
from rtsr.submissions.requests import Store
from rtsr.submissions.sandbox import isolation_note
from space.about import ABOUT, INTRO, SUBMIT_INTRO, TITLE
from space.about import CSS as ABOUT_CSS
from space.doors import safe_name, save_data_url
from space.leaderboard_tab import Board, LeaderboardView, build_leaderboard_tab, errors_markdown, track_label
from space.settings import Settings
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

#: The page's styles, each part from the module that builds what it styles (``launch(css=...)``).
PAGE_CSS = ABOUT_CSS

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
        f"Inputs up to {megapixels(max_input_pixels)} reach the model; above {megapixels(one_pass)} they run in"
        f" tiles of {default_tile(pool.device)} px"
    )
    unisolated = isolation_note()
    sandbox = (
        f"\n\n⚠️ Models run with resource limits but {unisolated}."
        if unisolated
        else "\n\nModels run in a sandbox: no network, read-only files, bounded memory and processes."
    )
    engines = (
        "Each model runs in the fastest engine whose output stays within 45 dB PSNR of its FP32 output"
        " (checked once per model; each result names its engine)"
    )
    if pool.device.type == "cuda":
        return f"Running on **{pool.device_name}**. {engines}. {limit}.{sandbox}"
    return (
        f"⚠️ **This host has no GPU**: models run on the CPU ({pool.device_name}), so runtimes are far from the"
        f" challenge's FP16 GPU figures. {engines}. {limit} (a 1080p frame is 2.07 MP).{sandbox}"
    )


def engine_markdown(result: UpscaleResult) -> str:
    """Which engine ran and how faithful it is, and whether the input was tiled."""
    choice = result.engine
    fidelity = fidelity_text(choice.fidelity_db)
    line = f"Engine: **{choice.label}** ({fidelity})"
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


def metrics_markdown(result: UpscaleResult) -> str:
    """The metrics table of a request, or a note that there is no ground truth."""
    if result.metrics is None or result.bicubic_metrics is None:
        return "*No ground truth: choose **Simulate the challenge**, or add a ground truth, to measure.*"
    rows = [("**" + result.model.name + "**", result.metrics), ("Bicubic", result.bicubic_metrics)]
    lines = ["| | PSNR RGB (dB) | SSIM RGB | PSNR Y (dB) | SSIM Y |", "|---|---:|---:|---:|---:|"]
    for name, m in rows:
        lines.append(f"| {name} | {m.psnr_rgb:.3f} | {m.ssim_rgb:.4f} | {m.psnr_y:.3f} | {m.ssim_y:.4f} |")
    gain, score = result.psnr_gain, result.score
    assert gain is not None and score is not None  # both exist whenever metrics do
    lines.append("")
    lines.append(
        f"**Gain over bicubic: {gain:+.3f} dB** · **score {score:.2f}** on this image at {result.forward_ms:.1f} ms"
        f" ({result.device_type.upper()}, {result.engine.label}; the official scores are FP16 on an RTX 3090"
        " at 4K, so compare with care)"
    )
    return "\n".join(lines)


def timing_markdown(result: UpscaleResult, request_ms: float) -> str:
    """The request's timings: the model's forward, the server time and the split by stage."""
    timer = "CUDA events" if result.device_type == "cuda" else "wall clock"
    split = " · ".join(f"{stage} {result.timings_ms[stage]:.0f}" for stage in STAGES if stage in result.timings_ms)
    h, w = result.lr.shape[:2]
    return (
        f"**Model forward: {result.forward_ms:.1f} ms** ({timer}) · **request: {request_ms:.0f} ms** server time\n\n"
        f"{result.device} · input {w}x{h} → {w * result.model.scale}x{h * result.model.scale}\n\n"
        f"{engine_markdown(result)}\n\nms by stage: {split}"
    )


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
    return gr.Error(f"internal error ({first_line(error)}); the request was not completed", duration=None)


def model_choices(pool: ModelPool) -> list[tuple[str, str]]:
    """The Model dropdown's choices: one list grouped by track (Track 1 first), so that both
    tracks' ids are valid values of one component."""
    return [(f"Track {t} (x{s}) · {d.name}", d.id) for t, s in TRACK_SCALES.items() for d in pool.descriptors(s)]


def _build_upscale_tab(pool: ModelPool, settings: Settings, workdir: Path, inline_dir: Path) -> gr.Dropdown | None:
    max_pixels = settings.max_input_pixels or default_max_input_pixels(pool.device)
    serve_on_gpu = on_gpu(serve)
    tracks = [t for t, s in TRACK_SCALES.items() if pool.descriptors(s)]
    choices = model_choices(pool)
    # a learned model rather than bicubic (no parameters), which heads each track
    default = next((d.id for t in tracks for d in pool.descriptors(TRACK_SCALES[t]) if d.params > 0), None)

    gr.Markdown(host_note(pool, max_pixels), elem_id="host-note")
    if pool.failures:
        failed = "\n".join(f"- `{k}`: {v}" for k, v in pool.failures.items())
        gr.Markdown(f"⚠️ Registered models that failed to load and are not served:\n{failed}", elem_id="load-failures")
    if not tracks:
        gr.Markdown("**No registered model could be loaded**, so there is nothing to run.")
        return None

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(
                choices,
                value=default or choices[0][1],
                label="Model",
                info=" · ".join(track_label(t) for t in tracks),
                elem_id="model",
            )
            mode = gr.Radio(MODE_CHOICES, value="simulate", label="Mode", elem_id="mode")
            quality = gr.Slider(1, 100, value=JPEG_QUALITY, step=1, label="JPEG quality of the simulated input")
            upload_limits = (inline_dir, settings.max_file_bytes, settings.temp_file_age)
            image = image_upload(
                *upload_limits,
                sources=["upload", "clipboard"],
                label="Image (the ground truth in simulate mode)",
                height=320,
                elem_id="upload",
            )
            with gr.Accordion("Ground truth (optional, upscale mode)", open=False, visible=False) as gt_box:
                gt = image_upload(*upload_limits, sources=["upload"], label="Ground truth, x scale of the input")
            run = gr.Button("Upscale", variant="primary", elem_id="run")
            examples = sorted(EXAMPLES_DIR.glob("*.png"))
            if examples:
                gr.Examples(
                    [[str(p)] for p in examples],
                    inputs=[image],
                    label="Examples (scikit-image's photos)",
                    api_visibility="private",  # the page's: it loads an example into the upload
                )
        with gr.Column(scale=3, min_width=480):
            slider = gr.ImageSlider(type="filepath", label="Before / after", max_height=640, elem_id="slider")
            compare = gr.Radio(COMPARE_CHOICES, value="bicubic", label="Before")
            download = gr.File(label="Full-resolution PNG", interactive=False, elem_id="download")
            metrics = gr.Markdown(elem_id="metrics")
            timing = gr.Markdown(elem_id="timing")
            lr_preview = gr.Image(label="Model input (in simulate mode, the degraded upload)", interactive=False)
            with gr.Accordion("Details (JSON)", open=False):
                details = gr.JSON(elem_id="details")
    # JPEG bytes only (a few MB at 4K), not the arrays; dropped an hour after the last use
    last = gr.State(None, time_to_live=3600)

    def on_mode(mode_id: str) -> tuple[Any, Any]:
        simulate = mode_id == "simulate"
        return gr.Slider(visible=simulate), gr.Accordion(visible=not simulate)

    def on_run(
        model_id: str,
        mode_id: Mode,
        jpeg_quality: float,
        upload: str | None,
        gt_upload: str | None,
        which: Before,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for a progress bar)
    ) -> Iterator[tuple[Any, ...]]:
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
                result = serve_on_gpu(
                    pool,
                    model_id,
                    upload,
                    mode=mode_id,
                    jpeg_quality=int(jpeg_quality),
                    gt=gt_upload if mode_id == "upscale" else None,
                    max_input_pixels=max_pixels,
                    on_stage=stage,
                    on_tile=tile,
                )
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
            slider_value = previews.pair(which, folder)
            lr_path = folder / "input.jpg"
            lr_path.write_bytes(previews.lr)
            shown = (slider_value, metrics_markdown(result), timing_markdown(result, request_ms))
            yield (*shown, summary, None, str(lr_path), previews)
            # The lossless PNG only for download, after the comparison is on screen. The last
            # yield repeats every value: it is what an API client receives.
            progress(0.95, desc="writing the full-resolution PNG")
            t_png = time.perf_counter()
            h, w = result.sr.shape[:2]
            png = encode_png(result.sr, folder / f"{result.model.id}_{w}x{h}.png")
            summary = {**summary, "png_ms": (time.perf_counter() - t_png) * 1e3}
            yield (*shown, summary, str(png), str(lr_path), previews)
        finally:
            # Gradio has copied every yielded file into its own cache by now.
            shutil.rmtree(folder, ignore_errors=True)
            for path in (upload, gt_upload):  # an inline image's file is this request's alone
                if path and Path(path).is_relative_to(inline_dir):
                    shutil.rmtree(Path(path).parent, ignore_errors=True)
            logger.info("upscale finished: %s in %.0f ms", model_id, (time.perf_counter() - t0) * 1e3)

    def on_compare(previews: Previews | None, which: Before) -> Iterator[Any]:
        if previews is None:
            yield gr.skip()
            return
        folder = Path(tempfile.mkdtemp(dir=workdir))
        try:
            yield previews.pair(which, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    mode.change(on_mode, mode, [quality, gt_box], api_visibility="private")
    run.click(
        on_run,
        [model, mode, quality, image, gt, compare],
        [slider, metrics, timing, details, download, lr_preview, last],
        api_name="upscale",
    )
    compare.change(on_compare, [last, compare], slider, api_visibility="private")
    return model


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
                model = _build_upscale_tab(pool, settings, workdir, inline_dir)
            with gr.Tab("Leaderboard", id="leaderboard"):
                leaderboard = build_leaderboard_tab(board, workdir)
            if store is not None:
                with gr.Tab("Submit", id="submit"):
                    submit_tab = build_submit_tab(store, settings.daily_limit, SUBMIT_INTRO)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)
        if store is not None and submit_tab is not None:
            _wire_refresh(Live(pool, board, store, settings.refresh), model, leaderboard, submit_tab)
    return demo


class Live:
    """The page's view of what changes while it runs: the evaluated models (``pool``), the
    leaderboard (``board``) and the queues (``store``). The page asks every
    :data:`POLL_S` seconds; the store's state is one cheap query, and the models and the
    leaderboard are read again only when it changed (a request made, claimed, finished or
    failed) or ``period`` seconds went by, once for all sessions."""

    def __init__(self, pool: ModelPool, board: Board, store: Store, period: float) -> None:
        self.pool, self.board, self.store, self.period = pool, board, store, period
        self._lock = threading.Lock()
        self._version, self._loaded_at = queue_version(store), time.monotonic()

    def current(self) -> str:
        """The state the page should show: reloads first if the store changed or the period
        passed; returns a token that changes whenever what is shown may have."""
        version = queue_version(self.store)
        with self._lock:
            if version != self._version or time.monotonic() - self._loaded_at >= self.period:
                added = self.pool.refresh()
                self.board.reload()
                if added:
                    logger.info("now serving %s", ", ".join(added))
                self._version, self._loaded_at = version, time.monotonic()
            return f"{self._version}@{self._loaded_at}"


#: Seconds between the page's looks at the store (each one SQLite query).
POLL_S = 5.0


def _wire_refresh(
    live: Live, model: gr.Dropdown | None, leaderboard: LeaderboardView, submit_tab: dict[str, Any]
) -> None:
    seen = gr.State("")
    timer = gr.Timer(POLL_S)
    model_out = [model] if model is not None else []
    outputs = [
        seen,
        *model_out,
        leaderboard.errors,
        leaderboard.dataset,
        *leaderboard.outputs,
        *submit_tab["outputs"],
    ]

    def on_tick(last: str, *controls: Any) -> Iterator[list[Any]]:
        token = live.current()
        if token == last:
            yield [gr.skip()] * len(outputs)
            return
        # controls of a tab never opened may come as None
        track_id, dataset_name, source_names, y, x, text = controls
        track_id = track_id or 1
        names = datasets(live.board.frame, track_id)
        dataset_name = dataset_name if dataset_name in names else (names[0] if names else None)
        updates: list[Any] = [token]
        if model is not None:
            updates.append(gr.Dropdown(choices=model_choices(live.pool)))
        updates += [errors_markdown(live.board), gr.Dropdown(choices=names, value=dataset_name)]
        for view in leaderboard.view(track_id, dataset_name, source_names, y or "score", x or "runtime_ms", text or ""):
            updates += list(view)
        updates += submit_tab["refresh"]()
        yield updates

    # every open page ticks: unlimited concurrency, so that ticks never wait behind an upscale
    # (or fill the queue that upscales wait in); most return at once with nothing to change
    timer.tick(
        on_tick,
        [seen, *leaderboard.inputs],
        outputs,
        api_visibility="private",
        show_progress="hidden",
        concurrency_limit=None,
    )
