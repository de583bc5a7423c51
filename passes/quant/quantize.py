"""The quantize pass: the accelerator segments of a partitioned graph become
integer macro ops (docs/quantization.md); CPU segments stay float32.

1. Each accelerator segment's nodes are regrouped into device units.
2. Every tensor the units store (and every float tensor entering a
   segment) gets a grid: given (pre-quantized models, encodings files),
   inherited (layout ops), or calibrated by running the float graph on
   calibration data through the CPU executor.
   A tensor a convolution writes and only depthwise convolutions read gets
   a grid per channel (channel_grids.py).
3. Each segment body is rebuilt from Q ops.
4. Each calibrated QConv's weights are rounded by the error they leave in
   its output on the calibration data (weight_rounding.py), and each
   calibrated QConv / QGemm's bias absorbs the mean error of its output
   (bias_correction.py).

Before 1, each Split becomes one Slice per output (split_slices.py), and
per-channel affines after channel concatenations are moved onto the
concatenated pieces (concat_affine.py), when no parameters are given.
"""
from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

from ir.graph import Graph, Node, Value
from ir.types import QuantParams
from passes.infra import PassContext, PassError, graph_pass, register_option
from passes.instruments import timed
from passes.partition import accelerator_segments
from passes.quant.bias_correction import InputMeans, add_to_bias, correct_biases
from passes.quant.calibrate import Calibration
from passes.quant.calibration_data import CalibrationWarning, context_batches
from passes.quant.channel_grids import channel_grid, clip_bounds, eligible
from passes.quant.concat_affine import push_affines_through_concat
from passes.quant.params import Precision, activation_quant, layer_precision, parse_precision
from passes.quant.rewrite import SegmentQuantizer, linear_input
from passes.quant.split_slices import split_to_slices
from passes.quant.units import build_units, flatten_fused
from passes.quant.weight_rounding import PatchMoments, apply_given, geometry, round_weights, unit_geometry

register_option("quant.calibrator", str, "mse",
                "default range calibrator: 'mse' (the default: the range minimising the quantization error), "
                "'minmax', 'percentile' (99.99; 'percentile:99.9' to change) or 'entropy'")
register_option("quant.tensor_calibrators", dict, {}, "calibrator per tensor name, overriding quant.calibrator")
register_option("quant.calibration_data", object, None,
                "calibration inputs: a list of arrays (or of feed dicts), a folder of .npy files or of images; "
                "None means synthetic data (with a warning)")
register_option("quant.calibration_count", int, 32, "how many calibration inputs to use at most")
register_option("quant.preprocess", object, None, "preprocessing of calibration images (a PreprocessSpec)")
register_option("quant.bias_correction", bool, True,
                "add each calibrated QConv/QGemm's mean output error on the calibration data to its bias")
register_option("quant.bias_corrections", dict, {},
                "bias corrections given by weight name (accumulator units per output channel), as an encodings "
                "export of a bias-corrected model carries them")
register_option("quant.given", dict, {},
                "quantization parameters given by tensor name (an encodings file, a pre-quantized model): "
                "those tensors are not calibrated")


@graph_pass(opt_level=0, required=("partition",))
def quantize(graph: Graph, ctx: PassContext) -> Graph:
    """Quantize every accelerator segment of a partitioned graph."""
    segments = accelerator_segments(graph)
    if not segments:
        return graph
    given = _open_up(graph, segments, ctx)
    units = {id(s): build_units(s.attrs["body"]) for s in segments}
    precision = _precisions(segments, units, ctx)
    stored = _stored_values(segments, units)
    channels = [v for s in segments for v in eligible(s.attrs["body"], units[id(s)])]
    _check_given_channels(stored, channels, given)
    to_calibrate = [v for v in stored if v.name not in given]
    if given and to_calibrate:
        warnings.warn(f"{len(to_calibrate)} stored tensors have no given quantization parameters and are "
                      f"calibrated: {[v.name for v in to_calibrate][:8]}", CalibrationWarning, stacklevel=2)
    grids = _Grids(given, {}, precision, ctx)
    if ctx.option("quant.channel_grids"):
        grids.channels = {v for v in channels if not precision.get(id(v), grids.default).radix}
    lowered, measured, moments, batches = None, {}, {}, None
    if to_calibrate:
        with timed("quantize: lowering"):
            lowered = ctx.lowering("calibration")(graph)  # the float graph, before the rewrite
        measured, moments, batches = _calibrate(graph, lowered, to_calibrate, units, grids, ctx)
    linear = []
    with timed("quantize: rewrite"):
        for segment in segments:
            quantizer = SegmentQuantizer(segment.attrs["body"], grids.of, grids.precision_of_node)
            segment.attrs["body"] = quantizer.build()
            linear += quantizer.linear
    if grids.ranges and not given and ctx.option("quant.weight_rounding"):  # before bias correction: it measures
        with timed("weight rounding"):                                        # the mean error of these codes
            round_weights(lowered, linear, context_batches(graph, ctx) if batches is None else batches,
                          ctx.option("quant.weight_rounding_depth"), moments)
    apply_given(linear, ctx.option("quant.weight_roundings"))
    if grids.ranges and not given and ctx.option("quant.bias_correction"):  # given parameters are used as they are
        with timed("bias correction"):
            correct_biases(lowered, linear, context_batches(graph, ctx) if batches is None else batches, measured)
    _given_corrections(linear, ctx.option("quant.bias_corrections"))
    return graph


