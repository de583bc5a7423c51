"""The ahead-of-time side of Tessera: the ONNX frontend, the compile
pipeline and the ``tessera`` command line."""
import compiler.package_check  # noqa: F401  (first: the packages it imports are Tessera's)
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend import import_onnx

TESSERA_PACKAGE = True
"""Marks this package as Tessera's (runtime/packages.py checks it)."""

__all__ = ["import_onnx", "ModelImportError", "UnsupportedOpError"]
