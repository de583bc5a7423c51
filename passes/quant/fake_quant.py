"""Simulated quantization (fake-quant): a float graph that rounds every
encoded tensor onto its grid and computes everything else in float.

This is what AIMET's QuantSim and Exynos AI Studio's simulator run: each
activation named in the parameters is followed by a QuantizeLinear /
DequantizeLinear pair (the CPU kernels of those ops, so the rounding is the
one of docs/quantization.md: round half to even, saturation to the storage
range), each encoded weight is replaced by its quantize-dequantize, and the
arithmetic between them stays float32. Tessera's integer path
(passes/quant/quantize.py) computes the same model in integers; the two
differ by the integer path's rounding of biases and of requantisation
multipliers, and by what it does not store (a convolution's output before
its fused clamp activation is never rounded, so it should not be encoded;
before a fused table it is: the table reads its codes, and the encodings
export carries that grid).

A fake-quantized tensor keeps its name: the float value the graph computed
before rounding is renamed ``<name>_float``, and every reader (graph
outputs included) reads the rounded one. A graph input keeps its name too
and stays as fed; its rounded copy is ``<name>_fake_quant``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ir.graph import Graph, Value, clone
from ir.registry import with_defaults
from ir.types import QuantParams
from passes.infra import PassError
from runtime.kernels import run_kernel
from runtime.qscheme import WEIGHT_RANGE

LINEAR_OPS = ("Conv", "Gemm", "ConvTranspose")
"""Ops whose bias a bias correction (accumulator units per output channel) adjusts."""


def fake_quantize_array(x: np.ndarray, params: QuantParams, *, weight: bool = False,
                        rounding: np.ndarray | None = None) -> np.ndarray:
    """``x`` rounded onto the grid ``params`` and back to float32, through the
    QuantizeLinear and DequantizeLinear kernels. A symmetric ``weight`` grid
    leaves its most negative code unused, as the integer path does;
    ``rounding`` moves a weight's codes off the nearest ones, as weight
    rounding chose them (passes/quant/weight_rounding.py)."""
    codes = quantize_on(x, params)
    if weight and not any(params.zero):
        moved = codes.astype(np.int64) + (0 if rounding is None else np.asarray(rounding, np.int64).reshape(x.shape))
        codes = np.clip(moved, *WEIGHT_RANGE[np.dtype(params.dtype)]).astype(params.dtype)
    return dequantize(codes, params)


def quantize_on(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """The codes of ``x`` on the grid ``params`` (per tensor, or per channel
    on its axis), by the QuantizeLinear kernel."""
    x = np.asarray(x, np.float32)
    scale, zero, attrs = _kernel_grid(params, x.shape)
    return run_kernel("QuantizeLinear", [x, scale, zero], with_defaults("QuantizeLinear", attrs))[0]


def dequantize(codes: np.ndarray, params: QuantParams) -> np.ndarray:
    """Codes on the grid ``params`` as float32 reals, by the DequantizeLinear
    kernel (what a segment's exit computes)."""
    scale, zero, attrs = _kernel_grid(params, codes.shape)
    return run_kernel("DequantizeLinear", [codes, scale, zero.astype(codes.dtype)],
                      with_defaults("DequantizeLinear", attrs))[0]


def _kernel_grid(params: QuantParams, shape) -> tuple[np.ndarray, np.ndarray, dict]:
    """The scale and zero-point operands and attributes of the (De)QuantizeLinear kernels for ``params``."""
    if params.per_channel and (params.axis >= len(shape) or shape[params.axis] != len(params.scale)):
        raise PassError(f"a grid of {len(params.scale)} channels on axis {params.axis} does not fit a tensor "
                        f"of shape {list(shape)}")
    attrs = {} if params.axis is None else {"axis": params.axis}
    scale = np.asarray(params.scale, np.float32).reshape(-1 if params.per_channel else ())
    zero = np.asarray(params.zero, params.dtype).reshape(-1 if params.per_channel else ())
    return scale, zero, attrs


def fake_quantize(graph: Graph, params: Mapping[str, QuantParams], *, weights: Sequence[str] = (),
                  bias_corrections: Mapping[str, Sequence[int]] | None = None,
                  weight_roundings: Mapping[str, np.ndarray] | None = None) -> Graph:
    """A copy of ``graph`` with every tensor named in ``params`` fake-quantized:
    constants (``weights`` lists them too, for the symmetric clamp) replaced by
    their rounded values, activations and graph inputs followed by a
    quantize-dequantize pair. ``bias_corrections`` (by weight name, as an
    encodings export of a bias-corrected model carries them) are added to the
    biases of the Conv / Gemm layers reading those weights, converted from
    accumulator units with the layer's input and weight scales. Names the
    graph does not have are ignored (:func:`unknown_tensors` lists them).
    ``weight_roundings`` (by weight name) move those weights' codes off the
    nearest ones, as weight rounding chose them."""
    result = clone(graph)
    roundings = dict(weight_roundings or {})
    weights = frozenset(weights)
    rounded_input = {}
    for name, grid in params.items():
        value = result.values.get(name)
        if value is None:
            continue
        if value.is_constant:
            value.const = read_only(_round_weight(value, grid, weight=name in weights, rounding=roundings.get(name)))
        else:
            rounded_input[name] = _insert_pair(result, value, grid)
    _correct_biases(result, params, rounded_input, dict(bias_corrections or {}))
    return result


def unknown_tensors(graph: Graph, names) -> list[str]:
    """The names, among ``names``, that are no tensor of ``graph``."""
    return sorted(set(names) - set(graph.values))


def _round_weight(value: Value, params: QuantParams, *, weight: bool, rounding) -> np.ndarray:
    """A weight rounded onto its grid. A per-channel grid is on the output
    channels: axis 1 of a ConvTranspose's [C_in, C_out/group, kh, kw] weight
    (encodings files put every per-channel weight grid on axis 0, Conv's and
    Gemm's); a grouped ConvTranspose's weight is rounded regrouped by output
    channel, as the integer path holds it (:func:`weights_by_output_channel`)."""
    transposed = [node for node, index in value.uses if node.op == "ConvTranspose" and index == 1]
    if not params.per_channel or not transposed:
        return fake_quantize_array(value.const, params, weight=weight, rounding=rounding)
    groups = {int(node.attrs.get("group", 1)) for node in transposed}
    if len(groups) != 1:
        raise PassError(f"weight {value.name!r}: read by ConvTransposes of different groups {sorted(groups)}, "
                        "whose output channels differ")
    group = groups.pop()
    if group == 1:
        return fake_quantize_array(value.const, QuantParams(params.scale, params.zero, params.dtype, axis=1),
                                   weight=weight, rounding=rounding)
    rounded = fake_quantize_array(weights_by_output_channel(value.const, group), params, weight=weight,
                                  rounding=rounding)
    return weights_by_output_channel(rounded, group)  # the regrouping is its own inverse


def weights_by_output_channel(weight: np.ndarray, group: int) -> np.ndarray:
    """ConvTranspose's weights [C][K/group][kh][kw] regrouped by output
    channel, [K][C/group][kh][kw] (not flipped): QConvTranspose's layout.
    Applied to that layout it gives the weights back (the same swap of the
    two per-group axes)."""
    channels, per_group = weight.shape[:2]
    grouped = weight.reshape(group, channels // group, per_group, *weight.shape[2:])
    return np.ascontiguousarray(grouped.transpose(0, 2, 1, *range(3, grouped.ndim))
                                .reshape(group * per_group, channels // group, *weight.shape[2:]))


def _insert_pair(graph: Graph, value: Value, params: QuantParams) -> str:
    """QuantizeLinear + DequantizeLinear after ``value``; every reader now
    reads the rounded value. Returns the name of the tensor holding it."""
    name = value.name
    is_input = value.producer is None
    if not is_input:
        graph.rename_value(value, graph.fresh_name(f"{name}_float"))
    index = 0 if is_input else graph.nodes.index(value.producer) + 1
    attrs = {} if params.axis is None else {"axis": params.axis}
    shape = (-1,) if params.per_channel else ()
    scale = graph.add_constant(np.asarray(params.scale, np.float32).reshape(shape), f"{name}_fq_scale")
    zero = graph.add_constant(np.asarray(params.zero, params.dtype).reshape(shape), f"{name}_fq_zero")
    readers = list(value.uses)
    outputs = list(graph.outputs)
    quantize = graph.add_node("QuantizeLinear", [value, scale, zero], with_defaults("QuantizeLinear", attrs),
                              name=graph.fresh_node_name(f"fake_quantize_{name}"), index=index,
                              output_names=[graph.fresh_name(f"{name}_fq_codes")])
    rounded = graph.fresh_name(f"{name}_fake_quant") if is_input else name
    dequantize = graph.add_node("DequantizeLinear", [quantize.outputs[0], scale, zero],
                                with_defaults("DequantizeLinear", attrs), index=index + 1,
                                name=graph.fresh_node_name(f"fake_dequantize_{name}"), output_names=[rounded])
    for node, position in readers:
        node.set_input(position, dequantize.outputs[0])
    graph.outputs = [dequantize.outputs[0] if v is value else v for v in outputs]
    return rounded


def _correct_biases(graph: Graph, params: Mapping[str, QuantParams], renamed: Mapping[str, str],
                    corrections: Mapping[str, Sequence[int]]) -> None:
    """bias += correction · s_x · s_w[k] for each corrected Conv / Gemm."""
    for node in list(graph.nodes):
        if node.op not in LINEAR_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        weight = node.inputs[1].name
        source = _rounded_source(node.inputs[0], renamed)
        if weight not in corrections or weight not in params or source not in params:
            continue
        scale = params[source].scale[0] * np.asarray(params[weight].scale, np.float64)
        delta = np.asarray(corrections[weight], np.float64) * scale
        channels = node.outputs[0].type.shape[1]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        base = np.zeros(channels, np.float64) if bias is None else bias.const.astype(np.float64)
        new = graph.add_constant((base + np.broadcast_to(delta, (channels,))).astype(np.float32),
                                 f"{weight}_corrected_bias")
        if bias is None:
            node.inputs.append(None)
        node.set_input(2, new)
    graph.remove_unused_values()


def _rounded_source(value: Value, renamed: Mapping[str, str]) -> str:
    """The encoded tensor name a (possibly rounded) value stands for."""
    for original, rounded in renamed.items():
        if rounded == value.name:
            return original
    return value.name


def read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
