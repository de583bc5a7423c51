"""LOAD and STORE instructions for the common shapes: strided 3-D boxes
(with padding) and linear byte ranges."""
from __future__ import annotations

from runtime.isa import Instruction, Op, Space, instr, linear_box, linear_size


def load(space: Space, sram: int, dram: int, elem: int, box: tuple[int, int, int], strides: tuple[int, int, int],
         pads: tuple[int, int, int, int] = (0, 0, 0, 0), pad_value: int = 0) -> Instruction:
    """LOAD a [z][y][x] box of ``elem``-byte elements (DRAM strides in
    elements) into a dense SRAM box, with (top, bottom, left, right) padding."""
    top, bottom, left, right = pads
    return instr(Op.LOAD, 0, space=int(space), elem_bytes=elem, sram_addr=sram, dram_addr=dram,
                 z_size=box[0], y_size=box[1], x_size=box[2], z_stride=strides[0], y_stride=strides[1],
                 x_stride=strides[2], pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
                 pad_value=pad_value if (top or bottom or left or right) else 0)


def store(sram: int, dram: int, elem: int, box: tuple[int, int, int], strides: tuple[int, int, int],
          space: Space = Space.ACT) -> Instruction:
    """STORE a dense SRAM [z][y][x] box to a strided DRAM box."""
    return instr(Op.STORE, 0, space=int(space), elem_bytes=elem, sram_addr=sram, dram_addr=dram,
                 z_size=box[0], y_size=box[1], x_size=box[2], z_stride=strides[0], y_stride=strides[1],
                 x_stride=strides[2])


def load_linear(space: Space, sram: int, dram: int, nbytes: int) -> Instruction:
    elem, box, strides = linear_box(linear_size(nbytes))
    return load(space, sram, dram, elem, box, strides)


def padded(data: bytes) -> bytes:
    """A constant block padded to what one linear LOAD of it copies."""
    return data + b"\0" * (linear_size(len(data)) - len(data))
