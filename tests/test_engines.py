"""Engines: each one's output against the model's FP32 eager output on real photos, the
serving choice and its fall-back when a fast engine is not faithful, and the CLI that times
them beside the challenge's eager run."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from rtsr.engines import (
    CHECK_IMAGE,
    DEVICE_ENGINES,
    EngineChoice,
    EngineError,
    EngineSpec,
    build_engine,
    choose_engine,
    native_bf16,
    openvino_available,
    resolve_engine,
    serving_candidates,
)
from rtsr.images import read_rgb
from rtsr.inference import prepare, upscale
from rtsr.models import PaddedModel, load_model, srmodel
from tests.conftest import ROOT, photo

CPU = torch.device("cpu")
RTSRN_X2 = ROOT / "submissions" / "rtsrn_x2" / "model.safetensors"
needs_bf16 = pytest.mark.skipif(not (native_bf16() and openvino_available()), reason="needs native bf16 and OpenVINO")


class BigOffset(nn.Module):
    """Adds 256 to every value between two convolutions and takes it off again: in FP32 the
    output is the input, upscaled; in bfloat16 (8 significant bits) ``x + 256`` keeps steps of
    2, so the picture is gone, and in FP16 (11 bits) steps of 0.25. A model broken by reduced
    precision, as a model with large activations is."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.up = nn.Conv2d(3, 3, 1)
        self.down = nn.Conv2d(3, 3 * scale * scale, 1)
        self.shuffle = nn.PixelShuffle(scale)
        with torch.no_grad():
            self.up.weight.copy_(torch.eye(3)[:, :, None, None])
            self.up.bias.fill_(256.0)
            self.down.weight.copy_(torch.eye(3).repeat_interleave(scale * scale, 0)[:, :, None, None])
            self.down.bias.fill_(-256.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.down(self.up(x)))


