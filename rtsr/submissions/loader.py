"""Running a submission's ``srmodel()`` safely enough to trust the result, and wrapping the
model so that any LR size works.

Each ``arch.py`` is imported as a module of its own, with its folder on the import path only
while it loads, and with the modules it brought (``utils/...``) removed afterwards, so two
submissions that both ship ``utils/modules.py`` never see each other's code. While it loads,
``arch`` names it too, as on the participant's machine (``import arch`` in ``utils/`` gets
the same module, and a pickle that names ``arch.Net`` finds its class). ``srmodel()`` runs
with the submission's folder as the working directory (checkpoints are often opened by a
relative path), and every ``torch.load`` it makes is forced to ``weights_only=True`` on the
CPU: checkpoints saved on a GPU load anywhere, and no pickle runs code. A whole model saved
with ``torch.save(model)`` loads too: the classes its pickle names are read first, without
unpickling, and allowed only when each is a ``torch.nn.Module`` class of ``torch.nn`` or of
the submission's own files (:func:`checkpoint_classes`); anything else is refused by name.

The scale is the one declared (``submission.json``, ``--scale``, the registry) or, without
one, read from a forward pass on a small input (:func:`infer_scale`).

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
import pickle
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from rtsr.constants import SCALES
from rtsr.errors import SubmissionError, first_line
from rtsr.models import LoadedModel, ModelDescriptor, PaddedModel, count_params
from rtsr.submissions.layout import ARCH_FILE
from rtsr.submissions.submission import Submission

#: Pad multiples tried, in order, when a submission does not declare one.
PAD_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
#: An LR size no model with a pad constraint accepts as it is (both sides prime).
_PROBE_SIZE = (37, 43)
_LOAD_LOCK = threading.Lock()


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


def _is_submission_module(name: str, root: Path) -> bool:
    """Whether the module ``name`` is a file of the submission in ``root`` (``arch``,
    ``utils.blocks``), judged from the files alone: nothing is imported."""
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return False
    # By path, not by where links lead: a Hub snapshot's files are links into its blobs/, and
    # the sandbox follows no other link out of the folder.
    path = root.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_torch_nn_module(name: str) -> bool:
    return name == "torch.nn" or name.startswith("torch.nn.")


class _Refused(Exception):
    """Why a global of a checkpoint is not allowed (see :func:`_resolve_class`)."""


def _resolve_class(name: str, root: Path) -> type[nn.Module]:
    """The ``torch.nn.Module`` class a checkpoint's global ``name`` (``module.qualname``)
    stands for, when its module is ``torch.nn``'s or a file of the submission in ``root``.

    Only such modules are imported, and only once that is known: a global of any other module
    is refused before anything of it runs.

    Raises:
        _Refused: anything else (a function, a class that is not a module, a class of another
            package, a module of the submission that does not import).
    """
    parts = name.split(".")
    # Where the module ends and the qualified name begins is not marked: try the longest first.
    for i in range(len(parts) - 1, 0, -1):
        module_name, attributes = ".".join(parts[:i]), parts[i:]
        ours = _is_submission_module(module_name, root)
        if not ours and not _is_torch_nn_module(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            if ours:
                raise _Refused(f"{module_name} cannot be imported") from None
            continue  # a torch.nn class taken for a module: try a shorter module name
        except Exception as e:  # the submission's own module, failing as it is imported
            raise _Refused(f"importing {module_name} failed ({e.__class__.__name__}: {first_line(e)})") from None
        if ours and not Path(getattr(module, "__file__", None) or "/").is_relative_to(root):
            raise _Refused(f"{module_name} is not the submission's own file")
        obj: Any = module
        for attribute in attributes:
            obj = getattr(obj, attribute, None)
        if obj is None:
            raise _Refused(f"{module_name} has no {'.'.join(attributes)}")
        if not isinstance(obj, type):
            raise _Refused(f"a {type(obj).__name__}, not an nn.Module class")
        if not issubclass(obj, nn.Module):
            raise _Refused("a class, but not an nn.Module")
        return obj
    if parts[0] == "__main__":
        raise _Refused("a class of the script that saved it, not of arch.py")
    raise _Refused(f"{parts[0]} is neither torch.nn nor a file of the submission")


def checkpoint_classes(f: Any, root: Path) -> list[tuple[type[nn.Module], str]]:
    """The classes a ``torch.save`` checkpoint ``f`` (a path or a seekable binary file) names
    beyond torch's own ``weights_only`` allow-list, each with the name it has in the pickle,
    as :class:`torch.serialization.safe_globals` takes them.

    The names are read by disassembling the pickle (``get_unsafe_globals_in_checkpoint``):
    nothing is unpickled. A state dict names none; ``torch.save(model)`` names the classes of
    its modules (``torch.nn.modules.conv.Conv2d``, ``arch.Net``, ``utils.blocks.RB``), while
    what holds them together (``collections.OrderedDict``, ``builtins.set``,
    ``torch._utils._rebuild_parameter``, dtypes, ``torch.Size``) is on torch's list already.
    A file torch cannot read that way (a pre-1.6 checkpoint, not a checkpoint at all) names
    none here: torch's ``weights_only`` unpickler alone decides what it may hold.

    Raises:
        pickle.UnpicklingError: a name that is not a ``torch.nn.Module`` class of ``torch.nn``
            or of the submission in ``root``, in one line that names it and says why.
    """
    import torch.serialization

    position = f.tell() if hasattr(f, "seek") else None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except Exception:  # not a zip checkpoint: allow nothing beyond torch's own list
        names = []
    finally:
        if position is not None:
            f.seek(position)
    label = f if isinstance(f, str | os.PathLike) else getattr(f, "name", "a checkpoint")
    allowed = []
    for name in names:
        try:
            allowed.append((_resolve_class(name, root), name))
        except _Refused as why:
            raise pickle.UnpicklingError(
                f"{label}: refused to unpickle {name} ({why}): only torch.nn's and the submission's nn.Module"
                " classes may be; nothing was unpickled"
            ) from None
    return allowed


@contextlib.contextmanager
def _weights_only_torch_load(root: Path) -> Iterator[None]:
    """Make every ``torch.load`` in the body read onto the CPU with ``weights_only=True``,
    allowing only the classes :func:`checkpoint_classes` finds safe in that checkpoint."""
    import torch.serialization

    original = torch.serialization.load

    @functools.wraps(original)
    def guarded(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        with torch.serialization.safe_globals(list(checkpoint_classes(f, root))):
            return original(f, "cpu", *args, **kwargs)

    torch.load = torch.serialization.load = guarded
    try:
        yield
    finally:
        torch.load = torch.serialization.load = original


def _import_arch(submission: Submission) -> ModuleType:
    """Import ``arch.py`` under a name of its own, and as ``arch`` too while it loads: the
    name it had on the participant's machine, which their pickles and ``utils/`` may use
    (and which :func:`_isolated_imports` removes afterwards)."""
    digest = hashlib.sha256(str(submission.root).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"rtsr_submission_{digest}", submission.arch)
    if spec is None or spec.loader is None:
        raise SubmissionError(f"{submission.arch}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[Path(ARCH_FILE).stem] = module
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
    with _LOAD_LOCK, _isolated_imports(root), _working_directory(root), _weights_only_torch_load(root):
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


@dataclass(frozen=True)
class ScaleProbe:
    """A forward pass that showed a model's scale: on a random LR input of ``lr_size``
    (H, W), padded up to multiples of ``pad_multiple``, it returned ``sr_size``."""

    scale: int
    pad_multiple: int
    lr_size: tuple[int, int]
    sr_size: tuple[int, int]

    def describe(self) -> str:
        """E.g. ``"a 37x43 -> 74x86 forward pass"``."""
        (h, w), (sh, sw) = self.lr_size, self.sr_size
        return f"a {h}x{w} -> {sh}x{sw} forward pass"


def _ratio(lr: int, sr: int) -> str:
    return f"{sr // lr}" if sr % lr == 0 else f"{sr / lr:.3g}"


def infer_scale(model: nn.Module) -> ScaleProbe:
    """The model's scale, read from its output on a small random input: an LR side of
    37x43 (both prime, so no hidden pad constraint is met by chance), padded up to the
    multiples of :data:`PAD_CANDIDATES` in turn until it runs and upscales both sides by
    exactly 2 or 3. This runs the model: call it on unknown code only in the sandbox.

    Raises:
        SubmissionError: every output is another ratio (x4, x2.5, one ratio per side) or
            not an image, or no size runs; in one line that says what the first pass that
            ran returned, or how the first one failed.
    """
    generator = torch.Generator().manual_seed(0)
    returned: str | None = None
    failed: str | None = None
    for multiple in PAD_CANDIDATES:
        h, w = (-(-side // multiple) * multiple for side in _PROBE_SIZE)
        try:
            with torch.inference_mode():
                out = model(torch.rand(1, 3, h, w, generator=generator))
        except Exception as e:
            failed = (
                failed
                or f"fails on every input size tried, first on 1x3x{h}x{w}: {e.__class__.__name__}: {first_line(e)}"
            )
            continue
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        if shape is None or len(shape) != 4 or shape[:2] != (1, 3):
            what = f"shape {shape}" if shape is not None else type(out).__name__
            returned = returned or f"returns {what} for a 1x3x{h}x{w} input, not a 1x3xHxW image"
            continue
        sh, sw = int(shape[2]), int(shape[3])
        scale = next((s for s in SCALES if (sh, sw) == (h * s, w * s)), None)
        if scale is not None:
            return ScaleProbe(scale, multiple, (h, w), (sh, sw))
        ratio = _ratio(h, sh) if _ratio(h, sh) == _ratio(w, sw) else f"{_ratio(h, sh)} by x{_ratio(w, sw)}"
        returned = returned or f"upscales a {h}x{w} input to {sh}x{sw}: x{ratio}"
    if returned is not None:
        raise SubmissionError(f"the model {returned}; the scale must be exactly x2 or x3")
    raise SubmissionError(f"the model {failed}")


def wrap_model(submission: Submission, model: nn.Module, scale: int, pad_multiple: int) -> LoadedModel:
    """``model`` (what ``srmodel()`` built) with its descriptor, padding its input to
    multiples of ``pad_multiple`` when that is above 1."""
    wrapped: nn.Module = PaddedModel(model, scale, pad_multiple) if pad_multiple > 1 else model
    descriptor = ModelDescriptor(
        id=submission.name,
        name=submission.meta.method or submission.name,
        scale=scale,
        params=count_params(model),
        source=submission.source,
        pad_multiple=pad_multiple,
    )
    return LoadedModel(wrapped.eval(), descriptor)


def load_submission(submission: Submission, scale: int | None = None) -> LoadedModel:
    """Build a submission's model on the CPU, wrapped to pad inputs when it needs to.

    The scale is ``scale``, else the one ``submission.json`` declares, else found by running
    the model (:func:`infer_scale`). The pad multiple is the one ``submission.json``
    declares, or found by trying.

    Raises:
        SubmissionError: ``srmodel()`` fails (see :func:`call_srmodel`), or the scale had
            to be found and is not x2 or x3.
    """
    model = call_srmodel(submission)
    scale = scale or submission.meta.scale
    if scale is None:
        try:
            probe = infer_scale(model)
        except SubmissionError as e:
            raise SubmissionError(f"{submission.root}: no scale declared, and {e}") from None
        scale, found = probe.scale, probe.pad_multiple
    else:
        found = find_pad_multiple(model, scale) or 1
    return wrap_model(submission, model, scale, submission.meta.pad_multiple or found)
