"""Rewriting an accelerator segment into quantized macro ops.

Each unit (passes/quant/units.py) becomes one Q op (ir/ops/quantized.py) on
8- or 16-bit tensors, its integer parameters computed here from the
scheme's formulas (docs/quantization.md); layout ops keep their op on the
integer data. The segment's float inputs are quantized on entry and its
outputs dequantized on exit, so the segment's interface stays float32.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ir.graph import Graph, Node, Value, onnx_name
from ir.registry import with_defaults
from ir.types import QuantParams
from passes.infra import PassError
from passes.pointwise import evaluate, unit_function
from passes.quant.bias_correction import LinearLayer
from passes.quant.channel_grids import per_output_scales
from passes.quant.fake_quant import weights_by_output_channel
from passes.quant.params import Precision, activation_quant, weight_quant
from passes.quant.units import clip_limits, positive_scaling, prelu_slopes
from passes.rewrite import conv_1x1_attrs
from runtime.errors import KernelError
from runtime.qscheme import (
    ACTIVATION_RANGE,
    MAX_SHIFT,
    WEIGHT_RANGE,
    quantize,
    quantize_multiplier,
    quantize_multipliers,
    softmax_multiplier,
    softmax_step,
    softmax_table,
    table_codes,
)

CONV_ATTRS = ("kernel_shape", "strides", "pads", "dilations", "group")
"""The attributes that say which input patches a convolution reads (LinearLayer.conv holds them)."""
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "PRelu")
"""The activations a QConv or an affine folds in: its clamp or its negative side."""

ParamsOf = Callable[[Value], QuantParams]
PrecisionOf = Callable[[Node], Precision]


def linear_input(unit: Node) -> Value | None:
    """The float input of the QConv or QGemm that ``unit`` becomes, as
    SegmentQuantizer records it in LinearLayer.x (None for a unit that
    becomes none, or a transposed convolution, which bias correction
    leaves alone): calibration measures it for bias correction ahead of
    the rewrite."""
    kind = unit.annotations.get("unit")
    first = unit.attrs["body"].nodes[0] if unit.op == "Fused" else unit
    if kind == "conv" and first.op != "ConvTranspose":
        x = first.inputs[0]
    elif kind == "affine":
        x = _affine_input(first)
    else:
        return None
    if unit.op == "Fused":
        x = next((a for f, a in zip(unit.attrs["body"].inputs, unit.inputs) if f is x), x)
    return x


def _affine_input(node: Node) -> Value:
    """The tensor operand of an affine unit's first node."""
    return node.inputs[0] if not node.inputs[0].is_constant else node.inputs[1]


