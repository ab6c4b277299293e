"""A submission's size, counted where its code does not run.

The model process runs the submission's code, so what it says of itself (parameters, FLOPs)
is the submission's word. Instead, the model process exports the model as the runtime
protocol runs it (``torch.export``, in the protocol's precision at the timed input size) and
hands over the graph: JSON, and its tensors as safetensors. A process of its own, sandboxed
and importing no submission code (``python -m rtsr.submissions.graph``), rebuilds the graph
from a vetted subset of that JSON, counts its parameters and its FLOPs
(``torch.utils.flop_counter``), and runs it on the inputs of timed passes the worker names,
answering with the probes of its outputs (:func:`rtsr.runtime.output_probe`). The worker
compares them with the timed passes' own probes: the figures are those of a graph that
computes what was timed.

Nothing is unpickled. ``torch.export.load`` is not used: it falls back to ``pickle`` for
objects it does not know and builds guards from code strings in the file. The JSON goes to
torch's deserializer only as this module rebuilds it: ``aten`` operators only (a few that read
files or print refused), tensors, numbers, short lowercase words, one tensor in and one out,
no symbolic shapes, guards, custom objects, subgraphs or metadata.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rtsr.devices import DTYPES, Precision
from rtsr.errors import ModelError, first_line

if TYPE_CHECKING:
    from rtsr.submissions.sandbox import Limits

#: The files the model process writes into its scratch folder's ``graph/``.
PROGRAM_FILE = "program.json"
TENSORS_FILE = "tensors.safetensors"
#: The largest of each the worker reads: a real-time SR model's graph is a few hundred KB of
#: JSON and a few MB of weights.
MAX_PROGRAM_BYTES = 64 * 1024**2
MAX_TENSORS_BYTES = 256 * 1024**2
#: The counter's answer, in its scratch folder.
COUNT_FILE = "count.json"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
_FQN = re.compile(r"[A-Za-z0-9_]{1,200}(\.[A-Za-z0-9_]{1,200}){0,63}")
_WORD = re.compile(r"[a-z_]{1,32}")  # aten's string arguments: mode="reflect", approximate="tanh"
_TARGET = re.compile(r"torch\.ops\.aten\.([A-Za-z0-9_]{1,100})\.([A-Za-z0-9_]{1,100})")
#: aten operators that reach outside the graph: ``from_file`` reads a file, ``_print`` writes.
_DENIED_OPS = frozenset({"from_file", "_print"})
_SCALAR_ARGS = {"as_int": int, "as_float": float, "as_bool": bool, "as_scalar_type": int, "as_memory_format": int}
_LIST_ARGS = {"as_ints": int, "as_floats": float, "as_bools": bool}
_STATE_KINDS = {"parameter": "parameter_name", "buffer": "buffer_name", "tensor_constant": "tensor_constant_name"}


@dataclass(frozen=True)
class GraphCount:
    """What the counter found in a model's exported graph."""

    #: Elements of every tensor the graph holds (parameters, buffers and constants): weights
    #: kept as buffers or constants count too.
    params: int
    #: FLOPs of one forward pass at the exported size (``torch.utils.flop_counter``).
    flops: int
    #: The probe of its output for each seed asked, in order.
    probes: list[list[float]]
    sampled: int


# --- in the model process -------------------------------------------------------------------


def held_elements(program: torch.export.ExportedProgram) -> int:
    """The parameter count of an exported graph: the elements of every tensor it holds
    (parameters, buffers and constants), so weights kept as buffers or constants count too."""
    return sum(t.numel() for t in [*program.state_dict.values(), *program.constants.values()])


def export_graph(module: torch.nn.Module, x: torch.Tensor, folder: Path) -> torch.export.ExportedProgram:
    """Export ``module`` on an input like ``x``, write its graph into ``folder`` (the
    program's JSON and its tensors) and return it. Runs the submission's code
    (``torch.export`` traces it), so only in its sandbox.

    Raises:
        ModelError: it could not be exported, or holds something that is not a tensor.
    """
    from safetensors.torch import save_file
    from torch._export.serde.serialize import serialize

    try:
        program = torch.export.export(module, (x,))
    except Exception as e:  # the submission's forward, as torch.export traces it
        raise ModelError(f"torch.export could not export it: {e.__class__.__name__}: {first_line(e)}") from None
    artifact = serialize(program, serialize_state_dict=False, serialize_constants=False, serialize_example_inputs=False)
    tensors = {}
    for kind, items in (("state", program.state_dict.items()), ("constant", program.constants.items())):
        for name, value in items:
            if not isinstance(value, torch.Tensor):
                raise ModelError(
                    f"its exported graph holds {name!r}, a {type(value).__name__}: only tensors are counted"
                )
            # safetensors refuses shared storage: each tensor is written apart
            tensors[f"{kind}:{name}"] = value.detach().to("cpu").contiguous().clone()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROGRAM_FILE).write_bytes(artifact.exported_program)
    save_file(tensors, folder / TENSORS_FILE)
    return program


