"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019),
driven by the activations the calibration inputs make, so that ranges of
channels that differ by orders of magnitude share one int8 grid better.

A convolution A whose output, through an activation f that commutes with a
positive per-channel scale, feeds only a convolution B:

    B(f(A(x)))  =  B'(f(A'(x)))    A' = A with output channel c (weights and
                                   bias) divided by s_c, B' = B with input
                                   channel c multiplied by s_c

Tessera's weights have one grid per output channel, but an activation has
one grid for the whole tensor: a channel whose range is far above the others
leaves them few codes. With ``a_c`` the range of channel c of f(A(x)) on
calibration inputs and ``r_c`` the range of B's weights reading it,
``s_c = sqrt(a_c / r_c)`` gives both the same relative range, sqrt(a_c r_c)
(the data-free version takes A's weight range for ``a_c``).

Activations: none, Relu and LeakyRelu commute with any s > 0 (exact). Clip
to [0, M] (ReLU6) commutes only while it does not clip: a channel that
reached M on the calibration inputs keeps s = 1, and the others take
s >= max / M so that they still cannot reach it (exact on inputs within the
calibrated range). B is a convolution of group 1 or a depthwise one (group =
channels); A of any group whose output channels map one to one.

Two passes, both off by default: :func:`equalize` (``quant.equalize``)
rescales every pair found, with the channel ranges measured on the first
calibration inputs (passes/quant/channel_stats.py) or, without calibration
data, from the weights (a Clip's pair is then left alone: its bound cannot
be kept exactly); :func:`absorb_bias` (``quant.absorb_bias``, after it when
both run) moves channel floors into the next layer's bias. Below them the
pure functions: :func:`find_pairs` on a graph, :func:`pair_scales` from the
ranges measured, :func:`apply_scales` rewrites the weights. The float
model's outputs are unchanged (to float rounding); the intermediate tensors
A feeds are rescaled.

Keeping a pair only when the error it alone causes at the outputs went down
(measured as the diagnosis measures a layer's) was tried and predicted the
joint result badly (bench_quant --equalize: vgg19 -1.24 dB where all pairs
give +1.09); docs/quantization.md has the figures."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import Graph, Node, Value
from passes.fold_batchnorm import set_weights
from passes.infra import PassContext, graph_pass, register_option
from passes.quant.channel_stats import ChannelStats, channel_statistics, statistics_feeds
from passes.quant.report import report_of
from passes.rewrite import const_input, single_consumer

register_option("quant.equalize", bool, False,
                "cross-layer equalization of the float graph before quantization (passes/quant/equalize.py)")
register_option("quant.absorb_bias", bool, False,
                "bias absorption: equalizable pairs hand their always-positive channel floors to the next bias")

HOMOGENEOUS = ("Relu", "LeakyRelu")
"""Activations that commute with a positive scale."""
ABSORB_MARGIN = 0.5
"""Bias absorption keeps this fraction of a channel's calibrated spread below its floor."""
SCALE_LIMITS = (1e-3, 1e3)
"""Scales are kept within these (a dead channel does not send its partner to 0)."""


@graph_pass(opt_level=0)
def equalize(graph: Graph, ctx: PassContext) -> Graph:
    """Cross-layer equalization of every pair found (``quant.equalize``)."""
    if not ctx.option("quant.equalize"):
        return graph
    pairs = find_pairs(graph)
    data = ctx.option("quant.calibration_data")
    if not pairs:
        chosen = []
    elif data is None:
        chosen = [(p, pair_scales(p, producer_ranges(p))) for p in pairs if p.clip is None]
    else:
        stats = _pair_statistics(graph, pairs, data, ctx)
        chosen = [(p, pair_scales(p, stats[p.tensor.name].peak, stats[p.a.outputs[0].name].high)) for p in pairs]
    for pair, scales in chosen:
        apply_scales(graph, pair, scales)
    report_of(ctx).equalized = len(chosen)
    return graph


@graph_pass(opt_level=0)
def absorb_bias(graph: Graph, ctx: PassContext) -> Graph:
    """Bias absorption (``quant.absorb_bias``; needs calibration data): the
    pairs whose A output always stays above 0 in some channel hand that
    floor to B's bias."""
    if not ctx.option("quant.absorb_bias"):
        return graph
    pairs = find_pairs(graph)
    data = ctx.option("quant.calibration_data")
    changed = 0
    if pairs and data is not None:
        stats = _pair_statistics(graph, pairs, data, ctx)
        for pair in pairs:
            produced = stats[pair.a.outputs[0].name]
            shift = absorbable_shift(pair, produced.low, produced.high)
            if shift.any():
                absorb_shift(graph, pair, shift)
                changed += 1
    report_of(ctx).absorbed = changed
    return graph


def _pair_statistics(graph: Graph, pairs: list[Pair], data, ctx: PassContext) -> dict[str, ChannelStats]:
    """The statistics of the tensors the pairs touch, on the first calibration inputs."""
    names = {v.name for p in pairs for v in (p.tensor, p.a.outputs[0])}
    return channel_statistics(graph, names, statistics_feeds(graph, ctx), ctx, "cross-layer equalization")


@dataclass
class Pair:
    """A (producer A, activation or None, consumer B) chain; ``tensor`` is
    the value B reads (whose channel ranges set the scales); ``clip`` the
    upper bound of a Clip(0, M) activation, else None."""

    a: Node
    activation: Node | None
    b: Node
    tensor: Value
    clip: float | None = None


def find_pairs(graph: Graph) -> list[Pair]:
    """The chains of the top-level graph that can be equalized."""
    pairs = []
    for a in graph.nodes:
        if a.op != "Conv" or const_input(a, 1) is None or (len(a.inputs) > 2 and a.inputs[2] is not None
                                                            and const_input(a, 2) is None):
            continue
        out = a.outputs[0]
        nxt = single_consumer(graph, out)
        activation, clip = None, None
        if nxt is not None and nxt.op in (*HOMOGENEOUS, "Clip"):
            if nxt.op == "Clip":
                clip = _clip_bound(nxt)
                if clip is None:
                    continue
            activation, out = nxt, nxt.outputs[0]
            nxt = single_consumer(graph, out)
        if nxt is None or nxt.op != "Conv" or nxt.inputs[0] is not out or const_input(nxt, 1) is None:
            continue
        channels = const_input(a, 1).shape[0]
        weight_b = const_input(nxt, 1)
        group = nxt.attrs.get("group", 1)
        if not (group == 1 and weight_b.shape[1] == channels) and not (group == channels and weight_b.shape[1] == 1
                                                                      and weight_b.shape[0] == channels):
            continue
        pairs.append(Pair(a, activation, nxt, out, clip))
    return pairs


def _clip_bound(node: Node) -> float | None:
    """M of a Clip(0, M) (inputs or, before opset 11, attributes), else None."""
    low = const_input(node, 1) if len(node.inputs) > 1 and node.inputs[1] is not None else node.attrs.get("min")
    high = const_input(node, 2) if len(node.inputs) > 2 and node.inputs[2] is not None else node.attrs.get("max")
    if low is None or high is None or float(np.asarray(low)) != 0.0 or not float(np.asarray(high)) > 0:
        return None
    return float(np.asarray(high))


def consumer_ranges(pair: Pair) -> np.ndarray:
    """max |w| of B's weights over each input channel (of A's output)."""
    weight = np.abs(const_input(pair.b, 1).astype(np.float64))
    if pair.b.attrs.get("group", 1) == 1:
        return weight.reshape(weight.shape[0], weight.shape[1], -1).max(axis=(0, 2))
    return weight.reshape(weight.shape[0], -1).max(axis=1)


def producer_ranges(pair: Pair) -> np.ndarray:
    """The data-free stand-in for the activation ranges: max |w| of A's rows."""
    weight = np.abs(const_input(pair.a, 1).astype(np.float64))
    return weight.reshape(weight.shape[0], -1).max(axis=1)


def pair_scales(pair: Pair, activation_ranges: np.ndarray, pre_activation_max: np.ndarray | None = None) -> np.ndarray:
    """s_c = sqrt(a_c / r_c) within :data:`SCALE_LIMITS`; for a Clip(0, M)
    activation, 1 where the channel reached M (``pre_activation_max`` on
    the calibration inputs) and at least max / M elsewhere."""
    a = np.asarray(activation_ranges, np.float64)
    r = consumer_ranges(pair)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((a > 0) & (r > 0), np.sqrt(a / r), 1.0)
    if not np.isfinite(s).all():
        s = np.where(np.isfinite(s), s, 1.0)
    # only the relative ranges matter: centre the scales so the tensor's overall range stays put
    positive = s[(a > 0) & (r > 0)]
    if positive.size:
        s = s / np.exp(np.mean(np.log(positive)))
    s = np.clip(s, *SCALE_LIMITS)
    if pair.clip is not None:
        peak = np.asarray(pre_activation_max if pre_activation_max is not None else np.full_like(s, np.inf),
                          np.float64)
        s = np.where(peak >= pair.clip, 1.0, np.maximum(s, peak / pair.clip))
    return s


def apply_scales(graph: Graph, pair: Pair, scales: np.ndarray) -> None:
    """A's output channels divided by ``scales``, B's input channels multiplied."""
    s = np.asarray(scales, np.float64)
    weight_a = const_input(pair.a, 1)
    bias_given = len(pair.a.inputs) > 2 and pair.a.inputs[2] is not None
    bias_a = const_input(pair.a, 2) if bias_given else np.zeros(weight_a.shape[0], weight_a.dtype)
    shape = (-1, *(1,) * (weight_a.ndim - 1))
    set_weights(graph, pair.a, (weight_a / s.reshape(shape)).astype(weight_a.dtype),
                (bias_a / s).astype(bias_a.dtype))
    weight_b = const_input(pair.b, 1)
    if pair.b.attrs.get("group", 1) == 1:
        scaled = weight_b * s.reshape(1, -1, *(1,) * (weight_b.ndim - 2))
    else:
        scaled = weight_b * s.reshape(shape)
    bias_b = const_input(pair.b, 2) if len(pair.b.inputs) > 2 and pair.b.inputs[2] is not None else None
    set_weights(graph, pair.b, scaled.astype(weight_b.dtype),
                bias_b if bias_b is not None else np.zeros(weight_b.shape[0], weight_b.dtype))


def absorbable_shift(pair: Pair, pre_min: np.ndarray, pre_max: np.ndarray) -> np.ndarray:
    """Bias absorption (Nagel et al.'s second step): per channel, the amount
    ``c >= 0`` to take out of A's output and put into B's bias: the smallest
    value A's output reached, less :data:`ABSORB_MARGIN` of its spread (the
    calibration inputs do not show every input's minimum), when the
    activation is Relu or Clip(0, M) and never clipped it from above (then
    f(x - c) = f(x) - c for every x above c); 0 elsewhere, for B with padding
    (a constant through zero padding is not constant at the border), and for
    other activations."""
    low, high = np.asarray(pre_min, np.float64), np.asarray(pre_max, np.float64)
    shift = np.maximum(low - ABSORB_MARGIN * (high - low), 0.0)
    if pair.activation is None or pair.activation.op not in ("Relu", "Clip") or any(pair.b.attrs.get("pads", [0])):
        return np.zeros_like(shift)
    if pair.clip is not None:
        shift = np.where(np.asarray(pre_max, np.float64) < pair.clip, shift, 0.0)
    return shift


def absorb_shift(graph: Graph, pair: Pair, shift: np.ndarray) -> None:
    """A's bias lowered by ``shift`` per channel, B's bias raised by what B
    makes of it: sum over B's taps of its weights times the shift."""
    c = np.asarray(shift, np.float64)
    weight_a = const_input(pair.a, 1)
    bias_a = const_input(pair.a, 2) if len(pair.a.inputs) > 2 and pair.a.inputs[2] is not None else \
        np.zeros(weight_a.shape[0], weight_a.dtype)
    set_weights(graph, pair.a, weight_a, (bias_a - c).astype(bias_a.dtype))
    weight_b = const_input(pair.b, 1)
    taps = weight_b.astype(np.float64).reshape(weight_b.shape[0], weight_b.shape[1], -1).sum(axis=2)
    added = taps @ c if pair.b.attrs.get("group", 1) == 1 else taps[:, 0] * c
    bias_b = const_input(pair.b, 2) if len(pair.b.inputs) > 2 and pair.b.inputs[2] is not None else \
        np.zeros(weight_b.shape[0], weight_b.dtype)
    set_weights(graph, pair.b, weight_b, (bias_b + added).astype(bias_b.dtype))
