"""Targets: which device can run a node, and what running it there costs.

A :class:`Target` answers ``supports(node) -> Support(supported, reason)``
from one rule per op (TVM's ``target.<compiler>`` predicates, torch.fx's
``OperatorSupport``); an unsupported node always gets a reason naming what is
missing. ``Fused`` and ``Segment`` nodes are supported when every member of
their body is, and the reason then names the first member that is not.

The accelerator ("FPGA") rules describe what the device's datapath can do
(shared/ARCHITECTURE.md section 5): 2-D NCHW tensors of static shape, int8 or
16-bit data (float32 graphs are quantized before code generation), constant
weights packed at compile time; views and data movement (Transpose, Slice,
Split, Pad, DepthToSpace, SpaceToDepth: strided DMA) on tensors up to rank 6.
The host ("CPU") runs every op with a kernel.

What placing a node costs (device, CPU and transfer time) is in
passes/placement_costs.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import numpy as np

from ir.graph import Node, Value
from ir.types import dtype_name
from passes.infra import PassContext, PassError, register_option
from passes.placement_costs import STRUCTURAL
from passes.pointwise import is_pointwise
from passes.quant.units import is_channel_affine
from passes.tiling import TilingError, operand_dims
from runtime.hardware import ACCELERATOR, DEVICES, HOST, HardwareConfig
from runtime.isa import AVG_ENTRY_BYTES, MAX_EXTENT
from runtime.kernels import has_kernel
from runtime.kernels.resize import given, output_size, resize_axes

DEVICE_RANK = 4
MOVE_RANK = 6
"""Views and moves take tensors up to rank 6 (PyTorch's pixel_shuffle export
is a 6-D Reshape -> Transpose -> Reshape); compute layers take N,C,H,W."""
VIEW_OPS = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})
MOVE_OPS = frozenset({"Transpose", "Slice", "Split", "Pad", "DepthToSpace", "SpaceToDepth"})
"""Pure data movement: the bytes do not change, DMA addressing moves them."""

register_option("target.hwlinear", object, None,
                "Where Gemm/MatMul with constant weights (linear layers) run: None (unset, the default): where "
                "the affinity policy finds they pay (passes/affinity.py, by the placement costs); True: on the "
                "accelerator, False: on the CPU (FWDNXT's hwlinear flag, 1 and 0).")
register_option("target.hardware", HardwareConfig, HardwareConfig(),
                "The accelerator's HardwareConfig (cards, clusters, MAC units, buffers, clock, bandwidths) "
                "used by the support rules and the placement costs.")
register_option("partition.fallback", str, "HETERO:FPGA,CPU",
                "Device priority of automatic affinity (OpenVINO's TARGET_FALLBACK): each node goes to the "
                "first listed device that supports it; the 'HETERO:' prefix is optional.")
register_option("partition.demote_islands", bool, True,
                "Move an accelerator segment whose neighbours are all on the CPU back to the CPU when its "
                "host-link transfers cost more time than the accelerator saves.")


class TargetError(PassError):
    """A device name is unknown, or no device can run a node."""


class Support(NamedTuple):
    """Whether a device can run a node; when it cannot, why, and the rule
    that said so (what would have to change for the node to run there)."""

    supported: bool
    reason: str = ""
    rule: str = ""

    def __bool__(self) -> bool:
        return self.supported


SUPPORTED = Support(True)


@dataclass(frozen=True)
class Target:
    """A device: its name and the rule saying why it cannot run a node and
    which rule that is (None when it can)."""

    name: str
    check: Callable[[Node], tuple[str, str] | None]

    def supports(self, node: Node) -> Support:
        if node.op in STRUCTURAL:
            return self._supports_body(node)
        refusal = self.check(node)
        return SUPPORTED if refusal is None else Support(False, *refusal)

    def _supports_body(self, node: Node) -> Support:
        for member in node.attrs["body"].nodes:
            support = self.supports(member)
            if not support:
                return Support(False, f"{node.op} member {member.name!r} ({member.op}): {support.reason}",
                               support.rule)
        return SUPPORTED


def accelerator(hardware: HardwareConfig = HardwareConfig(), hwlinear: bool | None = None) -> Target:
    """The accelerator target for one hardware config; ``hwlinear=False``
    refuses linear layers (unset and True accept them: the affinity policy
    decides where unset ones go)."""
    return Target(ACCELERATOR, partial(_accelerator_reason, _Spec(hardware, hwlinear)))


def hwlinear_option(ctx: PassContext) -> bool | None:
    """``target.hwlinear``, checked: None (unset), True or False."""
    value = ctx.option("target.hwlinear")
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TargetError(f"pass option 'target.hwlinear' must be None (unset), True or False, got {value!r}")
    return None if value is None else bool(value)


def is_linear_layer(node: Node) -> bool:
    """A Gemm or MatMul with constant weights (what ``target.hwlinear`` places)."""
    return node.op in ("Gemm", "MatMul") and len(node.inputs) > 1 and node.inputs[1].is_constant


def cpu() -> Target:
    """The host target: every op with a CPU kernel."""
    return Target(HOST, _cpu_reason)


def make_target(name: str, ctx: PassContext) -> Target:
    """The target called ``name``, configured by the context's options."""
    if name == ACCELERATOR:
        return accelerator(ctx.option("target.hardware"), hwlinear_option(ctx))
    if name == HOST:
        return cpu()
    raise TargetError(f"unknown device {name!r}; the devices are {list(DEVICES)}")


