"""RTSRN (the NTIRE 2023 RTSR baseline) x2, trained with `python -m rtsr train`."""

from safetensors.torch import load_file

from rtsr.models import RTSRN


def srmodel():
    model = RTSRN(num_channels=3, num_feats=64, num_blocks=5, upscale=2)
    model.load_state_dict(load_file("model.safetensors"))
    return model
