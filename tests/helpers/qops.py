"""Helpers of the Q-op kernel tests: one-node graphs, random integer
operands and parameters, and the check that the CPU kernels and the integer
reference (tests/oracle.py) agree bit for bit."""
from __future__ import annotations

import math

import numpy as np

from ir import GraphBuilder
from ir.graph import Graph
from runtime import qscheme
from tests.helpers.graphs import run_graph
from tests.oracle import run_reference

INT8, INT16 = qscheme.INT8, qscheme.INT16
RANGE = qscheme.ACTIVATION_RANGE


def one_node(op: str, inputs, consts=(), **attrs) -> tuple[Graph, dict]:
    """A graph of one ``op`` node; inputs listed in ``consts`` are constants."""
    b = GraphBuilder(op)
    values = [None if x is None else b.const(x) if i in consts else b.input(f"in{i}", x.shape, x.dtype)
              for i, x in enumerate(inputs)]
    graph = b.build(b.op(op, *values, **attrs))
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts}
    return graph, feeds


def assert_kernel_is_reference(graph: Graph, feeds: dict) -> dict:
    """The executor (kernels, with output type checks) and the integer
    reference agree in dtype, shape and every bit."""
    got, want = run_graph(graph, feeds), run_reference(graph, feeds)
    assert list(got) == list(want)
    for name in got:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    return got


def ints(rng, shape, dtype, low=None, high=None) -> np.ndarray:
    lo, hi = RANGE[np.dtype(dtype)] if low is None else (low, high)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)


def multipliers(rng, count: int, low: float = 1e-7, high: float = 1.0) -> tuple[list[int], list[int]]:
    """quantize_multiplier of log-uniform random scales."""
    m, n = qscheme.quantize_multipliers(np.exp(rng.uniform(np.log(low), np.log(high), count)))
    return m.tolist(), n.tolist()


def output_attrs(rng, dtype) -> dict:
    """out_dtype, out_zero and a clamp: none, a Relu-like floor or random bounds."""
    low, high = RANGE[dtype]
    zero = int(rng.integers(low // 2, high // 2))
    kind = rng.integers(3)
    lo, hi = (low, high) if kind == 0 else (zero, high) if kind == 1 else sorted(
        int(v) for v in rng.integers(low, high, 2, endpoint=True))
    return dict(out_dtype=dtype.name, out_zero=zero, lo=lo, hi=hi)


def table_attrs(rng, dtype, wide: bool = False) -> dict:
    """A random table of ``dtype`` entries and a clamp giving its input
    codes: int8 codes into 256 entries, or (``wide``) int16 codes into 513
    entries, interpolated."""
    low, high = RANGE[dtype]
    entries, index = (513, INT16) if wide else (256, INT8)
    return dict(table=rng.integers(low, high, entries, endpoint=True).tolist(), out_dtype=dtype.name,
                **{k: v for k, v in output_attrs(rng, index).items() if k != "out_dtype"})


def py_table(table, code: int) -> int:
    """A table's value at ``code`` in plain Python, from docs/isa.md's words
    (not runtime.qscheme): entry code + 128 of 256; of 513, the entries
    around (code + 32768) / 128, interpolated and rounded half up."""
    if len(table) == 256:
        return table[code + 128]
    i, f = divmod(code + 32768, 128)
    a, b = table[i], table[i + 1]
    return a + math.floor(((b - a) * f + 64) / 128)


def py_store(v: int, attrs) -> int:
    """clamp(v + out_zero, lo, hi), then the table when there is one."""
    code = min(max(v + attrs["out_zero"], attrs["lo"]), attrs["hi"])
    return py_table(attrs["table"], code) if len(attrs.get("table", ())) else code