class NumpyInside(nn.Module):
    """Leaves torch for NumPy in its forward: no tracer can convert it (a trace keeps the
    example's output as a constant)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))  # a weight, so that it is not served as bicubic is

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        doubled = torch.from_numpy(np.repeat(np.repeat(x.float().numpy(), 2, axis=2), 2, axis=3).copy())
        return doubled.to(x.dtype) * self.gain


def rtsrn() -> nn.Module:
    return load_model(RTSRN_X2).module


def eager_fp32(module: nn.Module, image: np.ndarray) -> np.ndarray:
    return upscale(prepare(module, CPU, "fp32"), image, 2, CPU, "fp32")


def test_a_model_without_weights_stays_fp32_eager():
    # bicubic is the reference every gain is measured against: exactly itself
    _, choice = choose_engine(srmodel("bicubic", 2), CPU)
    assert choice == EngineChoice(EngineSpec("eager", "fp32"), None)


def test_engine_names_parse_and_refuse():
    assert EngineSpec.parse("openvino-bf16") == EngineSpec("openvino", "bf16")
    assert EngineSpec.parse("channels-last fp32") == EngineSpec("channels-last", "fp32")
    assert EngineSpec("cuda-graph", "fp16").label == "cuda-graph fp16"
    with pytest.raises(EngineError, match=r"^unknown engine 'tensorrt-fp16'"):
        EngineSpec.parse("tensorrt-fp16")


def test_engines_that_do_not_run_here_say_so_in_one_line():
    with pytest.raises(EngineError, match=r"^cuda-graph does not run on cpu \(there: eager, channels-last, openvino"):
        build_engine(rtsrn(), CPU, EngineSpec("cuda-graph", "fp16"))
    with pytest.raises(EngineError, match=r"^fp16 needs a CUDA device"):
        build_engine(rtsrn(), CPU, EngineSpec("channels-last", "fp16"))
    assert "openvino" not in DEVICE_ENGINES["cuda"]


@pytest.mark.parametrize(
    ("spec", "least_db"),
    [
        (EngineSpec("channels-last", "fp32"), 80),
        (EngineSpec("openvino", "fp32"), 80),
        (EngineSpec("channels-last", "bf16"), 45),
        (EngineSpec("openvino", "bf16"), 45),
    ],
)
def test_each_cpu_engine_is_faithful_to_fp32_eager_on_a_photo(spec, least_db):
    if spec.engine == "openvino" and not openvino_available():
        pytest.skip("openvino is not installed")
    module = rtsrn()
    engine = build_engine(module, CPU, spec)
    image = photo("astronaut")[100:260, 150:330]  # a face and a flag: skin and sharp colour edges
    fast = upscale(engine, image, 2, CPU, "fp32")
    assert peak_signal_noise_ratio(eager_fp32(module, image), fast) >= least_db
    # the caller's module keeps its FP32 weights and layout
    assert all(p.dtype == torch.float32 for p in module.parameters())


@needs_bf16
def test_serving_picks_openvino_bf16_for_rtsrn_on_this_cpu():
    engine, choice = choose_engine(rtsrn(), CPU)
    assert choice.spec == EngineSpec("openvino", "bf16") and choice.passed_over == ()
    # the check image is a photo; the measured figure is the one a viewer sees elsewhere too
    assert 50 < choice.fidelity_db < 70
    image = read_rgb(ROOT / "testsets" / "Set5" / "baby.png")[:200, :240]
    assert peak_signal_noise_ratio(eager_fp32(rtsrn(), image), upscale(engine, image, 2, CPU, "fp32")) >= 45


@needs_bf16
def test_a_model_broken_by_bf16_falls_back_to_fp32_and_says_why():
    model = BigOffset()
    image = read_rgb(CHECK_IMAGE)
    # the premise: FP32 carries the picture through, bfloat16 destroys it
    exact = eager_fp32(model, image)
    np.testing.assert_array_equal(exact, np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))
    bf16 = upscale(prepare(BigOffset(), CPU, "bf16"), image, 2, CPU, "bf16")
    assert peak_signal_noise_ratio(exact, bf16) < 20

    engine, choice = choose_engine(model, CPU)
    assert choice.spec == EngineSpec("openvino", "fp32")
    assert [reason.split(":")[0] for reason in choice.passed_over] == ["openvino bf16", "channels-last bf16"]
    assert all(reason.endswith("below 45 dB") for reason in choice.passed_over)
    assert "passed over: openvino bf16:" in choice.describe()
    np.testing.assert_array_equal(upscale(engine, image, 2, CPU, "fp32"), exact)


def test_a_model_no_converter_takes_is_served_by_torch():
    engine, choice = choose_engine(NumpyInside(), CPU)
    image = photo("coffee")[:50, :70]
    assert peak_signal_noise_ratio(eager_fp32(NumpyInside(), image), upscale(engine, image, 2, CPU, "fp32")) >= 45
    if openvino_available():
        assert any(reason.startswith("openvino") for reason in choice.passed_over)
        assert choice.spec.engine != "openvino"


def test_a_padded_model_keeps_its_padding_around_the_engine():
    class Needs8(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0, "sides must be multiples of 8"
            return F.interpolate(x, scale_factor=2, mode="nearest")

    padded = PaddedModel(Needs8(), 2, 8)
    for spec in serving_candidates(CPU):
        engine = build_engine(padded, CPU, spec)
        out = upscale(engine, photo("rocket")[:37, :43], 2, CPU, "fp32")  # 37x43: neither a multiple of 8
        assert out.shape == (74, 86, 3), spec.label


def test_asked_engines_report_their_fidelity_without_enforcing_it():
    _, choice = resolve_engine(BigOffset(), CPU, "channels-last", "bf16")
    assert choice.spec == EngineSpec("channels-last", "bf16") and choice.fidelity_db < 20
    _, faithful = resolve_engine(BigOffset(), CPU, "eager", None)
    assert faithful == EngineChoice(EngineSpec("eager", "fp32"), None)
    # auto within one precision: bf16 engines only, then eager bf16 as the last resort there
    _, within = resolve_engine(rtsrn(), CPU, "auto", "fp32")
    assert within.spec.precision == "fp32"


def test_an_engine_choice_from_another_process_is_checked():
    choice = EngineChoice(EngineSpec("openvino", "bf16"), 56.2, ("channels-last bf16: x",))
    assert EngineChoice.from_dict(json.loads(json.dumps(choice.as_dict()))) == choice
    for bad in (None, {**choice.as_dict(), "engine": "rm -rf"}, {**choice.as_dict(), "fidelity_db": "56"}):
        with pytest.raises(ValueError):
            EngineChoice.from_dict(bad)
    long = EngineChoice.from_dict({**choice.as_dict(), "passed_over": ["x" * 5000] * 20})
    assert len(long.passed_over) == 8 and all(len(r) == 300 for r in long.passed_over)


def test_runtime_times_engines_beside_eager_and_labels_them(tmp_path):
    out = tmp_path / "runtime.json"
    engines = ["channels-last", *(["openvino-bf16"] if openvino_available() else [])]
    result = subprocess.run(
        [sys.executable, "-m", "rtsr", "-q", "runtime", "--model", str(RTSRN_X2), "--crop-size", "96", "160",
         "--warmup", "1", "--repeat", "2", "--engine", *engines, "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "engines   beside eager fp32, same input and passes (the challenge's figure is eager):" in result.stdout
    assert "  channels-last fp32" in result.stdout and "x eager" in result.stdout
    report = json.loads(out.read_text())
    assert report["engine"] == "eager" and report["precision"] == "fp32"
    timed = {f"{e['engine']}-{e['precision']}": e for e in report["engines"]}
    assert timed["channels-last-fp32"]["fidelity_db"] > 80
    assert all(e["stats"]["passes"] == 2 for e in report["engines"])
    for e in report["engines"]:
        assert e["relative_to_eager"] == pytest.approx(e["stats"]["mean_ms"] / report["runtime"]["mean_ms"])
    if openvino_available():
        assert 45 <= timed["openvino-bf16"]["fidelity_db"] < 80
    bad = subprocess.run(
        [sys.executable, "-m", "rtsr", "runtime", "--model", str(RTSRN_X2), "--engine", "cuda-graph"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].endswith("cuda-graph does not run on cpu (there: eager, channels-last,"
                                                        " openvino, compile)")  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_serving_is_fp16_channels_last_and_a_model_broken_by_fp16_falls_back():
    cuda = torch.device("cuda")
    _, choice = choose_engine(rtsrn(), cuda)
    assert choice.spec == EngineSpec("channels-last", "fp16") and choice.fidelity_db >= 45
    _, broken = choose_engine(BigOffset(), cuda)
    assert broken.spec.precision == "fp32" and broken.passed_over
    for spec in (EngineSpec("cuda-graph", "fp16"), EngineSpec("compile", "fp16")):
        engine = build_engine(rtsrn(), cuda, spec)
        image = photo("astronaut")[:128, :160]
        assert peak_signal_noise_ratio(eager_fp32(rtsrn(), image), upscale(engine, image, 2, cuda, "fp32")) >= 45
    assert math.isfinite(choice.fidelity_db)
