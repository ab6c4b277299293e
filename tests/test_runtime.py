import numpy as np
import pytest
import torch

from rtsr.errors import InputError
from rtsr.models import load_model, srmodel
from rtsr.runtime import (
    PROBE_BLOCKS,
    count_flops,
    lr_size,
    measure_runtime,
    output_probe,
    pass_input,
    probe_agreement_db,
    probe_weights,
    time_forward,
)
from tests.support.data import photo

# Multiply-adds per LR pixel of RTSRN x2, by hand: 3x3 convs 3->64, 5 x 64->64, 64->12.
MACS_PER_PIXEL_X2 = 9 * (3 * 64 + 5 * 64 * 64 + 64 * 12)


def test_flops_of_rtsrn_at_1080p_by_hand():
    flops = count_flops(srmodel("rtsrn", 2), (1, 3, 1080, 1920))
    assert flops == 2 * MACS_PER_PIXEL_X2 * 1080 * 1920  # about 800 GFLOPs


def test_flops_counting_touches_no_real_memory():
    model = srmodel("rtsrn", 3)
    before = [p.clone() for p in model.parameters()]
    count_flops(model, (1, 3, 720, 1280))
    assert all(p.device.type == "cpu" and torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_lr_size_of_4k():
    assert lr_size(2) == (1080, 1920)
    assert lr_size(3) == (720, 1280)
    with pytest.raises(InputError, match="divisible by the scale 3"):
        lr_size(3, (1000, 1000))


def test_time_forward_counts_passes_and_orders_statistics():
    calls = []
    model = torch.nn.Identity()
    model.register_forward_hook(lambda *a: calls.append(1))
    stats = time_forward(model, torch.zeros(1, 3, 8, 8), warmup=3, repeat=7, progress=False)
    assert len(calls) == 10 and stats.passes == 7
    assert 0 <= stats.min_ms <= stats.median_ms <= stats.p95_ms
    assert stats.std_ms >= 0


def test_report_times_model_and_bicubic_on_the_same_input():
    loaded = load_model("rtsrn", 2)
    report = measure_runtime(loaded, torch.device("cpu"), "fp32", (64, 96), warmup=1, repeat=3, progress=False)
    assert report.input_size == (32, 48) and report.output_size == (64, 96)
    assert report.timer == "wall-clock" and report.device_type == "cpu"
    assert report.flops == 2 * MACS_PER_PIXEL_X2 * 32 * 48
    assert report.relative_to_bicubic == pytest.approx(report.runtime.mean_ms / report.bicubic.mean_ms)
    assert report.as_dict()["relative_to_bicubic"] == report.relative_to_bicubic


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_protocol():
    report = measure_runtime(load_model("rtsrn", 2), torch.device("cuda"), "fp16", warmup=5, repeat=10, progress=False)
    assert report.timer == "cuda-event" and report.runtime.passes == 10
    assert report.input_size == (1080, 1920)


def test_each_pass_input_is_drawn_afresh_from_its_seed():
    cpu = torch.device("cpu")
    first, again, other = (pass_input(seed, (54, 96), cpu) for seed in (7, 7, 8))
    assert first.dtype == torch.uint8 and first.shape == (1, 3, 54, 96)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() == 0 and first.max() == 255  # every level can occur
    assert (first == other).float().mean() < 0.01  # independent draws share about 1/256


def _levels(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize(
    "change",
    ["one level on 10%", "noise of 3 levels", "another image", "zeros"],
)
def test_the_probe_estimates_the_psnr_between_two_outputs(change):
    """The probes of two outputs tell how far apart the outputs are, as a PSNR that
    scikit-image computes from the pixels themselves, within 1 dB (the estimate's spread over
    1024 blocks is about 0.2 dB); of one output, inf."""
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(0)
    output = np.asarray(photo("astronaut")[:400, :320])
    if change == "one level on 10%":
        flip = rng.random(output.shape) < 0.1
        other = np.clip(output.astype(int) + flip * rng.choice([-1, 1], output.shape), 0, 255)
    elif change == "noise of 3 levels":
        other = np.clip(output + rng.normal(0, 3, output.shape).round(), 0, 255)
    elif change == "another image":
        other = np.asarray(photo("coffee")[:400, :320])
    else:
        other = np.zeros_like(output)
    other = other.astype(np.uint8)
    weights = probe_weights(11, output.shape[:2], torch.device("cpu"))
    for seed in (0, 1, 2, 3):  # every phase
        probe, sampled = output_probe(_levels(output), weights, seed)
        reference, _ = output_probe(_levels(other), weights, seed)
        assert len(probe) == PROBE_BLOCKS and sampled == output.size // 4
        assert probe_agreement_db(probe, probe, sampled) == float("inf")
        truth = peak_signal_noise_ratio(output, other, data_range=255)
        assert probe_agreement_db(probe, reference, sampled) == pytest.approx(truth, abs=1.0)


def test_the_probe_reads_a_float_output_as_the_image_it_becomes():
    """A model's float output and the uint8 image it is written as (clamped, rounded) give one
    probe: the timed pass sends the former, the worker reads back the latter."""
    from rtsr.tensors import to_image

    raw = torch.randn(1, 3, 64, 96) * 0.6 + 0.5  # values beyond [0, 1] too
    raw[0, 0, 0, 0] = float("nan")
    weights = probe_weights(3, (64, 96), torch.device("cpu"))
    image = to_image(torch.nan_to_num(raw, 0.0))
    for seed in range(4):
        assert output_probe(raw, weights, seed) == output_probe(_levels(image), weights, seed)
