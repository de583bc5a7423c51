"""What each instruction of a program reads and writes, by the validator's
own sizes (runtime/isa/validate.py): its checker's rules, recorded instead
of checked. For the simulator's groups (runtime/sim/groups.py), which run
instructions that touch no common byte at once."""
from __future__ import annotations

import numpy as np

from runtime.hardware import HardwareConfig
from runtime.isa.spec import _OPS, COL_OPCODE, COLUMNS, Op
from runtime.isa.validate import _SPECIFIC, _USAGE, _check_dma, _Checker

DRAM = 3
"""The space number :func:`footprints` gives DRAM (after WGT, ACT, ACC)."""
_WRITTEN = ("out_addr", "acc_addr")
"""Fields of what an instruction writes: its output; the accumulators
(a CONV's ACC is written or read and written but for LAST: counted written)."""


class _Footprints(_Checker):
    """A checker that records the bytes each instruction reads and writes,
    as the rules above bound them (errors are not its business)."""

    def __init__(self, arr: np.ndarray, config: HardwareConfig):
        super().__init__(arr, config, config.dram_bytes)
        self.op: Op | None = None
        self.parts: list[tuple[np.ndarray, ...]] = []

    def _record(self, rows, space, first, end, write, used) -> None:
        mask = np.ones(rows.shape, bool) if used is None else np.asarray(used, bool)
        space = np.broadcast_to(np.asarray(space, np.int64), rows.shape)
        self.parts.append((rows[mask], space[mask], first[mask], end[mask],
                           np.broadcast_to(np.asarray(write), rows.shape)[mask]))

    def sram(self, rows, space, addr_name, addr, size, used=None) -> None:
        write = addr_name in _WRITTEN or (addr_name == "sram_addr" and self.op == Op.LOAD)
        self._record(rows, space, addr, addr + size, write, used)

    def dram(self, rows, op, addr, span) -> None:
        self._record(rows, DRAM, addr, addr + span, op == Op.STORE, None)


def footprints(arr: np.ndarray, config: HardwareConfig) -> tuple[np.ndarray, ...]:
    """What the instructions ``arr`` (a decoded program: rows of one card,
    valid) touch: arrays (row, space, first byte, end, written) with one
    entry per buffer an instruction reads or writes: WGT, ACT, ACC (the
    row's cluster's) by the same sizes as the rules above, DRAM (``DRAM``)
    for LOAD and STORE; a LOAD writes its SRAM box, a STORE its DRAM span,
    every instruction its ``out_addr`` and a CONV its ``acc_addr``."""
    c = _Footprints(arr, config)
    ops = arr[:, COL_OPCODE]
    for op_value in np.unique(ops):
        op = _OPS[int(op_value)]
        rows = np.flatnonzero(ops == op_value)
        col = {name: arr[rows, k] for name, k in COLUMNS[op].items()}
        c.op = op
        if op in (Op.LOAD, Op.STORE):
            _check_dma(c, op, rows, col)
        elif op in _SPECIFIC:
            _SPECIFIC[op](c, rows, col, _USAGE[op](col) if op in _USAGE else {})
    if not c.parts:
        return tuple(np.zeros(0, t) for t in (np.int64, np.int64, np.int64, np.int64, bool))
    return tuple(np.concatenate([part[i] for part in c.parts]).astype(t)
                 for i, t in enumerate((np.int64, np.int64, np.int64, np.int64, bool)))
