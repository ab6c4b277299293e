import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from rtsr.errors import SubmissionError
from rtsr.inference import upscale
from rtsr.models import PaddedModel, count_params, load_model
from rtsr.submissions.loader import call_srmodel, infer_scale, load_submission
from rtsr.submissions.submission import open_submission
from tests.support.data import ROOT
from tests.support.submissions import PickleExploit, make_submission, tiny_state_dict


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


# --- submissions without submission.json: the scale found by running the model -------------


def _without_metadata(root):
    (root / "submission.json").unlink()
    return root


def test_without_metadata_the_scale_is_inferred(tmp_path):
    submission = open_submission(_without_metadata(make_submission(tmp_path / "s")))
    assert submission.meta.scale is None
    loaded = load_submission(submission)
    assert loaded.descriptor.scale == 2 and loaded.descriptor.name == "s"
    probe = infer_scale(loaded.module)
    assert (probe.scale, probe.lr_size, probe.sr_size) == (2, (37, 43), (74, 86))
    assert probe.describe() == "a 37x43 -> 74x86 forward pass"


def test_inference_finds_the_pad_multiple_too(tmp_path):
    root = _without_metadata(make_submission(tmp_path / "s", UNSHUFFLE_ARCH, checkpoint=False))
    probe = infer_scale(call_srmodel(open_submission(root)))
    assert (probe.scale, probe.pad_multiple, probe.lr_size, probe.sr_size) == (2, 8, (40, 48), (80, 96))
    loaded = load_submission(open_submission(root))
    assert loaded.descriptor.pad_multiple == 8 and loaded.module(torch.rand(1, 3, 37, 50)).shape == (1, 3, 74, 100)


def test_a_given_scale_skips_inference(tmp_path):
    arch = "import torch\n\ndef srmodel():\n    return torch.nn.Upsample(scale_factor=4)\n"
    root = _without_metadata(make_submission(tmp_path / "s", arch, checkpoint=False))
    assert load_submission(open_submission(root), scale=3).descriptor.scale == 3  # as asked: no forward pass


@pytest.mark.parametrize(
    ("factor", "found"),
    [
        ("4", "upscales a 37x43 input to 148x172: x4;"),
        ("2.5", "upscales a 37x43 input to 92x107: x2.49;"),
        ("(2, 3)", "upscales a 37x43 input to 74x129: x2 by x3;"),
        ("1", "upscales a 37x43 input to 37x43: x1;"),
    ],
)
def test_a_ratio_other_than_2_or_3_is_refused_in_one_line(tmp_path, factor, found):
    arch = f"import torch\n\ndef srmodel():\n    return torch.nn.Upsample(scale_factor={factor})\n"
    root = _without_metadata(make_submission(tmp_path / "s", arch, checkpoint=False))
    with pytest.raises(SubmissionError) as refused:
        load_submission(open_submission(root))
    message = str(refused.value)
    assert message == f"{root.resolve()}: no scale declared, and the model {found} the scale must be exactly x2 or x3"
    assert "\n" not in message


def test_a_model_that_fails_at_every_size_says_how(tmp_path):
    arch = "import torch\n\nclass Broken(torch.nn.Module):\n    def forward(self, x):\n        raise ValueError('no')\n\ndef srmodel():\n    return Broken()\n"  # noqa: E501
    root = _without_metadata(make_submission(tmp_path / "s", arch, checkpoint=False))
    with pytest.raises(SubmissionError) as refused:
        load_submission(open_submission(root))
    assert str(refused.value) == (
        f"{root.resolve()}: no scale declared, and the model fails on every input size tried,"
        " first on 1x3x37x43: ValueError: no"
    )


NEEDS_EIGHT_X4 = UNSHUFFLE_ARCH.replace("nn.PixelShuffle(16)", "nn.PixelShuffle(32)").replace("768", "3072")


def test_the_ratio_reported_is_of_a_pass_that_ran(tmp_path):
    root = _without_metadata(make_submission(tmp_path / "s", NEEDS_EIGHT_X4, checkpoint=False))
    with pytest.raises(SubmissionError, match="the model upscales a 40x48 input to 160x192: x4;"):
        load_submission(open_submission(root))


# --- whole models saved with torch.save(model): a real challenge-layout submission ----------

BUNDLED_RTSRN_X2 = ROOT / "submissions" / "rtsrn_x2" / "model.safetensors"

