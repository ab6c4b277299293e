"""Engines: each one's output against the model's FP32 eager output on real photos, the
serving choice and its fall-back when a fast engine is not faithful, and the CLI that times
them beside the challenge's eager run."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from rtsr.devices import native_bf16
from rtsr.engines import (
    CHECK_IMAGE,
    DEVICE_ENGINES,
    EngineChoice,
    EngineError,
    EngineSpec,
    build_engine,
    choose_engine,
    openvino_available,
    openvino_bf16,
    ran_as,
    resolve_engine,
    serving_candidates,
)
from rtsr.images import read_rgb
from rtsr.inference import prepare, upscale
from rtsr.models import PaddedModel, load_model, srmodel
from tests.support.data import AVX2_ENV, ROOT, photo, without_openvino_bf16

CPU = torch.device("cpu")
RTSRN_X2 = ROOT / "submissions" / "rtsrn_x2" / "model.safetensors"
needs_bf16 = pytest.mark.skipif(
    not (native_bf16() and openvino_bf16()), reason="needs a CPU on which torch and OpenVINO compute bf16 natively"
)
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


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
    substituted = EngineChoice(EngineSpec("openvino", "fp32"), 133.0, (), asked=EngineSpec("openvino", "bf16"))
    assert EngineChoice.from_dict(json.loads(json.dumps(substituted.as_dict()))) == substituted
    assert substituted.describe().startswith("openvino fp32 (133.0 dB from FP32); openvino bf16 asked: ")
    for bad in (
        None,
        {**choice.as_dict(), "engine": "rm -rf"},
        {**choice.as_dict(), "fidelity_db": "56"},
        {**choice.as_dict(), "asked": "bf16"},
        {**choice.as_dict(), "asked": {"engine": "openvino", "precision": "int4"}},
    ):
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
    timed = {f"{e['engine']}-{e['asked_precision']}": e for e in report["engines"]}
    assert timed["channels-last-fp32"]["fidelity_db"] > 80 and timed["channels-last-fp32"]["precision"] == "fp32"
    assert all(e["stats"]["passes"] == 2 for e in report["engines"])
    for e in report["engines"]:
        assert e["relative_to_eager"] == pytest.approx(e["stats"]["mean_ms"] / report["runtime"]["mean_ms"])
    if openvino_available():
        # labelled by the precision it computed in, which the distance from FP32 confirms
        _assert_labelled_as_computed(timed["openvino-bf16"], result.stdout)
    bad = subprocess.run(
        [sys.executable, "-m", "rtsr", "runtime", "--model", str(RTSRN_X2), "--engine", "cuda-graph"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].endswith("cuda-graph does not run on cpu (there: eager, channels-last,"
                                                        " openvino, compile)")  # fmt: skip


def _assert_labelled_as_computed(timing: dict, stdout: str) -> None:
    """An ``openvino-bf16`` entry of a runtime report: in bf16 where OpenVINO computes it (45 to
    80 dB from FP32), else labelled f32, said so under its line, and as exact as FP32."""
    assert timing["asked_precision"] == "bf16"
    if openvino_bf16():
        assert timing["precision"] == "bf16" and timing["note"] == ""
        assert 45 <= timing["fidelity_db"] < 80
        assert "  openvino bf16  " in stdout
    else:
        # no bf16 in OpenVINO here, or a cap on oneDNN (ONEDNN_MAX_CPU_ISA=AVX2) that forbids it
        assert timing["precision"] == "fp32" and timing["fidelity_db"] > 80
        assert "which has no bf16" in timing["note"] or "OpenVINO has no bf16 on this CPU" in timing["note"]
        assert timing["note"].endswith("so it ran fp32")
        assert "  openvino fp32  " in stdout and "openvino bf16  " not in stdout
        assert f"openvino bf16 asked: {timing['note']}" in stdout


@needs_openvino
def test_openvino_engines_report_the_precision_they_compute_in():
    module = rtsrn()
    f32 = build_engine(module, CPU, EngineSpec("openvino", "fp32"))
    assert ran_as(f32, EngineSpec("openvino", "fp32")) == EngineSpec("openvino", "fp32")
    bf16 = build_engine(module, CPU, EngineSpec("openvino", "bf16"))
    ran = ran_as(bf16, EngineSpec("openvino", "bf16"))
    # what the runtime graph says is what OpenVINO says the CPU offers, and what the pixels show
    assert ran.precision == ("bf16" if openvino_bf16() else "fp32")
    image = photo("astronaut")[100:200, 150:300]
    db = peak_signal_noise_ratio(eager_fp32(module, image), upscale(bf16, image, 2, CPU, "fp32"))
    assert db < 80 if ran.precision == "bf16" else db > 80
    # asked for by name, it is labelled by what it computes in
    _, choice = resolve_engine(module, CPU, "openvino", "bf16")
    assert choice.spec == ran and (choice.asked is None) == (ran.precision == "bf16")
    # a model OpenVINO keeps in f32 whatever the hint (one element-wise layer), named so on any CPU
    _, scaled = resolve_engine(Scaled(), CPU, "openvino", "bf16")
    assert scaled.spec == EngineSpec("openvino", "fp32") and scaled.asked == EngineSpec("openvino", "bf16")
    assert scaled.fidelity_db == math.inf
    assert scaled.describe().startswith("openvino fp32 (identical to FP32); openvino bf16 asked: ")
    why = "openvino compiled this model in fp32" if openvino_bf16() else "no bf16, so it ran fp32"
    assert scaled.describe().endswith(why)


class Scaled(nn.Module):
    """Scales its input by a weight: one element-wise layer."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.full((), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


