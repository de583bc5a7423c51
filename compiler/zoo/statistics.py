"""Making a seeded model behave like a trained one: BatchNormalization
statistics estimated from data.

Random weights with random BatchNorm statistics give activations that drift
in scale from layer to layer; a trained network's BatchNorms normalise
their inputs. Each BatchNorm's running mean and variance are replaced by the
mean and variance its input actually has on the given images (measured in
one pass per image: every BatchNorm normalises with the statistics of its
input as it runs, and reports them), so every layer sees normalised data.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper


def with_data_statistics(model: onnx.ModelProto, images: Sequence[np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose BatchNorm means and variances are those of
    their inputs over ``images`` (feeds of the model's single input)."""
    from codegen.cpu import lower_to_program
    from compiler.frontend import import_onnx
    from runtime.executor import Executor

    probe, stats = _probe(model)
    if not stats:
        return model
    executor = Executor(lower_to_program(import_onnx(probe)))
    name = _input_name(model)
    sums: dict[str, np.ndarray] = {}
    for image in images:
        outputs = executor.run({name: image}, fetch=[n for pair in stats.values() for n in pair])
        for mean_name, var_name in stats.values():
            mean, var = outputs[mean_name].astype(np.float64), outputs[var_name].astype(np.float64)
            sums[mean_name] = sums.get(mean_name, 0) + mean
            sums[var_name] = sums.get(var_name, 0) + var + mean * mean
    return _set_statistics(model, stats, sums, len(images))


def _input_name(model: onnx.ModelProto) -> str:
    inits = {t.name for t in model.graph.initializer}
    (name,) = [v.name for v in model.graph.input if v.name not in inits]
    return name


def _probe(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, tuple[str, str]]]:
    """The model with each BatchNorm fed the mean and variance of its own
    input (per channel), both made graph outputs; BN node name -> (mean, var) names."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    opset = max(i.version for i in probe.opset_import if i.domain in ("", "ai.onnx"))
    nodes, stats = [], {}
    for index, node in enumerate(probe.graph.node):
        if node.op_type == "BatchNormalization" and len(node.input) == 5:
            key = node.name or f"bn_{index}"
            mean, var, extra = _moments(node.input[0], key, opset)
            nodes += extra
            node.input[3], node.input[4] = mean, var
            stats[key] = (mean, var)
        nodes.append(node)
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for pair in stats.values() for n in pair)
    return probe, stats


def _moments(x: str, key: str, opset: int) -> tuple[str, str, list[onnx.NodeProto]]:
    """Nodes computing the per-channel mean and (biased) variance of x (N,C,...)."""
    axes_name = f"{key}__axes"
    nodes = [helper.make_node("Constant", [], [axes_name], value=numpy_helper.from_array(np.array([0, 2, 3]),
                                                                                          axes_name))]

    def reduce_mean(source: str, out: str, keepdims: int) -> onnx.NodeProto:
        if opset >= 18:
            return helper.make_node("ReduceMean", [source, axes_name], [out], keepdims=keepdims)
        return helper.make_node("ReduceMean", [source], [out], axes=[0, 2, 3], keepdims=keepdims)

    mean, keep, centred, square, var = (f"{key}__{s}" for s in ("mean", "mean_kept", "centred", "square", "var"))
    nodes += [reduce_mean(x, keep, 1), reduce_mean(x, mean, 0),
              helper.make_node("Sub", [x, keep], [centred]), helper.make_node("Mul", [centred, centred], [square]),
              reduce_mean(square, var, 0)]
    return mean, var, nodes


def _set_statistics(model: onnx.ModelProto, stats, sums, count: int) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    inits = {t.name: t for t in result.graph.initializer}
    bns = {(n.name or f"bn_{i}"): n for i, n in enumerate(result.graph.node) if n.op_type == "BatchNormalization"}
    for key, (mean_name, var_name) in stats.items():
        mean = sums[mean_name] / count
        var = np.maximum(sums[var_name] / count - mean * mean, 1e-6)
        node = bns[key]
        for index, value in ((3, mean), (4, var)):
            target = inits.get(node.input[index])
            if target is None:
                raise ValueError(f"BatchNorm {key!r}: input {node.input[index]!r} is not an initializer")
            target.CopyFrom(numpy_helper.from_array(value.astype(np.float32), target.name))
    return result


def ridge(x: np.ndarray, y: np.ndarray, penalty: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with an L2 penalty, how the zoo's detectors train their
    heads on a seeded network's features: (weights [outputs, inputs], bias
    [outputs]) for rows ``x`` [N, inputs] and targets ``y`` [N, outputs]."""
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    xc = x - mean_x
    weights = np.linalg.solve(xc.T @ xc + penalty * len(x) * 1e-3 * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return weights.T, mean_y - mean_x @ weights


def patches(features: np.ndarray) -> np.ndarray:
    """[C, H, W] features -> one row of each cell's 3x3 neighbourhood
    (zero-padded), ordered (channel, dy, dx) as a 3x3 Conv weight's [C, 3, 3]:
    the inputs a head convolution trained by :func:`ridge` sees."""
    channels, height, width = features.shape
    padded = np.pad(features, ((0, 0), (1, 1), (1, 1)))
    stack = np.stack([padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)], axis=1)
    return stack.reshape(channels * 9, height * width).T.astype(np.float64)


def feature_rows(model: onnx.ModelProto, images: Sequence[np.ndarray]) -> tuple[onnx.ModelProto, np.ndarray]:
    """A seeded feature network made trained-like (BatchNorm statistics of
    the first 64 ``images``) and the :func:`patches` rows of its single
    output on every image, stacked: what a detector head is fitted on."""
    from codegen.cpu import lower_to_program
    from compiler.frontend import import_onnx
    from runtime.executor import Executor

    network = with_data_statistics(model, images[:64])
    run = Executor(lower_to_program(import_onnx(network)))
    name, source = network.graph.output[0].name, _input_name(network)
    return network, np.concatenate([patches(run.run({source: x})[name][0]) for x in images])
