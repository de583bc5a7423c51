"""A 1x1 expansion and the 3x3 depthwise convolution that reads it, run as
one step a block of channels at a time (the inverted residual of MobileNets,
at high resolution).

MobileNetV2's first expansion writes 96 planes of 112x112 (4.8 MB) that the
stride-2 depthwise convolution after it reads once: the tensor goes out to
memory and back. Fused, each task expands a block of channels (the 1x1
product of those rows of the weights, :func:`runtime.gemm.run_strip`) into
a buffer of its own that stays in L2, and runs the depthwise kernel on it
at once; the expanded tensor never exists. The same products in the same
order as the two steps, so the same results, bit for bit (the two steps
pair: 1.9x faster on their own).

The executor fuses two consecutive steps through :func:`fuse` (registered
with :func:`runtime.kernels.registry.fuses`) when both were prepared
(:mod:`runtime.kernels.nn_prepared`), the second reads the first's output,
nothing else does, and it is neither fetched nor watched. A call the fused
kernel was not made for (an expansion small enough to stay in cache, other
shapes or dtypes) runs the two prepared steps one after the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime import gemm
from runtime.gemm.tasks import run_strip
from runtime.jit import jit, readonly
from runtime.kernels import depthwise_ir
from runtime.kernels.conv_epilogue import NO_CLAMP
from runtime.kernels.nn_prepared import PreparedConv
from runtime.kernels.registry import Kernel
from runtime.parallel import drives, parallel_for
from runtime.pool_protocol import team_enter, team_leave, team_next
from runtime.schedule.records import EXPAND_DEPTHWISE, Operand
from runtime.unlinked import call_unlinked

_UNKNOWN = object()
FUSE_BYTES = 2 << 20
"""Expanded tensors (per image) at least this large are never written out;
smaller ones stay in cache between the two steps anyway (fused, MobileNetV2's
56x56 pairs were slower: fewer, smaller tasks)."""
BLOCK_BYTES = 512 << 10
"""Most bytes of one task's block of expanded channels (it stays in L2)."""


def fuse(first: Kernel, second: Kernel, first_inputs: int) -> Kernel | None:
    """The fused kernel of a prepared 1x1 convolution (stride 1, no padding,
    one group) and a prepared 3x3 depthwise one over its channels (pads of
    1, stride 1 or 2, unit dilations), or None. Its inputs are the first
    step's ``first_inputs`` inputs, then the second's but its X."""
    if not (isinstance(first, PreparedConv) and isinstance(second, PreparedConv)):
        return None
    w1, w2 = first.w, second.w
    strides, pads, dilations, group = first.geometry
    if (w1.shape[2:] != (1, 1) or any(s != 1 for s in strides) or any(pads) or any(d != 1 for d in dilations)
            or int(group) != 1):
        return None
    strides, pads, dilations, group = second.geometry
    if (w2.shape != (w1.shape[0], 1, 3, 3) or int(group) != w1.shape[0] or strides not in ((1, 1), (2, 2))
            or pads != (1, 1, 1, 1) or dilations != (1, 1)):
        return None
    return ExpandDepthwise(first, second, first_inputs)


