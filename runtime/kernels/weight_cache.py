"""Forms derived from constant weight arrays (Winograd-transformed, packed
for the GEMM), computed once per weight array and kept while it lives.

A Program's constants are the same array objects on every run, so a conv
kernel can find the derived form of its weights by the array itself instead
of recomputing it per call. An entry serves only the very same live array
object (checked through a weak reference, so a new array can never get a
dead one's entry) with the same layout and, unless the array is frozen, a
sample of its values: a writeable weight array rewritten in place is caught
unless every sampled value stays the same. A frozen array (read-only, as is
every array that owns its memory behind it: a compiled binary's constants)
cannot be rewritten without first being made writeable again, which changes
its fingerprint for any call made meanwhile; it is not sampled, because
sampling reads 64 cache lines spread over the whole array, which cost 25-30
us per layer and run once the kernels before it had evicted them
(MobileNetV2's float program: 35 layers). So freeze only what stays
constant: an array made writeable, rewritten and frozen again with no call
in between keeps its old entry.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Hashable

import numpy as np


def frozen(w: np.ndarray) -> bool:
    """Whether no one can write ``w`` without first setting a writeable
    flag again: ``w`` and every array its memory comes from are read-only,
    and the memory is numpy's own or an immutable ``bytes``."""
    while isinstance(w, np.ndarray):
        if w.flags.writeable:
            return False
        w = w.base
    return w is None or isinstance(w, bytes)


def freeze_guards(arrays) -> tuple[np.ndarray, ...]:
    """The arrays whose read-only flags keep each of ``arrays`` (frozen now)
    frozen: each one and every array its memory comes from, once each. An
    array's base never changes, so while none of these is writeable every
    one of ``arrays`` is still frozen, and a caller that checks often (a
    schedule, before each run) reads these flags alone rather than walking
    each chain again with :func:`frozen` (MobileNetV2's 104 constants: 18
    -> 5 us in a warm loop; the chains' walk cost a 0.9 ms run at 96 x 96
    26 us in the running model, ResNet-10 at 32 x 32's 24 constants 5 us
    of 0.2 ms)."""
    guards: dict[int, np.ndarray] = {}
    for w in arrays:
        while isinstance(w, np.ndarray):
            guards.setdefault(id(w), w)
            w = w.base
    return tuple(guards.values())


class WeightCache:
    """``derive(w, key)`` per (weight array, key), kept while the array
    lives; ``derive`` may return None (cached too)."""

    SAMPLES = 64

    def __init__(self, derive: Callable[[np.ndarray, Hashable], Any]):
        self._derive = derive
        self._entries: dict[int, tuple[weakref.ref, tuple, Any]] = {}
        self._lock = threading.Lock()

    def _fingerprint(self, w: np.ndarray, key: Hashable) -> tuple:
        """What must not change for an entry to serve: the layout and, for
        an array that is not frozen, the sampled values. (Not the buffer's
        address: an array object keeps its buffer unless ``resize`` gives it
        a new shape, and ``w.ctypes.data`` alone cost 2 us, more than the
        rest, on every layer and run.)"""
        if frozen(w):
            return key, w.shape, w.strides, w.dtype
        flat = w.reshape(-1)
        step = max(1, flat.size // self.SAMPLES)
        return key, w.shape, w.strides, w.dtype, flat[::step].tobytes(), flat[-1:].tobytes()

    def get(self, w: np.ndarray, key: Hashable = None) -> Any:
        """The derived form of ``w`` for ``key``, computed on a miss."""
        fingerprint = self._fingerprint(w, key)
        with self._lock:
            entry = self._entries.get(id(w))
        if entry is not None and entry[0]() is w and entry[1] == fingerprint:
            return entry[2]
        value = self._derive(w, key)
        ident = id(w)
        ref = weakref.ref(w, lambda dead: self._forget(ident, dead))
        with self._lock:
            self._entries[ident] = (ref, fingerprint, value)
        return value

    def _forget(self, ident: int, dead: weakref.ref) -> None:
        with self._lock:
            entry = self._entries.get(ident)
            if entry is not None and entry[0] is dead:
                del self._entries[ident]

    def __len__(self) -> int:
        return len(self._entries)
