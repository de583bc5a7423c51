"""What the family models share: each exporter's naming idioms and the
small blocks every exporter writes alike (compiler/zoo/families.py)."""
from __future__ import annotations

import numpy as np

from compiler.zoo.builder import OnnxBuilder

PADDLE = {"names": "p2o.{op}.{n}", "outputs": "{node}.tmp_{i}", "producer": "PaddlePaddle"}
TORCH = {"names": "{scope}/{op}_{n}", "outputs": "{node}_output_{i}", "producer": "pytorch"}
TF2ONNX = {"names": "StatefulPartitionedCall/model{scope}/{op}_{n}", "producer": "tf2onnx"}


def divisible(channels: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of ``divisor`` as MobileNet code does
    (never more than 10 % below the request)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def batch_shape(b: OnnxBuilder, x: str, rest: list[int], static: bool) -> str:
    """A Reshape target ``[batch, *rest]``: a Constant for a static export;
    torch.onnx's Shape -> Gather -> Unsqueeze -> Concat when the batch is free."""
    if static:
        return b.constant([1, *rest], np.int64)
    batch = b.node("Gather", [b.node("Shape", [x]), b.constant(0, np.int64)], axis=0)
    batch = b.node("Unsqueeze", [batch, b.constant([0], np.int64)])
    return b.node("Concat", [batch, b.constant(rest, np.int64)], axis=0)


def conv_bn(b: OnnxBuilder, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             pad: int | None = None) -> str:
    """Conv without bias followed by BatchNorm, as every trained CNN here has it."""
    return b.batchnorm(b.conv(x, cin, cout, k, stride, groups, bias=False, pad=pad), cout)
