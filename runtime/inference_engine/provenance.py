"""Where a compiled model runs each ONNX layer, and what it cost: the
provenance the binary carries (device layers' ``onnx_nodes``, CPU steps'
node names), the cycle model's per-layer estimates and measured kernel
times, read back per ONNX layer for the Inference-Engine API's perf counts,
exec graph and HETERO DOT dumps."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from runtime.dot import quote
from runtime.files import write_atomic
from runtime.hardware import ACCELERATOR, HOST

FUSED = "fused_"
"""How passes/fuse_ops.py names a fused group: after its last member."""
HELPER_SEPARATOR = "::"
"""ir.graph.HELPER_SEPARATOR (runtime/ reads the names the compiler wrote, and imports no ir/)."""
COLOURS = {ACCELERATOR: "lightblue", HOST: "lightgrey"}
"""The DOT dumps' fill per device."""
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
"""Characters a file name built from a model's name may not hold."""
MAX_STEM = 96
"""Longest part of a file name taken from a model's name (the hash and the prefix stay under 255 bytes)."""


def onnx_name(node_name: str) -> str:
    """The ONNX node an IR node name comes from (ir.graph.onnx_name)."""
    return node_name.split(HELPER_SEPARATOR, 1)[0]


def credited(node_name: str) -> str:
    """The layer a lowered layer or kernel step is reported under: a fused
    group ("fused_<last member>") under its last layer, whose output it
    produces; the layers fused into it show as OPTIMIZED_OUT."""
    return onnx_name(node_name[len(FUSED):] if node_name.startswith(FUSED) else node_name)


def placements(compiled) -> dict[str, dict]:
    """ONNX layer -> {device, segment index, kernel or device op}: where the
    compiled model runs each layer (its first appearance)."""
    from runtime.compiled import CpuSegment

    out: dict[str, dict] = {}
    for index, segment in enumerate(compiled.segments):
        if isinstance(segment, CpuSegment):
            for step in segment.program.steps:
                out.setdefault(credited(step.name), {"device": HOST, "segment": index, "exec": step.kernel})
        else:
            for layer in segment.layers:
                for node in layer.onnx_nodes:
                    out.setdefault(node, {"device": ACCELERATOR, "segment": index, "exec": layer.op})
    return out


def device_layer_times(engine) -> dict[str, tuple[str, float]]:
    """ONNX layer -> (op, modelled µs) of each device layer (the cycle
    model's estimate of its fused layer, credited as :func:`credited`
    says; several lowered layers of one node add up)."""
    clock = engine.model.config.clock_hz
    out: dict[str, tuple[str, float]] = {}
    for layer in engine.device.layer_times():
        name = credited(layer.name)
        op, micros = out.get(name, (layer.op, 0.0))
        out[name] = (op, micros + layer.cycles / clock * 1e6)
    return out


def perf_counts(layer_types: Mapping[str, str], placed: Mapping[str, dict],
                layer_times: Mapping[str, tuple[str, float]], timings: Sequence[tuple[str, str, float]],
                ran: bool) -> dict[str, dict[str, Any]]:
    """Per layer (``layer_types``: name -> type, in network order): status
    (EXECUTED, OPTIMIZED_OUT, NOT_RUN), exec_type, layer_type, real_time and
    cpu_time (µs: device layers their modelled time, CPU layers the measured
    ``timings`` of a run), execution_index; ``ran``: whether a run happened."""
    cpu: dict[str, list] = {}
    for step, kernel, seconds in timings:
        if "+" in kernel:  # two steps the executor ran as one ("a+b"): under the second, whose output it is
            step = step.rsplit("+", 1)[-1]
        entry = cpu.setdefault(credited(step), [kernel, 0.0])
        entry[1] += seconds * 1e6
    counts: dict[str, dict[str, Any]] = {}
    order = 0
    for name, layer_type in layer_types.items():
        where = placed.get(name)
        info = {"layer_type": layer_type, "exec_type": "undef", "real_time": 0, "cpu_time": 0,
                "status": "NOT_RUN", "execution_index": -1}
        if where is None:
            info["status"] = "NOT_RUN" if layer_type == "Input" else "OPTIMIZED_OUT"
        elif where["device"] == ACCELERATOR:
            timed = layer_times.get(name)
            if timed is None:
                info.update(status="OPTIMIZED_OUT", exec_type=f"fused into an {ACCELERATOR} layer")
            else:
                info.update(status="EXECUTED" if ran else "NOT_RUN", exec_type=f"{ACCELERATOR}:{timed[0]}",
                            real_time=int(round(timed[1])), execution_index=order)
                order += 1
        else:
            measured = cpu.get(name)
            if measured is None:
                info.update(status="OPTIMIZED_OUT" if ran else "NOT_RUN", exec_type=f"{HOST}:{where['exec']}")
            else:
                micros = int(round(measured[1]))
                info.update(status="EXECUTED", exec_type=f"{HOST}:{measured[0]}", real_time=micros,
                            cpu_time=micros, execution_index=order)
                order += 1
        counts[name] = info
    return counts