_WITHOUT_BF16_PROBE = """
import json, torch
from torch import nn
from rtsr.engines import EngineSpec, choose_engine, openvino_bf16, resolve_engine, serving_candidates
cpu = torch.device("cpu")
# a small model: under qemu every layer converted costs seconds
module = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
_, asked = resolve_engine(module, cpu, "openvino", "bf16")
_, chosen = choose_engine(module, cpu, candidates=[EngineSpec("openvino", "bf16"), EngineSpec("eager", "fp32")])
print(json.dumps({
    "openvino_bf16": openvino_bf16(),
    "ran": asked.spec.label,
    "asked": asked.asked.label,
    "fidelity_db": asked.fidelity_db,
    "candidates": [s.label for s in serving_candidates(cpu)],
    "chosen": chosen.spec.label,
    "passed_over": chosen.passed_over,
}))
"""


@needs_openvino
def test_on_a_cpu_without_bf16_openvino_bf16_is_named_f32_and_never_served_as_bf16():
    # an AVX2-only CPU: this host if it is one, else qemu's Haswell (tests/support/data.py)
    argv = without_openvino_bf16([sys.executable, "-c", _WITHOUT_BF16_PROBE])
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    # OpenVINO compiled f32 as asked for bf16: named so, and as exact as f32 is
    assert seen["openvino_bf16"] is False and seen["ran"] == "openvino fp32" and seen["asked"] == "openvino bf16"
    assert seen["fidelity_db"] > 80
    # serving never lists it, and passes it over when given it
    assert seen["candidates"] == ["openvino fp32", "channels-last fp32", "eager fp32"]
    assert seen["chosen"] == "eager fp32"
    [why] = seen["passed_over"]
    assert why.startswith("openvino bf16: OpenVINO has no bf16 on this CPU (it offers FP32")
    assert why.endswith("so it ran fp32")


def test_without_native_bf16_torch_bf16_is_not_served_and_the_cli_says_what_it_costs(tmp_path):
    # oneDNN capped at AVX2: torch computes as on an AVX2-only host
    lr = tmp_path / "lr"
    lr.mkdir()
    Image.fromarray(photo("coffee")[:40, :56]).save(lr / "coffee.png")
    env = {**os.environ, **AVX2_ENV}
    probe = "import torch, rtsr.engines as e; print([c.label for c in e.serving_candidates(torch.device('cpu'))])"
    candidates = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env)
    assert "'channels-last bf16'" not in candidates.stdout and "'channels-last fp32'" in candidates.stdout
    result = subprocess.run(
        [sys.executable, "-m", "rtsr", "-q", "sr", "--model", "rtsrn-x2", "--engine", "channels-last",
         "--precision", "bf16", "--lr-dir", str(lr), "--out-dir", str(tmp_path / "sr")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert re.fullmatch(
        r"rtsr sr: warning: this CPU has no native bf16 \(no avx512_bf16 or amx_bf16 that oneDNN may use\), so torch"
        r" emulates it: rtsrn-x2 took [0-9.]+x the time of FP32 here \(one 64x64 pass each\); --precision fp32 is"
        r" (faster and )?exact",
        line,
    ), line
    # it still runs as asked, in bf16: near FP32, not equal to it
    assert "engine channels-last bf16 (" in result.stdout and (tmp_path / "sr" / "coffee.png").exists()
    # and where torch computes bf16 natively, nothing is said
    if native_bf16():
        native = subprocess.run(
            [sys.executable, "-m", "rtsr", "-q", "sr", "--model", "rtsrn-x2", "--engine", "channels-last",
             "--precision", "bf16", "--lr-dir", str(lr), "--out-dir", str(tmp_path / "sr2")],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
        assert native.returncode == 0 and native.stderr == ""


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


def test_the_engines_are_one_registry_the_cli_reads():
    from rtsr.engines import DEVICE_ENGINES, ENGINE_KINDS, ENGINES, engine_kind
    from tests.support.cli import run_cli

    assert ENGINES == ("eager", "channels-last", "openvino", "cuda-graph", "compile")
    assert DEVICE_ENGINES == {
        "cpu": ("eager", "channels-last", "openvino", "compile"),
        "cuda": ("eager", "channels-last", "cuda-graph", "compile"),
    }
    # argparse wraps help to $COLUMNS: one line each, to read it whole
    shown = run_cli("sr", "--help", check=True, env={"COLUMNS": "10000"}).stdout
    assert "--engine {" + ",".join(["auto", *ENGINES]) + "}" in shown
    for kind in ENGINE_KINDS:
        assert f"{kind.name} ({kind.help}; {'/'.join(kind.devices)})" in shown
    with pytest.raises(EngineError, match="unknown engine 'tensorrt'"):
        engine_kind("tensorrt")