#: utils/blocks.py of the challenge-layout submission: a block arch.py imports.
CHALLENGE_BLOCKS = '''
from torch import nn


class Upsampler(nn.Sequential):
    """A 3x3 convolution to 3 * scale**2 channels and a pixel shuffle (EDSR's common.Upsampler)."""

    def __init__(self, feats, scale):
        super().__init__(nn.Conv2d(feats, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))


class Settings:
    """Not a module: a pickle may not name it."""
'''

#: arch.py: RTSRN as a participant would write it, and an srmodel() that loads the whole model.
CHALLENGE_ARCH = """
import torch
from torch import nn

from utils.blocks import Upsampler


class RTSRN(nn.Module):
    def __init__(self, feats=64, blocks=5, scale=2):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, feats, 3, padding=1))
        body = []
        for i in range(blocks):
            body.append(nn.Conv2d(feats, feats, 3, padding=1))
            if i < blocks - 1:
                body.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*body)
        self.upsample = Upsampler(feats, scale)

    def forward(self, x):
        res = self.head(x)
        return self.upsample(res + self.body(res))


def srmodel():
    # saved with torch.save(model) on the participant's machine, where this file was `arch`
    return torch.load("model.pth", map_location="cuda")
"""

#: What the participant ran in their folder: the bundled RTSRN x2 weights in their own classes,
#: the whole model pickled (so the pickle names arch.RTSRN and utils.blocks.Upsampler).
SAVE_WHOLE_MODEL = """
import sys, torch, arch
from safetensors.torch import load_file
model = arch.RTSRN()
model.load_state_dict(load_file(sys.argv[1]))
torch.save(model, "model.pth")
"""


def challenge_submission(folder: Path, lr_images: dict[str, np.ndarray] | None = None) -> Path:
    """A submission in the challenge's layout and nothing more (no submission.json): arch.py
    importing a block from utils/, a whole-model pickle made by torch.save(model) in the
    folder, requirements.txt, and results/ for ``lr_images`` (by name) made with the bundled
    RTSRN x2, the same weights."""
    (folder / "utils").mkdir(parents=True)
    (folder / "utils" / "__init__.py").write_text("")
    (folder / "utils" / "blocks.py").write_text(CHALLENGE_BLOCKS)
    (folder / "arch.py").write_text(CHALLENGE_ARCH)
    (folder / "requirements.txt").write_text("torch\nsafetensors\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-c", SAVE_WHOLE_MODEL, BUNDLED_RTSRN_X2], cwd=folder, env=env, check=True)
    if lr_images:
        (folder / "results").mkdir()
        model = load_model("rtsrn", 2)  # random weights, replaced by the bundled ones below
        model.module.load_state_dict(load_file(BUNDLED_RTSRN_X2))
        for name, lr in lr_images.items():
            sr = upscale(model.module, lr, 2, torch.device("cpu"), "fp32")
            Image.fromarray(sr).save(folder / "results" / f"{name}.png")
    return folder


def zip_folder(folder: Path, target: Path) -> Path:
    """``folder``'s files at the top level of the zip ``target``, as the challenge's zips."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return target


def test_a_whole_model_pickle_of_a_challenge_submission_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSR_CACHE", str(tmp_path / "cache"))
    folder = challenge_submission(tmp_path / "rtsrn_pickled")
    names = torch.serialization.get_unsafe_globals_in_checkpoint(folder / "model.pth")
    assert {"arch.RTSRN", "utils.blocks.Upsampler", "torch.nn.modules.conv.Conv2d"} <= set(names)
    submission = open_submission(zip_folder(folder, tmp_path / "submission_rtsrn_pickled.zip"))
    assert submission.name == "rtsrn_pickled" and submission.meta.scale is None and not submission.has_metadata

    loaded = load_submission(submission)
    reference = load_model("rtsrn", 2).module
    reference.load_state_dict(load_file(BUNDLED_RTSRN_X2))
    assert loaded.descriptor.scale == 2 and loaded.descriptor.params == count_params(reference)
    # arch.RTSRN is the class of arch.py as rtsr imported it, not a second import of the file
    assert type(loaded.module).__module__.startswith("rtsr_submission_")
    assert "arch" not in sys.modules and "utils.blocks" not in sys.modules
    x = torch.rand(1, 3, 24, 30)
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), reference.eval()(x))


# --- pickles that name anything else are refused, naming it, before anything runs ----------


def pickle_calling(name: str, argument: str) -> bytes:
    """A protocol-2 pickle that calls the global ``name`` (``module.attribute``) with one string."""
    module, attribute = name.rsplit(".", 1)
    data = argument.encode()
    return b"\x80\x02" + f"c{module}\n{attribute}\n".encode() + b"X" + struct.pack("<I", len(data)) + data + b"\x85R."


def write_checkpoint(path: Path, pickled: bytes) -> Path:
    """A checkpoint in torch.save's zip format whose pickle is ``pickled``."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(buffer) as saved, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for info in saved.infolist():
            archive.writestr(info.filename, pickled if info.filename.endswith("/data.pkl") else saved.read(info))
    return path


