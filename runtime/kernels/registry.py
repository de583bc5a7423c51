"""The kernel table: op name -> kernel function.

A kernel is ``fn(inputs, attrs) -> tuple of arrays``: ``inputs`` is a list of
numpy arrays (None for an omitted optional input), ``attrs`` the op's
attributes exactly as the IR holds them. Heavy kernels call Numba-jitted
loops; ops that are one numpy primitive (a view, a ufunc, a copy) use it.

An op may also have a preparer (:func:`prepares`), as onnxruntime's kernels
pre-pack their constant weights when a session is made: given one step's
attributes and constant inputs, it returns a kernel specialised to them (the
checks that depend only on those, and the planning, done once), or None.
A prepared kernel computes what the generic one does on the same inputs, and
hands any call it was not prepared for (other arrays, shapes or dtypes) to
the generic kernel, so errors read the same.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from runtime.errors import KernelError

Kernel = Callable[[Sequence[np.ndarray | None], Mapping[str, Any]], tuple]

_KERNELS: dict[str, Kernel] = {}
Preparer = Callable[[Kernel, Mapping[str, Any], Sequence[np.ndarray | None]], Kernel | None]
_PREPARERS: dict[str, Preparer] = {}
PairFuser = Callable[[Kernel, Kernel, int, Mapping[str, Any]], Kernel | None]
_FUSERS: dict[tuple[str, str], PairFuser] = {}


def _registrar(table: dict, what: str, keys: tuple) -> Callable:
    """A decorator entering the function in ``table`` under each key (a key
    taken already is an error)."""
    def register(fn):
        for key in keys:
            if key in table:
                raise KernelError(f"{what} {key!r} is registered twice")
            table[key] = fn
        return fn
    return register


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    """Register a function as the kernel of one or more ops."""
    return _registrar(_KERNELS, "kernel", names)


def prepares(*names: str) -> Callable[[Preparer], Preparer]:
    """Register ``prepare(generic, attrs, constants)`` for one or more ops;
    ``constants`` has one entry per input: its constant array, or None."""
    return _registrar(_PREPARERS, "preparer", names)


def prepared_kernel(name: str, attrs: Mapping[str, Any], constants: Sequence[np.ndarray | None]) -> Kernel:
    """The kernel for one step: its op's kernel prepared for ``attrs`` and
    the ``constants`` (one per input, None where it is not constant), or
    the generic kernel where there is no preparer, no constant, or the
    preparer declines or finds the step invalid (the generic kernel then
    reports the problem when the step runs, naming the node)."""
    generic = get_kernel(name)
    prepare = _PREPARERS.get(name)
    if prepare is None or all(c is None for c in constants):
        return generic
    try:
        prepared = prepare(generic, attrs, constants)
    except (KernelError, KeyError, TypeError, ValueError):  # attributes from an untrusted binary
        return generic
    return generic if prepared is None else prepared


def fuses(*pairs: tuple[str, str]) -> Callable[[PairFuser], PairFuser]:
    """Register ``fuse(first, second, first_inputs, attrs)`` for pairs of
    ops: given the (prepared) kernels of two consecutive steps, the second
    reading the first's only output, the first step's input count and the
    attributes the fused step is called with (``{"first": ..., "second":
    ...}``, the steps' own), a kernel doing both (inputs: the first step's,
    then the second's but that output), or None."""
    return _registrar(_FUSERS, "fuser", pairs)


def fused_kernel(first_op: str, second_op: str, first: Kernel, second: Kernel, first_inputs: int,
                 attrs: Mapping[str, Any]) -> Kernel | None:
    """The kernel running two consecutive steps at once (called with
    ``attrs``), or None."""
    _load()
    fuse = _FUSERS.get((first_op, second_op))
    return None if fuse is None else fuse(first, second, first_inputs, attrs)


def get_kernel(name: str) -> Kernel:
    _load()
    try:
        return _KERNELS[name]
    except KeyError:
        raise KernelError(f"no CPU kernel for op {name!r}") from None


def has_kernel(name: str) -> bool:
    _load()
    return name in _KERNELS


def kernel_names() -> list[str]:
    _load()
    return sorted(_KERNELS)


def run_kernel(name: str, inputs: Sequence[np.ndarray | None], attrs: Mapping[str, Any]) -> tuple:
    """Run one kernel directly (constant folding, tests)."""
    return tuple(get_kernel(name)(list(inputs), attrs))


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        import runtime.kernels.families  # noqa: F401
        _loaded = True
