"""The one table from ONNX op types to the layer types of OpenVINO's IR
(docs/inference_engine.md, "Layer types"): what ``IENetLayer.type`` and a
perf count's ``layer_type`` say, so that a script written against an IR
(``if layer.type == "Convolution"``) finds the same layers in an ONNX model.

The names are those the Model Optimizer gave such layers in the IRs of
2018-2020 (IR v2 to v7). An op the table lacks keeps its ONNX name, as an
IR keeps a custom layer's type. The ONNX op type itself stays in the
layer's ``params["onnx_type"]``.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

ELTWISE = "Eltwise"
POWER = "Power"
SCALE_SHIFT = "ScaleShift"
FULLY_CONNECTED = "FullyConnected"

IR_TYPES: dict[str, str] = {
    # convolution and linear
    "Conv": "Convolution", "ConvInteger": "Convolution", "QLinearConv": "Convolution",
    "ConvTranspose": "Deconvolution",
    "Gemm": FULLY_CONNECTED, "MatMul": FULLY_CONNECTED, "MatMulInteger": FULLY_CONNECTED,
    "QLinearMatMul": FULLY_CONNECTED,
    # pooling
    "MaxPool": "Pooling", "AveragePool": "Pooling", "GlobalAveragePool": "Pooling", "GlobalMaxPool": "Pooling",
    "LpPool": "Pooling", "GlobalLpPool": "Pooling",
    # activations
    "Relu": "ReLU", "LeakyRelu": "ReLU", "PRelu": "PReLU", "Clip": "Clamp", "Sigmoid": "Sigmoid", "Tanh": "TanH",
    "Elu": "ELU", "Selu": "Selu", "Celu": "Celu", "HardSigmoid": "HardSigmoid", "HardSwish": "HSwish",
    "Softplus": "SoftPlus", "Softsign": "SoftSign", "Mish": "Mish", "Swish": "Swish", "Gelu": "Gelu",
    "Erf": "Erf", "Exp": "Exp", "Log": "Log", "Abs": "Abs", "Sign": "Sign", "Floor": "Floor", "Ceil": "Ceiling",
    "Round": "Round", "Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Asin": "Asin", "Acos": "Acos", "Atan": "Atan",
    "Sinh": "Sinh", "Cosh": "Cosh", "Asinh": "Asinh", "Acosh": "Acosh", "Atanh": "Atanh",
    "Sqrt": POWER, "Reciprocal": POWER, "Neg": POWER, "Pow": POWER,
    # normalisation
    "Softmax": "SoftMax", "LogSoftmax": "LogSoftmax", "BatchNormalization": SCALE_SHIFT, "LRN": "Norm",
    "InstanceNormalization": "MVN", "MeanVarianceNormalization": "MVN", "LayerNormalization": "MVN",
    # elementwise on two or more tensors
    "Add": ELTWISE, "Sub": ELTWISE, "Mul": ELTWISE, "Div": ELTWISE, "Max": ELTWISE, "Min": ELTWISE,
    "Sum": ELTWISE, "Mean": ELTWISE, "Mod": ELTWISE, "Equal": ELTWISE, "Greater": ELTWISE,
    "GreaterOrEqual": ELTWISE, "Less": ELTWISE, "LessOrEqual": ELTWISE, "And": ELTWISE, "Or": ELTWISE,
    "Xor": ELTWISE, "Not": "LogicalNot", "Where": "Select",
    # data movement
    "Concat": "Concat", "Split": "Split", "Reshape": "Reshape", "Flatten": "Reshape", "Squeeze": "Reshape",
    "Unsqueeze": "Reshape", "Transpose": "Permute", "Slice": "StridedSlice", "Pad": "Pad", "Tile": "Tile",
    "Expand": "Broadcast", "Gather": "Gather", "GatherElements": "GatherElements", "GatherND": "GatherND",
    "ScatterElements": "ScatterElementsUpdate", "ScatterND": "ScatterNDUpdate", "DepthToSpace": "DepthToSpace",
    "SpaceToDepth": "SpaceToDepth", "Resize": "Resample", "Upsample": "Resample",
    # reductions and the rest
    "ReduceMean": "ReduceMean", "ReduceMax": "ReduceMax", "ReduceMin": "ReduceMin", "ReduceSum": "ReduceSum",
    "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1", "ReduceL2": "ReduceL2", "ReduceLogSum": "ReduceLogSum",
    "ReduceLogSumExp": "ReduceLogSumExp", "ReduceSumSquare": "ReduceSumSquare", "ArgMax": "ArgMax",
    "ArgMin": "ArgMin", "TopK": "TopK", "CumSum": "CumSum", "Cast": "Convert", "Shape": "ShapeOf",
    "ConstantOfShape": "Broadcast", "Constant": "Const", "Range": "Range", "OneHot": "OneHot",
    "NonZero": "NonZero", "QuantizeLinear": "FakeQuantize", "DequantizeLinear": "FakeQuantize",
    "LSTM": "LSTMSequence", "GRU": "GRUSequence", "RNN": "RNNSequence", "Identity": "Identity",
    "Dropout": "Identity",
}
"""ONNX op type -> IR layer type (docs/inference_engine.md prints it)."""

CONSTANT_OPERAND = {"Add", "Sub", "Mul", "Div"}
"""Ops the Model Optimizer turned into Power (a constant scalar operand) or
ScaleShift (one constant per channel) rather than Eltwise."""

COMPILED_OPS = {"QAvgPool": "Pooling", "QLut": "Activation", "FusedConv": "Convolution",
                "FusedElementwise": ELTWISE}
"""A compiled binary's accelerator ops and CPU kernels that are no ONNX op
once a leading Q is dropped (QConv -> Conv, QAdd -> Add): their IR types."""


def ir_type(op_type: str, constants: Mapping[str, np.ndarray | None] | None = None) -> str:
    """The IR layer type of an ONNX node of ``op_type`` whose constant
    inputs (after the first) are ``constants`` (network_layers' weights)."""
    values = [np.shape(v) for v in (constants or {}).values() if v is not None]
    if op_type in CONSTANT_OPERAND and values:
        shape = values[0]
        if int(np.prod(shape)) == 1:
            return POWER
        if sum(d > 1 for d in shape) == 1:
            return SCALE_SHIFT
        return ELTWISE
    if op_type == "Pow":
        return POWER if values and int(np.prod(values[0])) == 1 else ELTWISE
    if op_type in ("Gemm", "MatMul") and not values:
        return "Gemm"  # two computed operands: no weights to make it a fully-connected layer
    return IR_TYPES.get(op_type, op_type)


def compiled_type(op: str) -> str:
    """The IR layer type of a compiled binary's CPU kernel or accelerator
    op (a binary keeps those, not each ONNX node's type)."""
    if op in COMPILED_OPS:
        return COMPILED_OPS[op]
    if op.startswith("Q") and op[1:] in IR_TYPES:
        op = op[1:]
    return IR_TYPES.get(op, op)