def _check_given_channels(stored: list[Value], channels: list[Value], given: Mapping[str, QuantParams]) -> None:
    """A given grid per channel (an encodings file's) is only for a tensor
    that can have one, on its channel axis, one scale per channel, one zero point."""
    can = {id(v) for v in channels}
    for value in stored:
        grid = given.get(value.name)
        if grid is None or not grid.per_channel:
            continue
        where = f"the grid per channel given for %{value.name}"
        if id(value) not in can:
            raise PassError(f"{where}: only a tensor a convolution writes and only depthwise convolutions read "
                            "(inside one accelerator segment) can have one")
        if grid.axis != 1 or len(grid.scale) != value.type.shape[1] or len(set(grid.zero)) != 1:
            raise PassError(f"{where}: it must have one scale for each of the {value.type.shape[1]} channels on "
                            f"axis 1 and one zero point, got {len(grid.scale)} on axis {grid.axis} with "
                            f"{len(set(grid.zero))} zero point(s)")


def _given_corrections(layers: list, corrections: Mapping[str, list]) -> None:
    """Bias corrections an encodings file carries, by weight name."""
    for layer in layers:
        weight = layer.node.annotations.get("weight")
        if weight in corrections:
            add_to_bias(layer.node, corrections[weight])


def _open_up(graph: Graph, segments: list[Node], ctx: PassContext) -> dict[str, QuantParams]:
    """Flatten the segments' Fused groups, make each Split Slices (one
    output per unit) and, unless parameters are given
    (they describe the model's own tensors), move per-channel affines
    through concatenations; returns the given parameters."""
    for segment in segments:
        flatten_fused(segment.attrs["body"])
        split_to_slices(segment.attrs["body"])
    given = {**_pre_quantized(graph), **ctx.option("quant.given")}
    if not given:
        for segment in segments:
            push_affines_through_concat(segment.attrs["body"])
    return given


def _precisions(segments: list[Node], units: dict, ctx: PassContext) -> dict[int, Precision]:
    """The precision of each unit's output value. A lookup table's output
    is at least as wide as the codes it reads (a table read by 16-bit codes
    interpolates between 513 entries, runtime.qscheme.wide_lookup, and its
    16-bit result keeps what the wide input bought): a convolution with a
    table (SiLU, HardSwish) moved to 16 bits keeps 16 bits through its
    function. Radix stays radix."""
    result = {}
    default = parse_precision(ctx.option("quant.mode"), "quant.mode")
    for segment in segments:
        for unit in units[id(segment)]:
            names = [m.name for m in (unit.attrs["body"].nodes if unit.op == "Fused" else [unit])]
            result[id(unit.outputs[0])] = layer_precision(names, ctx)
        for unit in units[id(segment)]:
            if unit.annotations.get("unit") == "lut":
                source = next(v for v in unit.inputs if v is not None and not v.is_constant)
                while source.producer is not None and source.producer.annotations.get("unit") == "layout":
                    source = source.producer.inputs[0]
                wide, own = result.get(id(source), default), result[id(unit.outputs[0])]
                if wide.dtype.itemsize > own.dtype.itemsize:
                    result[id(unit.outputs[0])] = Precision(wide.dtype, own.radix)
    return result


def _stored_values(segments: list[Node], units: dict) -> list[Value]:
    """Float tensors entering a segment and the outputs of units that
    compute new values (layout units inherit their input's grid)."""
    values = []
    for segment in segments:
        body = segment.attrs["body"]
        values += [v for v in body.inputs if v.type.dtype == np.float32]
        values += [u.outputs[0] for u in units[id(segment)] if u.annotations.get("unit") != "layout"]
    return values


