"""API misuse and concurrency (issue 23 item 4): every call before Init,
after Free, twice; a second binary on one object; wrong arrays; objects on
several threads; one object's runs from several threads (serialized, each
caller its own result); Free while work is in flight; KeyboardInterrupt
during a run. Each misuse is a named error naming the call; nothing hangs
(every wait has a timeout), nothing is lost or duplicated. FWDNXT in full,
then the analogous calls of the Inference-Engine classes, kp and the
Simulator API's session."""
from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import onnx
import pytest

from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT, kp
from runtime.fwdnxt import FWDNXTError
from runtime.inference_engine import IENetwork, IEPlugin, InferenceEngineError
from runtime.interrupts import deferred_interrupt
from tests.helpers.fwdnxt import OUTPUTS, compile_tiny, images

TIMEOUT = 30
"""Seconds any thread of a test may take before the test calls it a hang."""
DISTINCT = 16
OTHER_SHAPE = (1, 2, 4, 4)
OTHER_OUTPUTS = 48


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    """The tiny model (one device conv) and another (conv, relu, a softmax
    on the CPU: a device and a CPU segment), and a corrupt file."""
    folder = tmp_path_factory.mktemp("misuse")
    tiny, _ = compile_tiny(folder)
    builder = OnnxBuilder("other", seed=3)
    x = builder.input("x", list(OTHER_SHAPE))
    y = builder.node("Softmax", [builder.node("Relu", [builder.conv(x, 2, 3, 3)])], axis=1)
    onnx.save(builder.model([y]), folder / "other.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        count = FWDNXT().Compile("4x4x2", str(folder / "other.onnx"), str(folder / "other.bin"),
                                 samples=[np.random.default_rng(i).standard_normal(OTHER_SHAPE, np.float32)
                                          for i in range(4)])
    assert count == OTHER_OUTPUTS
    (folder / "corrupt.bin").write_bytes(tiny.read_bytes()[:100])
    return {"tiny": str(tiny), "other": str(folder / "other.bin"), "corrupt": str(folder / "corrupt.bin")}


def _answers(path: str, xs, size: int) -> dict[str, list[np.ndarray]]:
    """Each call's result for each input, on one fresh object."""
    ie = FWDNXT()
    ie.Init(path, "")
    out = {}
    for call in ("Run", "Run_sw", "Run_th"):
        out[call] = []
        for x in xs:
            out[call].append(np.zeros(size, np.float32))
            getattr(ie, call)(x, out[call][-1])
    ie.Free()
    return out


@pytest.fixture(scope="module")
def expected(binaries):
    """DISTINCT inputs of each model and every call's results for them (also
    the warm-up: every kernel compiled before a test interrupts a run)."""
    xs = images(DISTINCT)
    others = [np.random.default_rng(50 + i).standard_normal(OTHER_SHAPE, np.float32) for i in range(DISTINCT)]
    tiny, other = _answers(binaries["tiny"], xs, OUTPUTS), _answers(binaries["other"], others, OTHER_OUTPUTS)
    assert len({r.tobytes() for r in tiny["Run"]}) == DISTINCT
    return {"tiny": (xs, tiny), "other": (others, other)}


@pytest.fixture
def ie(binaries):
    ie = FWDNXT()
    ie.Init(binaries["tiny"], "")
    yield ie
    ie.Free()


