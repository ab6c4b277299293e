import os
from pathlib import Path

import torch.nn.functional as F
from torch import nn

# Replaces what the sandbox's parent reads from the scratch folder ($HOME): its stdout and
# stderr logs and the validator's report, with FIFOs that nobody writes (an open() for reading
# blocks on one until a writer comes), and a link to a file of the host; then builds a valid
# model. Every read of the parent's must still end at once.
for name in (".stdout", ".stderr", "report.jsonl"):
    path = Path(os.environ["HOME"]) / name
    path.unlink(missing_ok=True)
    os.mkfifo(path)
link = Path(os.environ["HOME"]) / "linked"
link.symlink_to("/etc/passwd")


class Nearest(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


def srmodel():
    return Nearest()
