"""Checks an ONNX ModelProto for what onnx's C++ would crash on, before any of
it runs (shape inference, the inliner, the version converter, the checker).

A crash there (SIGSEGV, SIGABRT, or the kernel killing a process that ran
out of memory) takes the whole Python process with it, where Tessera owes a
ModelImportError naming the node, the attribute and the value. Found with
onnx 1.23 (each candidate run in a subprocess):

- shape inference narrows some integer attributes to a 32-bit ``int``:
  LayerNormalization ``axis`` >= 2**31 and GatherND ``batch_dims`` =
  -2**31 - 1 segfault it;
- the version converter segfaults on a Reshape-1 whose ``shape`` attribute
  is a FLOAT or a STRING instead of INTS;
- data propagation allocates what a tensor's dims say: a Slice whose
  ``starts`` initializer declares [10**12] elements and holds 8 bytes runs
  the process out of memory;
- Einsum's shape inference loops forever on a NUL in its equation.

So every node (in subgraphs and local function bodies too) may only carry
the attributes its op's schema declares, with the declared type; integer
attributes lie in their op's documented domain and within the limits below
(flags 0 or 1); every tensor holds exactly the data its dims describe; and
no tensor or declared shape goes beyond MAX_ELEMENTS.

These checks name what is wrong; they cannot foresee every crash. A MaxPool
kernel wider than its input is within every bound, yet onnx infers a
negative dim for it, and a Slice of that aborts shape inference (a
std::clamp assertion). So onnx's C++ never runs in Tessera's process: an
ordinary import needs no shape inference of onnx's, and the inliner, the
version converter and ``strict_types``' shape inference run in a worker
process whose death is a ModelImportError (compiler.frontend.onnx_isolated).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import onnx
import onnx.defs
from onnx import AttributeProto, TensorProto, helper

from compiler.errors import ModelImportError, UnsupportedOpError
from ir.ops.nn import parse_einsum
from runtime.kernels.limits import MAX_ELEMENTS, MAX_RANK

DEFAULT_DOMAINS = ("", "ai.onnx")

MAX_INT_ATTRIBUTE = (1 << 31) - 1
"""Largest magnitude of an integer attribute (other than WIDE_ATTRIBUTES):
onnx's C++ narrows some integer attributes to a 32-bit int."""

MAX_EXTENT = MAX_ELEMENTS
"""Largest kernel size, stride, dilation, pad, output size or group: one
beyond the largest tensor Tessera accepts cannot describe a real layer."""

WIDE_ATTRIBUTES = frozenset({"value_int", "value_ints", "starts", "ends", "start", "end", "pool_int64s", "seed",
                             "ignore_index"})
"""Integer attributes that are data or clamped indices: any int64 (exporters
write INT64_MAX as Slice-1's ``ends``)."""

POSITIVE = frozenset({"kernel_shape", "strides", "dilations", "pooled_shape", "group", "offset_group", "blocksize",
                      "num_groups", "hidden_size", "size"})
"""Attributes whose every value lies in 1..MAX_EXTENT."""

NON_NEGATIVE = frozenset({"pads", "paddings", "output_padding", "output_shape"})
"""Attributes whose every value lies in 0..MAX_EXTENT (Pad's may be negative)."""

AXES = frozenset({"axis", "axes", "batch_axis", "time_axis", "batch_dims", "scan_input_axes", "scan_output_axes"})
"""Attributes naming axes: each within -MAX_RANK..MAX_RANK."""

FLAGS = frozenset({"keepdims", "ceil_mode", "count_include_pad", "transA", "transB", "exclusive", "reverse", "upper",
                   "largest", "sorted", "select_last_index", "noop_with_empty_axes", "allowzero", "storage_order",
                   "center_point_box", "detect_negative", "detect_positive", "training_mode", "spatial", "new_axis",
                   "exclude_outside", "linear_before_reset", "input_forget", "layout", "broadcast", "fmod",
                   "interleaved", "onesided", "inverse", "periodic", "antialias", "is_causal", "saturate"})
"""Attributes onnx documents as booleans: 0 or 1 (onnx's shape inference
reads keepdims=3 as 0, a truthy reading as 1: no value outside 0..1 has one
meaning)."""

PER_AXIS = ("strides", "dilations", "output_padding")
"""Window attributes with one value per spatial axis, as kernel_shape has."""

_PACKED_BITS = {TensorProto.INT4: 4, TensorProto.UINT4: 4, TensorProto.FLOAT4E2M1: 4, TensorProto.INT2: 2,
                TensorProto.UINT2: 2, TensorProto.FLOAT6E2M3: 6, TensorProto.FLOAT6E3M2: 6}


