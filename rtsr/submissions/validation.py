"""``rtsr validate``: a submission's checklist, with its code run in the sandbox.

The parent only reads files. Everything that executes the submission's code (importing
``arch.py``, ``srmodel()``, forward passes) runs in ``python -m rtsr.submissions.validation``
inside :mod:`rtsr.submissions.sandbox`, which reports each check as a JSON line in a file of
its scratch folder. A submission that hangs, crashes the interpreter, exhausts a limit or
leaves processes behind fails a check (or is named in one); the validator goes on.

The scale is a code check too: the child reads it from a forward pass on a small input
(:func:`rtsr.submissions.loader.infer_scale`), confirms the declared one (``submission.json``
or ``--scale``) or, with none, reports what it found; :func:`run_validation` returns the
submission with that scale recorded, and checks ``results/`` against it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from rtsr.constants import SCALES
from rtsr.errors import InputError, ModelError, RTSRError, SubmissionError, first_line, printable
from rtsr.images import list_images, read_rgb
from rtsr.submissions import sandbox
from rtsr.submissions.layout import ARCH_FILE, METADATA_FILE
from rtsr.submissions.sandbox import DEFAULT_LIMITS, Limits
from rtsr.submissions.submission import Submission, open_submission

CheckStatus = Literal["pass", "fail", "warn", "skip"]
STATUSES: tuple[str, ...] = get_args(CheckStatus)
#: Below this PSNR between FP16 and FP32 outputs, FP16 is flagged (the challenge saw a
#: transformer lose 4 dB in FP16).
FP16_WARN_DB = 40.0
#: Below this PSNR between the submitted ``results/`` and our rerun, the results fail.
REPRODUCE_MIN_DB = 40.0
#: What the code checks may use: the sandbox's defaults (300 s from start to finish).
VALIDATION_LIMITS = DEFAULT_LIMITS
#: The child's report, in the sandbox's scratch folder (its $HOME), and the step that ends it.
REPORT_FILE = "report.jsonl"
DONE = "done"
#: LR sizes of the forward check: one even, one with odd prime-ish sides (padding).
FORWARD_SIZES = ((32, 48), (27, 41))
#: Raw outputs on a natural image must stay within this (models return RGB on [0, 1]).
OUTPUT_RANGE = (-0.5, 1.5)
#: Side of the centre crop used for FP16 fidelity on an LR image, and on a CPU, whose FP16 is
#: emulated and slow (a 128x128 RTSRN pass: 18 s on 2 cores; 48x48: about 2 s).
FIDELITY_CROP = 128
CPU_FIDELITY_CROP = 48


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: CheckStatus
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Validation:
    """A checklist and the submission it ran on, with the scale the code checks found
    recorded (:meth:`Submission.with_scale`) when it declared none."""

    submission: Submission
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)


@dataclass(frozen=True)
class _Scale:
    """A report line: the scale the code checks found."""

    value: int


def _psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    from rtsr.metrics import psnr

    return psnr(torch.from_numpy(a), torch.from_numpy(b))


# --- the parent: file checks, then the child ---------------------------------------------------


def file_checks(submission: Submission) -> list[Check]:
    """Checks that only read files: the layout and the metadata (``submission.json`` is
    optional: without it, the scale is found by the code checks)."""
    meta = submission.meta
    metadata = [METADATA_FILE] if submission.has_metadata else []
    found = [ARCH_FILE, *metadata, *(p.relative_to(submission.root).as_posix() for p in submission.checkpoints)]
    scale = f"x{meta.scale} (Track {meta.track})" if meta.scale else "scale from the model"
    if submission.has_metadata:
        about = f"{scale}, team {meta.team or '?'}, {meta.method or '?'}"
    else:
        about = f"no {METADATA_FILE} (optional): {scale}, named {submission.name}, team unknown"
    checks = [Check("files", "pass", ", ".join(found)), Check("metadata", "pass", about)]
    requirements = submission.root / "requirements.txt"
    if requirements.is_file():
        checks.append(_requirements_check(requirements))
    if not submission.checkpoints:
        checks.append(
            Check("checkpoint", "warn", "no .pth, .pt or .safetensors file: fine only for a model without weights")
        )
    return checks


def results_check(submission: Submission, lr_dir: Path) -> Check:
    """``results/`` against the LR images of ``lr_dir``: a PNG for each, at the submission's
    scale (skipped while the scale is unknown: the code checks that would find it failed)."""
    lr_paths = list_images(lr_dir)
    results = submission.results_dir
    if not results.is_dir():
        return Check("results/", "fail", f"no {results.name}/ folder with the SR outputs")
    pngs = {p.stem: p for p in results.iterdir() if p.suffix.lower() == ".png"}
    missing = [p.stem for p in lr_paths if p.stem not in pngs]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return Check("results/", "fail", f"no {missing[0]}.png{more} for the LR images of {lr_dir}")
    scale = submission.meta.scale
    if scale is None:
        return Check("results/", "skip", f"{len(lr_paths)} PNGs, sizes unchecked: the scale is unknown")
    for lr_path in lr_paths:
        lr_h, lr_w = read_rgb(lr_path).shape[:2]
        sr_h, sr_w = read_rgb(pngs[lr_path.stem]).shape[:2]
        if (sr_h, sr_w) != (lr_h * scale, lr_w * scale):
            return Check("results/", "fail", f"{lr_path.stem}.png is {sr_h}x{sr_w}, expected x{scale} of {lr_h}x{lr_w}")
    return Check("results/", "pass", f"{len(lr_paths)} PNGs, one per LR image, all x{scale}")


def _requirements_check(path: Path) -> Check:
    """Whether the packages a submission asks for are installed here (we never install them)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            return Check("requirements", "warn", f"cannot parse {line!r} in requirements.txt")
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if requirement.specifier and installed not in requirement.specifier:
            missing.append(f"{requirement.name}{requirement.specifier} (have {installed})")
    if missing:
        return Check("requirements", "warn", f"not installed here: {', '.join(missing)}")
    return Check("requirements", "pass", "everything in requirements.txt is installed")