# --- vetting: the JSON rebuilt from what a counter may read ------------------------------------


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ModelError(f"its exported graph {what}")


def _name(value: Any, pattern: re.Pattern[str] = _IDENTIFIER) -> str:
    _need(
        isinstance(value, str) and pattern.fullmatch(value) is not None,
        f"has a name that is not one: {str(value)[:60]!r}",
    )
    return str(value)


def _int(value: Any) -> int:
    _need(type(value) is int and abs(value) < 2**62, f"has a number that is not an integer: {str(value)[:60]}")
    return int(value)


def _keys(value: Any, allowed: set[str], where: str) -> dict[str, Any]:
    _need(isinstance(value, dict), f"has {where} that is not an object")
    extra = set(value) - allowed
    if extra:
        raise ModelError(f"its exported graph has {sorted(extra)[0][:40]!r} in {where}, which the counter never reads")
    return dict(value)


def _list(value: Any, what: str, limit: int) -> list[Any]:
    _need(isinstance(value, list) and len(value) <= limit, f"has {what} that is not a list of at most {limit}")
    return list(value)


def _tensor_ref(value: Any) -> dict[str, str]:
    return {"name": _name(_keys(value, {"name"}, "a tensor argument").get("name"))}


def _argument(arg: Any) -> dict[str, Any]:
    """One argument of a node, rebuilt: tensors, numbers, devices and short words only."""
    _need(isinstance(arg, dict) and len(arg) == 1, "has an argument that is not one value")
    ((kind, value),) = arg.items()
    if kind == "as_none":
        return {"as_none": True}
    if kind == "as_tensor":
        return {"as_tensor": _tensor_ref(value)}
    if kind == "as_tensors":
        return {"as_tensors": [_tensor_ref(v) for v in _list(value, "a list of tensors", 4096)]}
    if kind == "as_optional_tensors":
        value = _list(value, "a list of tensors", 4096)
        for item in value:
            _need(
                isinstance(item, dict) and set(item) in ({"as_tensor"}, {"as_none"}),
                "has a list of tensors that is not one",
            )
        return {"as_optional_tensors": [_argument(item) for item in value]}
    if kind in _SCALAR_ARGS:
        wanted = _SCALAR_ARGS[kind]
        ok = type(value) is wanted or (
            wanted is float and (type(value) is int or value in ("Infinity", "-Infinity", "NaN"))
        )
        _need(ok, f"has a {kind} that is not one")
        return {kind: value}
    if kind in _LIST_ARGS:
        wanted = _LIST_ARGS[kind]
        value = _list(value, kind, 64)
        _need(
            all(type(v) is wanted or (wanted is float and type(v) is int) for v in value),
            f"has a {kind} that is not one",
        )
        return {kind: list(value)}
    if kind == "as_string":
        return {"as_string": _name(value, _WORD)}
    if kind == "as_layout":
        return {"as_layout": _int(value)}
    if kind == "as_device":
        device = _keys(value, {"type", "index"}, "a device")
        _need(device.get("type") in ("cpu", "cuda"), "names a device that is neither cpu nor cuda")
        index = device.get("index")
        return {"as_device": {"type": device["type"], "index": None if index is None else _int(index)}}
    raise ModelError(f"its exported graph has an argument of kind {kind[:40]!r}, which the counter does not run")


def _target(value: Any) -> str:
    match = _TARGET.fullmatch(value) if isinstance(value, str) else None
    if value == "_operator.getitem":
        return value
    _need(match is not None, f"calls {str(value)[:80]!r}: only aten operators are counted")
    assert match is not None
    op, overload = match.groups()
    _need(op not in _DENIED_OPS, f"calls aten.{op}, which reaches outside the graph")
    packet = getattr(torch.ops.aten, op, None)
    _need(packet is not None and overload in packet.overloads(), f"calls aten.{op}.{overload}, which this torch lacks")
    return str(value)


