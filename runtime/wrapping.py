"""Wrapping 32-bit integer arithmetic for Numba code.

Numba types the sum or product of two int32 values as int64 (its integer
rules widen to the machine word), so a loop over int8 data that keeps int32
sums, as the device's accumulators wrap, computes every lane in 64 bits and
narrows at the store: LLVM then vectorises it four lanes to an AVX2
register with a shuffle per vector, where 32-bit lanes give eight. These
intrinsics are the 32-bit instructions themselves (``mul i32``, ``add
i32``): the low 32 bits of a product or sum, which is what the int64
expression narrowed to int32 gives, bit for bit; ``ashr32`` is the
arithmetic right shift of an int32 (the shift in [0, 31]), which is what
``>>`` on the int64 value narrowed gives.
"""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic


def _int32_binary(name: str):
    def typer(typingctx, a, b):
        if a != types.int32 or b != types.int32:
            return None

        def codegen(context, builder, signature, args):
            return getattr(builder, name)(args[0], args[1])

        return types.int32(types.int32, types.int32), codegen

    typer.__name__ = f"{name}32"
    return intrinsic(typer)


mul32 = _int32_binary("mul")
"""``mul32(a, b)``: the int32 product of two int32 values, wrapping modulo 2^32."""
add32 = _int32_binary("add")
"""``add32(a, b)``: the int32 sum of two int32 values, wrapping modulo 2^32."""
ashr32 = _int32_binary("ashr")
"""``ashr32(a, s)``: int32 ``a`` shifted right arithmetically by int32 ``s`` in [0, 31] (LLVM's ``ashr``,
undefined beyond): ``a >> s``, rounding toward minus infinity."""
