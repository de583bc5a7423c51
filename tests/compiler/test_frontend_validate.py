"""Models onnx's C++ crashes on, or that ask for absurd sizes, give a
ModelImportError naming the node (or tensor), the attribute and the value
(compiler/frontend/validate.py).

The crashing models are imported in one child process, all in a loop, so
that a crash fails the test instead of killing pytest; the child reports
each case as a JSON line before and after importing it.
"""
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from compiler import ModelImportError, import_onnx
from compiler.frontend.validate import MAX_ELEMENTS

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import contextlib, io, json, resource, sys
    limit = 4 << 30  # a runaway allocation fails fast instead of exhausting the machine
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from compiler.backend import prepare
    from compiler.cli import main
    from compiler.compile import compile_model
    from compiler.errors import ModelImportError
    from compiler.frontend import import_onnx

    def cli(path):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["compile", path, "-o", path + ".bin"])
        return {"error": f"exit {code}", "message": err.getvalue().strip()}

    def call(entry, path):
        try:
            entry(path)
        except ModelImportError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        return {"error": None}

    ENTRIES = {"import_onnx": lambda p: call(import_onnx, p), "prepare": lambda p: call(prepare, p),
               "compile_model": lambda p: call(lambda q: compile_model(q, nlayers=1), p), "cli": cli,
               "strict_types": lambda p: call(lambda q: import_onnx(q, strict_types=True), p)}
    for case, entry, path in json.load(sys.stdin):
        print(json.dumps({"case": case, "entry": entry, "started": True}), flush=True)
        print(json.dumps({"case": case, "entry": entry, **ENTRIES[entry](path)}), flush=True)
""")


# ------------------------------------------------------------------ model builders
def _model(nodes, inputs, outputs=("y",), inits=(), opset=17, functions=()):
    graph = helper.make_graph(nodes, "m", inputs, [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                                                  for n in outputs], list(inits))
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("local", 1)] if functions else [])
    return helper.make_model(graph, opset_imports=imports, functions=list(functions))


def _x(shape=(1, 3, 8, 8), name="x"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _conv(**attrs):
    weight = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)], [_x()], inits=[weight])


def _one(op, inputs=("x",), outputs=("y",), declared=None, inits=(), opset=17, **attrs):
    node = helper.make_node(op, list(inputs), list(outputs), name=op.lower(), **attrs)
    return _model([node], declared or [_x()], outputs, inits, opset)


def _slice_dilations():
    starts, ends = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s"), (2, "e")))
    return _one("Slice", ["x", "s", "e"], inits=[starts, ends], dilations=[10**12, 10**12])


def _gather_nd():
    indices = helper.make_tensor_value_info("i", TensorProto.INT64, [1, 3, 1])
    return _one("GatherND", ["x", "i"], declared=[_x(), indices], batch_dims=-2**31 - 1)


def _reshape_v1_float_shape():
    node = helper.make_node("Reshape", ["x"], ["y"], name="reshape")
    node.attribute.append(helper.make_attribute("shape", 2.5))
    return _model([node], [_x()], opset=4)


def _function_axis():
    """LayerNormalization's axis bound through a local function attribute."""
    ref = AttributeProto(name="axis", ref_attr_name="ax", type=AttributeProto.INT)
    norm = helper.make_node("LayerNormalization", ["a", "s"], ["b", "m", "v"], name="ln")
    norm.attribute.append(ref)
    body = helper.make_function("local", "norm", ["a", "s"], ["b", "m", "v"], [norm], [helper.make_opsetid("", 17)],
                                ["ax"])
    call = helper.make_node("norm", ["x", "s"], ["y", "m", "v"], domain="local", name="call", ax=2**31)
    return _model([call], [_x((2, 8)), _x((8,), "s")], ("y", "m", "v"), functions=[body])


