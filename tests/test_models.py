import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rtsr.errors import ModelError
from rtsr.models import RTSRN, Bicubic, count_params, load_model, srmodel
from tests.support.submissions import PickleExploit

# Parameters of RTSRN(3, 64 feats, 5 blocks) counted by hand from its layers:
# head 3*64*9 + 64; body 5 * (64*64*9 + 64); tail 64*(3*s*s)*9 + 3*s*s.
EXPECTED_PARAMS = {2: 1792 + 184640 + (64 * 12 * 9 + 12), 3: 1792 + 184640 + (64 * 27 * 9 + 27)}


@pytest.mark.parametrize("scale", [2, 3])
def test_rtsrn_shape_and_size(scale):
    model = srmodel("rtsrn", scale)
    assert count_params(model) == EXPECTED_PARAMS[scale]
    out = model(torch.rand(1, 3, 17, 23))
    assert out.shape == (1, 3, 17 * scale, 23 * scale)


def test_rtsrn_layout_is_the_challenges():
    model = RTSRN(num_feats=64, num_blocks=5, upscale=2)
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    relus = [m for m in model.body if isinstance(m, torch.nn.ReLU)]
    assert len(convs) == 5 and len(relus) == 4  # ReLU between the convs, none after the last
    assert isinstance(model.body[-1], torch.nn.Conv2d)
    # The head's output is added back before the tail: with the body zeroed the output is
    # tail(head(x)); without the skip it would be tail(0), a constant.
    x = torch.rand(1, 3, 8, 8)
    for conv in convs:
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    with torch.no_grad():
        expected = model.upsample(model.head(x))
        assert torch.allclose(model(x), expected)


def test_bicubic_is_clamped_torch_bicubic():
    x = torch.zeros(1, 3, 8, 8)
    x[..., 3:5, 3:5] = 1.0  # a bright square overshoots with a = -0.75
    raw = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False)
    assert raw.max() > 1 and raw.min() < 0
    out = Bicubic(3)(x)
    assert torch.equal(out, raw.clamp(0, 1))


def test_unknown_model_and_scale():
    with pytest.raises(ModelError, match="unknown model 'edsr'"):
        load_model("edsr", 2)
    with pytest.raises(ModelError, match="scale must be one of 2, 3"):
        srmodel("rtsrn", 4)
    with pytest.raises(ModelError, match="needs a scale"):
        load_model("rtsrn")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip_and_scale_from_weights(tmp_path, suffix):
    model = srmodel("rtsrn", 3)
    path = tmp_path / f"mine{suffix}"
    if suffix == ".pth":
        torch.save({"params": model.state_dict()}, path)  # BasicSR's wrapping
    else:
        save_file(model.state_dict(), path)
    loaded = load_model(path)
    assert loaded.descriptor.scale == 3 and loaded.descriptor.track == 2
    assert loaded.descriptor.params == EXPECTED_PARAMS[3]
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), model.eval()(x))
    with pytest.raises(ModelError, match="checkpoint is for x3, but x2 was asked for"):
        load_model(path, 2)


def test_checkpoint_that_runs_code_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"upsample.0.weight": PickleExploit(marker)}, path)
    with pytest.raises(ModelError, match=r"evil\.pth: cannot read checkpoint"):
        load_model(path)
    assert not marker.exists()


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, path)
    with pytest.raises(ModelError, match="not an RTSRN checkpoint"):
        load_model(path)
    torch.save({"upsample.0.weight": torch.zeros(12, 64, 3, 3), "head.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="weights do not fit RTSRN"):
        load_model(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_model(tmp_path / "nope.pth")
