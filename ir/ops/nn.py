"""Op definitions: convolutions and matrix products.

Canonical form of the windowed ops (Conv, ConvTranspose, and the pools in
:mod:`ir.ops.pool`): ``kernel_shape``, ``strides``, ``pads`` (all begins, then
all ends) and ``dilations`` are explicit, with one value per spatial axis;
there is no ``auto_pad`` (the frontend resolves it from the static input
shape) and no ``output_shape`` (ConvTranspose's becomes pads, which may then be
negative). 1 to 3 spatial axes are supported.
"""
from __future__ import annotations

import string

from ir.ops.common import ONES_PER_AXIS, ZERO_PADS, ZEROS_PER_AXIS, broadcast_shapes, require_float, window_out_dim
from ir.registry import REQUIRED, Derived, InferContext, Pattern, register_op
from ir.types import Dim, TensorType

MAX_SPATIAL = 3


# ---------------------------------------------------------------- window attributes
def _int_list(ctx: InferContext, name: str, length: int, low: int | None) -> list[int]:
    value = ctx.attrs[name]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ctx.error(f"{name} must be a list of ints, got {value!r}")
    value = [int(v) for v in value]
    if len(value) != length:
        raise ctx.error(f"{name}={value} must have {length} values (one per spatial axis"
                        f"{', begins then ends' if name == 'pads' else ''})")
    if low is not None and any(v < low for v in value):
        raise ctx.error(f"{name}={value} must all be >= {low}")
    return value


def spatial_rank(ctx: InferContext, index: int = 0) -> int:
    """Number of spatial axes of input ``index`` (N, C, spatial...), 1 to 3."""
    rank = ctx.type(index).rank
    if not 3 <= rank <= MAX_SPATIAL + 2:
        raise ctx.error(f"input {index} must have rank 3 to {MAX_SPATIAL + 2} (N, C, 1 to {MAX_SPATIAL} spatial "
                        f"dims), got {ctx.type(index)}")
    return rank - 2


def window_attrs(ctx: InferContext, spatial: int, negative_pads: bool = False):
    """Validated (kernel_shape, strides, pads, dilations) of a windowed op."""
    kernel = _int_list(ctx, "kernel_shape", spatial, 1)
    strides = _int_list(ctx, "strides", spatial, 1)
    pads = _int_list(ctx, "pads", 2 * spatial, None if negative_pads else 0)
    dilations = _int_list(ctx, "dilations", spatial, 1)
    return kernel, strides, pads, dilations


def window_out_shape(ctx: InferContext, spatial_shape, kernel, strides, pads, dilations,
                     ceil_mode: bool = False) -> list[Dim]:
    """Output spatial dims of a sliding window; an empty output is an error."""
    spatial = len(spatial_shape)
    out = []
    for axis, size in enumerate(spatial_shape):
        dim = window_out_dim(size, kernel[axis], strides[axis], pads[axis], pads[spatial + axis],
                             dilations[axis], ceil_mode)
        if dim is not None and dim < 1:
            raise ctx.error(f"kernel_shape={kernel} with dilations={dilations} and pads={pads} does not fit "
                            f"spatial axis {axis} of size {size}")
        out.append(dim)
    return out


def _group(ctx: InferContext) -> int:
    group = int(ctx.attrs["group"])
    if group < 1:
        raise ctx.error(f"group={group} must be >= 1")
    return group


def _same_dtype(ctx: InferContext, *indices: int) -> None:
    dtypes = {ctx.type(i).dtype for i in indices if ctx.has(i)}
    if len(dtypes) > 1:
        got = [str(ctx.type(i)) for i in indices if ctx.has(i)]
        raise ctx.error(f"inputs {list(indices)} must share one dtype, got {got}")


def _check_kernel_shape(ctx: InferContext, kernel: list[int], weight_spatial) -> None:
    if any(w is not None and w != k for k, w in zip(kernel, weight_spatial)):
        raise ctx.error(f"kernel_shape={kernel} does not match the weight's spatial dims {list(weight_spatial)}")


def _check_bias(ctx: InferContext, channels: Dim) -> None:
    if not ctx.has(2):
        return
    bias = ctx.type(2)
    if bias.rank != 1 or (channels is not None and bias.shape[0] not in (None, channels)):
        raise ctx.error(f"bias B must have shape [{channels}], got {bias}")


def _known(*dims: Dim) -> bool:
    return all(d is not None for d in dims)