class SegmentQuantizer:
    """Builds the quantized body of one accelerator segment."""

    def __init__(self, body: Graph, params_of: ParamsOf, precision_of: PrecisionOf):
        self.old = body
        self.new = Graph(body.name)
        self.params_of = params_of
        self.precision_of = precision_of
        self.values: dict[int, Value] = {}
        self.outer: dict[int, Value] = {}
        """A Fused body's input -> the node input it stands for."""
        self.linear: list[LinearLayer] = []
        """The QConv and QGemm nodes built, for bias correction."""

    def build(self) -> Graph:
        self.tables = {n.annotations["table_of"]: n for n in self.old.nodes if "table_of" in n.annotations}
        for value in self.old.inputs:
            self._enter(value)
        for node in self.old.nodes:
            if "table_of" not in node.annotations:  # built with its convolution
                self._unit(node)
        self.new.outputs = [self._exit(v) for v in self.old.outputs]
        return self.new

    # -------------------------------------------------------- edges
    def _enter(self, value: Value) -> None:
        """A float segment input, quantized on entry."""
        new_input = self.new.add_input(value.name, value.type)
        if value.type.dtype != np.float32:
            self.values[id(value)] = new_input
            return
        params = self.params_of(value)
        scale = self.new.add_constant(np.float32(params.scale[0]), f"{value.name}_scale")
        zero = self.new.add_constant(np.array(params.zero[0], params.dtype), f"{value.name}_zero")
        node = self.new.add_node("QuantizeLinear", [new_input, scale, zero], with_defaults("QuantizeLinear", {}),
                                 name=f"{value.name}_quantize", output_names=[f"{value.name}_q"])
        self._set(value, node.outputs[0], params)

    def _exit(self, value: Value) -> Value:
        """A segment output, dequantized on exit (float ones pass through)."""
        q = self._q(value)
        if q.quant is None:
            return q
        params = q.quant
        scale = self.new.add_constant(np.float32(params.scale[0]), f"{value.name}_out_scale")
        zero = self.new.add_constant(np.array(params.zero[0], params.dtype), f"{value.name}_out_zero")
        node = self.new.add_node("DequantizeLinear", [q, scale, zero], with_defaults("DequantizeLinear", {}),
                                 name=f"{value.name}_dequantize", output_names=[value.name])
        return node.outputs[0]

    # -------------------------------------------------------- units
    def _unit(self, node: Node) -> None:
        kind = node.annotations.get("unit")
        members = node.attrs["body"].nodes if node.op == "Fused" else [node]
        if node.op == "Fused":  # the members read the body's inputs: bind them to the node's
            for formal, actual in zip(node.attrs["body"].inputs, node.inputs):
                self.outer[id(formal)] = actual
                if id(actual) in self.values:
                    self.values[id(formal)] = self.values[id(actual)]
        build = getattr(self, f"_unit_{kind}", None)
        if build is None:
            raise PassError(f"{node.op} node {node.name!r}: no quantized form for unit kind {kind!r}")
        build(node, members)

    def _unit_layout(self, node: Node, members: list[Node]) -> None:
        """Codes move unchanged; the output keeps the input's parameters."""
        inputs = [None if v is None else (v if v.is_constant else self._q(v)) for v in node.inputs]
        inputs = [self.new.add_constant(v.const, v.name) if v is not None and v.is_constant else v for v in inputs]
        if node.op == "Pad":
            inputs = self._pad_inputs(node, inputs)
        copy = self.new.add_node(node.op, inputs, dict(node.attrs), name=node.name,
                                 output_names=[f"{node.outputs[0].name}_q"])
        copy.annotations["source"] = [onnx_name(node.name)]
        self._set(node.outputs[0], copy.outputs[0], self._q(node.inputs[0]).quant)

    def _pad_inputs(self, node: Node, inputs: list) -> list:
        """A constant Pad pads codes with its value quantized on the input's
        grid (0, the default, is the zero point: grids hold 0 exactly)."""
        params = self._q(node.inputs[0]).quant
        given = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] is not None else None
        value = np.float32(0.0) if given is None else np.float32(given.const.reshape(-1)[0])
        code = quantize(value, params.scale[0], params.zero[0], params.dtype).reshape(())
        inputs = inputs + [None] * (3 - len(inputs))
        inputs[2] = self._const(np.asarray(code, params.dtype), f"{node.name}_pad_code", None)
        return inputs

    def _unit_conv(self, node: Node, members: list[Node]) -> None:
        anchor, rest = members[0], members[1:]
        bias = _bias_of(anchor) + sum((_channel_vector(n) for n in rest if _is_bias(n)), np.zeros(1))
        residual = next((n for n in rest if n.op in ("Add", "Sum") and not _is_bias(n)), None)
        activation = next((n for n in rest if n.op in ACTIVATIONS), None)
        r_value = None
        if residual is not None:
            inner = {anchor.outputs[0].name} | {n.outputs[0].name for n in rest if _is_bias(n)}
            r_value = next(v for v in residual.inputs if v.name not in inner)
        self._emit_matmul(node, anchor, anchor.inputs[1], bias, r_value, activation)

    def _unit_affine(self, node: Node, members: list[Node]) -> None:
        """A per-channel scale and shift (a BatchNorm's), or the identity
        before a per-channel PRelu, as a depthwise 1x1 conv."""
        scale, shift = np.ones(1), np.zeros(1)
        for member in members:
            if member.op in ACTIVATIONS:
                continue
            vector = _channel_vector(member)
            if member.op in ("Mul", "Div"):
                factor = vector if member.op == "Mul" else 1.0 / vector
                scale, shift = scale * factor, shift * factor
            else:
                shift = shift + (vector if member.op == "Add" else -vector)
        x = _affine_input(members[0])
        if x.type.rank != 4:
            raise PassError(f"{node.op} node {node.name!r}: a per-channel affine on a rank-{x.type.rank} "
                            "tensor has no accelerator form")
        channels = x.type.shape[1]
        weight = np.broadcast_to(scale, (channels,)).astype(np.float32).reshape(channels, 1, 1, 1)
        bias = np.broadcast_to(shift, (channels,))
        activation = next((n for n in members if n.op in ACTIVATIONS), None)
        self._emit_conv(node, x, (weight, None, f"{node.name}_scale"), bias, None, activation,
                        conv_1x1_attrs(channels), "QConv")

    def _emit_matmul(self, node: Node, anchor: Node, weight: Value, bias, residual, activation) -> None:
        weight = (weight.const, weight.quant, weight.name)
        if anchor.op == "Conv":
            attrs = {k: anchor.attrs[k] for k in CONV_ATTRS}
            self._emit_conv(node, anchor.inputs[0], weight, bias, residual, activation, attrs, "QConv")
        elif anchor.op == "ConvTranspose":
            attrs = {k: anchor.attrs[k] for k in (*CONV_ATTRS, "output_padding")}
            regrouped = weights_by_output_channel(weight[0], int(anchor.attrs["group"]))
            self._emit_conv(node, anchor.inputs[0], (regrouped, weight[1], weight[2]), bias, residual, activation,
                            attrs, "QConvTranspose")
        else:
            self._emit_conv(node, anchor.inputs[0], weight, bias, residual, activation, {}, "QGemm")

    def _emit_conv(self, node: Node, x: Value, weight, bias, residual, activation, attrs: dict, op: str) -> None:
        """A QConv, QConvTranspose or QGemm; when a "lut" unit is this
        unit's table, its function is applied in the epilogue and the node
        stands for the table unit's output."""
        table_unit = self.tables.get(node.name)
        stands_for = node if table_unit is None else table_unit
        precision = self.precision_of(node)
        qx, po = self._q(x), self.params_of(node.outputs[0])
        px = qx.quant
        channels = weight[0].shape[0]
        x_scales, y_scales = (per_output_scales(p, channels) for p in (px, po))
        bias = np.broadcast_to(np.asarray(bias, np.float64), (channels,))
        q_w, pw = _weights(weight[0], weight[1], precision, _scale_floor(x_scales, y_scales, bias, precision))
        acc_scale = x_scales * np.asarray(pw.scale, np.float64)
        q_b = np.rint(bias / acc_scale).astype(np.int64)
        if op != "QConvTranspose":  # its border outputs sum fewer taps: the device folds the zero point per phase
            q_b = q_b - px.zero[0] * q_w.reshape(channels, -1).astype(np.int64).sum(axis=1)
        try:
            mult, shift = quantize_multipliers(acc_scale / y_scales)
        except KernelError as exc:
            raise PassError(f"{node.op} node {node.name!r}: {exc} (given weight grid {pw})") from None
        lo, hi = _channel_clamp(node, activation, po)
        attrs = dict(attrs, x_zero=px.zero[0], mult=mult.tolist(), shift=shift.tolist(), out_zero=po.zero[0],
                     lo=lo, hi=hi, out_dtype=po.dtype.name, **_negative_side(activation, acc_scale / y_scales))
        out_params = po
        if table_unit is not None:
            out_params = self.params_of(table_unit.outputs[0])
            attrs.update(table=_function_table(table_unit, po, out_params).tolist(), out_dtype=out_params.dtype.name)
        inputs = [qx, self._const(q_w, f"{weight[2]}_q", pw),
                  self._const(_bias_array(q_b, precision), f"{node.name}_bias_q", None)]
        if residual is not None:
            qr = self._q(residual)
            attrs.update(res_zero=qr.quant.zero[0], **_pair("res", qr.quant.scale[0] / po.scale[0]))
            inputs.append(qr)
        self._node(op, inputs, attrs, stands_for, out_params, sources=[node] + ([] if table_unit is None
                                                                               else [table_unit]))
        self.new.nodes[-1].annotations["weight"] = weight[2]
        if table_unit is not None:  # the grid the clamp gives the table's codes on, for the encodings export
            self.new.nodes[-1].annotations["table_input"] = (node.outputs[0].name, po)
        if op == "QConvTranspose":  # no bias correction: it measures a convolution's mean error
            return
        conv = {k: v for k, v in attrs.items() if k in CONV_ATTRS} if op == "QConv" else None
        self.linear.append(LinearLayer(self.new.nodes[-1], self.outer.get(id(x), x), weight[0], conv))

    def _unit_add(self, node: Node, members: list[Node]) -> None:
        self._two_grids("QAdd", node, members)

    def _unit_sub(self, node: Node, members: list[Node]) -> None:
        self._two_grids("QSub", node, members)

    def _unit_max(self, node: Node, members: list[Node]) -> None:
        self._two_grids("QMax", node, members)

    def _unit_min(self, node: Node, members: list[Node]) -> None:
        self._two_grids("QMin", node, members)

    def _two_grids(self, op: str, node: Node, members: list[Node]) -> None:
        """QAdd, QSub, QMax, QMin: each operand rescaled to the output's grid."""
        first, activation = members[0], (members[1] if len(members) > 1 else None)
        qa, qb = (self._operand(v, node) for v in first.inputs)
        po = self.params_of(node.outputs[0])
        lo, hi = _clamp(activation, po)
        attrs = {"a_zero": qa.quant.zero[0], **_pair("a", qa.quant.scale[0] / po.scale[0]),
                 "b_zero": qb.quant.zero[0], **_pair("b", qb.quant.scale[0] / po.scale[0]),
                 "out_zero": po.zero[0], "lo": lo, "hi": hi, "out_dtype": po.dtype.name}
        self._node(op, [qa, qb], attrs, node, po)

    def _unit_mul(self, node: Node, members: list[Node]) -> None:
        qa, qb = (self._operand(v, node) for v in members[0].inputs)
        po = self.params_of(node.outputs[0])
        lo, hi = ACTIVATION_RANGE[po.dtype]
        attrs = {"a_zero": qa.quant.zero[0], "b_zero": qb.quant.zero[0],
                 **_pair("", qa.quant.scale[0] * qb.quant.scale[0] / po.scale[0]),
                 "out_zero": po.zero[0], "lo": lo, "hi": hi, "out_dtype": po.dtype.name}
        self._node("QMul", [qa, qb], attrs, node, po)

    def _unit_matmul(self, node: Node, members: list[Node]) -> None:
        """A MatMul of two tensors (and a positive scalar scaling after it,
        folded into its multiplier): QMatMul."""
        qa, qb = (self._q(v) for v in members[0].inputs)
        factor = float(np.prod([positive_scaling(m) for m in members[1:]]))
        po = self.params_of(node.outputs[0])
        lo, hi = ACTIVATION_RANGE[po.dtype]
        real = qa.quant.scale[0] * qb.quant.scale[0] * factor / po.scale[0]
        attrs = {"a_zero": qa.quant.zero[0], "b_zero": qb.quant.zero[0], **_pair("", real),
                 "out_zero": po.zero[0], "lo": lo, "hi": hi, "out_dtype": po.dtype.name}
        self._node("QMatMul", [qa, qb], attrs, node, po)

    def _unit_softmax(self, node: Node, members: list[Node]) -> None:
        """Softmax over the last axis: QSoftmax, its exp table on the
        input's step (docs/quantization.md)."""
        qx = self._q(node.inputs[0])
        po = self.params_of(node.outputs[0])
        step, in_mult, in_shift = softmax_step(qx.quant.scale[0], qx.quant.dtype)
        mult, shift = softmax_multiplier(po.scale[0])
        lo, hi = ACTIVATION_RANGE[po.dtype]
        attrs = {"table": softmax_table(step).tolist(), "in_mult": in_mult, "in_shift": in_shift, "mult": mult,
                 "shift": shift, "out_zero": po.zero[0], "lo": lo, "hi": hi, "out_dtype": po.dtype.name}
        self._node("QSoftmax", [qx], attrs, node, po)

    def _unit_lut(self, node: Node, members: list[Node]) -> None:
        """Any unary function (one op, or a chain such as SiLU's
        x * sigmoid(x)): the members' float kernels on the decoded codes give
        the table (one semantics): 256 entries on 8-bit codes, 513 on 16-bit
        codes (interpolated: runtime.qscheme.wide_lookup)."""
        qx = self._q(_tensor_operand(node.inputs))
        po = self.params_of(node.outputs[0])
        table = _function_table(node, qx.quant, po)
        self._node("QLut", [qx], {"table": table.tolist(), "out_dtype": po.dtype.name}, node, po)

    def _unit_avgpool(self, node: Node, members: list[Node]) -> None:
        qx = self._q(node.inputs[0])
        po = self.params_of(node.outputs[0])
        attrs = _pool_window(node)
        window = int(np.prod(attrs["kernel_shape"]))
        reals = [qx.quant.scale[0] / (po.scale[0] * count) for count in range(1, window + 1)]
        mults, shifts = quantize_multipliers(reals)
        lo, hi = ACTIVATION_RANGE[po.dtype]
        attrs.update(x_zero=qx.quant.zero[0], mults=mults.tolist(), shifts=shifts.tolist(), out_zero=po.zero[0],
                     lo=lo, hi=hi, out_dtype=po.dtype.name)
        self._node("QAvgPool", [qx], attrs, node, po)

    def _unit_concat(self, node: Node, members: list[Node]) -> None:
        inputs = [self._q(v) for v in node.inputs]
        po = self.params_of(node.outputs[0])
        pairs = [quantize_multiplier(q.quant.scale[0] / po.scale[0]) for q in inputs]
        lo, hi = ACTIVATION_RANGE[po.dtype]
        attrs = {"axis": node.attrs["axis"], "zeros": [q.quant.zero[0] for q in inputs],
                 "mults": [m for m, _ in pairs], "shifts": [n for _, n in pairs], "out_zero": po.zero[0],
                 "lo": lo, "hi": hi, "out_dtype": po.dtype.name}
        self._node("QConcat", inputs, attrs, node, po)

    # -------------------------------------------------------- helpers
    def _node(self, op: str, inputs, attrs: dict, old: Node, params: QuantParams,
              sources: list[Node] | None = None) -> None:
        """The Q node standing for unit ``old``'s output (its ONNX sources:
        those of the ``sources`` units, ``old`` alone by default)."""
        types = [v.type for v in inputs]
        node = self.new.add_node(op, inputs, with_defaults(op, attrs, old.name, types), name=old.name,
                                 output_names=[f"{old.outputs[0].name}_q"])
        members = [m for unit in (sources or [old]) for m in (unit.attrs["body"].nodes if unit.op == "Fused"
                                                             else [unit])]
        node.annotations["source"] = list(dict.fromkeys(onnx_name(m.name) for m in members))
        self._set(old.outputs[0], node.outputs[0], params)

    def _const(self, array: np.ndarray, name: str, params: QuantParams | None) -> Value:
        value = self.new.add_constant(array, name)
        value.quant = params
        return value

    def _set(self, old: Value, new: Value, params: QuantParams) -> None:
        """``new`` (codes on ``params``) stands for the float ``old``; its
        producer records the float tensor's name (``annotations["tensor"]``),
        which the layer-wise comparison and encodings export key on."""
        new.quant = params
        new.producer.annotations["tensor"] = old.name
        self.values[id(old)] = new

    def _operand(self, value: Value, unit: Node) -> Value:
        """An operand of an element-wise unit: its codes, or a constant
        quantized on its own per-tensor grid (from its range, at the unit's
        precision)."""
        if not value.is_constant:
            return self._q(value)
        array = np.asarray(value.const, np.float32)
        params = activation_quant(float(array.min()), float(array.max()), self.precision_of(unit))
        codes = quantize(array, params.scale[0], params.zero[0], params.dtype)
        return self._const(codes, f"{value.name}_q", params)

    def _q(self, value: Value) -> Value:
        try:
            return self.values[id(value)]
        except KeyError:
            raise PassError(f"quantizing: %{value.name} is used before it is quantized") from None