def _sandbox_check(limits: Limits) -> Check:
    note = sandbox.isolation_note()
    if note is not None:
        return Check("sandbox", "warn", f"{note}; limits: {limits.describe()}")
    return Check("sandbox", "pass", f"bubblewrap: no network, read-only files, {limits.describe()}")


def _with_limit(check: Check, limits: Limits) -> Check:
    """A failed check whose error is a limit's (MemoryError under the memory limit, say) says
    which limit, rather than leave the user to guess."""
    hit = sandbox.limit_hit(limits, False, 1, check.detail) if check.status == "fail" else None
    return replace(check, detail=f"{check.detail} (exceeded {hit})") if hit else check


def _report_lines(data: bytes) -> list[Check | str | _Scale]:
    """The child's report as checks, step names and the scale it found, read defensively:
    it comes from the process that ran the submission's code, so a line that is not one of
    ours ends the reading, no text is longer than a line should be, and a scale is 2 or 3."""
    lines: list[Check | str | _Scale] = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            break
        check = obj.get("check") if isinstance(obj, dict) else None
        step = obj.get("step") if isinstance(obj, dict) else None
        scale = obj.get("scale") if isinstance(obj, dict) else None
        if type(scale) is int and scale in SCALES:
            lines.append(_Scale(scale))
        elif isinstance(check, dict) and set(check) == {"name", "status", "detail"}:
            name, status, detail = check["name"], check["status"], check["detail"]
            if not (isinstance(name, str) and isinstance(detail, str) and status in STATUSES):
                break
            lines.append(Check(printable(name[:40]), status, printable(detail[:1000])))
        elif isinstance(step, str):
            lines.append(printable(step[:40]))
        else:
            break
    return lines


