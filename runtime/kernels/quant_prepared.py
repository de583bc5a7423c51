"""QuantizeLinear and DequantizeLinear prepared for a constant per-tensor
grid (runtime.kernels.registry.prepares): one compiled pass each instead of
the generic kernels' (runtime/kernels/quant.py) parameter checks and numpy
passes, with the same codes and values; the device's interface tensors
(runtime/device.py) quantize straight into DRAM and dequantize out of it
through them, the quantization inspecting its input for NaN and ±Inf in the
same pass (docs/runtime.md, "The fixed cost of a call")."""
from __future__ import annotations

import numpy as np

from runtime.jit import compiled_entry, jit
from runtime.kernels.quant import QUANT_RANGES, dtype_attr
from runtime.kernels.registry import prepares

_F32 = np.dtype(np.float32)


@prepares("QuantizeLinear")
def _prepare_quantize(generic, attrs, constants):
    """QuantizeLinear with a constant per-tensor float32 scale and zero point
    (a device segment's input, a quantized model's QuantizeLinear node)."""
    if len(constants) != 3 or not (_scalar(constants[1], _F32) and _scalar(constants[2])):
        return None
    dtype = constants[2].dtype
    precision = dtype_attr(attrs, "precision")
    if dtype_attr(attrs, "output_dtype") not in (None, dtype) or precision not in (None, _F32):
        return None
    return PreparedQuantize(generic, attrs, constants[1], constants[2])


@prepares("DequantizeLinear")
def _prepare_dequantize(generic, attrs, constants):
    """DequantizeLinear of 8- or 16-bit codes with a constant per-tensor
    float32 scale and zero point, to float32."""
    if len(constants) != 3 or not (_scalar(constants[1], _F32) and _scalar(constants[2])):
        return None
    if dtype_attr(attrs, "output_dtype") not in (None, _F32):
        return None
    return PreparedDequantize(generic, attrs, constants[1], constants[2])


def _scalar(value, dtype=None) -> bool:
    """A one-element C-contiguous array of ``dtype`` (None: an 8- or 16-bit integer type)."""
    return (isinstance(value, np.ndarray) and value.size == 1 and value.flags.c_contiguous
            and (value.dtype == dtype if dtype is not None else value.dtype in QUANT_RANGES))


class PreparedQuantize:
    """A QuantizeLinear step prepared for its constant ``scale`` and
    ``zero`` point (one element each): a float32 input goes through one
    compiled pass (:func:`quantize_codes`) instead of the generic kernel's
    parameter checks and five numpy passes, with the same codes. Any other
    call (other parameters or attributes, another input type) and any input
    holding a NaN (for its error) go to the generic kernel. The parameters
    are read on every call, so one rewritten in place takes effect."""

    def __init__(self, generic, attrs, scale: np.ndarray, zero: np.ndarray):
        self.generic, self.attrs, self.scale, self.zero = generic, attrs, scale, zero
        self.dtype = zero.dtype
        self.low, self.high = QUANT_RANGES[zero.dtype]
        self._scale, self._zero = scale.reshape(1), zero.reshape(1)
        self._entry = None

    def __call__(self, inputs, attrs):
        x = inputs[0]
        if (attrs is not self.attrs or len(inputs) != 3 or inputs[1] is not self.scale or inputs[2] is not self.zero
                or type(x) is not np.ndarray or x.dtype != _F32):
            return self.generic(inputs, attrs)
        y = np.empty(x.shape, self.dtype)
        if quantize_codes(x.reshape(-1), self._scale, self._zero, self.low, self.high, y.reshape(-1)) & SAW_NAN:
            return self.generic(inputs, attrs)  # a NaN: the generic kernel's error says where
        return (y,)

    def into(self, x, flat: np.ndarray) -> int | None:
        """The codes of ``x`` written into ``flat`` (a one-dimensional
        C-contiguous writable array of the codes' type and of x's size, a
        device's DRAM for one), with no array made and no argument matching
        (the compiled pass is resolved on the first call:
        runtime.jit.compiled_entry). None where the prepared pass does not
        apply (x not a float32 array of that size); else what x held, as
        :func:`quantize_codes` says: 0 when every value was finite, SAW_INF
        when ±Inf were (their codes saturated), SAW_NAN when a NaN was, with
        ``flat`` then undefined: the caller calls the kernel, for its error.
        One pass both quantizes and inspects an input, so a caller that owes
        a non-finite policy (runtime/nonfinite.py) need not scan it first."""
        if type(x) is not np.ndarray or (x.dtype is not _F32 and x.dtype != _F32) or x.size != flat.size:
            return None  # (`is` first: a dtype's `!=` takes as long as the rest of these checks)
        entry = self._entry
        if entry is None:
            entry = self._entry = compiled_entry(quantize_codes, (np.empty(1, _F32), self._scale, self._zero,
                                                                  self.low, self.high, np.empty(1, self.dtype)))
        return entry(x.ravel(), self._scale, self._zero, self.low, self.high, flat)  # ravel: contiguous