def _tensor_meta(value: Any) -> dict[str, Any]:
    meta = _keys(
        value, {"dtype", "sizes", "requires_grad", "device", "strides", "storage_offset", "layout"}, "a tensor"
    )
    sizes, strides = _list(meta.get("sizes"), "a shape", 8), _list(meta.get("strides"), "a shape", 8)
    _need(len(sizes) == len(strides), "has a tensor whose strides do not fit its shape")
    for part in [*sizes, *strides, meta.get("storage_offset")]:
        # a symbolic size ({"as_expr": ...}) would be parsed by sympy, which evaluates strings
        _need(isinstance(part, dict) and set(part) == {"as_int"}, "has a symbolic shape: export at a fixed size")
        _int(part["as_int"])
    device = _argument({"as_device": meta.get("device")})["as_device"]
    return {
        "dtype": _int(meta.get("dtype")),
        "sizes": [{"as_int": p["as_int"]} for p in sizes],
        "requires_grad": bool(meta.get("requires_grad")),
        "device": device,
        "strides": [{"as_int": p["as_int"]} for p in strides],
        "storage_offset": {"as_int": meta["storage_offset"]["as_int"]},
        "layout": _int(meta.get("layout")),
    }


def _node(value: Any) -> dict[str, Any]:
    node = _keys(value, {"target", "inputs", "outputs", "metadata", "is_hop_single_tensor_return", "name"}, "a node")
    inputs, outputs = (
        _list(node.get("inputs"), "a node's inputs", 64),
        _list(node.get("outputs"), "a node's outputs", 64),
    )
    rebuilt_inputs = []
    for item in inputs:
        item = _keys(item, {"name", "arg", "kind"}, "a node's input")
        rebuilt_inputs.append(
            {"name": _name(item.get("name")), "arg": _argument(item.get("arg")), "kind": _int(item.get("kind"))}
        )
    return {
        "target": _target(node.get("target")),
        "inputs": rebuilt_inputs,
        "outputs": [_argument(o) for o in outputs],
        "metadata": {},  # stack traces and module paths: nothing the counter needs
        "is_hop_single_tensor_return": None,
        "name": _name(node.get("name")),
    }


def _input_spec(value: Any) -> tuple[str, dict[str, Any]]:
    _need(isinstance(value, dict) and len(value) == 1, "has an input that is not one")
    ((kind, spec),) = value.items()
    if kind == "user_input":
        arg = _keys(spec, {"arg"}, "the user input")
        return kind, {
            "user_input": {
                "arg": {
                    "as_tensor": _tensor_ref(_keys(arg.get("arg"), {"as_tensor"}, "the user input").get("as_tensor"))
                }
            }
        }
    _need(kind in _STATE_KINDS, f"has an input of kind {str(kind)[:40]!r}, which the counter does not read")
    key = _STATE_KINDS[kind]
    allowed = {"arg", key, "persistent"} if kind == "buffer" else {"arg", key}
    spec = _keys(spec, allowed, f"a {kind}")
    fqn = _name(spec.get(key), _FQN)
    _need(not any(part.startswith("__") for part in fqn.split(".")), f"names a {kind} {fqn[:60]!r}")
    rebuilt: dict[str, Any] = {"arg": _tensor_ref(spec.get("arg")), key: fqn}
    if kind == "buffer":
        rebuilt["persistent"] = bool(spec.get("persistent"))
    return kind, {kind: rebuilt}


