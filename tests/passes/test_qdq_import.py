"""Pre-quantized ONNX models (QuantizeLinear/DequantizeLinear pairs, as
onnxruntime's quantize_static writes them in QDQ format) import with their
parameters honoured: no calibration runs, every activation grid and every
integer weight is onnxruntime's, and the quantized model computes what
onnxruntime computes. Then the QDQ shapes that are not a plain pair: a lone
DequantizeLinear, per-axis activations, a pair whose two halves disagree."""
from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import passes.quant.quantize as quantize_module
from codegen.cpu import lower_segments, lower_with_names
from compiler.frontend import import_onnx
from compiler.pipeline import partition_graph
from ir.graph import Graph, Node, walk
from ir.types import QuantParams
from passes.infra import PassContext
from passes.quant.calibration_data import CalibrationWarning
from passes.quant.metrics import snr_db
from passes.quant.quantize import quantize
from runtime.qscheme import weight_scales
from runtime.segments import SegmentExecutor
from tests.helpers.quant import make_model

INT8, INT32 = np.dtype(np.int8), np.dtype(np.int32)
SHAPE = [1, 3, 8, 8]
# Measured: the chain agrees with onnxruntime code for code (SNR +inf); the
# residual model 37.9 dB (Tessera adds the residual inside the conv and never
# rounds the conv's output to the grid onnxruntime gives it before the Add).
CHAIN_SNR_DB, RESIDUAL_SNR_DB = 60, 32
XF_GRID = QuantParams(np.float32(0.03), -5, INT8)  # the edge cases' input and output grids
Y_GRID = QuantParams(np.float32(0.02), 3, INT8)


# ---------------------------------------------------------------- models
def float_model(residual: bool) -> onnx.ModelProto:
    """conv-relu, conv-relu, conv (+ the first relu's output, relu), 1x1 conv."""
    rng = np.random.default_rng(0)
    weights = {}

    def conv(x: str, out: str, cout: int, cin: int, k: int, scale: float):
        w, b = f"w_{out}", f"b_{out}"
        weights[w] = (rng.standard_normal((cout, cin, k, k)) * scale).astype(np.float32)
        weights[b] = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        return helper.make_node("Conv", [x, w, b], [out], name=f"conv_{out}", kernel_shape=[k, k],
                                pads=[(k - 1) // 2] * 4)

    def relu(x: str, out: str):
        return helper.make_node("Relu", [x], [out], name=f"relu_{out}")

    nodes = [conv("x", "c0", 8, 3, 3, 0.3), relu("c0", "r0"), conv("r0", "c1", 8, 8, 3, 0.15), relu("c1", "r1"),
             conv("r1", "c2", 8, 8, 3, 0.1)]
    if residual:
        nodes += [helper.make_node("Add", ["c2", "r0"], ["a2"], name="add"), relu("a2", "r2")]
    else:
        nodes += [relu("c2", "r2")]
    nodes += [conv("r2", "y", 4, 8, 1, 0.3)]
    return make_model(nodes, {"x": (TensorProto.FLOAT, SHAPE)}, {"y": [1, 4, 8, 8]}, weights)


def images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, SHAPE).astype(np.float32) for _ in range(count)]


class _Reader(CalibrationDataReader):
    def __init__(self, data):
        self.feeds = iter([{"x": x} for x in data])

    def get_next(self):
        return next(self.feeds, None)