def _scale_floor(x_scales: np.ndarray, y_scales: np.ndarray, bias: np.ndarray, precision: Precision) -> np.ndarray:
    """The smallest weight scale per output channel that keeps the layer's
    integers in range: the requantisation factor s_x s_w / s_y at least
    2^-30 (a shift of at most 61), and the bias b / (s_x s_w) within half the
    accumulator's range. A channel with (nearly) zero weights, a dead
    channel of a trained network, would otherwise get a degenerate scale; on
    the floor its weights round to the few codes they are worth, which below
    the floor add less than half an output step."""
    bits = np.iinfo(precision.accumulator).bits - 2
    return np.maximum(y_scales * 2.0 ** -30 / x_scales, np.abs(bias) / (2.0 ** bits * x_scales))


def _weights(array: np.ndarray, given: QuantParams | None, precision: Precision,
             floor: np.ndarray | None = None) -> tuple[np.ndarray, QuantParams]:
    """Integer weights on their given grid (an encodings file, a pre-quantized
    model) or on the per-channel grid of the scheme (scales at least ``floor``)."""
    if given is None:
        return weight_quant(np.asarray(array, np.float32), precision, floor=floor)
    if any(given.zero) or given.axis not in (None, 0) or len(given.scale) not in (1, array.shape[0]):
        raise PassError(f"weight grid {given} does not fit weights {list(array.shape)}: Tessera's weights are "
                        "symmetric (zero point 0), per output channel (axis 0)")
    scales = np.broadcast_to(np.asarray(given.scale, np.float32), (array.shape[0],))
    zeros = np.zeros(array.shape[0], np.int64)
    params = QuantParams(scales, zeros, given.dtype, axis=0)
    low, high = WEIGHT_RANGE[np.dtype(given.dtype)]  # symmetric: the most negative code stays unused
    return np.clip(quantize(array, scales, zeros, given.dtype, axis=0), low, high).astype(given.dtype), params


