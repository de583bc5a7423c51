"""An array whose address a kernel reads must outlive the read. Numba
frees a local array at the ``del`` it places after the array's last use;
where that use is taking its address (``.ctypes.data``) and the address
goes on to a kernel called after, the kernel reads freed memory (what the
allocator put there since: a depthwise plane's flat masks, the simulator's
table of codes, until 2026-12). Arrays made only to hand their address on
are passed as arguments instead (the caller holds them while the callee
runs). This reads every jitted function of runtime/ as Numba lowers it,
with its dels."""
from __future__ import annotations

import importlib
import pkgutil

import numpy as np
from numba.core import ir
from numba.core.compiler import run_frontend
from numba.core.postproc import PostProcessor
from numba.core.registry import CPUDispatcher

import runtime


def _jitted() -> list:
    found = {}
    for info in pkgutil.walk_packages(runtime.__path__, "runtime."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                found[value.py_func] = None
    return list(found)


def freed_before_use(fn) -> list[str]:
    """The local arrays of ``fn`` whose address is taken and which Numba
    deletes in the same block right after, with code still to run."""
    fir = run_frontend(fn)
    PostProcessor(fir).run(emit_dels=True)
    arguments = set(fir.arg_names)
    made = {stmt.target.name: stmt.value for block in fir.blocks.values() for stmt in block.body
            if isinstance(stmt, ir.Assign)}
    found = []
    for block in fir.blocks.values():
        addressed = {}
        for i, stmt in enumerate(block.body):
            if (isinstance(stmt, ir.Assign) and isinstance(stmt.value, ir.Expr) and stmt.value.op == "getattr"
                    and stmt.value.attr == "ctypes" and stmt.value.value.name.split(".")[0] not in arguments
                    and not _operand_view(made, stmt.value.value.name)):
                addressed[stmt.value.value.name] = stmt.loc.line
            elif isinstance(stmt, ir.Del) and stmt.value in addressed:
                rest = block.body[i + 1:]
                if not (isinstance(rest[-1], ir.Return) and all(isinstance(s, (ir.Del, ir.Assign, ir.Return))
                                                                and not _calls(s) for s in rest)):
                    found.append(f"{fn.__module__}.{fn.__qualname__}: {stmt.value} (line {addressed[stmt.value]})")
    return found


def _operand_view(made: dict, name: str) -> bool:
    """Whether ``name`` is a temporary ``flat_view`` of a value (runtime.jit):
    its memory is the operand's, which outlives the call."""
    value = made.get(name)
    if not name.startswith("$") or not (isinstance(value, ir.Expr) and value.op == "call"):
        return False
    function = made.get(value.func.name)
    return isinstance(function, (ir.Global, ir.FreeVar)) and getattr(function, "name", "") == "flat_view"


def _calls(stmt) -> bool:
    return isinstance(stmt, ir.Assign) and isinstance(stmt.value, ir.Expr) and stmt.value.op == "call"


def test_no_kernel_reads_an_array_numba_has_freed():
    functions = _jitted()
    assert len(functions) > 300  # every kernel module imported
    assert [line for fn in functions for line in freed_before_use(fn)] == []


def test_the_check_sees_an_array_freed_before_the_call_that_reads_it():
    def freed(n, table, out):  # the shape of vector._eltwise_8 before the fix
        x = np.empty(n, np.int8)
        address = x.ctypes.data
        table(n, address, out)

    def held(n, table, out):
        x = np.empty(n, np.int8)
        table(n, x, out)

    def copied(n, table, out):  # a temporary copy's address: freed at once
        table(n, np.ascontiguousarray(out[::2]).ctypes.data, out)

    assert len(freed_before_use(freed)) == 1 and freed_before_use(held) == []
    assert len(freed_before_use(copied)) == 1

