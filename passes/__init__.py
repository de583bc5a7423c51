"""Graph passes: the pass infrastructure (infra.py) and every pass, one per file;
quantization in passes/quant/. compiler/pipeline.py says which run, in which order."""

TESSERA_PACKAGE = True
"""Marks this package as Tessera's (runtime/packages.py checks it)."""
