"""API misuse and concurrency (issue 23 item 4): every call before Init,
after Free, twice; a second binary on one object; wrong arrays; objects on
several threads; one object's runs from several threads (serialized, each
caller its own result); Free while work is in flight (KeyboardInterrupt:
test_api_interrupts.py). Each misuse is a named error naming the call; nothing hangs
(every wait has a timeout), nothing is lost or duplicated. FWDNXT in full,
then the analogous calls of the Inference-Engine classes, kp and the
Simulator API's session."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime import FWDNXT, kp
from runtime.fwdnxt import FWDNXTError
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError
from tests.helpers.api_misuse import DISTINCT, OTHER_OUTPUTS, OTHER_SHAPE, TIMEOUT, on_threads
from tests.helpers.fwdnxt import OUTPUTS, images

# ---------------------------------------------------------------- FWDNXT: order of calls
X = np.zeros((1, 2, 2, 2), np.float32)
CALLS = {
    "Run": lambda ie: ie.Run(X, np.zeros(OUTPUTS, np.float32)),
    "Run_sw": lambda ie: ie.Run_sw(X, np.zeros(OUTPUTS, np.float32)),
    "Run_th": lambda ie: ie.Run_th(X, np.zeros(OUTPUTS, np.float32)),
    "PutInput": lambda ie: ie.PutInput(X, "tag"),
    "GetResult": lambda ie: ie.GetResult(np.zeros(OUTPUTS, np.float32)),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_call_before_init_names_the_call(call):
    with pytest.raises(FWDNXTError, match=f"^{call} called before Init"):
        CALLS[call](FWDNXT())


@pytest.mark.parametrize("call", [*CALLS, "Init", "SetFlag", "GetInfo", "Compile"])
def test_a_call_after_free_names_the_call(binaries, call):
    ie = FWDNXT()
    ie.Init(binaries["tiny"], "")
    ie.Free()
    calls = {**CALLS, "Init": lambda ie: ie.Init(binaries["tiny"], ""), "SetFlag": lambda ie: ie.SetFlag("debug", ""),
             "GetInfo": lambda ie: ie.GetInfo("version"), "Compile": lambda ie: ie.Compile("2x2x2", "m.onnx", "m.bin")}
    with pytest.raises(FWDNXTError, match=f"^{call} called after Free"):
        calls[call](ie)


def test_free_before_init_and_twice_is_harmless_and_init_twice_reloads(binaries, expected):
    FWDNXT().Free()
    ie = FWDNXT()
    assert ie.Init(binaries["tiny"], "") == OUTPUTS
    assert ie.Init(binaries["tiny"], "") == OUTPUTS
    xs, want = expected["tiny"]
    result = np.zeros(OUTPUTS, np.float32)
    ie.Run(xs[1], result)
    np.testing.assert_array_equal(result, want["Run"][1])
    ie.Free()
    ie.Free()
    with pytest.raises(FWDNXTError, match="Run called after Free"):
        ie.Run(xs[1], result)


def test_init_of_a_second_binary_replaces_the_first_and_drops_its_pending_inputs(binaries, expected):
    ie = FWDNXT()
    ie.Init(binaries["tiny"], "")
    xs, _ = expected["tiny"]
    others, want = expected["other"]
    ie.PutInput(xs[0], "first model")
    assert ie.Init(binaries["other"], "") == OTHER_OUTPUTS
    ie.SetFlag("blockingmode", "0")
    result = np.zeros(OTHER_OUTPUTS, np.float32)
    assert ie.GetResult(result) is None  # the first model's input went with it
    with pytest.raises(FWDNXTError, match=r"Run: input 'x' must have shape \[1, 2, 4, 4\], got \[1, 2, 2, 2\]"):
        ie.Run(xs[0], result)
    ie.Run(others[2], result)
    np.testing.assert_array_equal(result, want["Run"][2])
    ie.Free()


def test_a_failed_init_keeps_the_model_loaded_before(binaries, expected):
    ie = FWDNXT()
    ie.Init(binaries["tiny"], "")
    with pytest.raises(FWDNXTError, match=r"^Init: .*corrupt.bin: .*truncated"):
        ie.Init(binaries["corrupt"], "")
    with pytest.raises(FWDNXTError, match="^Init: infile must be the path of a compiled binary, got NoneType"):
        ie.Init(None, "")
    xs, want = expected["tiny"]
    result = np.zeros(OUTPUTS, np.float32)
    ie.Run(xs[3], result)
    np.testing.assert_array_equal(result, want["Run"][3])
    ie.Free()


# ---------------------------------------------------------------- FWDNXT: wrong arrays
def _strided(x: np.ndarray) -> np.ndarray:
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def _read_only(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x.flags.writeable = False
    return x


RESULT = np.zeros(OUTPUTS, np.float32)
WRONG = {
    "shape": (np.zeros((1, 2, 2, 3), np.float32), RESULT,
              r"input 'x' must have shape \[1, 2, 2, 2\], got \[1, 2, 2, 3\]"),
    "dtype": (np.zeros((1, 2, 2, 2), np.float16), RESULT, "input 'x' must be float32, got float16"),
    "not an array": (X.tolist(), RESULT, "input 'x' must be a numpy array, got list"),
    "inputs": ((X, X), RESULT, r"the model has 1 input\(s\) \['x'\]; got 2"),
    "result length": (X, np.zeros(OUTPUTS + 1, np.float32), "has 9 values; the output has 8"),
    "result dtype": (X, np.zeros(OUTPUTS, np.float64), "must be a float32 numpy array, got float64"),
    "result none": (X, None, "must be a float32 numpy array, got NoneType"),
    "results": (X, (RESULT, RESULT), "the model has 1 output"),
    "strided result": (X, _strided(np.zeros((1, OUTPUTS), np.float32)), "must be C-contiguous and writable"),
    "read-only result": (X, _read_only(RESULT), "must be C-contiguous and writable"),
}


@pytest.mark.parametrize("call", ["Run", "Run_sw", "Run_th", "PutInput"])
@pytest.mark.parametrize("case", WRONG)
def test_wrong_arrays_name_the_call_and_the_problem(ie, call, case):
    image, result, message = WRONG[case]
    if call == "PutInput" and case.startswith(("result", "strided result", "read-only result", "results")):
        call = "GetResult"
    with pytest.raises(FWDNXTError, match=f"^{call}: .*{message}"):
        if call == "PutInput":
            ie.PutInput(image, "wrong")
        elif call == "GetResult":
            ie.GetResult(result)
        else:
            getattr(ie, call)(image, result)
    assert ie.GetInfo("busy_comp") == 0


@pytest.mark.parametrize("call", ["Run", "Run_sw", "Run_th"])
def test_strided_and_read_only_inputs_give_the_right_result(ie, expected, call):
    xs, want = expected["tiny"]
    for i, image in enumerate((_strided(xs[4]), _read_only(xs[5]))):
        result = np.zeros(OUTPUTS, np.float32)
        getattr(ie, call)(image, result)
        np.testing.assert_array_equal(result, want[call][4 + i])


def test_names_and_paths_of_the_wrong_type_are_named_errors(ie):
    with pytest.raises(FWDNXTError, match="^GetInfo: the name must be a string, got list"):
        ie.GetInfo([])
    with pytest.raises(FWDNXTError, match="^SetFlag: the name must be a string, got dict"):
        ie.SetFlag({}, 1)
    with pytest.raises(FWDNXTError, match="^Init: infile must be the path of a compiled binary, got int"):
        FWDNXT().Init(3, "")


# ---------------------------------------------------------------- FWDNXT: threads
def _runs(ie, call, xs, want, rounds: int, start: int = 0) -> None:
    result = np.zeros(want[0].size, np.float32)
    for k in range(rounds):
        i = (start + k) % len(xs)
        getattr(ie, call)(xs[i], result)
        if not np.array_equal(result, want[i]):
            raise AssertionError(f"{call}: wrong result for input {i}")


def test_two_objects_on_two_threads_give_their_own_results(binaries, expected):
    objects = {name: FWDNXT() for name in ("tiny", "other")}
    for name, ie in objects.items():
        ie.Init(binaries[name], "")

    def work(i):
        name = ("tiny", "other")[i % 2]
        xs, want = expected[name]
        for call in ("Run", "Run_th", "Run_sw"):
            _runs(objects[name], call, xs, want["Run" if call == "Run_sw" else call], 60, start=i)

    assert on_threads(work, 4) == []
    for ie in objects.values():
        ie.Free()


@pytest.mark.parametrize("call", ["Run", "Run_sw", "Run_th"])
def test_one_objects_runs_from_several_threads_are_each_correct(binaries, expected, call):
    """Run and Run_sw from several threads are serialized on the object's
    device (never two at once); Run_th runs the float reference at once."""
    ie = FWDNXT()
    ie.Init(binaries["other"], "")
    engine = ie._session.engine
    running, most = [0], [0]
    lock = threading.Lock()
    run_batch = engine.run_batch

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.0005)
            return run_batch(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    engine.run_batch = counted
    xs, want = expected["other"]
    assert on_threads(lambda i: _runs(ie, call, xs, want[call], 80, start=i), 4) == []
    if call != "Run_th":
        assert most[0] == 1
    ie.Free()


def test_free_while_put_input_work_is_in_flight(binaries, expected):
    """A putter and a getter thread; Free from a third: both end (no hang),
    every result taken before is correct, in order and taken once; a put
    after Free raises, a waiting GetResult returns None."""
    xs, want = expected["tiny"]
    for delay in (0.0, 0.01, 0.05):
        ie = FWDNXT()
        ie.Init(binaries["tiny"], "")
        got: list[int] = []
        ended: dict[str, object] = {}

        def put(_):
            try:
                for i in range(100_000):
                    ie.PutInput(xs[i % DISTINCT], i)
            except FWDNXTError as exc:
                ended["put"] = exc

        def get(_):
            result = np.zeros(OUTPUTS, np.float32)
            try:
                while (tag := ie.GetResult(result)) is not None:
                    assert np.array_equal(result, want["Run"][tag % DISTINCT]), tag
                    got.append(tag)
                ended["get"] = None
            except FWDNXTError as exc:
                ended["get"] = exc

        workers = [threading.Thread(target=fn, args=(0,), daemon=True) for fn in (put, get)]
        for worker in workers:
            worker.start()
        time.sleep(delay)
        ie.Free()
        for worker in workers:
            worker.join(TIMEOUT)
        assert not any(w.is_alive() for w in workers), "a thread hung after Free"
        assert got == list(range(len(got)))
        assert "after Free" in str(ended["put"]) or "freed while this input waited" in str(ended["put"])
        assert ended["get"] is None or "GetResult called after Free" in str(ended["get"])


def test_free_from_another_thread_while_runs_go_on(binaries, expected):
    xs, want = expected["tiny"]
    ie = FWDNXT()
    ie.Init(binaries["tiny"], "")
    started = threading.Event()

    def runs(i):
        result = np.zeros(OUTPUTS, np.float32)
        k = 0
        while True:
            try:
                ie.Run_sw(xs[k % DISTINCT], result)
            except FWDNXTError as exc:
                assert "called after Free" in str(exc) or "Free was called before the run" in str(exc), exc
                return
            assert np.array_equal(result, want["Run_sw"][k % DISTINCT])
            started.set()
            k += 1

    threads = [threading.Thread(target=runs, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    assert started.wait(TIMEOUT)
    ie.Free()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)


# ---------------------------------------------------------------- the Inference-Engine classes
@pytest.fixture(scope="module")
def executable(binaries):
    return IEPlugin(device="FPGA").load(IENetwork(model=binaries["other"]), num_requests=2)


def test_ie_wrong_inputs_are_named_errors(executable):
    good = np.zeros(OTHER_SHAPE, np.float32)
    cases = [([good], "inputs must be a dict of input name -> array, got list"),
             ({"y": good}, "the network has no input 'y'"),
             ({"x": np.zeros((3, 3), np.float32)}, r"input 'x' must have shape \[1, 2, 4, 4\], got \[3, 3\]"),
             ({"x": np.full(OTHER_SHAPE, "a")}, "input 'x' must be a number array .*FP32.*, got <U1"),
             ({"x": np.zeros(OTHER_SHAPE, np.complex64)}, "input 'x' must be a number array .*, got complex64")]
    for inputs, message in cases:
        with pytest.raises(InferenceEngineError, match=message):
            executable.infer(inputs)
    with pytest.raises(InferenceEngineError, match="IENetwork: model must be"):
        IENetwork(model=3)


def test_ie_requests_from_several_threads_are_correct_or_busy(executable, expected):
    """Each thread its own request: correct results; two threads on one
    request: the second gets REQUEST_BUSY, never a mixed-up result."""
    xs, want = expected["other"]

    def work(i):
        request = executable.requests[i % 2]
        for k in range(40):
            j = (i + k) % DISTINCT
            try:
                request.infer({"x": xs[j]})
            except InferenceEngineError as exc:
                assert "REQUEST_BUSY" in str(exc)
                continue
            output = next(iter(request.outputs.values()))
            # another thread may start the request between infer and this read: then its result is busy or newer
            if request.wait(0) == 0 and np.array_equal(output.reshape(-1), want["Run"][j]):
                continue
            assert i >= 2

    assert on_threads(work, 2) == []
    assert on_threads(work, 4) == []


# ---------------------------------------------------------------- kp
def _raises(code_name: str, call, *args):
    with pytest.raises(kp.ApiKPException) as info:
        call(*args)
    assert info.value.api_return_code.name == code_name, info.value


def test_kp_calls_before_load_after_disconnect_and_twice(binaries):
    kp.core.simulate_devices(2, "KL720")
    try:
        dg = kp.core.connect_devices([1])
        data = kp.GenericDataInferenceDescriptor(0, 1, [kp.GenericInputNodeData(bytes(8))])
        _raises("KP_ERROR_MODEL_NOT_LOADED_35", kp.inference.generic_data_inference_send, dg, data)
        kp.core.load_model_from_file(dg, binaries["tiny"])
        kp.core.load_model_from_file(dg, binaries["other"])  # a second model replaces the first
        _raises("KP_FW_IMAGE_SIZE_NOT_MATCH_MODEL_INPUT_107", kp.inference.generic_data_inference_send, dg, data)
        kp.core.set_timeout(dg, 200)
        _raises("KP_ERROR_USB_TIMEOUT_N7", kp.inference.generic_data_inference_receive, dg)
        kp.core.disconnect_devices(dg)
        for call, args in ((kp.core.disconnect_devices, ()), (kp.core.load_model_from_file, (binaries["tiny"],)),
                           (kp.inference.generic_data_inference_send, (data,)),
                           (kp.inference.generic_data_inference_receive, ())):
            _raises("KP_ERROR_DEVICE_NOT_EXIST_10", call, dg, *args)
    finally:
        kp.core.simulate_devices(1, "KL720")


def test_kp_two_groups_on_two_threads(binaries):
    kp.core.simulate_devices(2, "KL720")
    groups = [kp.core.connect_devices([port]) for port in (1, 2)]
    try:
        for dg, name in zip(groups, ("tiny", "other")):
            kp.core.load_model_from_file(dg, binaries[name])
        payloads = [[bytes([k]) * dg.model.inputs[0].nbytes for k in range(4)] for dg in groups]

        def answer(i, k):
            kp.inference.generic_data_inference_send(groups[i], kp.GenericDataInferenceDescriptor(
                k, 1, [kp.GenericInputNodeData(payloads[i][k % 4])]))
            result = kp.inference.generic_data_inference_receive(groups[i])
            assert result.header.inference_number == k
            chw = kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW
            return kp.inference.generic_inference_retrieve_float_node(0, result, chw).ndarray

        want = [[answer(i, k) for k in range(4)] for i in range(2)]

        def work(i):
            for k in range(40):
                np.testing.assert_array_equal(answer(i, k), want[i][k % 4])

        assert on_threads(work, 2) == []
    finally:
        for dg in groups:
            kp.core.disconnect_devices(dg)
        kp.core.simulate_devices(1, "KL720")


# ---------------------------------------------------------------- the Simulator API
def test_simulator_session_misuse_and_two_threads(binaries):
    from compiler.simulator.api import Simulator
    from compiler.simulator.errors import SimulatorError

    model = str(binaries["tiny"]).replace("tiny.bin", "tiny.onnx")
    session = Simulator.get_inference_session({"input_model_path": model})
    xs = images(8)
    want = [session.run(None, {"x": x})[0] for x in xs]
    for feed, message in (({"x": xs[0].astype(np.float64)}, r"input 'x' is tensor\(double\)"),
                          ({"x": xs[0][0]}, r"input 'x' has shape \[2, 2, 2\]"), ({}, "input 'x' is missing"),
                          ([xs[0]], "input_feed must be a dict of input name -> array, got list")):
        with pytest.raises(SimulatorError, match=message):
            session.run(None, feed)

    def work(i):
        for k in range(40):
            np.testing.assert_array_equal(session.run(None, {"x": xs[(i + k) % 8]})[0], want[(i + k) % 8])

    assert on_threads(work, 3) == []
