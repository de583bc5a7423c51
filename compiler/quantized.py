"""A quantized model, as quantize_model returns it: the partitioned graph
with its accelerator segments in integer Q ops, the float graph it came
from, and what the quantization passes did; run, compare, diagnose and
export it. Also what the quantization searches (range choice, sensitivity,
target SNR) need to quantize trial after trial: :class:`Trials`."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

import numpy as np

from codegen.cpu import lower_segments, lower_to_program
from compiler.compare import LayerReport, compare_layers
from compiler.coverage import Coverage, coverage
from compiler.diagnose import Diagnosis, diagnose
from ir.graph import Graph, Node, onnx_name, walk
from ir.types import QuantParams
from passes.infra import register_option
from passes.quant.encodings import export_encodings
from passes.quant.weight_rounding import ROUNDING, encode_rounding
from runtime.executor import Executor
from runtime.hardware import ACCELERATOR
from runtime.segments import SegmentExecutor

register_option("quant.trials", object, None,
                "how the quantization searches quantize the float graph under other options (a Trials; "
                "compiler/quantize.py gives one)")

HEAD_GROUPS = "tessera_head_groups"
"""The quantizer_args entry of an encodings export holding the heads split
into channel groups, by ONNX convolution name: a re-import splits them the
same way, so that the groups' grids in the file find their tensors."""
BIAS_CORRECTIONS = "tessera_bias_corrections"
"""The quantizer_args entry of an encodings export holding the bias
corrections (docs/quantization.md), by weight name."""
HOST_OUTPUTS = "tessera_host_outputs"
"""The quantizer_args entry of an encodings export listing the host
epilogues (``quant.host_outputs``: outputs' final pointwise functions run in
float on the host), by ONNX node name: a re-import places them the same way."""
WEIGHT_ROUNDINGS = "tessera_weight_rounding"
"""The quantizer_args entry of an encodings export holding, by weight name,
how the codes weight rounding chose differ from the nearest ones
(passes/quant/weight_rounding.py's encode_rounding text)."""


class QuantizationWarning(UserWarning):
    """Something about the quantization the user should know (tensors an
    encodings file does not cover, layers sensitivity could not promote)."""