def _subgraph_conv():
    inner = helper.make_node("Conv", ["x", "w"], ["t"], name="inner_conv", kernel_shape=[3, 10**12])
    then = helper.make_graph([inner], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then, else_branch=other)
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    weight = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    return _model([node], [_x(), cond], inits=[weight])


def _raw_tensor(name, dims, data: bytes, data_type=TensorProto.FLOAT):
    tensor = TensorProto(name=name, data_type=data_type, raw_data=data)
    tensor.dims.extend(dims)
    return tensor


def _short_initializer():
    return _one("Add", ["x", "w"], inits=[_raw_tensor("w", [4, 3, 3, 3], b"\0" * 4)])


def _negative_initializer():
    return _one("Add", ["x", "w"], inits=[_raw_tensor("w", [-1], b"\0" * 4)])


def _huge_starts():
    """onnx's data propagation allocates what the dims say: out of memory."""
    starts = _raw_tensor("starts", [10**12], np.ones(1, np.int64).tobytes(), TensorProto.INT64)
    ends = numpy_helper.from_array(np.array([2], np.int64), "ends")
    nodes = [helper.make_node("Identity", ["starts"], ["s"], name="id"),
             helper.make_node("Slice", ["x", "s", "ends"], ["y"], name="slice")]
    return _model(nodes, [_x()], inits=[starts, ends], opset=13)


def _pool_then_slice(opset):
    """MaxPool's kernel is wider than its input, so onnx infers a negative
    dim, and Slice's shape inference of it aborts (a std::clamp assertion)."""
    bounds = [numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s"), (2, "e"), (3, "a"))]
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="maxpool", kernel_shape=[2, 2**20]),
             helper.make_node("Slice", ["p", "s", "e", "a"], ["y"], name="slice")]
    return _model(nodes, [_x()], inits=bounds, opset=opset)


def _huge_constant():
    node = helper.make_node("Constant", [], ["y"], name="c")
    node.attribute.append(helper.make_attribute("value", _raw_tensor("v", [10**12], b"\0" * 4)))
    return _model([node], [_x()])


