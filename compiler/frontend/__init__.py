"""The ONNX frontend: ONNX model -> IR graph with static shapes."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

from onnx import ModelProto

import compiler.frontend.ops  # noqa: F401  (registers the import handlers)
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend.model import ModelInput, OnnxModel, runtime_inputs
from compiler.frontend.shapes import static_shape
from ir.graph import Graph

__all__ = ["import_onnx", "OnnxModel", "ModelInput", "runtime_inputs", "ModelImportError", "UnsupportedOpError"]


def import_onnx(model: str | os.PathLike | bytes | ModelProto, *,
                shapes: Mapping[str, Sequence[int]] | None = None, image: str | None = None,
                strict_types: bool = False) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) into an IR graph.

    ``shapes`` gives the shape of inputs with symbolic dims, by input name;
    ``image`` is the FWDNXT size string ("WxHxC" -> [1, C, H, W], or
    [1, H, W, C] for a channels-last input; ";" between inputs).
    ``strict_types`` makes a disagreement between Tessera's type rules and
    onnx shape inference an error (on in tests).
    """
    onnx_model = OnnxModel(model)
    dims = onnx_model.input_dims(shapes, image)
    try:
        static = {name: static_shape(name, d) for name, d in dims.items()}
    except ModelImportError as exc:
        raise ModelImportError(exc.reason, file=onnx_model.label) from None
    return onnx_model.to_graph(static, strict_types=strict_types)
