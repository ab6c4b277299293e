import pytest
import torch

from rtsr.errors import InputError
from rtsr.models import load_model, srmodel
from rtsr.runtime import count_flops, lr_size, measure_runtime, time_forward

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
