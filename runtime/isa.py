"""The accelerator's instruction set, defined once: one field table per opcode.

Every instruction is one 64-byte word (eight little-endian uint64, bit ``p``
of the instruction is bit ``p % 64`` of word ``p // 64``). Bits 0-15 are the
common header: the opcode (bits 0-7), whose high nibble is the module that
runs it (1 LOAD, 2 COMPUTE, 3 STORE), and the four dependency-token flags
pop_prev, pop_next, push_prev, push_next (bits 8-11; 12-15 reserved). The
opcode's fields follow from bit 16 in table order, each ``bits`` wide (two's
complement where signed); every bit after the last field is reserved and
must be zero.

Everything else is derived from the tables in ``SPECS``: the encoder
(:func:`encode`, :func:`encode_stream`, :func:`encode_array`), the decoder
(:func:`decode`, and :func:`decode_array`, the int64 matrix a Numba
simulator runs over, one row per instruction and one column per field), the
validator (:func:`validate`, :func:`validate_streams`), the disassembler
(:func:`disassemble`) and the encoding tables of docs/isa.md
(:func:`field_table_markdown`). docs/isa.md gives the semantics of each
instruction; docs/quantization.md the integer formulas they implement.

An instruction stream is untrusted bytes: decoding rejects a length that is
not a whole number of instructions, unknown opcodes and set reserved bits;
:func:`validate` then checks every field against a :class:`HardwareConfig`
(ranges, widths, kernel limits, every SRAM and DRAM access in bounds,
alignment, token flags, END placement) and runs the token protocol
abstractly so that a stream it accepts cannot deadlock.
"""
from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from runtime.errors import TesseraError
from runtime.hardware import HardwareConfig
from runtime.jit import jit

INSTR_BYTES = 64
"""Bytes per instruction: eight little-endian uint64 words."""
INSTR_WORDS = INSTR_BYTES // 8
INSTR_BITS = INSTR_BYTES * 8
HEADER_BITS = 16
"""Opcode (8 bits), four token flags, four reserved bits."""
SRAM_ADDR_BITS = 30
"""On-chip buffers hold up to 2^30 bytes (HardwareConfig's bound)."""
DRAM_ADDR_BITS = 40
"""A card's DRAM holds up to 2^40 bytes (HardwareConfig's bound)."""
PARAM_CHANNEL_BYTES = 24
"""One CONV output channel's PARAM record: int64 bias, int32 mult, int32
shift, int32 neg_mult, int32 neg_shift."""
AVG_ENTRY_BYTES = 8
"""One average-pool multiplier entry: int32 mult, int32 shift."""
LUT_ENTRIES = 256
PARAM_ALIGN = 8
"""PARAM blocks (in the weight buffer) start at a multiple of 8 bytes."""
TOKEN_QUEUE_DEPTH = 256
"""Tokens each of the four dependency queues holds; a push waits while full."""
COMMAND_QUEUE_DEPTH = 256
"""Instructions each module's command queue holds: the fetch unit dispatches
the stream in order and waits while the next instruction's module is full."""


class IsaError(TesseraError):
    """An instruction or instruction stream is malformed or illegal; the
    message names the instruction index, opcode, field and value."""


# ---------------------------------------------------------------- enumerations
class Module(enum.IntEnum):
    """The three decoupled modules of a cluster; an opcode's high nibble."""

    LOAD = 1
    COMPUTE = 2
    STORE = 3


class Op(enum.IntEnum):
    """Opcodes. ``op >> 4`` is the module; low nibble 0 is that module's NOP."""

    NOP_LOAD = 0x10
    LOAD = 0x11
    NOP_COMPUTE = 0x20
    CONV = 0x21
    POOL = 0x22
    ELTWISE = 0x23
    LUT = 0x24
    SYNC = 0x2E
    END = 0x2F
    NOP_STORE = 0x30
    STORE = 0x31

    @property
    def module(self) -> Module:
        return Module(self >> 4)

    @property
    def mnemonic(self) -> str:
        return "NOP" if self.name.startswith("NOP") else self.name


class Token(enum.IntFlag):
    """The header's dependency-token flags (bits 8-11)."""

    POP_PREV = 1
    POP_NEXT = 2
    PUSH_PREV = 4
    PUSH_NEXT = 8


TOKEN_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")
LEGAL_TOKENS = {
    Module.LOAD: Token.POP_NEXT | Token.PUSH_NEXT,
    Module.COMPUTE: Token.POP_PREV | Token.POP_NEXT | Token.PUSH_PREV | Token.PUSH_NEXT,
    Module.STORE: Token.POP_PREV | Token.PUSH_PREV,
}
"""LOAD has no previous module and STORE no next one."""


class Space(enum.IntEnum):
    """On-chip buffers of a cluster (byte-addressed). PARAM blocks (bias,
    multiplier, LUT tables) live in the weight buffer."""

    WGT = 0
    ACT = 1
    ACC = 2


class AccMode(enum.IntEnum):
    """Where a CONV's accumulators start (bit 0: from ACC, else the bias) and
    end (bit 1: to ACC, else through the epilogue to ACT): the passes of a
    reduction split over several CONVs."""

    FULL = 0
    LAST = 1
    FIRST = 2
    MIDDLE = 3


class PoolMode(enum.IntEnum):
    MAX = 0
    AVG = 1


class EltOp(enum.IntEnum):
    ADD = 0
    MUL = 1
    COPY = 2


class Bcast(enum.IntEnum):
    """The shape of ELTWISE's operand b: [c][h][w], [c], [h][w] or [1]."""

    FULL = 0
    CHANNEL = 1
    SPATIAL = 2
    SCALAR = 3


