"""The ahead-of-time side of Tessera: the ONNX frontend, the compile
pipeline and the ``tessera`` command line."""
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend import import_onnx

__all__ = ["import_onnx", "ModelImportError", "UnsupportedOpError"]
