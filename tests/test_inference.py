import numpy as np
import pytest
import torch

from rtsr.devices import resolve_device, resolve_precision
from rtsr.errors import DeviceError, InputError, ModelError
from rtsr.inference import prepare, upscale, upscale_folder
from rtsr.models import load_model, srmodel
from rtsr.tensors import to_image, to_tensor
from tests.support.data import ROOT, photo


def test_tensor_round_trip_is_exact():
    image = photo("rocket")
    cpu = torch.device("cpu")
    assert np.array_equal(to_image(to_tensor(image, cpu, "fp32")), image)


def test_precision_defaults_and_refusals():
    cpu = torch.device("cpu")
    assert resolve_precision(cpu, None) == "fp32"
    assert resolve_precision(cpu, "bf16") == "bf16"
    with pytest.raises(DeviceError, match="FP16 needs a CUDA device"):
        resolve_precision(cpu, "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")


@pytest.mark.parametrize("scale", [2, 3])
def test_bicubic_upscale_size(scale):
    image = photo("coffee")[:50, :70]
    module = prepare(srmodel("bicubic", scale), torch.device("cpu"), "fp32")
    out = upscale(module, image, scale, torch.device("cpu"), "fp32")
    assert out.shape == (50 * scale, 70 * scale, 3) and out.dtype == np.uint8


def test_bf16_stays_close_to_fp32():
    """The shipped RTSRN x2 (trained weights: an untrained one's output is mostly clipped, so
    it hides errors) in bfloat16 against FP32 on photos. Measured on this project's host:
    0.24, 0.08 and 0.09 levels on average, never more than 1."""
    cpu = torch.device("cpu")
    weights = ROOT / "submissions" / "rtsrn_x2" / "model.safetensors"
    fp32_model = prepare(load_model(weights).module, cpu, "fp32")
    bf16_model = prepare(load_model(weights).module, cpu, "bf16")
    for name in ("chelsea", "coffee", "astronaut"):
        image = photo(name)[:96, :96]
        fp32 = upscale(fp32_model, image, 2, cpu, "fp32").astype(int)
        bf16 = upscale(bf16_model, image, 2, cpu, "bf16").astype(int)
        difference = np.abs(fp32 - bf16)
        assert 0 < difference.mean() < 0.4 and difference.max() <= 2, name  # 0: it did not run in bf16


class _Wrong(torch.nn.Module):
    def forward(self, x):
        return x  # the input size: not upscaled


class _NaN(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(torch.nn.functional.interpolate(x, scale_factor=2), float("nan"))


@pytest.mark.parametrize(("model", "message"), [(_Wrong(), "expected"), (_NaN(), "non-finite")])
def test_bad_outputs_are_refused_and_nothing_is_written(tmp_path, hr_dir, model, message):
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=message):
        upscale_folder(model, 2, hr_dir, out, progress=False)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_folder_outputs_are_pngs_named_as_inputs(tmp_path, hr_dir):
    written, engine = upscale_folder(srmodel("bicubic", 2), 2, hr_dir, tmp_path / "sr", progress=False)
    assert engine.label == "eager fp32"  # the library default: the model as written
    assert sorted(p.name for p in written) == sorted(p.name for p in hr_dir.iterdir())
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == sorted(p.name for p in written)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        upscale_folder(srmodel("bicubic", 2), 2, tmp_path / "empty", tmp_path / "sr", progress=False)
    assert not (tmp_path / "sr").exists()


def test_to_image_leaves_its_input_alone():
    out = torch.tensor([[[[-0.5, 0.25], [1.5, 0.75]]]]).expand(1, 3, 2, 2).contiguous()
    before = out.clone()
    image = to_image(out)
    assert torch.equal(out, before)
    assert image[..., 0].tolist() == [[0, 64], [255, 191]]
