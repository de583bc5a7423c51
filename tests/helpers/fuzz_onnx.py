"""The ONNX campaign's target (tests/helpers/fuzzing.py): small real models
mutated with their structure in mind (attributes, every integer attribute
an op's schema declares pushed to extreme values and mismatched lengths,
initializer dims and bytes, external data, declared shapes, wiring, op
types, opset, subgraphs and local function bodies) and run through import
(compiler.frontend.import_onnx from the file, with ``strict_types``, so
that every model also reaches onnx's shape inference, in its worker
process), optimisation (compiler.pipeline.OPTIMIZE) and the CPU executor.
A case is accepted when all three finish.

The seeds include what makes onnx's C++ run in Tessera's imports (a local
function: the inliner; opset 6: the version converter) and the chains
exporters write below pooling (a Slice of the pooled tensor, Shape ->
Gather or Slice -> Concat -> Reshape), where a kernel wider than its input
gives onnx a negative dim that aborts its Slice inference."""
from __future__ import annotations

import functools
import sys
import warnings
from typing import Callable

import numpy as np
import onnx
import onnx.defs
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import OPTIMIZE
from compiler.zoo import resnet, transformer_block
from compiler.zoo.families import mtcnn_pnet
from runtime.executor import Executor
from tests.helpers.fuzzing import Case, warm_up
from tests.helpers.mutate import boundary_float, boundary_int, mutate_bytes, pick
from tests.helpers.node_models import make_node_model

MAX_FEED_ELEMENTS = 1 << 22
"""Inputs larger than this are not fed (the model imported and optimised;
the harness does not allocate what a mutated shape asks for)."""

OP_TYPES = ("Add", "Mul", "Relu", "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "Slice",
            "Reshape", "Transpose", "Gather", "GatherND", "GatherElements", "Concat", "Split", "Softmax",
            "LayerNormalization", "Resize", "Pad", "ReduceMean", "ReduceSum", "Gemm", "MatMul", "TopK", "Clip",
            "Cast", "Expand", "Tile", "Unsqueeze", "Squeeze", "Flatten", "DepthToSpace", "SpaceToDepth", "LpPool",
            "InstanceNormalization", "BatchNormalization", "Where", "Einsum", "CumSum", "ScatterND", "NonZero",
            "Range", "ArgMax", "OneHot", "Trilu", "Shape", "ConstantOfShape", "Identity", "If", "Loop",
            "QuantizeLinear", "DequantizeLinear", "QLinearConv", "Upsample", "Hardmax", "Sigmoid", "Erf",
            "GridSample", "NonMaxSuppression", "Unique", "NoSuchOp")
ATTRIBUTE_NAMES = ("axis", "axes", "perm", "kernel_shape", "strides", "pads", "dilations", "group", "keepdims",
                   "epsilon", "alpha", "beta", "mode", "to", "blocksize", "auto_pad", "ceil_mode", "storage_order",
                   "count_include_pad", "transA", "transB", "split", "num_outputs", "largest", "sorted",
                   "coordinate_transformation_mode", "allowzero", "noop_with_empty_axes", "batch_dims",
                   "output_padding", "output_shape", "value", "stash_type", "p", "exclusive", "reverse", "upper")
STRINGS = ("", "bogus", "nearest", "linear", "cubic", "constant", "reflect", "edge", "SAME_UPPER", "VALID", "NOTSET",
           "DCR", "CRD", "half_pixel", "align_corners", "\xff\x00", "x" * 300)
ELEM_TYPES = (TensorProto.UNDEFINED, TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT8, TensorProto.UINT8,
              TensorProto.BOOL, TensorProto.STRING, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE,
              TensorProto.INT4, TensorProto.FLOAT8E4M3FN, TensorProto.COMPLEX64, 999)
OPSETS = (-1, 0, 1, 6, 7, 9, 10, 11, 12, 13, 16, 17, 18, 19, 21, 23, 24, 25, 99, 1 << 31)
IR_VERSIONS = (0, 1, 3, 7, 8, 10, 11, 12, 99)
EXTERNAL_PLACES = ("missing.bin", "../../etc/passwd", "/etc/passwd", "", ".", "sub/../../x", "\x00")
EXTREME_INTS = (0, -1, -2, 1, 2, 3, 9, 100, 1 << 16, 1 << 20, (1 << 31) - 1, 1 << 31, -(1 << 31), -(1 << 31) - 1,
                1 << 32, 10**12, (1 << 63) - 1, -(1 << 63))
