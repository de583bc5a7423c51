"""The steady-state call's prepared path (issue 57, the fixed cost of a
call; docs/runtime.md "The fixed cost of a call"): QuantizeLinear and
DequantizeLinear prepared for a constant per-tensor grid, the device's
interface tensors prepared once per segment, FWDNXT's usual call checked
cheaply. What it prepared for gives the bytes the generic path gives; what
it did not (another dtype, a non-contiguous or wrongly sized array, a NaN)
falls back to the full checks and their errors; concurrent calls stay
correct."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import runtime.device as device_module
import runtime.engine as engine_module
from runtime import FWDNXT
from runtime.binary import read_binary
from runtime.compiled import DeviceSegment
from runtime.engine import Engine
from runtime.errors import ExecutionError, KernelError
from runtime.fwdnxt import FWDNXTError
from runtime.isa import Op, Space, instr
from runtime.jit import data_address
from runtime.kernels.quant_prepared import SAW_INF, SAW_NAN, PreparedDequantize, PreparedQuantize
from runtime.kernels.registry import get_kernel, prepared_kernel
from runtime.nonfinite import NonFiniteInputError, all_finite, check_input
from runtime.requests import EngineQueue, Request
from runtime.sim import Simulator, SimulatorError
from tests.helpers.fwdnxt import OUTPUTS, SHAPE, compile_tiny, images
from tests.helpers.simulator import CONFIG, Image, as_load, records, single_phase

ATTRS = {"axis": 1, "block_size": 0, "output_dtype": None, "precision": None}
GRIDS = [(np.int8, 0.018611551, -14), (np.uint8, 0.5, 128), (np.int16, 1e-4, -300), (np.uint16, 3.0, 7)]


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    path, count = compile_tiny(tmp_path_factory.mktemp("fast_path"))
    assert count == OUTPUTS
    return str(path)


def _edge_values(scale: float) -> np.ndarray:
    """Values on and around rounding ties, beyond the grid, ±Inf, ±0,
    subnormals, and quotients around 2^24 - 2^16 and 2^24 (where a float32
    sum of a rounded quotient and a zero point stops being exact)."""
    rng = np.random.default_rng(3)
    ties = (np.arange(-400, 400) + 0.5) * np.float32(scale)
    wide = rng.standard_normal(600) * np.array([1, 30, 1e4, 1e9]).repeat(150)
    special = [np.inf, -np.inf, 0.0, -0.0, 3e38, -3e38, 1e-45, np.nextafter(np.float32(0.5), 1)]
    steps = np.array([-3, -2, -1, 0, 1, 2, 3])
    big = np.concatenate([2**24 - 2**16 + steps, 2**24 + steps]) * np.float32(scale)
    return np.concatenate([ties, np.nextafter(ties.astype(np.float32), np.float32(np.inf)), wide, special, big, -big,
                           [0.0, 0.0]]).astype(np.float32).reshape(2, -1)


@pytest.mark.parametrize("dtype,scale,zero", GRIDS)
def test_prepared_quantize_and_dequantize_give_the_generic_kernels_bytes(dtype, scale, zero):
    scale, zero = np.array(scale, np.float32), np.array(zero, dtype)
    quantize = prepared_kernel("QuantizeLinear", ATTRS, [None, scale, zero])
    dequantize = prepared_kernel("DequantizeLinear", ATTRS, [None, scale, zero])
    assert isinstance(quantize, PreparedQuantize) and isinstance(dequantize, PreparedDequantize)
    x = _edge_values(float(scale))
    with np.errstate(over="ignore"):
        want = get_kernel("QuantizeLinear")([x, scale, zero], ATTRS)[0]
    got = quantize([x, scale, zero], ATTRS)[0]
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1, max(1, (info.max - info.min) // 4000)).astype(dtype)
    want = get_kernel("DequantizeLinear")([codes, scale, zero], ATTRS)[0]
    got = dequantize([codes, scale, zero], ATTRS)[0]
    assert got.dtype == want.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("dtype,scale,zero", GRIDS)
def test_the_prepared_passes_into_memory_report_what_they_saw_and_refuse_what_they_cannot_take(dtype, scale, zero):
    """PreparedQuantize.into quantizes and inspects in one pass: 0 for an
    all-finite x, SAW_INF with saturated codes, SAW_NAN, the generic
    kernel's codes for any layout (a strided x whose reshape is a strided
    view too); None for what it does not take. PreparedDequantize.into
    refuses an output array it could not write as one contiguous run."""
    scale, zero = np.array(scale, np.float32), np.array(zero, dtype)
    quantize = prepared_kernel("QuantizeLinear", ATTRS, [None, scale, zero])
    dequantize = prepared_kernel("DequantizeLinear", ATTRS, [None, scale, zero])
    generic = get_kernel("QuantizeLinear")
    x = _edge_values(float(scale))
    finite = np.where(np.isfinite(x), x, np.float32(1))
    strided = np.empty((2, x.shape[1], 2), np.float32)[..., 0]
    strided[...] = finite
    assert not strided.flags.c_contiguous and not strided.reshape(-1).flags.c_contiguous
    for value, seen in ((finite, 0), (x, SAW_INF), (strided, 0)):
        flat = np.full(x.size, 5, dtype)
        with np.errstate(over="ignore"):
            assert quantize.into(value, flat) == seen
            assert np.array_equal(flat, generic([value, scale, zero], ATTRS)[0].reshape(-1))
    assert quantize.into(np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), flat) & SAW_NAN
    assert quantize.into(x.astype(np.float64), flat) is None and quantize.into(x[:, 1:], flat) is None
    codes = flat.reshape(x.shape)
    want = get_kernel("DequantizeLinear")([codes, scale, zero], ATTRS)[0]
    out = np.zeros(x.shape, np.float32)
    assert dequantize.into(codes, out) and np.array_equal(out, want)
    readonly = np.zeros(x.shape, np.float32)
    readonly.flags.writeable = False
    for refused in (np.zeros((x.shape[1], 2), np.float32).T, np.zeros(x.shape, np.float64), readonly):
        assert not dequantize.into(codes, refused) and not refused.any()


def test_the_device_inspects_its_inputs_as_it_quantizes_them_and_the_engine_does_not_scan_them_first(binary,
                                                                                                      monkeypatch):
    """An input the first (device) segment quantizes is inspected in that
    pass (runtime.segments.FINITE): no scan of it before the run; a NaN or
    ±Inf in it is still the policy's error, naming it, before the device
    runs and with the caller's result buffer untouched; ±Inf under
    'saturate' gives the generic path's saturated output."""
    engine = Engine(read_binary(binary))
    assert engine._segments.inspected == {"x"}
    scans = []
    monkeypatch.setattr(engine_module, "check_input", lambda *args: scans.append(args[0]) or check_input(*args))
    x = images(1, seed=6)[0]
    name = engine.model.outputs[0].name
    want = engine.run({"x": x})[name]
    assert scans == []
    poisoned = x.copy()
    poisoned[0, 1, 0, 1] = -np.inf
    given = np.full(want.shape, -7.0, np.float32)
    with pytest.raises(NonFiniteInputError, match=r"input 'x' holds -Inf at flat index 5 .*'error' refuses"):
        engine.run_batch([{"x": poisoned}], into=[{name: given}])
    assert scans == ["x"] and np.all(given == -7.0)
    engine.nonfinite = "saturate"
    with monkeypatch.context() as patch:
        patch.setattr(device_module, "prepared_kernel", lambda op, attrs, constants: get_kernel(op))
        generic = Engine(read_binary(binary), nonfinite="saturate")
    np.testing.assert_array_equal(engine.run({"x": poisoned})[name], generic.run({"x": poisoned})[name])
    poisoned[0, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteInputError, match=r"input 'x' holds NaN at flat index 0"):
        engine.run({"x": poisoned})
    np.testing.assert_array_equal(engine.run({"x": x})[name], want)


