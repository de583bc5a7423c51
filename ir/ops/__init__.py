"""Op definitions, one module per family; importing them registers the ops."""
from ir.ops import (  # noqa: F401
    control,
    elementwise,
    fused,
    gather,
    nn,
    norm,
    pool,
    quant,
    quantized,
    reduce,
    resize,
    rnn,
    shape,
)