"""Values an integer attribute is set to: zero and negatives, a kernel wider
than a seed's input, and the bounds of 16, 32 and 64 bits."""


# ---------------------------------------------------------------- seed models
def _f32(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def node_seeds() -> list[onnx.ModelProto]:
    """One-node models of ops with attributes and constant operands."""
    x = _f32(1, 4, 8, 8)
    return [
        make_node_model("Conv", [x, _f32(4, 2, 3, 3)], consts=[1], group=2, strides=[2, 1], pads=[1, 0, 1, 0],
                        dilations=[1, 2], opset=17),
        make_node_model("ConvTranspose", [x, _f32(4, 3, 3, 3)], consts=[1], strides=[2, 2], output_padding=[1, 0],
                        opset=17),
        make_node_model("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, opset=17),
        make_node_model("AveragePool", [x], kernel_shape=[2, 3], count_include_pad=1, pads=[0, 1, 0, 1], opset=17),
        make_node_model("LpPool", [x], kernel_shape=[2, 2], p=3, opset=18),
        make_node_model("Slice", [x, _i64(0, 1), _i64(4, 7), _i64(1, 3), _i64(2, 2)], consts=[1, 2, 3, 4], opset=17),
        make_node_model("Reshape", [x, _i64(2, -1, 8)], consts=[1], opset=17),
        make_node_model("Transpose", [x], perm=[0, 2, 3, 1], opset=17),
        make_node_model("Gather", [x, _i64(3, 0, 1)], consts=[1], axis=1, opset=17),
        make_node_model("Concat", [x, _f32(1, 2, 8, 8)], axis=1, opset=17),
        make_node_model("Split", [x, _i64(1, 3)], num_outputs=2, consts=[1], axis=1, opset=17),
        make_node_model("Softmax", [x], axis=-2, opset=17),
        make_node_model("LayerNormalization", [x, _f32(8), _f32(8, seed=1)], consts=[1, 2], axis=-1, epsilon=1e-5,
                        opset=17),
        make_node_model("Resize", [x, None, np.array([1, 1, 2, 1.5], np.float32)], consts=[2], mode="linear",
                        opset=18),
        make_node_model("Pad", [x, _i64(0, 0, 1, 2, 0, 0, 2, 1)], consts=[1], mode="reflect", opset=18),
        make_node_model("ReduceMean", [x], axes=[1, 3], keepdims=0, opset=17),
        make_node_model("Gemm", [_f32(3, 5), _f32(4, 5), _f32(4)], consts=[1, 2], transB=1, alpha=0.5, opset=17),
        make_node_model("TopK", [_f32(3, 9), _i64(4)], num_outputs=2, consts=[1], axis=1, opset=17),
        make_node_model("Cast", [x], to=TensorProto.INT32, opset=17),
        make_node_model("Expand", [_f32(3, 1), _i64(2, 3, 4)], consts=[1], opset=17),
        make_node_model("Tile", [_f32(2, 3), _i64(2, 2)], consts=[1], opset=17),
        make_node_model("DepthToSpace", [x], blocksize=2, mode="CRD", opset=17),
        make_node_model("Flatten", [x], axis=2, opset=17),
        make_node_model("CumSum", [_f32(3, 4), np.array(1, np.int64)], consts=[1], exclusive=1, reverse=1, opset=17),
        make_node_model("Einsum", [_f32(2, 3), _f32(3, 4)], equation="ij,jk->ik", opset=17),
        make_node_model("InstanceNormalization", [x, _f32(4), _f32(4, seed=2)], consts=[1, 2], opset=17),
        make_node_model("Trilu", [_f32(4, 5), np.array(1, np.int64)], consts=[1], upper=0, opset=17),
        *attribute_form_seeds(x),
    ]


def attribute_form_seeds(x: np.ndarray) -> list[onnx.ModelProto]:
    """One-node models of ops whose operands are integer attributes (older
    opsets' Slice, Split, Squeeze, Pad, ReduceSum, TopK) or that have
    integer attributes of their own (size, blocksize, start/end, ...)."""
    return [
        make_node_model("Slice", [x], starts=[0, 1], ends=[4, 7], axes=[1, 3], opset=9),
        make_node_model("Split", [x], num_outputs=2, axis=1, split=[1, 3], opset=11),
        make_node_model("Unsqueeze", [x], axes=[0, 3], opset=11),
        make_node_model("Squeeze", [_f32(1, 4, 1, 8)], axes=[0, 2], opset=11),
        make_node_model("ReduceSum", [x], axes=[1], keepdims=1, opset=11),
        make_node_model("Pad", [x], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="edge", opset=10),
        make_node_model("TopK", [_f32(3, 9)], num_outputs=2, k=4, axis=1, opset=9),
        make_node_model("LRN", [x], size=3, opset=13),
        make_node_model("SpaceToDepth", [x], blocksize=2, opset=13),
        make_node_model("Shape", [x], start=1, end=3, opset=15),
        make_node_model("ArgMax", [x], axis=1, keepdims=0, select_last_index=1, opset=13),
        make_node_model("Hardmax", [x], axis=1, opset=13),
        make_node_model("GatherElements", [x, np.zeros((1, 2, 8, 8), np.int64)], consts=[1], axis=1, opset=13),
        make_node_model("ScatterElements", [x, np.zeros((1, 2, 8, 8), np.int64), _f32(1, 2, 8, 8)], consts=[1, 2],
                        axis=1, opset=13),
        make_node_model("ConvTranspose", [x, _f32(4, 3, 3, 3)], consts=[1], strides=[2, 2], output_shape=[16, 16],
                        opset=17),
        make_node_model("MaxPool", [x], kernel_shape=[2, 2], dilations=[2, 1], storage_order=0, opset=12),
        make_node_model("OneHot", [_i64(1, 0, 2), np.array(3, np.int64), np.array([0, 1], np.float32)],
                        consts=[1, 2], axis=0, opset=13),
        make_node_model("Compress", [_f32(3, 4), np.array([1, 0, 1], bool)], consts=[1], axis=0, opset=11),
    ]


def _model(nodes: list[onnx.NodeProto], shape: list[int], inits: list[onnx.TensorProto], opset: int,
           functions: list[onnx.FunctionProto] = ()) -> onnx.ModelProto:
    """A model of ``nodes`` from input ``x`` of ``shape`` to output ``y``."""
    graph = helper.make_graph(nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("local", 1)] if functions else [])
    return helper.make_model(graph, opset_imports=imports, functions=list(functions))


def _consts(**arrays: np.ndarray) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(array, name) for name, array in arrays.items()]