def ort_quantized(model: onnx.ModelProto, folder, activation_type: QuantType) -> onnx.ModelProto:
    source, target = folder / "float.onnx", folder / "qdq.onnx"
    onnx.save(model, source)
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice to pre-process the model
    quantize_static(str(source), str(target), _Reader(images(8, seed=1)), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=activation_type, weight_type=QuantType.QInt8)
    return onnx.load(target)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    """The QDQ model run as written (its ops one by one, its meaning): from
    1.32 on, onnxruntime's optimised session fuses Q/DQ pairs into integer
    kernels that round some outputs one code differently (22 dB against its
    own unoptimised run on the chain), so the optimised run is no reference."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- Tessera
def _refuse(*args, **kwargs):
    raise AssertionError("calibration ran on a pre-quantized model")


def tessera(model: onnx.ModelProto, partition: dict | None = None, calibrate: bool = False, **options) -> Graph:
    """Import, partition and quantize; calibration is forbidden unless asked for."""
    graph = partition_graph(import_onnx(model), options=partition or {})
    with pytest.MonkeyPatch.context() as patch:
        if not calibrate:
            patch.setattr(quantize_module, "_calibrate", _refuse)
            patch.setattr(quantize_module, "context_batches", _refuse)
        with PassContext(options=options, lower=lower_with_names):
            return quantize(graph)


def run(graph: Graph, feeds: dict) -> dict[str, np.ndarray]:
    return SegmentExecutor(lower_segments(graph)).run(feeds)


def device_nodes(graph: Graph) -> list[Node]:
    return [n for s in graph.nodes if s.attrs["device"] == "FPGA" for n in s.attrs["body"].nodes]


def cpu_ops(graph: Graph) -> list[str]:
    """The ops the CPU segments run (inside fused groups too)."""
    return [n.op for s in graph.nodes if s.attrs["device"] == "CPU" for _, n in walk(s.attrs["body"])
            if n.op != "Fused"]


def stored_grids(graph: Graph) -> dict[str, QuantParams]:
    """The grid of each tensor a device segment stores, by its float name
    (the codes of tensor t are the value t_q)."""
    return {v.name[:-2]: v.quant for n in device_nodes(graph) for v in n.outputs
            if v.quant is not None and v.name.endswith("_q")}


def qconv_of(graph: Graph, onnx_name: str) -> Node:
    (found,) = [n for n in device_nodes(graph) if n.op == "QConv" and onnx_name in n.annotations["source"]]
    return found


# ---------------------------------------------------------------- onnxruntime's parameters
def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def ort_activation_grids(model: onnx.ModelProto) -> dict[str, QuantParams]:
    """Each quantized activation's grid as int8 (a uint8 zero point minus
    128, same scale), keyed by the name Tessera keeps for the tensor: the
    QuantizeLinear's input, or the DequantizeLinear's output where that is
    a graph output."""
    outputs = {o.name for o in model.graph.output}
    grids = {}
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        scale, zero = initializer(model, q.input[1]), initializer(model, q.input[2])
        shift = 128 if zero.dtype == np.uint8 else 0
        (dq,) = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
        name = dq.output[0] if dq.output[0] in outputs else q.input[0]
        grids[name] = QuantParams(scale, int(zero) - shift, INT8)
    return grids


def ort_conv_parameters(model: onnx.ModelProto, conv_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int8 weights, their per-channel scales, int32 bias) of a conv of the QDQ model."""
    (conv,) = [n for n in model.graph.node if n.name == conv_name]
    producers = {o: n for n in model.graph.node for o in n.output}
    w_dq, b_dq = producers[conv.input[1]], producers[conv.input[2]]
    assert w_dq.op_type == b_dq.op_type == "DequantizeLinear"
    assert not initializer(model, w_dq.input[2]).any()
    return (initializer(model, w_dq.input[0]), initializer(model, w_dq.input[1]),
            initializer(model, b_dq.input[0]))