def test_prepared_kernels_hand_what_they_were_not_prepared_for_to_the_generic_kernel():
    scale, zero = np.array(0.25, np.float32), np.array(3, np.int8)
    quantize = prepared_kernel("QuantizeLinear", ATTRS, [None, scale, zero])
    generic = get_kernel("QuantizeLinear")
    x = np.float32([[0.1, 1.37, -8.0, 40.0]])
    for inputs in ([x.astype(np.float64), scale, zero], [x, scale.copy(), zero], [x.T, scale, zero]):
        np.testing.assert_array_equal(quantize(inputs, ATTRS)[0], generic(inputs, ATTRS)[0])
    with pytest.raises(KernelError, match=r"x / y_scale is NaN at flat index 2 \(index \[0, 2\]\)"):
        quantize([np.float32([[1, 2, np.nan, 4]]), scale, zero], ATTRS)
    scale[()] = 0.5  # a parameter rewritten in place takes effect
    np.testing.assert_array_equal(quantize([x, scale, zero], ATTRS)[0], generic([x, scale, zero], ATTRS)[0])
    per_channel = np.float32([0.1, 0.2])
    assert prepared_kernel("QuantizeLinear", ATTRS, [None, per_channel, np.int8([0, 0])]) is generic
    assert prepared_kernel("QuantizeLinear", {**ATTRS, "output_dtype": "int16"}, [None, scale, zero]) is generic
    assert prepared_kernel("DequantizeLinear", ATTRS, [None, scale, np.array(0, np.int32)]) is get_kernel(
        "DequantizeLinear")
    dequantize = prepared_kernel("DequantizeLinear", ATTRS, [None, scale, zero])
    with pytest.raises(KernelError, match="x_zero_point has type int8 but x has type uint8"):
        dequantize([np.uint8([1, 2]), scale, zero], ATTRS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.dtype(">f4")])
