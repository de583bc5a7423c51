"""The report's quantization fidelity: each output part's SNR and each
layer's share of the output error, from what the binary records (the
target_snr record, compiler/target_snr.py) and from a diagnosis file
(``tessera quantize --report diag.json``, compiler/diagnose.py).

Both are untrusted: a malformed record or file is an error naming the field
at fault, never a crash in the page.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from runtime.errors import TesseraError
from runtime.files import MAX_TEXT_BYTES, read_regular

TARGET_FIELDS = ("target_db", "reached", "secure", "before_db", "after_db", "spread_db", "promoted", "macs_16bit",
                 "budget", "hwtime_ms", "needed", "host_outputs", "host_ms", "left")
"""The target_snr record's fields the page shows."""
DIAGNOSIS_FIELDS = ("layer", "op", "dtype", "share", "output_snr_db", "propagated_snr_db", "isolated_snr_db",
                    "causes")


class ReportDataError(TesseraError):
    """A record the report reads (binary metadata or a diagnosis file) is malformed."""


def target_record(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The target_snr record's shown fields (None when not recorded)."""
    record = metadata.get("target_snr")
    if record is None:
        return None
    if not isinstance(record, Mapping):
        raise ReportDataError("metadata 'target_snr' is not an object")
    for name in ("before_db", "after_db"):
        _snr_table(record.get(name, {}), f"metadata 'target_snr'.{name}")
    left = record.get("left") or []
    if not isinstance(left, list) or not all(_table_row(row) for row in left):
        raise ReportDataError("metadata 'target_snr'.left is not a list of [layer, share, MAC share]")
    for name in ("promoted", "needed", "host_outputs"):
        names = record.get(name) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ReportDataError(f"metadata 'target_snr'.{name} is not a list of names")
    hwtime = record.get("hwtime_ms")
    if hwtime is not None and not (isinstance(hwtime, list) and len(hwtime) == 2 and all(map(_real, hwtime))):
        raise ReportDataError("metadata 'target_snr'.hwtime_ms is not [before, after] in milliseconds")
    return {name: record.get(name) for name in TARGET_FIELDS}


def read_diagnosis(path: str | os.PathLike) -> dict[str, Any]:
    """The diagnosis file at ``path`` (the JSON compiler.diagnose.Diagnosis.write
    writes), checked: its outputs' SNR and its layers with their shares."""
    name = os.fspath(path)
    try:
        document = json.loads(read_regular(name, MAX_TEXT_BYTES, "diagnosis file"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportDataError(f"{name}: not a JSON diagnosis (tessera quantize --report FILE.json writes one): "
                              f"{exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("layers"), list):
        raise ReportDataError(f"{name}: a diagnosis holds an object with a 'layers' list")
    outputs = _snr_table(document.get("outputs_snr_db", {}), f"{name}: outputs_snr_db")
    layers = [_diagnosis_layer(row, f"{name}: layers[{i}]") for i, row in enumerate(document["layers"])]
    return {"file": os.path.basename(name), "samples": document.get("samples"), "outputs_snr_db": outputs,
            "layers": layers}


def _diagnosis_layer(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ReportDataError(f"{where} is not an object")
    share = row.get("share")
    if not _number(share):
        raise ReportDataError(f"{where}.share is {share!r}, not a number")
    nodes = row.get("onnx_nodes", "")
    nodes = nodes.split(",") if isinstance(nodes, str) else nodes
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise ReportDataError(f"{where}.onnx_nodes is not a list of names")
    found = {name: row.get(name) for name in DIAGNOSIS_FIELDS}
    found["layer"] = str(found["layer"] or "")
    return {**found, "onnx_nodes": [n for n in nodes if n]}


def attach_shares(layers: list[dict[str, Any]], target: Mapping[str, Any] | None,
                  diagnosis: Mapping[str, Any] | None) -> None:
    """Give each report layer its share of the output error: the sum of the
    diagnosis layers (else the target_snr record's layers left) computing one of its ONNX
    nodes; a layer none of them names gets no share."""
    owner = {node: i for i, layer in enumerate(layers) for node in layer["onnx"]}
    rows = [(row["onnx_nodes"] or [row["layer"]], row["share"]) for row in diagnosis["layers"]] if diagnosis else \
        [([name], share) for name, share, _ in (target or {}).get("left") or ()]
    for nodes, share in rows:
        hits = {owner[node] for node in nodes if node in owner}
        for i in hits:
            layers[i]["share"] = layers[i].get("share", 0.0) + float(share) / len(hits)


def _snr_table(value: Any, where: str) -> dict[str, Any]:
    """An output -> SNR (dB) table; numbers, or the strings and nulls that
    stand for infinities and NaN in JSON."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and (_real(v) or v in (None, "inf", "-inf"))
                                                 for k, v in value.items()):
        raise ReportDataError(f"{where} is not a table of output names to SNR in dB")
    return dict(value)


def _table_row(row: Any) -> bool:
    return isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and _number(row[1]) and \
        _number(row[2])


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return _real(value) and math.isfinite(value)


__all__ = ["ReportDataError", "attach_shares", "read_diagnosis", "target_record"]
