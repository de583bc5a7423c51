"""Op definitions: recurrent layers (RNN, GRU, LSTM).

Each op always has all its outputs (Y, Y_h and, for LSTM, Y_c): the kernel
computes them together anyway, and an ONNX node that leaves one out simply
never reads it. Shapes follow from X, R and the ``layout``/``direction``
attributes; ``activations``, ``activation_alpha`` and ``activation_beta`` keep
their ONNX meaning and are checked here with the kernel's own reading of them.
"""
from __future__ import annotations

import numpy as np

from ir.ops.common import FLOAT_TYPES
from ir.registry import InferContext, Pattern, register_op
from ir.types import Dim, TensorType
from runtime.errors import KernelError
from runtime.kernels.rnn import GATES, activation_table

DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}

_COMMON_ATTRS = {"activation_alpha": None, "activation_beta": None, "activations": None, "clip": None,
                 "direction": "forward", "hidden_size": None, "layout": 0}


def _rnn_types(ctx: InferContext) -> list[TensorType]:
    """Y, Y_h (and Y_c for LSTM) of one recurrent node."""
    x = _float_input(ctx, 0, "X")
    gates = GATES[ctx.op]
    dirs = _num_directions(ctx)
    hidden = _hidden_size(ctx)
    layout = ctx.attrs["layout"]
    if layout not in (0, 1):
        raise ctx.error(f"layout={layout} must be 0 or 1")
    seq, batch = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
    _check_weights(ctx, dirs, gates, hidden, x.shape[2])
    _check_state_inputs(ctx, dirs, batch, hidden, layout, seq)
    _check_activations(ctx, dirs)
    if ctx.attrs["clip"] is not None and not ctx.attrs["clip"] > 0:
        raise ctx.error(f"clip={ctx.attrs['clip']} must be positive")
    if layout == 0:
        y, state = [seq, dirs, batch, hidden], [dirs, batch, hidden]
    else:
        y, state = [batch, seq, dirs, hidden], [batch, dirs, hidden]
    outputs = [TensorType(y, x.dtype), TensorType(state, x.dtype)]
    if ctx.op == "LSTM":
        outputs.append(TensorType(state, x.dtype))
    return outputs


def _float_input(ctx: InferContext, index: int, name: str, rank: int = 3) -> TensorType:
    t = ctx.type(index)
    if t.dtype not in FLOAT_TYPES:
        raise ctx.error(f"{name} (input {index}) must be a float tensor, got {t}")
    if t.rank != rank:
        raise ctx.error(f"{name} (input {index}) must have rank {rank}, got {t}")
    if index and t.dtype != ctx.type(0).dtype:
        raise ctx.error(f"{name} (input {index}) has dtype {t}, X has {ctx.type(0)}")
    return t


def _num_directions(ctx: InferContext) -> int:
    direction = ctx.attrs["direction"]
    if direction not in DIRECTIONS:
        raise ctx.error(f"direction={direction!r} must be one of {sorted(DIRECTIONS)}")
    return DIRECTIONS[direction]


def _hidden_size(ctx: InferContext) -> int:
    """hidden_size from the attribute, checked against R, or from R alone."""
    r = _float_input(ctx, 2, "R")
    given = ctx.attrs["hidden_size"]
    if given is not None and given <= 0:
        raise ctx.error(f"hidden_size={given} must be positive")
    if r.shape[2] is None and given is None:
        raise ctx.error(f"hidden_size is not given and R {r} does not tell it")
    if given is not None and r.shape[2] is not None and r.shape[2] != given:
        raise ctx.error(f"hidden_size={given} but R {r} has {r.shape[2]} columns")
    return given if given is not None else r.shape[2]


def _check_dims(ctx: InferContext, index: int, name: str, want: list[Dim]) -> None:
    have = ctx.shape(index)
    if len(have) != len(want) or any(h is not None and w is not None and h != w for h, w in zip(have, want)):
        shown = ",".join("?" if d is None else str(d) for d in want)
        raise ctx.error(f"{name} (input {index}) must have shape [{shown}], got {ctx.type(index)}")


def _check_weights(ctx: InferContext, dirs: int, gates: int, hidden: int, inputs: Dim) -> None:
    _float_input(ctx, 1, "W")
    _check_dims(ctx, 1, "W", [dirs, gates * hidden, inputs])
    _check_dims(ctx, 2, "R", [dirs, gates * hidden, hidden])
    if ctx.has(3):
        _float_input(ctx, 3, "B", rank=2)
        _check_dims(ctx, 3, "B", [dirs, 2 * gates * hidden])
    if ctx.op == "LSTM" and ctx.has(7):
        _float_input(ctx, 7, "P", rank=2)
        _check_dims(ctx, 7, "P", [dirs, 3 * hidden])


def _check_state_inputs(ctx: InferContext, dirs: int, batch: Dim, hidden: int, layout: int, seq: Dim) -> None:
    state = [dirs, batch, hidden] if layout == 0 else [batch, dirs, hidden]
    if ctx.has(4):
        lens = ctx.type(4)
        if lens.dtype != np.int32 or lens.rank != 1:
            raise ctx.error(f"sequence_lens (input 4) must be a 1-D int32 tensor, got {lens}")
        _check_dims(ctx, 4, "sequence_lens", [batch])
        _check_constant_lengths(ctx, seq)
    for index, name in ((5, "initial_h"), (6, "initial_c")):
        if ctx.has(index):
            _float_input(ctx, index, name)
            _check_dims(ctx, index, name, state)


def _check_constant_lengths(ctx: InferContext, seq: Dim) -> None:
    lens = ctx.const(4)
    if lens is not None and seq is not None and (np.any(lens < 0) or np.any(lens > seq)):
        raise ctx.error(f"sequence_lens {lens.tolist()} must lie in [0, {seq}]")


def _check_activations(ctx: InferContext, dirs: int) -> None:
    try:
        activation_table(ctx.op, ctx.attrs, dirs)
    except KernelError as exc:
        raise ctx.error(str(exc)) from None


register_op("RNN", _rnn_types, Pattern.OPAQUE, inputs=(3, 6), outputs=2, attrs=dict(_COMMON_ATTRS),
            doc="Elman RNN; all outputs always present.")
register_op("GRU", _rnn_types, Pattern.OPAQUE, inputs=(3, 6), outputs=2,
            attrs={**_COMMON_ATTRS, "linear_before_reset": 0}, doc="GRU; all outputs always present.")
register_op("LSTM", _rnn_types, Pattern.OPAQUE, inputs=(3, 8), outputs=3,
            attrs={**_COMMON_ATTRS, "input_forget": 0}, doc="LSTM; all outputs always present.")