def pooling_chain_seed(opset: int, gather: bool) -> onnx.ModelProto:
    """Conv -> MaxPool -> AveragePool -> Slice of the pooled tensor, then the
    flatten exporters write (Shape -> Gather -> Unsqueeze, or Shape ->
    Slice; Concat with -1; Reshape) and a Gemm."""
    node = helper.make_node
    batch = [node("Gather", ["shape", "zero"], ["first"], axis=0), node("Unsqueeze", ["first", "axis0"], ["batch"])] \
        if gather else [node("Slice", ["shape", "axis0", "one"], ["batch"])]
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["r"]),
             node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Slice", ["a", "axis0", "two", "three"], ["s"]), node("Shape", ["s"], ["shape"]), *batch,
             node("Concat", ["batch", "minus1"], ["target"], axis=0), node("Reshape", ["s", "target"], ["f"]),
             node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    inits = _consts(w=_f32(4, 3, 3, 3), w2=_f32(5, 32, seed=1), b2=_f32(5, seed=2), zero=np.array(0, np.int64),
                    axis0=_i64(0), one=_i64(1), two=_i64(2), three=_i64(3), minus1=_i64(-1))
    return _model(nodes, [1, 3, 16, 16], inits, opset)


def old_opset_seed() -> onnx.ModelProto:
    """An opset-6 chain with attribute operands (Pad-2, Slice-1, Unsqueeze-1):
    imported through onnx's version converter."""
    node = helper.make_node
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Pad", ["p"], ["q"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
             node("Slice", ["q"], ["s"], axes=[3], starts=[0], ends=[4]),
             node("Transpose", ["s"], ["t"], perm=[0, 2, 3, 1]), node("Flatten", ["t"], ["f"], axis=2),
             node("Unsqueeze", ["f"], ["u"], axes=[0]), node("Softmax", ["u"], ["y"], axis=2)]
    return _model(nodes, [1, 3, 8, 8], _consts(w=_f32(4, 3, 3, 3)), 6)