def _cpu_reason(node: Node) -> tuple[str, str] | None:
    return None if has_kernel(node.op) else (f"op {node.op} has no CPU kernel", "runtime/kernels: no kernel")


# ---------------------------------------------------------------- accelerator rules

@dataclass(frozen=True)
class _Spec:
    hardware: HardwareConfig
    hwlinear: bool | None


Rule = Callable[[Node, _Spec], str | None]


RULES_AT = "passes/target.py"


def _accelerator_reason(spec: _Spec, node: Node) -> tuple[str, str] | None:
    """Why the accelerator cannot run ``node`` and the rule that says so."""
    rule = _RULES.get(node.op)
    if rule is None:
        return (f"op {node.op} has no accelerator implementation",
                f"{RULES_AT}: no rule for {node.op}")
    rank = MOVE_RANK if node.op in VIEW_OPS | MOVE_OPS else DEVICE_RANK
    tensor = _tensor_reason(node, spec.hardware, rank)
    if tensor:
        return tensor, f"{RULES_AT}:_tensor_reason"
    reason = rule(node, spec)
    return None if reason is None else (reason, f"{RULES_AT}:{rule.__name__}")


def _device_dtypes(hardware: HardwareConfig) -> set[np.dtype]:
    """float32 (quantized before code generation) and the datapath's integers."""
    ints = {8: np.dtype(np.int8), 16: np.dtype(np.int16)}
    return {np.dtype(np.float32)} | {ints[w] for w in hardware.data_widths}


def _tensor_reason(node: Node, hardware: HardwareConfig, max_rank: int = DEVICE_RANK) -> str | None:
    """Static shapes, rank <= 4 (views and moves: ``max_rank``) and a device
    dtype for every activation."""
    allowed = _device_dtypes(hardware)
    activations = [v for v in node.inputs if v is not None and not v.is_constant] + node.outputs
    for value in activations:
        if not value.type.is_static:
            return f"dynamic shape: %{value.name} is {value.type}"
    for value in activations:
        if value.type.rank > max_rank and max_rank == DEVICE_RANK:
            return f"%{value.name} {value.type} has rank {value.type.rank}; device tensors are N,C,H,W"
        if value.type.rank > max_rank:
            return (f"{node.op} of a rank-{value.type.rank} tensor %{value.name}: the accelerator moves tensors "
                    f"of rank <= {max_rank}")
        if value.type.dtype not in allowed:
            return (f"%{value.name} has dtype {dtype_name(value.type.dtype)}; the accelerator holds "
                    f"int{'/int'.join(map(str, hardware.data_widths))} data (float32 is quantized)")
    return None