def test_the_finiteness_scan_agrees_with_np_isfinite(dtype):
    info = np.finfo(dtype)
    for value in (np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, info.max, -info.max, info.tiny / 2):
        x = np.zeros((3, 13), dtype)
        x[2, 5] = value
        for array in (x, x[:, ::2], x.T, x[:0]):
            assert all_finite(array) == bool(np.isfinite(array).all()), (value, array.shape)


def _generic_engine(model, monkeypatch) -> Engine:
    """An engine whose device converts at its interface with the generic kernels (the path before preparation)."""
    with monkeypatch.context() as patch:
        patch.setattr(device_module, "prepared_kernel", lambda op, attrs, constants: get_kernel(op))
        return Engine(model)


def test_the_prepared_device_run_gives_the_generic_runs_bytes_and_codes(binary, monkeypatch):
    model = read_binary(binary)
    made = []
    with monkeypatch.context() as patch:
        patch.setattr(device_module, "prepared_kernel", lambda *args: made.append(prepared_kernel(*args)) or made[-1])
        fast = Engine(model)
    assert [type(k) for k in made] == [PreparedQuantize, PreparedDequantize]
    slow = _generic_engine(model, monkeypatch)
    for k, x in enumerate(images(6, seed=4) + [np.full(SHAPE, 1e6, np.float32)]):
        codes_fast, codes_slow = {}, {}
        with np.errstate(over="ignore"):
            a, b = fast.run({"x": x}, codes_fast), slow.run({"x": x}, codes_slow)
        for name in b:
            assert np.array_equal(a[name].view(np.uint32), b[name].view(np.uint32)), (k, name)
            assert np.array_equal(codes_fast[name].codes, codes_slow[name].codes)
        again = fast.run({"x": x})  # a second call's outputs are new arrays, not the first's
        assert all(again[n] is not a[n] and np.array_equal(again[n], a[n]) for n in a)


def test_a_device_segment_input_the_prepared_pass_declines_goes_through_the_kernel(binary, monkeypatch):
    """What a CPU segment before could hand the device (the runner called
    directly): another dtype is quantized by the kernel, as before; a wrong
    size or a NaN is the error naming the segment and the tensor."""
    model = read_binary(binary)
    fast, slow = Engine(model)._segments._runners[0], _generic_engine(model, monkeypatch)._segments._runners[0]
    x = images(1, seed=8)[0].astype(np.float64) * 3
    tables = [{"x": x}], [{"x": x}]
    fast(tables[0])
    slow(tables[1])
    assert set(tables[0][0]) == set(tables[1][0])
    assert all(np.array_equal(tables[0][0][n], tables[1][0][n]) for n in tables[1][0])
    with pytest.raises(ExecutionError, match=r"input 'x' came with shape \[3\]; its DRAM tensor holds \[1, 2, 2, 2\]"):
        fast([{"x": np.zeros(3, np.float32)}])
    with pytest.raises(ExecutionError, match=r"quantizing its input 'x': x / y_scale is NaN at flat index 0"):
        fast([{"x": np.full(SHAPE, np.nan, np.float32)}])


