"""A small ONNX model builder with seeded weights, for Tessera's built-in
models (so nothing is ever downloaded)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class OnnxBuilder:
    """Appends nodes to an ONNX graph; weights come from a seeded generator."""

    def __init__(self, name: str, seed: int = 0, opset: int = OPSET):
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def input(self, name: str, shape, dtype=TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def weight(self, array: np.ndarray, hint: str = "w") -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], num_outputs: int = 1, name: str | None = None, **attrs):
        """Add a node; returns its output name (or names when there are several)."""
        name = name or self.fresh(op.lower())
        outputs = [name] if num_outputs == 1 else [f"{name}_{i}" for i in range(num_outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0] if num_outputs == 1 else outputs

    # ------------------------------------------------------------ layers
    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             bias: bool = True, gain: float = 2.0) -> str:
        """Conv with He-scaled weights (``gain`` 2 for ReLU-like activations)."""
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(gain / fan_in)
        inputs = [x, self.weight(w.astype(np.float32), "conv_w")]
        if bias:
            inputs.append(self.weight((self.rng.standard_normal(cout) * 0.01).astype(np.float32), "conv_b"))
        pad = (k - 1) // 2
        return self.node("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride],
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

    def linear(self, x: str, fin: int, fout: int) -> str:
        w = self.rng.standard_normal((fout, fin)) * np.sqrt(1.0 / fin)
        b = self.rng.standard_normal(fout) * 0.01
        return self.node("Gemm", [x, self.weight(w.astype(np.float32), "fc_w"),
                                  self.weight(b.astype(np.float32), "fc_b")], transB=1)

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
                                  producer_name="tessera.zoo")
        model.ir_version = min(model.ir_version, 9)
        return onnx.shape_inference.infer_shapes(model)
