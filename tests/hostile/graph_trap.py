import json
import os

import torch.nn.functional as F
from torch import nn

import rtsr.submissions.graph as graph
import rtsr.submissions.loader as loader

# Runs in the model process, so it rewrites what that process says and writes: its size
# (1 parameter), and the graph it exports for the worker's counter, by the attack "{attack}":
#   guards     code in the program's guards, which torch.export.load would run
#   target     a node that calls torch.load, not an aten operator
#   from_file  a node that calls aten.from_file, which reads a file
#   fifo       a FIFO in place of the program, on which an open for reading blocks
#   huge       a 2 GB (sparse) file in place of the tensors
ATTACK = "{attack}"
loader.count_params = lambda module: 1
_export = graph.export_graph


def _trapped(module, x, folder):
    _export(module, x, folder)
    program = folder / graph.PROGRAM_FILE
    data = json.loads(program.read_text())
    nodes = data["graph_module"]["graph"]["nodes"]
    if ATTACK == "guards":
        data["guards_code"] = ["__import__('os').system('echo pwned')"]
    elif ATTACK == "target":
        nodes[0]["target"] = "torch.load"
    elif ATTACK == "from_file":
        nodes[0]["target"] = "torch.ops.aten.from_file.default"
    program.write_text(json.dumps(data))
    if ATTACK == "fifo":
        program.unlink()
        os.mkfifo(program)
    elif ATTACK == "huge":
        with open(folder / graph.TENSORS_FILE, "r+b") as f:
            f.truncate(2 * 1024**3)


graph.export_graph = _trapped


class Up(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


def srmodel():
    return Up()
