import pytest
import torch

from rtsr.errors import SubmissionError
from rtsr.submissions.loader import PaddedModel, call_srmodel, load_submission
from rtsr.submissions.submission import open_submission
from tests.conftest import PickleExploit, make_submission, tiny_state_dict


def test_relative_checkpoint_on_a_gpu_map_location_loads_on_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the submission's folder
    loaded = load_submission(open_submission(make_submission(tmp_path / "s")))
    state = loaded.module.state_dict()
    assert torch.equal(state["conv.weight"], tiny_state_dict()["conv.weight"])
    assert state["conv.weight"].device.type == "cpu"
    assert loaded.descriptor.pad_multiple == 1 and loaded.descriptor.params == 3 * 12 * 9 + 12
    assert loaded.module(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)


MODULE_ARCH = """
import torch
from utils.modules import FACTOR


class Scale(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=2) * FACTOR


def srmodel():
    return Scale()
"""


def test_two_submissions_with_the_same_module_names_stay_apart(tmp_path):
    a = make_submission(
        tmp_path / "a", MODULE_ARCH, files={"utils/__init__.py": "", "utils/modules.py": "FACTOR = 1.0"}
    )
    b = make_submission(
        tmp_path / "b", MODULE_ARCH, files={"utils/__init__.py": "", "utils/modules.py": "FACTOR = 0.5"}
    )
    x = torch.ones(1, 3, 2, 2)
    out_a = load_submission(open_submission(a)).module(x)
    out_b = load_submission(open_submission(b)).module(x)
    assert out_a.max().item() == 1.0 and out_b.max().item() == 0.5
    import sys

    assert "utils.modules" not in sys.modules and str(a.resolve()) not in sys.path


def test_a_full_unpickle_in_srmodel_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arch = "import torch\n\ndef srmodel():\n    return torch.load('checkpoint.pth', weights_only=False)\n"
    root = make_submission(tmp_path / "s", arch, checkpoint=False)
    torch.save({"x": PickleExploit(marker)}, root / "checkpoint.pth")
    with pytest.raises(SubmissionError, match=r"srmodel\(\) failed at arch.py, line 4: UnpicklingError"):
        call_srmodel(open_submission(root))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        (
            "def srmodel():\n    return Net()\n",
            r"srmodel\(\) failed at arch.py, line 2: NameError: name 'Net' is not defined",
        ),
        ("import not_installed_pkg\n", "importing arch.py failed at arch.py, line 1: ModuleNotFoundError"),
        ("def build():\n    pass\n", r"defines no srmodel\(\) function"),
        ("def srmodel(scale, channels=3):\n    pass\n", r"srmodel\(\) must take no arguments, but requires scale"),
        ("def srmodel():\n    return 42\n", r"returned int, not a torch.nn.Module"),
        ("import torch\ndef srmodel():\n    return torch.load('missing.pth')\n", "line 3: FileNotFoundError"),
    ],
)
def test_broken_submissions_say_where_and_what(tmp_path, arch, message):
    root = make_submission(tmp_path / "s", arch, checkpoint=False)
    with pytest.raises(SubmissionError, match=message):
        call_srmodel(open_submission(root))


UNSHUFFLE_ARCH = '''
import torch
from torch import nn


class NeedsEight(nn.Module):
    """Pixel-unshuffles by 8 first, so LR sides must be multiples of 8."""

    def __init__(self):
        super().__init__()
        self.down = nn.PixelUnshuffle(8)
        self.up = nn.PixelShuffle(16)
        self.conv = nn.Conv2d(192, 768, 1)

    def forward(self, x):
        return self.up(self.conv(self.down(x)))


def srmodel():
    return NeedsEight()
'''


@pytest.mark.parametrize("declared", [0, 8])
def test_pad_multiple_found_by_trying_or_declared(tmp_path, declared):
    root = make_submission(tmp_path / "s", UNSHUFFLE_ARCH, checkpoint=False, meta={"pad_multiple": declared})
    loaded = load_submission(open_submission(root))
    assert loaded.descriptor.pad_multiple == 8
    assert isinstance(loaded.module, PaddedModel)
    with torch.inference_mode():
        assert loaded.module(torch.rand(1, 3, 37, 50)).shape == (1, 3, 74, 100)


def test_padding_crops_back_to_the_unpadded_output():
    class Nearest(torch.nn.Module):
        def forward(self, x):
            assert x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    x = torch.rand(1, 3, 6, 9)
    out = PaddedModel(Nearest(), 2, 4)(x)
    assert torch.equal(out, torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
