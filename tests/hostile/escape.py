import os
import subprocess
import sys

import torch

SLEEPER = [sys.executable, "-c", "import time; time.sleep(1000)", "{marker}"]


def srmodel():
    for _ in range(20):
        subprocess.Popen(SLEEPER)
    # holds the validator's output open if it ever waits on pipes
    subprocess.Popen(SLEEPER, start_new_session=True)
    if os.fork() == 0:  # a double fork: the grandchild is orphaned at once
        if os.fork() == 0:
            os.setsid()
            os.execv(sys.executable, SLEEPER)
        os._exit(0)
    return torch.nn.Upsample(scale_factor=2, mode="bicubic")
