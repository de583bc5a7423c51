"""The compiled binary format: one file holding a CompiledModel as data.

:func:`read_binary` validates a file in full (it is untrusted input) and
returns the :class:`runtime.compiled.CompiledModel`; :func:`describe` lists
its sections. The writer is codegen/binary.py; the layout is in
:mod:`runtime.binary.format` and docs/binary.md.
"""
from runtime.binary.format import MAGIC, VERSION, BinaryFormatError, Section
from runtime.binary.reader import describe, read_binary

__all__ = ["BinaryFormatError", "MAGIC", "Section", "VERSION", "describe", "read_binary"]
