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

import contextlib
import copy
import fcntl
import json
import logging
import math
import mmap
import os
import secrets
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtsr.constants import SCALES
from rtsr.devices import Precision
from rtsr.engines import EngineChoice
from rtsr.errors import InputError, ModelError, RTSRError, SubmissionError, first_line
from rtsr.inference import timed_forward
from rtsr.models import ModelDescriptor
from rtsr.runtime import (
    PROBE_BLOCKS,
    PROBE_STRIDE,
    RuntimeStats,
    output_probe,
    pass_input,
    probe_agreement_db,
    probe_weights,
)
from rtsr.submissions import sandbox
from rtsr.submissions.graph import (
    MAX_PROGRAM_BYTES,
    MAX_TENSORS_BYTES,
    PROGRAM_FILE,
    TENSORS_FILE,
    GraphCount,
    count_in_sandbox,
)
from rtsr.submissions.sandbox import DEFAULT_LIMITS, Limits, SandboxedProcess, format_bytes
from rtsr.submissions.submission import Submission
from rtsr.tensors import to_tensor

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
#: Per timed pass, the time the worker measures around the pass (its request and answer) may
#: exceed the time the model process reports for the forward alone by this much: the message,
#: drawing the input and the output's probe (87 ms of RTSRN x2's 9.70 s 4K pass on a 2-core
#: CPU, 0.9%; on a GPU not measured yet). Each pass counts as at least its wall time less this
#: slack, whatever the model process reports: a forged timer gains no more than the slack.
PASS_SLACK_MS = 1.0
PASS_SLACK_FRACTION = 0.05
#: A run whose reports leave more than this many ms of the passes' wall time unexplained (past
#: the slack), and more than half of it, fails as a forged timer rather than being raised to
#: the wall clock: a busy host's scheduling delays (tens of ms a pass on a loaded 2-core CI
#: host, where tiny test models take under 1 ms) stay below it.
FORGED_TIMER_MS = 1000.0
#: Timed passes whose outputs the worker checks afterwards against the model's own untimed
#: output for the same input, and how close (as a PSNR between the two) they must be: the
#: same model on the same input agrees exactly on a CPU and within rounding on a GPU; a cached,
#: skipped or stale pass on a fresh random input lands near 10 dB.
CHECKED_PASSES = 3
AGREEMENT_DB = 45.0
#: Timed passes, drawn at random, that the model's exported graph is run on where its code
#: does not run (:mod:`rtsr.submissions.graph`): its outputs must agree with theirs to
#: :data:`AGREEMENT_DB`, so the parameters and FLOPs counted are those of what was timed.
GRAPH_PASSES = 2
#: The folder of the model process's scratch folder that it exports the graph into.
GRAPH_FOLDER = "graph"
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

    @contextlib.contextmanager
    def _serving(self) -> Iterator[SandboxedProcess]:
        """The running model process, held for one request; afterwards every process it
        started is killed (a model's helpers, detached or not, would otherwise share the CPU
        with every later request, and outlive what started them), or, if its supervisor does
        not answer, the model process is replaced."""
        with self._lock:
            process = self._running()
            try:
                yield process
            finally:
                if self._process is process and process.alive:
                    try:
                        strays = process.kill_strays()
                    except OSError as e:
                        self._restart(f"its supervisor did not answer ({e})")
                    else:
                        if strays:
                            logger.warning("killed %d processes the model process left after its request", strays)

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
        with self._serving() as process:
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
        with self._serving() as process:
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
        self,
        model_id: str,
        precision: Precision,
        input_size: tuple[int, int],
        warmup: int,
        repeat: int,
        on_pass: Callable[[int, int], None] | None = None,
    ) -> tuple[RuntimeStats, GraphCount, dict[str, Any]]:
        """Run the challenge's runtime protocol on ``model_id`` in the model process at
        ``input_size`` (H, W), with this side owning the clock and the inputs; return the
        per-pass statistics, the model's parameters and FLOPs as counted from its exported
        graph, and how they were vouched for.

        The model process runs the submission's code, which can patch its timer or skip the
        work, so every timed pass is one request from here, on an input drawn afresh for it:

        - the time it reports for a pass (CUDA events or its wall clock) counts as at least the
          wall time measured here around that pass, less :data:`PASS_SLACK_MS` and
          :data:`PASS_SLACK_FRACTION`; a run whose reports leave more than
          :data:`FORGED_TIMER_MS`, and more than half of that wall time, unexplained fails;
        - with each pass it commits to its output with a probe (:func:`rtsr.runtime.output_probe`);
          afterwards :data:`CHECKED_PASSES` passes drawn at random are run again untimed, as
          any image is upscaled, and their probes must agree to :data:`AGREEMENT_DB`;
        - last, the model as timed is exported (``torch.export``) and its graph counted and
          run on :data:`GRAPH_PASSES` timed passes' inputs in a sandbox that runs no code of
          the submission (:func:`rtsr.submissions.graph.count_in_sandbox`); its outputs must
          agree with those passes' to :data:`AGREEMENT_DB`.

        ``on_pass(done, total)`` hears of each timed pass.

        Raises:
            ModelError: the model failed, its process died, or its timings or outputs cannot
                be vouched for (one line that says which).
            torch.OutOfMemoryError: the device ran out of memory in the model process.
        """
        h, w = input_size
        draw = secrets.SystemRandom()
        header = {"model": model_id, "precision": precision, "size": [h, w]}
        run_seed = draw.getrandbits(62)
        self._call({**header, "op": "protocol", "seed": run_seed}, self.request_timeout_s, "preparing the protocol")
        # the challenge's untimed warm-up; allow the request timeout for every 16 passes
        timeout = self.request_timeout_s * max(1.0, warmup / 16)
        self._call(
            {"model": model_id, "op": "warmup", "count": warmup, "seed": draw.getrandbits(62)}, timeout, "warming up"
        )
        seeds = [draw.getrandbits(62) for _ in range(repeat)]
        reported, walls, probes = [], [], []
        for i, seed in enumerate(seeds):
            answer, wall_ms = self._call(
                {"model": model_id, "op": "pass", "seed": seed}, self.request_timeout_s, f"timed pass {i + 1}"
            )
            ms, probe = answer.get("ms"), answer.get("probe")
            if not (
                isinstance(ms, int | float)
                and 0 < ms <= wall_ms
                and isinstance(probe, list)
                and 1 <= len(probe) <= PROBE_BLOCKS
                and all(isinstance(v, int | float) and math.isfinite(v) for v in probe)
            ):
                raise ModelError(
                    f"{model_id}: timed pass {i + 1} reported {str(ms)[:20]} ms in {wall_ms:.3f} ms measured"
                    " around it, or a broken probe: not a measurement"
                )
            reported.append(float(ms))
            walls.append(wall_ms)
            probes.append([float(v) for v in probe])
            if on_pass is not None:
                on_pass(i + 1, repeat)
        # a pass counts as at least the wall time measured here, less the slack
        floors = [wall - PASS_SLACK_MS - PASS_SLACK_FRACTION * wall for wall in walls]
        unexplained = sum(max(0.0, floor - ms) for floor, ms in zip(floors, reported, strict=True))
        if unexplained > max(FORGED_TIMER_MS, 0.5 * sum(floors)):
            raise ModelError(
                f"{model_id}: reported {statistics.fmean(reported):.3f} ms per pass, but its passes took"
                f" {statistics.median(walls):.3f} ms each (median of {repeat}), measured outside its process"
            )
        times = [max(ms, floor) for ms, floor in zip(reported, floors, strict=True)]
        device = self.device
        scale = self.descriptors[model_id].scale
        weights = probe_weights(run_seed, (h * scale, w * scale), device)
        agreements = []
        for i in sorted(draw.sample(range(repeat), min(CHECKED_PASSES, repeat))):
            image = pass_input(seeds[i], (h, w), device)[0].permute(1, 2, 0).cpu().numpy()
            again = self.upscale(model_id, image, precision, "eager").sr
            reference, sampled = output_probe(to_tensor(again, device, "fp32"), weights, seeds[i])
            db = probe_agreement_db(probes[i], reference, sampled)
            if not db >= AGREEMENT_DB:
                raise ModelError(
                    f"{model_id}: timed pass {i + 1} of {repeat} is {db:.1f} dB from the model's own output for"
                    f" its input (at least {AGREEMENT_DB:g} dB needed): a pass that skipped or reused work"
                )
            agreements.append(db)
        compared = sorted(draw.sample(range(repeat), min(GRAPH_PASSES, repeat)))
        count = self._count_graph(model_id, precision, (h, w), run_seed, [seeds[i] for i in compared])
        graph_agreements = []
        for i, probe in zip(compared, count.probes, strict=True):
            db = probe_agreement_db(probes[i], probe, count.sampled)
            if not db >= AGREEMENT_DB:
                raise ModelError(
                    f"{model_id}: its exported graph is {db:.1f} dB from timed pass {i + 1} of {repeat} on the same"
                    f" input (at least {AGREEMENT_DB:g} dB needed): its size would not be that of what was timed"
                )
            graph_agreements.append(db)
        check = {
            "by": "worker",
            "wall_mean_ms": statistics.fmean(walls),
            "reported_mean_ms": statistics.fmean(reported),
            "passes_raised_to_wall": sum(ms < floor for ms, floor in zip(reported, floors, strict=True)),
            "passes_checked": len(agreements),
            "agreement_db": None if all(math.isinf(a) for a in agreements) else min(agreements),
            "size_by": "exported graph",
            "graph_passes_compared": len(graph_agreements),
            "graph_agreement_db": None if all(math.isinf(a) for a in graph_agreements) else min(graph_agreements),
        }
        return RuntimeStats.from_times(times), count, check

    def _count_graph(
        self, model_id: str, precision: Precision, size: tuple[int, int], run_seed: int, seeds: list[int]
    ) -> GraphCount:
        """Have the model process export ``model_id`` as the protocol runs it, take the graph's
        files from its scratch folder (as untrusted files: regular, bounded), and count and run
        them in a sandbox of their own."""
        h, w = size
        self._call({"model": model_id, "op": "export"}, self.request_timeout_s, f"exporting its graph at {w}x{h}")
        with self._lock:
            process = self._process
            if process is None or not process.alive:
                # a new process would not hold the graph: the one that wrote it is gone
                raise ModelError(f"{model_id}: its process ended after exporting its graph")
            folder = process.sandbox.scratch / GRAPH_FOLDER
            files = {}
            for name, limit in ((PROGRAM_FILE, MAX_PROGRAM_BYTES), (TENSORS_FILE, MAX_TENSORS_BYTES)):
                content = sandbox.read_untrusted(folder / name, limit, whole=True)
                if content is None:
                    raise ModelError(
                        f"{model_id}: its exported graph has no {name} of at most {format_bytes(limit)}"
                        " that is a regular file"
                    )
                files[name] = content
        try:
            return count_in_sandbox(
                files,
                precision=precision,
                device=self.device,
                size=size,
                scale=self.descriptors[model_id].scale,
                run_seed=run_seed,
                seeds=seeds,
                limits=replace(self.limits, wall_seconds=self.request_timeout_s),
            )
        except ModelError as e:
            raise ModelError(f"{model_id}: {first_line(e)}") from None

    def close(self) -> None:
        """End the model process and everything it started, whatever it is doing: a request
        in flight (a model that never answers holds the lock for its whole timeout) fails at
        once, its process killed first, without waiting for the lock."""
        process = self._process
        if process is not None and self._lock.locked():  # a request in flight
            process.kill()
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

    protocol = _Protocol(loaded, prepare_once, device)
    while True:
        request = receive_header(channel)
        if request is None:
            return  # the app closed the channel
        if request.get("op") in _PROTOCOL_OPS:
            send_message(channel, protocol.answer(request))
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


