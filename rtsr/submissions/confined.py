"""A stranger's model, run as the worker runs it: its code in a sandboxed model process
(:class:`rtsr.submissions.sandboxed_models.SandboxedModels`), with the runtime protocol's
clock, inputs and checks on this side, and its size counted from its exported graph.

The worker evaluates every request this way, and the CLI's ``sr``, ``runtime`` and
``evaluate`` run a submission folder, zip, Hub repo or an entry of a registry other than the
bundled one this way too (:func:`strangers_submission`): whoever runs ``rtsr evaluate`` on a
zip they were sent gives its code none of their environment (tokens), files or network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
import torch

from rtsr.devices import Precision, resolve_precision
from rtsr.engines import EngineChoice
from rtsr.errors import SubmissionError
from rtsr.models import BUILTIN_MODELS, CHECKPOINT_SUFFIXES, ModelDescriptor
from rtsr.runtime import RuntimeReport, protocol_input, report_beside_bicubic
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.sandboxed_models import Upscaled
from rtsr.submissions.submission import HUB_SPEC, Submission, open_submission
from rtsr.submissions.validation import VALIDATION_LIMITS

#: The model process's bounds: those of a validation run, without its wall-clock and CPU-time
#: bounds (the runtime protocol and a folder of images take as long as they take).
CONFINED_LIMITS: Final = replace(VALIDATION_LIMITS, wall_seconds=None, cpu_seconds=None)
#: The id the submission has inside its model process.
_CANDIDATE: Final = "candidate"


def strangers_submission(spec: str, registry_path: Path | None = None) -> Submission | None:
    """The submission ``spec`` names when its code is someone else's: a folder, a zip, a Hub
    repo, or an entry of a registry other than the bundled one (hashes checked); None for what
    rtsr itself ships and runs in-process: a built-in model, a checkpoint (weights only,
    loaded with ``weights_only``), an entry of the bundled registry.

    Raises:
        SubmissionError: a registry entry whose files do not match, or a submission that
            cannot be opened.
    """
    path = Path(spec)
    if spec in BUILTIN_MODELS or path.suffix in CHECKPOINT_SUFFIXES:
        return None
    registry = Registry.read(registry_path)
    if any(e.id == spec for e in registry.entries):
        if registry.path.resolve() == BUNDLED_REGISTRY.resolve():
            return None
        return registry.open(registry.get(spec))
    if path.exists() or HUB_SPEC.match(spec):
        return open_submission(spec)
    return None  # an unknown name: rtsr.loading.load says so in one line


class ConfinedModel:
    """One submission in its own sandboxed model process on ``device``, in ``precision``
    (default: FP16 on CUDA where the model supports it, else FP32). A context manager: the
    process ends on leaving it.

    Raises:
        SubmissionError: the sandbox cannot be made here, the model failed to load, or its
            scale is not ``scale`` (when given).
    """

    def __init__(
        self,
        submission: Submission,
        device: torch.device,
        precision: Precision | None = None,
        limits: Limits = CONFINED_LIMITS,
        scale: int | None = None,
    ) -> None:
        from rtsr.submissions.sandboxed_models import SandboxedModels

        self.submission, self.device = submission, device
        self._models = SandboxedModels({_CANDIDATE: submission}, device, limits)
        try:
            if _CANDIDATE in self._models.failures:
                raise SubmissionError(submission.without_root(self._models.failures[_CANDIDATE]))
            described = self._models.descriptors[_CANDIDATE]
            if scale is not None and described.scale != scale:
                raise SubmissionError(f"{submission.name} is a x{described.scale} model, but x{scale} was asked for")
        except BaseException:
            self._models.close()
            raise
        #: What the model process said of the model; its id is the submission's name. The
        #: parameters are replaced by the counted ones in :meth:`runtime_report`.
        self.descriptor: ModelDescriptor = replace(described, id=submission.name)
        chosen = resolve_precision(device, precision)
        self.precision: Precision = "fp32" if chosen == "fp16" and not described.supports_half else chosen
        # the protocol does not depend on the test set: one report per protocol, for every set
        self._reports: dict[tuple[tuple[int, int], int, int], RuntimeReport] = {}

    def __enter__(self) -> ConfinedModel:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def upscale(
        self,
        lr: np.ndarray,
        engine: str | None = None,
        tile: int = 0,
        on_tile: Callable[[int, int], None] | None = None,
    ) -> Upscaled:
        """Upscale one ``(H, W, 3)`` uint8 image in the model process, in ``engine`` (default:
        the fastest faithful engine of :attr:`precision`), in tiles of ``tile`` LR pixels
        when above 0 (``on_tile(done, total)`` hears of each).

        Raises:
            InputError: a larger input than the model process takes.
            ModelError: the model failed, or its process died.
        """
        engine = engine or f"auto-{self.precision}"
        return self._models.upscale(_CANDIDATE, lr, self.precision, engine, tile, on_tile)

    def runtime_report(
        self, input_size: tuple[int, int], warmup: int, repeat: int, progress: bool = True
    ) -> RuntimeReport:
        """The challenge's runtime protocol at ``input_size`` (LR H, W), every pass vouched
        for on this side (:meth:`SandboxedModels.runtime`), beside bicubic timed here; the
        parameters and FLOPs are those counted from the model's exported graph.

        Raises:
            SubmissionError: the timings or the graph do not hold up (a forged timer, a graph
                that is not the model), or the model failed.
        """
        from tqdm import tqdm

        with tqdm(total=repeat, desc="timed passes", leave=False, disable=not progress) as bar:
            stats, counted, check = self._models.runtime(
                _CANDIDATE, self.precision, input_size, warmup, repeat, on_pass=lambda done, _: bar.update(done - bar.n)
            )
        x = protocol_input(input_size, self.device, self.precision)
        model = replace(self.descriptor, params=counted.params)
        report = report_beside_bicubic(model, stats, counted.flops, x, self.precision, warmup, repeat, False)
        return replace(report, check=check)

    def evaluate(
        self,
        lr_dir: str | Path,
        gt_dir: str | Path,
        target_size: tuple[int, int],
        warmup: int,
        repeat: int,
        crop_border: int = 0,
        dataset: str | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """``rtsr evaluate``'s document for this model on the LR/GT pairs of two folders: its
        outputs from the model process, the metrics and bicubic here, and the runtime protocol
        at the LR size of ``target_size`` (:meth:`runtime_report`, measured once per protocol
        however many sets are evaluated). ``engine`` names the engine of its outputs.

        Raises:
            InputError: unpaired or unreadable images.
            ModelError: the model failed, or its outputs have the wrong size.
            SubmissionError: its timings or its graph do not hold up.
        """
        from rtsr.evaluation import evaluate_with
        from rtsr.runtime import lr_size

        engines: list[EngineChoice] = []

        def upscaler(lr: np.ndarray) -> np.ndarray:
            # the outputs in the fastest engine of the protocol's precision (OpenVINO f32 on a
            # CPU equals FP32 eager to 1e-6): bf16, which the app serves, moved RTSRN's Set5
            # PSNR by 0.016 dB, which ranks submissions. The runtime stays eager, the
            # challenge's rule.
            done = self.upscale(lr)
            engines[:] = [done.engine]
            return done.sr

        def runtime() -> RuntimeReport:
            key = (lr_size(self.descriptor.scale, target_size), warmup, repeat)
            if key not in self._reports:
                self._reports[key] = self.runtime_report(*key, progress=progress)
            return self._reports[key]

        document = evaluate_with(
            self.descriptor, upscaler, runtime, lr_dir, gt_dir, self.device, self.precision, crop_border, dataset,
            progress,
        )  # fmt: skip
        if engines:
            document["engine"] = engines[0].as_dict()
        return document

    def close(self) -> None:
        """End the model process and everything it started."""
        self._models.close()
