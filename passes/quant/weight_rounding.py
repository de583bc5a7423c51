"""Weight rounding by output error: each QConv's integer weights chosen so
that its output on the calibration data moves the least, instead of each
weight rounded to its nearest code.

Rounding every weight to the nearest code minimises each weight's own
error, not the layer's: the errors of a channel's weights add up in its
output, and inputs that move together (neighbouring pixels of a page, a
stem's channels) add them up coherently. As in GPTQ (Frantar et al., 2022;
the closed-form successor of AdaRound's learned rounding), a channel's
weights are rounded one reduction position at a time, and the rounding
error of each is spread over the positions not yet rounded, weighted by the
inputs' second moments, which minimises

    E[ ((w - w_q) . (x - mean x))^2 ]

over the layer's input patches ``x`` (the float model's, on the calibration
data). The inputs' mean is left out on purpose: the mean error is what
bias correction (bias_correction.py, run next) removes. The grids do not
change (the per-channel scales are those of the nearest rounding), and the
device, the binary and the kernels do not see the difference: these are
other int8 codes on the same grids. The nearest rounding is kept for a
layer whose reduction is longer than ``quant.weight_rounding_depth`` (the
cost grows as its square and cube) or a single position.

Each rounded node records how its codes differ from the nearest ones
(``annotations["weight_rounding"]``): an encodings export carries them
(:func:`encode_rounding`), so that a re-import rebuilds the same codes.
"""
from __future__ import annotations

import base64
import functools
import zlib
from typing import Iterable, Mapping

import numpy as np
from threadpoolctl import ThreadpoolController

from ir.graph import Node
from ir.registry import with_defaults
from passes.infra import PassError, register_option
from passes.quant.fake_quant import read_only
from passes.quant.progress import progress
from passes.quant.rewrite import CONV_ATTRS
from runtime.executor import Executor
from runtime.jit import jit
from runtime.qscheme import WEIGHT_RANGE

register_option("quant.weight_rounding", bool, True,
                "round each calibrated QConv's weights to minimise its output error on the calibration data "
                "(GPTQ-style) instead of each weight to its nearest code")
register_option("quant.weight_rounding_depth", int, 576,
                "longest reduction (input channels per group x kernel positions) whose weights are rounded by "
                "output error; longer ones round to nearest (the cost grows as its square)")
register_option("quant.weight_roundings", dict, {},
                "weight codes given by weight name as differences from the nearest codes, as an encodings "
                "export carries them (encode_rounding)")

ROUNDING = "weight_rounding"
"""Node annotation: the codes' differences from the nearest codes (int array, the weight's shape)."""
DAMPING = 0.01
"""Added to the second moments' diagonal, as a fraction of its mean: positions the data never moves keep their
nearest code instead of absorbing the others' error without bound."""
PRODUCTS_PER_SAMPLE = 1 << 26
"""Multiply-adds the moments of one calibration input may cost a layer: a
layer with a short reduction (a stem, a depthwise layer: where rounding
matters most) sums every patch, a long one evenly spaced patches only."""
MIN_ROWS = 256
"""Patches at least taken from each calibration input (when it has that many)."""
BLOCK = 32
"""Positions rounded before the rest of a row takes their errors in one product."""


