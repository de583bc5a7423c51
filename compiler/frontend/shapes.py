"""Input shapes: the dims a model declares, the FWDNXT image string, and the
static shape of each input once the user's shapes (or the data's) are known.

A declared dim is an int (fixed), a str (a symbolic name such as ``"batch"``)
or None (unnamed, or a negative ``dim_value``: PaddlePaddle writes -1 for
"any size", and onnxruntime reads it so). A ``dim_value`` of 0 stays a fixed
0, as onnxruntime keeps it: it refuses any other size there.
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import onnx

from compiler.errors import ModelImportError
from runtime.kernels.limits import MAX_ELEMENTS

DeclaredDim = int | str | None
ShapeSpec = Mapping[str, Sequence[int]]


def declared_dims(value: onnx.ValueInfoProto) -> list[DeclaredDim] | None:
    """The dims a tensor input declares (None when it declares no shape)."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [_declared_dim(d) for d in tensor.shape.dim]


def _declared_dim(dim: onnx.TensorShapeProto.Dimension) -> DeclaredDim:
    if dim.HasField("dim_value"):
        return dim.dim_value if dim.dim_value >= 0 else None
    return dim.dim_param or None


def is_dynamic(dims: Sequence[DeclaredDim] | None) -> bool:
    """Whether a shape has a dim (or, for None, a rank) that is not fixed."""
    return dims is None or any(not isinstance(d, int) for d in dims)


def format_dims(dims: Sequence[DeclaredDim]) -> list:
    """Dims for a message: unnamed dynamic dims shown as '?'."""
    return ["?" if d is None else d for d in dims]


# ------------------------------------------------------------------ the image string
def parse_image_spec(spec: str) -> list[list[int]]:
    """Parse the FWDNXT ``Image`` string: ``"WxHxC"`` means NCHW [1, C, H, W];
    ``"WxHxCxB"`` adds a batch; several inputs are separated by ``;``."""
    shapes = []
    for part in spec.split(";"):
        dims = part.strip().lower().split("x")
        if not all(re.fullmatch(r"\d+", d) for d in dims) or len(dims) not in (3, 4):
            raise ModelImportError(f"image size {part!r} must look like 'WxHxC' (for example '224x224x3') "
                                   "or 'WxHxCxBatch'")
        w, h, c, *batch = (int(d) for d in dims)
        if min(w, h, c, *batch) <= 0:
            raise ModelImportError(f"image size {part!r} has a zero dimension")
        shapes.append([batch[0] if batch else 1, c, h, w])
    return shapes


def image_spec_to_shapes(spec: str, inputs: Mapping[str, Sequence[DeclaredDim] | None]) -> dict[str, list[int]]:
    """Assign the parsed image shapes to the model's runtime inputs (name ->
    declared dims), in order, each laid out as its input declares."""
    shapes = parse_image_spec(spec)
    if len(shapes) != len(inputs):
        raise ModelImportError(f"image size {spec!r} gives {len(shapes)} shape(s) but the model has "
                               f"{len(inputs)} input(s): {list(inputs)}")
    return {name: image_layout(nchw, dims) for (name, dims), nchw in zip(inputs.items(), shapes)}


def image_layout(nchw: Sequence[int], declared: Sequence[DeclaredDim] | None) -> list[int]:
    """An image shape in the input's layout: channels-last [N, H, W, C] when
    the input declares its last dim fixed to C and dim 1 not (a Keras-style
    ``[N, H, W, 3]``), NCHW otherwise."""
    n, c, h, w = nchw
    if declared is not None and len(declared) == 4 and declared[3] == c and declared[1] != c:
        return [n, h, w, c]
    return list(nchw)


# ------------------------------------------------------------------ resolving
def merge_input_shape(name: str, declared: Sequence[DeclaredDim] | None,
                      given: Sequence[int] | None) -> list[DeclaredDim] | None:
    """The dims of one input: the model's, replaced by the given shape after
    checking it agrees with every fixed dim (the error names the input and
    the dim). None: neither declares a shape."""
    if given is None:
        return None if declared is None else list(declared)
    given = [int(d) for d in given]
    if declared is not None and len(given) != len(declared):
        raise ModelImportError(f"input {name!r} has rank {len(declared)} ({format_dims(declared)}), "
                               f"the given shape {given} has rank {len(given)}")
    for axis, (want, have) in enumerate(zip(declared or [], given)):
        if isinstance(want, int) and want != have:
            raise ModelImportError(f"input {name!r} is {format_dims(declared)}; the shape {given} contradicts "
                                   f"a fixed dim: dim {axis} is {want}, not {have}")
    if any(d < 0 for d in given):
        raise ModelImportError(f"input {name!r}: the given shape {given} has a negative dim")
    if math.prod(given) > MAX_ELEMENTS:
        raise ModelImportError(f"input {name!r}: the given shape {given} has {math.prod(given)} elements, more "
                               f"than the limit of {MAX_ELEMENTS} (runtime.kernels.limits.MAX_ELEMENTS)")
    return given


def static_shape(name: str, dims: Sequence[DeclaredDim] | None) -> list[int]:
    """The dims of one input, which must all be known by now."""
    if dims is None:
        raise ModelImportError(f"input {name!r} has no shape; give one with shapes=")
    if is_dynamic(dims):
        raise ModelImportError(
            f"input {name!r} has symbolic dims {format_dims(dims)}; give its shape, for example "
            f"shapes={{{name!r}: [1, 3, 224, 224]}} or image='224x224x3'")
    return list(dims)
