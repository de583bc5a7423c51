"""CPU kernels: recurrent layers (RNN, GRU, LSTM).

Per direction, the input projection X·W of every time step is one BLAS GEMM
(both directions at once); each step then does one small GEMM H·R (two for a
GRU without ``linear_before_reset``) and one Numba gate kernel that applies
the activations, updates the state and writes Y.

Time steps are addressed per batch entry through row-index arrays, so one
code path serves both layouts, both directions and ``sequence_lens``: entry
b at step s reads time ``s`` (forward) or ``len[b]-1-s`` (reverse), and is
idle (state kept, Y left zero) once ``s >= len[b]``. As in onnxruntime, an
entry of length 0 gets zero Y_h and Y_c.

Activation alpha/beta values are consumed in list order by the activations
that take them (onnxruntime's reading of the spec); a missing one takes the
default of the ONNX operator of the same name.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from runtime.errors import KernelError
from runtime.jit import jit, readonly
from runtime.kernels import activations as act
from runtime.kernels.registry import kernel
from runtime.parallel import parallel_for

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}

(RELU, TANH, SIGMOID, AFFINE, LEAKY_RELU, THRESHOLDED_RELU, SCALED_TANH, HARD_SIGMOID, ELU, SOFTSIGN,
 SOFTPLUS) = range(11)
# lower-case name -> (code in _activate, default alpha or None if unused, default beta or None)
ACTIVATIONS = {
    "relu": (RELU, None, None), "tanh": (TANH, None, None), "sigmoid": (SIGMOID, None, None),
    "affine": (AFFINE, 1.0, 0.0), "leakyrelu": (LEAKY_RELU, 0.01, None),
    "thresholdedrelu": (THRESHOLDED_RELU, 1.0, None), "scaledtanh": (SCALED_TANH, 1.0, 1.0),
    "hardsigmoid": (HARD_SIGMOID, 0.2, 0.5), "elu": (ELU, 1.0, None), "softsign": (SOFTSIGN, None, None),
    "softplus": (SOFTPLUS, None, None),
}


def activation_table(op: str, attrs: Mapping, num_directions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, alpha, beta), each of shape [num_directions, functions per
    direction], from the ONNX attributes; a clear error for bad names or counts."""
    names = attrs["activations"]
    count = len(DEFAULT_ACTIVATIONS[op])
    if names is None:
        names = DEFAULT_ACTIVATIONS[op] * num_directions
    if len(names) != count * num_directions:
        raise KernelError(f"{op} takes {count} activation(s) per direction ({count * num_directions} in all), "
                          f"got {list(names)}")
    alphas = list(attrs["activation_alpha"] or [])
    betas = list(attrs["activation_beta"] or [])
    codes, alpha, beta = [], [], []
    for name in names:
        entry = ACTIVATIONS.get(str(name).lower())
        if entry is None:
            raise KernelError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
        code, default_alpha, default_beta = entry
        codes.append(code)
        alpha.append(_take(alphas, default_alpha))
        beta.append(_take(betas, default_beta))
    shape = (num_directions, count)
    return (np.array(codes, np.int64).reshape(shape), np.array(alpha, np.float64).reshape(shape),
            np.array(beta, np.float64).reshape(shape))


def _take(values: list, default: float | None) -> float:
    """The next listed parameter for an activation that reads one."""
    if default is None:
        return 0.0
    return float(values.pop(0)) if values else default


@kernel("RNN")
def rnn(inputs, attrs):
    return _recurrent("RNN", inputs, attrs)


@kernel("GRU")
def gru(inputs, attrs):
    return _recurrent("GRU", inputs, attrs)


@kernel("LSTM")
def lstm(inputs, attrs):
    return _recurrent("LSTM", inputs, attrs)


