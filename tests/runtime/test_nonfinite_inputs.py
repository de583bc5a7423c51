"""NaN and ±Inf in inputs: one rule on every path that makes device codes
(runtime/nonfinite.py, docs/runtime.md "Non-finite inputs"). By default an
error of the API's own class naming the input, the value and its index;
'saturate' takes ±Inf to the grid's end codes and still refuses NaN; Run_th
and the Inference Engine's CPU plugin (no device codes) follow IEEE
arithmetic. Models: the session's tiny binary (one device conv reading the
input) and a Softmax -> conv one whose input a CPU segment reads."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from compiler.simulator.api import Simulator
from compiler.simulator.errors import SimulatorError
from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT, kp
from runtime.compiled import CpuSegment
from runtime.errors import ExecutionError, KernelError
from runtime.fwdnxt_flags import FWDNXTError
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError
from runtime.kernels import get_kernel
from tests.helpers.fwdnxt import OUTPUTS, SHAPE, compile_tiny, images, tiny_onnx

AT = (0, 1, 0, 1)
"""Where each test puts its non-finite value: flat index 5 of the [1, 2, 2, 2] input."""
NAMED = r"input 'x' holds {} at flat index 5 \(index \[0, 1, 0, 1\]\)"
VALUES = {"NaN": np.nan, "+Inf": np.inf, "-Inf": -np.inf}
CHW = kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW


def poisoned(value: float) -> np.ndarray:
    """A tiny-model input holding ``value`` at AT."""
    x = images(1, seed=4)[0]
    x[AT] = value
    return x


def at_grid_end(ie: FWDNXT, sign: float) -> np.ndarray:
    """The same input holding, at AT, the value of the grid's max (sign > 0) or min code."""
    grid = next(t for s in ie._session.engine.model.device_segments for t in s.inputs if t.name == "x")
    info = np.iinfo(grid.dtype)
    return poisoned(np.float32(grid.scale) * np.float32((info.max if sign > 0 else info.min) - grid.zero))


def run(ie: FWDNXT, call: str, x: np.ndarray) -> np.ndarray:
    """``call``'s result for ``x`` (PutInput then GetResult for 'PutInput')."""
    out = np.zeros(OUTPUTS, np.float32)
    if call == "PutInput":
        ie.PutInput(x, "tag")
        assert ie.GetResult(out) == "tag"
    else:
        getattr(ie, call)(x, out)
    return out


# ---------------------------------------------------------------- FWDNXT: Run, Run_sw, PutInput/GetResult
@pytest.mark.parametrize("call", ["Run", "Run_sw", "PutInput"])
@pytest.mark.parametrize("name", VALUES)
def test_by_default_a_non_finite_input_is_an_error_naming_it(ie, call, name):
    with pytest.raises(FWDNXTError, match=NAMED.format(re.escape(name)) + r"; 1 of its 8 values is NaN or ±Inf"):
        run(ie, call, poisoned(VALUES[name]))
    assert np.array_equal(run(ie, call, images(1)[0]), run(ie, "Run_sw", images(1)[0]))  # still usable


@pytest.mark.parametrize("call", ["Run", "Run_sw", "PutInput"])
def test_saturate_takes_inf_to_the_grid_end_codes_and_still_refuses_nan(ie, call):
    ie.SetFlag("nonfinite", "saturate")
    for sign in (1.0, -1.0):
        assert np.array_equal(run(ie, call, poisoned(sign * np.inf)), run(ie, call, at_grid_end(ie, sign)))
    with pytest.raises(FWDNXTError, match=NAMED.format("NaN") + ".*under any non-finite policy"):
        run(ie, call, poisoned(np.nan))
    ie.SetFlag("nonfinite", "")
    with pytest.raises(FWDNXTError, match=NAMED.format(r"\+Inf")):
        run(ie, call, poisoned(np.inf))


def test_put_input_refuses_at_the_call_and_queues_nothing(ie):
    """The error comes from the PutInput that was given the NaN, not from a
    later GetResult; the stream goes on with the next input."""
    with pytest.raises(FWDNXTError, match="^PutInput: " + NAMED.format("NaN")):
        ie.PutInput(poisoned(np.nan), "poisoned")
    assert ie.PutInput(images(1)[0], "clean")
    out = np.zeros(OUTPUTS, np.float32)
    assert ie.GetResult(out) == "clean" and np.array_equal(out, run(ie, "Run_sw", images(1)[0]))


def test_run_th_follows_ieee_arithmetic(ie):
    """The 1x1 conv's two outputs at the poisoned pixel are NaN, the rest finite."""
    out = run(ie, "Run_th", poisoned(np.nan))
    assert np.flatnonzero(np.isnan(out)).tolist() == [1, 5] and np.isfinite(np.delete(out, [1, 5])).all()


