"""Running a submission's ``srmodel()`` safely enough to trust the result, and wrapping the
model so that any LR size works.

Each ``arch.py`` is imported as a module of its own, with its folder on the import path only
while it loads, and with the modules it brought (``utils/...``) removed afterwards, so two
submissions that both ship ``utils/modules.py`` never see each other's code. ``srmodel()``
runs with the submission's folder as the working directory (checkpoints are often opened by
a relative path), and every ``torch.load`` it makes is forced to ``weights_only=True`` on the
CPU: checkpoints saved on a GPU load anywhere, and no pickle runs code.

This is no sandbox: the code runs in the process that calls it. Unknown submissions run
through :mod:`rtsr.submissions.validation` and :mod:`rtsr.submissions.sandboxed_models`,
which call this inside :mod:`rtsr.submissions.sandbox`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rtsr.errors import SubmissionError, first_line
from rtsr.models import LoadedModel, ModelDescriptor, count_params
from rtsr.submissions.submission import Submission

#: Pad multiples tried, in order, when a submission does not declare one.
PAD_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
#: An LR size no model with a pad constraint accepts as it is (both sides prime).
_PROBE_SIZE = (37, 43)
_LOAD_LOCK = threading.Lock()


class PaddedModel(nn.Module):
    """Pads the input by reflection to a multiple of ``multiple`` and crops the output back."""

    def __init__(self, inner: nn.Module, scale: int, multiple: int) -> None:
        super().__init__()
        self.inner, self.scale, self.multiple = inner, scale, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        if pad_h or pad_w:
            # Reflection needs the pad to be shorter than the side; tiny inputs replicate.
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.inner(x)[..., : h * self.scale, : w * self.scale]


def _where(error: BaseException, root: Path) -> str:
    """``arch.py, line 12``: the innermost frame in the submission's own code, or ''."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(str(root))]
    if not frames:
        return ""
    return f"{Path(frames[-1].filename).relative_to(root)}, line {frames[-1].lineno}"


def _describe(error: BaseException, root: Path, doing: str) -> SubmissionError:
    """One line: what failed, where in the submission, and the error's first line."""
    detail = f"{error.__class__.__name__}: {first_line(error)}" if str(error).strip() else error.__class__.__name__
    where = _where(error, root)
    return SubmissionError(f"{root}: {doing} failed{' at ' + where if where else ''}: {detail}")


@contextlib.contextmanager
def _isolated_imports(root: Path) -> Iterator[None]:
    """Put ``root`` first on ``sys.path`` and hide same-named modules while the body runs;
    afterwards drop every module imported from ``root`` and restore what was hidden."""
    top_names = {p.stem if p.suffix == ".py" else p.name for p in root.iterdir() if p.suffix == ".py" or p.is_dir()}
    hidden = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] in top_names}
    for name in hidden:
        del sys.modules[name]
    saved_path = list(sys.path)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name, mod in list(sys.modules.items()):
            file = getattr(mod, "__file__", None) or ""
            if file.startswith(str(root)) or name.split(".")[0] in top_names:
                del sys.modules[name]
        sys.modules.update(hidden)
        importlib.invalidate_caches()


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """Make every ``torch.load`` in the body read tensors only, onto the CPU."""
    import torch.serialization

    original = torch.serialization.load

    @functools.wraps(original)
    def guarded(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(f, "cpu", *args, **kwargs)

    torch.load = torch.serialization.load = guarded
    try:
        yield
    finally:
        torch.load = torch.serialization.load = original


def _import_arch(submission: Submission) -> ModuleType:
    digest = hashlib.sha256(str(submission.root).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"rtsr_submission_{digest}", submission.arch)
    if spec is None or spec.loader is None:
        raise SubmissionError(f"{submission.arch}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call_srmodel(submission: Submission) -> nn.Module:
    """Import ``arch.py`` in isolation and return what its ``srmodel()`` builds, in eval mode.

    Raises:
        SubmissionError: no ``srmodel``, one that needs arguments, any error while importing
            or building (with the file and line in the submission), or a result that is not
            a ``torch.nn.Module``.
    """
    root = submission.root
    with _LOAD_LOCK, _isolated_imports(root), _working_directory(root), _weights_only_torch_load():
        try:
            module = _import_arch(submission)
        except Exception as e:
            raise _describe(e, root, "importing arch.py") from None
        srmodel = getattr(module, "srmodel", None)
        if not callable(srmodel):
            raise SubmissionError(f"{submission.arch}: defines no srmodel() function")
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        required = [
            p.name
            for p in inspect.signature(srmodel).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind not in variadic
        ]
        if required:
            raise SubmissionError(
                f"{submission.arch}: srmodel() must take no arguments, but requires {', '.join(required)}"
            )
        try:
            model = srmodel()
        except Exception as e:
            raise _describe(e, root, "srmodel()") from None
    if not isinstance(model, nn.Module):
        raise SubmissionError(f"{submission.arch}: srmodel() returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval().requires_grad_(False)


def _accepts(model: nn.Module, scale: int, multiple: int) -> bool:
    h, w = (-(-side // multiple) * multiple for side in _PROBE_SIZE)
    try:
        with torch.inference_mode():
            out = model(torch.rand(1, 3, h, w))
    except Exception:
        return False
    return tuple(out.shape) == (1, 3, h * scale, w * scale)


def find_pad_multiple(model: nn.Module, scale: int) -> int | None:
    """The smallest of :data:`PAD_CANDIDATES` whose multiples the model upscales correctly,
    or None when none does (the model is broken at every size; its first use will say how)."""
    return next((m for m in PAD_CANDIDATES if _accepts(model, scale, m)), None)


def load_submission(submission: Submission) -> LoadedModel:
    """Build a submission's model on the CPU, wrapped to pad inputs when it needs to.

    The pad multiple is the one ``submission.json`` declares, or found by trying.
    """
    scale = submission.meta.scale
    model = call_srmodel(submission)
    multiple = submission.meta.pad_multiple or find_pad_multiple(model, scale) or 1
    wrapped: nn.Module = PaddedModel(model, scale, multiple) if multiple > 1 else model
    meta = submission.meta
    descriptor = ModelDescriptor(
        id=submission.name,
        name=meta.method or submission.name,
        scale=scale,
        params=count_params(model),
        source=submission.source,
        pad_multiple=multiple,
    )
    return LoadedModel(wrapped.eval(), descriptor)
