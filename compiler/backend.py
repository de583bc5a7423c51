"""An ONNX backend over Tessera's frontend and CPU executor, with the shape
of ``onnxruntime.backend``: ``prepare``, ``run_model``, ``supports_device``.

    rep = compiler.backend.prepare(model)
    outputs = rep.run([x])        # outputs in graph order
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from runtime.executor import Executor


class TesseraRep(BackendRep):
    """A prepared model: the lowered float program and its executor."""

    def __init__(self, graph, check: bool = False):
        self.graph = graph
        self.program = lower_to_program(graph)
        self.executor = Executor(self.program, check=check)

    def run(self, inputs: Any, **kwargs) -> tuple[np.ndarray, ...]:
        names = self.program.input_names
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) != len(names):
                raise ValueError(f"the model takes {len(names)} input(s) {names}, got {len(inputs)}")
            feeds = dict(zip(names, inputs))
        result = self.executor.run(feeds)
        return tuple(result[name] for name in self.program.output_names)


class TesseraBackend(Backend):
    @classmethod
    def prepare(cls, model: ModelProto | str | bytes, device: str = "CPU", **options) -> TesseraRep:
        if not cls.supports_device(device):
            raise ValueError(f"device {device!r} is not supported; Tessera's backend runs on 'CPU'")
        check = bool(options.pop("check", False))
        graph = import_onnx(model, **options)
        return TesseraRep(graph, check=check)

    @classmethod
    def run_model(cls, model: ModelProto, inputs: Any, device: str = "CPU", **options) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **options).run(inputs)

    @classmethod
    def run_node(cls, node: NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU", outputs_info=None,
                 opset: int | None = None, **kwargs) -> tuple[np.ndarray, ...]:
        """Run a single node: it is wrapped in a one-node model first."""
        arrays = [np.asarray(x) for x in inputs]
        graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for name, a in zip(node.input, arrays) if name]
        graph_outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
        graph = helper.make_graph([node], f"{node.op_type}_node", graph_inputs, graph_outputs)
        version = opset or onnx.defs.onnx_opset_version()
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        feeds = {name: a for name, a in zip(node.input, arrays) if name}
        return cls.prepare(model, device, **kwargs).run(feeds)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().split(":")[0] == "CPU"


prepare = TesseraBackend.prepare
run_model = TesseraBackend.run_model
run_node = TesseraBackend.run_node
supports_device = TesseraBackend.supports_device
