"""The kernel program: what the CPU executor runs.

A Program is data only: a table of named slots, the constants bound to some
of them, and a list of steps, each naming a registered kernel, the slots it
reads and writes, and plain-data attributes (numbers, strings, tuples, numpy
arrays, and sub-Programs for control flow). Nothing in it is executable
Python, so it can be stored in a compiled binary and loaded on a device host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

NO_SLOT = -1
"""Slot index of an omitted optional input."""


@dataclass(frozen=True)
class Step:
    """One kernel call: ``outputs = kernel(inputs, attrs)``; ``name`` is the
    node it came from (provenance for errors and debugging)."""

    kernel: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    attrs: Mapping[str, Any]
    name: str


@dataclass
class Program:
    """A kernel program. ``slots[i]`` names slot i; graph inputs, constants and
    every step output each own one slot. ``types[i]`` is slot i's (shape,
    dtype name), with None for data-dependent dims."""

    slots: list[str]
    inputs: list[int]
    outputs: list[int]
    steps: list[Step]
    constants: dict[int, np.ndarray] = field(default_factory=dict)
    types: list[tuple[tuple[int | None, ...], str]] = field(default_factory=list)
    name: str = "program"

    def slot(self, name: str) -> int:
        """The slot index of a named value."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"program {self.name!r} has no value named {name!r}") from None

    @property
    def _index(self) -> dict[str, int]:
        index = self.__dict__.get("_slot_index")
        if index is None or len(index) != len(self.slots):
            index = {n: i for i, n in enumerate(self.slots)}
            self.__dict__["_slot_index"] = index
        return index

    @property
    def input_names(self) -> list[str]:
        return [self.slots[i] for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [self.slots[i] for i in self.outputs]

    def last_uses(self, keep: set[int] = frozenset()) -> list[list[int]]:
        """For each step, the slots it reads (or writes) for the last time:
        they can be freed after it. Outputs, constants and ``keep`` stay."""
        keep = set(keep) | set(self.outputs) | set(self.constants)
        last: dict[int, int] = {}
        for index, step in enumerate(self.steps):
            for slot in (*step.inputs, *step.outputs):
                if slot != NO_SLOT:
                    last[slot] = index
        frees: list[list[int]] = [[] for _ in self.steps]
        for slot, index in last.items():
            if slot not in keep:
                frees[index].append(slot)
        return frees

    def frozen(self) -> "Program":
        """This program with every constant array read-only and owning its
        memory (a copy where it was not), as a compiled binary's are: the
        executor keeps forms derived from frozen weights (packed, planned)
        without checking them again, and its schedule lowers only steps
        whose weights are frozen (runtime.schedule). For a caller done
        changing the constants (the CLI's float CPU path)."""
        constants = {}
        for slot, array in self.constants.items():
            if isinstance(array, np.ndarray) and array.dtype != object:
                array = np.array(array, order="C")
                array.flags.writeable = False
            constants[slot] = array
        return Program(self.slots, self.inputs, self.outputs, self.steps, constants, self.types, self.name)