@dataclass
class QuantizedModel:
    """A model after quantization: ``graph`` is partitioned into device
    segments, the accelerator's in integer Q ops; ``float_graph`` is the same
    model simplified but not quantized (the reference of comparisons)."""

    graph: Graph
    float_graph: Graph
    options: dict[str, Any] = field(default_factory=dict)
    promoted: list[str] = field(default_factory=list)
    """ONNX node names sensitivity analysis or a target SNR moved to 16 bits."""
    target: Any = None
    """With ``target_snr``: what reaching it did (compiler.target_snr.TargetReport)."""
    equalized: int | None = None
    """With ``equalize``: the layer pairs cross-layer equalization rescaled."""
    absorbed: int | None = None
    """With ``absorb_bias``: the layer pairs bias absorption changed."""
    head_grids: Any = None
    """What the head grids did (passes.quant.head_grids.HeadGrids), or None when they did not run."""
    _executor: SegmentExecutor | None = field(default=None, repr=False)
    _float_executor: Executor | None = field(default=None, repr=False)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The quantized model's outputs (float32) for ``feeds``."""
        if self._executor is None:
            self._executor = SegmentExecutor(lower_segments(self.graph))
        return self._executor.run(feeds)

    def run_float(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The float model's outputs for ``feeds``."""
        if self._float_executor is None:
            self._float_executor = Executor(lower_to_program(self.float_graph))
        return self._float_executor.run(feeds)

    def quantized_nodes(self) -> list[Node]:
        """The integer nodes of the accelerator segments, in order."""
        return [n for s in self.graph.nodes if s.attrs.get("device") == ACCELERATOR
                for _, n in walk(s.attrs["body"]) if n.outputs and n.outputs[0].quant is not None]

    def _cpu_nodes(self) -> list[Node]:
        return [n for s in self.graph.nodes if s.attrs.get("device") != ACCELERATOR
                for _, n in walk(s.attrs["body"]) if n.op != "Fused"]

    def coverage(self) -> Coverage:
        """How much of the model runs on the accelerator, and why the rest
        does not (compiler/coverage.py); MACs counted on the float graph."""
        return coverage(self.graph, self.float_graph)

    def float_layers(self) -> list[str]:
        """ONNX node names that run in float on the CPU."""
        return list(dict.fromkeys(onnx_name(n.name) for n in self._cpu_nodes()))

    def activation_grids(self) -> dict[str, QuantParams]:
        """The grid of every tensor the accelerator stores, by tensor name,
        and of the value a convolution's table reads (its output before the
        function, whose codes the clamp gives the table)."""
        grids = {}
        for node in self.quantized_nodes():
            if "table_input" in node.annotations:
                name, grid = node.annotations["table_input"]
                grids[name] = grid
            if "tensor" in node.annotations:
                grids[node.annotations["tensor"]] = node.outputs[0].quant
        return grids

    def weight_grids(self) -> dict[str, QuantParams]:
        """The grid of every quantized weight, by the name of the float
        weight it came from (an ONNX initializer, or a constant Tessera
        folded, such as ``<conv>_weight`` after a BatchNorm)."""
        grids = {}
        for node in self.quantized_nodes():
            if "weight" in node.annotations:
                grids[node.annotations["weight"]] = node.inputs[1].quant
        return grids

    def bias_corrections(self) -> dict[str, list[int]]:
        """The bias correction of each corrected layer (accumulator units per
        output channel), by the name of its float weight."""
        return {n.annotations["weight"]: n.annotations["bias_correction"] for n in self.quantized_nodes()
                if "bias_correction" in n.annotations and "weight" in n.annotations}

    def weight_roundings(self) -> dict[str, np.ndarray]:
        """How each rounded layer's weight codes differ from the nearest ones
        (passes/quant/weight_rounding.py), by the name of its float weight."""
        return {n.annotations["weight"]: n.annotations[ROUNDING] for n in self.quantized_nodes()
                if ROUNDING in n.annotations and "weight" in n.annotations}

    def host_outputs(self) -> tuple[str, ...]:
        """The host epilogues (``quant.host_outputs``): ONNX names of the
        outputs' final pointwise functions run in float on the host."""
        return tuple(self.options.get("quant.host_outputs") or ())

    def float_tensors(self) -> list[str]:
        """Outputs of the layers that run in float on the CPU."""
        return [v.name for n in self._cpu_nodes() for v in n.outputs]

    def export_encodings(self, path: str | os.PathLike | None = None, version: str = "0.6.1") -> dict:
        """The quantization parameters as an AIMET-style encodings document
        (written to ``path`` when given): activations and weights by tensor
        name, and the CPU layers' outputs as float tensors."""
        weights = self.weight_grids()
        params = {**self.activation_grids(), **weights}
        floats = [t for t in self.float_tensors() if t not in params]
        return export_encodings(params, path, weights=weights, float_tensors=floats, version=version,
                                quantizer_args={"activation_bitwidth": 8, "param_bitwidth": 8,
                                                "per_channel_quantization": True,
                                                "quant_scheme": "tessera:" + self.options.get("quant.mode",
                                                                                              "int8"),
                                                BIAS_CORRECTIONS: self.bias_corrections(),
                                                **({WEIGHT_ROUNDINGS: {name: encode_rounding(delta) for name, delta
                                                                       in self.weight_roundings().items()}}
                                                   if self.weight_roundings() else {}),
                                                **({HOST_OUTPUTS: list(self.host_outputs())}
                                                   if self.host_outputs() else {}),
                                                **({HEAD_GROUPS: self.head_grids.split}
                                                   if self.head_grids and self.head_grids.split else {})})

    def compare(self, samples: Iterable[Mapping[str, np.ndarray]], task: str | None = None) -> LayerReport:
        """Layer-wise comparison with the float model over ``samples``, and
        the task heads' agreement (``report.agreement``; compiler/agreement.py:
        the heads recognised, or those of ``task``, "yolo", "db",
        "centernet" or "classify"; "none" for none)."""
        return compare_layers(self.float_graph, self.graph, samples, task)

    def diagnose(self, samples: Iterable[Mapping[str, np.ndarray]], task: str | None = None) -> Diagnosis:
        """Where the output error enters and why (compiler/diagnose.py): a
        Diagnosis, its layers sorted by their share of the output error, with
        the task heads' agreement (``task`` as for :meth:`compare`)."""
        return diagnose(self, samples, task)


class Trials(Protocol):
    """What a quantization search runs (compiler/quantize.py gives one in the
    PassContext option ``quant.trials``)."""

    def quantize(self, graph: Graph, options: Mapping[str, Any]) -> QuantizedModel:
        """``graph`` (the float graph, simplified) placed and quantized under
        ``options`` (the same options give the same model, quantized once)."""

    def hwtime_ms(self, model: QuantizedModel, options: Mapping[str, Any]) -> float | None:
        """The estimated hwtime of ``model`` on the card ``options`` name, or
        None when it cannot be planned."""
