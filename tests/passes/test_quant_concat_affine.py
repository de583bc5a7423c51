"""Per-channel affines moved through channel concatenations
(passes/quant/concat_affine.py): the rewritten graph, its float numbers,
and what the quantize pass makes of it (a DenseNet-style Concat -> BatchNorm
-> Relu whose pieces have very different ranges)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from ir.types import QuantParams
from passes.quant.concat_affine import push_affines_through_concat
from passes.quant.metrics import snr_db
from runtime.executor import Executor
from tests.helpers.quant import (
    SHAPE,
    conv,
    from_source,
    inputs,
    make_model,
    node,
    q_ops,
    quantized,
    run,
    run_float,
    seeded,
)

SNR_DB = 28  # measured 33.2; with the affine left on the concatenation's one grid: 13.6


def concat_model(nested: bool = False, reuse: bool = False):
    """Convs a (4 channels), b (4, weights x30: a far wider range) and, when
    ``nested``, c (2) joined as Concat(Concat(a, b), c); then Mul, Add, Relu
    per channel (a BatchNorm and its activation) and a 1x1 conv. ``reuse``:
    the inner concatenation is a model output too."""
    channels = 10 if nested else 8
    w = seeded(0, wa=(4, 3, 3, 3), wb=(4, 3, 3, 3), wd=(4, channels, 1, 1), **({"wc": (2, 3, 3, 3)} if nested else {}))
    w["wb"] = w["wb"] * 30
    rng = np.random.default_rng(1)
    w["scale"] = rng.uniform(0.5, 2, (1, channels, 1, 1)).astype(np.float32)
    w["scale"][0, 4:8] /= 30  # a BatchNorm brings piece b back to the others' range
    w["shift"] = rng.uniform(-0.5, 0.5, (1, channels, 1, 1)).astype(np.float32)
    nodes = [conv("x", "a", "wa", name="conv_a"), conv("x", "b", "wb", name="conv_b")]
    if nested:
        nodes += [conv("x", "c", "wc", name="conv_c"), node("Concat", ["a", "b"], "ab", name="cat_inner", axis=1),
                  node("Concat", ["ab", "c"], "cat", name="cat_outer", axis=1)]
    else:
        nodes.append(node("Concat", ["a", "b"], "cat", name="cat_outer", axis=1))
    nodes += [node("Mul", ["cat", "scale"], "scaled", name="bn_mul"), node("Add", ["scaled", "shift"], "bn", name="bn"),
              node("Relu", ["bn"], "act", name="bn_relu"), conv("act", "y", "wd", k=1, name="conv_d")]
    outputs = {"y": [1, 4, 8, 8], **({"ab": [1, 8, 8, 8]} if reuse else {})}
    return make_model(nodes, {"x": SHAPE}, outputs, w)


@pytest.mark.parametrize("nested, reuse", [(False, False), (True, False), (True, True)])
def test_the_affine_moves_onto_each_piece_and_computes_the_same(nested, reuse):
    model = concat_model(nested, reuse)
    graph = import_onnx(model)
    before = Executor(lower_to_program(graph))
    push_affines_through_concat(graph)
    pieces = 3 if nested else 2
    assert [n.op for n in graph.nodes].count("Mul") == pieces
    assert [n.op for n in graph.nodes].count("Add") == pieces
    assert [n.op for n in graph.nodes].count("Relu") == pieces
    (joined,) = [n for n in graph.nodes if n.op == "Concat" and n.outputs[0].name == "act"]
    assert [v.producer.op for v in joined.inputs] == ["Relu"] * pieces
    first_muls = [v.producer.inputs[0].producer.inputs[0].producer for v in joined.inputs]
    assert [m.inputs[0].name for m in first_muls] == ["a", "b", "c"][:pieces]  # each on its producer
    np.testing.assert_array_equal(first_muls[1].inputs[1].const.reshape(-1), model_constant(model, "scale")[4:8])
    assert joined.name.split("::")[0] == "bn_relu"  # maps back to the ONNX node
    concats = {n.name for n in graph.nodes if n.op == "Concat"} - {joined.name}
    assert concats == ({"cat_inner"} if reuse else set())  # the old concatenations that nothing reads are gone
    after = Executor(lower_to_program(graph))
    for x in inputs(3, seed=2):
        want, got = before.run({"x": x}), after.run({"x": x})
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def model_constant(model, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).reshape(-1)


def test_quantized_the_pieces_get_their_own_affine_and_the_concat_joins_them():
    model = concat_model()
    data = inputs(8, seed=1)
    graph = quantized(model, data, **{"quant.calibrator": "mse"})
    joined = next(n for n in q_ops(graph) if n.op == "QConcat")
    affines = [v.producer for v in joined.inputs]
    assert [a.op for a in affines] == ["QConv", "QConv"]
    assert [a.attrs["group"] for a in affines] == [4, 4]  # depthwise 1x1: the per-channel affine
    assert [a.inputs[0].producer for a in affines] == [from_source(graph, "conv_a"), from_source(graph, "conv_b")]
    assert joined.annotations["tensor"] == "act"
    assert from_source(graph, "conv_d").inputs[0] is joined.outputs[0]
    reference = np.concatenate([run_float(model, {"x": x})[0] for x in inputs(8, seed=5)])
    result = np.concatenate([run(graph, {"x": x})["y"] for x in inputs(8, seed=5)])
    assert snr_db(reference, result) > SNR_DB


def test_given_parameters_keep_the_model_as_it_is():
    """An encodings file or a pre-quantized model names the model's own
    tensors: the affine stays after the concatenation."""
    model = concat_model()
    given = {name: QuantParams(0.05, 0, np.dtype(np.int8)) for name in ("x", "a", "b", "cat", "act", "y")}
    graph = quantized(model, None, **{"quant.given": given})
    (affine,) = [n for n in q_ops(graph) if n.op == "QConv" and "bn" in n.annotations["source"]]
    assert affine.inputs[0].producer.op == "QConcat"