def _bias_of(anchor: Node) -> np.ndarray:
    bias = anchor.inputs[2] if len(anchor.inputs) > 2 else None
    return np.zeros(1) if bias is None else bias.const.astype(np.float64)


def _is_bias(node: Node) -> bool:
    return node.op == "Add" and any(v.is_constant for v in node.inputs)


def _channel_vector(node: Node) -> np.ndarray:
    const = next(v.const for v in node.inputs if v.is_constant)
    return const.astype(np.float64).reshape(-1)


def _bias_array(folded: np.ndarray, precision: Precision) -> np.ndarray:
    info = np.iinfo(precision.accumulator)
    return np.clip(folded, info.min, info.max).astype(precision.accumulator)


def _channel_clamp(node: Node, activation: Node | None, po: QuantParams) -> tuple[int, int]:
    """The output clamp of a layer whose output grid may be per channel:
    the device has one clamp, so every channel's must be the same (a
    calibrated channel grid keeps within a Clip's bounds; a given one may not)."""
    clamps = {_clamp(activation, po, scale) for scale in po.scale}
    if len(clamps) > 1:
        raise PassError(f"{node.op} node {node.name!r}: its output grid per channel puts the "
                        f"{activation.op}'s bounds on different codes in different channels {sorted(clamps)[:3]}; "
                        "the device clamps every channel alike")
    return clamps.pop()