def validate_model(model: onnx.ModelProto, opset: int, label: str) -> None:
    """Raise a ModelImportError for the first thing in ``model`` that onnx's
    C++ could crash on; ``opset`` is the model's default-domain opset."""
    _check_graph(model.graph, opset, label)
    newest = onnx.defs.onnx_opset_version()
    for function in model.functions:
        version = _default_opset(function.opset_import, opset)
        where = f"local function {function.domain}.{function.name}"
        if not 0 < version <= newest:
            raise ModelImportError(f"{where} imports opset {version}; the installed onnx knows 1 to {newest}",
                                   file=label)
        for index, node in enumerate(function.node):
            _check_node(node, f"{where}/{node.name or f'{node.op_type}_{index}'}", version, label)


def _default_opset(imports: Iterable[onnx.OperatorSetIdProto], fallback: int) -> int:
    versions = [imp.version for imp in imports if imp.domain in DEFAULT_DOMAINS]
    return max(versions) if versions else fallback


# ------------------------------------------------------------------ graphs
def _check_graph(graph: onnx.GraphProto, opset: int, label: str) -> None:
    """The graph's tensors, declared shapes and nodes, subgraphs included
    (protobuf itself refuses to nest them more than 32 deep)."""
    for tensor in graph.initializer:
        _raise_if(_tensor_problem(tensor), f"initializer {tensor.name!r}", label)
    for sparse in graph.sparse_initializer:
        _raise_if(_sparse_problem(sparse), f"sparse initializer {sparse.values.name!r}", label)
    for kind, values in (("input", graph.input), ("output", graph.output), ("value_info", graph.value_info)):
        for value in values:
            _raise_if(_declared_problem(value.type), f"{kind} {value.name!r}", label)
    for index, node in enumerate(graph.node):
        _raise_if(_text_problem(node), f"node {index}", label)
        _check_node(node, node.name or f"{node.op_type}_{index}", opset, label)


def _text_problem(node: onnx.NodeProto) -> str | None:
    """A name, op type, domain or attribute name that is not UTF-8 (protobuf
    gives such a string field back as bytes, which onnx's C++ bindings and
    the messages here cannot take)."""
    fields = [node.op_type, node.domain, node.name, *node.input, *node.output, *(a.name for a in node.attribute)]
    bad = next((f for f in fields if not isinstance(f, str)), None)
    return None if bad is None else f"has a name, op type, domain or attribute name that is not UTF-8: {bad[:40]!r}"


def _raise_if(problem: str | None, what: str, label: str) -> None:
    if problem is not None:
        raise ModelImportError(f"{what} {problem}", file=label)


def _declared_problem(type_proto: onnx.TypeProto) -> str | None:
    """A declared shape of too high a rank or too many elements (negative
    dims mean "any size", as PaddlePaddle writes them)."""
    for shape in _declared_shapes(type_proto):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
        if len(dims) > MAX_RANK:
            return f"declares rank {len(dims)}, more than {MAX_RANK} (MAX_RANK)"
        count = math.prod(d for d in dims if d is not None and d > 0)
        if count > MAX_ELEMENTS:
            return (f"declares the shape {_show(dims)} ({count} elements), more than the limit of {MAX_ELEMENTS} "
                    "(MAX_ELEMENTS)")
    return None


def _declared_shapes(type_proto: onnx.TypeProto) -> Iterable[onnx.TensorShapeProto]:
    """The tensor shapes a type declares, inside sequences, maps and optionals too."""
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        tensor = getattr(type_proto, kind)
        if tensor.HasField("shape"):
            yield tensor.shape
    elif kind in ("sequence_type", "optional_type"):
        yield from _declared_shapes(getattr(type_proto, kind).elem_type)
    elif kind == "map_type":
        yield from _declared_shapes(type_proto.map_type.value_type)


# ------------------------------------------------------------------ tensors
def tensor_dims_problem(tensor: TensorProto) -> str | None:
    """Negative dims, too many elements or an unknown element type."""
    problem = _dims_problem(list(tensor.dims))
    if problem is None and tensor.data_type not in _ELEMENT_TYPES:
        return f"has element type {tensor.data_type}, which is not an ONNX element type"
    return problem


def _tensor_problem(tensor: TensorProto) -> str | None:
    """:func:`tensor_dims_problem`, or data that is not exactly what the
    dims describe. External data was read into the model by the loader
    (compiler.frontend.external_data); a tensor still external here is one
    no loader resolved."""
    problem = tensor_dims_problem(tensor)
    if problem is not None:
        return problem
    dims = list(tensor.dims)
    count = math.prod(dims)
    if tensor.data_location == TensorProto.EXTERNAL:
        return "keeps its data in a side file that was not read (load the model from its path)"
    type_name = TensorProto.DataType.Name(tensor.data_type)
    if tensor.data_type != TensorProto.STRING and tensor.HasField("raw_data"):
        want = raw_bytes(tensor.data_type, count)
        have = len(tensor.raw_data)
        what = "bytes of raw_data"
    else:
        field = helper.tensor_dtype_to_field(tensor.data_type)
        want = _typed_entries(tensor.data_type, count)
        have = len(getattr(tensor, field))
        what = f"entries of {field}"
    if have != want:
        return f"has dims {_show(dims)} ({count} {type_name} elements, {want} {what}) but holds {have} {what}"
    return None


