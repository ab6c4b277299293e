"""Registered models served from inside the sandbox, for the app.

The app never imports a submission's code. :class:`SandboxedModels` starts one sandboxed
process (``python -m rtsr.submissions.sandboxed_models``, under
:mod:`rtsr.submissions.sandbox`) that loads every submission it is given and answers upscale
requests over a socket: small JSON headers, with the pixels in one shared memory buffer (a
``memfd`` sealed against shrinking, so the process cannot make the app fault on it), which
costs one copy each way instead of a trip through the socket. Nothing from the sandbox is
unpickled: the app reads JSON, and reads pixels only at the size it expects. A process
that dies (a model that crashed it, a limit it hit) fails the request in flight with one
line and is started afresh for the next one.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import math
import mmap
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtsr.constants import SCALES
from rtsr.devices import Precision
from rtsr.engines import EngineChoice
from rtsr.errors import InputError, ModelError, RTSRError, SubmissionError, first_line
from rtsr.models import ModelDescriptor
from rtsr.runtime import RuntimeStats
from rtsr.submissions import sandbox
from rtsr.submissions.sandbox import DEFAULT_LIMITS, Limits, SandboxedProcess
from rtsr.submissions.submission import Submission

logger = logging.getLogger(__name__)

#: The model process runs as long as the app: no wall-clock or CPU-time bound; memory,
#: processes and files as any sandbox.
SERVING_LIMITS = replace(DEFAULT_LIMITS, wall_seconds=None, cpu_seconds=None)
#: Seconds to load every model, and to answer one request (a 1080p frame in FP32 on a 2-core
#: CPU takes about 9 s).
START_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 300.0
#: Largest model input the model process takes, pixels: a 4K frame. The shared buffer holds
#: it and its x3 output (about 250 MB of address space; pages are used only when touched).
MAX_INPUT_PIXELS = 3840 * 2160
SHARED_BYTES = MAX_INPUT_PIXELS * 3 * (1 + 3 * 3)
#: Largest JSON header either side sends.
_MAX_HEADER = 1024 * 1024
#: The mean time per pass the model process reports must be at least this fraction of the
#: time per pass measured outside it (warm-up passes can be slower than timed ones; the
#: input's allocation and the messages add a little).
RUNTIME_WALL_FRACTION = 0.25
#: Milliseconds of the runtime call that are not its passes' and are left out of that
#: comparison: the messages, the random input, the first pass's one-off setup (oneDNN builds
#: its kernels then), and a loaded host's scheduling. A shortened protocol of a few 4 ms
#: passes took 185 ms in all on a busy 2-core host, which without it reads as a forged timer.
#: Over the challenge's 294 passes it forgives under 1 ms a pass.
RUNTIME_CALL_ALLOWANCE_MS = 250.0
_LENGTH = struct.Struct(">I")


# --- framing --------------------------------------------------------------------------------


def send_message(sock: socket.socket, header: dict[str, Any]) -> None:
    """Send a JSON header, prefixed with its length."""
    encoded = json.dumps(header).encode()
    sock.sendall(_LENGTH.pack(len(encoded)) + encoded)


def _receive_exactly(sock: socket.socket, n: int) -> bytes | None:
    buffer = bytearray(n)
    view, got = memoryview(buffer), 0
    while got < n:
        chunk = sock.recv_into(view[got:], n - got)
        if chunk == 0:
            return None
        got += chunk
    return bytes(buffer)


def receive_header(sock: socket.socket) -> dict[str, Any] | None:
    """The next JSON header, or None when the other side has closed the socket.

    Raises:
        ValueError: a header too long, or not a JSON object.
    """
    prefix = _receive_exactly(sock, _LENGTH.size)
    if prefix is None:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > _MAX_HEADER:
        raise ValueError(f"a message header of {length} bytes")
    raw = _receive_exactly(sock, length)
    if raw is None:
        return None
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("a message header that is not a JSON object")
    return header


# --- the app's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upscaled:
    """One image upscaled in the model process."""

    sr: np.ndarray
    #: The forward passes alone, summed over the tiles, ms (timed in the model process).
    forward_ms: float
    engine: EngineChoice
    #: 1 for a whole image.
    tiles: int = 1
    #: Whether the model's receptive field is bounded, so that tiles equal one pass (False:
    #: the model looks at the whole image, and a tiled result only approximates it).
    bounded: bool = True


def _descriptor(data: Any, submission: Submission, entry_id: str) -> ModelDescriptor:
    """A descriptor from the model process's JSON, checked field by field (it comes from the
    process that ran the submission's code); the registry's id and source win."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    params, pad, half = data.get("params"), data.get("pad_multiple"), data.get("supports_half")
    if not (isinstance(params, int) and isinstance(pad, int) and isinstance(half, bool) and 1 <= pad <= 1024):
        raise ValueError(f"bad fields in {str(data)[:200]}")
    # the scale the model process found, where submission.json declares none; every output
    # is checked against it here
    scale = submission.meta.scale or data.get("scale")
    if scale not in SCALES or data.get("scale") != scale:
        raise ValueError(f"a scale of {data.get('scale')!r}, expected {submission.meta.scale or '2 or 3'}")
    return ModelDescriptor(
        id=entry_id,
        name=submission.meta.method or entry_id,
        scale=scale,
        params=params,
        source=submission.source,
        supports_half=half,
        pad_multiple=pad,
    )