# case -> (model builder, substrings the error message must hold)
CASES = {
    "conv_kernel_1e12": (lambda: _conv(kernel_shape=[3, 10**12]),
                         ["Conv node 'conv'", "kernel_shape=[3, 1000000000000]"]),
    "maxpool_dilations_65535": (lambda: _one("MaxPool", kernel_shape=[2, 2], dilations=[65535, 2]),
                                ["MaxPool node 'maxpool'", "dilations=[65535, 2]"]),
    "slice_dilations": (_slice_dilations, ["Slice node 'slice'", "dilations=[1000000000000, 1000000000000]"]),
    "conv_pads_huge": (lambda: _conv(pads=[10**12, 0, 0, 0]), ["Conv node 'conv'", "pads=[1000000000000, 0, 0, 0]"]),
    "conv_strides_0": (lambda: _conv(strides=[0, 1]), ["Conv node 'conv'", "strides=[0, 1]"]),
    "conv_kernel_negative": (lambda: _conv(kernel_shape=[3, -3]), ["Conv node 'conv'", "kernel_shape=[3, -3]"]),
    "conv_group_0": (lambda: _conv(group=0), ["Conv node 'conv'", "group=0"]),
    "conv_pads_odd": (lambda: _conv(pads=[0, 0, 0]), ["Conv node 'conv'", "pads=[0, 0, 0]"]),
    "conv_strides_vs_kernel": (lambda: _conv(kernel_shape=[3, 3], strides=[1, 1, 1]),
                               ["Conv node 'conv'", "strides=[1, 1, 1]", "kernel_shape=[3, 3]"]),
    "transpose_perm": (lambda: _one("Transpose", perm=[0, 1, 2, 10**12]),
                       ["Transpose node 'transpose'", "perm=[0, 1, 2, 1000000000000]"]),
    # these three crash onnx 1.23 (SIGSEGV) without the checks
    "layernorm_axis_2p31": (lambda: _one("LayerNormalization", ["x", "s"], ["y", "m", "v"], [_x((2, 8)), _x((8,), "s")],
                                         axis=2**31),
                            ["LayerNormalization node 'layernormalization'", "axis=2147483648"]),
    "gathernd_batch_dims": (_gather_nd, ["GatherND node 'gathernd'", "batch_dims=-2147483649"]),
    "reshape_v1_float_shape": (_reshape_v1_float_shape, ["Reshape node 'reshape'", "shape=2.5", "FLOAT"]),
    "function_axis_2p31": (_function_axis, ["LayerNormalization node", "axis=2147483648"]),
    "subgraph_conv": (_subgraph_conv, ["Conv node 'inner_conv'", "kernel_shape=[3, 1000000000000]"]),
    "initializer_short": (_short_initializer, ["initializer 'w'", "[4, 3, 3, 3]", "holds 4 bytes"]),
    "initializer_negative_dims": (_negative_initializer, ["initializer 'w'", "[-1]"]),
    # runs onnx's shape inference out of memory without the checks
    "starts_1e12_elements": (_huge_starts, ["initializer 'starts'", "[1000000000000]"]),
    "constant_1e12_elements": (_huge_constant, ["Constant node 'c'", "attribute 'value'", "[1000000000000]"]),
    "input_1e12_elements": (lambda: _one("Relu", declared=[_x((10**6, 10**6))]), ["input 'x'", "[1000000, 1000000]"]),
    # onnx's shape inference loops forever on it
    "einsum_nul_equation": (lambda: _one("Einsum", ["x", "x"], equation="ij,\0ik", declared=[_x((2, 3))]),
                            ["Einsum node 'einsum'", "equation='ij,\\x00ik'", "invalid characters"]),
    # a flag onnx reads as false and a truthy reading as true
    "reducesum_keepdims_3": (lambda: _one("ReduceSum", opset=11, axes=[1], keepdims=3),
                             ["ReduceSum node 'reducesum'", "keepdims=3: 3 is not in 0..1 (a flag)"]),
    # within every attribute bound, yet onnx's shape inference aborts (SIGABRT): Tessera's rules refuse them
    "maxpool_kernel_2p20_opset13": (lambda: _pool_then_slice(13),
                                    ["MaxPool node 'maxpool'", "kernel_shape=[2, 1048576]"]),
    "maxpool_kernel_2p20_opset17": (lambda: _pool_then_slice(17),
                                    ["MaxPool node 'maxpool'", "kernel_shape=[2, 1048576]"]),
}

ENTRY_CASES = [("prepare", "conv_kernel_1e12"), ("compile_model", "layernorm_axis_2p31"), ("cli", "slice_dilations")]

ABORTING_CASES = ["maxpool_kernel_2p20_opset13", "maxpool_kernel_2p20_opset17"]
"""Cases that abort onnx's shape inference, which strict_types runs in its worker process."""


@pytest.fixture(scope="module")
def child_results(tmp_path_factory):
    """case, entry -> the child's report, from one child importing every case."""
    folder = tmp_path_factory.mktemp("models")
    jobs = []
    for case, (build, _) in CASES.items():
        path = folder / f"{case}.onnx"
        path.write_bytes(build().SerializeToString())
        jobs.append((case, "import_onnx", str(path)))
    jobs += [(case, entry, str(folder / f"{case}.onnx")) for entry, case in ENTRY_CASES]
    jobs += [(case, "strict_types", str(folder / f"{case}.onnx")) for case in ABORTING_CASES]
    done = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(jobs), capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    finished = {(r["case"], r["entry"]): r for r in reports if "started" not in r}
    last = reports[-1] if reports else None
    assert done.returncode == 0 and len(finished) == len(jobs), \
        f"the child died (exit {done.returncode}) at {last}: {done.stderr[-2000:]}"
    return finished


