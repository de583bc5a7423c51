"""A small ONNX model builder with seeded weights, for Tessera's built-in
models (so nothing is ever downloaded).

Node names follow a format string, so a model can be named the way its
exporter names nodes (torch.onnx's ``/model.0/conv/Conv``, tf2onnx's
``StatefulPartitionedCall/...``, Paddle2ONNX's ``p2o.Conv.0``); scopes
(:meth:`OnnxBuilder.scope`) play the part of the exporter's module path.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
DEFAULT_NAMES = "{hint}_{n}"
"""Node names: ``hint`` (the op in lower case unless given), ``op``, ``n``
(a counter shared with weights) and ``scope`` (``/a/b`` inside scopes)."""


class OnnxBuilder:
    """Appends nodes to an ONNX graph; weights come from a seeded generator.

    ``names`` formats node names (see DEFAULT_NAMES); ``outputs``, when
    given, formats output names from ``node`` and ``i`` (torch.onnx writes
    ``"{node}_output_{i}"``), else a node's single output takes its name.
    ``producer`` is the exporter the model says made it."""

    def __init__(self, name: str, seed: int = 0, opset: int = OPSET, *, names: str = DEFAULT_NAMES,
                 outputs: str | None = None, producer: str = "tessera.zoo"):
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.names = names
        self.output_names = outputs
        self.producer = producer
        self._scopes: list[str] = []
        self._count = 0
        self._relu6: tuple[str, str] | None = None

    def fresh(self, hint: str, op: str = "") -> str:
        self._count += 1
        return self.names.format(hint=hint, op=op or hint, n=self._count, scope=self.scope_path)

    @property
    def scope_path(self) -> str:
        return "".join(f"/{s}" for s in self._scopes)

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Nodes added inside belong to module ``name`` (nested scopes join with '/')."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def input(self, name: str, shape, dtype=TensorProto.FLOAT) -> str:
        """A graph input; a dim may be an int (-1 as Paddle2ONNX writes a
        free dim) or a string (a symbolic dim, as torch.onnx and tf2onnx write)."""
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def weight(self, array: np.ndarray, hint: str = "w") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], num_outputs: int = 1, name: str | None = None,
             outputs: list[str] | None = None, **attrs):
        """Add a node; returns its output name (or names when there are
        several). ``outputs`` names them (graph outputs, as the exporter named them)."""
        name = name or self.fresh(op.lower(), op)
        outputs = outputs or self._output_names(name, num_outputs)
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def _output_names(self, node: str, count: int) -> list[str]:
        if self.output_names:
            return [self.output_names.format(node=node, i=i) for i in range(count)]
        return [node] if count == 1 else [f"{node}_{i}" for i in range(count)]

    def constant(self, values, dtype=np.float32, hint: str = "Constant") -> str:
        """A Constant node (exporters write shapes and scalars this way
        rather than as initializers); returns its output."""
        array = np.asarray(values, dtype=dtype)
        return self.node("Constant", [], value=numpy_helper.from_array(array, ""), name=self.fresh(hint, "Constant"))

    # ------------------------------------------------------------ layers
    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             bias: bool = True, gain: float = 2.0, pad: int | None = None) -> str:
        """Conv with He-scaled weights (``gain`` 2 for ReLU-like activations);
        ``pad`` defaults to 'same' padding for odd kernels."""
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(gain / fan_in)
        inputs = [x, self.weight(w.astype(np.float32), "conv_w")]
        if bias:
            inputs.append(self.weight((self.rng.standard_normal(cout) * 0.01).astype(np.float32), "conv_b"))
        pad = (k - 1) // 2 if pad is None else pad
        return self.node("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=groups)

    def conv_transpose(self, x: str, cin: int, cout: int, k: int, stride: int, pad: int = 0, groups: int = 1,
                       bias: bool = True, weights: np.ndarray | None = None) -> str:
        """ConvTranspose (weights [cin, cout/groups, k, k], He-scaled over
        the taps each output sums unless given)."""
        if weights is None:
            fan_in = cin // groups * k * k / (stride * stride)
            weights = self.rng.standard_normal((cin, cout // groups, k, k)) * np.sqrt(2.0 / fan_in)
        inputs = [x, self.weight(np.asarray(weights, np.float32), "deconv_w")]
        if bias:
            inputs.append(self.weight((self.rng.standard_normal(cout) * 0.01).astype(np.float32), "deconv_b"))
        return self.node("ConvTranspose", inputs, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=groups)

    def batchnorm(self, x: str, channels: int, scale: float = 1.0) -> str:
        """BatchNormalization with plausible statistics; ``scale`` shrinks gamma
        (trained residual branches end with small gammas)."""
        gamma = self.rng.uniform(0.8, 1.2, channels) * scale
        beta = self.rng.standard_normal(channels) * 0.05
        mean = self.rng.standard_normal(channels) * 0.05
        var = self.rng.uniform(0.8, 1.2, channels)
        params = [self.weight(a.astype(np.float32), n) for a, n in
                  ((gamma, "bn_scale"), (beta, "bn_bias"), (mean, "bn_mean"), (var, "bn_var"))]
        return self.node("BatchNormalization", [x, *params], epsilon=1e-5)

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                act: str = "Relu") -> str:
        """Conv (no bias) -> BatchNorm -> Relu, or ReLU6 as exporters write it
        (Clip with bounds 0 and 6 as inputs) for ``act="ReLU6"``: the
        MobileNet block the zoo's detectors are built of."""
        y = self.batchnorm(self.conv(x, cin, cout, k, stride, groups, bias=False), cout)
        if act == "Relu":
            return self.node("Relu", [y])
        if self._relu6 is None:
            self._relu6 = (self.const_f32(0.0, "zero"), self.const_f32(6.0, "six"))
        return self.node("Clip", [y, *self._relu6])

    def prelu(self, x: str, channels: int, slope_shape: tuple[int, ...] | None = None) -> str:
        """PRelu with per-channel slopes near 0.25 (PyTorch's initial value),
        shaped ``[C, 1, 1]`` for feature maps unless ``slope_shape`` says otherwise."""
        slope = self.rng.uniform(0.1, 0.4, channels).astype(np.float32)
        return self.node("PRelu", [x, self.weight(slope.reshape(slope_shape or (channels, 1, 1)), "prelu_slope")])

    def linear(self, x: str, fin: int, fout: int, outputs: list[str] | None = None) -> str:
        w = self.rng.standard_normal((fout, fin)) * np.sqrt(1.0 / fin)
        b = self.rng.standard_normal(fout) * 0.01
        return self.node("Gemm", [x, self.weight(w.astype(np.float32), "fc_w"),
                                  self.weight(b.astype(np.float32), "fc_b")], outputs=outputs, transB=1)

    def matmul_weight(self, x: str, fin: int, fout: int) -> str:
        w = self.rng.standard_normal((fin, fout)) * np.sqrt(1.0 / fin)
        b = self.rng.standard_normal(fout) * 0.01
        y = self.node("MatMul", [x, self.weight(w.astype(np.float32), "mm_w")])
        return self.node("Add", [y, self.weight(b.astype(np.float32), "mm_b")])

    def const_i64(self, values, hint: str = "shape") -> str:
        return self.weight(np.asarray(values, dtype=np.int64), hint)

    def const_f32(self, values, hint: str = "c") -> str:
        return self.weight(np.asarray(values, dtype=np.float32), hint)

    # ------------------------------------------------------------ model
    def model(self, outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs,
                                  [helper.make_empty_tensor_value_info(o) for o in outputs], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name=self.producer)
        model.ir_version = min(model.ir_version, 9)
        return onnx.shape_inference.infer_shapes(model)
