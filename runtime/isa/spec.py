"""The ISA's definition: sizes, enumerations, the field table of every
opcode (``SPECS``), the decoded matrix's columns, and :class:`Instruction`;
and the encoding tables of docs/isa.md (:func:`field_table_markdown`)."""
from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, replace

import numpy as np

from runtime import qscheme
from runtime.errors import TesseraError

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
LUT_ENTRIES = qscheme.TABLE_ENTRIES
"""Entries of a table read by int8 codes (LUT, CONV with lut=1): entry q + 128 for code q."""
WIDE_LUT_ENTRIES = qscheme.WIDE_TABLE_ENTRIES
"""Entries of a table read by int16 codes (LUT with wide=1, CONV with lut_wide=1): entry i
is the function at code -32768 + 128·i, interpolated between (runtime.qscheme.wide_lookup)."""
PARAM_ALIGN = 8
"""PARAM blocks (in the weight buffer) start at a multiple of 8 bytes."""
TOKEN_QUEUE_DEPTH = 256
"""Tokens each of the four dependency queues holds; a push waits while full."""
COMMAND_QUEUE_DEPTH = 256
"""Instructions each module's command queue holds: the fetch unit dispatches
the stream in order and waits while the next instruction's module is full."""
MAX_EXTENT = 0xFFFF
"""The largest size a dimension field (a box, a tile, a count) holds."""


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
    MATMUL = 0x25
    SOFTMAX = 0x26
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
    """ELTWISE's function: a requantised sum, difference, product, maximum
    or minimum of a and b, or a requantising copy of a."""

    ADD = qscheme.ADD
    MUL = 1
    COPY = 2
    SUB = qscheme.SUB
    MAX = qscheme.MAX
    MIN = qscheme.MIN


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
    return Field(name, 16, doc, valid=(1, MAX_EXTENT))


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
    (Op.CONV, "convolution tile + bias + requantisation + residual + clamp + table (GEMM = 1×1 CONV)", (
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
        Field("lut", 1, "1: map each clamped code through a table (int8 codes: 256 entries)", values=(0, 1)),
        _sram("lut_addr", "WGT address of the table [256] or [513] (out_bits)"),
        Field("lut_wide", 1, "1: the clamp gives int16 codes, interpolated in a 513-entry table", values=(0, 1)),
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
    (Op.ELTWISE, "element-wise add, subtract, multiply, max, min or requantising copy of ACT tiles", (
        Field("func", 3, "the function of a and b", choices=EltOp),
        Field("bcast", 2, "shape of b (all but COPY)", choices=Bcast),
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
        _mult("b_mult", "b's multiplier (all but MUL and COPY)"),
        _shift("b_shift", "b's shift (all but MUL and COPY)"),
        _sram("out_addr", "ACT address of the output [c][h][w]"),
        _width("out_bits", "output element width"),
        _zero("out_zero", "out_bits", "output zero point"),
        _zero("lo", "out_bits", "clamp low"),
        _zero("hi", "out_bits", "clamp high"),
    )),
    (Op.LUT, "table lookup: 256 entries by 8-bit codes, or 513 interpolated by 16-bit codes", (
        _sram("in_addr", "ACT address of count codes (int8; int16 when wide)"),
        Field("count", 32, "elements", valid=(1, (1 << 32) - 1)),
        _sram("param_addr", "WGT address of the table [256] or [513] (out_bits)"),
        _sram("out_addr", "ACT address of the output [count]"),
        _width("out_bits", "output element width"),
        Field("wide", 1, "1: int16 codes, interpolated in a 513-entry table", values=(0, 1)),
    )),
    (Op.MATMUL, "batched product of two ACT tiles with zero points, requantised and clamped", (
        _dim("batch", "matrix pairs, one after another"),
        _dim("m", "rows of a and of the output"),
        _dim("k", "columns of a, rows of b (the reduction)"),
        _dim("n", "columns of b and of the output"),
        _sram("a_addr", "ACT address of a [batch][m][k]"),
        _width("a_bits", "a's element width"),
        _zero("a_zero", "a_bits", "a's zero point"),
        _sram("b_addr", "ACT address of b [batch][k][n]"),
        _width("b_bits", "b's element width"),
        _zero("b_zero", "b_bits", "b's zero point"),
        _sram("out_addr", "ACT address of the output [batch][m][n]"),
        _width("out_bits", "output element width"),
        _zero("out_zero", "out_bits", "output zero point"),
        _mult("mult", "the product's multiplier"),
        _shift("shift", "the product's shift"),
        _zero("lo", "out_bits", "clamp low"),
        _zero("hi", "out_bits", "clamp high"),
    )),
    (Op.SOFTMAX, "softmax over each row of an ACT tile: table exp, 32-bit sum, reciprocal, requantised", (
        _dim("rows", "rows, each normalised on its own"),
        _dim("cols", "elements of a row"),
        _sram("in_addr", "ACT address of the input [rows][cols]"),
        _width("in_bits", "input element width"),
        _mult("in_mult", "multiplier of max - x onto the table's step"),
        _shift("in_shift", "shift of max - x onto the table's step"),
        _sram("param_addr", "WGT address of the exp table [256] (int32, Q15)"),
        _sram("out_addr", "ACT address of the output [rows][cols]"),
        _width("out_bits", "output element width"),
        _zero("out_zero", "out_bits", "output zero point"),
        _mult("mult", "multiplier of the Q30 probability"),
        _shift("shift", "shift of the Q30 probability"),
        _zero("lo", "out_bits", "clamp low"),
        _zero("hi", "out_bits", "clamp high"),
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


# ---------------------------------------------------------------- linear copies
def linear_box(nbytes: int) -> tuple[int, tuple[int, int, int], tuple[int, int, int]]:
    """Element size, box and strides of the one LOAD or STORE that copies
    ``nbytes`` contiguous bytes (a multiple of 8; of 512 when more than 512 KiB):
    8-byte words, in rows of 64 words past what one dimension holds."""
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