def function_seed() -> onnx.ModelProto:
    """A local function (Conv, Relu, a MaxPool whose kernel is the call's
    attribute): imported through onnx's inliner."""
    pool = helper.make_node("MaxPool", ["r"], ["b"], strides=[2, 2])
    pool.attribute.append(AttributeProto(name="kernel_shape", ref_attr_name="k", type=AttributeProto.INTS))
    body = [helper.make_node("Conv", ["a", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
            pool]
    block = helper.make_function("local", "block", ["a", "w"], ["b"], body, [helper.make_opsetid("", 17)], ["k"])
    nodes = [helper.make_node("block", ["x", "w"], ["p"], domain="local", k=[2, 2]),
             helper.make_node("Slice", ["p", "zero", "two", "three"], ["y"])]
    inits = _consts(w=_f32(4, 3, 3, 3), zero=_i64(0), two=_i64(2), three=_i64(3))
    return _model(nodes, [1, 3, 8, 8], inits, 17, [block])


def if_seed() -> onnx.ModelProto:
    """An If whose branches are graphs (GRAPH attributes to mutate)."""
    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["x"], ["r"])], op,
                                 [], [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3])])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
         helper.make_node("If", ["c"], ["y"], then_branch=branch("Relu"), else_branch=branch("Neg"))],
        "if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def seeds() -> list[onnx.ModelProto]:
    return [resnet(10, image=16, width=4, classes=4), transformer_block(seq=4, dim=8, heads=2, ffn=16),
            mtcnn_pnet(image=16), if_seed(), pooling_chain_seed(13, gather=True),
            pooling_chain_seed(17, gather=False), old_opset_seed(), function_seed(), *node_seeds()]


def setup() -> list[onnx.ModelProto]:
    models = seeds()
    warm_up(sys.modules[__name__], models, [(m.SerializeToString(), ".onnx") for m in models])
    return models