def test_the_environment_sets_the_default_and_a_bad_name_is_refused(binaries, monkeypatch):
    monkeypatch.setenv("TESSERA_NONFINITE", "saturate")
    ie = FWDNXT()
    ie.Init(binaries["tiny"], "")
    assert np.array_equal(run(ie, "Run", poisoned(np.inf)), run(ie, "Run", at_grid_end(ie, 1.0)))
    ie.SetFlag("nonfinite", "error")
    with pytest.raises(FWDNXTError, match=NAMED.format(r"\+Inf")):
        run(ie, "Run", poisoned(np.inf))
    ie.Free()
    monkeypatch.setenv("TESSERA_NONFINITE", "clamp")
    with pytest.raises(FWDNXTError, match=r"Init: the environment variable TESSERA_NONFINITE is 'clamp'; it takes "
                                          r"one of \['error', 'saturate'\]"):
        FWDNXT().Init(binaries["tiny"], "")
    with pytest.raises(FWDNXTError, match="SetFlag: nonfinite='clamp': the policies are 'error' and 'saturate'"):
        FWDNXT().SetFlag("nonfinite", "clamp")


def test_a_batch_error_names_the_image(tmp_path):
    batched = FWDNXT()
    batched.SetFlag("imgs_per_cluster", 2)
    path, _ = compile_tiny(tmp_path, "batch.bin", batched)
    ie = FWDNXT()
    ie.Init(str(path), "")
    x = np.concatenate([images(1)[0], poisoned(np.nan)])
    with pytest.raises(FWDNXTError, match=r"input 'x' \(image 1 of the run\) holds NaN at flat index 5"):
        ie.Run(x, np.zeros(2 * OUTPUTS, np.float32))
    ie.Free()


# ---------------------------------------------------------------- a CPU segment before the device
@pytest.fixture(scope="module")
def cpu_first(tmp_path_factory):
    """Softmax (CPU) -> 1x1 conv (device), its input read by the CPU segment."""
    from compiler.compile import compile_model

    builder = OnnxBuilder("cpu_first", seed=2)
    x = builder.input("x", list(SHAPE))
    model = builder.model([builder.conv(builder.node("Softmax", [x], axis=1), 2, 2, 1)])
    path = tmp_path_factory.mktemp("nonfinite") / "cpu_first.bin"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = compile_model(model, samples=images(4, seed=9), outfile=path, demote_islands=False)
    assert isinstance(compiled.segments[0], CpuSegment) and compiled.device_segments
    return str(path)


def test_a_nan_made_before_the_device_is_an_error_naming_the_tensor(cpu_first):
    """Under 'saturate' +Inf reaches the CPU Softmax, which makes NaN of it; the
    device's input quantization refuses that NaN, never casting it."""
    ie = FWDNXT()
    ie.Init(cpu_first, "")
    ie.SetFlag("nonfinite", "saturate")
    with pytest.raises(FWDNXTError, match=r"quantizing its input '\w+': x / y_scale is NaN at flat index 1 "
                                          r"\(index \[0, 0, 0, 1\]\): no integer code stands for NaN"):
        run(ie, "Run", poisoned(np.inf))
    ie.Free()


# ---------------------------------------------------------------- Inference Engine, kp, Simulator
def test_inference_engine_refuses_by_default_and_saturates_when_configured(binaries):
    net = IENetwork(model=binaries["tiny"])
    strict = IEPlugin("FPGA").load(net)
    with pytest.raises(InferenceEngineError, match=r"request 0: " + NAMED.format("NaN")):
        strict.infer({"x": poisoned(np.nan)})
    loose = IEPlugin("FPGA").load(net, config={"TESSERA_NONFINITE": "saturate"})
    (saturated,) = loose.infer({"x": poisoned(np.inf)}).values()
    (beyond,) = loose.infer({"x": poisoned(1e30)}).values()  # any value beyond the grid gives its end code
    assert np.array_equal(saturated, beyond)
    with pytest.raises(InferenceEngineError, match=r"request 0: " + NAMED.format("NaN") + ".*under any"):
        loose.infer({"x": poisoned(np.nan)})
    with pytest.raises(InferenceEngineError, match=r"TESSERA_NONFINITE takes one of \['error', 'saturate'\]"):
        IEPlugin("FPGA").set_config({"TESSERA_NONFINITE": "SATURATE"})


def test_the_inference_engines_cpu_plugin_follows_ieee_arithmetic(tmp_path):
    """The CPU plugin runs the float program, which makes no device codes:
    NaN and ±Inf pass through its kernels as Run_th's (and onnxruntime's)
    do, under either policy, and no run scans its inputs for them."""
    net = IENetwork(model=str(tiny_onnx(tmp_path)))
    for config in ({}, {"TESSERA_NONFINITE": "saturate"}):
        executable = IEPlugin("CPU").load(net, config=config)
        assert executable._fixed._scanned == []
        (out,) = executable.infer({"x": poisoned(np.nan)}).values()
        out = out.reshape(-1)
        assert np.flatnonzero(np.isnan(out)).tolist() == [1, 5] and np.isfinite(np.delete(out, [1, 5])).all()
        (out,) = executable.infer({"x": poisoned(np.inf)}).values()
        out = out.reshape(-1)
        assert np.isinf(out[[1, 5]]).all() and np.isfinite(np.delete(out, [1, 5])).all()


