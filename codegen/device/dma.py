"""LOAD and STORE instructions for the common shapes: strided 3-D boxes
(with padding) and linear byte ranges."""
from __future__ import annotations

from runtime.isa import Instruction, Op, Space, instr

MAX_EXTENT = 0xFFFF


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


def linear_box(nbytes: int) -> tuple[int, tuple[int, int, int], tuple[int, int, int]]:
    """Element size, box and strides that copy ``nbytes`` contiguous bytes
    (a multiple of 8; of 512 when more than 512 KiB)."""
    elem, count = 8, nbytes // 8
    if nbytes % 8 or nbytes <= 0:
        raise ValueError(f"a linear copy of {nbytes} bytes is not a whole number of 8-byte words")
    if count <= MAX_EXTENT:
        return elem, (1, 1, count), (0, 0, 1)
    if count % 64 or count // 64 > MAX_EXTENT:
        raise ValueError(f"a linear copy of {nbytes} bytes does not split into 64-word rows")
    return elem, (1, count // 64, 64), (0, 64, 1)


def linear_size(nbytes: int) -> int:
    """``nbytes`` rounded up to what :func:`linear_box` copies."""
    return -(-nbytes // 8) * 8 if nbytes <= 8 * MAX_EXTENT else -(-nbytes // 512) * 512


def load_linear(space: Space, sram: int, dram: int, nbytes: int) -> Instruction:
    elem, box, strides = linear_box(linear_size(nbytes))
    return load(space, sram, dram, elem, box, strides)


def padded(data: bytes) -> bytes:
    """A constant block padded to what one linear LOAD of it copies."""
    return data + b"\0" * (linear_size(len(data)) - len(data))