# ---------------------------------------------------------------- mutations
def _nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs."""
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                out += _nodes(attr.g)
    return out


def _values(graph: onnx.GraphProto) -> list[str]:
    names = [v.name for v in graph.input] + [t.name for t in graph.initializer]
    return names + [o for n in graph.node for o in n.output]


def _attribute_value(rng: np.random.Generator, kind: int):
    """A value of attribute type ``kind`` (the onnx enum), boundary-heavy."""
    if kind == AttributeProto.INT:
        return _clamp64(boundary_int(rng))
    if kind == AttributeProto.FLOAT:
        return boundary_float(rng)
    if kind == AttributeProto.STRING:
        return pick(rng, STRINGS)
    if kind == AttributeProto.FLOATS:
        return [boundary_float(rng) for _ in range(int(rng.integers(0, 5)))]
    if kind == AttributeProto.TENSOR:
        return numpy_helper.from_array(_f32(*[int(d) for d in rng.integers(0, 3, int(rng.integers(0, 3)))]))
    count = int(rng.integers(0, 6))
    return [_clamp64(boundary_int(rng)) if rng.random() < 0.3 else int(rng.integers(-2, 5)) for _ in range(count)]


def _set_attribute(node: onnx.NodeProto, name: str, value, kind: int) -> None:
    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value, attr_type=kind))


def mutate_attribute(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    nodes = _nodes(model.graph)
    if not nodes:
        return
    node = pick(rng, nodes)
    action = pick(rng, ("value", "value", "value", "type", "add", "delete", "duplicate"))
    if not node.attribute or action == "add":
        kind = pick(rng, (AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT, AttributeProto.STRING))
        _set_attribute(node, pick(rng, ATTRIBUTE_NAMES), _attribute_value(rng, kind), kind)
        return
    attr = pick(rng, node.attribute)
    if action == "delete":
        node.attribute.remove(attr)
    elif action == "duplicate":
        node.attribute.append(attr)
    elif action == "type":
        kind = pick(rng, (AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT, AttributeProto.FLOATS,
                          AttributeProto.STRING, AttributeProto.TENSOR))
        _set_attribute(node, attr.name, _attribute_value(rng, kind), kind)
    elif attr.type == AttributeProto.INTS and len(attr.ints) and rng.random() < 0.6:
        attr.ints[int(rng.integers(len(attr.ints)))] = _clamp64(boundary_int(rng, attr.ints[0]))
    elif attr.type == AttributeProto.GRAPH:
        pick(rng, (mutate_wiring, mutate_op_type, mutate_shape))(rng, _Subgraph(attr.g))
    elif attr.type == AttributeProto.TENSOR:
        _mutate_tensor(rng, attr.t)
    else:
        _set_attribute(node, attr.name, _attribute_value(rng, attr.type), attr.type)


def mutate_int_attribute(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    """One integer attribute of one node (in the graph, a subgraph or a local
    function's body), one its schema declares, present or not, or one it
    carries, set to an extreme value; an INTS one gets one or all of its
    values extreme, or a length that disagrees with the rest."""
    candidates = [(node, name, kind) for node, opset in _nodes_with_opsets(model)
                  for name, kind in _int_attributes(node, opset)]
    if not candidates:
        mutate_attribute(rng, model)
        return
    node, name, kind = pick(rng, candidates)
    current = next((list(a.ints) for a in node.attribute if a.name == name), [])
    value = _extreme(rng) if kind == AttributeProto.INT else _extreme_ints(rng, current or [1, 1])
    _set_attribute(node, name, value, kind)


def _extreme(rng: np.random.Generator) -> int:
    return int(pick(rng, EXTREME_INTS))


def _extreme_ints(rng: np.random.Generator, values: list[int]) -> list[int]:
    action = pick(rng, ("one", "one", "all", "longer", "shorter", "empty"))
    if action == "one":
        values[int(rng.integers(len(values)))] = _extreme(rng)
        return values
    if action == "all":
        return [_extreme(rng) for _ in values]
    if action == "longer":
        return values + [_extreme(rng) if rng.random() < 0.5 else 1 for _ in range(int(rng.integers(1, 4)))]
    return values[:int(rng.integers(len(values)))] if action == "shorter" else []


def _nodes_with_opsets(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int]]:
    """Every node with its default-domain opset: the graph's, its
    subgraphs', and the bodies of local functions."""
    pairs = [(node, _default_opset(model.opset_import)) for node in _nodes(model.graph)]
    for function in model.functions:
        pairs += [(node, _default_opset(function.opset_import)) for node in function.node]
    return pairs


def _default_opset(imports) -> int:
    """The default-domain version imported (the newest if none or absurd)."""
    newest = onnx.defs.onnx_opset_version()
    version = next((i.version for i in imports if i.domain in ("", "ai.onnx")), newest)
    return version if 0 < version <= newest else newest


def _int_attributes(node: onnx.NodeProto, opset: int) -> list[tuple[str, int]]:
    """(name, INT or INTS) of the integer attributes the node's schema
    declares, then of those it carries that it does not declare."""
    declared = _declared_int_attributes(node.op_type, node.domain, opset)
    names = {name for name, _ in declared}
    return [*declared, *((a.name, a.type) for a in node.attribute
                         if a.type in (AttributeProto.INT, AttributeProto.INTS) and a.name not in names)]


@functools.lru_cache(maxsize=None)
def _declared_int_attributes(op_type: str, domain: str, opset: int) -> tuple[tuple[str, int], ...]:
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return ()
    kinds = (AttributeProto.INT, AttributeProto.INTS)
    return tuple((name, int(a.type.value)) for name, a in schema.attributes.items() if int(a.type.value) in kinds)


def _clamp64(value: int) -> int:
    return min(max(value, -(1 << 63)), (1 << 63) - 1)


class _Subgraph:
    """A subgraph seen as a model (the mutations take a model)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph


def _mutate_tensor(rng: np.random.Generator, tensor: onnx.TensorProto) -> None:
    """Dims, bytes, element type or data location of one tensor."""
    action = pick(rng, ("dims", "dims", "bytes", "bytes", "type", "external", "typed_field"))
    if action == "dims":
        dims = list(tensor.dims)
        choice = int(rng.integers(3))
        if choice == 0 and dims:
            dims[int(rng.integers(len(dims)))] = _clamp64(boundary_int(rng))
        elif choice == 1:
            dims.insert(int(rng.integers(len(dims) + 1)), int(pick(rng, (0, 1, 2, -1, 1 << 40))))
        elif dims:
            dims.pop(int(rng.integers(len(dims))))
        del tensor.dims[:]
        tensor.dims.extend(dims)
    elif action == "bytes":
        if not tensor.raw_data:
            _to_raw(tensor)
        tensor.raw_data = mutate_bytes(rng, tensor.raw_data)
    elif action == "type":
        tensor.data_type = int(pick(rng, ELEM_TYPES))
    elif action == "external":
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", pick(rng, EXTERNAL_PLACES)), ("offset", str(boundary_int(rng))),
                           ("length", str(boundary_int(rng)))):
            if rng.random() < 0.8:
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
    else:  # values in the typed field, as many as it happens, whatever the element type
        tensor.ClearField("raw_data")
        tensor.float_data.extend([boundary_float(rng) for _ in range(int(rng.integers(0, 6)))])


def _to_raw(tensor: onnx.TensorProto) -> None:
    """Move typed-field data into raw_data (so its bytes can be mutated)."""
    try:
        array = numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - an already mutated tensor: leave its fields as they are
        return
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))


def mutate_initializer(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    if model.graph.initializer:
        _mutate_tensor(rng, pick(rng, model.graph.initializer))
    else:
        mutate_attribute(rng, model)


def mutate_shape(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    """A declared input, output or value_info shape or element type."""
    graph = model.graph
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    if not values:
        return
    value = pick(rng, values)
    tensor_type = value.type.tensor_type
    action = pick(rng, ("dim", "dim", "dim", "symbolic", "rank", "clear", "elem"))
    dims = tensor_type.shape.dim
    if action == "elem":
        tensor_type.elem_type = int(pick(rng, ELEM_TYPES))
    elif action == "clear":
        tensor_type.ClearField("shape")
    elif action == "rank" or not len(dims):
        if len(dims) and rng.random() < 0.5:
            del dims[int(rng.integers(len(dims)))]
        else:
            dims.add().dim_value = int(pick(rng, (1, 2, 0)))
    elif action == "symbolic":
        dims[int(rng.integers(len(dims)))].dim_param = pick(rng, ("N", "batch", "", "?", "-1"))
    else:
        dims[int(rng.integers(len(dims)))].dim_value = _clamp64(pick(rng, (0, -1, -2, 1, 2, 3, 7, 64, 65535,
                                                                           1 << 20, 1 << 31, 1 << 40, 10**12)))


def mutate_wiring(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    """Swap inputs, dangle or empty a name, refer forward (a cycle), reuse an
    output name, drop, duplicate or reorder nodes, change graph outputs."""
    graph = model.graph
    if not graph.node:
        return
    i = int(rng.integers(len(graph.node)))
    node = graph.node[i]
    action = pick(rng, ("swap", "dangle", "empty", "cycle", "rename_output", "drop", "duplicate", "reorder",
                        "graph_output", "graph_input"))
    names = _values(graph) or ["fresh"]
    if action == "swap" and len(node.input) > 1:
        a, b = rng.choice(len(node.input), 2, replace=False)
        node.input[int(a)], node.input[int(b)] = node.input[int(b)], node.input[int(a)]
    elif action in ("dangle", "empty", "cycle") and node.input:
        later = [o for n in graph.node[i:] for o in n.output] or ["fresh"]
        node.input[int(rng.integers(len(node.input)))] = {"dangle": "no_such_value", "empty": "",
                                                          "cycle": pick(rng, later)}[action]
    elif action == "rename_output" and node.output:
        node.output[int(rng.integers(len(node.output)))] = pick(rng, names)
    elif action == "drop":
        del graph.node[i]
    elif action == "duplicate":
        nodes = list(graph.node)
        nodes.insert(i, nodes[i])
        del graph.node[:]
        graph.node.extend(nodes)
    elif action == "reorder" and len(graph.node) > 1:
        j = int(rng.integers(len(graph.node)))
        a, b = graph.node[i], graph.node[j]
        copy_a = onnx.NodeProto()
        copy_a.CopyFrom(a)
        a.CopyFrom(b)
        b.CopyFrom(copy_a)
    elif action == "graph_output" and len(graph.output):
        if rng.random() < 0.5:
            del graph.output[int(rng.integers(len(graph.output)))]
        else:
            graph.output.append(helper.make_empty_tensor_value_info(pick(rng, names)))
    elif action == "graph_input" and len(graph.input):
        graph.input[int(rng.integers(len(graph.input)))].name = pick(rng, names + ["fresh"])


def mutate_op_type(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    node = pick(rng, list(model.graph.node)) if model.graph.node else None
    if node is None:
        return
    if rng.random() < 0.85:
        node.op_type = pick(rng, OP_TYPES)
    else:
        node.domain = pick(rng, ("com.microsoft", "ai.onnx.ml", "bogus", "ai.onnx"))


def mutate_opset(rng: np.random.Generator, model: onnx.ModelProto) -> None:
    action = pick(rng, ("version", "version", "ir", "drop", "add"))
    if action == "version" and model.opset_import:
        model.opset_import[0].version = _clamp64(pick(rng, OPSETS))
    elif action == "ir":
        model.ir_version = pick(rng, IR_VERSIONS)
    elif action == "drop" and model.opset_import:
        del model.opset_import[0]
    else:
        model.opset_import.append(helper.make_opsetid(pick(rng, ("", "ai.onnx.ml", "bogus")), pick(rng, OPSETS)))


MUTATIONS: dict[str, Callable] = {
    "attribute": mutate_attribute, "int_attribute": mutate_int_attribute, "initializer": mutate_initializer,
    "shape": mutate_shape, "wiring": mutate_wiring, "op_type": mutate_op_type, "opset": mutate_opset}
WEIGHTS = {"attribute": 4, "int_attribute": 6, "initializer": 3, "shape": 3, "wiring": 3, "op_type": 2, "opset": 1,
           "bytes": 1}


def generate(seeds_: list[onnx.ModelProto], rng: np.random.Generator) -> Case:
    """A seed model with one to three mutations (kind: the first one's name)."""
    model = onnx.ModelProto()
    model.CopyFrom(pick(rng, seeds_))
    names = list(WEIGHTS)
    weights = np.array([WEIGHTS[n] for n in names], float)
    count = int(pick(rng, (1, 1, 1, 2, 2, 3)))
    kinds = [names[int(k)] for k in rng.choice(len(names), count, p=weights / weights.sum())]
    for kind in kinds:
        if kind != "bytes":
            MUTATIONS[kind](rng, model)
    payload = model.SerializeToString()
    if "bytes" in kinds:
        payload = mutate_bytes(rng, payload)
    return Case(payload, kinds[0], ".onnx")


# ---------------------------------------------------------------- running a case
def execute(seeds_: list[onnx.ModelProto], path: str, kind: str) -> None:
    """Import the file (its types cross-checked with onnx's shape inference,
    which runs in its worker process), optimise the graph, run its program
    on random inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = OPTIMIZE(import_onnx(path, strict_types=True))
        program = lower_to_program(graph)
        shapes = [program.types[slot] for slot in program.inputs]
        if sum(int(np.prod(shape)) for shape, _ in shapes) > MAX_FEED_ELEMENTS:
            return
        rng = np.random.default_rng(0)
        feeds = {program.slots[slot]: _feed(rng, shape, dtype) for slot, (shape, dtype) in zip(program.inputs, shapes)}
        Executor(program).run(feeds)


def _feed(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    data = rng.standard_normal(shape) * 3
    return (data > 0 if dtype == "bool" else data).astype(dtype)