def _clamp(activation: Node | None, po: QuantParams, scale: float | None = None) -> tuple[int, int]:
    """The output clamp, with the activation folded in (on the grid's scale, or ``scale``)."""
    qmin, qmax = ACTIVATION_RANGE[po.dtype]
    if activation is None or activation.op in ("LeakyRelu", "PRelu"):
        return qmin, qmax
    if activation.op == "Relu":
        return max(qmin, po.zero[0]), qmax
    scale = po.scale[0] if scale is None else scale
    low, high = clip_limits(activation)
    lo = qmin if low is None else max(qmin, int(np.rint(low / scale)) + po.zero[0])
    hi = qmax if high is None else min(qmax, int(np.rint(high / scale)) + po.zero[0])
    return lo, hi


def _negative_side(activation: Node | None, reals: np.ndarray) -> dict:
    """The multipliers of negative accumulators: LeakyRelu's alpha, or a
    PRelu's non-negative slope per channel, times the requantisation. A
    slope too small for a shift of 62 (0 included) is the smallest
    multiplier, which rounds every int32 accumulator to 0."""
    if activation is None or activation.op not in ("LeakyRelu", "PRelu"):
        return {"neg_mult": [], "neg_shift": []}
    slope = activation.attrs["alpha"] if activation.op == "LeakyRelu" else prelu_slopes(activation)
    reals = np.broadcast_to(np.asarray(reals, np.float64) * slope, np.shape(reals))
    tiny = reals < 2.0 ** -MAX_SHIFT
    mult, shift = quantize_multipliers(np.where(tiny, 1.0, reals))
    mult, shift = np.where(tiny, 1 << 30, mult), np.where(tiny, MAX_SHIFT, shift)
    return {"neg_mult": mult.tolist(), "neg_shift": shift.tolist()}


