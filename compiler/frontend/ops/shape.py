"""ONNX import handlers: shape and data movement.

Old opsets pass parameters as attributes that later became inputs (Squeeze
and Unsqueeze axes before 13, Split split before 13, Slice starts/ends/axes
before 10, Pad pads/value before 11): the handlers turn them into constant
inputs, the canonical form. Split always gets ``num_outputs`` (its kernel must
know how many outputs to make), and Dropout is imported for inference.
"""
from __future__ import annotations

import numpy as np

from compiler.frontend.context import NodeContext, handler


def _int64(values) -> np.ndarray:
    return np.array(values, dtype=np.int64).reshape(-1)


def _emit(ctx: NodeContext, inputs, attrs: dict | None = None) -> None:
    """Emit the canonical node; attributes the handler did not consume are unsupported."""
    if ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")
    ctx.emit_final(ctx.op_type, inputs, attrs)


@handler("Squeeze", "Unsqueeze")
def _squeeze(ctx: NodeContext) -> None:
    inputs = list(ctx.inputs)
    if ctx.op_version < 13:
        axes = ctx.pop_attr("axes")
        if axes is not None:
            inputs.append(ctx.const(_int64(axes), f"{ctx.name}_axes"))
        elif ctx.op_type == "Unsqueeze":
            raise ctx.error("the axes attribute is required")
    _emit(ctx, inputs)


@handler("Split")
def _split(ctx: NodeContext) -> None:
    inputs = [ctx.input(0)]
    if ctx.op_version < 13:
        split = ctx.pop_attr("split")
        if split is not None:
            inputs.append(ctx.const(_int64(split), f"{ctx.name}_split"))
    elif ctx.input(1) is not None:
        inputs.append(ctx.input(1))
    attrs = {"axis": ctx.pop_attr("axis", 0), "num_outputs": ctx.pop_attr("num_outputs", len(ctx.output_names))}
    _emit(ctx, inputs, attrs)


@handler("Slice")
def _slice(ctx: NodeContext) -> None:
    inputs = list(ctx.inputs)
    if ctx.op_version < 10:
        starts, ends, axes = (ctx.pop_attr(k) for k in ("starts", "ends", "axes"))
        if starts is None or ends is None:
            raise ctx.error("the starts and ends attributes are required")
        inputs += [ctx.const(_int64(starts), f"{ctx.name}_starts"), ctx.const(_int64(ends), f"{ctx.name}_ends")]
        if axes is not None:
            inputs.append(ctx.const(_int64(axes), f"{ctx.name}_axes"))
    _emit(ctx, inputs)


@handler("Pad")
def _pad(ctx: NodeContext) -> None:
    inputs = list(ctx.inputs)
    attrs = {"mode": ctx.pop_attr("mode", "constant")}
    if ctx.op_version < 11:
        pads = ctx.pop_attr("pads")
        if pads is None:
            raise ctx.error("the pads attribute is required")
        value = np.array(ctx.pop_attr("value", 0.0)).astype(ctx.input(0).type.dtype)
        inputs += [ctx.const(_int64(pads), f"{ctx.name}_pads"), ctx.const(value, f"{ctx.name}_value")]
    _emit(ctx, inputs, attrs)


@handler("Dropout")
def _dropout(ctx: NodeContext) -> None:
    """Inference Dropout is the identity. A runtime training_mode stays an
    input (the kernel refuses it unless the ratio is 0); the mask output is
    all ones: bool since opset 10, the data type before."""
    ctx.pop_attr("seed")
    ctx.pop_attr("ratio")
    if ctx.attrs:
        raise ctx.unsupported(f"attribute(s) {sorted(ctx.attrs)} are not supported")
    data = ctx.input(0)
    inputs = [data]
    if ctx.op_version >= 12 and ctx.input(2) is not None:
        inputs = _training_inputs(ctx)
    ctx.emit("Dropout", inputs, {}, outputs=[ctx.output_names[0]], num_outputs=1)
    if len(ctx.output_names) > 1 and ctx.output_names[1]:
        one = np.ones((), dtype=bool if ctx.op_version >= 10 else data.type.dtype)
        shape = ctx.emit("Shape", [data])[0]
        ctx.emit("Expand", [ctx.const(one, f"{ctx.name}_one"), shape], outputs=[ctx.output_names[1]])


def _training_inputs(ctx: NodeContext) -> list:
    """Dropout's inputs when training_mode is given. A runtime training_mode
    stays, with the ratio; a constant one that changes nothing (false, or
    ratio 0) leaves the data alone; a constant true with any other ratio is
    unsupported."""
    training, ratio = ctx.const_input(2), ctx.const_input(1)
    if training is None:
        return ctx.inputs[:3]
    if bool(training.reshape(-1)[0]):
        if ctx.input(1) is None or ratio is None or float(ratio.reshape(-1)[0]) != 0.0:
            raise ctx.unsupported("training_mode=true (random dropout) is not supported; Tessera runs inference only")
    return [ctx.input(0)]