def vetted_program(program: Any, expected_specs: tuple[str, str]) -> dict[str, Any]:
    """The program's JSON rebuilt from what a counter may read, for torch's deserializer.

    ``expected_specs`` are the input and output tree specs of one tensor in and one tensor out
    (:func:`one_tensor_specs`), which replace the file's.

    Raises:
        ModelError: it holds anything else (named in one line).
    """
    program = _keys(
        program,
        {
            "graph_module",
            "opset_version",
            "range_constraints",
            "schema_version",
            "verifiers",
            "torch_version",
            "guards_code",
        },
        "the program",
    )
    _need(not program.get("range_constraints"), "has symbolic shapes: export at a fixed size")
    _need(not program.get("guards_code"), "has guards, which are code")
    module = _keys(
        program.get("graph_module"),
        {"graph", "signature", "module_call_graph", "metadata", "treespec_namedtuple_fields"},
        "the module",
    )
    graph = _keys(
        module.get("graph"),
        {
            "inputs",
            "outputs",
            "nodes",
            "tensor_values",
            "sym_int_values",
            "sym_bool_values",
            "is_single_tensor_return",
            "custom_obj_values",
            "sym_float_values",
        },
        "the graph",
    )
    for kind in ("sym_int_values", "sym_bool_values", "sym_float_values"):
        _need(not graph.get(kind), "has symbolic values: export at a fixed size")
    _need(not graph.get("custom_obj_values"), "holds custom objects")
    tensors = graph.get("tensor_values")
    _need(isinstance(tensors, dict) and len(tensors) <= 100_000, "has no table of tensors")
    assert isinstance(tensors, dict)
    nodes = _list(graph.get("nodes"), "operations", 100_000)
    signature = _keys(module.get("signature"), {"input_specs", "output_specs"}, "the signature")
    inputs = [_input_spec(spec) for spec in _list(signature.get("input_specs"), "inputs", 100_000)]
    _need([kind for kind, _ in inputs].count("user_input") == 1, "does not take one tensor")
    outputs = _list(signature.get("output_specs"), "outputs", 1)
    _need(len(outputs) == 1, "does not return one tensor")
    output = _keys(_keys(outputs[0], {"user_output"}, "the output").get("user_output"), {"arg"}, "the output")
    output_arg = {"as_tensor": _tensor_ref(_keys(output.get("arg"), {"as_tensor"}, "the output").get("as_tensor"))}
    graph_inputs = _list(graph.get("inputs"), "graph inputs", 100_000)
    graph_outputs = _list(graph.get("outputs"), "graph outputs", 1)
    in_spec, out_spec = expected_specs
    return {
        "graph_module": {
            "graph": {
                "inputs": [_argument(a) for a in graph_inputs],
                "outputs": [_argument(a) for a in graph_outputs],
                "nodes": [_node(n) for n in nodes],
                "tensor_values": {_name(k): _tensor_meta(v) for k, v in tensors.items()},
                "sym_int_values": {},
                "sym_bool_values": {},
                "is_single_tensor_return": bool(graph.get("is_single_tensor_return")),
                "custom_obj_values": {},
                "sym_float_values": {},
            },
            "signature": {
                "input_specs": [spec for _, spec in inputs],
                "output_specs": [{"user_output": {"arg": output_arg}}],
            },
            "module_call_graph": [
                {
                    "fqn": "",
                    "signature": {
                        "inputs": [],
                        "outputs": [],
                        "in_spec": in_spec,
                        "out_spec": out_spec,
                        "forward_arg_names": ["x"],
                    },
                }
            ],
            "metadata": {},
            "treespec_namedtuple_fields": {},
        },
        "opset_version": {"aten": torch._C._get_max_operator_version()},
        "range_constraints": {},
        "schema_version": program.get("schema_version"),
        "verifiers": [v for v in program.get("verifiers") or [] if v in ("TRAINING", "ATEN", "")][:1],
        "torch_version": torch.__version__,
        "guards_code": [],
    }


def one_tensor_specs() -> tuple[str, str]:
    """The tree specs of a forward that takes one tensor and returns one, as export writes them."""
    from torch.utils._pytree import tree_structure, treespec_dumps

    x = torch.empty(0)
    return treespec_dumps(tree_structure(((x,), {}))), treespec_dumps(tree_structure(x))


# --- in the counter's process ---------------------------------------------------------------


