"""The report's description of a binary: file and sections, versions,
hardware config, interface, and the metadata records compile_model writes
(quantization options, placement, split decisions, pre-processing, head
grids), each as plain JSON data.

Metadata comes from an untrusted file: :func:`plain` keeps only JSON's own
types (non-finite numbers as strings, since JSON has none), and whatever it
holds the page shows as text, never as markup.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np

from runtime.compiled import CompiledModel

RECORDS = ("quantization", "placement", "split", "preprocess", "head_grids")
"""The metadata records shown as they are (missing ones are named as not recorded)."""
MAX_DEPTH = 32
"""Nesting kept of a metadata record (a hostile file's deeper levels are cut)."""


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data: dicts with string keys, lists, strings,
    booleans, None and finite numbers ("inf", "-inf", "nan" for the others;
    numpy scalars as Python numbers; anything else as its text)."""
    if depth > MAX_DEPTH:
        return "…"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    return str(value)


def describe_file(path: str, description: Mapping[str, Any]) -> dict[str, Any]:
    """The file's name, size, format version and sections (name, offset,
    length, checksum ok)."""
    return {"name": os.path.basename(path), "bytes": description.get("size"),
            "format": description.get("version"),
            "sections": [[s["name"], s["offset"], s["length"], s["crc_ok"]] for s in description["sections"]]}


def describe_model(model: CompiledModel) -> dict[str, Any]:
    """Versions, hardware, interface, DRAM and the metadata records."""
    metadata = model.metadata
    config = model.config
    records = {name: plain(metadata[name]) for name in RECORDS if name in metadata}
    return {"compiler": plain(metadata.get("compiler")), "source": plain(metadata.get("source")),
            "nlayers": plain(metadata.get("nlayers")), "hardware": plain(config.to_dict()),
            "peak_macs_per_cycle": config.units_per_cluster * config.macs_per_unit,
            "inputs": [[t.name, t.dtype, list(t.shape)] for t in model.inputs],
            "outputs": [[t.name, t.dtype, list(t.shape)] for t in model.outputs],
            "dram_bytes": model.dram_size, "weight_bytes": len(model.dram_image),
            "reference": model.reference is not None, "records": records}


__all__ = ["RECORDS", "describe_file", "describe_model", "plain"]