# ---------------------------------------------------------------- Conv
def _conv(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    w = ctx.type(1)
    _same_dtype(ctx, 0, 1, 2)
    spatial = spatial_rank(ctx)
    if w.rank != x.rank:
        raise ctx.error(f"weight W must have the rank of X ({x.rank}), got {w}")
    kernel, strides, pads, dilations = window_attrs(ctx, spatial)
    _check_kernel_shape(ctx, kernel, w.shape[2:])
    group = _group(ctx)
    chans, out_c, group_c = x.shape[1], w.shape[0], w.shape[1]
    if _known(chans, group_c) and chans != group_c * group:
        raise ctx.error(f"group={group}: X has {chans} channels but W expects {group_c} per group "
                        f"({group_c * group} in all)")
    if out_c is not None and out_c % group:
        raise ctx.error(f"group={group} does not divide the {out_c} output channels of W")
    _check_bias(ctx, out_c)
    out = window_out_shape(ctx, x.shape[2:], kernel, strides, pads, dilations)
    return [TensorType([x.shape[0], out_c, *out], x.dtype)]


# ---------------------------------------------------------------- ConvTranspose
def _conv_transpose(ctx: InferContext) -> list[TensorType]:
    x = require_float(ctx, 0)
    w = ctx.type(1)
    _same_dtype(ctx, 0, 1, 2)
    spatial = spatial_rank(ctx)
    if w.rank != x.rank:
        raise ctx.error(f"weight W must have the rank of X ({x.rank}), got {w}")
    kernel, strides, pads, dilations = window_attrs(ctx, spatial, negative_pads=True)
    output_padding = _int_list(ctx, "output_padding", spatial, 0)
    _check_kernel_shape(ctx, kernel, w.shape[2:])
    group = _group(ctx)
    chans = x.shape[1]
    if _known(chans, w.shape[0]) and chans != w.shape[0]:
        raise ctx.error(f"W has {w.shape[0]} input channels but X has {chans}")
    if chans is not None and chans % group:
        raise ctx.error(f"group={group} does not divide the {chans} input channels")
    out_c = None if w.shape[1] is None else w.shape[1] * group
    _check_bias(ctx, out_c)
    out = transpose_out_shape(ctx, x.shape[2:], kernel, strides, pads, dilations, output_padding)
    return [TensorType([x.shape[0], out_c, *out], x.dtype)]


def transpose_out_shape(ctx: InferContext, spatial_shape, kernel, strides, pads, dilations,
                        output_padding) -> list[Dim]:
    """Output spatial dims of a transposed convolution (ConvTranspose,
    QConvTranspose); an empty output is an error."""
    spatial = len(spatial_shape)
    out: list[Dim] = []
    for axis, size in enumerate(spatial_shape):
        if size is None:
            out.append(None)
            continue
        dim = (strides[axis] * (size - 1) + output_padding[axis] + (kernel[axis] - 1) * dilations[axis] + 1
               - pads[axis] - pads[spatial + axis])
        if dim < 1 or size < 1:
            raise ctx.error(f"spatial axis {axis} of size {size} gives output size {dim} "
                            f"(pads={pads}, output_padding={output_padding})")
        out.append(dim)
    return out


# ---------------------------------------------------------------- Gemm, MatMul
def _gemm(ctx: InferContext) -> list[TensorType]:
    a, b = ctx.type(0), ctx.type(1)
    _same_dtype(ctx, 0, 1, 2)
    if a.rank != 2 or b.rank != 2:
        raise ctx.error(f"A and B must be matrices, got {a} and {b}")
    m, ka = reversed(a.shape) if ctx.attrs["transA"] else a.shape
    kb, n = reversed(b.shape) if ctx.attrs["transB"] else b.shape
    if _known(ka, kb) and ka != kb:
        raise ctx.error(f"inner dims differ: op(A) is [{m},{ka}], op(B) is [{kb},{n}] "
                        f"(transA={ctx.attrs['transA']}, transB={ctx.attrs['transB']})")
    if ctx.has(2):
        _check_unidirectional(ctx, ctx.shape(2), (m, n))
    return [TensorType([m, n], a.dtype)]


def _check_unidirectional(ctx: InferContext, shape, target) -> None:
    """C must broadcast to op(A) @ op(B) without growing it."""
    ok = len(shape) <= len(target) and all(
        d is None or t is None or d in (1, t) for d, t in zip(reversed(shape), reversed(target)))
    if not ok:
        raise ctx.error(f"C of shape {list(shape)} does not broadcast to the product's shape {list(target)}")


def _matmul(ctx: InferContext) -> list[TensorType]:
    a, b = ctx.type(0), ctx.type(1)
    _same_dtype(ctx, 0, 1)
    if a.rank == 0 or b.rank == 0:
        raise ctx.error(f"MatMul operands must have rank >= 1, got {a} and {b}")
    a_shape = (1,) + a.shape if a.rank == 1 else a.shape
    b_shape = b.shape + (1,) if b.rank == 1 else b.shape
    if _known(a_shape[-1], b_shape[-2]) and a_shape[-1] != b_shape[-2]:
        raise ctx.error(f"inner dims differ: {a} @ {b}")
    batch = broadcast_shapes(ctx, a_shape[:-2], b_shape[:-2])
    out = list(batch) + ([a_shape[-2]] if a.rank > 1 else []) + ([b_shape[-1]] if b.rank > 1 else [])
    return [TensorType(out, a.dtype)]


# ---------------------------------------------------------------- Einsum
ELLIPSIS = "."
_LETTERS = set(string.ascii_letters)


def parse_einsum(equation: str) -> tuple[list[str], str | None]:
    """Split an einsum equation into input terms and the output term (None
    when implicit); "..." becomes the single character ".". Raises ValueError."""
    eq = equation.replace(" ", "")
    if eq.count("->") > 1:
        raise ValueError("more than one '->'")
    lhs, arrow, rhs = eq.partition("->")
    terms = [_einsum_term(t) for t in lhs.split(",")]
    return terms, (_einsum_term(rhs) if arrow else None)


def _einsum_term(term: str) -> str:
    if term.count("...") > 1:
        raise ValueError(f"term {term!r} has more than one ellipsis")
    term = term.replace("...", ELLIPSIS)
    bad = set(term) - _LETTERS - {ELLIPSIS}
    if bad:
        raise ValueError(f"term {term!r} has invalid characters {sorted(bad)}")
    return term


def _einsum(ctx: InferContext) -> list[TensorType]:
    equation = ctx.attrs["equation"]
    try:
        terms, output = parse_einsum(equation)
    except ValueError as exc:
        raise ctx.error(f"equation {equation!r}: {exc}") from None
    if len(terms) != len(ctx):
        raise ctx.error(f"equation {equation!r} has {len(terms)} input terms but the node has {len(ctx)} inputs")
    _same_dtype(ctx, *range(len(ctx)))
    sizes, ellipses = _einsum_sizes(ctx, equation, terms)
    ellipsis = broadcast_shapes(ctx, *ellipses)
    if output is None:
        counts = "".join(terms)
        output = (ELLIPSIS if ellipsis else "") + "".join(sorted(c for c in set(counts) - {ELLIPSIS}
                                                                  if counts.count(c) == 1))
    for label in output:
        if label != ELLIPSIS and label not in sizes:
            raise ctx.error(f"equation {equation!r}: output label {label!r} is not in any input")
    if len(set(output)) != len(output):
        raise ctx.error(f"equation {equation!r}: the output repeats a label")
    if ellipsis and ELLIPSIS not in output:
        raise ctx.error(f"equation {equation!r}: the inputs' '...' dims must appear in the output")
    shape: list[Dim] = []
    for label in output:
        shape.extend(ellipsis if label == ELLIPSIS else [sizes[label]])
    return [TensorType(shape, ctx.type(0).dtype)]


def _einsum_sizes(ctx: InferContext, equation: str, terms: list[str]):
    """Label -> dim (size-1 dims broadcast across inputs) and each input's
    ellipsis dims."""
    sizes: dict[str, Dim] = {}
    ellipses = []
    for index, term in enumerate(terms):
        shape = ctx.shape(index)
        letters = len(term) - (ELLIPSIS in term)
        if len(shape) < letters or (ELLIPSIS not in term and len(shape) != letters):
            raise ctx.error(f"equation {equation!r}: term {term!r} does not fit input {index} of rank {len(shape)}")
        split = term.find(ELLIPSIS)
        n_ell = len(shape) - letters
        ellipses.append(shape[split:split + n_ell] if split >= 0 else ())
        dims = list(shape) if split < 0 else list(shape[:split]) + [None] + list(shape[split + n_ell:])
        own: dict[str, Dim] = {}
        for label, dim in zip(term, dims):
            if label == ELLIPSIS:
                continue
            if label in own and _known(own[label], dim) and own[label] != dim:
                raise ctx.error(f"equation {equation!r}: label {label!r} has sizes {own[label]} and {dim} "
                                f"in input {index}")
            own[label] = dim if own.get(label) is None else own[label]
        for label, dim in own.items():
            sizes[label] = _merge_label(ctx, equation, label, sizes.get(label, 1), dim)
    return sizes, ellipses


def _merge_label(ctx: InferContext, equation: str, label: str, old: Dim, new: Dim) -> Dim:
    if old == 1:
        return new
    if new == 1:
        return old
    if _known(old, new) and old != new:
        raise ctx.error(f"equation {equation!r}: label {label!r} has sizes {old} and {new}")
    return old if old is not None else new


# ---------------------------------------------------------------- registry
_WINDOW = {"kernel_shape": Derived(lambda types: list(types[1].shape[2:]), "the weight's spatial dims"),
           "strides": ONES_PER_AXIS, "pads": ZERO_PADS, "dilations": ONES_PER_AXIS}

register_op("Conv", _conv, Pattern.OUT_ELEMWISE_FUSABLE, inputs=(2, 3), attrs={**_WINDOW, "group": 1},
            doc="ONNX Conv; explicit window attributes, no auto_pad.")
register_op("ConvTranspose", _conv_transpose, Pattern.OUT_ELEMWISE_FUSABLE, inputs=(2, 3),
            attrs={**_WINDOW, "group": 1, "output_padding": ZEROS_PER_AXIS},
            doc="ONNX ConvTranspose; output_shape and auto_pad resolved into pads (which may be negative).")
register_op("Gemm", _gemm, Pattern.OUT_ELEMWISE_FUSABLE, inputs=(2, 3),
            attrs={"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
register_op("MatMul", _matmul, Pattern.OUT_ELEMWISE_FUSABLE, inputs=2)
register_op("Einsum", _einsum, Pattern.OPAQUE, inputs=(1, None), attrs={"equation": REQUIRED})