def _function_table(unit: Node, grid_in: QuantParams, grid_out: QuantParams) -> np.ndarray:
    """The table of a "lut" unit: its nodes evaluated by their kernels on the
    values of ``grid_in`` at the table's input codes (every int8 code, or
    every 128th int16 code and one past the last: qscheme.table_codes),
    quantized on ``grid_out``."""
    members, source = unit_function(unit)
    codes = table_codes(grid_in.dtype)
    real = (np.float32(grid_in.scale[0]) * (codes - grid_in.zero[0]).astype(np.float32)).astype(np.float32)
    result = evaluate(members, source, real)
    return quantize(result, grid_out.scale[0], grid_out.zero[0], grid_out.dtype).astype(np.int64)


def _tensor_operand(values) -> Value:
    """The one non-constant value of a unit node's (or body's) inputs."""
    return next(v for v in values if v is not None and not v.is_constant)


def _pair(prefix: str, real: float) -> dict:
    m, n = quantize_multiplier(float(real))
    key = f"{prefix}_" if prefix else ""
    return {f"{key}mult": m, f"{key}shift": n}


def _pool_window(node: Node) -> dict:
    if node.op == "GlobalAveragePool":
        dims = list(node.inputs[0].type.shape[2:])
        return {"kernel_shape": dims, "strides": [1] * len(dims), "pads": [0] * 2 * len(dims), "ceil_mode": 0,
                "count_include_pad": 0}
    return {k: node.attrs[k] for k in ("kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad")}