_PROTOCOL_OPS = ("protocol", "warmup", "pass", "export")


class _Protocol:
    """The runtime protocol's side in the model process, one request at a time, as
    :meth:`SandboxedModels.runtime` sends them: ``protocol`` (the model in eager mode in the
    precision, and the run's probe weights), ``warmup`` (untimed passes), one ``pass`` per
    timed pass (its input drawn from the pass's seed, the forward timed as
    :func:`rtsr.runtime.time_passes` does, the output's probe sent back with the time), and
    last ``export``: the model as timed, exported into the scratch folder's
    :data:`GRAPH_FOLDER` for :mod:`rtsr.submissions.graph` to count."""

    def __init__(
        self, loaded: dict[str, Any], prepared: Callable[[str, Precision], torch.nn.Module], device: torch.device
    ):
        self.loaded, self.prepared, self.device = loaded, prepared, device
        self.run: dict[str, Any] | None = None

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        from rtsr.devices import DTYPES
        from rtsr.submissions.graph import export_graph

        op, model_id = request["op"], request["model"]
        try:
            if op == "protocol":
                h, w = request["size"]
                scale = self.loaded[model_id].descriptor.scale
                self.run = {
                    "model": model_id,
                    "module": self.prepared(model_id, request["precision"]),
                    "dtype": DTYPES[request["precision"]],
                    "size": (h, w),
                    "weights": probe_weights(int(request["seed"]), (h * scale, w * scale), self.device),
                }
                # each phase of the probe once, untimed: the first use of a shape costs milliseconds
                blank = torch.zeros((1, 3, h * scale, w * scale), device=self.device)
                for phase in range(PROBE_STRIDE**2):
                    output_probe(blank, self.run["weights"], phase)
                return {"ok": True}
            run = self.run
            if run is None or run["model"] != model_id:
                return {"ok": False, "kind": "model", "error": f"{model_id}: no protocol run was prepared"}
            if op == "export":
                # a copy: tracing runs the model's forward on fake tensors, which it may keep
                x = torch.zeros((1, 3, *run["size"]), device=self.device, dtype=run["dtype"])
                try:
                    export_graph(copy.deepcopy(run["module"]), x, Path(os.environ["HOME"]) / GRAPH_FOLDER)
                except ModelError as e:  # it cannot be exported, so its size cannot be counted
                    return {"ok": False, "kind": "model", "error": f"{model_id}: {first_line(e)}"}
                return {"ok": True}
            seed = int(request["seed"])
            x = pass_input(seed, run["size"], self.device).float().div_(255.0).to(run["dtype"])
            with torch.inference_mode():
                if op == "warmup":
                    for _ in range(int(request["count"])):
                        run["module"](x)
                    return {"ok": True}
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)  # the input drawn: only the forward is timed
                out, ms = timed_forward(run["module"], x)
                expected = (1, 3, *(side * self.loaded[model_id].descriptor.scale for side in run["size"]))
                if tuple(out.shape) != expected:
                    raise ModelError(f"it returned {tuple(out.shape)}, expected {expected}")
                probe, _ = output_probe(out, run["weights"], seed)
            return {"ok": True, "ms": ms, "probe": probe}
        except torch.OutOfMemoryError:
            return {"ok": False, "kind": "oom", "error": "out of memory on this device"}
        except Exception as e:  # the submission's forward failed
            h, w = (self.run or {}).get("size") or request.get("size") or (0, 0)
            detail = _detail(e)
            return {
                "ok": False,
                "kind": "model",
                "error": f"{model_id} failed while timed on a {w}x{h} input: {detail}",
            }


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