def write_dot(name: str, layers: Mapping[str, tuple[str, Sequence[str]]], placed: Mapping[str, dict],
              folder: Path) -> None:
    """hetero_affinity_<name>.dot (each layer coloured by device) and
    hetero_subgraphs_<name>.dot (each segment a cluster of its layers),
    each written atomically, ``name`` made safe by :func:`file_stem`;
    ``layers``: layer -> (type, parents), in network order."""
    ids = {layer: f"n{index}" for index, layer in enumerate(dict.fromkeys([*layers, *placed]))}
    stem = file_stem(name)
    write_atomic(folder / f"hetero_affinity_{stem}.dot", _affinity_dot(name, layers, placed, ids))
    write_atomic(folder / f"hetero_subgraphs_{stem}.dot", _subgraphs_dot(name, layers, placed, ids))


def _affinity_dot(name: str, layers: Mapping[str, tuple[str, Sequence[str]]], placed: Mapping[str, dict],
                  ids: Mapping[str, str]) -> str:
    """Every layer, labelled with its name, type and device and coloured by
    device; nodes are ``ids``, names only in labels (runtime.dot.quote)."""
    lines = [f"digraph {quote(name)} {{", "  node [style=filled];"]
    for layer, (layer_type, _) in layers.items():
        device = placed.get(layer, {}).get("device", "")
        label = quote("\n".join((layer, layer_type, device or "folded")))
        lines.append(f'  {ids[layer]} [label={label}, fillcolor="{COLOURS.get(device, "white")}"];')
    lines += [f"  {ids[parent]} -> {ids[layer]};" for layer, (_, parents) in layers.items() for parent in parents]
    return "\n".join(lines + ["}"]) + "\n"


def _subgraphs_dot(name: str, layers: Mapping[str, tuple[str, Sequence[str]]], placed: Mapping[str, dict],
                   ids: Mapping[str, str]) -> str:
    """Each compiled segment a cluster of the layers it runs."""
    lines = [f"digraph {quote(name + '_subgraphs')} {{", "  node [style=filled];"]
    segments: dict[int, list[str]] = {}
    for layer, where in placed.items():
        segments.setdefault(where["segment"], []).append(layer)
    for index, names in sorted(segments.items()):
        device = placed[names[0]]["device"]
        colour = COLOURS[device]
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f'    label="segment {index}: {device}"; color="{colour}";')
        lines += [f'    {ids[n]} [label={quote(n)}, fillcolor="{colour}"];' for n in names]
        lines.append("  }")
    lines += [f"  {ids[parent]} -> {ids[layer]};" for layer, (_, parents) in layers.items() for parent in parents
              if parent in placed and layer in placed]
    return "\n".join(lines + ["}"]) + "\n"


def file_stem(name: str) -> str:
    """``name`` as part of a file name: letters, digits, '.', '_' and '-'
    only, at most MAX_STEM of them; a name that had to change gets a short
    hash of itself, so two different names never share a file."""
    safe = UNSAFE.sub("_", name)[:MAX_STEM]
    if safe == name and name:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{safe}_{digest}"
