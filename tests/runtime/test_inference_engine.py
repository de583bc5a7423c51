"""The Inference-Engine API (runtime/inference_engine, docs/inference_engine.md):
a facade over the compiler and the engine, so its results equal FWDNXT's
(FPGA), Run_th's (CPU) and the partitioned engine's (HETERO) bit for bit."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.zoo import mobilenet_v2, resnet
from runtime.compiled import DeviceSegment
from runtime.fwdnxt import FWDNXT
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError, StatusCode
from runtime.inference_engine.provenance import write_dot
from tests.helpers import dot

RNG = np.random.default_rng(19)
MODELS = {"resnet": lambda: resnet(depth=10, image=32, classes=10, width=8),
          "mobilenet_v2": lambda: mobilenet_v2(image=32, width=0.35)}


def _images(count: int, shape=(1, 3, 32, 32), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


CALIBRATION = _images(4, seed=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ie")
    paths = {}
    for name, build in MODELS.items():
        paths[name] = folder / f"{name}.onnx"
        onnx.save(build(), paths[name])
    return paths


def _plugin(device: str, **config) -> IEPlugin:
    plugin = IEPlugin(device=device)
    plugin.set_config({"TESSERA_CALIBRATION_DATA": CALIBRATION, **config})
    return plugin


@pytest.fixture(scope="module")
def loaded(files):
    """resnet on each device, loaded once."""
    net = IENetwork(model=str(files["resnet"]))
    return net, {device: _plugin(device).load(net, num_requests=2)
                 for device in ("FPGA", "CPU", "HETERO:FPGA,CPU", "HETERO:CPU,FPGA")}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_outputs_equal_fwdnxt_run_run_th_and_hetero(files, tmp_path, name):
    """FPGA = FWDNXT.Run, CPU = Run_th, HETERO:FPGA,CPU = the partitioned
    engine FWDNXT runs, HETERO with every layer forced to the CPU = CPU."""
    path = str(files[name])
    net = IENetwork(model=path)
    out = next(iter(net.outputs))
    x = _images(1, seed=5)[0]
    fw = FWDNXT()
    count = fw.Compile("32x32x3", path, str(tmp_path / "m.bin"), samples=CALIBRATION)
    fw.Init(str(tmp_path / "m.bin"), "")
    run, run_th = np.zeros(count, np.float32), np.zeros(count, np.float32)
    fw.Run(x, run)
    fw.Run_th(x, run_th)
    got = {device: _plugin(device).load(net).infer({net_input(net): x})[out].reshape(-1)
           for device in ("FPGA", "CPU", "HETERO:FPGA,CPU")}
    np.testing.assert_array_equal(got["FPGA"], run)
    np.testing.assert_array_equal(got["HETERO:FPGA,CPU"], run)
    np.testing.assert_array_equal(got["CPU"], run_th)
    plugin = _plugin("HETERO:FPGA,CPU")
    for layer in net.layers.values():
        layer.affinity = "CPU"
    np.testing.assert_array_equal(plugin.load(net).infer({net_input(net): x})[out].reshape(-1), run_th)


def net_input(net: IENetwork) -> str:
    return next(iter(net.inputs))


def _exported(symbolic: bool = True) -> onnx.ModelProto:
    """A model written the way exporters write one: a symbolic batch, a
    Constant node for a Reshape's shape, an unnamed node, a BatchNorm."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b")
    bn = [numpy_helper.from_array(v.astype(np.float32), n) for v, n in
          ((np.ones(4), "s"), (np.zeros(4), "o"), (np.zeros(4), "m"), (np.ones(4), "v"))]
    fc = numpy_helper.from_array(RNG.standard_normal((5, 64)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "s", "o", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Constant", [], ["shape"], name="shape_const",
                              value=numpy_helper.from_array(np.array([-1, 64], np.int64))),
             helper.make_node("Reshape", ["r", "shape"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc"], ["y"], name="fc", transB=1)]
    batch = "N" if symbolic else 1
    graph = helper.make_graph(nodes, "exported", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
                              [w, b, fc, *bn])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_network_layers_inputs_outputs_and_batch_size(tmp_path):
    path = tmp_path / "exported.onnx"
    onnx.save(_exported(), path)
    net = IENetwork(model=str(path))
    assert net.name == "exported"
    info = net.inputs["x"]
    assert (info.shape, info.precision, info.layout) == ([1, 3, 8, 8], "FP32", "NCHW")
    assert list(net.outputs) == ["y"] and net.batch_size == 1
    assert list(net.layers) == ["x", "conv", "bn", "Relu_2", "shape_const", "flatten", "fc"]
    conv = net.layers["conv"]
    assert conv.type == "Convolution" and conv.params["onnx_type"] == "Conv" and conv.affinity == ""
    assert conv.params["pads"] == "1,1,1,1"
    assert [layer.type for layer in net.layers.values()] == ["Input", "Convolution", "ScaleShift", "ReLU", "Const",
                                                             "Reshape", "FullyConnected"]
    assert set(conv.weights) == {"weights", "biases"} and conv.weights["weights"].shape == (4, 3, 3, 3)
    assert conv.parents == ["x"] and conv.children == ["bn"]
    assert net.layers["flatten"].parents == ["Relu_2", "shape_const"]
    net.batch_size = 3
    assert net.inputs["x"].shape == [3, 3, 8, 8] and net.batch_size == 3
    net.reshape({"x": [2, 3, 8, 8]})
    assert net.batch_size == 2
    result = _plugin("CPU").load(net).infer({"x": RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)})
    assert result["y"].shape == (2, 5)
    net.add_outputs("conv")
    net.add_outputs([("bn", 0)])
    assert list(net.outputs) == ["y", "conv", "bn"]
    with pytest.raises(InferenceEngineError, match="no layer 'nope'"):
        net.add_outputs("nope")
    with pytest.raises(InferenceEngineError, match="no input 'z'"):
        net.reshape({"z": [1]})


@pytest.mark.parametrize("device", ["CPU", "FPGA"])
def test_added_outputs_come_back_on_the_cpu_and_through_the_device(tmp_path, device):
    """On FPGA the added outputs leave the accelerator segment (the model is
    so small that its host transfers would otherwise send it to the CPU)."""
    path = tmp_path / "exported.onnx"
    onnx.save(_exported(symbolic=False), path)
    net = IENetwork(model=str(path))
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    small = _images(4, (1, 3, 8, 8), seed=2)
    plain = _plugin(device, TESSERA_CALIBRATION_DATA=small, TESSERA_DEMOTE_ISLANDS="NO").load(net).infer({"x": x})
    net.add_outputs(["conv", "Relu_2"])
    exec_net = _plugin(device, TESSERA_CALIBRATION_DATA=small, TESSERA_DEMOTE_ISLANDS="NO").load(net)
    placed = exec_net.get_exec_graph_info()
    assert placed["Relu_2"]["device"] == device and placed["conv"]["device"] == device
    result = exec_net.infer({"x": x})
    assert result["conv"].shape == (1, 4, 4, 4) and result["Relu_2"].shape == (1, 4, 4, 4)
    assert (result["Relu_2"] >= 0).all()
    if device == "CPU":  # the extra outputs change what fuses: float sums may round differently
        np.testing.assert_allclose(result["y"], plain["y"], rtol=1e-4, atol=1e-5)
    else:  # int8 both, but the conv's output is now materialised on a grid of its own
        np.testing.assert_allclose(result["y"], plain["y"], atol=0.05 * float(np.abs(plain["y"]).max()))


def test_supported_layers_initial_affinity_and_manual_affinity(files):
    net = IENetwork(model=str(files["resnet"]))
    fpga, hetero = _plugin("FPGA"), _plugin("HETERO:FPGA,CPU")
    # the accelerator runs every layer of this classifier (SOFTMAX, linear layers); the policy keeps its head
    # (the Gemm and the Softmax making the output) in float on the CPU when HETERO lists one
    assert fpga.get_supported_layers(net) == set(net.layers) and fpga.get_unsupported_reasons(net) == {}
    head = [name for name, layer in net.layers.items() if layer.type in ("SoftMax", "FullyConnected")]
    assert _plugin("CPU").get_supported_layers(net) == set(net.layers)
    with pytest.raises(InferenceEngineError, match="HETERO"):
        fpga.set_initial_affinity(net)
    hetero.set_initial_affinity(net)
    assert len(head) == 2 and {net.layers[n].affinity for n in head} == {"CPU"}
    assert sum(layer.affinity == "FPGA" for layer in net.layers.values()) > 10
    for layer in net.layers.values():
        if layer.type == "Convolution":
            layer.affinity = "CPU"
    exec_net = hetero.load(net)
    graph = exec_net.get_exec_graph_info()
    assert {graph[n]["device"] for n, layer in net.layers.items() if layer.type == "Convolution"} == {"CPU"}
    assert any(where["device"] == "FPGA" for where in graph.values())
    x = _images(1)[0]
    for layer in net.layers.values():
        layer.affinity = "CPU"
    net.layers["relu_8"].affinity = ""
    with pytest.raises(InferenceEngineError, match="every layer needs one; 1 have none: 'relu_8'"):
        hetero.load(net)
    net.layers["relu_8"].affinity = "GPU"
    with pytest.raises(InferenceEngineError, match="plugin 'HETERO:FPGA,CPU': layer 'relu_8' has affinity 'GPU', "
                                                   "which is not one of the devices"):
        hetero.load(net)
    net.layers["relu_8"].affinity = "CPU"
    net.layers["probabilities"].affinity = "FPGA"  # a user's choice the policy would not make: kept
    assert hetero.load(net).get_exec_graph_info()["probabilities"]["device"] == "FPGA"
    net.layers["probabilities"].affinity = "CPU"
    assert hetero.load(net).infer({"image": x})["probabilities"].shape == (1, 10)


def test_wait_status_codes_and_completion_callback(loaded):
    """wait(0) is the status now; a finite wait that runs out gives
    RESULT_NOT_READY (REQUEST_BUSY with a callback set, as the 2019 Python
    API); a request never started INFER_NOT_STARTED; done, OK."""
    net, nets = loaded
    exec_net = nets["FPGA"]
    request = exec_net.requests[1]
    fresh = _plugin("CPU").load(net).requests[0]
    assert fresh.wait() == StatusCode.INFER_NOT_STARTED == -11 and fresh.wait(0) == -11
    segments = exec_net._engine._segments
    device = next(lock for lock, seg in zip(segments._locks, segments.program.segments)
                  if isinstance(seg, DeviceSegment))
    x = _images(1, seed=3)[0]
    want = exec_net.infer({"image": x})["probabilities"]
    with device:  # the accelerator is busy: the request cannot finish
        handle = exec_net.start_async(1, {"image": x})
        assert handle is request
        assert request.wait(0) == StatusCode.RESULT_NOT_READY == -9
        assert request.wait(20) == -9
        with pytest.raises(InferenceEngineError, match="request 1 is busy"):
            request.async_infer({"image": x})
    assert request.wait() == StatusCode.OK == 0 and request.wait(0) == 0
    np.testing.assert_array_equal(request.outputs["probabilities"], want)
    seen = []
    done = threading.Event()
    request.set_completion_callback(lambda status, data: (seen.append((status, data)), done.set()), "mine")
    with device:
        request.async_infer({"image": x})
        assert request.wait(20) == StatusCode.REQUEST_BUSY == -8
    assert request.wait(-1) == 0 and done.wait(10) and seen == [(0, "mine")]
    with pytest.raises(InferenceEngineError, match="request_id 2 is outside"):
        exec_net.start_async(2, {"image": x})


def test_requests_in_flight_each_get_their_own_result(loaded):
    _, nets = loaded
    exec_net = nets["HETERO:FPGA,CPU"]
    images = _images(6, seed=9)
    want = [exec_net.infer({"image": x})["probabilities"] for x in images]
    for round_ in range(3):
        handles = [exec_net.start_async(i, {"image": images[2 * round_ + i]}) for i in range(2)]
        assert [h.wait() for h in handles] == [0, 0]
        for i, handle in enumerate(handles):
            np.testing.assert_array_equal(handle.outputs["probabilities"], want[2 * round_ + i])


def test_requests_in_flight_overlap_segment_by_segment(loaded):
    """While request 0 runs its CPU segment, request 1 runs its device
    segment, then its own CPU segment beside request 0's: runs are
    pipelined per segment, and CPU segments run side by side (the CPU
    segment is held here until both are inside it, to make the order
    certain)."""
    _, nets = loaded
    exec_net = nets["HETERO:FPGA,CPU"]
    segments = exec_net._engine._segments
    kinds = [isinstance(seg, DeviceSegment) for seg in segments.program.segments]
    assert kinds[0] and not kinds[-1], kinds
    ran, inside = [], []
    device_runner, cpu_runner = segments._runners[0], segments._runners[-1]
    release = threading.Event()

    def recording(tables):
        device_runner(tables)
        ran.append(threading.get_ident())

    def held(tables, timings=None):
        inside.append(threading.get_ident())
        release.wait(20)
        cpu_runner(tables, timings)

    segments._runners[0], segments._runners[-1] = recording, held
    segments._gather_steps()
    try:
        images = _images(2, seed=4)
        handles = [exec_net.start_async(i, {"image": images[i]}) for i in range(2)]
        try:
            for _ in range(200):
                if len(inside) == 2:
                    break
                time.sleep(0.05)
            assert len(ran) == 2, "request 1's device segment did not run while request 0 was in its CPU segment"
            assert len(set(inside)) == 2, "the two requests' CPU segments did not run side by side"
            assert [h.wait(0) for h in handles] == [-9, -9]
        finally:
            release.set()
        assert [h.wait() for h in handles] == [0, 0]
        side_by_side = [{k: v.copy() for k, v in exec_net.requests[i].outputs.items()} for i in range(2)]
    finally:
        segments._runners[0], segments._runners[-1] = device_runner, cpu_runner
        segments._gather_steps()
    for i in range(2):  # the same bits as one request at a time
        exec_net.requests[0].infer({"image": images[i]})
        for name, value in exec_net.requests[0].outputs.items():
            np.testing.assert_array_equal(side_by_side[i][name], value)


def test_perf_counts_device_layers_modelled_cpu_layers_measured(loaded):
    net, nets = loaded
    exec_net = nets["FPGA"]
    request = exec_net.requests[0]
    request.infer({"image": _images(1)[0]})
    counts = request.get_perf_counts()
    assert set(counts) == set(net.layers)
    fields = {"status", "exec_type", "layer_type", "real_time", "cpu_time", "execution_index"}
    assert all(set(c) == fields for c in counts.values())
    first = exec_net._engine.device.layer_times()[0]  # conv_2 + relu_8, fused: reported under relu_8
    assert first.onnx_nodes == ("conv_2", "relu_8")
    fused = counts["relu_8"]
    assert fused["status"] == "EXECUTED" and fused["exec_type"] == "FPGA:QConv"
    clock = exec_net._engine.model.config.clock_hz
    assert fused["real_time"] == round(first.cycles / clock * 1e6) > 0 and fused["cpu_time"] == 0
    assert counts["conv_2"]["status"] == "OPTIMIZED_OUT"
    assert counts["batchnormalization_7"]["status"] == "OPTIMIZED_OUT"
    softmax = counts["probabilities"]
    assert softmax["status"] == "EXECUTED" and softmax["exec_type"].startswith("CPU:") and softmax["cpu_time"] >= 0
    executed = sorted(c["execution_index"] for c in counts.values() if c["status"] == "EXECUTED")
    assert executed == list(range(len(executed)))
    assert counts["image"]["status"] == "NOT_RUN"
    cpu = nets["CPU"]  # fused groups on the CPU: reported under their last layer, no time lost
    cpu.requests[0].infer({"image": _images(1)[0]})
    counts = cpu.requests[0].get_perf_counts()
    assert set(cpu.get_exec_graph_info()) <= set(net.layers)
    assert counts["relu_8"]["status"] == "EXECUTED" and counts["relu_8"]["exec_type"].startswith("CPU:")
    measured = sum(seconds for *_, seconds in cpu.requests[0]._timings) * 1e6
    assert abs(sum(c["real_time"] for c in counts.values()) - measured) <= len(counts)


def test_errors_name_the_input_device_key_or_file(loaded, tmp_path):
    net, nets = loaded
    exec_net = nets["CPU"]
    with pytest.raises(InferenceEngineError, match="no input 'data'"):
        exec_net.infer({"data": _images(1)[0]})
    with pytest.raises(InferenceEngineError, match=r"input 'image' must have shape \[1, 3, 32, 32\], got \[1, 3, 8"):
        exec_net.infer({"image": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(InferenceEngineError, match="device 'GPU'"):
        IEPlugin(device="GPU")
    with pytest.raises(InferenceEngineError, match=r"device 'HETERO:FPGA,MYRIAD': fallback 'FPGA,MYRIAD' names "
                                                   r"unknown devices \['MYRIAD'\]"):
        IEPlugin(device="HETERO:FPGA,MYRIAD")
    with pytest.raises(InferenceEngineError, match="unknown key 'CPU_BIND'"):
        IEPlugin(device="CPU").set_config({"CPU_BIND": "YES"})
    with pytest.raises(InferenceEngineError, match="needs its devices"):
        IEPlugin(device="HETERO").load(net)
    with pytest.raises(InferenceEngineError, match="missing.onnx: cannot read the model file: No such file"):
        IENetwork(model=str(tmp_path / "missing.onnx"))
    (tmp_path / "m.xml").write_text("<net/>")
    with pytest.raises(InferenceEngineError, match="OpenVINO IR"):
        IENetwork(model=str(tmp_path / "m.xml"))
    with pytest.raises(InferenceEngineError, match="num_requests"):
        IEPlugin(device="CPU").load(net, num_requests=0)


def test_a_model_path_that_is_not_a_regular_file_is_named_at_once(files, tmp_path, capfd):
    """A folder, a FIFO (no writer: opening it must not wait) and a device
    are each named for what they are; weights are never opened: an ONNX
    model holds its own, and a one-line note says they are ignored."""
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    kinds = {tmp_path: "a directory", fifo: r"a FIFO \(named pipe\)", "/dev/zero": "a character device"}
    for path, kind in kinds.items():
        with pytest.raises(InferenceEngineError, match=f"{re.escape(str(path))}: cannot read the model file: "
                                                      f"it is {kind}, not a regular file"):
            IENetwork(model=str(path))
    capfd.readouterr()
    net = IENetwork(model=str(files["resnet"]), weights=str(tmp_path / "pipe.bin"))
    assert list(net.inputs) == ["image"]
    note = capfd.readouterr().err.splitlines()
    assert note == [f"inference_engine: note: weights {str(tmp_path / 'pipe.bin')!r} ignored: the model "
                    f"{str(files['resnet'])!r} holds its weights"]


def test_a_tessera_binary_loads_as_a_network(files, tmp_path):
    fw = FWDNXT()
    fw.Compile("32x32x3", str(files["resnet"]), str(tmp_path / "r.bin"), samples=CALIBRATION)
    fw.Init(str(tmp_path / "r.bin"), "")
    x = _images(1, seed=8)[0]
    want = np.zeros(10, np.float32)
    fw.Run(x, want)
    net = IENetwork(model=str(tmp_path / "r.bin"))
    assert list(net.inputs) == ["image"] and list(net.outputs) == ["probabilities"]
    assert {layer.affinity for layer in net.layers.values()} == {"FPGA", "CPU"}
    with pytest.raises(InferenceEngineError, match="compiled into a binary"):
        next(layer for layer in net.layers.values() if layer.affinity == "FPGA").affinity = "CPU"
    got = IEPlugin(device="FPGA").load(net).infer({"image": x})["probabilities"]
    np.testing.assert_array_equal(got.reshape(-1), want)


EXTENSION = '''
import numpy as np
from ir.registry import Pattern, register_op
from runtime.kernels.registry import kernel

register_op("TimesThree", lambda ctx: [ctx.type(0)], Pattern.ELEMWISE)


@kernel("TimesThree")
def times_three(inputs, attrs):
    return (inputs[0] * np.float32(3),)
'''


def test_cpu_extension_registers_a_custom_op_kernel(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("TimesThree", ["x"], ["t"], name="custom"),
                               helper.make_node("Relu", ["t"], ["y"], name="relu")], "custom", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "c.onnx")
    module = tmp_path / "times_three.py"
    module.write_text(textwrap.dedent(EXTENSION))
    script = f"""
import numpy as np
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError
plugin = IEPlugin(device="CPU")
try:
    plugin.add_cpu_extension({str(tmp_path / 'libcpu_extension.so')!r})
except InferenceEngineError as exc:
    print("refused:", exc)
plugin.add_cpu_extension({str(module)!r})
net = IENetwork(model={str(tmp_path / 'c.onnx')!r})
print(sorted(plugin.get_supported_layers(net)))
print(plugin.load(net).infer({{"x": np.array([[-1, 0, 1, 2]], np.float32)}})["y"].tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and "loads no native libraries" in lines[0]
    assert lines[1] == "['custom', 'relu', 'x']"
    assert lines[2] == "[[0.0, 0.0, 3.0, 6.0]]"
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(InferenceEngineError, match="registered no CPU kernel"):
        IEPlugin(device="CPU").add_cpu_extension(str(empty))


def test_importing_the_api_does_not_import_onnx():
    done = subprocess.run([sys.executable, "-c", "import sys, runtime.inference_engine; "
                           "print(sorted(m for m in ('onnx', 'compiler', 'networkx') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_hetero_dump_graph_dot_writes_affinity_and_subgraphs(files, tmp_path):
    net = IENetwork(model=str(files["resnet"]))
    plugin = _plugin("HETERO:FPGA,CPU", HETERO_DUMP_GRAPH_DOT="YES", TESSERA_DOT_DIR=str(tmp_path))
    plugin.load(net)
    affinity = (tmp_path / f"hetero_affinity_{net.name}.dot").read_text()
    subgraphs = (tmp_path / f"hetero_subgraphs_{net.name}.dot").read_text()
    assert f"conv_2\n{net.layers['conv_2'].type}\nFPGA" in dot.labels(dot.tokens(affinity))
    assert "lightblue" in affinity
    assert "subgraph cluster_0" in subgraphs and "CPU" in subgraphs and "FPGA" in subgraphs
    assert "conv_2" in dot.labels(dot.tokens(subgraphs))


def test_dot_dumps_of_any_names_are_safe_files_of_valid_dot(tmp_path):
    """Graph names with a NUL, a slash, 300 characters or none become safe
    file names (distinct names, distinct files); layer names with quotes,
    backslashes, line breaks and NULs are shown in labels, never break the DOT."""
    layers = {'in"put': ("Input", []), 'conv\\1\n"a"': ("Convolution", ['in"put']),
              "nul\x00relu\\": ("ReLU", ['conv\\1\n"a"'])}
    placed = {'conv\\1\n"a"': {"device": "FPGA", "segment": 0}, "nul\x00relu\\": {"device": "CPU", "segment": 1}}
    names = ["net\x00name", "n" * 300, "a/b", "a_b", "../up", ""]
    for name in names:
        write_dot(name, layers, placed, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 * len(names)
    assert all(re.fullmatch(r"hetero_(affinity|subgraphs)_[A-Za-z0-9._-]{1,120}\.dot", f) for f in files), files
    assert "hetero_affinity_a_b.dot" in files
    for file in files:
        toks = dot.tokens((tmp_path / file).read_text(encoding="utf-8"))
        assert dot.shown(toks[1]).removesuffix("_subgraphs") in [name.replace("\x00", "\\x00") for name in names]
        if "affinity" in file:
            assert dot.labels(toks) == ['in"put\nInput\nfolded', 'conv\\1\n"a"\nConvolution\nFPGA',
                                        "nul\\x00relu\\\nReLU\nCPU"]
            assert toks.count("->") == 2


def test_reshape_refuses_a_shape_beyond_the_element_limit(tmp_path):
    """Checked at the call, before load compiles anything."""
    from tests.helpers.fwdnxt import tiny_onnx

    net = IENetwork(model=str(tiny_onnx(tmp_path)))
    name = next(iter(net.inputs))
    with pytest.raises(InferenceEngineError, match=r"reshape: input .*: the shape \[1, 3, 100000, 100000\] has "
                                                   r"30000000000 elements, more than the limit of 1073741824"):
        net.reshape({name: [1, 3, 100000, 100000]})
