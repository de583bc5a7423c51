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

The package: :mod:`runtime.isa.spec` (the tables), :mod:`runtime.isa.codec`
(encoding, decoding, disassembly), :mod:`runtime.isa.validate`.
"""
from runtime.isa.codec import (  # noqa: F401
    decode,
    decode_array,
    disassemble,
    encode,
    encode_array,
    encode_stream,
    from_array,
    to_array,
)
from runtime.isa.spec import (  # noqa: F401
    AVG_ENTRY_BYTES,
    COL_MODULE,
    COL_OPCODE,
    COL_TOKENS,
    COLUMNS,
    COMMAND_QUEUE_DEPTH,
    DRAM_ADDR_BITS,
    FIRST_FIELD_COLUMN,
    HEADER_BITS,
    INSTR_BITS,
    INSTR_BYTES,
    INSTR_WORDS,
    LEGAL_TOKENS,
    LUT_ENTRIES,
    MAX_EXTENT,
    N_COLUMNS,
    PARAM_ALIGN,
    PARAM_CHANNEL_BYTES,
    SPECS,
    SRAM_ADDR_BITS,
    TOKEN_NAMES,
    TOKEN_QUEUE_DEPTH,
    WIDE_LUT_ENTRIES,
    AccMode,
    Bcast,
    EltOp,
    Field,
    Instruction,
    IsaError,
    Module,
    Op,
    OpSpec,
    PoolMode,
    Space,
    Token,
    column,
    field_table_markdown,
    instr,
    linear_box,
    linear_size,
)
from runtime.isa.validate import (  # noqa: F401
    StreamKey,
    validate,
    validate_streams,
)

__all__ = [
    "AVG_ENTRY_BYTES",
    "AccMode",
    "Bcast",
    "COLUMNS",
    "COL_MODULE",
    "COL_OPCODE",
    "COL_TOKENS",
    "COMMAND_QUEUE_DEPTH",
    "DRAM_ADDR_BITS",
    "EltOp",
    "FIRST_FIELD_COLUMN",
    "Field",
    "HEADER_BITS",
    "INSTR_BITS",
    "INSTR_BYTES",
    "INSTR_WORDS",
    "Instruction",
    "IsaError",
    "LEGAL_TOKENS",
    "LUT_ENTRIES",
    "Module",
    "N_COLUMNS",
    "Op",
    "OpSpec",
    "PARAM_ALIGN",
    "PARAM_CHANNEL_BYTES",
    "PoolMode",
    "SPECS",
    "SRAM_ADDR_BITS",
    "Space",
    "StreamKey",
    "TOKEN_NAMES",
    "TOKEN_QUEUE_DEPTH",
    "Token",
    "WIDE_LUT_ENTRIES",
    "column",
    "decode",
    "decode_array",
    "disassemble",
    "encode",
    "encode_array",
    "encode_stream",
    "field_table_markdown",
    "from_array",
    "instr",
    "to_array",
    "validate",
    "validate_streams",
]