def _pre_quantized(graph: Graph) -> dict[str, QuantParams]:
    """Grids a pre-quantized model carried on its values (value.quant)."""
    found = {}
    for segment in graph.nodes:
        body = segment.attrs.get("body")
        for value in ([] if body is None else body.values.values()):
            if value.quant is not None and not value.is_constant:
                found[value.name] = value.quant
    return found


def _calibrate(graph: Graph, lowered, values: list[Value], units: dict, grids: _Grids, ctx: PassContext):
    """Calibrate ``values`` (their ranges into ``grids``); when bias correction
    or weight rounding will run and the inputs fit, in lockstep, measuring
    the inputs of the layers they change in the same pass (on their grids,
    or their patch moments). Returns those measurements by slot and by
    (slot, geometry), and the batches read (None: read them anew)."""
    wide = [v for v in values if grids.precision.get(id(v), grids.default).dtype.itemsize > 1]
    calibration = Calibration(lowered, values, ctx.option("quant.tensor_calibrators"),
                              ctx.option("quant.calibrator"), grids.channels, wide)
    grids.ranges, grids.channel_ranges = calibration.ranges, calibration.channel_ranges
    measured: dict[str, InputMeans] = {}
    moments: dict[tuple, PatchMoments] = {}
    follow: dict[str, list] = {}
    names = lowered[1]
    for unit in [unit for segment_units in units.values() for unit in segment_units] if not grids.given else []:
        x = linear_input(unit)
        if x is None or x not in names:
            continue
        slot = names[x]
        if ctx.option("quant.bias_correction") and slot not in follow:
            follow[slot] = [_follower(x, slot, grids, measured)]
        shape = unit_geometry(unit, ctx.option("quant.weight_rounding_depth")) \
            if ctx.option("quant.weight_rounding") else None
        key = None if shape is None else (slot, geometry(*shape))
        if key is not None and key not in moments:
            moments[key] = PatchMoments(*shape)
            follow.setdefault(slot, []).append(moments[key].update_many)
    if follow and calibration.lockstep(ctx.option("quant.calibration_count"), follow):
        batches = list(context_batches(graph, ctx))
        calibration.run(batches, {slot: _each(fns) for slot, fns in follow.items()})
        return measured, moments, batches
    calibration.run(context_batches(graph, ctx))
    return measured, {}, None


def _each(followers: list):
    def follow(arrays: list) -> None:
        for fn in followers:
            fn(arrays)
    return follow


def _follower(x: Value, slot: str, grids: _Grids, measured: dict):
    """Sums of ``x`` and of ``x`` on the grid it will have (that of the value
    its layout ops copy codes from) into ``measured[slot]``; bias correction
    checks the grid against the rewrite's."""
    source = x
    while source.producer is not None and source.producer.annotations.get("unit") == "layout":
        source = source.producer.inputs[0]

    def follow(arrays: list) -> None:
        if source not in grids.ranges:
            return
        means = InputMeans(grids.of(source))
        means.update_many(arrays)
        measured[slot] = means
    return follow


class _Grids:
    """The grid of each stored value: given, else from its calibrated range."""

    def __init__(self, given: Mapping[str, QuantParams], ranges: Mapping[Value, tuple],
                 precision: Mapping[int, Precision], ctx: PassContext):
        self.given, self.ranges, self.precision = given, ranges, precision
        self.default = parse_precision(ctx.option("quant.mode"), "quant.mode")
        self.cache: dict[int, QuantParams] = {}
        self.channels: set[Value] = set()
        """Values to calibrate per channel (channel_grids.py)."""
        self.channel_ranges: Mapping[Value, tuple] = {}

    def of(self, value: Value) -> QuantParams:
        if id(value) not in self.cache:
            self.cache[id(value)] = self._choose(value)
        return self.cache[id(value)]

    def _choose(self, value: Value) -> QuantParams:
        if value.name in self.given:
            return self.given[value.name]
        if value not in self.ranges:
            raise PassError(f"%{value.name} has no calibrated range nor given quantization parameters")
        low, high = self.ranges[value]
        grid = activation_quant(low, high, self.precision.get(id(value), self.default))
        if value in self.channel_ranges:
            return channel_grid(grid, *self.channel_ranges[value], clip_bounds(value.producer))
        return grid

    def precision_of_node(self, node: Node) -> Precision:
        return self.precision.get(id(node.outputs[0]), self.default)