def test_a_changed_input_after_prepared_calls_gets_the_full_checks(binary):
    engine = Engine(read_binary(binary))
    x = images(1, seed=7)[0]
    name = engine.model.outputs[0].name
    want = engine.run({"x": x})[name]
    with pytest.raises(ExecutionError, match=r"input 'x' must be float32\[1, 2, 2, 2\], got float64\[1, 2, 2, 2\]"):
        engine.run({"x": x.astype(np.float64)})
    with pytest.raises(ExecutionError, match=r"got float32\[1, 2, 4\]"):
        engine.run({"x": x.reshape(1, 2, 4)})
    strided = np.empty((1, 2, 2, 4), np.float32)[..., ::2]
    strided[...] = x
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(engine.run({"x": strided})[name], want)
    with pytest.raises(NonFiniteInputError, match=r"input 'x' holds NaN at flat index 3"):
        engine.run({"x": np.where(np.arange(8).reshape(SHAPE) == 3, np.nan, x).astype(np.float32)})
    huge = np.full(SHAPE, 3e38, np.float32)  # finite, far beyond the grid
    np.testing.assert_array_equal(engine.run({"x": huge})[name], _generic_outputs(binary, huge)[name])
    np.testing.assert_array_equal(engine.run({"x": x})[name], want)


def _generic_outputs(binary: str, x: np.ndarray) -> dict:
    with pytest.MonkeyPatch.context() as patch, np.errstate(over="ignore"):
        return _generic_engine(read_binary(binary), patch).run({"x": x})


def test_fwdnxt_calls_give_the_same_bytes_for_every_layout_and_the_same_errors(binary):
    ie = FWDNXT()
    ie.Init(binary, "")
    x = images(1, seed=2)[0]
    want = {call: np.empty(OUTPUTS, np.float32) for call in ("Run", "Run_sw", "Run_th")}
    for call, result in want.items():
        getattr(ie, call)(x, result)
    fortran = np.asfortranarray(x)
    readonly = x.copy()
    readonly.flags.writeable = False
    for layout in (x.reshape(-1), x.reshape(2, 2, 2), fortran, readonly, x.reshape(-1)[::-1][::-1]):
        for call, expected in want.items():
            result = np.empty(OUTPUTS, np.float32)
            getattr(ie, call)(layout, result)
            assert np.array_equal(result.view(np.uint32), expected.view(np.uint32)), call
    result = np.empty(OUTPUTS, np.float32)
    with pytest.raises(FWDNXTError, match="Run_sw: input 'x' must be float32, got float64"):
        ie.Run_sw(x.astype(np.float64), result)
    with pytest.raises(FWDNXTError, match=r"Run_sw: input 'x' must have shape \[1, 2, 2, 2\], got \[1, 2, 2\]"):
        ie.Run_sw(x[..., 0], result)
    with pytest.raises(FWDNXTError, match="Run_sw: the result buffer for .* has 7 values"):
        ie.Run_sw(x, np.empty(OUTPUTS - 1, np.float32))
    with pytest.raises(FWDNXTError, match="Run_sw: the run failed: input 'x' holds NaN"):
        ie.Run_sw(np.full(SHAPE, np.nan, np.float32), result)
    ie.Run_sw(x, result)
    assert np.array_equal(result, want["Run_sw"])
    ie.Free()


