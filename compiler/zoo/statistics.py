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


def normalised_convolutions(model: onnx.ModelProto, images: Sequence[np.ndarray],
                            skip: Sequence[str] = ()) -> onnx.ModelProto:
    """A copy of ``model`` (convolutions with bias and no BatchNorm: an
    export whose BatchNorms were folded) with each convolution but those
    named in ``skip`` rescaled so that its output channels have zero mean
    and unit variance over ``images``: as if it had been trained with a
    BatchNorm that the exporter then folded (Ultralytics' ``fuse()``). A
    seeded network of that kind otherwise fades to near-constant features.
    The statistics are those of ``images`` as one batch (a BatchNorm in
    training), measured in one run of the network's part before them."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inits = {t.name: t for t in probe.graph.initializer}
    nodes, folded = [], {}
    for node in probe.graph.node:
        nodes.append(node)
        if node.op_type != "Conv" or node.name in skip or len(node.input) < 3:
            continue
        channels = inits[node.input[1]].dims[0]
        names = [f"{node.name}__bn_{k}" for k in ("scale", "bias", "mean", "var")]
        probe.graph.initializer.extend(numpy_helper.from_array(np.full(channels, v, np.float32), n)
                                       for n, v in zip(names, (1.0, 0.0, 0.0, 1.0)))
        output = node.output[0]
        node.output[0] = f"{output}__conv"
        nodes.append(helper.make_node("BatchNormalization", [node.output[0], *names], [output],
                                      name=f"{node.name}__bn", epsilon=1e-5))
        folded[node.name] = names
    _keep_ancestors(probe, nodes, [n.output[0] for n in nodes if n.op_type == "BatchNormalization"])
    batch = np.concatenate(list(images))  # one batch: each BatchNorm sees the statistics of all of them
    (source,) = [v for v in probe.graph.input if v.name == _input_name(model)]
    source.type.tensor_type.shape.dim[0].dim_value = len(batch)
    measured = {t.name: numpy_helper.to_array(t) for t in with_data_statistics(probe, [batch]).graph.initializer}
    result = onnx.ModelProto()
    result.CopyFrom(model)
    inits = {t.name: t for t in result.graph.initializer}
    for node in result.graph.node:
        if node.name in folded:
            mean, var = measured[folded[node.name][2]], measured[folded[node.name][3]]
            scale = 1.0 / np.sqrt(var.astype(np.float64) + 1e-5)
            weight, bias = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in node.input[1:3])
            for name, value in ((node.input[1], weight * scale.reshape(-1, 1, 1, 1)),
                                (node.input[2], (bias - mean) * scale)):
                inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return result


def _keep_ancestors(model: onnx.ModelProto, nodes: list[onnx.NodeProto], outputs: list[str]) -> None:
    """``model``'s graph made of those of ``nodes`` that ``outputs`` need, with ``outputs`` its outputs."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    del model.graph.output[:]
    model.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in outputs)
    del model.graph.value_info[:]


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


def logistic(x: np.ndarray, y: np.ndarray, penalty: float = 1.0, steps: int = 8,
             weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression by Newton's method (a few steps, from zero) with
    an L2 penalty on the weights: (weights [outputs, inputs], bias
    [outputs]) for rows ``x`` [N, inputs] and target probabilities ``y``
    [N, outputs] in [0, 1] (soft targets allowed), each output fitted on its
    own, rows weighted by ``weight`` [N] if given. How the zoo's detectors
    train a sigmoid head: its scores come out saturated (most near 0, the
    objects near 1) as a trained detector's do, which a least-squares fit to
    logits does not give."""
    rows = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
    columns = np.ascontiguousarray(rows.T)
    weight = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    ridge_term = penalty * np.eye(rows.shape[1])
    ridge_term[-1, -1] = 0.0
    solved = np.zeros((y.shape[1], rows.shape[1]))
    for k in range(y.shape[1]):
        theta = solved[k]
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-np.clip(rows @ theta, -30, 30)))
            gradient = columns @ (weight * (p - y[:, k])) + ridge_term @ theta
            hessian = (columns * (weight * p * (1.0 - p))) @ rows + ridge_term
            theta = theta - np.linalg.solve(hessian + 1e-6 * np.eye(len(theta)), gradient)
        solved[k] = theta
    return solved[:, :-1], solved[:, -1]


def tensors(model: onnx.ModelProto, images: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The tensors ``names`` of ``model`` on each of ``images`` (feeds of
    its single input), stacked along the batch axis: the features a trained
    head's last convolution is fitted on."""
    from codegen.cpu import lower_to_program
    from compiler.frontend import import_onnx
    from runtime.executor import Executor

    run = Executor(lower_to_program(import_onnx(model)))
    source = _input_name(model)
    outputs = [run.run({source: x}, fetch=list(names)) for x in images]
    return {name: np.concatenate([o[name] for o in outputs]) for name in names}


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
