"""Per-family ONNX import handlers (ops without one use the default handler)."""
from compiler.frontend.ops import (  # noqa: F401
    control,
    elementwise,
    gather,
    nn,
    norm,
    pool,
    quant,
    reduce,
    resize,
    rnn,
    shape,
)