def run_validation(
    submission: Submission, lr_dir: Path | None = None, limits: Limits = VALIDATION_LIMITS, export: bool = True
) -> Validation:
    """The whole checklist: file checks here, code checks in the sandbox
    (:mod:`rtsr.submissions.sandbox`) under ``limits``, and ``results/`` against ``lr_dir``
    at the scale declared or found. ``export=False`` leaves out the ``torch.export`` check,
    for the worker, whose runtime protocol exports and counts the model as it was timed.

    Raises:
        InputError: ``lr_dir`` is not a folder.
        SubmissionError: ``$RTSR_SANDBOX`` demands bubblewrap where it does not work.
    """
    if lr_dir is not None and not lr_dir.is_dir():
        # a user's mistake, said before the sandbox is set up around a path that is not there
        raise InputError(f"{lr_dir}: no such folder")
    isolation = _sandbox_check(limits)
    job = {
        "root": str(submission.root),
        "source": submission.source,
        "name": submission.name,
        "scale": submission.meta.scale,
        "lr_dir": str(lr_dir.resolve()) if lr_dir else None,
        "report": REPORT_FILE,
        "export": export,
    }
    outcome, files = sandbox.run(
        [sys.executable, "-m", "rtsr.submissions.validation", json.dumps(job)],
        submission.root,
        readable=[lr_dir] if lr_dir else [],
        limits=limits,
        gpu=bool(sandbox.gpu_device_files()),
        collect=[REPORT_FILE],
    )
    code: list[Check] = []
    step, found = None, None
    for line in _report_lines(files.get(REPORT_FILE, b"")):
        if isinstance(line, Check):
            code.append(_with_limit(line, limits))
            step = None
        elif isinstance(line, _Scale):
            found = line.value
        else:
            step = line
    if outcome.leftover:
        code.append(
            Check("processes", "warn", f"{outcome.leftover} processes it started were still running; all killed")
        )
    failure = outcome.failure()
    if failure is None and step != DONE:
        failure = (
            "the submission's process ended in the middle of this check"
            if step is not None
            else "the code checks ended without finishing their report"
        )
    if step == DONE:
        step = None
    if failure is not None:
        code.append(Check(step or "sandbox", "fail", failure))
    else:
        code.append(
            Check("time", "pass", f"code checks took {outcome.elapsed_s:.1f} s of the {limits.wall_seconds:g} s limit")
        )
    resolved = (
        submission.with_scale(found) if found is not None and submission.meta.scale in (None, found) else submission
    )
    results = [results_check(resolved, lr_dir)] if lr_dir else []
    return Validation(resolved, [*file_checks(submission), *results, isolation, *code])


def run_checks(submission: Submission, lr_dir: Path | None = None, limits: Limits = VALIDATION_LIMITS) -> list[Check]:
    """The checklist of :func:`run_validation`, alone.

    Raises:
        SubmissionError: ``$RTSR_SANDBOX`` demands bubblewrap where it does not work.
    """
    return run_validation(submission, lr_dir, limits).checks


def validate(
    spec: str | Path, lr_dir: Path | None = None, limits: Limits = VALIDATION_LIMITS, scale: int | None = None
) -> Validation:
    """Open a submission (folder, zip or ``org/name@commit``) and run its checklist, at
    ``scale`` when given (``--scale``: the checks confirm it rather than find it).

    Raises:
        SubmissionError: the submission cannot even be opened (no ``arch.py``, bad metadata),
            or ``scale`` contradicts its ``submission.json``.
    """
    submission = open_submission(spec)
    if scale is not None:
        submission = submission.with_scale(scale)
    return run_validation(submission, lr_dir, limits)


# --- the child: everything that runs the submission's code ------------------------------------


class _Report:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def step(self, name: str) -> None:
        self._write({"step": name})

    def scale(self, value: int) -> None:
        self._write({"scale": value})

    def check(self, name: str, status: CheckStatus, detail: str) -> None:
        self._write({"check": Check(name, status, detail).as_dict()})

    def done(self) -> None:
        self._write({"step": DONE})

    def _write(self, obj: dict[str, Any]) -> None:
        self.file.write(json.dumps(obj) + "\n")
        self.file.flush()