def test_concurrent_run_sw_and_put_input_get_result_each_get_their_own_answer(binary):
    xs = images(8, seed=11)
    single = FWDNXT()
    single.Init(binary, "")
    want = []
    for x in xs:
        want.append(np.empty(OUTPUTS, np.float32))
        single.Run_sw(x, want[-1])
    ie = FWDNXT()
    ie.Init(binary, "")
    wrong = []

    def runner(offset: int) -> None:
        result = np.empty(OUTPUTS, np.float32)
        for i in range(60):
            k = (offset + i) % len(xs)
            ie.Run_sw(xs[k], result)
            if not np.array_equal(result, want[k]):
                wrong.append((offset, k))

    def streamer() -> None:
        result = np.empty(OUTPUTS, np.float32)
        for i in range(30):
            ie.PutInput(xs[i % len(xs)], i)
            tag = ie.GetResult(result)
            if tag != i or not np.array_equal(result, want[i % len(xs)]):
                wrong.append(("stream", i))

    threads = [threading.Thread(target=runner, args=(k,)) for k in range(3)] + [threading.Thread(target=streamer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
    ie.Free()


def test_a_synchronous_request_is_done_without_an_event_of_its_own(binary):
    queue = EngineQueue(Engine(read_binary(binary)))
    first, second = (queue.run(Request([{"x": x}])) for x in images(2, seed=1))
    assert first.done and first.wait(0) and first._done is second._done
    assert first.result() is first.outputs and first.error is None
    queued = queue.submit(Request([{"x": images(1, seed=5)[0]}]))
    assert queued.wait(30) and queued._done is not first._done
    with pytest.raises(Exception, match="neither submitted to a queue nor run"):
        Request([{"x": images(1)[0]}]).wait(0)
    queue.close()


def test_device_outputs_go_straight_into_the_callers_arrays_and_nowhere_else(binary, monkeypatch):
    """Engine.run_batch's ``into`` (runtime.segments.INTO): the device
    dequantizes a model output into the array given for it, which the run
    returns, with the bits of a run into a new array; an array the prepared
    pass cannot take (another size) is left untouched and a new one
    returned; an array of the output's size but not its shape (flat) is
    written and returned as it is; FWDNXT's result buffer gets the same
    bits either way."""
    engine = Engine(read_binary(binary))
    name = engine.model.outputs[0].name
    for x in images(3, seed=21):
        want = engine.run({"x": x})[name]
        given = np.full(want.shape, -7.0, np.float32)
        got = engine.run_batch([{"x": x}], into=[{name: given}])[0][name]
        assert got is given and np.array_equal(got.view(np.uint32), want.view(np.uint32))
        flat = np.full(want.size, -7.0, np.float32)  # FWDNXT's usual result buffer: the values, flat
        got = engine.run_batch([{"x": x}], into=[{name: flat}])[0][name]
        assert got is flat and np.array_equal(got.view(np.uint32), want.reshape(-1).view(np.uint32))
        wrong = np.full(want.size + 1, -7.0, np.float32)
        other = engine.run_batch([{"x": x}], into=[{name: wrong}])[0][name]
        assert other is not wrong and np.all(wrong == -7.0) and np.array_equal(other, want)
    ie = FWDNXT()
    ie.Init(binary, "")
    x = images(1, seed=22)[0]
    read, written = device_module._Edge.read, []
    monkeypatch.setattr(device_module._Edge, "read", lambda edge, table, codes: (read(edge, table, codes),
                                                                         written.append(table[edge.name])))
    result = np.full(OUTPUTS, np.nan, np.float32)
    ie.Run_sw(x, result)
    assert np.array_equal(result, engine.run({"x": x})[name].reshape(-1))
    assert written[0] is result  # the device's dequantization wrote the flat buffer itself: nothing copied after
    ie.Free()


def test_outputs_are_not_written_into_the_callers_arrays_before_a_later_segment_could_fail(tmp_path):
    """A binary whose device segment is followed by a CPU one (a 1x1 conv,
    then a Softmax on the CPU) takes no destinations: a failure in the CPU
    segment must not leave a half-written result buffer, so every output
    is a new array and the given ones stay as they were, even the device's
    own output that is a model output too."""
    import warnings

    from compiler.compile import compile_model
    from compiler.zoo.builder import OnnxBuilder

    builder = OnnxBuilder("device_first", seed=2)
    conv = builder.conv(builder.input("x", list(SHAPE)), 2, 2, 1)
    model = builder.model([conv, builder.node("Softmax", [conv], axis=1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = compile_model(model, samples=images(4, seed=9), outfile=tmp_path / "m.bin", demote_islands=False)
    assert isinstance(compiled.segments[0], DeviceSegment) and not isinstance(compiled.segments[-1], DeviceSegment)
    engine = Engine(read_binary(str(tmp_path / "m.bin")))
    for x in images(2, seed=23):
        want = engine.run({"x": x})
        given = {n: np.full(v.shape, -7.0, np.float32) for n, v in want.items()}
        got = engine.run_batch([{"x": x}], into=[given])[0]
        for n in want:
            assert got[n] is not given[n] and np.all(given[n] == -7.0) and np.array_equal(got[n], want[n]), n


def test_a_one_lane_program_runs_its_lane_directly_with_the_bytes_of_the_phase_loop(binary):
    """The usual binary (one card, one cluster) is one lane of one epoch:
    run_checked runs it with no loop over phases and lanes, and the
    interpreter's arguments are gathered once per DRAM image, so a run on
    another image reads and writes that image, not the one the last run had."""
    engine = Engine(read_binary(binary))
    simulator = engine.device.simulators[0]
    assert simulator._single is not None
    segment = next(s for s in engine.model.segments if isinstance(s, DeviceSegment))
    source = segment.inputs[0]
    outputs = [(t.addr, t.addr + t.nbytes) for t in segment.outputs]
    engine.run({"x": images(1, seed=7)[0]})
    direct = [dram.copy() for dram in engine.device.drams]
    looped = [dram.copy() for dram in direct]
    simulator.run_checked(direct)
    simulator.run_checked(looped, after_phase=lambda phase: None)  # an after_phase takes the loop over phases
    assert np.array_equal(direct[0], looped[0])
    other = [dram.copy() for dram in direct]
    rng = np.random.default_rng(3)
    other[0][source.addr:source.addr + source.nbytes] = rng.integers(0, 256, source.nbytes, dtype=np.uint8)
    other_looped = [dram.copy() for dram in other]
    simulator.run_checked(other)  # another image: its own arguments, not the last run's
    simulator.run_checked(other_looped, after_phase=lambda phase: None)
    assert np.array_equal(other[0], other_looped[0])
    assert any(not np.array_equal(other[0][a:b], direct[0][a:b]) for a, b in outputs)


def test_a_later_run_that_is_one_interpreter_call_stops_on_a_bad_param_as_a_first_run_does():
    """After its first run, a one-lane program the interpreter runs through
    with no Python step (a small model) runs as one call of it
    (Simulator._whole_run): a PARAM record changed in DRAM between two runs
    stops the next with the instruction named, and a good one runs again."""
    image = Image()
    rec = records(np.random.default_rng(0), 4)
    conv = instr(Op.CONV, groups=1, in_addr=0, in_bits=8, in_c=4, in_h=5, in_w=5, wgt_addr=0, wgt_bits=8, kernel_h=3,
                 kernel_w=3, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=4, out_addr=1024, out_bits=8,
                 lo=-128, hi=127, param_addr=512)
    loads = [as_load(Space.ACT, 0, np.arange(100).astype(np.int8)), as_load(Space.WGT, 0, np.ones(144, np.int8)),
             as_load(Space.WGT, 512, rec)]
    stream, (out,) = single_phase(loads, [conv], [(Space.ACT, 1024, 36)], image)
    sim = Simulator(CONFIG, {(0, 0): stream}, image.top)
    sim.run([image.data])
    want = image.data[out:out + 36].copy()
    sim.run([image.data])
    assert sim._whole is not None and np.array_equal(image.data[out:out + 36], want)
    at = bytes(image.data).find(rec.tobytes())
    good = image.data[at:at + rec.nbytes].copy()
    bad = rec.copy()
    bad["shift"][2] = 63
    image.data[at:at + rec.nbytes] = np.frombuffer(bad.tobytes(), np.uint8)
    with pytest.raises(SimulatorError, match=r"stream \(0, 0, 0\): instruction 3 \(CONV\): PARAM record 2 has "
                                             r"shift=63, outside \[1, 62\]"):
        sim.run([image.data])
    image.data[at:at + rec.nbytes] = good
    image.data[out:out + 36] = 0
    sim.run([image.data])
    assert np.array_equal(image.data[out:out + 36], want)


def test_data_address_is_numpys_for_every_array():
    """runtime.jit.data_address, how a schedule binds its inputs on every
    run: numpy's address for views, read-only and empty arrays, and for a
    dtype Numba has no type for (asked numpy's way)."""
    base = np.arange(64, dtype=np.float32).reshape(4, 16)
    readonly = base[1:].copy()
    readonly.flags.writeable = False
    for array in (base, base[2:], base[:, 3:], readonly, np.zeros(0, np.int8), np.array(["a", "b"]),
                  np.empty(3, object)):
        assert data_address(array) == array.ctypes.data
