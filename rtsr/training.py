"""``rtsr train``: train RTSRN on the challenge's degradation and write a submission.

Random HR crops are degraded on the fly with the code of ``prepare-data`` (bicubic down by the
scale, JPEG at quality 90) and the network learns the way back under an L1 loss with Adam and
a cosine-decaying learning rate. Mixed precision: FP16 autocast with gradient scaling on CUDA,
bfloat16 autocast on a CPU that supports it. Every ``checkpoint_every`` steps the whole state
(weights, optimiser, step, random generator) is saved, so ``resume`` loses nothing; every
``val_every`` steps the PSNR on held-out images is logged. The run folder ends up holding
``submission/``: ``arch.py``, ``model.safetensors``, ``submission.json`` and a model card.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from rtsr.constants import JPEG_QUALITY
from rtsr.degradation import ResizeMethod, check_scale, crop_for_scale, degrade
from rtsr.devices import device_name, native_bf16
from rtsr.errors import InputError
from rtsr.images import IMAGE_SUFFIXES, read_rgb
from rtsr.metrics import psnr
from rtsr.models import RTSRN, count_params
from rtsr.outputs import staged_output_dir

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
LOG_FILE = "train.log"
SUBMISSION_DIR = "submission"
WEIGHTS_FILE = "model.safetensors"
#: Validation images are centre-cropped to at most this HR side, to keep validation quick.
VAL_CROP = 256


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; saved with every checkpoint and checked on resume."""

    scale: int
    train_dir: str
    val_dir: str | None = None
    #: With no ``val_dir``, every n-th training image (sorted by path) is held out instead.
    val_every_nth: int = 20
    steps: int = 8000
    batch_size: int = 16
    #: LR patch side in pixels; the HR crop is ``scale`` times larger.
    patch: int = 48
    lr: float = 1e-3
    lr_min: float = 1e-5
    val_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    jpeg_quality: int = JPEG_QUALITY
    resize: ResizeMethod = "pil"
    num_feats: int = 64
    num_blocks: int = 5