def _shared_buffer(size: int) -> tuple[int, mmap.mmap]:
    """A memfd of ``size`` bytes, sealed so that neither side can shrink or grow it (a shrunk
    file would make the app's reads fault), and the app's mapping of it."""
    fd = os.memfd_create("rtsr-pixels", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return fd, mmap.mmap(fd, size)


class SandboxedModels:
    """The given submissions, loaded in one sandboxed process for ``device``.

    After construction, :attr:`descriptors` holds the models that loaded and
    :attr:`failures` why the others did not.

    Raises:
        SubmissionError: the model process could not be started or did not say hello.
    """

    def __init__(
        self,
        submissions: dict[str, Submission],
        device: torch.device,
        limits: Limits = SERVING_LIMITS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.submissions = submissions
        self.device = device
        self.limits = limits
        self.request_timeout_s = request_timeout_s
        self.descriptors: dict[str, ModelDescriptor] = {}
        self.failures: dict[str, str] = {}
        self._process: SandboxedProcess | None = None
        self._lock = threading.Lock()
        self._shared_fd, self._shared = _shared_buffer(SHARED_BYTES)
        if submissions:
            with self._lock:
                self._start()

    def _start(self) -> SandboxedProcess:
        job = {
            "device": self.device.type,
            "entries": [
                {"id": i, "root": str(s.root), "source": s.source, "name": s.name} for i, s in self.submissions.items()
            ],
        }
        process = sandbox.start(
            [sys.executable, "-m", "rtsr.submissions.sandboxed_models", json.dumps(job)],
            None,
            readable=[s.root for s in self.submissions.values()],
            limits=self.limits,
            gpu=self.device.type == "cuda",
        )
        process.channel.settimeout(START_TIMEOUT_S)
        try:
            socket.send_fds(process.channel, [b"m"], [self._shared_fd])
            hello = receive_header(process.channel)
        except (OSError, ValueError) as e:
            hello = None
            logger.warning("the model process sent no hello: %s", e)
        if hello is None or not isinstance(hello.get("descriptors"), dict):
            outcome = process.close()
            raise SubmissionError(f"the sandboxed model process failed to start: {outcome.failure() or 'no answer'}")
        descriptors, failures = {}, dict(hello.get("failures") or {})
        for entry_id, submission in self.submissions.items():
            if entry_id in hello["descriptors"]:
                try:
                    descriptors[entry_id] = _descriptor(hello["descriptors"][entry_id], submission, entry_id)
                except ValueError as e:
                    failures[entry_id] = f"{entry_id}: the model process described it wrongly ({e})"
        self.descriptors = descriptors
        self.failures = {k: str(v)[:500] for k, v in failures.items() if k in self.submissions}
        self._process = process
        return process

    def _running(self) -> SandboxedProcess:
        """The model process, started again if it had died (the caller holds the lock)."""
        if self._process is not None and self._process.alive:
            return self._process
        self._restart("it had died")
        return self._start()

    def _restart(self, reason: str) -> None:
        if self._process is not None:
            outcome = self._process.close()
            level = logging.INFO if reason == "closed" else logging.WARNING
            logger.log(level, "model process ended (%s): %s", reason, outcome.failure() or "exited")
            self._process = None

    def upscale(
        self,
        model_id: str,
        image: np.ndarray,
        precision: Precision,
        engine: str = "eager",
        tile: int = 0,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> Upscaled:
        """Upscale an ``(H, W, 3)`` uint8 image with ``model_id``, in ``engine``: one of
        :data:`rtsr.engines.ENGINES` in ``precision``, ``"auto"`` (the fastest faithful one
        in any precision) or ``"auto-fp32"``/``"auto-fp16"`` (the fastest in that precision);
        in tiles of ``tile`` LR pixels when above 0. The model process times the forward
        passes. ``on_tile(done, total)`` hears of each tile as it is done.

        Raises:
            InputError: the input is larger than :data:`MAX_INPUT_PIXELS`.
            ModelError: the model failed, or its process died or stopped answering (it is
                started again for the next request).
            torch.OutOfMemoryError: the GPU ran out of memory in the model process.
        """
        descriptor = self.descriptors[model_id]
        h, w = image.shape[:2]
        expected = (h * descriptor.scale, w * descriptor.scale, 3)
        if h * w > MAX_INPUT_PIXELS:
            raise InputError(f"a {w}x{h} input is larger than the model process takes ({MAX_INPUT_PIXELS:,} pixels)")
        in_bytes = h * w * 3
        with self._lock:
            process = self._running()
            process.channel.settimeout(self.request_timeout_s)
            try:
                # the input at the start of the shared buffer, the output right after it
                np.frombuffer(self._shared, np.uint8, in_bytes).reshape(image.shape)[:] = image
                header = {"op": "upscale", "model": model_id, "shape": [h, w, 3], "precision": precision}
                send_message(process.channel, {**header, "engine": engine, "tile": tile})
                answer = receive_header(process.channel)
                # a tiled request reports each tile first: one message per tile, counting up to
                # a total that stays put, within the request's time in all
                deadline = time.monotonic() + self.request_timeout_s
                last: tuple[int, int | None] = (0, None)
                while answer is not None and "progress" in answer:
                    done, total = answer["progress"]
                    if not (
                        isinstance(done, int)
                        and isinstance(total, int)
                        and last[0] < done <= total <= h * w
                        and last[1] in (None, total)
                    ):
                        raise ValueError(f"progress of {str(answer['progress'])[:100]}")
                    last = (done, total)
                    if on_tile is not None:
                        on_tile(done, total)
                    process.channel.settimeout(max(0.001, deadline - time.monotonic()))
                    answer = receive_header(process.channel)
                if answer is not None and answer.get("ok") is True:
                    if answer.get("shape") != list(expected):
                        raise ValueError(f"an output of shape {answer.get('shape')}, expected {list(expected)}")
                    forward_ms, tiles = float(answer["forward_ms"]), answer["tiles"]
                    if not 0 <= forward_ms < math.inf:
                        raise ValueError(f"a forward time of {forward_ms} ms")
                    if not (isinstance(tiles, int) and tiles >= 1 and isinstance(answer.get("bounded"), bool)):
                        raise ValueError(f"{tiles} tiles")
                    choice = EngineChoice.from_dict(answer.get("engine"))
                    count = expected[0] * expected[1] * 3
                    sr = np.frombuffer(self._shared, np.uint8, count, offset=in_bytes).reshape(expected).copy()
                    return Upscaled(sr, forward_ms, choice, tiles, answer["bounded"])
            except TimeoutError:
                self._restart("no answer")
                raise ModelError(
                    f"{model_id} did not answer within {self.request_timeout_s:g} s on a {w}x{h} input"
                ) from None
            except (OSError, ValueError, KeyError, TypeError) as e:
                self._restart(f"a broken answer: {e}")
                raise ModelError(
                    f"{model_id} failed on a {w}x{h} input: the model process broke the protocol"
                ) from None
            if answer is None:
                outcome = process.close()
                self._process = None
                why = outcome.failure() or "it exited"
                raise ModelError(f"{model_id} failed on a {w}x{h} input: its process ended ({why})")
            message = str(answer.get("error") or "failed")[:500]
            hit = None if answer.get("kind") == "oom" else sandbox.limit_hit(self.limits, False, 1, message)
            if hit is not None:
                # what a process that hit a limit holds (a runtime's buffers sized for the input
                # that failed) is unknown: the next request gets a fresh one
                self._restart(f"it hit {hit}")
        if answer.get("kind") == "oom":
            raise torch.OutOfMemoryError(message)
        raise ModelError(f"{message} (exceeded {hit})" if hit else message)

    def _call(self, header: dict[str, Any], timeout_s: float, doing: str) -> tuple[dict[str, Any], float]:
        """Send one request without pixels; return the answer and the call's wall time in ms.

        Raises:
            ModelError: the process did not answer in time, broke the protocol, or ended.
            torch.OutOfMemoryError: the device ran out of memory in the model process.
        """
        model_id = header["model"]
        with self._lock:
            process = self._running()
            process.channel.settimeout(timeout_s)
            start = time.perf_counter()
            try:
                send_message(process.channel, header)
                answer = receive_header(process.channel)
            except TimeoutError:
                self._restart("no answer")
                raise ModelError(f"{model_id} did not finish {doing} within {timeout_s:g} s") from None
            except (OSError, ValueError) as e:
                self._restart(f"a broken answer: {e}")
                raise ModelError(f"{model_id}: the model process broke the protocol while {doing}") from None
            wall_ms = (time.perf_counter() - start) * 1e3
            if answer is None:
                outcome = process.close()
                self._process = None
                why = outcome.failure() or "it exited"
                raise ModelError(f"{model_id} failed while {doing}: its process ended ({why})")
        if answer.get("ok") is not True:
            message = str(answer.get("error") or "failed")[:500]
            if answer.get("kind") == "oom":
                raise torch.OutOfMemoryError(message)
            raise ModelError(message)
        return answer, wall_ms

    def runtime(
        self, model_id: str, precision: Precision, input_size: tuple[int, int], warmup: int, repeat: int
    ) -> tuple[RuntimeStats, int]:
        """Run the challenge's runtime protocol on ``model_id`` in the model process, on a
        random input of ``input_size`` (H, W): return the per-pass statistics it measured
        and its FLOPs.

        The reported times are checked against the call's wall time measured here: the
        model process runs the submission's code, which could patch the timer, but it
        cannot make the call take less time than the passes it claims to have timed.

        Raises:
            ModelError: the model failed, its process died, or its answer is not a
                plausible measurement (one line).
            torch.OutOfMemoryError: the device ran out of memory in the model process.
        """
        h, w = input_size
        header = {"model": model_id, "precision": precision, "size": [h, w], "warmup": warmup, "repeat": repeat}
        answer, _ = self._call({**header, "op": "flops"}, self.request_timeout_s, f"counting FLOPs at {w}x{h}")
        flops = answer.get("flops")
        # the protocol takes warmup + repeat passes; allow the request timeout for every 16
        timeout = self.request_timeout_s * max(1.0, (warmup + repeat) / 16)
        answer, wall_ms = self._call({**header, "op": "runtime"}, timeout, f"the runtime protocol at {w}x{h}")
        times = answer.get("times_ms")
        if not (
            isinstance(times, list)
            and len(times) == repeat
            and all(isinstance(t, int | float) and 0 < t < math.inf for t in times)
            and isinstance(flops, int)
            and flops >= 0
        ):
            raise ModelError(f"{model_id}: the model process reported an implausible runtime measurement")
        stats = RuntimeStats.from_times([float(t) for t in times])
        per_pass_ms = max(0.0, wall_ms - RUNTIME_CALL_ALLOWANCE_MS) / (warmup + repeat)
        if stats.mean_ms < RUNTIME_WALL_FRACTION * per_pass_ms:
            raise ModelError(
                f"{model_id}: reported {stats.mean_ms:.3f} ms per pass, but its {warmup + repeat} passes took"
                f" {per_pass_ms:.3f} ms each, measured outside its process"
            )
        return stats, flops

    def close(self) -> None:
        """End the model process and everything it started."""
        with self._lock:
            self._restart("closed")
            if not self._shared.closed:
                self._shared.close()
                os.close(self._shared_fd)


# --- inside the sandbox ---------------------------------------------------------------------


def _serve(job: dict[str, Any]) -> None:
    from rtsr.devices import device_name, resolve_device
    from rtsr.engines import resolve_engine
    from rtsr.inference import prepare, upscale_tiled
    from rtsr.models import LoadedModel
    from rtsr.submissions.loader import load_submission
    from rtsr.submissions.submission import find_root, read_meta
    from rtsr.tiling import ReceptiveField, receptive_radius

    channel = socket.socket(fileno=int(os.environ["RTSR_CHANNEL_FD"]))
    _, fds, _, _ = socket.recv_fds(channel, 1, 1)
    shared = mmap.mmap(fds[0], SHARED_BYTES)
    device = resolve_device(job["device"])
    loaded: dict[str, LoadedModel] = {}
    failures: dict[str, str] = {}
    for entry in job["entries"]:
        try:
            root = find_root(Path(entry["root"]))
            submission = Submission(root=root, meta=read_meta(root), source=entry["source"], name=entry["name"])
            loaded[entry["id"]] = load_submission(submission)
        except RTSRError as e:
            failures[entry["id"]] = first_line(e)
        except Exception as e:  # a submission's own code failed while loading
            failures[entry["id"]] = f"{entry['id']}: loading failed: {e.__class__.__name__}: {first_line(e)}"
    hello = {
        "descriptors": {k: v.descriptor.as_dict() for k, v in loaded.items()},
        "failures": failures,
        "device": device_name(device),
    }
    send_message(channel, hello)
    prepared: dict[tuple[str, str], torch.nn.Module] = {}

    engines: dict[tuple[str, str, str], tuple[torch.nn.Module, EngineChoice]] = {}
    fields: dict[str, ReceptiveField] = {}

    def prepare_once(model_id: str, precision: Precision) -> torch.nn.Module:
        """The model in eager mode in ``precision``: the challenge's runtime rule. A copy:
        :func:`prepare` casts in place, and the engines and the receptive field are built
        from the loaded FP32 module too."""
        if (model_id, precision) not in prepared:
            module = copy.deepcopy(loaded[model_id].module)
            prepared[model_id, precision] = prepare(module, device, precision)
        return prepared[model_id, precision]

    def engine_once(model_id: str, engine: str, precision: Precision) -> tuple[torch.nn.Module, EngineChoice]:
        """The model in ``engine``, built and checked on first use: ``auto`` is the fastest
        faithful one in any precision, ``auto-<precision>`` the fastest in that precision."""
        key = (model_id, engine, precision)
        if key not in engines:
            model = loaded[model_id]
            name, _, within = engine.partition("-") if engine.startswith("auto") else (engine, "", precision)
            asked = within or None
            engines[key] = resolve_engine(model.module, device, name, asked, model.descriptor.supports_half)
        return engines[key]

    def field_once(model_id: str) -> ReceptiveField:
        """The model's receptive field, measured on first use."""
        if model_id not in fields:
            fields[model_id] = receptive_radius(loaded[model_id].module, loaded[model_id].descriptor.scale, device)
        return fields[model_id]

    while True:
        request = receive_header(channel)
        if request is None:
            return  # the app closed the channel
        if request.get("op") in ("runtime", "flops"):
            send_message(channel, _time_model(request, loaded, prepare_once, device))
            continue
        model_id, precision = request["model"], request["precision"]
        shape = tuple(request["shape"])
        in_bytes = shape[0] * shape[1] * 3
        image = np.frombuffer(shared, np.uint8, in_bytes).reshape(shape)
        tile = int(request.get("tile") or 0)

        def on_tile(done: int, total: int) -> None:
            send_message(channel, {"progress": [done, total]})

        try:
            descriptor = loaded[model_id].descriptor
            runner, choice = engine_once(model_id, str(request.get("engine") or "eager"), precision)
            field = field_once(model_id) if tile else ReceptiveField(0)
            sr, forward_ms, tiles = upscale_tiled(
                runner, image, descriptor.scale, device, "fp32", tile, field, descriptor.pad_multiple, on_tile
            )
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            send_message(channel, {"ok": False, "kind": "oom", "error": "out of memory on this device"})
        except ModelError as e:
            send_message(channel, {"ok": False, "kind": "model", "error": f"{model_id}: {first_line(e)}"})
        except Exception as e:  # the submission's forward failed
            detail = _detail(e)
            error = f"{model_id} failed on a {shape[1]}x{shape[0]} input: {detail}"
            send_message(channel, {"ok": False, "kind": "model", "error": error})
        else:
            np.frombuffer(shared, np.uint8, sr.size, offset=in_bytes).reshape(sr.shape)[:] = sr
            answer = {"ok": True, "shape": list(sr.shape), "forward_ms": forward_ms, "tiles": tiles}
            send_message(channel, {**answer, "engine": choice.as_dict(), "bounded": field.bounded})


def _detail(error: BaseException) -> str:
    """A submission's error in one line: its message, or its class without one; a memory
    error is named as one (numpy's says only "Unable to allocate ..."), so that the app
    can tell that the memory limit was hit."""
    if not str(error).strip():
        return error.__class__.__name__
    return f"MemoryError: {first_line(error)}" if isinstance(error, MemoryError) else first_line(error)


def _time_model(request: dict[str, Any], loaded: dict[str, Any], prepared: Any, device: torch.device) -> dict[str, Any]:
    """The runtime protocol on one model, in the model process: per-pass times (``op``
    ``runtime``), or FLOPs (``op`` ``flops``, counted apart so that the timed call holds
    nothing but the passes)."""
    from rtsr.runtime import count_flops, protocol_input, time_passes

    model_id, precision = request["model"], request["precision"]
    h, w = request["size"]
    try:
        shape = (1, 3, h, w)
        if request["op"] == "flops":
            return {"ok": True, "flops": count_flops(loaded[model_id].module, shape)}
        module = prepared(model_id, precision)
        x = protocol_input((h, w), device, precision)
        times = time_passes(module, x, int(request["warmup"]), int(request["repeat"]), progress=False)
    except torch.OutOfMemoryError:
        return {"ok": False, "kind": "oom", "error": "out of memory on this device"}
    except Exception as e:  # the submission's forward failed
        detail = _detail(e)
        return {"ok": False, "kind": "model", "error": f"{model_id} failed while timed on a {w}x{h} input: {detail}"}
    return {"ok": True, "times_ms": times}


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
