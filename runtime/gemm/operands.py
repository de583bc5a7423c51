"""The operands and output of a GEMM, checked before anything runs: shapes,
dtypes and packed forms of A and B, the output array (given or new), the
row biases, the float epilogue (residual, clamp and gate) and where the kernels may
write (:class:`Target`). Shared by the float (runtime.gemm.sgemm) and the
integer (runtime.gemm.igemm) entry points; every error names the op and
the operand."""
from __future__ import annotations

import numpy as np

from runtime.errors import KernelError
from runtime.gemm.pack import check_packed


def check_array(name: str, x, dtypes: tuple) -> np.ndarray:
    """``x`` if it is a numpy array of one of ``dtypes``; KernelError otherwise."""
    if not isinstance(x, np.ndarray):
        raise KernelError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype not in dtypes:
        raise KernelError(f"{name} must be {' or '.join(np.dtype(d).name for d in dtypes)}, got {x.dtype}")
    return x


def operand_shape(op: str, name: str, x, packed, side: str, batched: bool, dtypes: tuple) -> tuple[int, int, int]:
    """(batch, rows, cols) of an operand given as an array or packed."""
    rank = 3 if batched else 2
    if packed is not None:
        packed = check_packed(f"{op}: packed_{name}", packed, side, batched, dtypes[0])
        if x is not None and (not isinstance(x, np.ndarray) or tuple(x.shape) != packed.shape):
            raise KernelError(f"{op}: {name} has shape {list(np.shape(x))} but packed_{name} was packed from "
                              f"shape {list(packed.shape)}")
        return (packed.batch, *packed.matrix)
    if x is None:
        raise KernelError(f"{op}: {name} is missing (give the array or packed_{name})")
    check_array(f"{op}: {name}", x, dtypes)
    if x.ndim != rank:
        raise KernelError(f"{op}: {name} must be {rank}-D, got shape {list(x.shape)}")
    return (x.shape[0] if batched else 1, x.shape[-2], x.shape[-1])


def output(op: str, out, shape: tuple, dtype, accumulate: bool) -> np.ndarray:
    """The array to write: ``out`` checked, or a new one."""
    if out is None:
        if accumulate:
            raise KernelError(f"{op}: accumulate=True needs out")
        return np.empty(shape, dtype)
    check_array(f"{op}: out", out, (dtype,))
    if tuple(out.shape) != shape:
        raise KernelError(f"{op}: out has shape {list(out.shape)}, expected {list(shape)}")
    if not out.flags.writeable:
        raise KernelError(f"{op}: out is read-only")
    return out


def row_bias(op: str, bias, batch: int, rows: int, dtype, batched: bool) -> np.ndarray | None:
    """The bias as a C-contiguous (batch, rows) array, or None."""
    if bias is None:
        return None
    check_array(f"{op}: bias", bias, (dtype,))
    shape = (batch, rows) if batched else (rows,)
    if tuple(bias.shape) != shape:
        raise KernelError(f"{op}: bias has shape {list(bias.shape)}, expected {list(shape)}")
    return np.ascontiguousarray(bias).reshape(batch, rows)


def direct_target(out: np.ndarray, inputs) -> bool:
    """Whether the kernels can store straight into ``out``: unit column
    stride, non-negative row and batch strides, no overlap with inputs."""
    size = out.itemsize
    if out.strides[-1] != size or any(s < 0 or s % size for s in out.strides):
        return False
    return not any(isinstance(x, np.ndarray) and np.may_share_memory(out, x) for x in inputs)


def plan_product(op: str, left, right, out, bias, accumulate: bool, batched: bool, dtype, max_depth: int = 0):
    """Checked operand shapes (``left`` / ``right``: array, packed form,
    allowed dtypes; a depth of at most ``max_depth`` when given, where
    integer sums could overflow past it), the output array and the row biases (in ``dtype``);
    ``done`` when no kernel has to run (an empty output, or depth 0: the
    output is then already filled)."""
    batch, m, depth = operand_shape(op, "a", *left[:2], "left", batched, left[2])
    if max_depth and depth > max_depth:
        raise KernelError(f"{op}: depth {depth} exceeds {max_depth} (the accumulator could overflow)")
    b_batch, b_rows, n = operand_shape(op, "b", *right[:2], "right", batched, right[2])
    if (b_batch, b_rows) != (batch, depth):
        raise KernelError(f"{op}: cannot multiply a {_dims(batch, m, depth, batched)} by "
                          f"b {_dims(b_batch, b_rows, n, batched)}")
    out = output(op, out, (batch, m, n) if batched else (m, n), dtype, accumulate)
    biases = row_bias(op, bias, batch, m, dtype, batched)
    if out.size and not depth:
        fill_empty_product(out, biases, accumulate)
    return (batch, m, n, depth), out, biases, out.size == 0 or depth == 0


def fill_empty_product(out: np.ndarray, biases: np.ndarray | None, accumulate: bool) -> None:
    """``out`` for a product of depth 0: the bias (or 0), or plus it."""
    bias = 0 if biases is None else biases.reshape(out.shape[:-1] + (1,))
    if accumulate:
        out += bias
    else:
        out[...] = bias


