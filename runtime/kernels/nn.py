"""CPU kernels: convolutions and matrix products (Conv, ConvTranspose, Gemm,
MatMul, Einsum), and FusedConv: a Conv with its element-wise tail (bias,
residual add, ReLU or clip, and, fused with the FusedElementwise step after
it, HardSigmoid or HardSwish) done on the output tiles as they are computed.
float32 Gemm and MatMul run on Tessera's GEMM (:mod:`runtime.gemm`,
:mod:`runtime.kernels.nn_matmul`), so that no multithreaded OpenBLAS call
leaves a worker spinning on a core the next convolutions need.

Two plain functions are public API for other kernel families (the quantized
ops compute exact integer convolutions and products in float64 through them):
``conv_nd`` (from :mod:`runtime.kernels.nn_conv`) and :func:`matmul`.
"""
from __future__ import annotations

import numpy as np

from runtime import gemm as gemm_engine
from runtime.errors import KernelError
from runtime.gemm.computed import lower_computed_left
from runtime.gemm.gemv import FEW_ROWS, lower_dot_rows, sgemv_rows
from runtime.kernels import nn_matmul
from runtime.kernels.nn_conv import COMPUTE_DTYPES, conv_nd, window_attrs
from runtime.kernels.nn_expand import fuse as fuse_expand_depthwise
from runtime.kernels.nn_gate import fuse as fuse_gate
from runtime.kernels.nn_matmul import matmul_f32
from runtime.kernels.nn_prepared import prepare_conv
from runtime.kernels.nn_transposed import conv_transpose_nd, lower_conv_transpose
from runtime.kernels.registry import fuses, kernel, prepares
from runtime.schedule.records import Operand

__all__ = ["conv_nd", "conv_transpose_nd", "matmul"]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product with numpy semantics (1-D operands, batch broadcasting).
    float32/float64 operands of one dtype go through BLAS (strided views are
    copied first); other dtypes use numpy's own loops."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        raise KernelError(f"MatMul: operands must have rank >= 1, got shapes {list(a.shape)} and {list(b.shape)}")
    try:
        return np.asarray(np.matmul(_blas_ready(a), _blas_ready(b)))
    except ValueError:
        raise KernelError(f"MatMul: shapes {list(a.shape)} and {list(b.shape)} do not match") from None


def _blas_ready(a: np.ndarray) -> np.ndarray:
    """numpy only hands C- or Fortran-ordered matrices to BLAS; other views
    would take its slow generic loop, so copy those first."""
    if a.ndim < 2 or a.dtype not in COMPUTE_DTYPES:
        return a
    last = a[(0,) * (a.ndim - 2)] if a.size else a
    if last.flags.c_contiguous or last.flags.f_contiguous:
        return a
    return np.ascontiguousarray(a)


def _in_float(fn, *arrays: np.ndarray) -> np.ndarray:
    """Run a float32/float64 computation on float16 operands through float32."""
    dtype = arrays[0].dtype
    if dtype in COMPUTE_DTYPES:
        return fn(*arrays)
    if dtype != np.float16:
        raise KernelError(f"dtype {dtype} is not supported here (float16, float32 or float64)")
    widened = [None if a is None else a.astype(np.float32) for a in arrays]
    return fn(*widened).astype(dtype)