# ---------------------------------------------------------------- the round trip
CASES = [("chain", QuantType.QInt8), ("residual", QuantType.QInt8), ("residual", QuantType.QUInt8)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{k}-{t.name}" for k, t in CASES])
def case(request, tmp_path_factory):
    kind, activation_type = request.param
    model = float_model(residual=kind == "residual")
    qdq = ort_quantized(model, tmp_path_factory.mktemp(f"{kind}_{activation_type.name}"), activation_type)
    return kind, qdq, tessera(qdq)


def test_onnxruntime_wrote_a_qdq_model_of_the_expected_types(case):
    kind, qdq, _ = case
    q_types = {initializer(qdq, n.input[2]).dtype for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    assert len(q_types) == 1 and q_types <= {np.dtype(np.int8), np.dtype(np.uint8)}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in qdq.graph.node}


def test_no_qdq_op_is_left_and_the_model_runs_on_the_device(case):
    _, _, graph = case
    assert [s.attrs["device"] for s in graph.nodes] == ["FPGA"]
    ops = [n.op for n in device_nodes(graph)]
    assert ops[0] == "QuantizeLinear" and ops[-1] == "DequantizeLinear"
    assert set(ops[1:-1]) == {"QConv"}


def test_activation_grids_are_onnxruntimes(case):
    kind, qdq, graph = case
    theirs, ours = ort_activation_grids(qdq), stored_grids(graph)
    # Tessera stores every tensor onnxruntime quantized except the conv output
    # that feeds the residual Add: the add happens inside the QConv.
    assert set(ours) == set(theirs) - ({"c2"} if kind == "residual" else set())
    for name, params in ours.items():
        assert params == theirs[name], name
    if kind == "residual":
        assert qconv_of(graph, "add").annotations["source"] == ["conv_c2", "add"]


def test_weights_and_biases_are_onnxruntimes_integers(case):
    _, qdq, graph = case
    for conv_name in ("conv_c0", "conv_c1", "conv_c2", "conv_y"):
        codes, scales, bias = ort_conv_parameters(qdq, conv_name)
        qconv = qconv_of(graph, conv_name)
        weight = qconv.inputs[1]
        assert weight.const.dtype == INT8
        np.testing.assert_array_equal(weight.const, codes, err_msg=conv_name)
        assert weight.quant == QuantParams(scales, np.zeros(len(scales), np.int64), INT8, axis=0)
        # Tessera's bias has the input zero point folded in (docs/quantization.md)
        folded = qconv.inputs[2].const.astype(np.int64)
        unfolded = folded + qconv.attrs["x_zero"] * codes.reshape(len(codes), -1).astype(np.int64).sum(axis=1)
        assert qconv.inputs[2].const.dtype == INT32
        np.testing.assert_array_equal(unfolded, bias, err_msg=conv_name)


def test_output_matches_onnxruntimes_run_of_the_qdq_model(case):
    kind, qdq, graph = case
    theirs_session = session(qdq)
    evaluation = images(8, seed=2)
    theirs = np.stack([theirs_session.run(None, {"x": x})[0] for x in evaluation])
    ours = np.stack([run(graph, {"x": x})["y"] for x in evaluation])
    step = ort_activation_grids(qdq)["y"].scale[0]
    codes_apart = np.abs(theirs - ours) / step
    if kind == "chain":
        assert snr_db(theirs, ours) > CHAIN_SNR_DB
        assert codes_apart.max() < 1.01 and np.mean(codes_apart < 0.5) > 0.99
    else:
        assert snr_db(theirs, ours) > RESIDUAL_SNR_DB
        assert codes_apart.max() < 4.01


# ---------------------------------------------------------------- QDQ shapes that are not a plain pair
def scales_not_rederivable(count: int, rng) -> np.ndarray:
    """Weight scales s that max|w| / 127 of the dequantized weights (codes up
    to 127, times s, in float32) does not give back: one ulp off (about 1 in
    130 scales). Those weights must keep their given grid."""
    found = []
    while len(found) < count:
        s = rng.uniform(1e-3, 1e-2, 256).astype(np.float32)
        found += list(s[weight_scales((np.float32(127) * s).reshape(-1, 1)) != s])
    return np.array(found[:count], np.float32)


def _conv_tail(x: str, rng) -> tuple[list, dict]:
    """x -> Conv (int8 per-channel weights and int32 bias, as DequantizeLinears)
    -> QuantizeLinear/DequantizeLinear (0.02, 3) -> y; ``x`` is read on the
    grid (0.03, -5), the bias's scale's input grid."""
    codes = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    codes[:, 0, 0, 0] = 127
    w_scale = scales_not_rederivable(4, rng)
    weights = {
        "wq": codes, "w_scale": w_scale, "w_zero": np.zeros(4, np.int8),
        "bq": rng.integers(-2000, 2000, 4).astype(np.int32),
        "b_scale": (np.float32(0.03) * w_scale).astype(np.float32), "b_zero": np.zeros(4, np.int32),
        "y_scale": np.float32(0.02), "y_zero": np.int8(3),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["w"], name="w_dq", axis=0),
        helper.make_node("DequantizeLinear", ["bq", "b_scale", "b_zero"], ["b"], name="b_dq", axis=0),
        helper.make_node("Conv", [x, "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "y_scale", "y_zero"], ["cq"], name="c_q"),
        helper.make_node("DequantizeLinear", ["cq", "y_scale", "y_zero"], ["y"], name="c_dq"),
    ]
    return nodes, weights


def _compare(graph: Graph, model: onnx.ModelProto, feeds: list[dict]) -> np.ndarray:
    """|Tessera - onnxruntime| in output codes (y's step 0.02)."""
    theirs = session(model)
    return np.stack([np.abs(run(graph, f)["y"] - theirs.run(None, f)[0]) / 0.02 for f in feeds])


def lone_dequantize_model(rng) -> tuple[onnx.ModelProto, dict]:
    """int8 input xq -> DequantizeLinear (0.03, -5) -> xf -> _conv_tail."""
    nodes, weights = _conv_tail("xf", rng)
    weights.update(x_scale=np.float32(0.03), x_zero=np.int8(-5))
    nodes.insert(0, helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xf"], name="x_dq"))
    return make_model(nodes, {"xq": (TensorProto.INT8, SHAPE)}, {"y": [1, 4, 8, 8]}, weights), weights


def test_a_dequantize_without_quantize_gives_its_output_its_grid():
    """An int8 model input, dequantized: the DequantizeLinear stays an op (on
    the CPU); its float output lies on its grid, which the device segment
    quantizes it to again, losslessly, without calibration."""
    rng = np.random.default_rng(3)
    model, weights = lone_dequantize_model(rng)
    graph = tessera(model, partition={"partition.demote_islands": False})
    assert cpu_ops(graph) == ["DequantizeLinear"]
    assert stored_grids(graph) == {"xf": XF_GRID, "y": Y_GRID}
    weight = qconv_of(graph, "conv").inputs[1]
    np.testing.assert_array_equal(weight.const, weights["wq"])
    # the model's own grid, kept from the import (exactly: the test below)
    np.testing.assert_allclose(weight.quant.scale, weights["w_scale"], rtol=2 ** -23, atol=0)
    feeds = [{"xq": rng.integers(-128, 128, SHAPE).astype(np.int8)} for _ in range(4)]
    apart = _compare(graph, model, feeds)
    assert apart.max() < 1.01 and np.mean(apart < 0.5) > 0.99


def test_given_weight_scales_are_kept_exactly():
    model, weights = lone_dequantize_model(np.random.default_rng(3))
    graph = tessera(model, partition={"partition.demote_islands": False})
    weight = qconv_of(graph, "conv").inputs[1]
    assert weight.quant.scale == tuple(float(s) for s in weights["w_scale"])


def test_a_pair_with_different_grids_stays_as_ops():
    """Q(0.05, 2) -> DQ(0.03, -5): not a grid of x; both stay ops and the
    device reads the DequantizeLinear's output on its own grid."""
    rng = np.random.default_rng(4)
    nodes, weights = _conv_tail("xf", rng)
    weights.update(x_scale=np.float32(0.03), x_zero=np.int8(-5), q_scale=np.float32(0.05), q_zero=np.int8(2))
    nodes[:0] = [helper.make_node("QuantizeLinear", ["x", "q_scale", "q_zero"], ["xq"], name="x_q"),
                 helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xf"], name="x_dq")]
    model = make_model(nodes, {"x": (TensorProto.FLOAT, SHAPE)}, {"y": [1, 4, 8, 8]}, weights)
    graph = tessera(model, partition={"partition.demote_islands": False})
    assert cpu_ops(graph) == ["QuantizeLinear", "DequantizeLinear"]
    assert graph.inputs[0].quant is None
    assert stored_grids(graph) == {"xf": XF_GRID, "y": Y_GRID}
    apart = _compare(graph, model, [{"x": x} for x in images(4, seed=5)])
    assert apart.max() < 1.01 and np.mean(apart < 0.5) > 0.99


def test_per_axis_activation_quantization_is_not_taken_for_a_tensor_grid():
    """Q/DQ with one scale per channel on x: no per-tensor grid describes x,
    so the pair stays (on the CPU) and the device's input grid is calibrated
    (here from the data: minmax)."""
    rng = np.random.default_rng(5)
    nodes, weights = _conv_tail("xf", rng)
    weights.update(x_scale=np.array([0.01, 0.02, 0.04], np.float32), x_zero=np.array([0, 10, -10], np.int8))
    nodes[:0] = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="x_q", axis=1),
                 helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xf"], name="x_dq", axis=1)]
    model = make_model(nodes, {"x": (TensorProto.FLOAT, SHAPE)}, {"y": [1, 4, 8, 8]}, weights)
    calibration = images(8, seed=6)
    with pytest.warns(CalibrationWarning, match=r"calibrated: \['xf'\]"):
        graph = tessera(model, partition={"partition.demote_islands": False}, calibrate=True,
                        **{"quant.calibration_data": calibration, "quant.calibrator": "minmax"})
    assert cpu_ops(graph) == ["QuantizeLinear", "DequantizeLinear"]
    assert graph.inputs[0].quant is None
    grids = stored_grids(graph)
    assert grids["y"] == Y_GRID
    # the calibrated range of xf: the per-channel dequantized data, all channels
    dequantized = session(make_model(nodes[:2], {"x": (TensorProto.FLOAT, SHAPE)}, {"xf": SHAPE},
                                   {k: weights[k] for k in ("x_scale", "x_zero")}))
    xf = np.stack([dequantized.run(None, {"x": x})[0] for x in calibration])
    low, high = min(float(xf.min()), 0.0), max(float(xf.max()), 0.0)
    assert grids["xf"].scale[0] == pytest.approx((high - low) / 255, rel=1e-6)
    assert grids["xf"].scale[0] not in (0.01, 0.02, 0.04)
    apart = _compare(graph, model, [{"x": x} for x in images(4, seed=7)])
    assert np.mean(apart < 0.5) > 0.8 and apart.max() < 1.01  # measured: 88.6% equal, the rest one code apart