class _Layer:
    """The validated operands of one recurrent node, in compute dtype."""

    def __init__(self, op: str, inputs: Sequence[np.ndarray | None], attrs: Mapping):
        x, w, r, b, lens, h0, c0, p = (list(inputs) + [None] * 8)[:8]
        self.op, self.gates = op, GATES[op]
        if attrs["direction"] not in ("forward", "reverse", "bidirectional"):
            raise KernelError(f"direction={attrs['direction']!r} must be forward, reverse or bidirectional")
        if attrs["layout"] not in (0, 1):
            raise KernelError(f"layout={attrs['layout']} must be 0 or 1")
        self.dirs = 2 if attrs["direction"] == "bidirectional" else 1
        self.layout = attrs["layout"]
        if x is None or w is None or r is None or x.ndim != 3 or w.ndim != 3 or r.ndim != 3:
            raise KernelError("X, W and R must be given, each of rank 3")
        self.out_dtype = x.dtype
        self.dtype = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
        self.seq, self.batch = (x.shape[0], x.shape[1]) if self.layout == 0 else (x.shape[1], x.shape[0])
        self.inputs_size = x.shape[2]
        self.hidden = r.shape[2]
        if attrs["hidden_size"] is not None and attrs["hidden_size"] != self.hidden:
            raise KernelError(f"hidden_size={attrs['hidden_size']} but R has shape {list(r.shape)}")
        rows = self.gates * self.hidden
        self.x = self._operand(x, "X", x.shape)
        self.w = self._operand(w, "W", (self.dirs, rows, self.inputs_size))
        self.r = self._operand(r, "R", (self.dirs, rows, self.hidden))
        self.b = self._optional(b, "B", (self.dirs, 2 * rows))
        self.p = self._optional(p, "P", (self.dirs, 3 * self.hidden))
        state = (self.dirs, self.batch, self.hidden) if self.layout == 0 else (self.batch, self.dirs, self.hidden)
        self.h0 = self._state(h0, "initial_h", state)
        self.c0 = self._state(c0, "initial_c", state)
        self.lens = self._lengths(lens)
        self.acts, self.alpha, self.beta = activation_table(op, attrs, self.dirs)
        self.clip = 0.0 if attrs["clip"] is None else float(attrs["clip"])

    def _operand(self, array: np.ndarray, name: str, shape: tuple) -> np.ndarray:
        if array.dtype.kind != "f":
            raise KernelError(f"{name} must be a float tensor, got {array.dtype}")
        if array.shape != tuple(shape):
            raise KernelError(f"{name} must have shape {list(shape)}, got {list(array.shape)}")
        return np.ascontiguousarray(array, dtype=self.dtype)

    def _optional(self, array, name: str, shape: tuple) -> np.ndarray:
        if array is None:
            return np.zeros(shape, self.dtype)
        return self._operand(array, name, shape)

    def _state(self, array, name: str, shape: tuple) -> np.ndarray:
        """An initial state as [dirs, batch, hidden]."""
        array = self._optional(array, name, shape)
        return array if self.layout == 0 else np.ascontiguousarray(array.transpose(1, 0, 2))

    def _lengths(self, lens) -> np.ndarray:
        if lens is None:
            return np.full(self.batch, self.seq, np.int64)
        if lens.dtype.kind not in "iu" or lens.shape != (self.batch,):
            raise KernelError(f"sequence_lens must be an integer tensor of shape [{self.batch}], "
                              f"got {lens.dtype} {list(lens.shape)}")
        lens = lens.astype(np.int64)
        if np.any(lens < 0) or np.any(lens > self.seq):
            raise KernelError(f"sequence_lens {lens.tolist()} must lie in [0, {self.seq}]")
        return lens

    def rows(self, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
        """For each step s and batch entry b: the time index it reads, and
        whether it is active (s < len[b])."""
        steps = np.arange(self.seq, dtype=np.int64)[:, None]
        active = steps < self.lens[None, :]
        time = self.lens[None, :] - 1 - steps if reverse else np.broadcast_to(steps, active.shape)
        return time, active


def _recurrent(op: str, inputs, attrs) -> tuple[np.ndarray, ...]:
    layer = _Layer(op, inputs, attrs)
    seq, batch, hidden, dirs = layer.seq, layer.batch, layer.hidden, layer.dirs
    xp = _input_projection(layer, attrs)
    y = np.zeros((seq * dirs * batch, hidden), layer.dtype)
    h_final = np.empty((dirs, batch, hidden), layer.dtype)
    c_final = np.empty((dirs, batch, hidden), layer.dtype)
    x_stride = (batch, 1) if layer.layout == 0 else (1, seq)  # row of (t, b) in xp
    y_stride = (dirs * batch, batch, 1) if layer.layout == 0 else (dirs, 1, seq * dirs)  # (t, d, b)
    for d in range(dirs):
        reverse = attrs["direction"] == "reverse" or d == 1
        time, active = layer.rows(reverse)
        batch_index = np.arange(batch, dtype=np.int64)[None, :]
        xrows = np.where(active, time * x_stride[0] + batch_index * x_stride[1], -1)
        yrows = np.where(active, time * y_stride[0] + d * y_stride[1] + batch_index * y_stride[2], -1)
        h, c = layer.h0[d].copy(), layer.c0[d].copy()
        _run_direction(layer, attrs, d, xp, np.ascontiguousarray(xrows), np.ascontiguousarray(yrows), h, c, y)
        h_final[d], c_final[d] = h, c
    empty = layer.lens == 0
    h_final[:, empty] = 0
    c_final[:, empty] = 0
    return _outputs(layer, y, h_final, c_final)


def _input_projection(layer: _Layer, attrs) -> np.ndarray:
    """X·W (plus the biases that are plain additions) for every time step and
    direction: rows in X's own (t, b) order, columns [dirs * gates * hidden]."""
    x2 = layer.x.reshape(-1, layer.inputs_size)
    w2 = layer.w.reshape(-1, layer.inputs_size)
    xp = np.dot(x2, w2.T)
    rows = layer.gates * layer.hidden
    if layer.op == "GRU" and attrs["linear_before_reset"]:  # Rbh stays inside r * (...)
        bias = layer.b[:, :rows].copy()
        bias[:, :2 * layer.hidden] += layer.b[:, rows:rows + 2 * layer.hidden]
    else:
        bias = layer.b[:, :rows] + layer.b[:, rows:]
    xp += bias.reshape(-1)
    return xp


def _run_direction(layer: _Layer, attrs, d: int, xp, xrows, yrows, h, c, y) -> None:
    """All time steps of direction ``d``: updates h (and c) in place, fills y."""
    funcs = np.ascontiguousarray(np.stack([layer.acts[d], layer.alpha[d], layer.beta[d]], axis=1), layer.dtype)
    xcol = d * layer.gates * layer.hidden
    steps = int(layer.lens.max(initial=0))
    grain = max(1, _GRAIN // (layer.gates * layer.hidden))
    if layer.op == "GRU":
        _gru_direction(layer, attrs, d, xp, xrows, yrows, h, y, (xcol, funcs, layer.clip), steps, grain)
        return
    rt = np.ascontiguousarray(layer.r[d].T)
    peepholes = readonly(layer.p[d].reshape(3, -1))  # frozen or not: one compiled _lstm_rows
    forget = bool(attrs.get("input_forget", 0))
    for s in range(steps):
        hr = np.dot(h, rt)
        if layer.op == "LSTM":
            parallel_for(_lstm_rows, layer.batch, xp, xrows[s], xcol, hr, peepholes, h, c, y, yrows[s], funcs,
                         layer.clip, forget, grain=grain)
        else:
            parallel_for(_rnn_rows, layer.batch, xp, xrows[s], xcol, hr, h, y, yrows[s], funcs, layer.clip,
                         grain=grain)


def _gru_direction(layer: _Layer, attrs, d: int, xp, xrows, yrows, h, y, common, steps: int, grain: int) -> None:
    """The GRU steps of direction ``d``. Without linear_before_reset the
    candidate needs (r * H)·Rh, a second GEMM after the gate kernel."""
    hidden = layer.hidden
    linear = bool(attrs["linear_before_reset"])
    r = layer.r[d]
    rt = np.ascontiguousarray((r if linear else r[:2 * hidden]).T)
    rht = np.ascontiguousarray(r[2 * hidden:].T)
    rbh = np.ascontiguousarray(layer.b[d, 5 * hidden:] if linear else np.zeros(hidden, layer.dtype))
    z = np.zeros((layer.batch, hidden), layer.dtype)
    reset = np.zeros((layer.batch, hidden), layer.dtype)
    ones = np.ones((layer.batch, hidden), layer.dtype)
    for s in range(steps):
        hr = np.dot(h, rt)
        parallel_for(_gru_gate_rows, layer.batch, xp, xrows[s], hr, h, z, reset, *common, not linear, grain=grain)
        if linear:
            parallel_for(_gru_update_rows, layer.batch, xp, xrows[s], hr, 2 * hidden, reset, rbh, z, h, y,
                         yrows[s], *common, grain=grain)
        else:
            parallel_for(_gru_update_rows, layer.batch, xp, xrows[s], np.dot(reset, rht), 0, ones, rbh, z, h, y,
                         yrows[s], *common, grain=grain)


def _outputs(layer: _Layer, y, h_final, c_final) -> tuple[np.ndarray, ...]:
    """Y, Y_h (and Y_c) in the node's layout and dtype."""
    if layer.layout == 0:
        y = y.reshape(layer.seq, layer.dirs, layer.batch, layer.hidden)
    else:
        y = y.reshape(layer.batch, layer.seq, layer.dirs, layer.hidden)
        h_final = np.ascontiguousarray(h_final.transpose(1, 0, 2))
        c_final = np.ascontiguousarray(c_final.transpose(1, 0, 2))
    results = [y, h_final] + ([c_final] if layer.op == "LSTM" else [])
    return tuple(a.astype(layer.out_dtype, copy=False) for a in results)


# ---------------------------------------------------------------- Numba kernels
# Gate kernels work on batch rows [start, stop) (for parallel_for). Per row
# they gather the pre-activations of all gates into a scratch row of the
# layer's dtype and apply each activation in its own loop, through the scalar
# definitions the element-wise kernels use (runtime/kernels/activations.py),
# so a gate gives the bits the standalone op gives on the same values.
# ``funcs[k]`` = (code, alpha, beta) of activation k, in the layer's dtype;
# ``clip`` <= 0 means no clipping.

_GRAIN = 16384  # gate elements per thread below which a step stays on one thread


@jit
def _activate(code, x, alpha, beta):
    """One activation function by code (see ACTIVATIONS)."""
    if code == RELU:
        return act.relu(x)
    if code == AFFINE:
        return alpha * x + beta
    if code == LEAKY_RELU:
        return act.leaky_relu(x, alpha)
    if code == THRESHOLDED_RELU:
        return act.thresholded_relu(x, alpha)
    if code == SCALED_TANH:
        return alpha * act.tanh(beta * x)
    if code == HARD_SIGMOID:
        return act.hard_sigmoid(x, alpha, beta)
    if code == ELU:
        return act.elu(x, alpha)
    if code == SOFTSIGN:
        return act.softsign(x)
    return act.softplus(x)  # SOFTPLUS


@jit
def _apply(funcs, k, g, clip):
    """g[:] = activation k of g (clipped first when clip > 0)."""
    if clip > 0:
        for i in range(g.size):
            g[i] = min(max(g[i], -clip), clip)
    code = int(funcs[k, 0])
    if code == TANH:
        for i in range(g.size):
            g[i] = act.tanh(g[i])
    elif code == SIGMOID:
        for i in range(g.size):
            g[i] = act.sigmoid(g[i])
    else:
        alpha, beta = funcs[k, 1], funcs[k, 2]
        for i in range(g.size):
            g[i] = _activate(code, g[i], alpha, beta)


@jit(inline="always")
def _gather(g, xp_row, hr_row):
    """g = x·W row + H·R row (the biases are in the x·W rows)."""
    for k in range(g.size):
        g[k] = xp_row[k] + hr_row[k]


@jit
def _rnn_rows(start, stop, xp, xrow, xcol, hr, h, y, yrow, funcs, clip):
    """H = f(x·W + H·R + b) for the active rows."""
    hidden = h.shape[1]
    g = np.empty(hidden, h.dtype)
    for b in range(start, stop):
        if xrow[b] < 0:
            continue
        _gather(g, xp[xrow[b], xcol:xcol + hidden], hr[b])
        _apply(funcs, np.int64(0), g, clip)
        h_row, y_row = h[b], y[yrow[b]]
        for j in range(hidden):
            h_row[j] = g[j]
            y_row[j] = g[j]


@jit
def _lstm_rows(start, stop, xp, xrow, xcol, hr, p, h, c, y, yrow, funcs, clip, input_forget):
    """One LSTM step (gates i, o, f, c; peepholes i, o, f) for the active rows."""
    hidden = h.shape[1]
    g = np.empty(5 * hidden, h.dtype)  # gates i, o, f, c, then h(C)
    gi, go, gf = g[:hidden], g[hidden:2 * hidden], g[2 * hidden:3 * hidden]
    gc, hc = g[3 * hidden:4 * hidden], g[4 * hidden:]
    pi, po, pf = p[0], p[1], p[2]
    for b in range(start, stop):
        if xrow[b] < 0:
            continue
        _gather(g[:4 * hidden], xp[xrow[b], xcol:xcol + 4 * hidden], hr[b])
        c_row, h_row, y_row = c[b], h[b], y[yrow[b]]
        for j in range(hidden):
            gi[j] += pi[j] * c_row[j]
            gf[j] += pf[j] * c_row[j]
        _apply(funcs, np.int64(0), gi, clip)
        if input_forget:
            for j in range(hidden):
                gf[j] = 1.0 - gi[j]
        else:
            _apply(funcs, np.int64(0), gf, clip)
        _apply(funcs, np.int64(1), gc, clip)
        for j in range(hidden):
            c_row[j] = gf[j] * c_row[j] + gi[j] * gc[j]
            go[j] += po[j] * c_row[j]
            hc[j] = c_row[j]
        _apply(funcs, np.int64(0), go, clip)
        _apply(funcs, np.int64(2), hc, 0.0)
        for j in range(hidden):
            h_row[j] = go[j] * hc[j]
            y_row[j] = h_row[j]


@jit
def _gru_gate_rows(start, stop, xp, xrow, hr, h, z, reset, xcol, funcs, clip, times_h):
    """Update gate z and reset gate r (or r * H when ``times_h``) for the active rows."""
    hidden = h.shape[1]
    g = np.empty(2 * hidden, h.dtype)
    for b in range(start, stop):
        if xrow[b] < 0:
            continue
        _gather(g, xp[xrow[b], xcol:xcol + 2 * hidden], hr[b, :2 * hidden])
        _apply(funcs, np.int64(0), g, clip)
        h_row, z_row, reset_row = h[b], z[b], reset[b]
        for j in range(hidden):
            z_row[j] = g[j]
            reset_row[j] = g[hidden + j] * h_row[j] if times_h else g[hidden + j]


@jit
def _gru_update_rows(start, stop, xp, xrow, hh, hcol, reset, rbh, z, h, y, yrow, xcol, funcs, clip):
    """H = (1 - z) * g(x·Wh + reset * (hh + Rbh)) + z * H for the active rows."""
    hidden = h.shape[1]
    g = np.empty(hidden, h.dtype)
    for b in range(start, stop):
        if xrow[b] < 0:
            continue
        xh, hh_row, reset_row = xp[xrow[b], xcol + 2 * hidden:xcol + 3 * hidden], hh[b, hcol:hcol + hidden], reset[b]
        for j in range(hidden):
            g[j] = xh[j] + reset_row[j] * (hh_row[j] + rbh[j])
        _apply(funcs, np.int64(1), g, clip)
        h_row, z_row, y_row = h[b], z[b], y[yrow[b]]
        for j in range(hidden):
            h_row[j] = (1.0 - z_row[j]) * g[j] + z_row[j] * h_row[j]
            y_row[j] = h_row[j]