@kernel("Conv")
def conv(inputs, attrs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    options = window_attrs(attrs, w)
    return (_in_float(lambda x, w, b: conv_nd(x, w, b, **options), x, w, b),)


@kernel("FusedConv")
def fused_conv(inputs, attrs):
    """Conv(X, W, B) + R, clamped to ``attrs["clamp"]`` = (low, high):
    inputs X, W, then B and R, each optional (None); float32 only (codegen
    fuses float32 convolutions). ``clamp`` None: no clamp."""
    return fused_conv_gated(inputs, attrs)


def fused_conv_gated(inputs, attrs, gate: tuple | None = None):
    """:func:`fused_conv`, then ``gate`` (runtime.kernels.nn_gate) in its epilogue."""
    if len(inputs) != 4:
        raise KernelError(f"FusedConv takes 4 inputs (X, W, B, R; B and R may be omitted), got {len(inputs)}")
    x, w, b, r = inputs
    if any(a is not None and (not isinstance(a, np.ndarray) or a.dtype != np.float32) for a in inputs):
        raise KernelError("FusedConv: X, W, B and R must be float32 arrays")
    options = window_attrs(attrs, w)
    return (conv_nd(x, w, b, residual=r, clamp=attrs.get("clamp"), gate=gate, **options),)


@prepares("Conv")
def _prepare_conv(generic, attrs, constants):
    return prepare_conv(generic, attrs, constants, fused=False)


@prepares("FusedConv")
def _prepare_fused_conv(generic, attrs, constants):
    return prepare_conv(generic, attrs, constants, fused=True)


@fuses(("Conv", "Conv"), ("Conv", "FusedConv"), ("FusedConv", "Conv"), ("FusedConv", "FusedConv"))
def _fuse_convs(first, second, first_inputs, attrs):
    return fuse_expand_depthwise(first, second, first_inputs)


@fuses(("FusedConv", "FusedElementwise"))
def _fuse_gate(first, second, first_inputs, attrs):
    return fuse_gate(first, second, first_inputs, attrs, fused_conv_gated)


@kernel("ConvTranspose")
def conv_transpose(inputs, attrs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    options = window_attrs(attrs, w)
    options["output_padding"] = attrs["output_padding"]
    return (_in_float(lambda x, w, b: conv_transpose_nd(x, w, b, **options), x, w, b),)


conv_transpose.lower = lower_conv_transpose


@kernel("MatMul")
def matmul_kernel(inputs, attrs):
    a, b = inputs
    return (matmul_f32(a, b) if nn_matmul.ours(a, b) else matmul(a, b),)


matmul_kernel.lower = nn_matmul.lower_matmul


@kernel("Gemm")
def gemm(inputs, attrs):
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if a.ndim != 2 or b.ndim != 2:
        raise KernelError(f"Gemm: A and B must be matrices, got shapes {list(a.shape)} and {list(b.shape)}")
    weights, trans_b = b, bool(attrs["transB"])
    a = a.T if attrs["transA"] else a
    b = b.T if trans_b else b
    if a.shape[1] != b.shape[0]:
        raise KernelError(f"Gemm: inner dims differ: op(A) is {list(a.shape)}, op(B) is {list(b.shape)}")
    alpha, beta = float(attrs["alpha"]), float(attrs["beta"])
    if a.dtype.kind != "f":
        return (_gemm_exact(a, b, c, alpha, beta),)
    if a.dtype == b.dtype == np.float32 and gemm_engine.available():
        if a.shape[0] < FEW_ROWS:
            row_bias = _row_bias(c, b.shape[1]) if alpha == 1.0 and beta == 1.0 else None
            y = sgemv_rows(a, weights, trans_b, row_bias)
            if row_bias is not None:
                return (y,)
        else:
            y = gemm_engine.sgemm(a, b)
    else:
        y = matmul(a, b)
    return (_scaled_plus_c(y, c, alpha, beta),)


def _scaled_plus_c(y: np.ndarray, c, alpha: float, beta: float) -> np.ndarray:
    """Gemm's ``alpha * y + beta * C``, in place in ``y``."""
    if alpha != 1.0:
        y *= y.dtype.type(alpha)
    if c is not None and beta != 0.0:
        if not _broadcasts_to(c.shape, y.shape):
            raise KernelError(f"Gemm: C of shape {list(c.shape)} does not broadcast to {list(y.shape)}")
        y += c if beta == 1.0 else c * c.dtype.type(beta)
    return y


@prepares("Gemm")
def _prepare_gemm(generic, attrs, constants):
    """A float32 Gemm whose B is a constant, prepared: where A has
    FEW_ROWS rows or more, the product reads B packed once as the GEMM's
    right operand (:data:`runtime.kernels.nn_matmul.right_weights`), not
    gathered from its transposed view by every call (a transformer's
    197 x 192 by 192 x 768 layer: 858 -> 406 us on two Zen 4 threads); the
    same sums in the same order, so the same bits."""
    w = constants[1]
    if (not isinstance(w, np.ndarray) or w.dtype != np.float32 or w.ndim != 2 or attrs["transA"]
            or not gemm_engine.available()):
        return None
    trans_b, alpha, beta = bool(attrs["transB"]), float(attrs["alpha"]), float(attrs["beta"])
    depth, n = (w.shape[1], w.shape[0]) if trans_b else w.shape

    def run(inputs, attrs):
        a = inputs[0]
        if (inputs[1] is not w or not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2
                or a.shape[0] < FEW_ROWS or a.shape[1] != depth):
            return generic(inputs, attrs)
        c = inputs[2] if len(inputs) > 2 else None
        row = _row_bias(c, n) if alpha == 1.0 and beta == 1.0 else None
        if row is not None:  # C added in the product's epilogue, as a schedule's GEMM adds it (the same bits)
            return (gemm_engine.sgemm(a, None, packed_b=nn_matmul.right_weights.get(w, trans_b),
                                      residual=np.broadcast_to(row, (a.shape[0], n))),)
        y = gemm_engine.sgemm(a, None, packed_b=nn_matmul.right_weights.get(w, trans_b))
        return (_scaled_plus_c(y, c, alpha, beta),)
    run.lower = _lower_gemm
    return run


def _lower_gemm(ctx, args, attrs) -> bool:
    """Gemm as schedule operations (runtime.schedule) where A is computed,
    (M, K), B constant float32, alpha = beta = 1 and C absent or a row:
    with M < FEW_ROWS and B given transposed, one operation streaming it as
    dot products; with more rows and B frozen, A packed and the GEMM on B
    packed once (runtime.gemm.computed), as the prepared step runs it."""
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    if (not isinstance(a, Operand) or not isinstance(b, np.ndarray) or a.dtype != np.float32
            or b.dtype != np.float32 or len(a.shape) != 2 or b.ndim != 2 or not b.flags.c_contiguous
            or attrs["transA"] or float(attrs["alpha"]) != 1.0 or float(attrs["beta"]) != 1.0
            or not gemm_engine.available() or 0 in a.shape or 0 in b.shape):
        return False
    trans_b = bool(attrs["transB"])
    n = b.shape[0] if trans_b else b.shape[1]
    bias = None if c is None else _row_bias(c, n)
    if a.shape[1] != b.shape[1 if trans_b else 0] or (c is not None and (bias is None or not bias.flags.c_contiguous)):
        return False
    if a.shape[0] < FEW_ROWS:
        if not trans_b:
            return False
        lower_dot_rows(ctx, a, b, ctx.output(0, (a.shape[0], n)), bias)
    elif ctx.frozen(b):
        lower_computed_left(ctx, a.reshape((1,) + a.shape), ctx.output(0, (a.shape[0], n)).reshape((1, a.shape[0], n)),
                            packed_b=nn_matmul.right_weights.get(b, trans_b), columns=bias)
    else:
        return False
    return True


gemm.lower = _lower_gemm


def _row_bias(c, n: int) -> np.ndarray | None:
    """C as the (N,) float32 row the dot products add, where it is one."""
    if (isinstance(c, np.ndarray) and c.dtype == np.float32 and c.flags.c_contiguous
            and c.shape in ((n,), (1, n))):
        return c.reshape(n)
    return None


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether ``shape`` broadcasts to ``target`` itself (numpy's rule, without
    np.broadcast_shapes, which cost ~25 us a call in a running model)."""
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _gemm_exact(a, b, c, alpha, beta) -> np.ndarray:
    """Integer Gemm: integer product, scaled in float64 only when alpha/beta
    are not 1 (what the reference does), cast back to the input dtype."""
    y = np.matmul(a, b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        if not _broadcasts_to(c.shape, y.shape):
            raise KernelError(f"Gemm: C of shape {list(c.shape)} does not broadcast to {list(y.shape)}")
        y = y + (c if beta == 1.0 else c * beta)
    return y.astype(a.dtype, copy=False)


@kernel("Einsum")
def einsum(inputs, attrs):
    equation = attrs["equation"]
    try:
        result = np.einsum(equation, *inputs, optimize=len(inputs) > 1)
    except ValueError as exc:
        raise KernelError(f"Einsum {equation!r}: {exc}") from None
    return (np.array(result, dtype=inputs[0].dtype, order="C", copy=None),)
