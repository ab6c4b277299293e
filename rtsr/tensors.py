"""Images as tensors and back: ``(H, W, 3)`` uint8 arrays and ``(1, 3, H, W)`` tensors on
[0, 1], the layout every model here takes and gives. Below both the engines and inference,
which each convert."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from rtsr.devices import DTYPES, Precision


def to_tensor(image: np.ndarray, device: torch.device, precision: Precision) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` on [0, 1] in the given precision."""
    with warnings.catch_warnings():
        # a read-only array (np.asarray of a PIL image) is never written through the tensor:
        # .float() below copies it before anything is changed
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None]
    return x.float().div_(255.0).to(DTYPES[precision])


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` on [0, 1] -> ``(H, W, 3)`` uint8, clamped and rounded."""
    # clamp out of place: .float() of an FP32 tensor is the tensor itself, which stays untouched
    out = tensor[0].float().clamp(0.0, 1.0).mul_(255.0).round_().byte()
    # HWC on the device, where the reordering is nearly free, so the array arrives contiguous
    return out.permute(1, 2, 0).contiguous().cpu().numpy()
