"""What the vector intrinsics written with llvmlite's builder share (the
simulator's patch packing, runtime/sim/patches.py; the CPU kernels' shifted
column rows, runtime/kernels/nn_im2col.py): the mask of a vector's first
lanes, and LLVM's masked loads and stores (masked-off lanes touch no
memory)."""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils

_I32 = ir.IntType(32)


def first_lanes(builder: ir.IRBuilder, count: ir.Value, width: int) -> ir.Value:
    """<width x i1>: lane l set where l < ``count`` (an i32)."""
    index_t = ir.VectorType(_I32, width)
    first = builder.insert_element(ir.Constant(index_t, None), count, ir.Constant(_I32, 0))
    splat = builder.shuffle_vector(first, ir.Constant(index_t, None), ir.Constant(index_t, [0] * width))
    return builder.icmp_signed("<", ir.Constant(index_t, list(range(width))), splat)


def _suffix(vec_t: ir.VectorType) -> str:
    """The overload suffix of a vector type in LLVM's intrinsic names (v16i8, v8f32, ...)."""
    item = vec_t.element
    name = "f32" if item == ir.FloatType() else "f64" if item == ir.DoubleType() else str(item)
    return f"v{vec_t.count}{name}"


def masked_load(builder: ir.IRBuilder, vec_t: ir.VectorType, at: ir.Value, align: int, mask: ir.Value) -> ir.Value:
    """The lanes of ``mask`` loaded from ``at``, zeros elsewhere."""
    mask_t = ir.VectorType(ir.IntType(1), vec_t.count)
    load = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec_t, [ir.PointerType(), _I32, mask_t,
                                                                                  vec_t]),
                                          f"llvm.masked.load.{_suffix(vec_t)}.p0")
    return builder.call(load, [at, ir.Constant(_I32, align), mask, ir.Constant(vec_t, None)])


def masked_store(builder: ir.IRBuilder, value: ir.Value, at: ir.Value, align: int, mask: ir.Value) -> None:
    """The lanes of ``mask`` of ``value`` stored at ``at``."""
    vec_t = value.type
    mask_t = ir.VectorType(ir.IntType(1), vec_t.count)
    store = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [vec_t, ir.PointerType(),
                                                                                           _I32, mask_t]),
                                           f"llvm.masked.store.{_suffix(vec_t)}.p0")
    builder.call(store, [value, at, ir.Constant(_I32, align), mask])
