"""bench/perf_map.py: perf's map of the process's JIT code names Numba's
functions and the GEMM's LLVM IR kernels at the addresses they run from."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from runtime import gemm
from runtime.gemm.family import host_isa, narrow_isa
from runtime.gemm.microkernel import COMPILED, kernel_addresses

_spec = importlib.util.spec_from_file_location("perf_map", Path(__file__).parents[2] / "bench" / "perf_map.py")
perf_map = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(perf_map)


@njit
def _plus_one(a):
    return a[0] + 1


def _entry(dispatcher) -> tuple[int, str]:
    result = dispatcher.overloads[dispatcher.signatures[0]]
    name = result.fndesc.llvm_func_name
    return result.library.get_pointer_to_function(name), name


def _read(path: Path) -> list[tuple[int, int, str]]:
    lines = []
    for line in path.read_text().splitlines():
        start, size, name = line.split(" ", 2)
        lines.append((int(start, 16), int(size, 16), name))
    return lines


def test_a_numba_function_is_named_where_it_runs(tmp_path):
    _plus_one(np.zeros(2))
    address, name = _entry(_plus_one)
    lines = _read(Path(perf_map.write_perf_map(str(tmp_path / "perf-1.map"))))
    assert [s for s, _, n in lines if name in n.split("|")] == [address]  # (with its aliases', if any)
    starts = [s for s, _, _ in lines]
    assert starts == sorted(starts) and all(0 < size <= perf_map.MAX_SIZE for _, size, _ in lines)
    for (start, size, _), (after, _, _) in zip(lines, lines[1:]):
        assert start + size <= after  # no symbol's range runs into the next one's


@pytest.mark.skipif(not gemm.available(), reason="no GEMM kernels for this CPU (runtime.gemm.available)")
def test_the_gemm_kernels_are_named_too(tmp_path):
    """Each by its family's module too: the families' kernels share symbol
    names (the host's and its narrow family's, both compiled in a suite)."""
    if narrow_isa(host_isa()) is not None:
        kernel_addresses(narrow_isa(host_isa()), "f32")
    addresses = kernel_addresses(host_isa(), "f32")
    named = {start: name for start, _, name in _read(Path(perf_map.write_perf_map(str(tmp_path / "perf-2.map"))))}
    kernels = {int(a) for a in addresses if a}
    assert kernels and kernels <= set(named)
    assert all(COMPILED[a] in named[a].split("|") and COMPILED[a].startswith(f"gemm-{host_isa().name}-f32:tessera_f32_")
               for a in kernels)
