"""FWDNXT's asynchronous calls (api-notes 1.6): PutInput copies an input and
the simulated device runs it on a worker thread; GetResult gives results
back in input order with their userobjs; two input buffers; blocking and
non-blocking modes; the end marker; Free while work is in flight; errors
of the device run come back to GetResult. All on the real engine."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime import FWDNXT
from runtime.errors import ExecutionError
from runtime.fwdnxt import FWDNXTError
from tests.helpers.fwdnxt import OUTPUTS, compile_tiny, images
from tests.helpers.threads import in_thread

DISTINCT = 16


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    path, count = compile_tiny(tmp_path_factory.mktemp("async"))
    assert count == OUTPUTS
    return path


@pytest.fixture(scope="module")
def expected(binary):
    """DISTINCT inputs and their Run results, each different from the others."""
    ie = FWDNXT()
    ie.Init(str(binary), "")
    xs, results = images(DISTINCT), []
    for x in xs:
        results.append(np.zeros(OUTPUTS, np.float32))
        ie.Run(x, results[-1])
    ie.Free()
    assert len({r.tobytes() for r in results}) == DISTINCT
    return xs, results


@pytest.fixture
def ie(binary):
    ie = FWDNXT()
    ie.Init(str(binary), "")
    yield ie
    ie.Free()


def _blocked(thread: threading.Thread) -> bool:
    """Whether ``thread`` is still waiting a moment later."""
    thread.join(0.3)
    return thread.is_alive()


def test_results_come_back_in_input_order_with_their_userobjs(ie, expected):
    xs, want = expected
    result = np.zeros(OUTPUTS, np.float32)
    tags = [{"name": f"image{i}"} for i in range(5)]
    got = []
    for i, tag in enumerate(tags):
        assert ie.PutInput(xs[i], tag) is True
        if i >= 1:
            got.append((ie.GetResult(result), result.copy()))
    got.append((ie.GetResult(result), result.copy()))
    assert [t for t, _ in got] == tags and all(t is tag for (t, _), tag in zip(got, tags))
    for i, (_, values) in enumerate(got):
        np.testing.assert_array_equal(values, want[i])
    assert ie.GetInfo("hwtime") > 0 and ie.GetInfo("busy_comp") == 0


def test_put_input_copies_the_image(ie, expected):
    xs, want = expected
    x = xs[3].copy()
    ie.PutInput(x, 3)
    x[...] = 7.0  # the caller reuses its array at once
    result = np.zeros(OUTPUTS, np.float32)
    assert ie.GetResult(result) == 3
    np.testing.assert_array_equal(result, want[3])


def test_non_blocking_mode_returns_false_and_none_where_fwdnxt_returned_minus_99(ie, expected):
    xs, want = expected
    ie.SetFlag("blockingmode", "0")
    result = np.zeros(OUTPUTS, np.float32)
    assert ie.GetResult(result) is None  # nothing put
    assert ie.PutInput(xs[0], "a") and ie.PutInput(xs[1], "b")
    assert ie.PutInput(xs[2], "c") is False  # both buffers held
    polled = []
    while len(polled) < 2:
        tag = ie.GetResult(result)
        if tag is None:
            time.sleep(0.001)
            continue
        polled.append((tag, result.copy()))
    assert [t for t, _ in polled] == ["a", "b"]
    np.testing.assert_array_equal(polled[1][1], want[1])
    assert ie.PutInput(xs[2], "c") is True


def test_a_third_put_blocks_until_a_result_is_taken(ie, expected):
    xs, want = expected
    assert ie.PutInput(xs[0], 0) and ie.PutInput(xs[1], 1)
    third, box = in_thread(ie.PutInput, xs[2], 2)
    assert _blocked(third)
    result = np.zeros(OUTPUTS, np.float32)
    assert ie.GetResult(result) == 0
    third.join()
    assert box == {"value": True}
    assert ie.GetResult(result) == 1 and ie.GetResult(result) == 2
    np.testing.assert_array_equal(result, want[2])


def test_the_end_marker_makes_a_waiting_get_result_return_none(ie, expected):
    xs, _ = expected
    result = np.zeros(OUTPUTS, np.float32)
    getter, box = in_thread(ie.GetResult, result)
    assert _blocked(getter)  # nothing put yet: it waits
    ie.PutInput(xs[0], "first")
    getter.join()
    assert box == {"value": "first"}
    getter, box = in_thread(ie.GetResult, result)
    assert _blocked(getter)
    assert ie.PutInput(None, None) is True
    getter.join()
    assert box == {"value": None}
    with pytest.raises(FWDNXTError, match="end marker, which takes no userobj"):
        ie.PutInput(None, "tag")


def test_a_real_input_with_userobj_none_is_told_from_the_end_marker(ie, expected):
    """GetResult gives back the userobj (None too) and None at the end
    marker, as FWDNXT did; ``at_end`` and ``got_result`` say which None it
    was, per thread, and a loop on ``at_end`` gets every input put with None."""
    xs, want = expected
    result = np.zeros(OUTPUTS, np.float32)
    assert not ie.at_end and not ie.got_result  # no GetResult yet
    assert ie.PutInput(xs[0], None) and ie.PutInput(xs[1], "b")
    assert ie.GetResult(result) is None and ie.got_result and not ie.at_end
    np.testing.assert_array_equal(result, want[0])
    assert ie.PutInput(None, None)
    assert ie.GetResult(result) == "b" and ie.got_result and not ie.at_end
    getter, box = in_thread(lambda: (ie.GetResult(result), ie.at_end, ie.got_result))
    getter.join()
    assert box == {"value": (None, True, False)}
    assert ie.got_result and not ie.at_end  # this thread's last GetResult still was a result

    def put_all():
        for x in xs[:5]:
            ie.PutInput(x, None)
        ie.PutInput(None, None)

    putter, _ = in_thread(put_all)
    got = []
    while True:
        ie.GetResult(result)
        if ie.at_end:
            break
        got.append(result.copy())
    putter.join()
    assert len(got) == 5 and all(np.array_equal(g, w) for g, w in zip(got, want))
    ie.SetFlag("blockingmode", "0")
    assert ie.GetResult(result) is None and not ie.at_end and not ie.got_result  # not ready


def test_run_while_inputs_are_pending_neither_takes_a_buffer_nor_a_result(ie, expected):
    xs, want = expected
    assert ie.PutInput(xs[0], "a") and ie.PutInput(xs[1], "b")
    result = np.zeros(OUTPUTS, np.float32)
    ie.Run(xs[5], result)
    np.testing.assert_array_equal(result, want[5])
    assert ie.GetResult(result) == "a"
    np.testing.assert_array_equal(result, want[0])
    assert ie.GetResult(result) == "b"


def test_free_wakes_every_waiting_call_and_cancels_what_has_not_run(binary, expected):
    xs, _ = expected
    getting = FWDNXT()
    getting.Init(str(binary), "")
    getter, got = in_thread(getting.GetResult, np.zeros(OUTPUTS, np.float32))
    assert _blocked(getter)
    getting.Free()
    getter.join()
    assert got == {"value": None}

    putting = FWDNXT()
    putting.Init(str(binary), "")
    queue = putting._session.queue
    putting.PutInput(xs[0], 0)
    putting.PutInput(xs[1], 1)
    putter, put = in_thread(putting.PutInput, xs[2], 2)
    assert _blocked(putter)
    putting.Free()
    putter.join()
    assert isinstance(put["error"], FWDNXTError) and "freed while this input waited" in str(put["error"])
    assert queue.busy == 0 and not queue._thread.is_alive()
    with pytest.raises(FWDNXTError, match="GetResult called after Free"):
        putting.GetResult(np.zeros(OUTPUTS, np.float32))


def test_an_error_of_a_device_run_comes_back_to_its_get_result(ie, expected, monkeypatch):
    xs, want = expected
    engine = ie._session.engine
    run_batch = engine.run_batch

    def failing(images, *args, **kwargs):
        if images[0]["x"].flat[0] == 99.0:
            raise ExecutionError("the simulated DMA failed", node="conv_3")
        return run_batch(images, *args, **kwargs)

    monkeypatch.setattr(engine, "run_batch", failing)
    bad = xs[0].copy()
    bad.flat[0] = 99.0
    ie.PutInput(bad, "bad")
    ie.PutInput(xs[1], "good")
    result = np.zeros(OUTPUTS, np.float32)
    with pytest.raises(FWDNXTError, match=r"GetResult: the run of the input put with userobj 'bad' failed: "
                                          r"node 'conv_3': the simulated DMA failed"):
        ie.GetResult(result)
    assert ie.GetResult(result) == "good"
    np.testing.assert_array_equal(result, want[1])
    with pytest.raises(FWDNXTError, match="Run: the run failed: node 'conv_3'"):
        ie.Run(bad, result)


def test_wrong_inputs_and_buffers_name_the_argument_and_lose_nothing(ie, expected):
    xs, want = expected
    with pytest.raises(FWDNXTError, match=r"PutInput: input 'x' must have shape \[1, 2, 2, 2\], got \[2, 2, 2, 2\]"):
        ie.PutInput(np.concatenate([xs[0], xs[1]]), "two")
    with pytest.raises(FWDNXTError, match="PutInput: input 'x' must be float32, got float64"):
        ie.PutInput(xs[0].astype(np.float64), "f64")
    ie.PutInput(xs[4], "kept")
    with pytest.raises(FWDNXTError, match="GetResult: the result buffer for .* has 4 values; the output has 8"):
        ie.GetResult(np.zeros(4, np.float32))
    result = np.zeros(OUTPUTS, np.float32)
    assert ie.GetResult(result) == "kept"  # the wrong buffer took nothing
    np.testing.assert_array_equal(result, want[4])
    with pytest.raises(FWDNXTError, match="PutInput called before Init"):
        FWDNXT().PutInput(xs[0], 0)


def test_twenty_thousand_requests_through_a_putter_and_a_getter_thread(ie, expected):
    """The documented fast pattern under load: every userobj comes back
    exactly once, in order, with its own image's result."""
    xs, want = expected
    count = 20_000
    seen, wrong = [], []

    def getter():
        result = np.zeros(OUTPUTS, np.float32)
        while (tag := ie.GetResult(result)) is not None:
            seen.append(tag)
            if not np.array_equal(result, want[tag[1] % DISTINCT]):
                wrong.append(tag)

    thread = threading.Thread(target=getter)
    thread.start()
    for i in range(count):
        ie.PutInput(xs[i % DISTINCT], ("request", i))
    ie.PutInput(None, None)
    thread.join()
    assert len(seen) == count and len(set(seen)) == count
    assert seen == [("request", i) for i in range(count)] and wrong == []