# ---------------------------------------------------------------- field tables
@dataclass(frozen=True)
class Field:
    """One field of an instruction: ``bits`` wide at bit ``offset``.

    The validity rules the validator applies where the field is in use (an
    unused field must be 0): ``valid`` a closed range, ``values`` the allowed
    values, ``choices`` an enumeration (names for the disassembler; allowed
    values unless ``values`` narrows them), ``is_width`` a data width in
    HardwareConfig.data_widths, ``storage`` the width field whose integer
    range holds this value, ``limit`` a HardwareConfig attribute bounding it."""

    name: str
    bits: int
    doc: str
    signed: bool = False
    valid: tuple[int, int] | None = None
    values: tuple[int, ...] | None = None
    choices: type[enum.IntEnum] | None = None
    is_width: bool = False
    storage: str | None = None
    limit: str | None = None
    offset: int = 0

    @property
    def lowest(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def highest(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def allowed_names(self) -> dict[int, str]:
        return {int(v): v.name for v in self.choices} if self.choices is not None else {}

    @property
    def allowed(self) -> tuple[int, ...] | None:
        if self.values is not None:
            return tuple(int(v) for v in self.values)
        return tuple(int(v) for v in self.choices) if self.choices is not None else None

    def format(self, value: int) -> str:
        """The value as the disassembler writes it."""
        if self.choices is not None and value in self.allowed_names:
            return self.allowed_names[value]
        if self.name.endswith("_addr"):
            return hex(value)
        return str(value)

    def rule(self) -> str:
        """The validity rule in words (the docs table's column)."""
        if self.choices is not None:
            return ", ".join(f"{self.choices(v).name}={v}" for v in self.allowed)
        if self.values is not None:
            return ", ".join(str(v) for v in self.values)
        if self.is_width:
            return "8 or 16, in data_widths"
        if self.storage:
            return f"int{{{self.storage}}} range"
        if self.valid is not None:
            low, high = self.valid
            text = f"[{_pow2(low)}, {_pow2(high)}]"
            return f"{text}, ≤ {self.limit}" if self.limit else text
        return "any"


def _pow2(value: int) -> str:
    """Large powers of two (and one less) as the docs write them."""
    if value > 4096 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    if value > 4096 and (value + 1) & value == 0:
        return f"2^{value.bit_length()}−1"
    return str(value)


@dataclass(frozen=True)
class OpSpec:
    """An opcode's table: its fields laid out from bit 16 in order."""

    op: Op
    summary: str
    fields: tuple[Field, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def end_bit(self) -> int:
        return self.fields[-1].offset + self.fields[-1].bits if self.fields else HEADER_BITS


def _sram(name: str, doc: str) -> Field:
    return Field(name, SRAM_ADDR_BITS, doc)


def _dim(name: str, doc: str) -> Field:
    return Field(name, 16, doc, valid=(1, 0xFFFF))


def _width(name: str, doc: str) -> Field:
    return Field(name, 5, doc, is_width=True)


def _zero(name: str, storage: str, doc: str) -> Field:
    return Field(name, 16, doc, signed=True, storage=storage)


def _mult(name: str, doc: str) -> Field:
    return Field(name, 31, doc, valid=(1 << 30, (1 << 31) - 1))


def _shift(name: str, doc: str) -> Field:
    return Field(name, 6, doc, valid=(1, 62))


def _kernel(name: str, limit: str, doc: str) -> Field:
    return Field(name, 7, doc, valid=(1, 64), limit=limit)


def _step(name: str, doc: str) -> Field:
    return Field(name, 6, doc, valid=(1, 63))


def _pad(name: str, doc: str) -> Field:
    return Field(name, 8, doc)


def _dma(space_values: tuple[Space, ...], space_doc: str, padded: bool) -> tuple[Field, ...]:
    fields = (
        Field("space", 2, space_doc, choices=Space, values=space_values),
        Field("elem_bytes", 4, "bytes per element", values=(1, 2, 4, 8)),
        _sram("sram_addr", "SRAM byte address of the dense box"),
        Field("dram_addr", DRAM_ADDR_BITS, "DRAM byte address of element [0][0][0]"),
        _dim("z_size", "box extent z (outer)"),
        _dim("y_size", "box extent y"),
        _dim("x_size", "box extent x (inner)"),
        Field("z_stride", 32, "DRAM stride of z, in elements"),
        Field("y_stride", 32, "DRAM stride of y, in elements"),
        Field("x_stride", 32, "DRAM stride of x, in elements"),
    )
    if padded:
        fields += (
            _pad("pad_top", "rows of pad_value before the box's y"),
            _pad("pad_bottom", "rows of pad_value after y"),
            _pad("pad_left", "columns of pad_value before x"),
            _pad("pad_right", "columns of pad_value after x"),
            Field("pad_value", 16, "the padding element (input zero point)", signed=True),
        )
    return fields


_TABLES: tuple[tuple[Op, str, tuple[Field, ...]], ...] = (
    (Op.NOP_LOAD, "no operation on LOAD (carries tokens)", ()),
    (Op.LOAD, "DMA a strided 3-D box from DRAM into a dense, padded SRAM box",
     _dma((Space.WGT, Space.ACT, Space.ACC), "destination buffer", padded=True)),
    (Op.NOP_COMPUTE, "no operation on COMPUTE (carries tokens)", ()),
    (Op.CONV, "convolution tile + bias + requantisation + residual + clamp (GEMM = 1×1 CONV)", (
        _sram("in_addr", "ACT address of the padded input tile [in_c][in_h][in_w]"),
        _width("in_bits", "input element width"),
        _dim("in_c", "input channels"),
        _dim("in_h", "input tile rows (padding included)"),
        _dim("in_w", "input tile columns (padding included)"),
        _sram("wgt_addr", "WGT address of weights [out_c][in_c/groups][kernel_h][kernel_w]"),
        _width("wgt_bits", "weight width; the accumulator is int32 (8) or int64 (16)"),
        _dim("groups", "channel groups: 1 dense, in_c depthwise"),
        _kernel("kernel_h", "max_conv_kernel", "kernel rows"),
        _kernel("kernel_w", "max_conv_kernel", "kernel columns"),
        _step("stride_h", "row stride"),
        _step("stride_w", "column stride"),
        _step("dilation_h", "row dilation"),
        _step("dilation_w", "column dilation"),
        _dim("out_c", "output channels"),
        _sram("out_addr", "ACT address of the output tile [out_c][out_h][out_w]"),
        _width("out_bits", "output element width"),
        _zero("out_zero", "out_bits", "output zero point"),
        _zero("lo", "out_bits", "clamp low (activation)"),
        _zero("hi", "out_bits", "clamp high (activation)"),
        _sram("param_addr", "WGT address of out_c PARAM records (24 bytes each)"),
        Field("residual", 1, "1: add a rescaled residual tile", values=(0, 1)),
        _sram("res_addr", "ACT address of the residual tile [out_c][out_h][out_w]"),
        _width("res_bits", "residual element width"),
        _zero("res_zero", "res_bits", "residual zero point"),
        _mult("res_mult", "residual multiplier"),
        _shift("res_shift", "residual shift"),
        Field("acc_mode", 2, "reduction pass: accumulators from bias/ACC, to ACT/ACC", choices=AccMode),
        _sram("acc_addr", "ACC address of the accumulators [out_c][out_h][out_w]"),
    )),
    (Op.POOL, "max or average pool of a padded tile, requantised and clamped", (
        Field("mode", 2, "MAX or AVG", choices=PoolMode),
        _sram("in_addr", "ACT address of the padded input tile [c][in_h][in_w]"),
        _width("in_bits", "input element width"),
        _dim("c", "channels"),
        _dim("in_h", "input tile rows (padding included)"),
        _dim("in_w", "input tile columns (padding included)"),
        _kernel("kernel_h", "max_pool_kernel", "window rows"),
        _kernel("kernel_w", "max_pool_kernel", "window columns"),
        _step("stride_h", "row stride"),
        _step("stride_w", "column stride"),
        _pad("pad_top", "border rows of the tile outside the map"),
        _pad("pad_bottom", "border rows outside the map (bottom)"),
        _pad("pad_left", "border columns outside the map"),
        _pad("pad_right", "border columns outside the map (right)"),
        _sram("out_addr", "ACT address of the output [c][out_h][out_w]"),
        _width("out_bits", "output element width (MAX: = in_bits)"),
        _zero("x_zero", "in_bits", "input zero point (AVG)"),
        _zero("out_zero", "out_bits", "output zero point (AVG)"),
        _zero("lo", "out_bits", "clamp low"),
        _zero("hi", "out_bits", "clamp high"),
        _sram("param_addr", "WGT address of kernel_h·kernel_w multipliers (AVG)"),
    )),
    (Op.ELTWISE, "element-wise add, multiply or requantising copy of ACT tiles", (
        Field("func", 2, "ADD, MUL or COPY", choices=EltOp),
        Field("bcast", 2, "shape of b (ADD, MUL)", choices=Bcast),
        _dim("c", "channels"),
        _dim("h", "rows"),
        _dim("w", "columns"),
        _sram("a_addr", "ACT address of a [c][h][w]"),
        _width("a_bits", "a's element width"),
        _zero("a_zero", "a_bits", "a's zero point"),
        _mult("a_mult", "a's multiplier (MUL: the product's)"),
        _shift("a_shift", "a's shift (MUL: the product's)"),
        _sram("b_addr", "ACT address of b (shape by bcast)"),
        _width("b_bits", "b's element width"),
        _zero("b_zero", "b_bits", "b's zero point"),
        _mult("b_mult", "b's multiplier (ADD)"),
        _shift("b_shift", "b's shift (ADD)"),
        _sram("out_addr", "ACT address of the output [c][h][w]"),
        _width("out_bits", "output element width"),
        _zero("out_zero", "out_bits", "output zero point"),
        _zero("lo", "out_bits", "clamp low"),
        _zero("hi", "out_bits", "clamp high"),
    )),
    (Op.LUT, "256-entry table lookup of 8-bit codes", (
        _sram("in_addr", "ACT address of count int8 codes"),
        Field("count", 32, "elements", valid=(1, (1 << 32) - 1)),
        _sram("param_addr", "WGT address of the table [256] (out_bits)"),
        _sram("out_addr", "ACT address of the output [count]"),
        _width("out_bits", "output element width"),
    )),
    (Op.SYNC, "barrier across the streams of a phase (clusters, cards)", (
        Field("barrier", 16, "barrier id, unique in a stream"),
        Field("participants", 16, "streams that meet at this barrier", valid=(1, 0xFFFF), limit="clusters"),
    )),
    (Op.END, "end of the stream", ()),
    (Op.NOP_STORE, "no operation on STORE (carries tokens)", ()),
    (Op.STORE, "DMA a dense SRAM box to a strided 3-D box in DRAM",
     _dma((Space.ACT, Space.ACC), "source buffer", padded=False)),
)


def _layout(op: Op, summary: str, fields: tuple[Field, ...]) -> OpSpec:
    offset, placed = HEADER_BITS, []
    for f in fields:
        placed.append(replace(f, offset=offset))
        offset += f.bits
    if offset > INSTR_BITS:
        raise AssertionError(f"{op.name}'s fields take {offset} bits, more than {INSTR_BITS}")
    return OpSpec(op, summary, tuple(placed))


SPECS: dict[Op, OpSpec] = {op: _layout(op, summary, fields) for op, summary, fields in _TABLES}
"""The one definition of every opcode's fields."""

COL_OPCODE, COL_MODULE = 0, 1
COL_TOKENS = (2, 3, 4, 5)
"""decode_array's columns of pop_prev, pop_next, push_prev, push_next."""
FIRST_FIELD_COLUMN = 6
N_COLUMNS = FIRST_FIELD_COLUMN + max(len(s.fields) for s in SPECS.values())
COLUMNS: dict[Op, dict[str, int]] = {
    op: {f.name: FIRST_FIELD_COLUMN + k for k, f in enumerate(spec.fields)} for op, spec in SPECS.items()}
"""decode_array's column of each field: COLUMNS[Op.CONV]["in_addr"]."""


def column(op: Op, name: str) -> int:
    """decode_array's column of one field (a constant a Numba kernel can use)."""
    try:
        return COLUMNS[Op(op)][name]
    except (KeyError, ValueError):
        raise IsaError(f"{op!r} has no field {name!r}") from None


_MASK64 = (1 << 64) - 1
_HEADER_RESERVED = 0xF000


def _reserved_words(spec: OpSpec) -> np.ndarray:
    used = ((1 << spec.end_bit) - 1) & ~_HEADER_RESERVED
    reserved = ((1 << INSTR_BITS) - 1) & ~used
    return np.array([(reserved >> (64 * w)) & _MASK64 for w in range(INSTR_WORDS)], np.uint64)


_RESERVED = {op: _reserved_words(spec) for op, spec in SPECS.items()}
_KNOWN = np.zeros(256, bool)
_KNOWN[[int(op) for op in SPECS]] = True
_OPS = {int(op): op for op in Op}
_TOKEN_VALUES = [Token(v) for v in range(16)]


# ---------------------------------------------------------------- instructions
@dataclass(slots=True)
class Instruction:
    """One instruction: opcode, token flags and every field of its table
    (fields not given are 0; unknown names are an error)."""

    op: Op
    fields: dict[str, int]
    flags: Token = Token(0)

    def __post_init__(self):
        try:
            self.op = Op(self.op)
        except ValueError:
            raise IsaError(f"unknown opcode {self.op!r}") from None
        spec = SPECS[self.op]
        given = dict(self.fields or {})
        unknown = sorted(set(given) - set(spec.names))
        if unknown:
            raise IsaError(f"{self.op.mnemonic} has no fields {unknown}; its fields are {list(spec.names)}")
        try:
            self.fields = {name: operator.index(given.get(name, 0)) for name in spec.names}
            flags = operator.index(self.flags)
        except (TypeError, ValueError) as exc:
            raise IsaError(f"{self.op.mnemonic}: fields and flags must be integers ({exc})") from None
        if not 0 <= flags <= 15:
            raise IsaError(f"{self.op.mnemonic}: token flags {flags} are not a combination of the four Token bits")
        self.flags = Token(flags)

    @property
    def module(self) -> Module:
        return self.op.module

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    @classmethod
    def _raw(cls, op: Op, fields: dict[str, int], flags: Token) -> Instruction:
        ins = cls.__new__(cls)
        ins.op, ins.fields, ins.flags = op, fields, flags
        return ins


def instr(op: Op, flags: int = 0, /, **fields: int) -> Instruction:
    """Instruction(op, fields, flags) with the fields as keywords."""
    return Instruction(op, fields, Token(flags))


# ---------------------------------------------------------------- encoding
def _label(index: int, op: int) -> str:
    name = _OPS[op].mnemonic if op in _OPS else f"opcode 0x{op:02x}"
    return f"instruction {index} ({name})"


_GETTERS = {op: (operator.itemgetter(*spec.names) if len(spec.names) > 1 else lambda d, k=spec.names: [d[n] for n in k])
            for op, spec in SPECS.items()}


def to_array(instructions: Iterable[Instruction]) -> np.ndarray:
    """The decode_array form of instructions (int64, [n, N_COLUMNS])."""
    rows = []
    for i, ins in enumerate(instructions):
        if not isinstance(ins, Instruction):
            raise IsaError(f"instruction {i} is a {type(ins).__name__}, not an Instruction")
        flags = int(ins.flags)
        try:
            values = _GETTERS[ins.op](ins.fields)
        except KeyError as exc:
            raise IsaError(f"instruction {i} ({ins.op.mnemonic}) lacks field {exc}") from None
        rows.append([int(ins.op), int(ins.op) >> 4, flags & 1, flags >> 1 & 1, flags >> 2 & 1, flags >> 3 & 1,
                     *values, *([0] * (N_COLUMNS - FIRST_FIELD_COLUMN - len(values)))])
    if not rows:
        return np.zeros((0, N_COLUMNS), np.int64)
    try:
        return np.array(rows, np.int64)
    except OverflowError:
        for i, row in enumerate(rows):  # name the value too wide for int64
            op = _OPS[row[0]]
            for name, value in zip(SPECS[op].names, row[FIRST_FIELD_COLUMN:]):
                if not -(1 << 63) <= value < 1 << 63:
                    field = SPECS[op].fields[SPECS[op].names.index(name)]
                    raise IsaError(f"{_label(i, row[0])}: {name}={value} does not fit {field.bits} bits") from None
        raise


def encode_array(arr: np.ndarray) -> bytes:
    """The instruction bytes of a decode_array-form matrix (the module column
    is derived from the opcode and ignored); every value must fit its field."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != N_COLUMNS or arr.dtype != np.int64:
        raise IsaError(f"an instruction array must be int64 [n, {N_COLUMNS}], got {arr.dtype} {list(arr.shape)}")
    n = arr.shape[0]
    words = np.zeros((n, INSTR_WORDS), np.uint64)
    ops = arr[:, COL_OPCODE]
    bad = (ops < 0) | (ops > 255)
    bad[~bad] = ~_KNOWN[ops[~bad]]
    if bad.any():
        i = int(np.argmax(bad))
        raise IsaError(f"instruction {i}: unknown opcode {int(ops[i])}")
    tokens = arr[:, COL_TOKENS[0]:COL_TOKENS[-1] + 1]
    if ((tokens != 0) & (tokens != 1)).any():
        i, k = (int(v[0]) for v in np.nonzero((tokens != 0) & (tokens != 1)))
        raise IsaError(f"{_label(i, int(ops[i]))}: token flag {TOKEN_NAMES[k]}={int(tokens[i, k])} must be 0 or 1")
    header = ops.astype(np.uint64)
    for k in range(4):
        header |= tokens[:, k].astype(np.uint64) << np.uint64(8 + k)
    words[:, 0] = header
    for op in np.unique(ops):
        spec = SPECS[_OPS[int(op)]]
        rows = np.flatnonzero(ops == op)
        w = words[rows]
        for k, f in enumerate(spec.fields):
            values = arr[rows, FIRST_FIELD_COLUMN + k]
            outside = (values < f.lowest) | (values > f.highest)
            if outside.any():
                j = int(np.argmax(outside))
                raise IsaError(f"{_label(int(rows[j]), int(op))}: {f.name}={int(values[j])} does not fit "
                               f"{f.bits} {'signed ' if f.signed else ''}bits [{f.lowest}, {f.highest}]")
            _put(w, values.view(np.uint64) & np.uint64((1 << f.bits) - 1), f.offset, f.bits)
        words[rows] = w
    return words.astype("<u8", copy=False).tobytes()


def _put(words: np.ndarray, values: np.ndarray, offset: int, bits: int) -> None:
    word, shift = divmod(offset, 64)
    words[:, word] |= values << np.uint64(shift)
    if shift + bits > 64:
        words[:, word + 1] |= values >> np.uint64(64 - shift)


def _get(words: np.ndarray, offset: int, bits: int, signed: bool) -> np.ndarray:
    word, shift = divmod(offset, 64)
    values = words[:, word] >> np.uint64(shift)
    if shift + bits > 64:
        values = values | (words[:, word + 1] << np.uint64(64 - shift))
    values = (values & np.uint64((1 << bits) - 1)).astype(np.int64)
    if signed:
        sign = np.int64(1 << (bits - 1))
        values = (values ^ sign) - sign
    return values


def encode_stream(instructions: Iterable[Instruction]) -> bytes:
    """The bytes of a list of instructions, INSTR_BYTES each."""
    return encode_array(to_array(instructions))


def encode(ins: Instruction) -> bytes:
    """One instruction's INSTR_BYTES bytes."""
    return encode_stream([ins])


# ---------------------------------------------------------------- decoding
def _buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    try:
        raw = np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except (TypeError, ValueError):
        raise IsaError(f"an instruction stream must be bytes, got {type(data).__name__}") from None
    if raw.size % INSTR_BYTES:
        raise IsaError(f"an instruction stream of {raw.size} bytes is not a whole number of "
                       f"{INSTR_BYTES}-byte instructions")
    return raw


def decode_array(data: Any) -> tuple[np.ndarray, dict[Op, dict[str, int]]]:
    """Decode a stream into an int64 matrix [n, N_COLUMNS]: column 0 the
    opcode, 1 the module, 2-5 the token flags (pop_prev, pop_next, push_prev,
    push_next), then the opcode's fields in table order from column 6 (signed
    fields sign-extended, unused columns 0); and the column map COLUMNS.
    Wrong length, unknown opcodes and set reserved bits raise IsaError."""
    raw = _buffer(data)
    words = raw.view("<u8").reshape(-1, INSTR_WORDS)
    n = words.shape[0]
    arr = np.zeros((n, N_COLUMNS), np.int64)
    if n == 0:
        return arr, COLUMNS
    ops = (words[:, 0] & np.uint64(0xFF)).astype(np.int64)
    unknown = ~_KNOWN[ops]
    if unknown.any():
        i = int(np.argmax(unknown))
        raise IsaError(f"instruction {i}: unknown opcode 0x{int(ops[i]):02x}")
    arr[:, COL_OPCODE] = ops
    arr[:, COL_MODULE] = ops >> 4
    for k, col in enumerate(COL_TOKENS):
        arr[:, col] = ((words[:, 0] >> np.uint64(8 + k)) & np.uint64(1)).astype(np.int64)
    for op in np.unique(ops):
        rows = np.flatnonzero(ops == op)
        w = words[rows]
        reserved = (w & _RESERVED[_OPS[int(op)]]).any(axis=1)
        if reserved.any():
            j = int(np.argmax(reserved))
            bits = [64 * k + b for k in range(INSTR_WORDS)
                    for b in range(64) if int(w[j, k] & _RESERVED[_OPS[int(op)]][k]) >> b & 1]
            raise IsaError(f"{_label(int(rows[j]), int(op))}: reserved bits {bits[:8]} are set (must be 0)")
        spec = SPECS[_OPS[int(op)]]
        for k, f in enumerate(spec.fields):
            arr[rows, FIRST_FIELD_COLUMN + k] = _get(w, f.offset, f.bits, f.signed)
    return arr, COLUMNS


def from_array(arr: np.ndarray) -> list[Instruction]:
    """Instruction objects of a decode_array matrix."""
    arr = np.asarray(arr, np.int64)
    out: list[Any] = [None] * arr.shape[0]
    ops = arr[:, COL_OPCODE]
    flags = (arr[:, 2] | arr[:, 3] << 1 | arr[:, 4] << 2 | arr[:, 5] << 3)
    make = Instruction._raw
    for value in np.unique(ops).tolist():
        op = _OPS[value]
        names = SPECS[op].names
        rows = np.flatnonzero(ops == value)
        values = arr[rows, FIRST_FIELD_COLUMN:FIRST_FIELD_COLUMN + len(names)].tolist()
        for i, row, f in zip(rows.tolist(), values, flags[rows].tolist()):
            out[i] = make(op, dict(zip(names, row)), _TOKEN_VALUES[f])
    return out


def decode(data: Any) -> list[Instruction]:
    """The instructions of a stream (IsaError on malformed bytes)."""
    return from_array(decode_array(data)[0])


# ---------------------------------------------------------------- disassembly
def disassemble(data: Any, provenance: Mapping[tuple[int, int], str] | Sequence[tuple[int, int, str]] | None = None
                ) -> str:
    """One line per instruction: index, module, mnemonic, token flags set,
    then every field as name=value; ``provenance`` maps instruction ranges
    [start, stop) to names (layers), written after the line as a comment."""
    arr = decode_array(_stream_bytes(data))[0]
    ranges = list(provenance.items()) if isinstance(provenance, Mapping) else list(provenance or ())
    ranges = [(int(r[0][0]), int(r[0][1]), str(r[1])) if len(r) == 2 else (int(r[0]), int(r[1]), str(r[2]))
              for r in ranges]
    lines = []
    for i, row in enumerate(arr.tolist()):
        op = _OPS[row[COL_OPCODE]]
        tokens = ",".join(name for name, v in zip(TOKEN_NAMES, row[2:6]) if v) or "-"
        fields = " ".join(f"{f.name}={f.format(v)}" for f, v in zip(SPECS[op].fields, row[FIRST_FIELD_COLUMN:]))
        line = f"{i:6d}  {op.module.name:<7} {op.mnemonic:<7} [{tokens}]" + (f" {fields}" if fields else "")
        names = [name for start, stop, name in ranges if start <= i < stop]
        lines.append(line + (f"  # {', '.join(names)}" if names else ""))
    return "\n".join(lines)


def _stream_bytes(stream: Any) -> Any:
    if isinstance(stream, (list, tuple)):
        return encode_stream(stream)
    return stream


# ---------------------------------------------------------------- validation
def _storage_range(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[low, high] of int8 / int16 per width (other widths: the 16-bit range;
    the width itself is reported separately)."""
    low = np.where(bits == 8, -128, -32768)
    return low, np.where(bits == 8, 127, 32767)


class _Checker:
    """Collects the first violation of each rule; the earliest instruction's
    message is raised."""

    def __init__(self, arr: np.ndarray, config: HardwareConfig, dram_limit: int):
        self.arr, self.config, self.dram_limit = arr, config, dram_limit
        self.errors: list[tuple[int, str]] = []
        self.buffers = {Space.WGT: config.weight_buffer_bytes, Space.ACT: config.activation_buffer_bytes,
                        Space.ACC: config.accumulator_buffer_bytes}

    def fail(self, rows: np.ndarray, bad: np.ndarray, name: str, values: np.ndarray, reason) -> None:
        """Record the first row where ``bad`` holds: ``reason`` is text or a
        function of the row's position."""
        if bad.any():
            j = int(np.argmax(bad))
            i = int(rows[j])
            text = reason(j) if callable(reason) else reason
            self.errors.append((i, f"{_label(i, int(self.arr[i, COL_OPCODE]))}: {name}={int(values[j])} {text}"))

    def raise_first(self) -> None:
        if self.errors:
            raise IsaError(min(self.errors, key=lambda e: e[0])[1])

    # ------------------------------------------------------------ generic rules
    def fields(self, op: Op, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
        for f in SPECS[op].fields:
            v = col[f.name]
            mask, why = used.get(f.name, (None, ""))
            if mask is not None:
                self.fail(rows, ~mask & (v != 0), f.name, v, f"must be 0: unused {why}")
                v_used = mask
            else:
                v_used = np.ones(v.shape, bool)
            if f.allowed is not None:
                self.fail(rows, v_used & ~np.isin(v, f.allowed), f.name, v, f"is not one of {f.rule()}")
            elif f.valid is not None:
                low, high = f.valid
                self.fail(rows, v_used & ((v < low) | (v > high)), f.name, v, f"is outside [{low}, {high}]")
            if f.is_width:
                widths = list(self.config.data_widths)
                self.fail(rows, v_used & ~np.isin(v, widths), f.name, v,
                          f"is not a data width of this config {widths}")
            if f.storage:
                low, high = _storage_range(col[f.storage])
                self.fail(rows, v_used & ((v < low) | (v > high)), f.name, v,
                          lambda j, s=f.storage, c=col: f"is outside the int{int(c[s][j])} range")
            if f.limit:
                bound = getattr(self.config, f.limit)
                self.fail(rows, v_used & (v > bound), f.name, v, f"exceeds {f.limit}={bound}")

    def sram(self, rows: np.ndarray, space, addr_name: str, addr: np.ndarray, size: np.ndarray,
             used: np.ndarray | None = None) -> None:
        """addr + size inside the space's buffer (space: a Space or an array)."""
        space = np.broadcast_to(np.asarray(space, np.int64), addr.shape)
        capacity = np.array([self.buffers[s] for s in Space] + [0], np.int64)[np.clip(space, 0, 3)]
        bad = addr + size > capacity
        if used is not None:
            bad &= used
        self.fail(rows, bad, addr_name, addr, lambda j: f"+ {int(size[j])} bytes runs past the "
                  f"{_space_name(int(space[j]))} buffer ({int(capacity[j])} bytes)")

    def aligned(self, rows: np.ndarray, name: str, addr: np.ndarray, align: np.ndarray,
                used: np.ndarray | None = None) -> None:
        align = np.broadcast_to(np.asarray(align, np.int64), addr.shape)
        bad = addr % np.maximum(align, 1) != 0
        if used is not None:
            bad &= used
        self.fail(rows, bad, name, addr, lambda j: f"is not a multiple of {int(align[j])} bytes")

    def disjoint(self, rows: np.ndarray, out: tuple, src: tuple, may_equal: bool,
                 used: np.ndarray | None = None) -> None:
        """Output range [a, a+n) does not overlap a source range (or, where
        allowed, is exactly it: in place)."""
        (name, a, n), (src_name, b, m) = out, src
        bad = (a < b + m) & (b < a + n)
        if may_equal:
            bad &= ~((a == b) & (n == m))
        if used is not None:
            bad &= used
        self.fail(rows, bad, name, a, lambda j: f"(+ {int(n[j])} bytes) overlaps {src_name}={int(b[j])} "
                  f"(+ {int(m[j])} bytes)" + (" and is not exactly in place" if may_equal else ""))


def _space_name(space: int) -> str:
    return Space(space).name if space in set(Space) else f"space {space}"


def _bytes(bits: np.ndarray) -> np.ndarray:
    """Element bytes of a width (invalid widths: 1; reported elsewhere)."""
    return np.where(bits == 16, 2, 1).astype(np.int64)


def _check_dma(c: _Checker, op: Op, rows: np.ndarray, col: dict[str, np.ndarray]) -> None:
    eb = col["elem_bytes"]
    eb_ok = np.where(np.isin(eb, (1, 2, 4, 8)), eb, 1)
    z, y, x = col["z_size"], col["y_size"], col["x_size"]
    if op == Op.LOAD:
        y = y + col["pad_top"] + col["pad_bottom"]
        x = x + col["pad_left"] + col["pad_right"]
        pv = col["pad_value"]
        low = np.where(eb_ok == 1, -128, -32768)
        high = np.where(eb_ok == 1, 127, 32767)
        c.fail(rows, (pv < low) | (pv > high), "pad_value", pv,
               lambda j: f"does not fit a {int(eb[j])}-byte element")
    c.sram(rows, col["space"], "sram_addr", col["sram_addr"], z * y * x * eb_ok)
    span = eb_ok * ((col["z_size"] - 1) * col["z_stride"] + (col["y_size"] - 1) * col["y_stride"]
                    + (col["x_size"] - 1) * col["x_stride"] + 1)
    dram = col["dram_addr"]
    c.fail(rows, dram + span > c.dram_limit, "dram_addr", dram,
           lambda j: f"+ {int(span[j])} bytes runs past DRAM ({c.dram_limit} bytes)")
    c.aligned(rows, "sram_addr", col["sram_addr"], eb_ok)
    c.aligned(rows, "dram_addr", dram, eb_ok)


def _conv_usage(col: dict[str, np.ndarray]) -> dict[str, tuple]:
    mode = col["acc_mode"]
    epilogue = (mode & 2) == 0
    res = epilogue & (col["residual"] == 1)
    out = (epilogue, "when acc_mode writes ACC")
    used = {name: out for name in ("out_addr", "out_bits", "out_zero", "lo", "hi", "residual")}
    used.update({name: (res, "without a residual") for name in
                 ("res_addr", "res_bits", "res_zero", "res_mult", "res_shift")})
    used["param_addr"] = (mode != AccMode.MIDDLE, "when acc_mode is MIDDLE")
    used["acc_addr"] = (mode != AccMode.FULL, "when acc_mode is FULL")
    return used


def _out_size(size: np.ndarray, kernel: np.ndarray, stride: np.ndarray, dilation) -> tuple[np.ndarray, np.ndarray]:
    span = dilation * (kernel - 1) + 1
    return span, np.where(size >= span, (size - span) // np.maximum(stride, 1) + 1, 1)


def _check_conv(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    ib, wb, ob, rb = (_bytes(col[k]) for k in ("in_bits", "wgt_bits", "out_bits", "res_bits"))
    in_c, out_c, groups = col["in_c"], col["out_c"], np.maximum(col["groups"], 1)
    span_h, oh = _out_size(col["in_h"], col["kernel_h"], col["stride_h"], col["dilation_h"])
    span_w, ow = _out_size(col["in_w"], col["kernel_w"], col["stride_w"], col["dilation_w"])
    for axis, span in (("h", span_h), ("w", span_w)):
        size = col[f"in_{axis}"]
        c.fail(rows, size < span, f"kernel_{axis}", col[f"kernel_{axis}"], lambda j, s=span, a=axis, z=size:
               f"with dilation_{a}={int(col[f'dilation_{a}'][j])} spans {int(s[j])}, more than in_{a}={int(z[j])}")
    c.fail(rows, (in_c % groups != 0) | (out_c % groups != 0), "groups", col["groups"],
           lambda j: f"does not divide in_c={int(in_c[j])} and out_c={int(out_c[j])}")
    epilogue = used["out_addr"][0]
    mode = col["acc_mode"]
    acc_b = np.where(col["wgt_bits"] == 16, 8, 4).astype(np.int64)
    outputs = out_c * oh * ow
    sizes = {
        "in_addr": (Space.ACT, in_c * col["in_h"] * col["in_w"] * ib, None, ib),
        "wgt_addr": (Space.WGT, out_c * (in_c // groups) * col["kernel_h"] * col["kernel_w"] * wb, None, wb),
        "param_addr": (Space.WGT, out_c * PARAM_CHANNEL_BYTES, used["param_addr"][0], PARAM_ALIGN),
        "out_addr": (Space.ACT, outputs * ob, epilogue, ob),
        "res_addr": (Space.ACT, outputs * rb, used["res_addr"][0], rb),
        "acc_addr": (Space.ACC, outputs * acc_b, mode != AccMode.FULL, acc_b),
    }
    for name, (space, size, mask, align) in sizes.items():
        c.sram(rows, space, name, col[name], size, mask)
        c.aligned(rows, name, col[name], align, mask)
    out = ("out_addr", col["out_addr"], sizes["out_addr"][1])
    c.disjoint(rows, out, ("in_addr", col["in_addr"], sizes["in_addr"][1]), False, epilogue)
    c.disjoint(rows, out, ("res_addr", col["res_addr"], sizes["res_addr"][1]), True, used["res_addr"][0])
    c.fail(rows, epilogue & (col["lo"] > col["hi"]), "lo", col["lo"], lambda j: f"is above hi={int(col['hi'][j])}")


def _pool_usage(col: dict[str, np.ndarray]) -> dict[str, tuple]:
    avg = (col["mode"] == PoolMode.AVG, "by MAX")
    return {"x_zero": avg, "out_zero": avg, "param_addr": avg}


def _check_pool(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    ib, ob = _bytes(col["in_bits"]), _bytes(col["out_bits"])
    channels = col["c"]
    dims = {}
    for axis, first, last in (("h", "pad_top", "pad_bottom"), ("w", "pad_left", "pad_right")):
        size, kernel, stride = col[f"in_{axis}"], col[f"kernel_{axis}"], col[f"stride_{axis}"]
        _, dims[axis] = _out_size(size, kernel, stride, 1)
        c.fail(rows, size < kernel, f"kernel_{axis}", kernel, lambda j, z=size, a=axis:
               f"is larger than in_{a}={int(z[j])}")
        inner_end = size - col[last]
        # windows are monotone: the first and the last decide whether any covers only padding
        empty = (col[first] >= np.minimum(kernel, size)) | ((dims[axis] - 1) * stride >= inner_end) | \
            (col[first] >= inner_end)
        c.fail(rows, (size >= kernel) & empty, first, col[first], lambda j, a=axis:
               f"leaves a window along {a} with no element of the map")
    avg = used["param_addr"][0]
    c.fail(rows, ~avg & (col["out_bits"] != col["in_bits"]), "out_bits", col["out_bits"],
           lambda j: f"differs from in_bits={int(col['in_bits'][j])} (MAX keeps the codes)")
    in_size = channels * col["in_h"] * col["in_w"] * ib
    out_size = channels * dims["h"] * dims["w"] * ob
    c.sram(rows, Space.ACT, "in_addr", col["in_addr"], in_size)
    c.sram(rows, Space.ACT, "out_addr", col["out_addr"], out_size)
    c.sram(rows, Space.WGT, "param_addr", col["param_addr"], col["kernel_h"] * col["kernel_w"] * AVG_ENTRY_BYTES, avg)
    c.aligned(rows, "in_addr", col["in_addr"], ib)
    c.aligned(rows, "out_addr", col["out_addr"], ob)
    c.aligned(rows, "param_addr", col["param_addr"], PARAM_ALIGN, avg)
    c.disjoint(rows, ("out_addr", col["out_addr"], out_size), ("in_addr", col["in_addr"], in_size), False)
    c.fail(rows, col["lo"] > col["hi"], "lo", col["lo"], lambda j: f"is above hi={int(col['hi'][j])}")


def _eltwise_usage(col: dict[str, np.ndarray]) -> dict[str, tuple]:
    two = (col["func"] != EltOp.COPY, "by COPY")
    add = (col["func"] == EltOp.ADD, "except by ADD")
    used = {name: two for name in ("bcast", "b_addr", "b_bits", "b_zero")}
    used.update(b_mult=add, b_shift=add)
    return used


def _check_eltwise(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    ab, bb, ob = _bytes(col["a_bits"]), _bytes(col["b_bits"]), _bytes(col["out_bits"])
    ch, h, w = col["c"], col["h"], col["w"]
    elements = ch * h * w
    b_elements = np.choose(np.clip(col["bcast"], 0, 3), [elements, ch, h * w, np.ones_like(ch)])
    two = used["b_addr"][0]
    sizes = {"a_addr": (elements * ab, None, ab), "b_addr": (b_elements * bb, two, bb),
             "out_addr": (elements * ob, None, ob)}
    for name, (size, mask, align) in sizes.items():
        c.sram(rows, Space.ACT, name, col[name], size, mask)
        c.aligned(rows, name, col[name], align, mask)
    out = ("out_addr", col["out_addr"], sizes["out_addr"][0])
    c.disjoint(rows, out, ("a_addr", col["a_addr"], sizes["a_addr"][0]), True)
    c.disjoint(rows, out, ("b_addr", col["b_addr"], sizes["b_addr"][0]), True, two)
    c.fail(rows, col["lo"] > col["hi"], "lo", col["lo"], lambda j: f"is above hi={int(col['hi'][j])}")


def _check_lut(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    if 8 not in c.config.data_widths:
        c.fail(rows, np.ones(rows.shape, bool), "in_addr", col["in_addr"],
               "reads 8-bit codes, and this config has no 8-bit data")
    ob = _bytes(col["out_bits"])
    count = col["count"]
    c.sram(rows, Space.ACT, "in_addr", col["in_addr"], count)
    c.sram(rows, Space.ACT, "out_addr", col["out_addr"], count * ob)
    c.sram(rows, Space.WGT, "param_addr", col["param_addr"], LUT_ENTRIES * ob)
    c.aligned(rows, "out_addr", col["out_addr"], ob)
    c.aligned(rows, "param_addr", col["param_addr"], PARAM_ALIGN)
    c.disjoint(rows, ("out_addr", col["out_addr"], count * ob), ("in_addr", col["in_addr"], count), True)


_USAGE = {Op.CONV: _conv_usage, Op.POOL: _pool_usage, Op.ELTWISE: _eltwise_usage}
_SPECIFIC = {Op.CONV: _check_conv, Op.POOL: _check_pool, Op.ELTWISE: _check_eltwise, Op.LUT: _check_lut}


def validate(stream: Any, config: HardwareConfig, dram_bytes_used: int | None = None) -> None:
    """Check a stream (bytes, or a list of Instructions) against a hardware
    config; IsaError names the earliest bad instruction, its opcode, the
    field and the value. ``dram_bytes_used`` (default: the card's
    dram_bytes) bounds every DRAM access."""
    _validate_array(decode_array(_stream_bytes(stream))[0], config, dram_bytes_used)


def _validate_array(arr: np.ndarray, config: HardwareConfig, dram_bytes_used: int | None) -> None:
    if not isinstance(config, HardwareConfig):
        raise IsaError(f"validate needs a HardwareConfig, got {type(config).__name__}")
    limit = config.dram_bytes
    if dram_bytes_used is not None:
        if not isinstance(dram_bytes_used, int) or not 0 <= dram_bytes_used <= config.dram_bytes:
            raise IsaError(f"dram_bytes_used={dram_bytes_used!r} is outside [0, dram_bytes={config.dram_bytes}]")
        limit = dram_bytes_used
    n = arr.shape[0]
    if n == 0:
        raise IsaError("the instruction stream is empty: it must end with END")
    c = _Checker(arr, config, limit)
    ops = arr[:, COL_OPCODE]
    for op_value in np.unique(ops):
        op = _OPS[int(op_value)]
        rows = np.flatnonzero(ops == op_value)
        col = {name: arr[rows, k] for name, k in COLUMNS[op].items()}
        used = _USAGE[op](col) if op in _USAGE else {}
        c.fields(op, rows, col, used)
        if op in (Op.LOAD, Op.STORE):
            _check_dma(c, op, rows, col)
        elif op in _SPECIFIC:
            _SPECIFIC[op](c, rows, col, used)
    flags = arr[:, 2] | arr[:, 3] << 1 | arr[:, 4] << 2 | arr[:, 5] << 3
    legal = np.array([0, int(LEGAL_TOKENS[Module.LOAD]), int(LEGAL_TOKENS[Module.COMPUTE]),
                      int(LEGAL_TOKENS[Module.STORE])])[arr[:, COL_MODULE]]
    legal = np.where(ops == Op.END, 0, legal)
    illegal = flags & ~legal
    if illegal.any():
        i = int(np.argmax(illegal != 0))
        name = TOKEN_NAMES[_lowest_bit(int(illegal[i]))]
        op = _OPS[int(ops[i])]
        why = "END carries no tokens" if op == Op.END else \
            f"{op.module.name} has no {'previous' if 'prev' in name else 'next'} module"
        c.errors.append((i, f"{_label(i, int(ops[i]))}: token flag {name} is illegal: {why}"))
    ends = np.flatnonzero(ops == Op.END)
    if ends.size and ends[0] != n - 1:
        c.errors.append((int(ends[0]), f"{_label(int(ends[0]), Op.END)}: END must be the last instruction "
                                       f"(the stream has {n})"))
    if ops[-1] != Op.END:
        c.errors.append((n - 1, f"the stream does not end with END (last is {_label(n - 1, int(ops[-1]))})"))
    c.raise_first()
    _check_tokens(arr)


def _lowest_bit(value: int) -> int:
    return (value & -value).bit_length() - 1


_QUEUE_NAMES = ("LOAD->COMPUTE", "COMPUTE->LOAD", "COMPUTE->STORE", "STORE->COMPUTE")
"""The four token queues, numbered 0-3 in the masks below."""


def _queue_masks(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per instruction, the queues it pops and pushes (bit q: queue q)."""
    module = arr[:, COL_MODULE]
    pop_prev, pop_next, push_prev, push_next = (arr[:, c] for c in COL_TOKENS)
    load, compute, store = (module == m for m in Module)
    pops = np.where(load, pop_next << 1, 0) | np.where(compute, pop_prev | pop_next << 3, 0) \
        | np.where(store, pop_prev << 2, 0)
    pushes = np.where(load, push_next, 0) | np.where(compute, push_prev << 1 | push_next << 2, 0) \
        | np.where(store, push_prev << 3, 0)
    return pops, pushes


@jit
def _run_tokens(order, starts, pops, pushes, command_depth, token_depth, done, queues):
    """The abstract machine of _check_tokens; ``order`` holds the stream
    positions of the LOAD, then COMPUTE, then STORE instructions, module m's
    from starts[m] to starts[m + 1]; advances done[m] and queues in place."""
    n = order.shape[0]
    progress = True
    while progress:
        progress = False
        head = n  # the fetch unit stops at the first instruction whose module's command queue is full
        for m in range(3):
            k = starts[m] + done[m] + command_depth
            if k < starts[m + 1] and order[k] < head:
                head = order[k]
        for m in range(3):
            k = done[m]
            size = starts[m + 1] - starts[m]
            while k < size:
                i = order[starts[m] + k]
                if i >= head:
                    break
                ok = True
                for q in range(4):
                    if (pops[i] >> q) & 1 and queues[q] == 0:
                        ok = False
                    if (pushes[i] >> q) & 1 and queues[q] >= token_depth:
                        ok = False
                if not ok:
                    break
                for q in range(4):
                    queues[q] += ((pushes[i] >> q) & 1) - ((pops[i] >> q) & 1)
                k += 1
            if k != done[m]:
                done[m] = k
                progress = True


def _check_tokens(arr: np.ndarray) -> None:
    """Run the token protocol abstractly: the fetch unit dispatches in stream
    order into per-module command queues (COMMAND_QUEUE_DEPTH), each module
    runs its instructions in order, an instruction waits until every queue
    it pops holds a token and every queue it pushes has room
    (TOKEN_QUEUE_DEPTH). Any order of enabled steps reaches the same end
    state (a Kahn network), so a stream that completes here completes on the
    device; at END every queue must be empty."""
    pops, pushes = _queue_masks(arr)
    module = arr[:, COL_MODULE]
    order = np.argsort(module, kind="stable").astype(np.int64)
    counts = np.array([np.count_nonzero(module == m) for m in Module], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    done, queues = np.zeros(3, np.int64), np.zeros(4, np.int64)
    _run_tokens(order, starts, pops.astype(np.int64), pushes.astype(np.int64), COMMAND_QUEUE_DEPTH,
                TOKEN_QUEUE_DEPTH, done, queues)
    if (done < counts).any():
        waits = []
        for m, k in zip(Module, done.tolist()):
            if k < counts[m - 1]:
                i = int(order[starts[m - 1] + k])
                why = [f"pops the empty {name} queue" for q, name in enumerate(_QUEUE_NAMES)
                       if pops[i] >> q & 1 and queues[q] == 0]
                why += [f"pushes the full {name} queue" for q, name in enumerate(_QUEUE_NAMES)
                        if pushes[i] >> q & 1 and queues[q] >= TOKEN_QUEUE_DEPTH]
                waits.append(f"{m.name} waits at {_label(i, int(arr[i, COL_OPCODE]))}, which "
                             f"{' and '.join(why) or 'the fetch unit has not dispatched'}")
        raise IsaError("the token protocol deadlocks: " + "; ".join(waits))
    left = [f"{name} ({int(queues[q])})" for q, name in enumerate(_QUEUE_NAMES) if queues[q]]
    if left:
        raise IsaError(f"tokens are left at END in the {', '.join(left)} queue: every push needs a pop")


class StreamKey(NamedTuple):
    """Where a stream runs: the card, the cluster on it, and the phase (the
    streams of one phase run together; phases run one after the other)."""

    card: int
    cluster: int
    phase: int = 0


def validate_streams(streams: Mapping[tuple[int, ...], Any], config: HardwareConfig,
                     dram_bytes_used: int | None = None) -> None:
    """Validate each stream of a program and the barriers between them: each
    key names a card and cluster of the config (and a phase); in a phase, a
    barrier id appears at most once per stream, every stream using it gives
    the number of streams using it as participants, and the streams meet
    their barriers in one consistent order (so no two wait for each other)."""
    phases: dict[int, dict[StreamKey, list[tuple[int, int, int]]]] = {}
    for raw_key, stream in streams.items():
        try:
            key = StreamKey(*(operator.index(k) for k in raw_key))
        except TypeError:
            raise IsaError(f"stream key {raw_key!r} must be (card, cluster[, phase]) integers") from None
        if not (0 <= key.card < config.cards and 0 <= key.cluster < config.clusters_per_card and key.phase >= 0):
            raise IsaError(f"stream {tuple(key)}: card or cluster outside this config "
                           f"({config.cards} cards x {config.clusters_per_card} clusters) or negative phase")
        try:
            arr = decode_array(_stream_bytes(stream))[0]
            _validate_array(arr, config, dram_bytes_used)
        except IsaError as exc:
            raise IsaError(f"stream {tuple(key)}: {exc}") from None
        syncs = np.flatnonzero(arr[:, COL_OPCODE] == Op.SYNC)
        cols = COLUMNS[Op.SYNC]
        barriers = [(int(arr[i, cols["barrier"]]), int(arr[i, cols["participants"]]), int(i)) for i in syncs]
        seen: dict[int, int] = {}
        for barrier, _, i in barriers:
            if barrier in seen:
                raise IsaError(f"stream {tuple(key)}: instruction {i} (SYNC): barrier={barrier} is used again "
                               f"(first at instruction {seen[barrier]})")
            seen[barrier] = i
        phases.setdefault(key.phase, {})[key] = barriers
    for phase, members in phases.items():
        users: dict[int, list[tuple[StreamKey, int, int]]] = {}
        after: dict[int, set[int]] = {}
        for key, barriers in members.items():
            for k, (barrier, count, i) in enumerate(barriers):
                users.setdefault(barrier, []).append((key, count, i))
                after.setdefault(barrier, set())
                if k:
                    after[barriers[k - 1][0]].add(barrier)
        for barrier, uses in sorted(users.items()):
            for key, count, i in uses:
                if count != len(uses):
                    raise IsaError(f"stream {tuple(key)}: instruction {i} (SYNC): participants={count} but "
                                   f"{len(uses)} streams of phase {phase} meet at barrier {barrier}")
        _check_barrier_order(phase, after)


def _check_barrier_order(phase: int, after: dict[int, set[int]]) -> None:
    """Kahn's algorithm over "barrier a comes before b in some stream"."""
    incoming = dict.fromkeys(after, 0)
    for nexts in after.values():
        for b in nexts:
            incoming[b] += 1
    ready = [b for b, k in incoming.items() if k == 0]
    while ready:
        b = ready.pop()
        for nxt in after[b]:
            incoming[nxt] -= 1
            if incoming[nxt] == 0:
                ready.append(nxt)
    stuck = sorted(b for b, k in incoming.items() if k)
    if stuck:
        raise IsaError(f"phase {phase}: streams meet barriers {stuck} in conflicting orders (they would deadlock)")


# ---------------------------------------------------------------- documentation
def field_table_markdown() -> str:
    """The opcode summary and every opcode's encoding table, as markdown
    (pasted into docs/isa.md; a test keeps the two in sync)."""
    out = ["| opcode | mnemonic | module | fields | summary |", "|---|---|---|---|---|"]
    for op, spec in SPECS.items():
        out.append(f"| 0x{int(op):02X} | {op.name} | {op.module.name} | {len(spec.fields)} | {spec.summary} |")
    out += ["", "#### Header (every instruction)", "",
            "| bits | field | meaning |", "|---|---|---|",
            "| 7:0 | opcode | the opcode; bits 7:4 are the module |"]
    for k, name in enumerate(TOKEN_NAMES):
        out.append(f"| {8 + k} | {name} | token flag |")
    out.append("| 15:12 | reserved | 0 |")
    for op, spec in SPECS.items():
        if not spec.fields:
            continue
        out += ["", f"#### {op.name} (0x{int(op):02X}, {op.module.name})", "",
                "| bits | field | width | signed | valid | meaning |", "|---|---|---|---|---|---|"]
        for f in spec.fields:
            bits = f"{f.offset + f.bits - 1}:{f.offset}" if f.bits > 1 else str(f.offset)
            out.append(f"| {bits} | {f.name} | {f.bits} | {'yes' if f.signed else ''} | {f.rule()} | {f.doc} |")
        out.append(f"| {INSTR_BITS - 1}:{spec.end_bit} | reserved | {INSTR_BITS - spec.end_bit} | | 0 | |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m runtime.isa > tables.md
    print(field_table_markdown(), end="")
