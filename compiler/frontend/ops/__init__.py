"""Per-family ONNX import handlers (ops without one use the default handler:
RNN, GRU and LSTM, for example, need none, since every opset form from 7 on
is the newest one with ``layout`` at its default)."""
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
    shape,
)
