"""The registered models, served from sandboxes for one device: the app's pool of model
processes (the bundled models in one, each evaluated model in its own, started on first use).
A submission's code runs only in those processes (rtsr.submissions.sandboxed_models)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from rtsr.devices import Precision, device_name, resolve_device, resolve_precision
from rtsr.engines import EngineChoice
from rtsr.errors import InputError, RTSRError
from rtsr.inference import prepare
from rtsr.models import Bicubic, ModelDescriptor
from rtsr.submissions.registry import Registry, RegistryEntry
from rtsr.submissions.sandbox import Limits
from rtsr.submissions.sandboxed_models import SERVING_LIMITS, SandboxedModels, Upscaled
from rtsr.submissions.submission import Submission

logger = logging.getLogger(__name__)


class ModelPool:
    """The registered models, served from sandboxes for one device.

    Every registry entry's files are checked against their hashes here, and the app never
    imports a submission's code: every forward pass runs in a sandboxed process
    (:class:`rtsr.submissions.sandboxed_models.SandboxedModels`). ``registry`` (the bundled
    models, reviewed when registered) is loaded at once in one process. ``evaluated`` (the
    store's registry: submissions the worker evaluated, that nobody reviewed) gets one
    process per model, started on first use, reused, and ended when more than
    ``max_live`` are running (the least recently used first); :meth:`refresh` picks up the
    entries added since. Entries that fail are kept in :attr:`failures` with the reason.
    Models run in FP16 on CUDA unless a descriptor says it does not support half
    precision, FP32 on the CPU. Bicubic, the reference, is rtsr's own and runs here.

    Raises:
        SubmissionError: the sandbox cannot be made here (see ``$RTSR_SANDBOX``).
    """

    def __init__(
        self,
        registry: Registry,
        device: str | torch.device | None = None,
        precision: Precision | None = None,
        limits: Limits = SERVING_LIMITS,
        evaluated: Registry | None = None,
        max_live: int = 4,
    ) -> None:
        self.device = resolve_device(device)
        self.precision: Precision = resolve_precision(self.device, precision)
        self.device_name = device_name(self.device)
        self.limits, self.max_live = limits, max_live
        self.failures: dict[str, str] = {}
        submissions = self._open(registry, registry.entries)
        self.sandboxed = SandboxedModels(submissions, self.device, limits)
        self.failures.update(self.sandboxed.failures)
        entries = {e.id: e for e in registry.entries}
        #: The served models' descriptors by registry id, in registry order; the registry's
        #: name and source are the public ones, as :meth:`Registry.load` gives them.
        self.models = {
            k: replace(d, name=entries[k].name, source=entries[k].public_source)
            for k, d in self.sandboxed.descriptors.items()
        }
        self._bicubic: dict[int, nn.Module] = {}
        #: The engine each model ran in, once it has run (models are built on first use).
        self.engines: dict[str, EngineChoice] = {}
        self._lock = threading.Lock()
        self._evaluated = evaluated
        self._pending: dict[str, Submission] = {}  # served on first use
        self._live: OrderedDict[str, SandboxedModels] = OrderedDict()
        self._starting = threading.Lock()
        if evaluated is not None:
            self.refresh()

    def _open(self, registry: Registry, entries: list[RegistryEntry]) -> dict[str, Submission]:
        submissions = {}
        for entry in entries:
            try:
                submissions[entry.id] = registry.open(entry)
            except RTSRError as e:
                logger.warning("registry entry %s failed its checks: %s", entry.id, e)
                self.failures[entry.id] = str(e)
        return submissions

    def refresh(self, registry: Registry | None = None) -> list[str]:
        """Serve the entries added to the evaluated registry since the last look (hashes
        checked now, loaded on first use); return their ids. ``registry`` is the evaluated
        registry as read now, wherever it lies (a store on the Hub reads each head into a
        folder of its own); by default, its file is read again."""
        if registry is not None:
            self._evaluated = registry
        if self._evaluated is None:
            return []
        registry = registry or Registry.read(self._evaluated.path)
        with self._lock:
            known = self.models.keys() | self.failures.keys()
            new = [e for e in registry.entries if e.id not in known]
            for entry_id, submission in self._open(registry, new).items():
                entry = registry.get(entry_id)
                self._pending[entry_id] = submission
                # what the registry knows until the model's process describes it
                self.models[entry_id] = ModelDescriptor(
                    id=entry_id, name=entry.name, scale=entry.scale, params=0, source=entry.public_source
                )
        return [e.id for e in new if e.id in self.models]

    def descriptors(self, scale: int | None = None) -> list[ModelDescriptor]:
        """The served models' descriptors, in registry order, optionally of one scale."""
        return [d for d in self.models.values() if scale is None or d.scale == scale]

    def descriptor(self, model_id: str) -> ModelDescriptor:
        """The descriptor of a served model.

        Raises:
            InputError: ``model_id`` is not served (not registered, or it failed to load).
        """
        try:
            return self.models[model_id]
        except KeyError:
            if model_id in self.failures:
                raise InputError(f"model {model_id!r} is unavailable: {self.failures[model_id]}") from None
            raise InputError(f"unknown model {model_id!r} (served: {', '.join(self.models) or 'none'})") from None

    def precision_of(self, model_id: str) -> Precision:
        """The precision ``model_id`` runs in here."""
        if self.precision == "fp16" and not self.descriptor(model_id).supports_half:
            return "fp32"
        return self.precision

    def _process_for(self, model_id: str) -> SandboxedModels:
        """The sandboxed process serving ``model_id``: the bundled models' one, or the
        model's own, started now if it is not running."""
        if model_id in self.sandboxed.descriptors:
            return self.sandboxed
        with self._lock:
            if model_id in self._live:
                self._live.move_to_end(model_id)
                return self._live[model_id]
        # one start at a time, so that two requests for a new model do not start two processes
        with self._starting:
            with self._lock:
                if model_id in self._live:
                    return self._live[model_id]
                submission = self._pending[model_id]
            process = SandboxedModels({model_id: submission}, self.device, self.limits)
            return self._register(model_id, process)

    def _register(self, model_id: str, process: SandboxedModels) -> SandboxedModels:
        with self._lock:
            if model_id in process.failures:
                process.close()
                self.failures[model_id] = process.failures[model_id]
                self.models.pop(model_id, None)
                raise InputError(f"model {model_id!r} is unavailable: {process.failures[model_id]}")
            described = process.descriptors[model_id]
            self.models[model_id] = replace(
                described, name=self.models[model_id].name, source=self.models[model_id].source
            )
            self._live[model_id] = process
            while len(self._live) > self.max_live:
                _, oldest = self._live.popitem(last=False)
                oldest.close()
        return process

    def upscale(
        self,
        model_id: str,
        image: np.ndarray,
        tile: int = 0,
        on_tile: Callable[[int, int], None] | None = None,
        engine: str = "auto",
    ) -> Upscaled:
        """Upscale an ``(H, W, 3)`` uint8 image with a served model in the sandbox, in the
        fastest faithful engine (``engine`` ``"auto"``, see :mod:`rtsr.engines`; another
        engine runs in :meth:`precision_of`), in tiles of ``tile`` LR pixels when above 0.

        Raises:
            InputError: the model is not served.
            ModelError: the model failed (one line naming it).
            torch.OutOfMemoryError: the device ran out of memory.
        """
        self.descriptor(model_id)
        process = self._process_for(model_id)
        done = process.upscale(model_id, image, self.precision_of(model_id), engine, tile, on_tile)
        with self._lock:
            first = self.engines.get(model_id) != done.engine
            self.engines[model_id] = done.engine
        if first:  # the model process logs into its sandbox: the choice is told here
            level = logging.WARNING if done.engine.passed_over else logging.INFO
            logger.log(level, "%s runs in %s", model_id, done.engine.describe())
        return done

    def bicubic(self, scale: int) -> nn.Module:
        """Bicubic upscaling by ``scale`` in FP32 on the pool's device: the reference."""
        with self._lock:
            if scale not in self._bicubic:
                self._bicubic[scale] = prepare(Bicubic(scale), self.device, "fp32")
            return self._bicubic[scale]

    def close(self) -> None:
        """End every sandboxed model process."""
        self.sandboxed.close()
        with self._lock:
            while self._live:
                self._live.popitem()[1].close()