def _threads(target, count: int, *args) -> list[BaseException]:
    """Run target(i, *args) on ``count`` threads; the exceptions they raised.
    Fails the test if one is still running after TIMEOUT seconds."""
    errors: list[BaseException] = []

    def body(i):
        try:
            target(i, *args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread`` at its next bytecode (as Ctrl-C
    does in the main thread)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


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

    assert _threads(work, 4) == []
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
    assert _threads(lambda i: _runs(ie, call, xs, want[call], 80, start=i), 4) == []
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


# ---------------------------------------------------------------- FWDNXT: KeyboardInterrupt
@pytest.mark.parametrize("call", ["Run", "Run_sw", "Run_th"])
def test_keyboard_interrupt_during_a_run_leaves_the_object_usable(ie, expected, call):
    xs, want = expected["tiny"]
    stop = threading.Event()
    counts = {"done": 0, "interrupted": 0, "wrong": 0}

    def runs():
        result = np.zeros(OUTPUTS, np.float32)
        while not stop.is_set():
            try:
                i = random.randrange(DISTINCT)
                getattr(ie, call)(xs[i], result)
                counts["wrong"] += not np.array_equal(result, want[call][i])
                counts["done"] += 1
            except KeyboardInterrupt:
                counts["interrupted"] += 1

    worker = threading.Thread(target=runs, daemon=True)
    worker.start()
    for _ in range(150):
        time.sleep(random.random() * 0.002)
        _interrupt(worker)
    time.sleep(0.02)
    stop.set()
    worker.join(TIMEOUT)
    assert not worker.is_alive()
    assert counts["interrupted"] > 0 and counts["done"] > 0 and counts["wrong"] == 0, counts
    result = np.zeros(OUTPUTS, np.float32)
    getattr(ie, call)(xs[7], result)
    np.testing.assert_array_equal(result, want[call][7])


def test_keyboard_interrupt_in_put_input_and_get_result_loses_nothing(ie, expected):
    """Interrupted while waiting for a buffer or a result, the input or the
    result stays where it was: every result comes back once, in order."""
    xs, want = expected["tiny"]
    count, seen, wrong = 600, [], []

    def get():
        result = np.zeros(OUTPUTS, np.float32)
        while True:
            try:
                tag = ie.GetResult(result)
            except KeyboardInterrupt:
                continue
            if tag is None:
                return
            seen.append(tag)
            if not np.array_equal(result, want["Run"][tag % DISTINCT]):
                wrong.append(tag)

    def put():
        i = 0
        while i <= count:
            try:
                ie.PutInput(*((xs[i % DISTINCT], i) if i < count else (None, None)))
                i += 1
            except KeyboardInterrupt:
                continue

    workers = [threading.Thread(target=fn, daemon=True) for fn in (get, put)]
    for worker in workers:
        worker.start()
    for k in range(200):
        time.sleep(random.random() * 0.002)
        if workers[k % 2].is_alive():
            _interrupt(workers[k % 2])
    for worker in workers:
        worker.join(TIMEOUT)
    assert not any(w.is_alive() for w in workers), "a thread hung"
    assert seen == list(range(count)) and wrong == []


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler, whatever this process inherited (a shell
    starts background jobs with SIGINT ignored, and Python then installs none)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_first_ctrl_c_is_held_while_kernels_compile(python_sigint):
    """The main thread's first SIGINT inside deferred_interrupt is raised when
    the body ends; the body runs to its end."""
    finished = []
    with pytest.raises(KeyboardInterrupt, match="interrupted during compiling"):
        with deferred_interrupt("compiling"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            finished.append(True)
    assert finished == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_the_main_thread_during_runs(binaries):
    """A real SIGINT, in a process of its own: once during the first Run (held
    until it ends), then many times during runs; the object stays usable."""
    script = textwrap.dedent(f"""
        import os, signal, threading, time
        import numpy as np
        from runtime import FWDNXT
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even where SIGINT was inherited ignored
        ie = FWDNXT()
        ie.Init({binaries["tiny"]!r}, "")
        x = np.ones((1, 2, 2, 2), np.float32)
        result = np.zeros({OUTPUTS}, np.float32)
        engine = ie._session.engine
        first = engine._segments.run_batch
        def interrupted(*args):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            return first(*args)
        engine._segments.run_batch = interrupted
        try:
            ie.Run(x, result)
            raise SystemExit("no KeyboardInterrupt")
        except KeyboardInterrupt as exc:
            assert "the first run" in str(exc), exc
        engine._segments.run_batch = first
        ie.Run(x, result)
        want = result.copy()
        go = threading.Event()
        def sender():
            go.wait()
            for _ in range(100):
                time.sleep(0.003)
                os.kill(os.getpid(), signal.SIGINT)
        thread = threading.Thread(target=sender)
        thread.start()
        interrupted, done = 0, False
        while not done:  # a Ctrl-C between two statements of the loop is counted too
            try:
                go.set()
                while thread.is_alive():
                    try:
                        ie.Run(x, result)
                        assert np.array_equal(result, want)
                    except KeyboardInterrupt:
                        interrupted += 1
                done = True
            except KeyboardInterrupt:
                interrupted += 1
        ie.Run(x, result)
        assert np.array_equal(result, want) and interrupted > 50, interrupted
        print("ok", interrupted)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]


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

    assert _threads(work, 2) == []
    assert _threads(work, 4) == []


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

        assert _threads(work, 2) == []
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

    assert _threads(work, 3) == []
