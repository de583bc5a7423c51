"""Run a model through Tessera's CPU path and through onnxruntime, and compare."""
from __future__ import annotations

import numpy as np
import onnx

from codegen.cpu import lower_segments, lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from passes.instruments import VerifyEachPass
from runtime.executor import Executor
from runtime.segments import SegmentExecutor


def pre_softmax_outputs(model: onnx.ModelProto) -> list[str]:
    """The logits feeding a graph output that is a Softmax (compared too:
    a saturated softmax hides differences)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    names = []
    for out in model.graph.output:
        node = producers.get(out.name)
        if node is not None and node.op_type == "Softmax":
            names.append(node.input[0])
    return names


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return extended


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def compare_with_onnxruntime(model: onnx.ModelProto, seed: int = 0, optimized: bool = False) -> dict[str, float]:
    """max|diff| / max|ref| for every output (and pre-softmax logits, made
    outputs), on the imported graph or, with ``optimized``, after the full
    pipeline (simplify, affinity, fusion, partition) run segment by segment."""
    variant = "optimized" if optimized else "imported"
    return compare_variants_with_onnxruntime(model, seed, (variant,))[variant]


def compare_variants_with_onnxruntime(model: onnx.ModelProto, seed: int = 0,
                                      variants=("imported", "optimized")) -> dict[str, dict[str, float]]:
    """:func:`compare_with_onnxruntime` for each of ``variants`` against one
    onnxruntime run: one import serves both (the imported graph runs first,
    then the pipeline rewrites it in place)."""
    import onnxruntime as ort

    model = with_outputs(model, pre_softmax_outputs(model))
    names = [o.name for o in model.graph.output]
    feeds = random_feeds(model, seed)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    theirs = dict(zip(names, session.run(names, feeds)))
    del session
    graph = import_onnx(model, strict_types=True)
    del model
    results = {}
    for variant in [v for v in ("imported", "optimized") if v in variants]:
        if variant == "optimized":
            graph = partition_graph(graph, instruments=[VerifyEachPass()])
            ours = SegmentExecutor(lower_segments(graph), check=True).run(feeds)
        else:
            ours = Executor(lower_to_program(graph), check=True).run(feeds)
        results[variant] = _relative_errors(ours, theirs, names)
    return results


def _relative_errors(ours, theirs, names) -> dict[str, float]:
    errors = {}
    for name in names:
        assert ours[name].shape == theirs[name].shape, name
        assert np.isfinite(theirs[name]).all(), f"{name}: the reference itself is not finite"
        errors[name] = float(np.abs(ours[name] - theirs[name]).max() / np.abs(theirs[name]).max())
    return errors