def _not_constant(node: Node, named: dict[int, str]) -> str | None:
    """The first of the named inputs that is given but not a constant."""
    for index, what in named.items():
        value = node.inputs[index] if index < len(node.inputs) else None
        if value is not None and not value.is_constant:
            return f"{node.op} {what} %{value.name} is computed at run time, not a constant"
    return None


def _two_d(node: Node) -> str | None:
    rank = node.inputs[0].type.rank
    if rank != DEVICE_RANK:
        return f"{node.op} is {rank - 2}-D; the accelerator runs 2-D windows on N,C,H,W tensors"
    return None


MAX_DILATION = 63
"""CONV's dilation fields are 6 bits (docs/isa.md)."""


def _window(node: Node, limit: int, dilated: bool = False) -> str | None:
    """A 2-D window no larger than ``limit``; dilated only where the unit
    has dilation (CONV does, POOL does not)."""
    kernel, dilations = list(node.attrs["kernel_shape"]), list(node.attrs["dilations"])
    if max(kernel) > limit:
        return f"{node.op} kernel {'x'.join(map(str, kernel))} > {limit}"
    if not dilated and any(d != 1 for d in dilations):
        return f"{node.op} dilations {dilations}: the pool unit has no dilated windows"
    if max(dilations) > MAX_DILATION:
        return f"{node.op} dilations {dilations} > {MAX_DILATION}"
    return None


def _conv(node: Node, spec: _Spec) -> str | None:
    """Any group count (dense, grouped, depthwise): CONV's ``groups``."""
    hw = spec.hardware
    reason = (_two_d(node) or _not_constant(node, {1: "weights", 2: "bias"})
              or _window(node, hw.max_conv_kernel, dilated=True))
    return reason or _filter_fits(node, math.prod(node.inputs[1].type.shape[1:]), hw)


def _filter_fits(node: Node, taps: int, hw: HardwareConfig) -> str | None:
    """One output channel's filter must fit a MAC unit's weight share."""
    filter_bytes = taps * hw.element_bytes
    share = hw.weight_buffer_bytes // hw.units_per_cluster
    if filter_bytes > share:
        return f"one {node.op} filter ({filter_bytes} bytes) exceeds a MAC unit's weight-buffer share ({share} bytes)"
    return None


