"""Imports every kernel family module so that they register themselves."""
from runtime.kernels import (  # noqa: F401
    control,
    elementwise,
    fused,
    gather,
    nn,
    norm,
    pool,
    qdevice,
    quant,
    quant_prepared,
    reduce,
    resize,
    rnn,
    shape,
    shape_lowering,
)
