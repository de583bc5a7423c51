"""The ahead-of-time step: an ONNX model to a device binary.

    from compiler.compile import compile_model
    compiled = compile_model("model.onnx", image="224x224x3", samples=images, outfile="model.bin")

Import, simplify, place (accelerator or CPU per layer), quantize the
accelerator segments on the calibration samples (compiler/quantize.py, as
a compiler.quant_config.QuantConfig says), tile them and plan their DRAM
for the hardware config (compiler.pipeline.PLAN, compiler/build.py), lower them to instruction streams with packed
weights (codegen/device/), the CPU segments and the float reference to
kernel programs, and write one binary (codegen/binary.py) that runtime/
loads without the compiler.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import onnx

from codegen.binary import write_binary
from compiler.build import build
from compiler.coverage import METADATA_KEY
from compiler.errors import ModelImportError
from compiler.frontend.loader import load_model
from compiler.quant_config import QuantConfig
from compiler.quantize import quantize_model
from ir.graph import Graph, clone
from passes.distribute import Placement, PlacementError
from passes.fuse_ops import fuse_ops
from passes.infra import PassContext, PassInstrument
from passes.instruments import PassTiming, timed
from passes.prune_conv_taps import prune_conv_taps
from passes.quant.calibration_data import PreprocessSpec
from runtime.compiled import CompiledModel
from runtime.errors import TesseraError
from runtime.files import MAX_DATA_BYTES, FileError, check_writable, open_regular
from runtime.hardware import MAX_CARDS, HardwareConfig
from runtime.version import VERSION


def compile_model(model, *, image: str | None = None, shapes=None, samples: Sequence | None = None,
                  outfile: str | os.PathLike | None = None, numcard: int = 1, numclus: int = 1, nlayers: int = -1,
                  config: HardwareConfig | None = None, strip_reference: bool = False, split: bool = False,
                  imgs_per_cluster: int = 1, mvbatch: bool = False, split_overrides: Mapping[str, str] | None = None,
                  preprocess: PreprocessSpec | None = None, quant_config: QuantConfig | None = None,
                  instruments: Sequence[PassInstrument] = (), **quantization: Any) -> CompiledModel:
    """Compile ``model`` (an ONNX path, bytes or ModelProto) for the
    accelerator described by ``config`` (default: an FWDNXT-class card).

    ``image`` is FWDNXT's input size string ("WxHxC") or the path of an image
    whose size to use; ``samples`` the calibration inputs (arrays or feed
    dicts; without them Tessera calibrates on synthetic data and warns);
    ``nlayers`` keeps only the first N layers (ONNX nodes in graph order,
    Constant nodes not counted), -1 all; ``numcard``/``numclus`` the cards and
    clusters to use: by default each cluster runs its own ``imgs_per_cluster``
    images (``mvbatch``: its MAC units on different images); with ``split``
    (FWDNXT's clustersbatchmode) one image, each layer divided over them
    as passes/distribute.py decides (``split_overrides``: layer -> axis);
    the simulated system has as many cards as asked for, up to
    runtime.hardware.MAX_CARDS. ``preprocess`` (a PreprocessSpec) is how
    images become inputs: it reads ``samples`` when they are a folder of
    images, and the binary records it (metadata "preprocess") so that
    tessera-infer pre-processes images the same way. ``quant_config`` (a
    compiler.quant_config.QuantConfig) is how to quantize; further keywords
    replace its fields (calibrator, mode, float_layers, hwlinear, ...), as
    for :func:`compiler.quantize.quantize_model`. Writes ``outfile`` when given (checked
    writable first; written atomically: a failure keeps the previous file). The
    result's metadata records the accelerator coverage
    (compiler.coverage.recorded_coverage reads it back). ``instruments``
    see every pass and the other stages (:data:`STAGES`; a
    passes.instruments.PassTiming among them gives :func:`stage_line`)."""
    quant = QuantConfig.build(quant_config, quantization, where="compile_model")
    if outfile is not None:
        check_writable(outfile)  # before minutes of compiling, not after
    config = system_config(config or HardwareConfig(), numcard)
    placement = Placement(numcard, numclus, "split" if split else "batch", imgs_per_cluster, bool(mvbatch))
    placement.check(config)
    proto, label = load_model(model)
    if nlayers is not None and nlayers >= 0:
        proto = first_layers(proto, nlayers, label)
    if image is not None and Path(str(image)).is_file():
        image = image_size_string(image)
    if preprocess is not None and not isinstance(preprocess, PreprocessSpec):
        raise TesseraError(f"preprocess must be a PreprocessSpec, got a {type(preprocess).__name__}")
    if preprocess is not None and isinstance(samples, (str, os.PathLike)):
        quant = dataclasses.replace(quant, preprocess=preprocess)
    quantized = quantize_model(proto, config=quant, calibration_data=samples, image=image, shapes=shapes,
                               options={"target.hardware": config}, instruments=instruments)
    metadata = {"compiler": f"tessera {VERSION}", "source": label, "nlayers": nlayers,
                "quantization": quant.record(),
                METADATA_KEY: quantized.coverage().to_metadata()}
    if preprocess is not None:
        metadata["preprocess"] = preprocess.to_metadata()
    if quantized.target is not None:
        metadata["target_snr"] = quantized.target.to_metadata()
    if quantized.head_grids:
        metadata["head_grids"] = dataclasses.asdict(quantized.head_grids)
    with timed("reference", instruments):
        reference = None if strip_reference else fused_reference(quantized.float_graph)
    compiled = build(quantized.graph, config, reference, metadata, placement=placement,
                     options={"device.split_overrides": dict(split_overrides or {})}, instruments=instruments)
    if outfile is not None:
        with timed("write", instruments):
            write_binary(compiled, outfile)
    return compiled


STAGES = ("import", "simplify", "place", "quantize: lowering", "calibration: float runs", "calibration: statistics",
          "quantize: rewrite", "bias correction", "quantize: rest", "plan", "codegen", "reference", "write")
"""The stages of compile_model, in order: "simplify", "place" and "plan" are
compiler.pipeline's pass groups; calibration's statistics include the
sums bias correction takes in the same pass (passes/quant/quantize.py)."""
_QUANTIZE_PARTS = ("quantize: lowering", "calibration: float runs", "calibration: statistics", "quantize: rewrite",
                   "bias correction")


def stage_times(timing: PassTiming) -> dict[str, float]:
    """The seconds of each compile stage a PassTiming recorded, in the order
    of :data:`STAGES` (a stage that did not run is left out)."""
    seen = {name for name, _ in timing.times}
    totals = {name: timing.total(name) for name in STAGES if name in seen}
    if "quantize" in seen:
        totals["quantize: rest"] = max(timing.total("quantize") - sum(totals.get(n, 0.0) for n in _QUANTIZE_PARTS),
                                       0.0)
    return {name: totals[name] for name in STAGES if name in totals}


def stage_line(timing: PassTiming) -> str:
    """:func:`stage_times` on one line."""
    totals = stage_times(timing)
    parts = [f"{name} {seconds:.2f}" for name, seconds in totals.items()]
    return f"stages (s): {', '.join(parts)}; sum {sum(totals.values()):.2f}"


def system_config(config: HardwareConfig, numcard: int) -> HardwareConfig:
    """The simulated system for ``numcard`` cards of ``config``'s kind: as
    many cards as asked for, up to runtime.hardware.MAX_CARDS."""
    if not 1 <= numcard <= MAX_CARDS:
        raise PlacementError(f"numcard={numcard}: the simulated system takes 1 to {MAX_CARDS} cards "
                             "(runtime.hardware.MAX_CARDS, environment variable TESSERA_MAX_CARDS)")
    return config if config.cards >= numcard else dataclasses.replace(config, cards=numcard)


def fused_reference(float_graph: Graph) -> Graph:
    """The float model as Run_th runs it: simplified, its convolutions'
    padding-only taps pruned and fused, like the CPU path
    (compiler.pipeline.OPTIMIZE), so the reference is fast too and gives
    the bits of IE's CPU plugin and the Simulator API's float runs."""
    with PassContext():
        return fuse_ops(prune_conv_taps(clone(float_graph)))


def first_layers(proto: onnx.ModelProto, count: int, label: str = "model") -> onnx.ModelProto:
    """The model cut after its first ``count`` layers (nodes in graph order,
    Constant nodes not counted): the outputs are the outputs of the layers
    kept that nothing kept reads, as FWDNXT's ``nlayers``. Cut in Python and
    left untyped, so that no onnx C++ (shape inference) runs on the model:
    the import that follows types it with Tessera's own rules."""
    layers = sum(node.op_type != "Constant" for node in proto.graph.node)
    if not 0 < count <= layers:
        raise ModelImportError(f"nlayers={count}: the model has {layers} layers", file=label)
    kept = _first_nodes(proto.graph.node, count)
    read = _names_read(kept)
    nodes = [n for n in kept if n.op_type != "Constant" or read.intersection(n.output)]
    outputs = [name for n in nodes if n.op_type != "Constant" for name in n.output if name and name not in read]
    graph = proto.graph
    initializers = [t for t in graph.initializer if t.name in read]
    initialized = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initialized]
    cut = onnx.helper.make_graph(nodes, graph.name, inputs, [onnx.helper.make_empty_tensor_value_info(name)
                                                             for name in outputs], initializers)
    return onnx.helper.make_model(cut, ir_version=proto.ir_version, opset_imports=proto.opset_import,
                                  functions=proto.functions)


def _first_nodes(nodes: Sequence[onnx.NodeProto], count: int) -> list[onnx.NodeProto]:
    """The nodes up to the ``count``-th that is not a Constant."""
    kept, layers = [], 0
    for node in nodes:
        if layers == count:
            break
        kept.append(node)
        layers += node.op_type != "Constant"
    return kept


def _names_read(nodes: Sequence[onnx.NodeProto]) -> set[str]:
    """Every value name ``nodes`` read, their subgraphs' reads included."""
    read = set()
    for node in nodes:
        read.update(node.input)
        for attr in node.attribute:
            for graph in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs):
                read |= _names_read(graph.node)
    return read


def image_size_string(path: str | os.PathLike) -> str:
    """FWDNXT's "WxHxC" for an image file, from its header (nothing decoded)."""
    from PIL import Image

    try:
        with open_regular(path, MAX_DATA_BYTES, "image") as handle, Image.open(handle) as picture:
            (width, height), channels = picture.size, len(picture.getbands())
    except FileError as exc:
        raise ModelImportError(exc.cause, file=exc.path) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ModelImportError(f"the image that gives the input size cannot be read: {exc}", file=str(path)) from None
    return f"{width}x{height}x{channels}"