LOADS_MODEL_PTH = "import torch\n\ndef srmodel():\n    return torch.load('model.pth')\n"


def test_the_crafted_checkpoint_would_run_its_code(tmp_path):
    """The control: what the tests below refuse is live when torch unpickles it in full."""
    marker = tmp_path / "ran"
    path = write_checkpoint(tmp_path / "model.pth", pickle_calling("os.system", f"touch {marker}"))
    torch.serialization.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("name", "argument", "why"),
    [
        ("os.system", "touch {marker}", "os is neither torch.nn nor a file of the submission"),
        ("posix.system", "touch {marker}", "posix is neither torch.nn nor a file of the submission"),
        ("builtins.exec", "open('{marker}', 'w')", "builtins is neither torch.nn nor a file of the submission"),
        ("builtins.eval", "open('{marker}', 'w')", "builtins is neither torch.nn nor a file of the submission"),
        ("subprocess.Popen", "touch {marker}", "subprocess is neither torch.nn nor a file of the submission"),
        ("collections.defaultdict", "{marker}", "collections is neither torch.nn nor a file of the submission"),
        ("functools.partial", "{marker}", "functools is neither torch.nn nor a file of the submission"),
        ("numpy.ndarray", "{marker}", "numpy is neither torch.nn nor a file of the submission"),
        ("torch.load", "{marker}", "torch is neither torch.nn nor a file of the submission"),
        ("torch.nn.functional.relu", "{marker}", "a function, not an nn.Module class"),
        ("arch.srmodel", "{marker}", "a function, not an nn.Module class"),
        ("utils.blocks.Settings", "{marker}", "a class, but not an nn.Module"),
        ("utils.blocks.Missing", "{marker}", "utils.blocks has no Missing"),
        ("__main__.Net", "{marker}", "a class of the script that saved it, not of arch.py"),
    ],
)
def test_a_pickle_naming_anything_but_a_module_class_is_refused(tmp_path, name, argument, why):
    marker = tmp_path / "ran"
    root = _without_metadata(
        make_submission(
            tmp_path / "s",
            LOADS_MODEL_PTH,
            checkpoint=False,
            files={"utils/__init__.py": "", "utils/blocks.py": CHALLENGE_BLOCKS},
        )
    )
    write_checkpoint(root / "model.pth", pickle_calling(name, argument.format(marker=marker)))
    with pytest.raises(SubmissionError) as refused:
        call_srmodel(open_submission(root))
    message = str(refused.value)
    assert message.startswith(f"{root.resolve()}: srmodel() failed at arch.py, line 4: UnpicklingError: model.pth:")
    assert f"refused to unpickle {name} ({why}" in message and "\n" not in message
    assert not marker.exists()


def test_a_global_of_another_package_is_refused_before_it_is_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    elsewhere = tmp_path / "site"
    elsewhere.mkdir()
    (elsewhere / "rtsr_test_elsewhere.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Net: pass\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    root = _without_metadata(make_submission(tmp_path / "s", LOADS_MODEL_PTH, checkpoint=False))
    write_checkpoint(root / "model.pth", pickle_calling("rtsr_test_elsewhere.Net", "x"))
    with pytest.raises(SubmissionError, match=r"refused to unpickle rtsr_test_elsewhere\.Net"):
        call_srmodel(open_submission(root))
    assert not marker.exists() and "rtsr_test_elsewhere" not in sys.modules


def test_what_torch_allows_by_default_stays_harmless(tmp_path):
    """collections.Counter is on torch's own weights_only list (as OrderedDict, set, complex):
    it loads, as data, and srmodel() returning it is refused."""
    root = _without_metadata(make_submission(tmp_path / "s", LOADS_MODEL_PTH, checkpoint=False))
    write_checkpoint(root / "model.pth", pickle_calling("collections.Counter", "abc"))
    with pytest.raises(SubmissionError, match=r"srmodel\(\) returned Counter, not a torch\.nn\.Module"):
        call_srmodel(open_submission(root))
