"""What the API misuse tests share (tests/runtime/test_api_misuse.py and
test_api_interrupts.py): the binaries (built once a session), every call's
expected results, a loaded FWDNXT, and threads with a timeout."""
from __future__ import annotations

import ctypes
import threading
import warnings

import numpy as np
import onnx
import pytest

from compiler.zoo.builder import OnnxBuilder
from runtime import FWDNXT
from tests.helpers.fwdnxt import OUTPUTS, compile_tiny, images

TIMEOUT = 30
"""Seconds any thread of a test may take before the test calls it a hang."""
DISTINCT = 16
OTHER_SHAPE = (1, 2, 4, 4)
OTHER_OUTPUTS = 48


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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


def on_threads(target, count: int, *args) -> list[BaseException]:
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


def interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in ``thread`` at its next bytecode (as Ctrl-C
    does in the main thread)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))