class Epilogue:
    """The float epilogue of a product: a residual to add and a clamp
    array, both optional, checked: ``residual`` (float32, the output's
    shape, unit column stride and non-negative strides, sharing no memory
    with the output: else copied) and ``clamp`` (:func:`clamp_array`) are
    arrays or None."""

    def __init__(self, residual: np.ndarray | None, clamp: np.ndarray | None):
        self.residual, self.clamp = residual, clamp

    @classmethod
    def of(cls, op: str, residual, clamp, out: np.ndarray) -> "Epilogue":
        if residual is not None:
            check_array(f"{op}: residual", residual, (np.dtype(np.float32),))
            if residual.shape != out.shape:
                raise KernelError(f"{op}: residual has shape {list(residual.shape)}, expected {list(out.shape)}")
            if not direct_target(residual, (out,)):
                residual = np.array(residual, order="C")
        return cls(residual, clamp_array(op, clamp))

    def apply(self, out: np.ndarray) -> None:
        """The epilogue on an already computed ``out`` (empty or depth-0 products)."""
        if self.residual is not None:
            out += self.residual
        if self.clamp is not None:
            np.minimum(np.maximum(out, self.clamp[0], out=out), self.clamp[1], out=out)
            apply_gate(out, self.clamp)


CLAMP_SIZE = 5
"""Floats in a clamp array, ``[low, high, alpha, beta, gate]``: the kernels'
epilogue clamps to ``[low, high]`` (numpy's ``maximum`` then ``minimum``:
NaN stays NaN; ±inf bounds clamp nothing), then applies the gate, if any:
``HARD_SIGMOID`` gives ``g = unit_clamp(alpha * v + beta)``, ``HARD_SWISH``
gives ``v * g`` (runtime.kernels.activations' ``hard_sigmoid`` and
``hard_swish``: each a float32 operation rounded on its own, NaN kept).
A HardSwish after a convolution is computed while its tile is in cache."""
NO_GATE, HARD_SIGMOID, HARD_SWISH = 0, 1, 2
GATES = {"HardSigmoid": HARD_SIGMOID, "HardSwish": HARD_SWISH}
"""The gates by ONNX op name."""


def clamp_array(op: str, clamp, gate=None) -> np.ndarray | None:
    """The float32 clamp array (:data:`CLAMP_SIZE`) of ``clamp`` = (low,
    high) or None (no bounds) and ``gate`` = (op name in :data:`GATES`,
    alpha, beta) or None; ``clamp`` may also be such an array already
    (then ``gate`` must be None). None when there is neither."""
    if clamp is not None and len(clamp) == CLAMP_SIZE and gate is None:
        array = np.array(clamp, np.float32)
        if array[4] not in (NO_GATE, HARD_SIGMOID, HARD_SWISH) or np.isnan(array[:2]).any():
            raise KernelError(f"{op}: not a clamp array: {clamp!r:.80}")
        return array
    if clamp is None and gate is None:
        return None
    if clamp is not None and (len(clamp) != 2 or not all(isinstance(v, (int, float, np.floating)) for v in clamp)):
        raise KernelError(f"{op}: clamp must be (low, high) numbers, got {clamp!r:.60}")
    if gate is not None and (not isinstance(gate, (tuple, list)) or len(gate) != 3 or gate[0] not in GATES
                             or not all(isinstance(v, (int, float, np.floating)) for v in gate[1:])):
        raise KernelError(f"{op}: gate must be (one of {sorted(GATES)}, alpha, beta), got {gate!r:.60}")
    low, high = (-np.inf, np.inf) if clamp is None else clamp
    kind, alpha, beta = (NO_GATE, 0.0, 0.0) if gate is None else (GATES[gate[0]], *gate[1:])
    with np.errstate(over="ignore"):
        return np.array([low, high, alpha, beta, kind], np.float32)


def apply_gate(out: np.ndarray, clamp: np.ndarray) -> None:
    """The gate of a clamp array on float32 ``out``, in place, in numpy:
    the kernels' float32 operations, in the same order."""
    kind = clamp[4]
    if kind == NO_GATE:
        return
    g = out * clamp[2]
    g += clamp[3]
    g[g < 0] = 0
    g[g > 1] = 1
    if kind == HARD_SWISH:
        out *= g
    else:
        out[...] = g


def _dims(batch: int, rows: int, cols: int, batched: bool) -> str:
    return str([batch, rows, cols] if batched else [rows, cols])


class Target:
    """The array the kernels write: ``out`` itself, or a scratch copy that
    goes back to ``out`` on exit (for a strided or overlapping ``out``)."""

    def __init__(self, out: np.ndarray, inputs):
        self.out = out
        self.array = out if direct_target(out, inputs) else np.array(out, order="C")

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, *exc) -> None:
        if self.array is not self.out and exc[0] is None:
            self.out[...] = self.array