def _count(job: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import load as load_tensors
    from torch._export.serde.serialize import SerializedArtifact, deserialize
    from torch.utils.flop_counter import FlopCounterMode

    from rtsr.devices import resolve_device
    from rtsr.runtime import output_probe, pass_input, probe_weights

    folder = Path(job["folder"])
    program = vetted_program(json.loads((folder / PROGRAM_FILE).read_bytes()), one_tensor_specs())
    tensors = load_tensors((folder / TENSORS_FILE).read_bytes())
    state: dict[str, torch.Tensor] = {}
    constants: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        kind, _, name = key.partition(":")
        _need(kind in ("state", "constant"), f"has a tensor {key[:60]!r} of no kind")
        (state if kind == "state" else constants)[name] = value
    device = resolve_device(job["device"])
    held = {
        spec[kind][key]
        for spec in program["graph_module"]["signature"]["input_specs"]
        for kind, key in _STATE_KINDS.items()
        if kind in spec
    }
    _need(held == set(state) | set(constants), "does not hold the tensors it names")
    for spec in program["graph_module"]["signature"]["input_specs"]:
        if "parameter" in spec:  # torch checks that a parameter is one
            name = spec["parameter"]["parameter_name"]
            _need(name in state, f"does not hold its parameter {name[:60]!r}")
            state[name] = torch.nn.Parameter(state[name], requires_grad=False)
    # a state dict and constants given as dicts are taken as they are: nothing is unpickled
    artifact = SerializedArtifact(json.dumps(program).encode(), state, constants, b"")  # type: ignore[arg-type]
    exported = deserialize(artifact)
    forward = exported.module().to(device)
    dtype = DTYPES[job["precision"]]
    h, w = job["size"]
    weights = probe_weights(int(job["run_seed"]), (h * job["scale"], w * job["scale"]), device)
    probes, sampled, flops = [], 0, None
    with torch.inference_mode():
        for seed in job["seeds"]:
            x = pass_input(int(seed), (h, w), device).float().div_(255.0).to(dtype)
            with FlopCounterMode(display=False) as counter:
                out = forward(x)
            flops = int(counter.get_total_flops()) if flops is None else flops
            _need(tuple(out.shape) == (1, 3, h * job["scale"], w * job["scale"]), f"returns {tuple(out.shape)}")
            probe, sampled = output_probe(out, weights, int(seed))
            probes.append(probe)
    return {"ok": True, "params": held_elements(exported), "flops": flops, "probes": probes, "sampled": sampled}


def _main(job: dict[str, Any]) -> None:
    answer: dict[str, Any]
    try:
        answer = _count(job)
    except ModelError as e:
        answer = {"ok": False, "error": first_line(e)}
    except Exception as e:  # torch's deserializer or the graph's run refused what it was given
        answer = {"ok": False, "error": f"its exported graph could not be run: {e.__class__.__name__}: {first_line(e)}"}
    # the scratch folder, which the sandbox makes and the worker collects from
    (Path(os.environ["HOME"]) / COUNT_FILE).write_text(json.dumps(answer))


# --- on the worker's side -------------------------------------------------------------------


def count_in_sandbox(
    files: dict[str, bytes],
    *,
    precision: Precision,
    device: torch.device,
    size: tuple[int, int],
    scale: int,
    run_seed: int,
    seeds: list[int],
    limits: Limits,
) -> GraphCount:
    """Count the graph in ``files`` (:data:`PROGRAM_FILE`, :data:`TENSORS_FILE`, as the model
    process wrote them) in a sandbox that imports no submission code, and run it on the
    inputs of the timed passes ``seeds`` at ``size`` (H, W).

    Raises:
        ModelError: the graph was refused, failed, or its counter gave no answer.
    """
    import tempfile

    from rtsr.submissions import sandbox

    with tempfile.TemporaryDirectory(prefix="rtsr-graph-") as tmp:
        folder = Path(tmp)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        folder.chmod(0o755)
        for name in files:
            (folder / name).chmod(0o644)
        job = {
            "folder": str(folder),
            "device": device.type,
            "precision": precision,
            "size": list(size),
            "scale": scale,
            "run_seed": run_seed,
            "seeds": seeds,
        }
        outcome, collected = sandbox.run(
            [sys.executable, "-m", "rtsr.submissions.graph", json.dumps(job)],
            folder,
            limits=limits,
            gpu=device.type == "cuda",
            collect=[COUNT_FILE],
        )
    raw = collected.get(COUNT_FILE)
    if raw is None:
        raise ModelError(
            f"its exported graph could not be counted: {outcome.failure() or 'the counter gave no answer'}"
        )
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ModelError("its exported graph could not be counted: the counter's answer is not JSON") from None
    if answer.get("ok") is not True:
        raise ModelError(str(answer.get("error") or "its exported graph could not be counted")[:500])
    params, flops, probes, sampled = (
        answer.get("params"),
        answer.get("flops"),
        answer.get("probes"),
        answer.get("sampled"),
    )
    if not (
        type(params) is int
        and type(flops) is int
        and params >= 0
        and flops >= 0
        and type(sampled) is int
        and isinstance(probes, list)
        and len(probes) == len(seeds)
        and all(isinstance(p, list) and all(isinstance(v, int | float) and math.isfinite(v) for v in p) for p in probes)
    ):
        raise ModelError("its exported graph could not be counted: the counter's answer is broken")
    return GraphCount(params, flops, [[float(v) for v in p] for p in probes], sampled)


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