@pytest.fixture
def device_group():
    kp.core.simulate_devices(1, "KL720")
    dg = kp.core.connect_devices([1])
    yield dg
    kp.core.disconnect_devices(dg)


def kp_send(dg, x: np.ndarray) -> None:
    """A data send of ``x`` as the model's float32 input buffer."""
    kp.inference.generic_data_inference_send(dg, kp.GenericDataInferenceDescriptor(
        0, 1, [kp.GenericInputNodeData(np.ascontiguousarray(x, np.float32).tobytes())]))


def test_kp_refuses_by_default_and_the_environment_saturates(device_group, cpu_first, monkeypatch):
    kp.core.load_model_from_file(device_group, cpu_first)
    kp_send(device_group, poisoned(-np.inf))
    with pytest.raises(kp.ApiKPException, match="KP_FW_INFERENCE_ERROR_101.*" + NAMED.format("-Inf")):
        kp.inference.generic_data_inference_receive(device_group)
    monkeypatch.setenv("TESSERA_NONFINITE", "saturate")
    kp.core.load_model_from_file(device_group, cpu_first)
    results = []
    for value in (-np.inf, -1e30):  # Softmax of -Inf is exactly 0, as of any value far enough below the rest
        kp_send(device_group, poisoned(value))
        result = kp.inference.generic_data_inference_receive(device_group)
        node = kp.inference.generic_inference_retrieve_float_node(0, result, CHW)
        results.append(node.ndarray)
    assert np.array_equal(*results)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """The tiny model as ONNX and its int8 encodings."""
    from compiler.quantize import quantize_model

    folder = tmp_path_factory.mktemp("simulator")
    model = tiny_onnx(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_model(str(model), calibration_data=images(4, seed=9)).export_encodings(folder / "tiny.encodings")
    return {"input_model_path": str(model), "input_encodings_path": str(folder / "tiny.encodings"),
            "quantization_mode": "integer"}


def test_simulator_integer_mode_refuses_by_default_and_saturates_when_asked(tiny_files):
    session = Simulator.get_inference_session(tiny_files)
    with pytest.raises(SimulatorError, match=NAMED.format("NaN")):
        session.run(None, {"x": poisoned(np.nan)})
    session = Simulator.get_inference_session({**tiny_files, "nonfinite": "saturate"})
    for sign in (1.0, -1.0):  # any value beyond the grid gives its end code
        assert np.array_equal(session.run(None, {"x": poisoned(sign * np.inf)})[0],
                              session.run(None, {"x": poisoned(sign * 1e30)})[0])
    with pytest.raises(SimulatorError, match=NAMED.format("NaN") + ".*under any non-finite policy"):
        session.run(None, {"x": poisoned(np.nan)})


# ---------------------------------------------------------------- the conversion itself
def test_quantize_linear_saturates_inf_and_never_casts_nan():
    quantize = get_kernel("QuantizeLinear")
    attrs = {"axis": 1, "block_size": 0, "output_dtype": None, "precision": None}
    grid = [np.array(0.5, np.float32), np.array(3, np.int8)]
    codes = quantize([np.array([np.inf, -np.inf, 1.0], np.float32), *grid], attrs)[0]
    assert codes.tolist() == [127, -128, 5]
    with pytest.raises(KernelError, match=r"x / y_scale is NaN at flat index 2 \(index \[1, 0\]\)"):
        quantize([np.array([[1.0, 2.0], [np.nan, 0.0]], np.float32), *grid], attrs)


def test_dynamic_quantize_linear_refuses_what_has_no_range():
    quantize = get_kernel("DynamicQuantizeLinear")
    for value, at in ((np.nan, 1), (np.inf, 1)):
        with pytest.raises(KernelError, match=rf"x holds NaN or ±Inf at flat index {at}"):
            quantize([np.array([0.5, value, 1.0], np.float32)], {})


def test_kp_fixed_point_retrieval_saturates_inf_and_refuses_nan():
    """A CPU-computed float output holding ±Inf (under 'saturate') comes back
    as the int16 end values; one holding NaN is kp's error, never a cast."""
    from runtime.kp.nodes import fixed_node
    from runtime.kp.value import RawNode

    node = fixed_node(RawNode(name="y", values=np.array([[[[np.inf, -np.inf, 0.25]]]], np.float32)), CHW)
    data = node.data.reshape(-1)
    assert data[:2].tolist() == [32767, -32768] and data[2] / 2.0 ** node.radix == 0.25
    with pytest.raises(ExecutionError, match=r"output 'y' holds NaN at flat index 1 .*retrieve it as float"):
        fixed_node(RawNode(name="y", values=np.array([[[[0.5, np.nan]]]], np.float32)), CHW)