def _image_paths(folder: str) -> list[Path]:
    """Every image in ``folder`` and its direct subfolders (``data/train/<kind>/``), sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    folders = [root, *(p for p in root.iterdir() if p.is_dir())]
    paths = sorted(p for d in folders for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"{root}: no images found, directly or one folder down")
    return paths


def split(config: TrainConfig) -> tuple[list[Path], list[Path]]:
    """Training and validation images: ``val_dir``, or every n-th training image held out."""
    paths = _image_paths(config.train_dir)
    if config.val_dir:
        return paths, _image_paths(config.val_dir)
    val = paths[:: config.val_every_nth]
    return [p for p in paths if p not in val], val


class PatchSampler:
    """Random LR/HR patch pairs degraded as the challenge does, drawn from images in memory."""

    def __init__(self, paths: list[Path], config: TrainConfig, generator: torch.Generator) -> None:
        hr = config.patch * config.scale
        self.images = [img for img in (read_rgb(p) for p in paths) if min(img.shape[:2]) >= hr]
        if not self.images:
            raise InputError(f"no training image is at least {hr}x{hr} pixels")
        self.config, self.generator = config, generator

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, hr)`` float batches on [0, 1], ``(B, 3, P, P)`` and ``(B, 3, sP, sP)``."""
        c = self.config
        hr_side = c.patch * c.scale
        lrs, hrs = [], []
        for _ in range(c.batch_size):
            image = self.images[self._randint(len(self.images))]
            top = self._randint(image.shape[0] // c.scale - c.patch + 1) * c.scale
            left = self._randint(image.shape[1] // c.scale - c.patch + 1) * c.scale
            hr = image[top : top + hr_side, left : left + hr_side]
            # The eight flips and rotations of the square: content has no preferred orientation.
            hr = np.rot90(hr, self._randint(4))
            if self._randint(2):
                hr = hr[:, ::-1]
            hr = np.ascontiguousarray(hr)
            lrs.append(degrade(hr, c.scale, c.jpeg_quality, c.resize))
            hrs.append(hr)
        to_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return to_tensor(lrs), to_tensor(hrs)


def _val_pairs(paths: list[Path], config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for path in paths:
        image = read_rgb(path)
        side = min(VAL_CROP, *image.shape[:2]) // config.scale * config.scale
        gt = crop_for_scale(image, config.scale, (side, side))
        pairs.append((degrade(gt, config.scale, config.jpeg_quality, config.resize), gt))
    return pairs


def _val_psnr(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> float:
    """Mean PSNR (RGB) of the model on the validation pairs, in FP32."""
    from rtsr.tensors import to_image, to_tensor

    model.eval()
    scores = []
    with torch.inference_mode():
        for lr, gt in pairs:
            sr = to_image(model(to_tensor(lr, device, "fp32")))
            scores.append(psnr(torch.from_numpy(sr), torch.from_numpy(gt)))
    model.train()
    return float(np.mean(scores))


def _bicubic_psnr(pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> float:
    from rtsr.models import Bicubic

    return _val_psnr(Bicubic(scale), pairs, torch.device("cpu"))


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """FP16 on CUDA; bfloat16 on a CPU with native support (AVX512-BF16 or AMX); else none."""
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if native_bf16() else None


def _lr_at(step: int, config: TrainConfig) -> float:
    """Cosine decay from ``lr`` to ``lr_min`` over the run."""
    progress = min(step / max(config.steps, 1), 1.0)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * progress))


ARCH_TEMPLATE = '''"""RTSRN (the NTIRE 2023 RTSR baseline) x{scale}, trained with `python -m rtsr train`."""

from safetensors.torch import load_file

from rtsr.models import RTSRN


def srmodel():
    model = RTSRN(num_channels=3, num_feats={num_feats}, num_blocks={num_blocks}, upscale={scale})
    model.load_state_dict(load_file("{weights}"))
    return model
'''


def write_submission(
    model: RTSRN, config: TrainConfig, history: dict[str, Any], out: Path, hardware: str, train_images: int
) -> Path:
    """Write the trained model as a complete submission folder (replacing an older one)."""
    target = out / SUBMISSION_DIR
    with staged_output_dir(target) as stage:
        weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, stage / WEIGHTS_FILE)
        arch = ARCH_TEMPLATE.format(
            scale=config.scale, num_feats=config.num_feats, num_blocks=config.num_blocks, weights=WEIGHTS_FILE
        )
        (stage / "arch.py").write_text(arch)
        meta = {
            "scale": config.scale,
            "team": "rtsr baselines",
            "method": f"RTSRN x{config.scale}",
            "license": "apache-2.0",
            "training_data": f"{train_images} images of {config.train_dir} (photographs and digital art)",
            "links": {"architecture": "https://github.com/eduardzamfir/NTIRE23-RTSR"},
            "pad_multiple": 1,
        }
        (stage / "submission.json").write_text(json.dumps(meta, indent=2) + "\n")
        (stage / "README.md").write_text(_card(config, history, hardware, train_images, count_params(model)))
    return target


def _card(config: TrainConfig, history: dict[str, Any], hardware: str, train_images: int, params: int) -> str:
    last = history["val"][-1] if history["val"] else None
    result = (
        f"Validation PSNR (RGB) at step {last['step']}: {last['psnr']:.3f} dB, bicubic {history['bicubic']:.3f} dB "
        f"({last['psnr'] - history['bicubic']:+.3f} dB), on {history['val_images']} held-out images."
        if last
        else "No validation was run."
    )
    return f"""# RTSRN x{config.scale}

The NTIRE 2023 Real-Time Super-Resolution baseline architecture (RTSRN: a 3x3 conv to
{config.num_feats} channels, {config.num_blocks} 3x3 convs with ReLU between them, the head added
back, a conv to {3 * config.scale**2} channels and a pixel shuffle), {params:,} parameters,
trained by `python -m rtsr train`.

- Data: {train_images} training images from `{config.train_dir}` (photographs and digital art);
  validation on {history["val_images"]} held-out images; the evaluation sets (Set5, Set14,
  Urban100) were never used for training or model selection.
- Degradation, on the fly: bicubic down x{config.scale} ({config.resize}) and JPEG at quality
  {config.jpeg_quality}, the code of `rtsr prepare-data`.
- Schedule: {config.steps} steps of batch {config.batch_size}, {config.patch}x{config.patch} LR
  patches with flips and rotations, L1 loss, Adam, learning rate {config.lr:g} decaying by a
  cosine to {config.lr_min:g}, seed {config.seed}.
- Hardware: {hardware}, {history["precision"]} autocast, {history["seconds"] / 60:.0f} minutes.

{result}

Full configuration: `{json.dumps(asdict(config))}`
"""


def train(config: TrainConfig, out: Path, resume: bool = False, progress: bool = True) -> Path:
    """Train RTSRN; return the written submission folder.

    Raises:
        InputError: bad folders or scale, a run folder that exists without ``resume``, or a
            ``resume`` whose configuration differs from the saved one.
    """
    check_scale(config.scale)
    state_path = out / STATE_FILE
    saved: dict[str, Any] | None = None
    if resume:
        if not state_path.is_file():
            raise InputError(f"{out}: nothing to resume (no {STATE_FILE})")
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        if saved["config"] != asdict(config):
            changed = sorted(k for k, v in asdict(config).items() if saved["config"].get(k) != v)
            raise InputError(f"{out}: --resume with other settings than the saved run ({', '.join(changed)})")
    elif state_path.exists():
        raise InputError(f"{out}: a run is already there; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    propagate, logger.propagate = logger.propagate, False  # the progress bar shows the same lines
    try:
        return _run(config, out, saved, progress)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        handler.close()


def _run(config: TrainConfig, out: Path, saved: dict[str, Any] | None, progress: bool) -> Path:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_paths, val_paths = split(config)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = RTSRN(num_feats=config.num_feats, num_blocks=config.num_blocks, upscale=config.scale).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    autocast = _autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16)
    val_pairs = _val_pairs(val_paths, config)
    history: dict[str, Any]
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        generator.set_state(saved["generator"])
        step, history = saved["step"], saved["history"]
        logger.info("resumed at step %d", step)
    else:
        step = 0
        history = {
            "val": [],
            "bicubic": _bicubic_psnr(val_pairs, config.scale),
            "val_images": len(val_pairs),
            "precision": {torch.float16: "FP16", torch.bfloat16: "BF16", None: "no"}[autocast],
            "seconds": 0.0,
        }
        logger.info(
            "training RTSRN x%d on %d images (%d held out) on %s: %s",
            config.scale, len(train_paths), len(val_paths), device_name(device), json.dumps(asdict(config)),
        )  # fmt: skip
    sampler = PatchSampler(train_paths, config, generator)
    model.train()
    started = time.monotonic() - history["seconds"]
    bar = tqdm(total=config.steps, initial=step, desc=f"train x{config.scale}", unit="step", disable=not progress)
    while step < config.steps:
        lr, hr = (t.to(device) for t in sampler.batch())
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = F.l1_loss(model(lr).float(), hr)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{_lr_at(step, config):.1e}")
        if step % config.val_every == 0 or step == config.steps:
            value = _val_psnr(model, val_pairs, device)
            history["val"].append({"step": step, "psnr": value, "loss": loss.item()})
            logger.info(
                "step %d: loss %.4f, val PSNR %.3f dB (bicubic %.3f, %+.3f)",
                step, loss.item(), value, history["bicubic"], value - history["bicubic"],
            )  # fmt: skip
            bar.write(f"step {step}: val PSNR {value:.3f} dB ({value - history['bicubic']:+.3f} over bicubic)")
        if step % config.checkpoint_every == 0 or step == config.steps:
            history["seconds"] = time.monotonic() - started
            _save_state(out, config, model, optimizer, scaler, generator, step, history)
    bar.close()
    hardware = f"{device_name(device)} ({platform.machine()})"
    return write_submission(model, config, history, out, hardware, len(train_paths))


def _save_state(
    out: Path,
    config: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    generator: torch.Generator,
    step: int,
    history: dict[str, Any],
) -> None:
    """Save everything a resumed run needs, atomically (a crash mid-save keeps the old one)."""
    tmp = out / f".{STATE_FILE}.tmp"
    torch.save(
        {
            "config": asdict(config),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "generator": generator.get_state(),
            "step": step,
            "history": history,
        },
        tmp,
    )
    tmp.replace(out / STATE_FILE)