class ExpandDepthwise:
    """The fused step: ``inputs`` are the first step's inputs, then the
    second step's without its X."""

    def __init__(self, first: PreparedConv, second: PreparedConv, first_inputs: int):
        self.first, self.second = first, second
        self.split = first_inputs
        self.stride = second.geometry[0][0]
        self.plans: dict[tuple, Any] = {}

    def __call__(self, inputs, attrs):
        x, first_inputs, second_inputs = inputs[0], inputs[:self.split], inputs[self.split:]
        if self._direct(inputs):
            plan = self._plan_for(x.shape)
            if plan is not None:
                return (self._run(x, plan),)
        middle = self.first(first_inputs, attrs["first"])[0]
        return self.second([middle] + list(second_inputs), attrs["second"])

    def _direct(self, inputs) -> bool:
        """Whether this call is one the fused kernel was made for: the
        prepared weights and biases, no residual, a C-contiguous float32 X."""
        x = inputs[0]
        return (type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 4 and x.flags.c_contiguous
                and self._expected(inputs))

    def _expected(self, inputs) -> bool:
        """Whether the inputs after X are the prepared weights and biases,
        and no residual."""
        first, second = self.first, self.second
        rest = inputs[self.split:]
        expected = [first.w] + ([first.b] if self.split > 2 else []) + ([None] if first.fused else [])
        expected_rest = [second.w] + ([second.b] if len(rest) > 1 else []) + ([None] if second.fused else [])
        if len(rest) != len(expected_rest) or len(inputs) - len(rest) != len(expected) + 1:
            return False
        return all(a is b for a, b in zip(list(inputs[1:self.split]) + list(rest), expected + expected_rest))

    def _plan_for(self, x_shape: tuple) -> "_Plan | None":
        """:meth:`_plan` for X of ``x_shape``, made once per shape."""
        plan = self.plans.get(x_shape, _UNKNOWN)
        if plan is _UNKNOWN:
            plan = self.plans[x_shape] = self._plan(x_shape)
        return plan

    def _plan(self, x_shape: tuple) -> "_Plan | None":
        """What the fused kernel needs for inputs of ``x_shape``, or None
        where it does not serve them."""
        batch, chans, height, width = x_shape
        first, second = self.first, self.second
        wide, size = first.w.shape[0], height * width
        if chans != first.w.shape[1] or wide * size * 4 < FUSE_BYTES or not gemm.available() or batch < 1:
            return None
        block = max(8, min(BLOCK_BYTES // (size * 4), -(-wide // 4)) // 8 * 8)
        blocks = -(-wide // block)
        out_h, out_w = ((height + 1) // 2, (width + 1) // 2) if self.stride == 2 else (height, width)
        return _Plan(
            source=None, block=block, packs=np.empty((blocks, 0), np.float32),
            b1=np.zeros(blocks * block, np.float32),  # the last block's rows past ``wide`` read zeros
            template=gemm.strip_template(block, size, chans, size, True, False),
            out_shape=(batch, wide, out_h, out_w),
            kernels=gemm.kernel_addresses(gemm.host_isa(), "f32"),
            dw_kernels=depthwise_ir.kernel_addresses(self.stride),
            clamp1=NO_CLAMP if first.clamp is None else first.clamp, flags1=_FLAGS[first.clamp is not None],
            w2=readonly(second.w.reshape(wide, 3, 3)),  # read-only on every path: one compiled kernel
            b2=readonly(np.zeros(wide, np.float32) if second.b is None else second.b),
            clamp2=NO_CLAMP if second.clamp is None else second.clamp, flags2=_FLAGS[second.clamp is not None][1:])

    def _run(self, x: np.ndarray, plan: "_Plan") -> np.ndarray:
        self._refresh(plan)
        out = np.empty(plan.out_shape, np.float32)
        parallel_for(expand_depthwise, x.shape[0] * plan.packs.shape[0], x, plan.packs, plan.b1, plan.clamp1,
                     plan.flags1, plan.template, plan.kernels, plan.w2, plan.b2, out, plan.clamp2, plan.flags2,
                     plan.block, self.stride, plan.dw_kernels, grain=1)
        return out

    def _refresh(self, plan: "_Plan") -> None:
        """The plan's weight blocks packed from the weights as the unfused
        step finds them (W rewritten in place is repacked), and its first
        bias copied (read on every call, as the unfused step reads B)."""
        first = self.first
        wide, chans = first.w.shape[:2]
        source = first.packed()
        if source is not plan.source:
            blocks, block = plan.packs.shape[0], plan.block
            rows = np.zeros((blocks * block, chans), np.float32)
            rows[:wide] = first.w.reshape(wide, chans)
            plan.packs = np.stack([gemm.pack_weights(rows[j * block:(j + 1) * block]).data for j in range(blocks)])
            plan.source = source
        if first.b is not None:
            plan.b1[:wide] = first.b

    def lower(self, ctx, args, attrs) -> bool:
        """The fused step as one schedule operation (runtime.schedule), for
        what :meth:`__call__` would run fused, with frozen weights and biases."""
        x = args[0]
        first, second = self.first, self.second
        constants = [a for a in (first.w, first.b, second.w, second.b) if a is not None]
        if (not isinstance(x, Operand) or x.dtype != np.float32 or len(x.shape) != 4
                or not self._expected(args) or not all(map(ctx.frozen, constants))):
            return False
        plan = self._plan_for(x.shape)
        if plan is None:  # as the two steps, through a middle value of this step's own
            middle = first.out_shape(x.shape)
            if middle is None:
                return False
            middle = ctx.scratch(middle, np.float32)
            return (first.lower(ctx, args[:self.split], attrs["first"], out=middle)
                    and self.second.lower(ctx, [middle, *args[self.split:]], attrs["second"]))
        self._refresh(plan)
        out = ctx.output(0, plan.out_shape)
        batch, chans, height, width = x.shape
        wide, out_h, out_w = plan.out_shape[1:]
        blocks = plan.packs.shape[0]
        ctx.emit(EXPAND_DEPTHWISE, [*x.ref(), batch, chans, height, width, *ctx.pin(plan.packs), blocks,
                                    plan.packs.shape[1], *ctx.pin(plan.b1), plan.b1.size, *ctx.pin(plan.clamp1),
                                    first.clamp is not None, *ctx.pin(plan.template), *ctx.pin(plan.kernels),
                                    plan.kernels.size, *ctx.pin(plan.w2), *ctx.pin(plan.b2), *out.ref(), wide,
                                    out_h, out_w, *ctx.pin(plan.clamp2), second.clamp is not None, plan.block,
                                    self.stride, *ctx.pin(plan.dw_kernels)], batch * blocks)
        return True


@dataclass
class _Plan:
    """One input shape's fused-kernel arguments: the weight rows packed in
    blocks of ``block`` (from the packed-weights entry ``source``; zero rows
    pad the last block), the padded first bias, the strip plan, the output
    shape, the GEMM's and the depthwise plane kernels' tables, and each
    step's clamp and flags."""
    source: Any
    block: int
    packs: np.ndarray
    b1: np.ndarray
    template: np.ndarray
    out_shape: tuple
    kernels: np.ndarray
    dw_kernels: np.ndarray
    clamp1: np.ndarray
    flags1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    clamp2: np.ndarray
    flags2: np.ndarray


_FLAGS = {clamp: np.array([True, False, clamp], np.bool_) for clamp in (False, True)}
"""run_strip's (bias, residual, clamp) flags; ``[1:]`` are the depthwise
kernels' (residual, clamp)."""


@jit
def expand_depthwise(start, stop, x, packs, b1, clamp1, flags1, template, kernels, w2, b2, out, clamp2, flags2,
                      block, stride, dw_kernels):
    """Tasks [start, stop) (image n, block j of ``block`` channels): expand
    the block (the product of its packed weight rows ``packs[j]`` by the
    image, + ``b1``, clamped) into this call's buffer, then its depthwise
    convolution into ``out``'s planes of those channels."""
    batch, chans, height, width = x.shape
    wide, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    size, out_size = height * width, out_h * out_w
    blocks = packs.shape[0]
    buf = np.empty(block * size, np.float32)
    strip = buf.reshape(block, size)
    flat_out = out.reshape(-1)
    for t in range(start, min(stop, batch * blocks)):
        n, j = t // blocks, t % blocks
        c0 = j * block
        count = min(block, wide - c0)
        run_strip(template, kernels, packs[j], x[n].reshape(-1), strip, b1[c0:c0 + block], strip, clamp1, flags1)
        planes = buf[:count * size].reshape(1, count, height, width)
        first = (n * wide + c0) * out_size
        target = flat_out[first:first + count * out_size].reshape(1, count, out_h, out_w)
        depthwise_ir.depthwise_ir_planes(np.int64(0), count, planes, w2[c0:c0 + count], b2[c0:c0 + count], target,
                                         target, clamp2, flags2, dw_kernels, stride)


@drives(expand_depthwise)
@jit
def _expand_depthwise_team(team, state, role, spans, *args):
    index = team_enter(team, state, role)
    while index >= 0:
        call_unlinked(expand_depthwise, (spans[index, 0], spans[index, 1]) + args)
        index = team_next(team, True, role)
    return team_leave(team, state, role)
