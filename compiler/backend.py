"""An ONNX backend over Tessera's frontend and CPU executor, with the shape
of ``onnxruntime.backend``: ``prepare``, ``run_model``, ``supports_device``.

    rep = compiler.backend.prepare(model)
    outputs = rep.run([x])        # outputs in graph order

A model whose inputs have dynamic dims (symbolic names, or a ``dim_value`` of
-1 or 0) is compiled when it runs: each input signature (the shapes of the
inputs given) gets its own import and float program, kept in a small LRU
cache, so running again with the same shapes compiles nothing
(compiler/signatures.py, which the Simulator API shares).
"""
from __future__ import annotations

from collections import abc
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep

from codegen.cpu import lower_to_program
from compiler.frontend import OnnxModel
from compiler.frontend.shapes import DeclaredDim
from compiler.pipeline import optimize
from compiler.signatures import CACHE_SIZE, Signature, SignatureCache, fixed_signature, input_signature
from ir.graph import Graph
from runtime.executor import Executor
from runtime.program import Program

# CACHE_SIZE (compiler.signatures): input signatures whose compiled program a
# rep keeps; ``prepare(model, cache_size=...)`` changes it.


class Specialisation(NamedTuple):
    """The model compiled for one input signature."""
    graph: Graph
    program: Program
    executor: Executor


class TesseraRep(BackendRep):
    """A prepared model. Its inputs' dims are the model's with the shapes
    given to ``prepare`` applied; when they are all fixed the model is
    compiled at once, otherwise on each new input signature ``run`` meets."""

    def __init__(self, model: OnnxModel, dims: Mapping[str, Sequence[DeclaredDim] | None], *,
                 check: bool = False, strict_types: bool = False, cache_size: int = CACHE_SIZE,
                 optimize: bool = True):
        self.model = model
        self.dims = dict(dims)
        self.check, self.strict_types, self.cache_size, self.optimize = check, strict_types, cache_size, optimize
        self._cache: SignatureCache[Specialisation] = SignatureCache(self._compile, cache_size)
        fixed = fixed_signature(self.dims)
        if fixed is not None:
            self._specialise(fixed)

    @property
    def input_names(self) -> list[str]:
        return list(self.dims)

    @property
    def signatures(self) -> list[Signature]:
        """The input signatures compiled and cached, least recently used first."""
        return self._cache.signatures

    @property
    def graph(self) -> Graph:
        """The IR graph of the latest specialisation run (or of the only one)."""
        return self._current().graph

    @property
    def program(self) -> Program:
        return self._current().program

    @property
    def executor(self) -> Executor:
        return self._current().executor

    def run(self, inputs: Any, **kwargs) -> tuple[np.ndarray, ...]:
        feeds = self._feeds(inputs)
        compiled = self._cache.cached(_shapes(feeds, self.dims))  # shapes met before: checked then
        if compiled is None:
            compiled = self._specialise(self._signature(feeds))
        result = compiled.executor.run(feeds)
        return tuple(result[name] for name in compiled.program.output_names)

    def _feeds(self, inputs: Any) -> dict[str, Any]:
        """Input name -> array, from a mapping, a sequence in input order or one array."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        elif type(inputs) not in (list, tuple) and isinstance(inputs, abc.Mapping):  # (not typing's: ~1.5 µs)
            return dict(inputs)
        inputs = list(inputs)
        names = self.input_names
        if len(inputs) != len(names):
            raise ValueError(f"the model takes {len(names)} input(s) {names}, got {len(inputs)}")
        return dict(zip(names, inputs))

    def _signature(self, feeds: Mapping[str, Any]) -> Signature:
        """The shapes of the fed inputs, in input order, checked against the
        rep's fixed dims (the error names the input and the dim)."""
        missing = [name for name in self.dims if name not in feeds]
        if missing:
            raise ValueError(f"missing input(s) {missing}; the model takes {self.input_names}")
        return input_signature(self.dims, {name: np.shape(feeds[name]) for name in self.dims}, self.model.label)

    def _specialise(self, signature: Signature) -> Specialisation:
        """The program for ``signature``: from the cache, or imported and
        lowered now (evicting the least recently used beyond cache_size)."""
        return self._cache.get(signature)

    def _compile(self, signature: Signature) -> Specialisation:
        graph = self.model.to_graph(dict(zip(self.dims, signature)), strict_types=self.strict_types)
        if self.optimize:
            graph = optimize(graph)
        program = lower_to_program(graph)
        return Specialisation(graph, program, Executor(program, check=self.check))

    def _current(self) -> Specialisation:
        if self._cache.latest is None:
            raise ValueError(f"{self.model.label}: nothing is compiled yet: the model has dynamic input dims, "
                             "and run() compiles it for the shapes it is given")
        return self._cache.latest


def _shapes(feeds: Mapping[str, Any], names) -> tuple | None:
    """The shapes of the inputs ``names`` in ``feeds``, None if one is missing."""
    try:
        return tuple(value.shape if type(value) is np.ndarray else np.shape(value)
                     for value in (feeds[name] for name in names))
    except KeyError:
        return None


class TesseraBackend(Backend):
    @classmethod
    def prepare(cls, model: ModelProto | str | bytes, device: str = "CPU", **options) -> TesseraRep:
        """A rep of ``model``. Options: ``shapes`` and ``image`` fix input
        shapes up front (as for ``import_onnx``); ``strict_types``; ``check``
        (the executor checks every value's shape); ``cache_size``;
        ``optimize`` (default True: the graph runs simplified and fused, as
        Run_th's float program does, compiler.pipeline.OPTIMIZE; False runs
        it node by node as imported, like onnxruntime's
        ORT_DISABLE_ALL)."""
        if not cls.supports_device(device):
            raise ValueError(f"device {device!r} is not supported; Tessera's backend runs on 'CPU'")
        shapes, image = options.pop("shapes", None), options.pop("image", None)
        onnx_model = OnnxModel(model)
        return TesseraRep(onnx_model, onnx_model.input_dims(shapes, image), **options)

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
