"""One way to name a model, wherever it lives: what ``--model`` accepts.

In order: a built-in ID (``bicubic``, ``rtsrn``), an RTSRN checkpoint file, an id in the
registry (hashes checked), a submission folder or zip, or a Hub submission pinned as
``org/name@<commit>``.
"""

from __future__ import annotations

from pathlib import Path

from rtsr.errors import ModelError, SubmissionError
from rtsr.models import BUILTIN_MODELS, CHECKPOINT_SUFFIXES, LoadedModel, load_model
from rtsr.submissions.loader import load_submission
from rtsr.submissions.registry import Registry
from rtsr.submissions.submission import HUB_SPEC, open_submission


def load(spec: str, scale: int | None = None, registry_path: Path | None = None) -> LoadedModel:
    """Load the model ``spec`` names, on the CPU in eval mode.

    Raises:
        ModelError: an unknown name, or a scale that differs from the model's own.
        SubmissionError: a submission that cannot be opened, verified or built.
    """
    path = Path(spec)
    if spec in BUILTIN_MODELS or path.suffix in CHECKPOINT_SUFFIXES:
        return load_model(spec, scale)
    registry = Registry.read(registry_path)
    if any(e.id == spec for e in registry.entries):
        loaded = registry.load(spec)
    elif path.exists() or HUB_SPEC.match(spec):
        loaded = load_submission(open_submission(spec))
    else:
        known = ", ".join([*BUILTIN_MODELS, *(e.id for e in registry.entries)])
        raise ModelError(
            f"unknown model {spec!r}: not built-in or registered ({known}), nor a checkpoint,"
            " submission folder, zip, or org/name@<commit>"
        )
    if scale is not None and loaded.descriptor.scale != scale:
        raise SubmissionError(f"{spec} is a x{loaded.descriptor.scale} model, but x{scale} was asked for")
    return loaded
