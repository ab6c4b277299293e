"""The built-in models (RTSRN, the challenge's baseline, and bicubic), their factory and
the descriptor every consumer reads.

Models take a float ``(N, 3, H, W)`` RGB tensor on [0, 1] and return ``(N, 3, sH, sW)``,
as the challenge's ``test.py`` feeds them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rtsr.constants import SCALES, TRACK_SCALES
from rtsr.errors import ModelError, first_line

logger = logging.getLogger(__name__)


class RTSRN(nn.Module):
    """RealTimeSRNet, the NTIRE 2023 RTSR baseline (``demo/models/rtsrn.py``).

    A 3x3 conv to ``num_feats`` channels (the head), ``num_blocks`` 3x3 convs with ReLU
    between them (the body), the head's output added back, a 3x3 conv to ``3 * scale**2``
    channels and a pixel shuffle. Attribute names match the challenge's, so its state dicts
    load as they are.
    """

    def __init__(self, num_channels: int = 3, num_feats: int = 64, num_blocks: int = 5, upscale: int = 2) -> None:
        super().__init__()
        self.scale = upscale
        self.head = nn.Sequential(nn.Conv2d(num_channels, num_feats, 3, padding=1))
        body: list[nn.Module] = []
        for i in range(num_blocks):
            body.append(nn.Conv2d(num_feats, num_feats, 3, padding=1))
            if i < num_blocks - 1:
                body.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*body)
        self.upsample = nn.Sequential(
            nn.Conv2d(num_feats, num_channels * upscale**2, 3, padding=1),
            nn.PixelShuffle(upscale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.head(x)
        return self.upsample(res + self.body(res))


class Bicubic(nn.Module):
    """Bicubic upscaling (torch's, a = -0.75, no antialiasing), clamped to [0, 1]."""

    def __init__(self, upscale: int = 2) -> None:
        super().__init__()
        self.scale = upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up.clamp(0.0, 1.0)


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


@dataclass(frozen=True)
class ModelDescriptor:
    """What the CLI, the app and the leaderboard need to know about a loaded model."""

    id: str
    name: str
    scale: int
    params: int
    source: str
    supports_half: bool = True
    #: LR sides must be a multiple of this (1: any size).
    pad_multiple: int = 1

    @property
    def track(self) -> int:
        """The challenge track of this scale (1 for x2, 2 for x3)."""
        return next(t for t, s in TRACK_SCALES.items() if s == self.scale)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "track": self.track}


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with its descriptor."""

    module: nn.Module
    descriptor: ModelDescriptor


#: Built-in model IDs and their constructors, taking the scale.
BUILTIN_MODELS: dict[str, Callable[[int], nn.Module]] = {
    "bicubic": lambda scale: Bicubic(upscale=scale),
    "rtsrn": lambda scale: RTSRN(num_channels=3, num_feats=64, num_blocks=5, upscale=scale),
}
_NAMES = {"bicubic": "Bicubic", "rtsrn": "RTSRN, random weights"}
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


def srmodel(model_id: str, scale: int) -> nn.Module:
    """Build a built-in model by ID (``"bicubic"``, ``"rtsrn"``) for ``scale`` 2 or 3.

    RTSRN starts from random weights; load a checkpoint with :func:`load_model`.
    """
    if scale not in SCALES:
        raise ModelError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale}")
    if model_id not in BUILTIN_MODELS:
        raise _unknown_model(model_id)
    return BUILTIN_MODELS[model_id](scale)


def _unknown_model(spec: str) -> ModelError:
    known = ", ".join(BUILTIN_MODELS)
    endings = "/".join(CHECKPOINT_SUFFIXES)
    return ModelError(f"unknown model {spec!r}: not built-in ({known}) nor a {endings} file")


def count_params(module: nn.Module) -> int:
    """Number of parameters (the challenge's ``#Params``)."""
    return sum(p.numel() for p in module.parameters())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read tensors without unpickling code: safetensors, or ``torch.load(weights_only=True)``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any decoder failure means the same thing to the user
        raise ModelError(f"{path}: cannot read checkpoint ({first_line(e)})") from None
    # BasicSR wraps weights in "params" or "params_ema"; others in "state_dict".
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return state


def load_model(spec: str | Path, scale: int | None = None) -> LoadedModel:
    """Load a built-in model by ID, or an RTSRN checkpoint file, in eval mode on the CPU.

    Args:
        spec: ``"bicubic"``, ``"rtsrn"`` or a path to an RTSRN checkpoint
            (``.pth``/``.pt`` read with ``weights_only=True``, or ``.safetensors``).
        scale: 2 or 3; required for built-in IDs, checked against a checkpoint's own.

    Raises:
        ModelError: unknown ID, unreadable or mismatched checkpoint, or a scale mismatch.
    """
    path = Path(spec)
    if str(spec) in BUILTIN_MODELS:
        if scale is None:
            raise ModelError(f"model {spec!r} needs a scale (--scale 2 or 3)")
        module = srmodel(str(spec), scale)
        model_id, name, source = f"{spec}-x{scale}", _NAMES[str(spec)], "builtin"
        if spec == "rtsrn":
            logger.warning("rtsrn has random weights; pass an RTSRN checkpoint for a trained model")
    elif path.suffix in CHECKPOINT_SUFFIXES or path.exists():
        if not path.is_file():
            raise ModelError(f"{path}: no such checkpoint file")
        state = _read_state_dict(path)
        weight = state.get("upsample.0.weight")
        if weight is None or weight.ndim != 4:
            raise ModelError(f"{path}: not an RTSRN checkpoint (no upsample.0.weight)")
        found = round((weight.shape[0] / 3) ** 0.5)
        if scale is not None and found != scale:
            raise ModelError(f"{path}: checkpoint is for x{found}, but x{scale} was asked for")
        feats = weight.shape[1]
        blocks = sum(1 for k in state if k.startswith("body.") and k.endswith(".weight"))
        if found not in SCALES:
            raise ModelError(f"{path}: checkpoint is for x{found}; the challenge has x2 and x3")
        scale = found
        module = RTSRN(num_feats=feats, num_blocks=blocks, upscale=scale)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelError(f"{path}: weights do not fit RTSRN ({first_line(e)})") from None
        model_id, name, source = path.stem, f"RTSRN ({path.name})", str(path)
    else:
        raise _unknown_model(str(spec))
    module.eval().requires_grad_(False)
    descriptor = ModelDescriptor(id=model_id, name=name, scale=scale, params=count_params(module), source=source)
    return LoadedModel(module, descriptor)