def _conv_transpose(node: Node, spec: _Spec) -> str | None:
    """Run as one stride-1 convolution per output phase (codegen/device):
    each phase's kernel takes the taps ``ky = phase + stride * t``, so a
    kernel smaller than its stride would leave phases only the bias reaches."""
    hw = spec.hardware
    reason = _two_d(node) or _not_constant(node, {1: "weights", 2: "bias"})
    if reason:
        return reason
    kernel, strides, dilations = node.attrs["kernel_shape"], node.attrs["strides"], node.attrs["dilations"]
    if any(d != 1 for d in dilations):
        return f"ConvTranspose dilations {list(dilations)}: the accelerator's transposed convolutions are undilated"
    if any(k < s for k, s in zip(kernel, strides)):
        return (f"ConvTranspose kernel {'x'.join(map(str, kernel))} smaller than its stride {list(strides)}: "
                "some output phases would have no taps")
    phase = [-(-k // s) for k, s in zip(kernel, strides)]
    if max(phase) > hw.max_conv_kernel:
        return f"ConvTranspose phase kernel {'x'.join(map(str, phase))} > max_conv_kernel={hw.max_conv_kernel}"
    if max(node.attrs["pads"]) > MAX_DMA_PAD or max(node.attrs["output_padding"]) > MAX_DMA_PAD:
        return f"ConvTranspose pads {list(node.attrs['pads'])} exceed the DMA's {MAX_DMA_PAD}"
    channels, filters = node.inputs[0].type.shape[1], node.inputs[1].type.shape[1] * node.attrs["group"]
    return _filter_fits(node, channels // node.attrs["group"] * math.prod(phase), hw) if filters else None


MAX_DMA_PAD = 255
"""LOAD's padding fields are 8 bits (docs/isa.md)."""


def _average_table(window: int, hardware: HardwareConfig) -> str | None:
    """An average pool's multiplier table must fit the weight buffer."""
    size = window * AVG_ENTRY_BYTES
    if size > hardware.weight_buffer_bytes:
        return f"its {window}-entry multiplier table ({size} bytes) exceeds the weight buffer"
    return None


def _pool(node: Node, spec: _Spec) -> str | None:
    """POOL's windows: border and ceil_mode windows count what they cover
    (count_include_pad either way: one multiplier per element count)."""
    reason = _two_d(node) or _window(node, spec.hardware.max_pool_kernel)
    if reason:
        return reason
    if max(node.attrs["pads"]) > MAX_DMA_PAD:
        return f"{node.op} pads {list(node.attrs['pads'])} exceed the DMA's {MAX_DMA_PAD}"
    if node.op != "AveragePool":
        return None
    table = _average_table(math.prod(node.attrs["kernel_shape"]), spec.hardware)
    return f"AveragePool: {table}" if table else None


def _global_pool(node: Node, spec: _Spec) -> str | None:
    """A global average of any plane is a GEMM against ones (codegen/device)
    when POOL's window or its multiplier table does not fit; a global max
    needs the window."""
    rank = node.inputs[0].type.rank
    if rank != DEVICE_RANK:
        return f"{node.op} over a rank-{rank} tensor; the accelerator pools N,C,H,W"
    size, limit = node.inputs[0].type.shape[2:], spec.hardware.max_pool_kernel
    if node.op == "GlobalMaxPool" and max(size) > limit:
        return f"{node.op} over {size[0]}x{size[1]}: one window > max_pool_kernel={limit}"
    return None


def _per_channel(shape: tuple, out: tuple) -> bool:
    """Broadcastable to ``out`` along the channel axis (1) only."""
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    return len(shape) <= len(out) and all(d == 1 or (axis == 1 and d == out[1]) for axis, d in enumerate(padded))


def _elementwise_binary(node: Node, spec: _Spec) -> str | None:
    """A function of one tensor (a table), a per-channel constant on a
    4-D map (an affine), or two operands ELTWISE combines: tensors or
    constants that broadcast to the output axis by axis (per channel, row,
    column, position, or an outer product; passes/tiling.py's operand
    rules, the DMA repeating what broadcasts)."""
    if is_pointwise(node) and _tensor_count(node) == 1:
        return None
    tensors = [v for v in node.inputs if not v.is_constant]
    if len(tensors) == 1:
        return _by_constant(node)
    if node.op not in _TWO_TENSORS:
        return (f"{node.op} of two tensors: the accelerator combines two tensors by "
                f"{', '.join(sorted(_TWO_TENSORS))} (and divides by constants only)")
    if len(tensors) > 2:
        return f"{node.op} of {len(tensors)} tensors: the accelerator combines two at a time"
    return _broadcast_reason(node)


def _broadcast_reason(node: Node) -> str | None:
    """Each operand must broadcast to the output axis by axis within N, C,
    H, W, as the tile pass reads it (passes.tiling.operand_dims)."""
    for value in node.inputs:
        try:
            operand_dims(node, value)
        except TilingError:
            return (f"{node.op} broadcasts %{value.name} {value.type} to {list(node.outputs[0].type.shape)}: "
                    "the accelerator's operands broadcast axis by axis within N, C, H, W")
    return None


def _by_constant(node: Node) -> str | None:
    """x (op) c: a per-channel c on a 4-D map scales or shifts (an affine,
    a depthwise 1x1 CONV); Add, Sub, Mul, Max, Min take any c that
    broadcasts (ELTWISE's operand from DRAM); Div divides by per-channel
    constants only."""
    const = _constant_of(node)
    if node.op in _AFFINE and is_channel_affine(node) and node.outputs[0].type.rank == DEVICE_RANK:
        return None
    if node.op in _TWO_TENSORS:
        return _broadcast_reason(node)
    if node.op == "Div" and not node.inputs[1].is_constant:
        return (f"Div with the constant %{const.name} {const.type} first: the accelerator has x / c, and c / x "
                "only for a scalar c (a table)")
    return (f"{node.op} by the constant %{const.name} {const.type}: the accelerator takes scalar constants (a "
            f"table), per-channel ones on N,C,H,W maps ({', '.join(_AFFINE)}) and any that broadcast axis by "
            f"axis ({', '.join(sorted(_TWO_TENSORS))})")


_AFFINE = ("Mul", "Div", "Add", "Sub")
_TWO_TENSORS = frozenset({"Add", "Sub", "Mul", "Max", "Min", "Sum"})


def _tensor_count(node: Node) -> int:
    return sum(1 for v in node.inputs if v is not None and not v.is_constant)


def _constant_of(node: Node) -> Value:
    return next(v for v in node.inputs if v is not None and v.is_constant)


def _unary(node: Node, spec: _Spec) -> str | None:
    """Any function of one tensor is a table (QLut, or a CONV's table when
    it follows one): 256 entries on 8-bit data, 513 interpolated on 16-bit."""
    if is_pointwise(node) and _tensor_count(node) == 1:
        return None
    return (f"{node.op} with non-scalar constant operands or of several tensors is not a function of one tensor "
            "(the accelerator computes those by table)")


def _prelu(node: Node, spec: _Spec) -> str | None:
    """A scalar slope is a table; per-channel non-negative slopes are a
    CONV's (or a depthwise identity's) negative multipliers."""
    if is_pointwise(node) and _tensor_count(node) == 1:
        return None
    slope = node.inputs[1]
    if not slope.is_constant:
        return f"PRelu slope %{slope.name} is computed at run time, not a constant"
    if not _per_channel(slope.type.shape, node.outputs[0].type.shape):
        return f"PRelu slope %{slope.name} {slope.type} varies along other axes than the channels"
    if (slope.const < 0).any():
        return (f"PRelu slope %{slope.name} has negative values (channel {int(np.argmax(slope.const.reshape(-1) < 0))}"
                "): the requantiser's multiplier for negative values is positive")
    return None


def _concat(node: Node, spec: _Spec) -> str | None:
    rank, axis = node.outputs[0].type.rank, node.attrs["axis"]
    if rank < 2 or axis % rank == 0:
        return (f"Concat along axis {axis} of a rank-{rank} tensor: the accelerator concatenates along any axis "
                "but the batch axis (0)")
    return None


def _nonempty(node: Node) -> str | None:
    """A move with an empty output would be a DMA box of extent 0."""
    for value in node.outputs:
        if value.type.numel == 0:
            return f"{node.op} gives an empty tensor %{value.name} {value.type}"
    return None


def _slice(node: Node, spec: _Spec) -> str | None:
    reason = _not_constant(node, {1: "starts", 2: "ends", 3: "axes", 4: "steps"}) or _nonempty(node)
    if reason:
        return reason
    steps = node.inputs[4].const.reshape(-1) if len(node.inputs) > 4 and node.inputs[4] is not None else []
    axes = node.inputs[3].const.reshape(-1) if len(node.inputs) > 3 and node.inputs[3] is not None else \
        range(len(steps))
    for axis, step in zip(axes, steps):
        if step < 0:
            return f"Slice with step {int(step)} on axis {int(axis)}: DMA strides are non-negative"
    return None


def _split(node: Node, spec: _Spec) -> str | None:
    return _not_constant(node, {1: "split"}) or _nonempty(node)


def _pad(node: Node, spec: _Spec) -> str | None:
    """A constant border (LOAD's pad value) or an edge one (the first or
    last row, column or plane LOADed with a zero stride)."""
    mode = node.attrs["mode"]
    if mode == "reflect":
        return "Pad mode 'reflect': a mirrored border needs negative DMA strides, which the DMA does not have"
    if mode not in ("constant", "edge"):
        return f"Pad mode {mode!r}: the DMA pads with a constant or by repeating the edge"
    reason = _not_constant(node, {1: "pads", 2: "constant_value", 3: "axes"}) or _nonempty(node)
    if reason or mode == "constant":
        return reason
    if (node.inputs[1].const < 0).any():
        return "Pad mode 'edge' with negative pads (a crop): the device repeats the edge of uncropped tensors"
    return None


def _move(node: Node, spec: _Spec) -> str | None:
    """Transpose, DepthToSpace, SpaceToDepth: any permutation of a static tensor."""
    return _nonempty(node)


def _clip(node: Node, spec: _Spec) -> str | None:
    return _not_constant(node, {1: "min", 2: "max"})


def _always(node: Node, spec: _Spec) -> str | None:
    """Ops with no condition beyond the static-shape, rank and dtype checks."""
    return None


_REPLICATING = {  # coordinate modes and rounding that make integer-scale nearest a pixel replication
    "half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
    "half_pixel_symmetric": {"round_prefer_floor", "round_prefer_ceil"},
    "pytorch_half_pixel": {"round_prefer_floor", "round_prefer_ceil"},
    "asymmetric": {"floor"},
}


def _resize(node: Node, spec: _Spec) -> str | None:
    a = node.attrs
    if a["mode"] != "nearest":
        return f"Resize mode={a['mode']!r}; the accelerator only upsamples by nearest neighbour"
    if a["nearest_mode"] not in _REPLICATING.get(a["coordinate_transformation_mode"], ()):
        return (f"Resize coordinate_transformation_mode={a['coordinate_transformation_mode']!r} with "
                f"nearest_mode={a['nearest_mode']!r} does not replicate pixels")
    return _two_d(node) or _resize_factors(node)


def _resize_factors(node: Node) -> str | None:
    """Spatial scales must be integers (1 or more); N and C are not resized.
    Runtime scales or sizes already failed the static-shape check."""
    x, a = node.inputs[0].type, node.attrs
    scales, sizes = (node.inputs[i].const if len(node.inputs) > i and node.inputs[i] is not None else None
                     for i in (2, 3))
    _, factors = output_size(x.shape, scales if given(scales) else None, None if given(scales) else sizes,
                             resize_axes(a["axes"], x.rank), a["keep_aspect_ratio_policy"])
    if factors[0] != 1 or factors[1] != 1:
        return f"Resize scales the batch or channel axis (scales {factors})"
    if not all(f >= 1 and float(f).is_integer() for f in factors[2:]):
        return f"Resize scales {factors[2:]} are not integer upsampling factors"
    return None


def _matmul(node: Node, spec: _Spec) -> str | None:
    """A MatMul of two activations is MATMUL (batched, operands in ACT); one
    with a constant operand is a linear layer (:func:`_linear`)."""
    if _tensor_count(node) < 2:
        return _linear(node, spec)
    a, b, hw = node.inputs[0].type, node.inputs[1].type, spec.hardware
    if a.rank < 2 or a.rank != b.rank or a.shape[:-2] != b.shape[:-2]:
        return (f"MatMul of %{node.inputs[0].name} {a} and %{node.inputs[1].name} {b}: the accelerator multiplies "
                "two activations batch by batch, with the same leading dims (no broadcast)")
    k = a.shape[-1]
    if max(math.prod(a.shape[:-2]), *a.shape[-2:], b.shape[-1]) > MAX_EXTENT:
        return f"MatMul of %{node.inputs[0].name} {a} and %{node.inputs[1].name} {b}: a dim exceeds {MAX_EXTENT}"
    smallest = 2 * (2 * k + 1) * hw.element_bytes  # one row of a, one column of b, one output, double-buffered
    if smallest > hw.activation_buffer_bytes:
        return (f"MatMul reduction of {k}: one row and one column ({smallest} bytes double-buffered) exceed the "
                f"activation buffer ({hw.activation_buffer_bytes} bytes)")
    return None


def _softmax(node: Node, spec: _Spec) -> str | None:
    """SOFTMAX normalises rows: the last axis, each row whole in the activation buffer."""
    x, hw = node.inputs[0].type, spec.hardware
    axis = node.attrs["axis"] % max(x.rank, 1)
    if axis != x.rank - 1:
        return (f"Softmax over axis {node.attrs['axis']} of %{node.inputs[0].name} {x}: the accelerator "
                "normalises the last axis (rows)")
    cols = x.shape[-1] if x.rank else 1
    row = 2 * 2 * cols * hw.element_bytes  # a row in and out, double-buffered
    if cols > MAX_EXTENT or row > hw.activation_buffer_bytes:
        return (f"Softmax rows of {cols} elements ({row} bytes double-buffered) exceed the activation buffer "
                f"({hw.activation_buffer_bytes} bytes) or {MAX_EXTENT} elements")
    return None


def _linear(node: Node, spec: _Spec) -> str | None:
    """A CONV of a one-row map against a constant weight matrix; the user's
    hwlinear=False keeps it on the CPU (unset: the affinity policy decides)."""
    if node.op == "Gemm" and node.attrs["transA"]:
        return "Gemm transA=1: the accelerator's left operand is the activation, untransposed"
    reason = _not_constant(node, {1: "weights", 2: "bias"})
    if reason:
        return reason
    if node.inputs[1].type.rank != 2:
        return f"{node.op} weights %{node.inputs[1].name} {node.inputs[1].type} are not a matrix"
    if spec.hwlinear is False:
        return f"{node.op} (a linear layer) is kept on the CPU by the hwlinear option (target.hwlinear=False)"
    return None


def _lrn(node: Node, spec: _Spec) -> str | None:
    """Lowered to a table of x*x, a 1x1 CONV summing the channel window, a
    table of ``(bias + alpha/size * s) ** -beta`` and an ELTWISE product
    (passes/lower_lrn.py): the base must stay positive for the table."""
    rank = node.inputs[0].type.rank
    if rank != DEVICE_RANK:
        return f"LRN over a rank-{rank} tensor: the accelerator sums the channel window of N,C,H,W tensors"
    a = node.attrs
    if a["bias"] <= 0 or a["alpha"] < 0:
        return (f"LRN bias={a['bias']}, alpha={a['alpha']}: (bias + alpha/size * s) ** -beta is unbounded or "
                "undefined for some s >= 0, so no table holds it")
    return _filter_fits(node, node.inputs[0].type.shape[1], spec.hardware)


def _batch_norm(node: Node, spec: _Spec) -> str | None:
    return _not_constant(node, {1: "scale", 2: "bias", 3: "mean", 4: "variance"})


UNARY_FUNCTIONS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Gelu", "Softplus",
                   "Softsign", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Abs", "Neg", "Sign", "Floor", "Ceil",
                   "Round", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
                   "Mish", "Swish", "ThresholdedRelu", "Shrink", "LeakyRelu")
"""Functions of one tensor: a table (256 entries on 8-bit data, 513 interpolated on 16-bit)."""

_RULES: dict[str, Rule] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose,
    "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool,
    **{op: _elementwise_binary for op in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum")},
    "Concat": _concat,
    "Relu": _always, "Clip": _clip, "PRelu": _prelu,
    **{op: _unary for op in UNARY_FUNCTIONS},
    "Resize": _resize,
    "Gemm": _linear, "MatMul": _matmul, "Softmax": _softmax,
    "BatchNormalization": _batch_norm,  # a per-channel scale and shift
    "LRN": _lrn,  # lowered to ops the accelerator has (passes/lower_lrn.py)
    # Free views: device tensors lie in card DRAM dense and plane-major (row-major N,C,H,W, as FWDNXT's),
    # so a new shape moves no byte. Code generation must keep that layout, or these rules must change.
    "Identity": _always, "Reshape": _always, "Flatten": _always, "Squeeze": _always, "Unsqueeze": _always,
    # Moves: strided DMA copies (codegen/device/moves.py), any rank up to MOVE_RANK.
    "Transpose": _move, "DepthToSpace": _move, "SpaceToDepth": _move,
    "Slice": _slice, "Split": _split, "Pad": _pad,
}


def accelerator_ops() -> list[str]:
    """The ops the accelerator has rules for (each may still reject a node)."""
    return sorted(_RULES)
