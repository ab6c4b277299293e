"""The shipped RTSRN weights, loaded through the registry as the app loads them, beat bicubic
on a held-out image under the challenge's degradation: weights and code cannot drift apart."""

import pytest
import torch

from rtsr.degradation import crop_for_scale, degrade
from rtsr.images import read_rgb
from rtsr.inference import prepare, upscale
from rtsr.metrics import measure
from rtsr.submissions.registry import BUNDLED_REGISTRY, Registry

CPU = torch.device("cpu")


@pytest.mark.parametrize(("entry_id", "scale"), [("rtsrn-x2", 2), ("rtsrn-x3", 3)])
def test_shipped_rtsrn_beats_bicubic_on_a_held_out_image(set5, entry_id, scale):
    registry = Registry.read(BUNDLED_REGISTRY)
    model = prepare(registry.load(entry_id).module, CPU, "fp32")
    bicubic = prepare(registry.load(f"bicubic-x{scale}").module, CPU, "fp32")
    gt = crop_for_scale(read_rgb(set5 / "butterfly.png"), scale)
    lr = degrade(gt, scale)
    ours = measure(upscale(model, lr, scale, CPU, "fp32"), gt)
    reference = measure(upscale(bicubic, lr, scale, CPU, "fp32"), gt)
    assert ours.psnr_rgb > reference.psnr_rgb + 0.3, (ours, reference)
    assert ours.ssim_rgb > reference.ssim_rgb
