import torch
import torch.nn.functional as F
from torch import nn

# A small network (a 3x3 conv added to the bicubic upscale, 84 parameters) everywhere but
# under torch.export, where it traces bicubic alone: a graph of no parameters and no FLOPs,
# as a submission that wants to look smaller than it is would export.


class Swap(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        if torch.compiler.is_exporting():
            return up
        return up + 0.25 * self.conv(up)


def srmodel():
    return Swap()