def _test_image(lr_dir: Path | None) -> np.ndarray:
    """A natural LR crop for the range and FP16 checks: the first LR image, or a test chart."""
    if lr_dir is not None:
        image = read_rgb(list_images(lr_dir)[0])
        h, w = image.shape[:2]
        top, left = max(0, (h - FIDELITY_CROP) // 2), max(0, (w - FIDELITY_CROP) // 2)
        return image[top : top + FIDELITY_CROP, left : left + FIDELITY_CROP]
    y, x = np.mgrid[0:FIDELITY_CROP, 0:FIDELITY_CROP] / FIDELITY_CROP
    chart = np.stack([x, y, 0.5 + 0.5 * np.sin(20 * x * y)], axis=-1)
    chart[FIDELITY_CROP // 3 : FIDELITY_CROP // 2, :] = 1.0  # a hard edge
    return (chart * 255).round().astype(np.uint8)


def _forward_check(
    report: _Report, model: torch.nn.Module, scale: int, device: torch.device, dtype: torch.dtype
) -> bool:
    label = f"forward {'fp16' if dtype == torch.float16 else 'fp32'}"
    generator = torch.Generator().manual_seed(0)
    details = []
    for h, w in FORWARD_SIZES:
        x = torch.rand(1, 3, h, w, generator=generator).to(device=device, dtype=dtype)
        with torch.inference_mode():
            out = model(x)
        expected = (1, 3, h * scale, w * scale)
        if tuple(out.shape) != expected:
            report.check(label, "fail", f"input {tuple(x.shape)} gave {tuple(out.shape)}, expected {expected}")
            return False
        if not torch.isfinite(out).all():
            report.check(label, "fail", f"input {tuple(x.shape)} gave NaN or infinite values")
            return False
        details.append(f"{h}x{w} -> {h * scale}x{w * scale}")
    report.check(label, "pass", f"random input {', '.join(details)}, finite")
    return True


def _range_check(report: _Report, model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray | None:
    """On a natural image (noise makes any trained network overshoot), outputs must be on
    about [0, 1]: the usual mistake is a model that returns [0, 255]. Returns the FP32 output
    as an image, the reference for the FP16 check, or None when the range is wrong."""
    from rtsr.tensors import to_image, to_tensor

    with torch.inference_mode():
        out = model(to_tensor(image, device, "fp32")).float()
        reference = to_image(out)
    low, high = out.min().item(), out.max().item()
    if low < OUTPUT_RANGE[0] or high > OUTPUT_RANGE[1]:
        hint = "; is it on [0, 255]?" if high > 2 else ""
        report.check("output range", "fail", f"[{low:.2f}, {high:.2f}] on a natural image, expected about [0, 1]{hint}")
        return None
    report.check("output range", "pass", f"[{low:.2f}, {high:.2f}] on a natural image (clamped to [0, 1] on use)")
    return reference


def _export_check(report: _Report, model: torch.nn.Module, scale: int, device: torch.device) -> None:
    """The worker counts a submission's parameters and FLOPs from its graph as ``torch.export``
    exports it at the track's 4K input, and takes only graphs it can vet
    (:mod:`rtsr.submissions.graph`): the same export and vetting here, so that a model the
    worker could not count fails before it is submitted."""
    import tempfile

    from rtsr.runtime import count_flops, lr_size
    from rtsr.submissions.graph import PROGRAM_FILE, export_graph, held_elements, one_tensor_specs, vetted_program

    h, w = lr_size(scale)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            program = export_graph(model, torch.zeros((1, 3, h, w), device=device), Path(tmp))
            vetted_program(json.loads((Path(tmp) / PROGRAM_FILE).read_bytes()), one_tensor_specs())
        flops = count_flops(program.module(), (1, 3, h, w))
    except ModelError as e:
        report.check("torch.export", "fail", f"{first_line(e)} (the worker counts parameters and FLOPs from it)")
        return
    except Exception as e:  # torch's own refusal of what the graph holds
        report.check("torch.export", "fail", f"{e.__class__.__name__}: {first_line(e)}")
        return
    report.check(
        "torch.export",
        "pass",
        f"at {w}x{h} (a 4K output): {held_elements(program):,} parameters, {flops / 1e9:.2f} GFLOPs, as the worker"
        " counts them",
    )


def _child(job: dict[str, Any]) -> None:
    from rtsr.inference import prepare, upscale
    from rtsr.models import count_params
    from rtsr.submissions.loader import call_srmodel, infer_scale, wrap_model
    from rtsr.submissions.submission import find_root, read_meta

    report = _Report(Path(os.environ["HOME"]) / job["report"])
    root = find_root(Path(job["root"]))
    submission = Submission(root=root, meta=read_meta(root), source=job["source"], name=job["name"])
    declared: int | None = job["scale"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    report.step("srmodel()")
    started = time.monotonic()
    try:
        built = call_srmodel(submission)
    except RTSRError as e:
        report.check("srmodel()", "fail", str(e))
        return
    report.check(
        "srmodel()", "pass", f"built in {time.monotonic() - started:.1f} s, {count_params(built):,} parameters"
    )

    report.step("scale")
    try:
        probe = infer_scale(built)
    except SubmissionError as e:
        report.check("scale", "fail", str(e))
        return
    if declared is not None and probe.scale != declared:
        where = f"in {METADATA_FILE}" if submission.meta.scale == declared else "given"
        report.check("scale", "fail", f"x{declared} {where}, but {probe.describe()} upscales x{probe.scale}")
        return
    scale = probe.scale
    pad_multiple = submission.meta.pad_multiple or probe.pad_multiple
    report.scale(scale)
    how = "inferred from" if declared is None else "as declared, confirmed by"
    pads = f"; pads LR sides to multiples of {pad_multiple}" if pad_multiple > 1 else ""
    report.check("scale", "pass", f"x{scale} ({how} {probe.describe()}){pads}")
    loaded = wrap_model(submission, built, scale, pad_multiple)

    report.step("forward fp32")
    model = prepare(loaded.module, device, "fp32")
    try:
        ok = _forward_check(report, model, scale, device, torch.float32)
    except Exception as e:
        report.check("forward fp32", "fail", f"{e.__class__.__name__}: {first_line(e)}")
        return
    if not ok:
        return

    image = _test_image(Path(job["lr_dir"]) if job["lr_dir"] else None)
    report.step("output range")
    reference = _range_check(report, model, image, device)
    if reference is None:
        return
    report.step("forward fp16")
    if device.type == "cuda":
        half = prepare(loaded.module, device, "fp16")
        try:
            _forward_check(report, half, scale, device, torch.float16)
        except Exception as e:
            report.check("forward fp16", "fail", f"{e.__class__.__name__}: {first_line(e)}")
    else:
        report.check("forward fp16", "skip", "no CUDA device here (FP16 timing needs one)")

    report.step("fp16 fidelity")
    sample, expected = image, reference
    if device.type != "cuda":
        # FP16 convolutions are emulated on a CPU: a 128x128 RTSRN pass takes 18 s on 2 cores
        h, w = image.shape[:2]
        top, left = max(0, (h - CPU_FIDELITY_CROP) // 2), max(0, (w - CPU_FIDELITY_CROP) // 2)
        sample = image[top : top + CPU_FIDELITY_CROP, left : left + CPU_FIDELITY_CROP]
    try:
        if sample is not image:
            expected = upscale(model, sample, scale, device, "fp32")
        half = prepare(loaded.module, device, "fp16")
        fp16 = upscale(half, sample, scale, device, "fp16")
    except Exception as e:
        report.check("fp16 fidelity", "skip", f"FP16 does not run on {device.type} ({e.__class__.__name__})")
    else:
        db = _psnr_uint8(fp16, expected)
        where = f"on {device.type}, {sample.shape[0]}x{sample.shape[1]} LR crop"
        status: CheckStatus = "warn" if db < FP16_WARN_DB else "pass"
        note = f" (below {FP16_WARN_DB:g} dB: FP16 loses quality)" if status == "warn" else ""
        report.check("fp16 fidelity", status, f"PSNR(FP16, FP32) = {db:.1f} dB {where}{note}")

    if job["export"]:
        report.step("torch.export")
        _export_check(report, prepare(loaded.module, device, "fp32"), scale, device)

    if job["lr_dir"]:
        report.step("reproduce results/")
        model = prepare(loaded.module, device, "fp32")
        worst = math.inf
        for lr_path in list_images(job["lr_dir"]):
            ours = upscale(model, read_rgb(lr_path), scale, device, "fp32")
            theirs = read_rgb(submission.results_dir / f"{lr_path.stem}.png")
            if ours.shape != theirs.shape:
                report.check("reproduce results/", "fail", f"{lr_path.stem}.png has the wrong size")
                return
            worst = min(worst, _psnr_uint8(ours, theirs))
        status = "pass" if worst >= REPRODUCE_MIN_DB else "fail"
        report.check(
            "reproduce results/", status, f"rerun vs results/: PSNR {worst:.1f} dB at worst (need {REPRODUCE_MIN_DB:g})"
        )


if __name__ == "__main__":
    try:
        job = json.loads(sys.argv[1])
        _child(job)
        _Report(Path(os.environ["HOME"]) / job["report"]).done()
    except SubmissionError as e:
        print(e, file=sys.stderr)
        raise SystemExit(1) from None
