"""Code generation: IR -> CPU kernel programs (codegen/cpu.py), accelerator
instruction streams (codegen/device/) and the binary that holds them
(codegen/binary.py)."""
from codegen.cpu import lower_to_program

TESSERA_PACKAGE = True
"""Marks this package as Tessera's (runtime/packages.py checks it)."""

__all__ = ["lower_to_program"]
