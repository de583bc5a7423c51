"""User-given input shapes: the FWDNXT image string or a shape per input."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

from compiler.errors import ModelImportError

ShapeSpec = Mapping[str, Sequence[int]]


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


def image_spec_to_shapes(spec: str, input_names: Sequence[str]) -> dict[str, list[int]]:
    """Assign the parsed image shapes to the model's runtime inputs, in order."""
    shapes = parse_image_spec(spec)
    if len(shapes) != len(input_names):
        raise ModelImportError(f"image size {spec!r} gives {len(shapes)} shape(s) but the model has "
                               f"{len(input_names)} input(s): {list(input_names)}")
    return dict(zip(input_names, shapes))


def resolve_input_shape(name: str, declared: Sequence[int | str | None], given: Sequence[int] | None) -> list[int]:
    """The static shape of one input: the model's, completed or checked by the user's."""
    if given is None:
        symbolic = [d for d in declared if not isinstance(d, int)]
        if symbolic:
            raise ModelImportError(
                f"input {name!r} has symbolic dims {list(declared)}; give its shape, for example "
                f"shapes={{{name!r}: [1, 3, 224, 224]}} or image='224x224x3'")
        return list(declared)
    given = [int(d) for d in given]
    if len(given) != len(declared) and declared:
        raise ModelImportError(f"input {name!r} has rank {len(declared)} ({list(declared)}), "
                               f"the given shape {given} has rank {len(given)}")
    for want, have in zip(declared, given):
        if isinstance(want, int) and want != have:
            raise ModelImportError(f"input {name!r} is declared {list(declared)}; the given shape {given} "
                                   "contradicts a fixed dim")
    if any(d <= 0 for d in given):
        raise ModelImportError(f"input {name!r}: the given shape {given} has a non-positive dim")
    return given
