"""What a kernel lowering a step writes (runtime.schedule.builder): the
kinds of operation, the operands they take, and how an operand is named.

Imports nothing of the runtime, so that a kernel module can lower its steps
without importing the schedule's driver (which imports the kernels)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

(GEMM, DEPTHWISE, EXPAND_DEPTHWISE, BANDS, DOT_ROWS, PLANE_MEANS, WINOGRAD_IN, WINOGRAD_OUT, IM2COL,
 MAX_POOL, SOFTMAX, COPY, CHANNEL_SCALE, OWN_COLUMNS, DIRECT, FUSED, RESIZE_NEAREST, RESIZE_LINEAR,
 TRANSPOSE, COL2IM, AVG_POOL, PAD, PACK_LEFT, LAYER_NORM, LRN) = range(1, 26)
"""Operation kinds; each one's record is described where it runs
(runtime.schedule.ops)."""
COPY_PIECE = 1 << 16
"""Bytes of one work item of a COPY operation (a row is cut into pieces of
this size, so that one long row still splits over the threads)."""
DW_IR, DW_PADDED, DW_BLOCKS = 1, 2, 3
"""Which depthwise kernel a DEPTHWISE operation runs (float32 planes only): the
plane kernels, the padded-plane one, the block kernels."""
GEMM_FIELDS = 18
"""Ints of a GEMM operation's record (runtime.gemm.sgemm.sgemm_record),
which an OWN_COLUMNS record begins with."""
GEO = 15
"""Ints of a window's ``loop_params`` (runtime.kernels.nn_window)."""
IM2COL_FIELDS = 12 + GEO
"""Ints of an IM2COL operation's record (runtime.kernels.nn_im2col.im2col_record),
which an OWN_COLUMNS record holds after its GEMM record."""
NONE = (0, 0)
"""An absent operand's (base, offset): base 0 is address 0."""


@dataclass(frozen=True)
class Operand:
    """A value as operations see it: ``bases[base] + offset`` is its first
    byte; C-contiguous of ``shape`` and ``dtype``. ``writable`` is False
    for a program input (never written in place)."""

    base: int
    offset: int
    shape: tuple
    dtype: np.dtype
    writable: bool = True

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def ref(self, offset: int = 0) -> tuple[int, int]:
        """(base, offset) of the byte ``offset`` bytes into the value."""
        return self.base, self.offset + offset

    def stand_in(self) -> np.ndarray:
        """A read-only array of this shape and dtype, holding no data: what a
        kernel's plans and checks need to see of the value when lowering."""
        return np.broadcast_to(np.zeros((), self.dtype), self.shape)

    def reshape(self, shape: tuple) -> "Operand":
        return Operand(self.base, self.offset, tuple(shape), self.dtype, self.writable)
