"""Calls through an address instead of linking the callee's code
(runtime/unlinked.py, issue 52): the same results, errors and return values
as a direct call; the caller's compiled code does not hold the callee's; a
caller loaded from the kernel cache in a new process finds its callee."""
import ctypes
import json
import subprocess
import sys

import numba
import numpy as np
import pytest

from runtime import jit, unlinked
from runtime.unlinked import call_unlinked
from tests.helpers.jit_probe import COUNT_COMPILES, probe_env


def _jit(fn):
    return unlinked.watch(numba.njit(nogil=True)(fn))  # no cache: nothing written next to the tests


@_jit
def scaled(start, stop, x, y, factor):
    if stop > x.size:
        raise ValueError("past the end of x")
    for i in range(start, stop):
        y[i] = x[i] * factor
    return stop - start


@_jit
def through_address(spans, *args):
    done = 0
    for k in range(spans.shape[0]):
        done += call_unlinked(scaled, (spans[k, 0], spans[k, 1]) + args)
    return done


@_jit
def direct(spans, *args):
    done = 0
    for k in range(spans.shape[0]):
        done += scaled(spans[k, 0], spans[k, 1], *args)
    return done


@_jit
def labelled(start, stop, y, label):
    for i in range(start, stop):
        y[i] = len(label)


@_jit
def with_a_string(y):
    call_unlinked(labelled, (np.int64(0), y.size, y, "four"))


@numba.njit(nogil=True)
def unwatched(start, stop, y):
    for i in range(start, stop):
        y[i] = 7


@_jit
def calling_the_unwatched(y):
    call_unlinked(unwatched, (np.int64(0), y.size, y))


@_jit
def linking_a_caller(spans, x, y):
    return through_address(spans, x, y, np.float32(3.0)) + 100


@_jit
def linking_it_again(spans, x, y):
    return through_address(spans, x, y, np.float32(3.0)) + 1000


@_jit
def a_diamond(spans, x, y):
    return linking_a_caller(spans, x, y) + linking_it_again(spans, x, y)


SPANS = np.array([[0, 3], [3, 7], [7, 10]], np.int64)


def _libraries(dispatcher) -> list:
    (cres,) = dispatcher.overloads.values()
    return cres.library._linking_libraries


def test_an_unlinked_call_returns_and_raises_as_a_direct_call():
    x = np.arange(10, dtype=np.float32)
    y_unlinked, y_direct = np.zeros(10, np.float32), np.zeros(10, np.float32)
    assert through_address(SPANS, x, y_unlinked, np.float32(2.5)) == direct(SPANS, x, y_direct, np.float32(2.5)) == 10
    np.testing.assert_array_equal(y_unlinked, x * np.float32(2.5))
    np.testing.assert_array_equal(y_unlinked, y_direct)
    with pytest.raises(ValueError, match="past the end of x"):
        through_address(np.array([[0, 11]], np.int64), x, y_unlinked, np.float32(1.0))


def test_the_callers_code_does_not_hold_the_callees():
    x, y = np.arange(10, dtype=np.float32), np.zeros(10, np.float32)
    through_address(SPANS, x, y, np.float32(1.0))
    direct(SPANS, x, y, np.float32(1.0))
    (callee,) = scaled.overloads.values()
    assert callee.library in _libraries(direct)  # a direct call links the callee's code in
    assert callee.library not in _libraries(through_address)
    (cres,) = through_address.overloads.values()
    slots = unlinked._slots(cres.library)
    assert len(slots) == 1 and unlinked._address(cres.library, slots[0])
    filled = ctypes.c_int64.from_address(unlinked._address(cres.library, slots[0])).value
    assert filled == callee.library.get_pointer_to_function(callee.fndesc.llvm_func_name) != 0


def test_a_callee_whose_types_or_name_cannot_be_recorded_is_called_linked():
    y = np.zeros(3, np.int64)
    with_a_string(y)
    np.testing.assert_array_equal(y, [4, 4, 4])
    (callee,) = labelled.overloads.values()
    assert callee.library in _libraries(with_a_string)
    calling_the_unwatched(y)  # a slot can only name a function runtime.unlinked.watch was given
    np.testing.assert_array_equal(y, [7, 7, 7])
    (callee,) = unwatched.overloads.values()
    assert callee.library in _libraries(calling_the_unwatched)


def test_a_caller_linked_into_another_still_finds_its_callee():
    x, y = np.arange(10, dtype=np.float32), np.zeros(10, np.float32)
    assert linking_a_caller(SPANS, x, y) == 110
    np.testing.assert_array_equal(y, x * np.float32(3.0))


def test_a_caller_linked_in_twice_by_two_paths_keeps_one_slot():
    x, y = np.arange(10, dtype=np.float32), np.zeros(10, np.float32)
    assert a_diamond(SPANS, x, y) == 110 + 1010  # two copies of the slot's symbol would not link
    np.testing.assert_array_equal(y, x * np.float32(3.0))


def _through_a_c_entry(p, n):
    return call_unlinked(scaled, (np.int64(0), n, numba.carray(p, n), numba.carray(p, n), np.float32(2.0)))


def test_a_c_entry_point_finds_its_callee():
    entry = jit.cfunc(numba.int64(numba.types.CPointer(numba.float32), numba.int64), _through_a_c_entry)
    x = np.arange(4, dtype=np.float32)
    assert entry.ctypes(x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 4) == 4
    np.testing.assert_array_equal(x, [0, 2, 4, 6])


MODULE = '''
import numpy as np
from runtime.jit import jit
from runtime.unlinked import call_unlinked

@jit
def body(start, stop, y):
    for i in range(start, stop):
        y[i] = i * i
    return stop - start

@jit
def caller(y):
    return call_unlinked(body, (np.int64(0), y.size, y)) + call_unlinked(body, (np.int64(1), np.int64(2), y))
'''

PROBE = COUNT_COMPILES + """
import probed
y = np.zeros(5, np.int64)
print(json.dumps({"done": int(probed.caller(y)), "y": y.tolist(), "compiled": compiled}))
"""


def test_a_caller_loaded_from_the_cache_in_a_new_process_finds_its_callee(tmp_path):
    (tmp_path / "probed.py").write_text(MODULE)
    env = probe_env(tmp_path / "cache")
    env["PYTHONPATH"] += f":{tmp_path}"
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert sorted(runs[0]["compiled"]) == ["body", "caller"]
    assert runs[1] == {"done": 6, "y": [0, 1, 4, 9, 16], "compiled": []}
