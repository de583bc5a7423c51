"""Encoding, decoding and disassembly, all derived from the field tables
(:mod:`runtime.isa.spec`)."""
from __future__ import annotations

import operator
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from runtime.isa.spec import (
    _KNOWN,
    _OPS,
    _RESERVED,
    _TOKEN_VALUES,
    COL_MODULE,
    COL_OPCODE,
    COL_TOKENS,
    COLUMNS,
    FIRST_FIELD_COLUMN,
    INSTR_BYTES,
    INSTR_WORDS,
    N_COLUMNS,
    SPECS,
    TOKEN_NAMES,
    Instruction,
    IsaError,
    Op,
)


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
    arr = decode_array(stream_bytes(data))[0]
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


def stream_bytes(stream: Any) -> Any:
    """A stream given as bytes as it is; a list of Instructions encoded."""
    if isinstance(stream, (list, tuple)):
        return encode_stream(stream)
    return stream
