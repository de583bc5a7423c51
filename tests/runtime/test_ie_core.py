"""IECore and the forms of IENetwork's attributes that 2018 to 2020 scripts
use (docs/inference_engine.md): inputs as shape lists, outputs as a name
list, IR layer types (runtime/inference_engine/layer_types.py), batch_size
on a fixed batch, devices, keys and metrics by name."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime.inference_engine import IECore, IENetwork, InferenceEngineError, InputInfo
from runtime.inference_engine.layer_types import IR_TYPES, compiled_type, ir_type

RNG = np.random.default_rng(53)


def _model(batch=1) -> onnx.ModelProto:
    """x [batch, 3, 6, 6] -> x * 2 (Power) + per-channel bias (ScaleShift) ->
    Conv -> Relu -> + itself (Eltwise) -> Transpose (Permute) -> Flatten ->
    MatMul of two activations (Gemm) and a weighted MatMul (FullyConnected)
    -> Softmax; a Reshape constant of -1, so any batch runs."""
    t = numpy_helper.from_array
    inits = [t(np.array(2, np.float32), "two"), t(RNG.standard_normal((3, 1, 1)).astype(np.float32), "bias"),
             t(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             t(np.array([0, -1], np.int64), "flat_shape"), t(RNG.standard_normal((64, 5)).astype(np.float32), "fc"),
             t(np.array(-3, np.float32), "low"), t(np.array(3, np.float32), "high")]
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"], name="scale"),
             helper.make_node("Add", ["m", "bias"], ["a"], name="shift"),
             helper.make_node("Conv", ["a", "w"], ["c"], name="conv", pads=[0, 0, 0, 0]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "r"], ["s"], name="sum"),
             helper.make_node("Transpose", ["s"], ["p"], name="permute", perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["p", "flat_shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc"], ["g"], name="fc"),
             helper.make_node("Clip", ["g", "low", "high"], ["k"], name="clamp"),
             helper.make_node("Softmax", ["k"], ["prob"], name="prob")]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 6, 6])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    file = tmp_path_factory.mktemp("ie_core") / "small.onnx"
    onnx.save(_model(), file)
    return str(file)


def test_layer_types_are_ir_names_with_the_onnx_op_in_params(path):
    net = IECore().read_network(model=path)
    assert {name: layer.type for name, layer in net.layers.items()} == {
        "x": "Input", "scale": "Power", "shift": "ScaleShift", "conv": "Convolution", "relu": "ReLU",
        "sum": "Eltwise", "permute": "Permute", "flatten": "Reshape", "fc": "FullyConnected", "clamp": "Clamp",
        "prob": "SoftMax"}
    assert net.layers["shift"].params["onnx_type"] == "Add" and net.layers["clamp"].params["onnx_type"] == "Clip"
    assert net.layers["conv"].params == {"pads": "0,0,0,0", "onnx_type": "Conv"}
    assert ir_type("MatMul", {}) == "Gemm" and ir_type("Add", {"b": np.ones((2, 3))}) == "Eltwise"
    assert ir_type("Pow", {"e": np.array(2.0)}) == "Power" and ir_type("Pow", {}) == "Eltwise"
    assert ir_type("MyCustomOp") == "MyCustomOp" and IR_TYPES["MaxPool"] == IR_TYPES["GlobalAveragePool"] == "Pooling"
    assert [compiled_type(op) for op in ("QConv", "QAvgPool", "MaxPool", "QAdd", "FusedConv", "Softmax", "Gemm")] == [
        "Convolution", "Pooling", "Pooling", "Eltwise", "Convolution", "SoftMax", "FullyConnected"]


def test_inputs_are_shape_lists_and_outputs_a_name_list(path):
    net = IENetwork(model=path)
    info = net.inputs["x"]
    n, c, h, w = info
    assert (n, c, h, w) == (1, 3, 6, 6) and info == [1, 3, 6, 6] and info[1:] == [3, 6, 6] and len(info) == 4
    assert (info.shape, info.precision, info.layout) == ([1, 3, 6, 6], "FP32", "NCHW")
    assert repr(net.inputs) == "{'x': [1, 3, 6, 6]}"
    info.precision = "U8"
    assert net.inputs["x"].precision == "U8" and net.input_info["x"].precision == "U8"
    net.input_info["x"].precision = "FP32"
    assert net.input_info["x"].input_data.shape == [1, 3, 6, 6] and net.input_info["x"].layout == "NCHW"
    with pytest.raises(InferenceEngineError, match=r"input 'x': its shape \[1, 3, 6, 6\] changes through "
                                                   r"IENetwork.reshape"):
        info[0] = 4
    with pytest.raises(InferenceEngineError, match="changes through"):
        info.append(1)
    assert pickle.loads(pickle.dumps(info)) == info and copy.deepcopy(info).precision == "FP32"
    outputs = net.outputs
    assert outputs == ["prob"] and outputs[0] == "prob" and list(outputs) == ["prob"] and len(outputs) == 1
    assert next(iter(outputs)) == "prob" and "prob" in outputs and list(outputs.keys()) == ["prob"]
    assert outputs["prob"].name == "prob" and outputs["prob"].shape is None
    with pytest.raises(KeyError, match="no output 'y'; its outputs are"):
        outputs["y"]
    with pytest.raises(InferenceEngineError, match=r"input 'x' has rank 4 \(\[1, 3, 6, 6\]\); the shape \[3, 6, 6\]"):
        net.reshape({"x": [3, 6, 6]})


def test_batch_size_reshapes_a_fixed_batch_and_the_network_runs_it(path):
    """The model fixes batch 1; batch_size = 3 compiles it for 3, each
    image's result as the model's own on that image alone."""
    import onnxruntime as ort

    ie = IECore()
    net = ie.read_network(model=path, weights="small.bin")
    net.batch_size = 3
    assert net.batch_size == 3 and net.inputs["x"] == [3, 3, 6, 6]
    exec_net = ie.load_network(network=net, device_name="CPU", num_requests=0)
    assert net.outputs["prob"].shape == [3, 5] and exec_net.requests[0].inputs["x"].shape == (3, 3, 6, 6)
    x = RNG.standard_normal((3, 3, 6, 6))  # float64, as the samples' np.ndarray
    got = exec_net.infer({"x": x})["prob"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = np.concatenate([session.run(None, {"x": image[None].astype(np.float32)})[0] for image in x])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    blob = exec_net.requests[0].output_blobs["prob"]
    assert blob.tensor_desc.dims == [3, 5] and np.array_equal(blob.buffer, got)
    assert exec_net.requests[0].latency > 0


def test_iecore_devices_keys_metrics_and_query(path):
    ie = IECore()
    assert ie.available_devices == ["CPU", "FPGA"]
    assert set(ie.get_versions("HETERO:FPGA,CPU")) == {"HETERO", "FPGA", "CPU"}
    net = ie.read_network(model=path)
    assert ie.query_network(net, "CPU") == {name: "CPU" for name in net.layers}
    fpga = ie.query_network(net, "FPGA")
    # the accelerator has SOFTMAX: alone it runs the output Softmax; HETERO keeps it in float on the CPU
    assert set(fpga.values()) == {"FPGA"} and "conv" in fpga and "prob" in fpga
    hetero = ie.query_network(net, "HETERO:FPGA,CPU")
    assert set(hetero) == set(net.layers) and hetero["conv"] == "FPGA" and hetero["prob"] == "CPU"
    assert ie.get_config("CPU", "PERF_COUNT") == "NO"
    ie.set_config({"PERF_COUNT": "YES"}, "CPU")
    assert ie.get_config("CPU", "PERF_COUNT") == "YES" and ie.get_config("FPGA", "PERF_COUNT") == "NO"
    ie.set_config({"TARGET_FALLBACK": "CPU,FPGA"}, "HETERO")
    assert ie.query_network(net, "HETERO")["conv"] == "CPU"
    assert ie.query_network(net, "HETERO:FPGA,CPU")["conv"] == "FPGA"  # the device string names its own order
    assert ie.get_metric("FPGA", "OPTIMIZATION_CAPABILITIES") == ["INT8", "FP32"]
    assert "TARGET_FALLBACK" in ie.get_metric("HETERO", "SUPPORTED_CONFIG_KEYS")
    exec_net = ie.load_network(net, "CPU", config={"TESSERA_NONFINITE": "saturate"}, num_requests=2)
    assert len(exec_net.requests) == 2 and exec_net.get_config("PERF_COUNT") == "YES"
    assert exec_net.get_config("TESSERA_NONFINITE") == "saturate" and exec_net.get_metric("NETWORK_NAME") == "small"
    assert exec_net.get_metric("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1  # one CPU segment: one run at a time
    for call, message in [(lambda: ie.load_network(net, "GPU"), "device 'GPU'"),
                          (lambda: ie.set_config({"CPU_BIND": "YES"}, "CPU"), "unknown key 'CPU_BIND'"),
                          (lambda: ie.set_config({"TARGET_FALLBACK": "FPGA"}, "CPU"), "applies to a HETERO"),
                          (lambda: ie.get_metric("CPU", "RANGE_FOR_STREAMS"), "CPU has no metric 'RANGE_FOR_STREAMS'"),
                          (lambda: ie.get_config("FPGA", "NOPE"), "unknown key 'NOPE'"),
                          (lambda: exec_net.get_metric("NOPE"), "unknown metric 'NOPE'"),
                          (lambda: ie.load_network(net, "CPU", num_requests=-1), "num_requests must be 0"),
                          (lambda: ie.load_network("small.onnx", "CPU"), "network must be an IENetwork"),
                          (lambda: ie.add_extension("ext.py", "FPGA"), "extensions are CPU kernels")]:
        with pytest.raises(InferenceEngineError, match=message):
            call()


def test_a_binary_network_reports_ir_types_of_its_compiled_layers(tmp_path):
    from tests.helpers.fwdnxt import compile_tiny

    binary, _ = compile_tiny(tmp_path)
    net = IECore().read_network(model=str(binary))
    assert {layer.type for layer in net.layers.values()} <= {"Input", "Convolution", "Pooling", "ReLU", "Eltwise"}
    assert "Convolution" in {layer.type for layer in net.layers.values()}
    assert isinstance(net.inputs["x"], InputInfo) and list(net.outputs) == [t for t in net.outputs]


@pytest.mark.parametrize("fallback, hwlinear", [("FPGA,CPU", False), ("FPGA,CPU", True), ("FPGA,CPU", None),
                                               ("CPU,FPGA", False)])
def test_ie_query_network_and_the_compiler_place_layers_by_the_one_policy(path, fallback, hwlinear):
    """IECore.query_network, compiler.network.query_network and the
    compile's affinity pass give every layer the same device; the IE's
    placement, handed back to the compiler as manual affinities, is the
    policy's own (no node marked manual)."""
    from compiler.frontend import import_onnx
    from compiler.network import query_network
    from compiler.pipeline import SIMPLIFY
    from ir.graph import onnx_name
    from passes.affinity import MANUAL, assign_affinity
    from passes.infra import PassContext

    ie = IECore()
    if hwlinear is not None:  # unset: the policy places linear layers where they pay
        ie.set_config({"TESSERA_HWLINEAR": "YES" if hwlinear else "NO"}, "HETERO")
    net = ie.read_network(model=path)
    by_ie = ie.query_network(net, f"HETERO:{fallback}")
    by_query = {name: q.device for name, q in query_network(path, fallback, hwlinear=hwlinear).items()}

    def compiled(affinities=None):
        options = {"partition.fallback": fallback, "target.hwlinear": hwlinear,
                   "partition.affinities": affinities or {}}
        with PassContext(options=options):
            return assign_affinity(SIMPLIFY(import_onnx(path)))

    graph = compiled()
    by_pass = {}
    for node in graph.nodes:
        by_pass.setdefault(onnx_name(node.name), set()).add(node.affinity)
    assert by_pass and all(len(devices) == 1 for devices in by_pass.values())
    assert {name: devices.pop() for name, devices in by_pass.items()} == {
        name: device for name, device in by_query.items() if device is not None}
    assert {name: by_ie[name] for name in by_query if by_query[name]} == {
        name: device for name, device in by_query.items() if device is not None}
    assert len({by_ie[name] for name in by_query}) == (1 if fallback == "CPU,FPGA" else 2)
    manual = compiled({name: device for name, device in by_ie.items() if net.layers[name].type != "Input"})
    assert not any(node.annotations.get(MANUAL) for node in manual.nodes)
