"""rtsr.submissions.graph in this process, on a model of our own (a submission's graph is
exported and counted only in its sandbox, as tests/test_sandboxed_models.py runs it): the
counted size equals a hand count, and the vetting refuses a graph that carries code."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from rtsr.errors import ModelError
from rtsr.submissions.graph import PROGRAM_FILE, _count, export_graph, one_tensor_specs, vetted_program


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    folder = tmp_path_factory.mktemp("graph")
    export_graph(model, torch.rand(1, 3, 16, 16), folder)
    return model, folder


def test_the_counted_size_is_the_hand_count(exported):
    _, folder = exported
    counted = _count(
        {"folder": str(folder), "device": "cpu", "precision": "fp32", "size": [16, 16], "scale": 2,
         "run_seed": 1, "seeds": [3, 4]}
    )  # fmt: skip
    assert counted["params"] == 3 * 12 * 3 * 3 + 12  # the weights and the bias
    assert counted["flops"] == 2 * (12 * 3 * 3 * 3) * 16 * 16  # 2 per multiply-add of the conv; the shuffle 0
    assert len(counted["probes"]) == 2 and counted["sampled"] > 0


def test_a_graph_that_carries_code_is_refused_by_name(exported):
    _, folder = exported
    program = json.loads((folder / PROGRAM_FILE).read_text())
    assert vetted_program(program, one_tensor_specs())["graph_module"]  # the graph as exported passes
    guarded = {**program, "guards_code": "__import__('os').system('id')"}
    with pytest.raises(ModelError, match="its exported graph has guards, which are code"):
        vetted_program(guarded, one_tensor_specs())
    reaching = copy.deepcopy(program)
    reaching["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"
    with pytest.raises(ModelError, match=r"calls aten\.from_file, which reaches outside the graph"):
        vetted_program(reaching, one_tensor_specs())