@pytest.mark.parametrize("case", list(CASES))
def test_import_refuses_with_a_named_error(child_results, case):
    report = child_results[(case, "import_onnx")]
    assert report["error"] in ("ModelImportError", "UnsupportedOpError"), report
    for part in CASES[case][1]:
        assert part in report["message"], f"{part!r} not in {report['message']!r}"


@pytest.mark.parametrize("entry, case", ENTRY_CASES)
def test_entry_points_refuse_with_a_named_error(child_results, entry, case):
    report = child_results[(case, entry)]
    assert report["error"] is not None, report
    if entry == "cli":
        assert report["error"] == "exit 1" and report["message"].startswith("tessera: error: ")
    for part in CASES[case][1]:
        assert part in report["message"], f"{part!r} not in {report['message']!r}"


@pytest.mark.parametrize("case", ABORTING_CASES)
def test_onnx_shape_inference_alone_aborts(tmp_path, case):
    """Why these cases are here: onnx's shape inference kills the process
    that runs it on them (Slice's inference clamps into [0, dim] with a
    negative dim), so onnx's C++ must never run in Tessera's process."""
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(CASES[case][0]().SerializeToString())
    code = ("import sys, onnx, onnx.shape_inference\n"
            "onnx.shape_inference.infer_shapes(onnx.load(sys.argv[1]), data_prop=True)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGABRT, done.stderr[-1000:]


@pytest.mark.parametrize("case", ABORTING_CASES)
def test_strict_types_survives_onnx_aborting(child_results, case):
    """strict_types runs onnx's shape inference in a worker process: its
    abort is a ModelImportError naming the file, the function and the signal."""
    report = child_results[(case, "strict_types")]
    assert report["error"] == "ModelImportError", report
    for part in (f"{case}.onnx", "onnx.shape_inference.infer_shapes crashed on this model", "SIGABRT"):
        assert part in report["message"], f"{part!r} not in {report['message']!r}"


# ------------------------------------------------------------------ what still imports
def test_wide_and_negative_values_where_onnx_allows_them():
    """Slice-1's INT64_MAX ends, Pad-2's negative pads and a -1 declared dim
    (PaddlePaddle's "any size") are valid ONNX and import."""
    sliced = _one("Slice", opset=9, starts=[0], ends=[2**63 - 1], axes=[1])
    assert import_onnx(sliced).outputs[0].type.shape == (1, 3, 8, 8)
    padded = _one("Pad", opset=2, pads=[0, 0, 0, -1, 0, 0, 0, 0])
    assert import_onnx(padded).outputs[0].type.shape == (1, 3, 8, 7)
    dynamic = _one("Relu", declared=[_x((-1, 3))])
    assert import_onnx(dynamic, shapes={"x": [2, 3]}).outputs[0].type.shape == (2, 3)


def test_element_limit_is_inclusive():
    """A declared input of MAX_ELEMENTS elements imports; one more is refused."""
    assert import_onnx(_one("Relu", declared=[_x((MAX_ELEMENTS,))])).inputs[0].type.shape == (MAX_ELEMENTS,)
    with pytest.raises(ModelImportError, match=rf"input 'x' declares the shape \[{MAX_ELEMENTS + 1}\]"):
        import_onnx(_one("Relu", declared=[_x((MAX_ELEMENTS + 1,))]))


def test_recursive_local_functions_are_an_import_error():
    """onnx's inliner refuses them with its own exception; Tessera says which model."""
    call = helper.make_node("f", ["a"], ["b"], domain="local")
    body = helper.make_function("local", "f", ["a"], ["b"], [call], [helper.make_opsetid("", 17)])
    model = _model([helper.make_node("f", ["x"], ["y"], domain="local", name="top")], [_x()], functions=[body])
    with pytest.raises(ModelImportError, match="local functions cannot be inlined: .*recursive"):
        import_onnx(model)