def _sparse_problem(sparse: onnx.SparseTensorProto) -> str | None:
    """A sparse tensor's own dims, then its values and indices tensors."""
    problem = _dims_problem(list(sparse.dims))
    if problem is None:
        problem = _tensor_problem(sparse.values)
    if problem is None:
        problem = _tensor_problem(sparse.indices)
    return problem


def _dims_problem(dims: Sequence[int]) -> str | None:
    """Negative dims, a rank numpy cannot hold, or more than MAX_ELEMENTS
    elements (zero dims counted as 1, so an empty tensor cannot hide an
    absurd shape, as in the binary format)."""
    if len(dims) > MAX_RANK:
        return f"has rank {len(dims)}, more than {MAX_RANK} (MAX_RANK)"
    if any(d < 0 for d in dims):
        return f"has negative dims {_show(dims)}"
    extent = math.prod(max(d, 1) for d in dims)
    if extent > MAX_ELEMENTS:
        return f"has dims {_show(dims)} ({extent} elements), more than the limit of {MAX_ELEMENTS} (MAX_ELEMENTS)"
    return None


_ELEMENT_TYPES = frozenset(v for v in TensorProto.DataType.values() if v != TensorProto.UNDEFINED)


def raw_bytes(data_type: int, count: int) -> int:
    """The raw_data length of ``count`` elements (4-, 2- and 6-bit types packed)."""
    bits = _PACKED_BITS.get(data_type) or 8 * np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    return -(-count * bits // 8)


def _typed_entries(data_type: int, count: int) -> int:
    """The typed field length of ``count`` elements, as numpy_helper reads it:
    4-bit types two to an entry, 2-bit types four, complex numbers as pairs."""
    bits = _PACKED_BITS.get(data_type)
    if bits in (2, 4):
        return -(-count * bits // 8)
    if data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        return 2 * count
    return count


# ------------------------------------------------------------------ nodes
def _check_node(node: onnx.NodeProto, name: str, opset: int, label: str) -> None:
    """A node's attributes against its op's schema and documented domain,
    its tensor attributes and its subgraphs."""
    where = dict(op=node.op_type, node=name, opset=opset, file=label)
    default = node.domain in DEFAULT_DOMAINS
    if default:
        _check_schema(node, _schema(node.op_type, opset), where)
    for attr in node.attribute:
        if attr.ref_attr_name:
            continue  # bound when functions are inlined, and checked then
        if default:
            _check_integers(node.op_type, attr, where)
        _check_attribute_data(attr, opset, label, where)
    if default:
        _check_window_lengths(node, where)
    if default and node.op_type == "Einsum":
        _check_equation(node, where)


def _schema(op_type: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None  # an op onnx does not know: the importer reports it


def _check_schema(node: onnx.NodeProto, schema: onnx.defs.OpSchema | None, where: dict) -> None:
    """Only attributes the op declares, each of the declared type."""
    if schema is None:
        return
    declared = schema.attributes
    unknown = [a for a in node.attribute if a.name not in declared]
    if unknown:
        raise UnsupportedOpError(f"attribute(s) {sorted(a.name for a in unknown)} are not supported "
                                 f"({', '.join(map(_attr_text, unknown))}): onnx declares no such attribute for "
                                 f"{node.op_type} at opset {where['opset']}", **where)
    for attr in node.attribute:
        want = int(declared[attr.name].type)
        if attr.type != want:
            raise ModelImportError(f"attribute {_attr_text(attr)} is {_type_name(attr.type)}, but "
                                   f"{node.op_type} takes {_type_name(want)}", **where)


def _type_name(attr_type: int) -> str:
    return AttributeProto.AttributeType.Name(attr_type) if attr_type in AttributeProto.AttributeType.values() \
        else str(attr_type)


def _attr_text(attr: AttributeProto) -> str:
    """``name=value`` for a message (lists cut short; tensors and graphs by kind)."""
    simple = {AttributeProto.INT: attr.i, AttributeProto.FLOAT: attr.f, AttributeProto.STRING: repr(_text(attr.s)),
              AttributeProto.INTS: _show(attr.ints), AttributeProto.FLOATS: _show(attr.floats),
              AttributeProto.STRINGS: _show([_text(v) for v in attr.strings])}
    value = simple[attr.type] if attr.type in simple else f"<{_type_name(attr.type)}>"
    return f"{attr.name}={value}"


def _check_integers(op_type: str, attr: AttributeProto, where: dict) -> None:
    """INT and INTS attributes within their documented domain."""
    if attr.type == AttributeProto.INT:
        values, shown = [attr.i], str(attr.i)
    elif attr.type == AttributeProto.INTS:
        values, shown = list(attr.ints), _show(attr.ints)
    else:
        return
    if attr.name == "perm":
        if sorted(values) != list(range(len(values))) or len(values) > MAX_RANK:
            raise ModelImportError(f"perm={shown} is not a permutation of 0..{len(values) - 1} (rank at most "
                                   f"{MAX_RANK})", **where)
        return
    low, high, limit = _domain(op_type, attr.name)
    for value in values:
        if not low <= value <= high:
            raise ModelImportError(f"{attr.name}={shown}: {value} is not in {low}..{high} ({limit})", **where)


def _domain(op_type: str, name: str) -> tuple[int, int, str]:
    """The range of an integer attribute's values and the limit it comes from."""
    if name in POSITIVE:
        return 1, MAX_EXTENT, "MAX_EXTENT"
    if name in NON_NEGATIVE:
        return -MAX_EXTENT if op_type == "Pad" else 0, MAX_EXTENT, "MAX_EXTENT"
    if name in AXES:
        return -MAX_RANK, MAX_RANK, "MAX_RANK, numpy's largest rank"
    if name in FLAGS:
        return 0, 1, "a flag"
    if name in WIDE_ATTRIBUTES:
        return -(1 << 63), (1 << 63) - 1, "int64"
    return -MAX_INT_ATTRIBUTE, MAX_INT_ATTRIBUTE, "MAX_INT_ATTRIBUTE: onnx reads some as a 32-bit int"


def _check_window_lengths(node: onnx.NodeProto, where: dict) -> None:
    """pads have a begin and an end per axis; strides, dilations and
    output_padding one value per spatial axis, as kernel_shape has (empty
    lists mean the defaults)."""
    lists = {a.name: list(a.ints) for a in node.attribute
             if a.type == AttributeProto.INTS and a.ints and a.name in ("kernel_shape", "pads", *PER_AXIS)}
    if len(lists.get("pads", ())) % 2:
        raise ModelImportError(f"pads={_show(lists['pads'])} has {len(lists['pads'])} values: it needs a begin and "
                               "an end per axis", **where)
    basis = next((n for n in ("kernel_shape", *PER_AXIS) if n in lists), None)
    if basis is None:
        return
    spatial = len(lists[basis])
    for name, values in lists.items():
        want = 2 * spatial if name == "pads" else spatial
        if len(values) != want:
            raise ModelImportError(f"{name}={_show(values)} has {len(values)} values, but {basis}="
                                   f"{_show(lists[basis])} gives {spatial} spatial axes: {name} needs {want}",
                                   **where)


def _check_equation(node: onnx.NodeProto, where: dict) -> None:
    """Einsum's equation holds only letters, '...', ',' and '->' (onnx's
    shape inference loops forever on a NUL in it)."""
    for attr in node.attribute:
        if attr.name == "equation" and attr.type == AttributeProto.STRING:
            try:
                parse_einsum(_text(attr.s))
            except ValueError as exc:
                raise ModelImportError(f"equation={_text(attr.s)!r}: {exc}", **where) from None


def _check_attribute_data(attr: AttributeProto, opset: int, label: str, where: dict) -> None:
    """Tensor attributes like initializers; subgraphs like the main graph."""
    tensors = [attr.t] if attr.type == AttributeProto.TENSOR else list(attr.tensors)
    for tensor in tensors:
        problem = _tensor_problem(tensor)
        if problem is not None:
            raise ModelImportError(f"attribute {attr.name!r}: the tensor {problem}", **where)
    sparse = [attr.sparse_tensor] if attr.type == AttributeProto.SPARSE_TENSOR else list(attr.sparse_tensors)
    for tensor in sparse:
        problem = _sparse_problem(tensor)
        if problem is not None:
            raise ModelImportError(f"attribute {attr.name!r}: the sparse tensor {problem}", **where)
    for graph in [attr.g] if attr.type == AttributeProto.GRAPH else attr.graphs:
        _check_graph(graph, opset, label)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _show(values: Sequence) -> str:
    """A list for a message, cut short when long."""
    values = list(values)
    if len(values) <= 16:
        return str(values)
    return f"[{', '.join(map(str, values[:8]))}, ... ({len(values)} values)]"
