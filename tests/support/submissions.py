"""Submissions written for a test: a tiny valid x2 model, a Hub cache holding one, and a
pickle that runs code when fully unpickled."""

from __future__ import annotations

import os
from pathlib import Path

#: A small valid x2 model: a conv to 12 channels, pixel shuffle, plus bicubic as a skip. Its
#: srmodel() opens checkpoint.pth by a relative path, as real submissions do.
TINY_ARCH = """
import torch
import torch.nn.functional as F
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        return up + 0.01 * self.shuffle(self.conv(x))


def srmodel():
    model = Tiny()
    model.load_state_dict(torch.load("checkpoint.pth", map_location="cuda"))
    return model
"""


def tiny_state_dict() -> dict:
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 12, 3, padding=1)
    return {"conv.weight": conv.weight.detach(), "conv.bias": conv.bias.detach()}


def make_submission(
    folder: Path,
    arch: str = TINY_ARCH,
    scale: int = 2,
    meta: dict | None = None,
    files: dict[str, str | bytes] | None = None,
    checkpoint: bool = True,
) -> Path:
    """Write a submission folder: arch.py, submission.json, checkpoint.pth, extra files."""
    import json

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arch.py").write_text(arch)
    metadata = {"scale": scale, "team": "Test Team", "method": "Tiny", "license": "mit", **(meta or {})}
    (folder / "submission.json").write_text(json.dumps(metadata))
    if checkpoint:
        torch.save(tiny_state_dict(), folder / "checkpoint.pth")
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


def populate_hub_cache(cache: Path, repo_id: str, revision: str, folder: Path) -> None:
    """Lay ``folder`` out as huggingface_hub's cache holds a model repo at ``revision``:
    content-addressed blobs, a snapshot of relative symlinks, and refs/main."""
    import hashlib

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs" / "main").write_text(revision)


class PickleExploit:
    """Unpickling this runs a shell command that creates ``marker``: a full ``torch.load``
    of a checkpoint holding it would execute code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))