class PreparedDequantize:
    """A DequantizeLinear step prepared for its constant ``scale`` and
    ``zero`` point: codes of the zero point's type go through one compiled
    pass (:func:`dequantize_codes`), the same float32 values as the generic
    kernel; any other call goes to it."""

    def __init__(self, generic, attrs, scale: np.ndarray, zero: np.ndarray):
        self.generic, self.attrs, self.scale, self.zero = generic, attrs, scale, zero
        self._scale, self._zero = scale.reshape(1), zero.reshape(1)
        self._codes = zero.dtype
        self._entry = None

    def __call__(self, inputs, attrs):
        x = inputs[0]
        if (attrs is not self.attrs or len(inputs) != 3 or inputs[1] is not self.scale or inputs[2] is not self.zero
                or type(x) is not np.ndarray or x.dtype != self.zero.dtype):
            return self.generic(inputs, attrs)
        y = np.empty(x.shape, _F32)
        dequantize_codes(x.reshape(-1), self._scale, self._zero, y.reshape(-1))
        return (y,)

    def into(self, x, out: np.ndarray) -> bool:
        """The values of the codes ``x`` written into ``out``, with no array
        made and no argument matching (as PreparedQuantize.into); False, with
        ``out`` untouched, where the prepared pass does not apply (x not an
        array of the zero point's type, or of another size; out not a
        C-contiguous writable float32 array): the caller then calls the kernel."""
        codes = self._codes
        if type(x) is not np.ndarray or (x.dtype is not codes and x.dtype != codes) or x.size != out.size \
                or (out.dtype is not _F32 and out.dtype != _F32):
            return False
        flags = out.flags
        if not (flags.c_contiguous and flags.writeable):
            return False
        entry = self._entry
        if entry is None:
            entry = self._entry = compiled_entry(dequantize_codes, (np.empty(1, self.zero.dtype), self._scale,
                                                                    self._zero, np.empty(1, _F32)))
        entry(x.ravel(), self._scale, self._zero, out.ravel())  # ravel: contiguous (a view of out)
        return True


SAW_NAN, SAW_INF = 1, 2
"""What :func:`quantize_codes` reports having seen, as bits of its result."""


@jit
def quantize_codes(x, scale, zero, low, high, out):
    """out[i] = clip(round_half_even(float32(x[i] / scale[0])) + zero[0],
    low, high) for float32 ``x``: saturated_codes' arithmetic, one element
    at a time. Returns what it saw, as bits: SAW_NAN where a quotient was
    NaN (its code is left 0), SAW_INF where a value of x was ±Inf (its code
    saturated); 0 when x was all finite.

    The zero point is added and the sum clipped in float32, where the
    generic kernel works in float64, with the same codes: the rounded
    quotient r is a whole number, and the codes' range and zero point are
    whole numbers under 2^16, so r + zero is exact in float32 while |r| <
    2^24 - 2^16; beyond, both sums lie past the range on r's side and clip
    to the same end. (In float64 the pass converted every quotient up and
    every code down at half the vector width: 150528 codes 58 -> 41 us, Zen
    4; the IEEE division, which the codes need as it is, is the rest.)"""
    s, z = scale[0], np.float32(zero[0])
    lo, hi = np.float32(low), np.float32(high)
    seen = 0
    for i in range(x.shape[0]):
        v = x[i]
        q = np.float32(np.rint(np.float32(v / s))) + z
        if q != q:
            seen |= SAW_NAN
            q = np.float32(0.0)
        elif v - v != 0:  # ±Inf (x - x is 0 for every finite x)
            seen |= SAW_INF
        out[i] = min(max(q, lo), hi)
    return seen


@jit
def dequantize_codes(x, scale, zero, out):
    """out[i] = (float32(x[i]) - float32(zero[0])) * scale[0] in float32:
    dequantize_linear's arithmetic for 8- and 16-bit codes, one element at a time."""
    s, z = scale[0], np.float32(zero[0])
    for i in range(x.shape[0]):
        out[i] = np.float32(np.float32(x[i]) - z) * s
