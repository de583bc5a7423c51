"""An onnxruntime-like session over a :class:`SimulatedModel`, usable where
code expects ``onnxruntime.InferenceSession``: ``get_inputs()`` and
``get_outputs()`` give objects with ``name``, ``type`` ("tensor(float)")
and ``shape``; ``run(output_names, input_feed)`` returns a list of arrays
(``output_names`` None: every graph output). Besides the graph outputs,
``run`` returns any tensor the model has by name (intermediate feature
maps), which onnxruntime does not.

A model with symbolic dims reports them as onnxruntime does (``['batch', 3,
'height', 'width']``, None for an unnamed or -1 dim) and runs feeds of any
shape that fits, compiled per input signature (compiler/simulator/model.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from compiler.simulator.data import TensorSpec
from compiler.simulator.errors import SimulatorError
from compiler.simulator.model import SimulatedModel

ORT_TYPES = {"float32": "float", "float16": "float16", "float64": "double", "int8": "int8", "uint8": "uint8",
             "int16": "int16", "uint16": "uint16", "int32": "int32", "uint32": "uint32", "int64": "int64",
             "uint64": "uint64", "bool": "bool"}
PROVIDERS = ["CPUExecutionProvider"]


@dataclass(frozen=True)
class NodeArg:
    """onnxruntime's NodeArg: an input or output's name, type and shape."""

    name: str
    type: str
    shape: list[int | str | None] | None


def node_arg(spec: TensorSpec) -> NodeArg:
    return NodeArg(spec.name, f"tensor({ORT_TYPES.get(spec.dtype.name, spec.dtype.name)})",
                   None if spec.shape is None else list(spec.shape))


class InferenceSession:
    """The session ``Simulator.get_inference_session`` returns."""

    def __init__(self, model: SimulatedModel):
        self.model = model

    def get_inputs(self) -> list[NodeArg]:
        return [node_arg(s) for s in self.model.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [node_arg(s) for s in self.model.outputs]

    def get_providers(self) -> list[str]:
        return list(PROVIDERS)

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        """The tensors ``output_names`` for the feeds (input name -> array)."""
        return self.model.run(self._feeds(input_feed), output_names or None)

    def _feeds(self, input_feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The feeds checked like onnxruntime checks them: every input, no
        other name, the input's element type and shape."""
        if not isinstance(input_feed, Mapping):
            raise SimulatorError(f"input_feed must be a dict of input name -> array, got {type(input_feed).__name__}")
        specs = {s.name: s for s in self.model.inputs}
        unknown = sorted(set(input_feed) - set(specs))
        if unknown:
            raise SimulatorError(f"input_feed: the model has no input {unknown[0]!r}; its inputs are {list(specs)}")
        feeds = {}
        for name, spec in specs.items():
            if name not in input_feed:
                raise SimulatorError(f"input_feed: input {name!r} is missing")
            array = np.asarray(input_feed[name])
            if array.dtype != spec.dtype:
                raise SimulatorError(f"input_feed: input {name!r} is {node_arg(_like(array, spec)).type}; the "
                                     f"model takes {node_arg(spec).type}")
            if not spec.takes(array.shape):
                raise SimulatorError(f"input_feed: input {name!r} has shape {list(array.shape)}; the model takes "
                                     f"{spec.described()}")
            feeds[name] = array
        return feeds


def _like(array: np.ndarray, spec: TensorSpec) -> TensorSpec:
    return TensorSpec(spec.name, array.shape, array.dtype)


@dataclass
class QuantizationSim:
    """What ``Simulator.get_quantization_sim`` returns: ``.session`` runs the
    model; ``.model`` is the SimulatedModel behind it."""

    model: SimulatedModel
    session: InferenceSession = field(init=False)

    def __post_init__(self):
        self.session = InferenceSession(self.model)
