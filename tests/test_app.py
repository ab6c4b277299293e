"""The app as users and API clients reach it: ``python app.py`` in a child process, driven
with gradio_client, its answers checked against rtsr's library on the same arrays."""

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from rtsr.degradation import crop_for_scale, degrade
from rtsr.engines import EngineChoice, EngineSpec, build_engine, serving_candidates
from rtsr.inference import upscale
from rtsr.metrics import measure
from rtsr.models import Bicubic
from rtsr.scoring import score
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry, entry_for
from rtsr.submissions.submission import open_submission
from tests.support.app import APP_SETTINGS, RunningApp
from tests.support.data import ROOT, photo
from tests.support.submissions import make_submission

EXAMPLES = ROOT / "examples"
SET5_BIRD = ROOT / "testsets" / "Set5" / "bird.png"
CPU = torch.device("cpu")


def read(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def predict(app: RunningApp, tmp_path, **request):
    """One /upscale call; returns its six outputs."""
    client = Client(app.url, verbose=False, download_files=str(tmp_path / "downloads"))
    arguments = {"mode_id": "simulate", "jpeg_quality": 90, "gt_upload": None, "which": "bicubic", **request}
    return client.predict(**arguments, api_name="/upscale")


def test_upscale_returns_the_models_own_output_at_the_scaled_size(app, tmp_path):
    lr = photo("chelsea")  # 300x451: odd width
    Image.fromarray(lr).save(tmp_path / "chelsea.png")
    slider, metrics_md, timing_md, details, png, model_input = predict(
        app, tmp_path, model_id="rtsrn-x3", mode_id="upscale", upload=handle_file(tmp_path / "chelsea.png"), which="lr"
    )
    sr = read(png)
    assert sr.shape == (900, 1353, 3)
    assert details["output_size"] == [900, 1353] and details["input_size"] == [300, 451]
    # the PNG is the registered model's own output on the upload, run here by hand in the engine
    # the app chose: the fastest this host has that holds 45 dB to FP32 (bf16 on the test host)
    engine = EngineChoice.from_dict(details["engine"])
    assert engine.spec == serving_candidates(CPU)[0] and engine.fidelity_db >= 45
    module = Registry.read(BUNDLED_REGISTRY).load("rtsrn-x3").module.eval()
    expected = upscale(build_engine(module, CPU, engine.spec), lr, 3, CPU, "fp32")
    assert np.abs(sr.astype(int) - expected).max() <= 1  # threads may round a last bit differently
    assert peak_signal_noise_ratio(upscale(module, lr, 3, CPU, "fp32"), sr) >= 45
    before, after = (read(p) for p in slider)
    assert before.shape == after.shape == (900, 1353, 3)
    # "before" is the LR input itself, each pixel repeated 3x3, through the JPEG preview
    # (quality 92: 44.3 dB on this photo; the image mirrored scores 14.6)
    nearest = lr.repeat(3, axis=0).repeat(3, axis=1)
    assert peak_signal_noise_ratio(nearest, before) > 40
    assert details["metrics"] is None and "No ground truth" in metrics_md
    assert read(model_input).shape == lr.shape
    assert "wall clock" in timing_md and "input 451x300 → 1353x900" in timing_md
    assert f"Engine: **{engine.label}** ({engine.fidelity_db:.1f} dB from FP32)" in timing_md
    assert details["tiles"] == 1 and "Tiled" not in timing_md


def test_simulate_metrics_equal_rtsr_metrics_on_the_same_arrays(app, tmp_path):
    gt = read(str(EXAMPLES / "coffee.png"))  # 400x600
    *_, metrics_md, timing_md, details, png, _ = predict(
        app, tmp_path, model_id="rtsrn-x2", jpeg_quality=75, upload=handle_file(EXAMPLES / "coffee.png")
    )
    sr = read(png)
    lr = degrade(crop_for_scale(gt, 2), 2, 75)
    bicubic = upscale(Bicubic(2), lr, 2, CPU, "fp32")
    ours, reference = measure(sr, gt), measure(bicubic, gt)
    for key, value in ours.as_dict().items():
        assert details["metrics"][key] == pytest.approx(value, abs=1e-9), key
    for key, value in reference.as_dict().items():
        assert details["bicubic"][key] == pytest.approx(value, abs=1e-9), key
    gain = ours.psnr_rgb - reference.psnr_rgb
    assert gain > 0.3 and details["psnr_gain"] == pytest.approx(gain)
    assert details["score"] == pytest.approx(score(ours.psnr_rgb, details["forward_ms"], reference.psnr_rgb))
    assert details["jpeg_quality"] == 75 and details["device_type"] == "cpu"
    # 400x600 divides by 2: nothing cropped, nothing downscaled
    assert details["upload_size"] == [400, 600] and details["downscaled_from"] is None
    assert details["precision"] == details["engine"]["precision"] == serving_candidates(CPU)[0].precision
    # four decimals, as the metric specification prints them everywhere
    row = f"| **RTSRN x2** | {ours.psnr_rgb:.4f} | {ours.ssim_rgb:.4f} | {ours.psnr_y:.4f} | {ours.ssim_y:.4f} |"
    assert row in metrics_md
    assert f"Gain over bicubic: {gain:+.3f} dB" in metrics_md
    for stage in ("decode", "degrade", "model", "bicubic", "metrics", "encode"):
        assert details["timings_ms"][stage] >= 0 and f"{stage} " in timing_md
    assert details["request_ms"] >= sum(details["timings_ms"].values()) - 1


def test_upscale_mode_measures_against_an_uploaded_ground_truth(app, tmp_path):
    gt = read(str(EXAMPLES / "coffee.png"))
    Image.fromarray(degrade(gt, 2, 90)).save(tmp_path / "lr.png")
    *_, metrics_md, _, details, png, _ = predict(
        app,
        tmp_path,
        model_id="rtsrn-x2",
        mode_id="upscale",
        upload=handle_file(tmp_path / "lr.png"),
        gt_upload=handle_file(EXAMPLES / "coffee.png"),
    )
    ours = measure(read(png), gt)
    assert details["metrics"] == pytest.approx(ours.as_dict(), abs=1e-9)
    assert details["jpeg_quality"] is None and details["psnr_gain"] > 0.3
    assert f"| **RTSRN x2** | {ours.psnr_rgb:.4f}" in metrics_md


def test_an_input_above_the_one_pass_size_is_tiled_and_the_page_says_so(app, tmp_path):
    # 1024x600 (0.61 MP) is above the 960x540 a CPU host runs in one pass: 2x2 tiles of 512
    lr = np.asarray(Image.fromarray(photo("astronaut")).resize((1024, 600), Image.Resampling.BICUBIC))
    Image.fromarray(lr).save(tmp_path / "wide.png")
    _, _, timing_md, details, png, _ = predict(
        app, tmp_path, model_id="rtsrn-x2", mode_id="upscale", upload=handle_file(tmp_path / "wide.png")
    )
    assert details["tiles"] == 4 and details["tiles_exact"] is True
    assert "Tiled: the input ran in **4 tiles**, each with the model's receptive field around it" in timing_md
    # the tiles equal one pass of the same engine, run here by hand
    engine = build_engine(Registry.read(BUNDLED_REGISTRY).load("rtsrn-x2").module, CPU, EngineSpec.parse(
        f"{details['engine']['engine']}-{details['engine']['precision']}"
    ))  # fmt: skip
    assert np.abs(read(png).astype(int) - upscale(engine, lr, 2, CPU, "fp32")).max() <= 1


def test_bad_requests_get_one_line_messages_and_the_app_stays_up(app, tmp_path):
    big = np.zeros((1100, 2000, 3), np.uint8)  # 2.2 MP: above the 1080p a CPU host takes
    Image.fromarray(big).save(tmp_path / "big.png")
    shutil.copy(EXAMPLES / "astronaut.png", tmp_path / "lr.png")
    Image.fromarray(photo("coffee")).save(tmp_path / "wrong_gt.png")
    (tmp_path / "notes.png").write_text("not an image")
    whole = (EXAMPLES / "coffee.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    big, lr, wrong_gt = (handle_file(tmp_path / name) for name in ("big.png", "lr.png", "wrong_gt.png"))
    cases = [
        ({"mode_id": "upscale", "upload": big}, "this host upscales inputs of at most 2.07 MP"),
        (
            {"mode_id": "upscale", "upload": lr, "gt_upload": wrong_gt},
            "ground truth is 600x400, but x2 of the 512x512 input is 1024x1024",
        ),
        ({"upload": None}, "Upload an image or pick an example first."),
        (
            {"upload": handle_file(tmp_path / "notes.png")},
            "notes.png: not an image file (or not one of bmp, jpeg, jpg, png, tif, tiff, webp)",
        ),
        (
            {"mode_id": "upscale", "upload": handle_file(tmp_path / "truncated.png")},
            "truncated.png: not a readable image (the file is cut short)",
        ),
    ]
    for request, message in cases:
        with pytest.raises(AppError) as error:
            predict(app, tmp_path, model_id="rtsrn-x2", **request)
        text = str(error.value)
        assert message in text and "\n" not in text.strip() and "Traceback" not in text
        # the file's own name, never where the server keeps it, nor Python's class names
        assert "/" not in text and "Error" not in text.replace("AppError", ""), text
    # still serving
    *_, details, png, _ = predict(app, tmp_path, model_id="bicubic-x2", upload=handle_file(tmp_path / "lr.png"))
    assert read(png).shape == (512, 512, 3) and details["psnr_gain"] == pytest.approx(0.0, abs=1e-12)


def test_the_api_lists_registered_models_by_track(app):
    info = Client(app.url, verbose=False).view_api(print_info=False, return_format="dict")
    (endpoint,) = info["named_endpoints"].values()
    model = next(p for p in endpoint["parameters"] if p["parameter_name"] == "model_id")
    assert model["type"]["enum"] == ["bicubic-x2", "rtsrn-x2", "bicubic-x3", "rtsrn-x3"]  # by track
    assert model["parameter_default"] == "rtsrn-x2"
    # the page's own controls (downscale to fit, model B) are not inputs of the API: its calls stay as they were
    names = [p["parameter_name"] for p in endpoint["parameters"]]
    assert names == ["model_id", "mode_id", "jpeg_quality", "upload", "gt_upload", "which"]


def test_examples_are_scikit_images_photos():
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        np.testing.assert_array_equal(read(str(EXAMPLES / f"{name}.png")), getattr(data, name)())


def run_app(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python app.py ARGS`` to its end, with a request store of its own (never the repository's)."""
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RTSR_STORE": str(store), **(env or {})},
    )


def test_app_help_lists_every_setting_and_its_variable(tmp_path):
    result = run_app(tmp_path / "store", "--help")
    assert result.returncode == 0
    for flag, variable in APP_SETTINGS:
        assert flag in result.stdout and variable in result.stdout


def test_app_refuses_a_broken_registry_in_one_line(tmp_path):
    (tmp_path / "registry.json").write_text("{not json")
    result = run_app(tmp_path / "store", "--registry", str(tmp_path / "registry.json"))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'registry.json'}: not a valid registry")


def test_app_refuses_a_bad_sandbox_setting_in_one_line(tmp_path):
    result = run_app(tmp_path / "store", env={"RTSR_SANDBOX": "docker"})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: $RTSR_SANDBOX must be auto, bubblewrap or none, got 'docker'"


def test_app_serves_what_loads_and_says_what_did_not(tmp_path):
    registry = Registry(tmp_path / "registry.json", [])
    for name in ("tiny", "tampered"):
        registry.add(entry_for(open_submission(make_submission(tmp_path / name)), tmp_path, name))
    registry.write()
    (tmp_path / "tampered" / "arch.py").write_text("import os\n")
    board = tmp_path / "leaderboard"
    shutil.copytree(ROOT / "leaderboard", board)
    (board / "evaluations" / "broken.json").write_text("{")
    running = RunningApp("--registry", registry.path, "--leaderboard-dir", board, log=tmp_path / "app.log").wait_ready()
    try:
        with urllib.request.urlopen(running.url + "config") as response:
            config = json.loads(response.read())
        texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
        # the reason may quote a model's own error: shown as text (space.submit.plain), not markup
        assert "- tampered: tampered: arch.py does not match its registered sha256" in texts
        assert f"left out of the leaderboard: {board / 'evaluations' / 'broken.json'}: not a readable JSON" in texts
        client = Client(running.url, verbose=False, download_files=str(tmp_path / "downloads"))
        *_, details, png, _ = client.predict(
            model_id="tiny",
            mode_id="simulate",
            jpeg_quality=90,
            upload=handle_file(EXAMPLES / "chelsea.png"),
            gt_upload=None,
            which="bicubic",
            api_name="/upscale",
        )
        assert details["model"]["id"] == "tiny" and read(png).shape == (300, 450, 3)
    finally:
        running.stop()
    log = (tmp_path / "app.log").read_text()
    assert "not serving tampered" in log


# --- the app's doors: raw HTTP to 127.0.0.1, as a client that is not gradio_client would ----


def request(app: RunningApp, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """``(status, body)`` of one request to the app (GET without a body, POST with one)."""
    sent = urllib.request.Request(app.url + path.lstrip("/"), data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(sent, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def upload(app: RunningApp, name: str, content: bytes) -> tuple[int, bytes]:
    """POST one file to /gradio_api/upload as multipart, as the page does."""
    boundary = "rtsr-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return request(app, "gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def call_upscale(app: RunningApp, image: dict, **inputs) -> tuple[str, object]:
    """/gradio_api/call/upscale, then its result: ``("complete", outputs)``, ``("error", message)``
    or ``("refused", detail)`` when the call is not taken."""
    arguments = {"model_id": "rtsrn-x2", "mode_id": "simulate", "jpeg_quality": 90, "gt_upload": None, **inputs}
    data = [arguments[k] for k in ("model_id", "mode_id", "jpeg_quality")]
    data += [image, arguments["gt_upload"], "bicubic"]
    body = json.dumps({"data": data}).encode()
    status, answer = request(app, "gradio_api/call/upscale", body, {"Content-Type": "application/json"})
    if status != 200:
        return "refused", json.loads(answer)["detail"]
    event_id = json.loads(answer)["event_id"]
    _, stream = request(app, f"gradio_api/call/upscale/{event_id}", timeout=300)
    events = stream.decode().strip().split("\n\n")
    kind, payload = events[-1].split("\n", 1)
    value = json.loads(payload.removeprefix("data: "))
    return kind.removeprefix("event: "), value["error"] if isinstance(value, dict) and "error" in value else value


FILE_DATA = {"_type": "gradio.FileData"}


def uploaded_file(app: RunningApp, path) -> dict:
    """Upload ``path``; return the file as a request names it."""
    status, answer = upload(app, path.name, path.read_bytes())
    assert status == 200, answer
    (server_path,) = json.loads(answer)
    return {"path": server_path, "orig_name": path.name, "meta": FILE_DATA}


def test_every_route_that_runs_a_model_waits_in_the_queue(tmp_path):
    # a 1080p ground truth: about 2 s a request on the 2-core CPU host, long enough to overlap
    frame = np.tile(photo("coffee"), (3, 4, 1))[:1080, :1920]
    Image.fromarray(frame).save(tmp_path / "frame.png")
    running = RunningApp("--queue-size", "2", "--concurrency", "1", log=tmp_path / "app.log").wait_ready()
    try:
        image = uploaded_file(running, tmp_path / "frame.png")
        # Gradio's direct route, which skipped the queue, and the page's own handlers are closed
        run = json.dumps({"data": ["rtsrn-x2", "simulate", 90, image, None, "bicubic"]}).encode()
        for path in ("gradio_api/run/upscale", "gradio_api/api/upscale", "gradio_api/run/on_view"):
            status, answer = request(running, path, run, {"Content-Type": "application/json"})
            assert status == 404 and "does not accept direct HTTP POST requests" in json.loads(answer)["detail"]
        for name in ("on_view", "on_mode", "on_compare", "on_track", "v2/on_view"):
            status, answer = request(
                running, f"gradio_api/call/{name}", b'{"data": []}', {"Content-Type": "application/json"}
            )
            assert status == 404 and json.loads(answer)["detail"].startswith("no API endpoint named"), name
        # eight at once against a queue of 2 and one at a time: the excess is turned away
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: call_upscale(running, image), range(8)))
    finally:
        running.stop()
    kinds = [kind for kind, _ in answers]
    refused = [detail for kind, detail in answers if kind == "refused"]
    assert kinds.count("complete") + len(refused) == 8, answers
    assert 1 <= kinds.count("complete") <= 3  # the one running and the two waiting
    assert refused and all(detail.startswith("Queue is full. Max size is 2") for detail in refused)
    # the log shows the requests one at a time: each starts after the one before finished
    lines = [line for line in (tmp_path / "app.log").read_text().splitlines() if "space.upscale_tab: upscale " in line]
    steps = ["started" if "upscale started" in line else "finished" for line in lines]
    assert steps == ["started", "finished"] * kinds.count("complete"), lines
    print(f"8 direct calls, queue 2, concurrency 1: {kinds.count('complete')} ran in turn, {len(refused)} refused")


def app_temp_folder(tmp: Path) -> Path:
    """The ``rtsr-space-*`` folder of the one app started with ``TMPDIR=tmp``."""
    (folder,) = tmp.glob("rtsr-space-*")
    return folder


def stored_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (some may go while it counts)."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def test_uploads_are_bounded_in_size_count_and_age(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    limits = ("--max-file-size", "2mb", "--temp-dir-size", "8mb", "--temp-file-age", "6")
    running = RunningApp(*limits, env={"TMPDIR": str(tmp)}, log=tmp_path / "app.log").wait_ready()
    try:
        folder = app_temp_folder(tmp) / "gradio"
        at_start = stored_bytes(folder)  # the examples and the page's first values, kept
        rng = np.random.default_rng(0)
        # a flood: 24 incompressible files of 1.9 MB, 4 at a time (46 MB sent, 6 times the cap)
        sizes, statuses = [], []
        with ThreadPoolExecutor(4) as pool:
            for status, answer in pool.map(lambda i: upload(running, f"f{i}.bin", rng.bytes(1_900_000)), range(24)):
                statuses.append(status)
                sizes.append(stored_bytes(folder))
                if status == 503:  # uploads under way fill what the examples leave: come back later
                    assert (
                        json.loads(answer)["detail"]
                        == "the server is receiving too many uploads: try again in a minute"
                    )
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 4
        assert max(sizes) <= 8 * 1024**2, sizes
        print(
            f"upload flood: {statuses.count(200)} stored, {statuses.count(503)} refused; folder at most {max(sizes)} B"
        )
        # the newest upload stays (the oldest are evicted first), and still the examples
        status, answer = upload(running, "last.bin", b"x" * 1000)
        last = Path(json.loads(answer)[0])
        assert status == 200 and last.is_file()
        assert stored_bytes(folder) <= 8 * 1024**2
        assert sorted(p.name for p in folder.rglob("*.png"))[:1] == ["astronaut.png"]
        # an upload declaring more than the limit is refused from its headers, before its body
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
        connection.putrequest("POST", "/gradio_api/upload")
        connection.putheader("Content-Type", "multipart/form-data; boundary=b")
        connection.putheader("Content-Length", str(3 * 1024**2 + 100))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["detail"] == "an upload may be at most 2mb"
        connection.close()
        # many tiny files in one request each count 64 KiB: their number is bounded too
        boundary = "b"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="t{i}.txt"\r\n\r\nx\r\n'
            for i in range(300)
        ]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        status, _ = request(
            running, "gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert status == 200
        upload(running, "next.bin", b"y")  # each upload first makes room
        assert len([p for p in folder.rglob("*") if p.is_file()]) <= 8 * 1024**2 // (64 * 1024)
        # past their age (6 s), every upload goes; the sweep runs every 3 s
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stored_bytes(folder) > at_start:
            time.sleep(1)
        assert stored_bytes(folder) == at_start
        assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.txt"))
        kind, message = call_upscale(running, {"path": str(last), "orig_name": "last.bin", "meta": FILE_DATA})
        assert (kind, message) == (
            "error",
            "last.bin is no longer on the server (uploads are kept 6 s at most, less when space runs short):"
            " upload it again",
        )
    finally:
        running.stop()
    assert not tmp.joinpath(folder.parent.name).exists()  # and the whole folder at the end


def rss_kb(pid: int) -> dict[str, int]:
    """The process's current and peak resident memory, kB (Linux /proc)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k in ("VmRSS", "VmHWM")}


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def running_pid(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie awaiting its reaper)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_an_inline_image_bomb_is_refused_from_its_header_and_sigterm_cleans_up(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    running = RunningApp(env={"TMPDIR": str(tmp)}, log=tmp_path / "app.log").wait_ready()
    try:
        folder = app_temp_folder(tmp)
        assert (folder / "gradio").is_dir()  # Gradio's uploads and cache live inside it
        # the registered models run in a sandboxed process of the app's, in a scratch folder
        sandbox_folders = list(tmp.glob("rtsr-sandbox-*"))
        assert sandbox_folders
        model_process = [p for p in descendants(running.process.pid) if b"sandboxed_models" in cmdline(p)]
        assert model_process
        # 12000x12000 of one colour: 140 KB of PNG that decodes to 432 MB (1.3 GB as RGB)
        buffer = io.BytesIO()
        Image.new("L", (12000, 12000)).save(buffer, "PNG", optimize=True)
        bomb = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        text = "data:image/png;base64," + base64.b64encode(b"not an image at all " * 50).decode()
        before = rss_kb(running.process.pid)
        t0 = time.monotonic()
        cases = [
            ({"path": "bomb.png", "url": bomb, "orig_name": "bomb.png"}, "image is 12000x12000 (144.00 MP)"),
            ({"path": bomb, "meta": {"_type": "gradio.FileData"}}, "image is 12000x12000 (144.00 MP)"),
            ({"path": "x", "url": text, "orig_name": "notes.png"}, "notes.png: not an image file"),
            ({"path": "x", "url": "data:image/png;base64,@@@@", "orig_name": "a.png"}, "a.png: the data: URL's base64"),
            ({"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "passwd: not a file uploaded to this"),
            (
                {"path": "https://example.com/a.png", "meta": {"_type": "gradio.FileData"}},
                "a.png: send the file itself",
            ),
            # without Gradio's mark, a server path is still a file: an image of the server's
            # (the bundled Set5) is refused in the same words as one that does not exist
            ({"path": str(SET5_BIRD)}, "bird.png: not a file uploaded to this"),
            ({"path": "/nonexistent/bird.png"}, "bird.png: not a file uploaded to this"),
            ({"path": "testsets/Set5/bird.png"}, "bird.png: not a file uploaded to this"),
        ]
        for image, message in cases:
            kind, detail = call_upscale(running, image)
            assert kind in ("error", "refused") and message in detail, (kind, detail)
            assert "\n" not in detail and "base64," not in detail and str(tmp) not in detail
        # the ground truth is a file input too
        photo_upload = uploaded_file(running, EXAMPLES / "chelsea.png")
        for gt in ({"path": str(SET5_BIRD)}, {"path": str(SET5_BIRD), "meta": {"_type": "gradio.FileData"}}):
            kind, detail = call_upscale(running, photo_upload, mode_id="upscale", gt_upload=gt)
            assert (kind, detail) == (
                "refused",
                "bird.png: not a file uploaded to this server (POST /gradio_api/upload first)",
            )
        seconds = time.monotonic() - t0
        after = rss_kb(running.process.pid)
        assert seconds < 30  # decoding the bomb took 8.5 s alone; refusing it takes milliseconds
        assert after["VmHWM"] - before["VmHWM"] < 100_000, (before, after)  # < 100 MB: never decoded
        assert not list((folder / "gradio").rglob("inline/*/*"))  # each inline image deleted with its request
        # still serving
        kind, outputs = call_upscale(running, uploaded_file(running, EXAMPLES / "chelsea.png"), model_id="bicubic-x2")
        assert kind == "complete" and outputs[3]["input_size"] == [150, 225]
    finally:
        running.stop()
    assert running.process.returncode == 0
    # SIGTERM: the app's temporary folder, Gradio's inside it, is gone with it, and so are the
    # model process and its scratch folder
    assert not folder.exists() and not list(tmp.glob("rtsr-space-*")) and not (tmp / "gradio").exists()
    assert not [f for f in sandbox_folders if f.exists()]
    assert not [p for p in model_process if running_pid(p)]
    log = (tmp_path / "app.log").read_text()
    assert "Traceback" not in log
    print(
        f"inline bomb: VmHWM {before['VmHWM']} -> {after['VmHWM']} kB, VmRSS {before['VmRSS']} -> {after['VmRSS']} kB"
    )


def test_phone_photos_come_back_upright_and_16_bit_images_are_scaled(app, tmp_path):
    from tests.test_images import jpeg_with_orientation, png_16_bit

    stored = photo("chelsea")[:, :450]  # 300x450, stored sideways as a phone's sensor saw it
    jpeg_with_orientation(tmp_path / "phone.jpg", stored, 6)  # EXIF 6: show turned 90 degrees clockwise
    with Image.open(tmp_path / "phone.jpg") as img:
        upright = np.rot90(np.asarray(img.convert("RGB")), k=-1)
    *_, details, png, _ = predict(
        app, tmp_path, model_id="bicubic-x2", mode_id="upscale", upload=handle_file(tmp_path / "phone.jpg")
    )
    assert details["input_size"] == [450, 300] and details["output_size"] == [900, 600]  # upright, as shown
    assert np.array_equal(read(png), upscale(Bicubic(2), upright, 2, CPU, "fp32"))
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 65536, (60, 80, 3)).astype(np.uint16)
    (tmp_path / "colour16.png").write_bytes(png_16_bit(colour))
    Image.fromarray(colour[..., 0]).save(tmp_path / "gray16.png")
    scaled = np.rint(colour / 257).astype(np.uint8)  # not Pillow's truncation to the high byte
    for name, expected in (("colour16.png", scaled), ("gray16.png", np.dstack([scaled[..., 0]] * 3))):
        *_, details, png, _ = predict(
            app, tmp_path, model_id="bicubic-x2", mode_id="upscale", upload=handle_file(tmp_path / name)
        )
        assert details["input_size"] == [60, 80]
        assert np.array_equal(read(png), upscale(Bicubic(2), expected, 2, CPU, "fp32")), name


def test_a_corrupt_request_store_leaves_the_app_serving_and_the_page_says_so(tmp_path):
    """A store the app cannot read (a corrupt database) is a line on the Submit tab: the app
    starts, upscales and shows its leaderboard."""
    from rtsr.submissions.requests import SqliteStore

    store = tmp_path / "store"
    SqliteStore(store)
    (store / "requests.sqlite").write_bytes(b"this is not a database" * 100)
    running = RunningApp(env={"RTSR_STORE": str(store)}, log=tmp_path / "app.log").wait_ready()
    try:
        status, config = request(running, "config")
        assert status == 200
        assert b"The request store cannot be read" in config and str(store).encode() not in config
        assert b"kept on this machine's disk: a Space loses them when it restarts" in config
        assert b"NTIRE 2023 (reported)" in config  # the leaderboard's other sources
        kind, outputs = call_upscale(running, uploaded_file(running, EXAMPLES / "chelsea.png"), model_id="bicubic-x2")
        assert kind == "complete" and outputs[3]["input_size"] == [150, 225]
    finally:
        running.stop()
    assert "Traceback" not in (tmp_path / "app.log").read_text()


#: A registered model whose forward never returns on an input 200 pixels wide or more (the
#: checks of loading use smaller ones).
HANGING_ARCH = """
import time

import torch.nn.functional as F
from torch import nn


class Hang(nn.Module):
    def forward(self, x):
        if x.shape[-1] >= 200:
            time.sleep(100_000)
        return F.interpolate(x, scale_factor=2, mode="nearest")


def srmodel():
    return Hang()
"""


def test_sigterm_stops_the_app_within_seconds_whatever_a_model_does(tmp_path):
    """A request held by a model that never answers (the app's only model slot) does not keep
    the app from stopping: SIGTERM ends it, its model processes and their scratch folders."""
    import signal
    import threading

    registry = Registry(tmp_path / "registry.json", [])
    folder = make_submission(tmp_path / "hang", HANGING_ARCH, checkpoint=False)
    registry.add(entry_for(open_submission(folder), tmp_path, "hang"))
    registry.write()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    running = RunningApp("--registry", registry.path, env={"TMPDIR": str(tmp)}, log=tmp_path / "app.log").wait_ready()
    try:
        image = uploaded_file(running, EXAMPLES / "chelsea.png")
        # the request waits on the hung model, in a thread of the test's
        threading.Thread(
            target=lambda: call_upscale(running, image, model_id="hang", mode_id="upscale"), daemon=True
        ).start()
        deadline = time.monotonic() + 120
        while not [p for p in descendants(running.process.pid) if b"sandboxed_models" in cmdline(p)]:
            assert time.monotonic() < deadline, "the model process never started"
            time.sleep(0.5)
        time.sleep(5)  # the model is in its forward now (or loading): either way, it holds the slot
        model_process = [p for p in descendants(running.process.pid) if b"sandboxed_models" in cmdline(p)]
        started = time.monotonic()
        os.killpg(running.process.pid, signal.SIGTERM)
        running.process.wait(timeout=60)
        assert time.monotonic() - started < 30
    finally:
        running.stop()
    assert not [p for p in model_process if running_pid(p)]
    assert not list(tmp.glob("rtsr-sandbox-*")) and not list(tmp.glob("rtsr-space-*"))