class PatchMoments:
    """Streaming sums of a QConv's input patches, per group: their count,
    sum and sum of outer products."""

    def __init__(self, conv: Mapping, weight_shape: tuple[int, ...]):
        attrs = with_defaults("Conv", dict(conv))
        self.group = int(attrs["group"])
        self.strides, self.dilations, self.pads = (tuple(attrs[k]) for k in ("strides", "dilations", "pads"))
        self.kernel = tuple(weight_shape[2:])
        self.depth = int(np.prod(weight_shape[1:]))
        self.count = 0
        self.sums = np.zeros((self.group, self.depth))
        self.products = np.zeros((self.group, self.depth, self.depth))

    def update(self, x: np.ndarray) -> None:
        patches = self.patches(np.asarray(x, np.float32))
        self.count += patches.shape[1]
        self.sums += patches.sum(axis=1, dtype=np.float64)
        self.products += np.matmul(patches.transpose(0, 2, 1), patches)

    def update_many(self, arrays) -> None:
        for x in arrays:
            self.update(x)

    def patches(self, x: np.ndarray) -> np.ndarray:
        """[group, rows, depth]: the patches of ``x`` [N, C, H, W] each output
        position reads, in the weights' (channel, row, column) order."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        top, left, bottom, right = self.pads
        padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        n, c, height, width = padded.shape
        oh, ow = (height - (kh - 1) * dh - 1) // sh + 1, (width - (kw - 1) * dw - 1) // sw + 1
        wanted = max(MIN_ROWS, PRODUCTS_PER_SAMPLE // (n * self.group * self.depth * self.depth))
        rows = np.linspace(0, oh * ow - 1, min(oh * ow, wanted)).astype(np.int64)
        # each picked output position's window, tap by tap, as flat offsets into its padded plane: one take
        # (indexing a sliding-window view by the rows' coordinates took 10x as long: 240 ms a sample for a
        # 96-channel depthwise layer at 112 x 112)
        taps = (np.arange(kh)[:, None] * dh * width + np.arange(kw)[None, :] * dw).reshape(-1)
        starts = (rows // ow) * sh * width + (rows % ow) * sw
        picked = np.take(padded.reshape(n, c, height * width), starts[:, None] + taps[None, :], axis=2)
        grouped = picked.reshape(n, self.group, c // self.group, len(rows), kh, kw)  # [n, c, rows, kh, kw]
        return np.ascontiguousarray(grouped.transpose(1, 0, 3, 2, 4, 5)).reshape(self.group, -1, self.depth)

    def covariance(self, g: int) -> np.ndarray:
        mean = self.sums[g] / self.count
        return self.products[g] / self.count - np.outer(mean, mean)


def rounded_codes(weight: np.ndarray, scales: np.ndarray, covariance: np.ndarray, high: int) -> np.ndarray:
    """Codes of ``weight`` [K, D] on the per-row ``scales`` within
    [-high, high], rounded position by position, the most varying input
    positions first (GPTQ's activation order), with each rounding error
    spread over the positions not yet rounded (GPTQ's update through the
    Cholesky factor of the inverse of the damped ``covariance`` [D, D])."""
    order = np.argsort(-np.diag(covariance), kind="stable")
    work = np.ascontiguousarray(np.asarray(weight)[:, order], np.float64)
    moments = covariance[np.ix_(order, order)]
    depth = work.shape[1]
    damped = moments + (DAMPING * max(float(np.mean(np.diag(moments))), 0.0) + 1e-12) * np.eye(depth)
    scale = np.asarray(scales, np.float64)
    codes = np.zeros(work.shape)
    try:
        with _blas().limit(limits=1, user_api="blas"):
            upper = np.linalg.cholesky(np.linalg.inv(damped)).T
    except np.linalg.LinAlgError:  # numerically singular: the nearest codes
        upper = np.eye(depth)
    upper = np.ascontiguousarray(upper)
    errors = np.zeros((work.shape[0], BLOCK))
    for first in range(0, depth, BLOCK):  # GPTQ's lazy batch updates: the rest of the row once a block
        last = min(first + BLOCK, depth)
        _round_block(work, upper, scale, float(high), first, last, codes, errors)
        work[:, last:] -= errors[:, :last - first] @ upper[first:last, last:]
    result = np.empty(codes.shape, np.int64)
    result[:, order] = codes
    return result


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries numpy loaded, whose threads :func:`rounded_codes`
    holds to one: OpenBLAS's threaded inverse sums in another order than its
    serial one (from 144 positions on), so the codes depended on how many
    cores the compiling host had; and on a host whose cores are busy (the
    calibration's own pool, another job) its threads spin: a 576-position
    layer took 104 ms on two loaded cores against 25 ms on one thread."""
    return ThreadpoolController()


@jit
def _round_block(work, upper, scale, high, first, last, codes, errors):
    """Positions [first, last) of every row of ``work``, one after the
    other: the code on the row's ``scale`` (clamped to +-``high``) into
    ``codes``, its error, through ``upper``'s diagonal, into ``errors``
    (column ``i - first``) and taken from the block's positions after it.
    The rows are independent, so each runs its whole block along its row in
    memory; numpy's column at a time cost ResNet-50's 31 rounded layers
    1.4 s of its compile (0.5 s now), the products between blocks included."""
    for k in range(work.shape[0]):
        s = scale[k]
        for i in range(first, last):
            w = work[k, i]
            q = np.rint(w / s)
            if q < -high:
                q = -high
            elif q > high:
                q = high
            codes[k, i] = q
            error = (w - q * s) / upper[i, i]
            errors[k, i - first] = error
            for j in range(i + 1, last):
                work[k, j] -= error * upper[i, j]


def geometry(conv: Mapping, weight_shape) -> tuple:
    """What a layer's patch moments depend on besides its input: its
    convolution's attributes and its weights' shape."""
    attrs = with_defaults("Conv", dict(conv))
    return tuple(tuple(attrs[k]) if isinstance(attrs[k], (list, tuple)) else attrs[k]
                 for k in CONV_ATTRS) + tuple(weight_shape)


def unit_geometry(unit: Node, depth: int) -> tuple[Mapping, tuple] | None:
    """(convolution attributes, weight shape) of a conv unit whose weights
    weight rounding rounds (see :func:`round_weights`), else None:
    calibration measures its input's moments ahead of the rewrite."""
    first = unit.attrs["body"].nodes[0] if unit.op == "Fused" else unit
    if unit.annotations.get("unit") != "conv" or first.op != "Conv" or len(first.inputs) < 2:
        return None
    weight = first.inputs[1]
    if weight is None or weight.const is None or weight.const.ndim != 4:
        return None
    if not 1 < int(np.prod(weight.const.shape[1:])) <= depth:
        return None
    return {k: first.attrs[k] for k in CONV_ATTRS if k in first.attrs}, tuple(weight.const.shape)


def round_weights(lowered, layers: list, batches: Iterable[Mapping[str, np.ndarray]], depth: int,
                  measured: Mapping[tuple, PatchMoments] | None = None) -> int:
    """Round the weights of each QConv among ``layers`` (bias_correction.LinearLayer)
    whose reduction is at most ``depth`` by its output error over
    ``batches``, in place; returns how many layers it rounded. ``measured``:
    moments calibration already took over the same batches, by (slot,
    :func:`geometry`); only layers without them run the float model again."""
    program, names = lowered
    chosen = [layer for layer in layers if _eligible(layer, depth) and layer.x in names]
    if not chosen:
        return 0
    moments = dict(measured or {})
    keys = {id(layer): (names[layer.x], geometry(layer.conv, layer.weight.shape)) for layer in chosen}
    missing = {key for key in keys.values() if key not in moments}
    if missing:
        by_slot: dict[str, list] = {}
        for slot, shape in missing:
            layer = next(layer for layer in chosen if keys[id(layer)] == (slot, shape))
            moments[(slot, shape)] = PatchMoments(layer.conv, layer.weight.shape)
            by_slot.setdefault(slot, []).append(moments[(slot, shape)])

        def observe(slot: str, array: np.ndarray) -> None:
            for m in by_slot[slot]:
                m.update(array)

        executor = Executor(program)
        for feeds in progress(batches, label="weight rounding"):
            executor.run(feeds, fetch=[], observe=observe, watch=list(by_slot))
    for layer in chosen:
        m = moments[keys[id(layer)]]
        if m.count == 0:
            continue
        q_weight = layer.node.inputs[1]
        scales = np.asarray(q_weight.quant.scale, np.float64)
        high = WEIGHT_RANGE[np.dtype(q_weight.const.dtype)][1]
        channels = layer.weight.shape[0]
        weight, per_group = layer.weight.reshape(m.group, channels // m.group, -1), channels // m.group
        codes = np.concatenate([rounded_codes(weight[g], scales[g * per_group:(g + 1) * per_group],
                                              m.covariance(g), high) for g in range(m.group)])
        set_codes(layer.node, codes.reshape(q_weight.const.shape) - q_weight.const.astype(np.int64))
    return len(chosen)


def set_codes(node: Node, delta: np.ndarray) -> None:
    """Move the integer weights of ``node`` (a QConv) by ``delta`` codes
    (clamped to the weight range), keep its bias's folded input zero point
    right, and record the difference in ``annotations[ROUNDING]`` on top of
    any recorded before."""
    q_weight, bias = node.inputs[1], node.inputs[2]
    old = q_weight.const.astype(np.int64)
    low, high = WEIGHT_RANGE[np.dtype(q_weight.const.dtype)]
    new = np.clip(old + np.asarray(delta, np.int64), low, high)
    channels = old.shape[0]
    moved = (new - old).reshape(channels, -1).sum(axis=1)
    folded = bias.const.astype(np.int64) - int(node.inputs[0].quant.zero[0]) * moved  # rewrite folds -x_zero sum(w)
    info = np.iinfo(bias.const.dtype)
    bias.const = read_only(np.clip(folded, info.min, info.max).astype(bias.const.dtype))
    q_weight.const = read_only(new.astype(q_weight.const.dtype))
    recorded = node.annotations.get(ROUNDING)
    node.annotations[ROUNDING] = (new - old) + (0 if recorded is None else recorded)


def apply_given(layers: list, given: Mapping[str, np.ndarray]) -> None:
    """The codes an encodings file gives (differences from the nearest codes, by weight name)."""
    for layer in layers:
        name = layer.node.annotations.get("weight")
        if name not in given:
            continue
        delta = np.asarray(given[name])
        if layer.node.op != "QConv" or delta.size != layer.node.inputs[1].const.size:
            raise PassError(f"the weight codes given for {name!r} ({delta.size} of them) do not fit its "
                            f"{layer.node.op} node {layer.node.name!r} ({layer.node.inputs[1].const.size} weights)")
        set_codes(layer.node, delta.reshape(layer.node.inputs[1].const.shape))


def encode_rounding(delta: np.ndarray) -> str:
    """An encodings file's text for a weight's code differences: base64 of
    the zlib-compressed little-endian int32 array (mostly zeros)."""
    return base64.b64encode(zlib.compress(np.asarray(delta, "<i4").tobytes(), 9)).decode("ascii")


def decode_rounding(text, where: str) -> np.ndarray:
    """:func:`encode_rounding`'s inverse; ``where`` names the entry in errors."""
    if not isinstance(text, str):
        raise PassError(f"{where}: expected the base64 text of the weight codes' differences, got a "
                        f"{type(text).__name__}")
    try:
        raw = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as exc:
        raise PassError(f"{where}: not the base64 of zlib-compressed codes ({exc})") from None
    if len(raw) % 4:
        raise PassError(f"{where}: {len(raw)} bytes are not whole int32 code differences")
    return np.frombuffer(raw, "<i4").astype(np.int64)


def _eligible(layer, depth: int) -> bool:
    node = layer.node
    reduction = int(np.prod(layer.weight.shape[1:]))
    return (node.op == "QConv" and layer.conv is not None and layer.weight.ndim == 4 and 1 < reduction <= depth
            and layer.x.type.shape is not None and len(layer.x.type.shape) == 4)
