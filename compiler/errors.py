"""Errors of the compile step (model import, quantization settings, options)."""
from runtime.errors import TesseraError


class ModelImportError(TesseraError):
    """The model cannot be imported; the message names the file, and the op,
    node and opset when one node is at fault."""

    def __init__(self, message: str, *, op: str | None = None, node: str | None = None,
                 opset: int | None = None, file: str | None = None):
        where = []
        if file:
            where.append(str(file))
        if op:
            at = f"{op} node {node!r}" if node is not None else op
            where.append(f"{at} (opset {opset})" if opset is not None else at)
        super().__init__(": ".join(where + [message]))
        self.op, self.node, self.opset, self.file = op, node, opset, file
        self.reason = message


class UnsupportedOpError(ModelImportError):
    """The model uses an op (or an op form) Tessera does not implement."""


class QuantizationError(TesseraError):
    """A quantization setting that does not fit the model, or a comparison
    that cannot be made."""
