"""Validation of instruction streams against a hardware config: fields,
buffers, DRAM, alignment, tokens (no deadlock), barriers across streams."""
from __future__ import annotations

import operator
from typing import Any, Mapping, NamedTuple

import numpy as np

from runtime.hardware import HardwareConfig
from runtime.isa.codec import _label, decode_array, stream_bytes
from runtime.isa.spec import (
    _OPS,
    AVG_ENTRY_BYTES,
    COL_MODULE,
    COL_OPCODE,
    COL_TOKENS,
    COLUMNS,
    COMMAND_QUEUE_DEPTH,
    LEGAL_TOKENS,
    LUT_ENTRIES,
    PARAM_ALIGN,
    PARAM_CHANNEL_BYTES,
    SPECS,
    TOKEN_NAMES,
    TOKEN_QUEUE_DEPTH,
    WIDE_LUT_ENTRIES,
    AccMode,
    EltOp,
    IsaError,
    Module,
    Op,
    PoolMode,
    Space,
)
from runtime.jit import jit
from runtime.qscheme import ACTIVATION_RANGE, INT8, INT16, SOFTMAX_ENTRIES


# ---------------------------------------------------------------- validation
def _storage_range(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[low, high] of int8 / int16 per width (other widths: the 16-bit range;
    the width itself is reported separately)."""
    (low8, high8), (low16, high16) = ACTIVATION_RANGE[INT8], ACTIVATION_RANGE[INT16]
    return np.where(bits == 8, low8, low16), np.where(bits == 8, high8, high16)


class _Checker:
    """Collects the first violation of each rule; the earliest instruction's
    message is raised."""

    def __init__(self, arr: np.ndarray, config: HardwareConfig, dram_limit: int):
        self.arr, self.config, self.dram_limit = arr, config, dram_limit
        self.errors: list[tuple[int, str]] = []
        self.buffers = {Space.WGT: config.weight_buffer_bytes, Space.ACT: config.activation_buffer_bytes,
                        Space.ACC: config.accumulator_buffer_bytes}
        self.extents = dict.fromkeys(Space, 0)
        """Per space, the end of the furthest byte any instruction reads or writes."""

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
        reach = addr + size
        for s in Space:
            mine = space == s if used is None else (space == s) & used
            if mine.any():
                self.extents[s] = max(self.extents[s], int(reach[mine].max()))

    def dram(self, rows: np.ndarray, op: Op, addr: np.ndarray, span: np.ndarray) -> None:
        """A LOAD's or STORE's DRAM bytes [addr, addr + span) inside the DRAM used."""
        self.fail(rows, addr + span > self.dram_limit, "dram_addr", addr,
                  lambda j: f"+ {int(span[j])} bytes runs past DRAM ({self.dram_limit} bytes)")

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
        low, high = _storage_range(8 * eb_ok)
        c.fail(rows, (pv < low) | (pv > high), "pad_value", pv,
               lambda j: f"does not fit a {int(eb[j])}-byte element")
    c.sram(rows, col["space"], "sram_addr", col["sram_addr"], z * y * x * eb_ok)
    span = eb_ok * ((col["z_size"] - 1) * col["z_stride"] + (col["y_size"] - 1) * col["y_stride"]
                    + (col["x_size"] - 1) * col["x_stride"] + 1)
    c.dram(rows, op, col["dram_addr"], span)
    c.aligned(rows, "sram_addr", col["sram_addr"], eb_ok)
    c.aligned(rows, "dram_addr", col["dram_addr"], eb_ok)


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
    used["lut"] = out
    used["lut_addr"] = used["lut_wide"] = (epilogue & (col["lut"] == 1), "without a table (lut=0)")
    return used


def _out_size(size: np.ndarray, kernel: np.ndarray, stride: np.ndarray, dilation) -> tuple[np.ndarray, np.ndarray]:
    span = dilation * (kernel - 1) + 1
    return span, np.where(size >= span, (size - span) // np.maximum(stride, 1) + 1, 1)


def conv_wgt_reads(col: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What CONVs (their columns ``col``) read in WGT, by address field:
    (bytes, where read): the weights always, the PARAM records but in MIDDLE
    mode, the table with lut=1 and an epilogue (256 entries, 513 with
    lut_wide=1, of out_bits each). What this validator bounds, and what
    runtime/sim/forward.py follows."""
    used = _conv_usage(col)
    out_c = col["out_c"]
    weights = (out_c * (col["in_c"] // np.maximum(col["groups"], 1)) * col["kernel_h"] * col["kernel_w"]
               * _bytes(col["wgt_bits"]))
    table = np.where(col["lut_wide"] == 1, WIDE_LUT_ENTRIES, LUT_ENTRIES) * _bytes(col["out_bits"])
    return {"wgt_addr": (weights, np.ones(out_c.shape, bool)),
            "param_addr": (out_c * PARAM_CHANNEL_BYTES, used["param_addr"][0]),
            "lut_addr": (table, used["lut_addr"][0])}


def _check_conv(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    ib, wb, ob, rb = (_bytes(col[k]) for k in ("in_bits", "wgt_bits", "out_bits", "res_bits"))
    wgt = conv_wgt_reads(col)
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
        "wgt_addr": (Space.WGT, wgt["wgt_addr"][0], None, wb),
        "param_addr": (Space.WGT, wgt["param_addr"][0], used["param_addr"][0], PARAM_ALIGN),
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
    _check_conv_table(c, rows, col, used["lut_addr"][0], wgt["lut_addr"][0])


def _check_conv_table(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], table: np.ndarray,
                      size: np.ndarray) -> None:
    """With lut=1 the clamp gives the table's codes. lut_wide=0: int8 codes
    indexing 256 entries (out_zero, lo and hi in the int8 range, a config
    with 8-bit data); lut_wide=1: int16 codes interpolated in 513 entries,
    mapped in place (out_bits=16, so 16 is a data width of the config: the
    field check of out_bits says so). Either table inside WGT, 8-byte
    aligned."""
    wide = table & (col["lut_wide"] == 1)
    narrow = table & ~wide
    low, high = ACTIVATION_RANGE[INT8]
    if 8 not in c.config.data_widths:
        c.fail(rows, narrow, "lut", col["lut"], "indexes a table by 8-bit codes, and this config has no 8-bit data")
    for name in ("out_zero", "lo", "hi"):
        c.fail(rows, narrow & ((col[name] < low) | (col[name] > high)), name, col[name],
               "is outside the int8 range: with lut=1 the clamp gives the table's index")
    c.fail(rows, wide & (col["out_bits"] != 16), "lut_wide", col["lut_wide"],
           lambda j: f"needs out_bits=16 (the table maps the clamp's int16 codes in place), not "
                     f"out_bits={int(col['out_bits'][j])}")
    c.sram(rows, Space.WGT, "lut_addr", col["lut_addr"], size, table)
    c.aligned(rows, "lut_addr", col["lut_addr"], PARAM_ALIGN, table)


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
    rescaled = (np.isin(col["func"], (EltOp.ADD, EltOp.SUB, EltOp.MAX, EltOp.MIN)), "by MUL and COPY")
    used = {name: two for name in ("bcast", "b_addr", "b_bits", "b_zero")}
    used.update(b_mult=rescaled, b_shift=rescaled)
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
    """wide=0: count int8 codes index a 256-entry table; wide=1: count int16
    codes (2-byte aligned) interpolate a 513-entry one. The table has
    out_bits elements; the output is disjoint from the input or exactly it."""
    wide = col["wide"] == 1
    if 8 not in c.config.data_widths:
        c.fail(rows, ~wide, "in_addr", col["in_addr"], "reads 8-bit codes, and this config has no 8-bit data")
    if 16 not in c.config.data_widths:
        c.fail(rows, wide, "wide", col["wide"], "reads 16-bit codes, and this config has no 16-bit data")
    ib, ob = np.where(wide, 2, 1).astype(np.int64), _bytes(col["out_bits"])
    count = col["count"]
    c.sram(rows, Space.ACT, "in_addr", col["in_addr"], count * ib)
    c.sram(rows, Space.ACT, "out_addr", col["out_addr"], count * ob)
    c.sram(rows, Space.WGT, "param_addr", col["param_addr"], np.where(wide, WIDE_LUT_ENTRIES, LUT_ENTRIES) * ob)
    c.aligned(rows, "in_addr", col["in_addr"], ib)
    c.aligned(rows, "out_addr", col["out_addr"], ob)
    c.aligned(rows, "param_addr", col["param_addr"], PARAM_ALIGN)
    c.disjoint(rows, ("out_addr", col["out_addr"], count * ob), ("in_addr", col["in_addr"], count * ib), True)


def _check_matmul(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    ab, bb, ob = _bytes(col["a_bits"]), _bytes(col["b_bits"]), _bytes(col["out_bits"])
    batch, m, k, n = col["batch"], col["m"], col["k"], col["n"]
    sizes = {"a_addr": batch * m * k * ab, "b_addr": batch * k * n * bb, "out_addr": batch * m * n * ob}
    for name, size in sizes.items():
        c.sram(rows, Space.ACT, name, col[name], size)
    for name, width in (("a_addr", ab), ("b_addr", bb), ("out_addr", ob)):
        c.aligned(rows, name, col[name], width)
    out = ("out_addr", col["out_addr"], sizes["out_addr"])
    c.disjoint(rows, out, ("a_addr", col["a_addr"], sizes["a_addr"]), False)
    c.disjoint(rows, out, ("b_addr", col["b_addr"], sizes["b_addr"]), False)
    c.fail(rows, col["lo"] > col["hi"], "lo", col["lo"], lambda j: f"is above hi={int(col['hi'][j])}")


def _check_softmax(c: _Checker, rows: np.ndarray, col: dict[str, np.ndarray], used: dict[str, tuple]) -> None:
    ib, ob = _bytes(col["in_bits"]), _bytes(col["out_bits"])
    count = col["rows"] * col["cols"]
    c.sram(rows, Space.ACT, "in_addr", col["in_addr"], count * ib)
    c.sram(rows, Space.ACT, "out_addr", col["out_addr"], count * ob)
    c.sram(rows, Space.WGT, "param_addr", col["param_addr"], np.full(count.shape, SOFTMAX_ENTRIES * 4))
    c.aligned(rows, "in_addr", col["in_addr"], ib)
    c.aligned(rows, "out_addr", col["out_addr"], ob)
    c.aligned(rows, "param_addr", col["param_addr"], PARAM_ALIGN)
    c.disjoint(rows, ("out_addr", col["out_addr"], count * ob), ("in_addr", col["in_addr"], count * ib), False)
    c.fail(rows, col["lo"] > col["hi"], "lo", col["lo"], lambda j: f"is above hi={int(col['hi'][j])}")


_USAGE = {Op.CONV: _conv_usage, Op.POOL: _pool_usage, Op.ELTWISE: _eltwise_usage}
_SPECIFIC = {Op.CONV: _check_conv, Op.POOL: _check_pool, Op.ELTWISE: _check_eltwise, Op.LUT: _check_lut,
             Op.MATMUL: _check_matmul, Op.SOFTMAX: _check_softmax}


def validate(stream: Any, config: HardwareConfig, dram_bytes_used: int | None = None) -> None:
    """Check a stream (bytes, or a list of Instructions) against a hardware
    config; IsaError names the earliest bad instruction, its opcode, the
    field and the value. ``dram_bytes_used`` (default: the card's
    dram_bytes) bounds every DRAM access."""
    _validate_array(decode_array(stream_bytes(stream))[0], config, dram_bytes_used)


def _validate_array(arr: np.ndarray, config: HardwareConfig, dram_bytes_used: int | None) -> dict[Space, int]:
    """Raise IsaError on the earliest violation; else each on-chip space's
    extent: the end of the furthest byte an instruction reads or writes."""
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
    return c.extents


def _lowest_bit(value: int) -> int:
    return (value & -value).bit_length() - 1


_QUEUE_NAMES = ("LOAD->COMPUTE", "COMPUTE->LOAD", "COMPUTE->STORE", "STORE->COMPUTE")
"""The four token queues, numbered 0-3 in the masks below."""


def queue_masks(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    pops, pushes = queue_masks(arr)
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
                     dram_bytes_used: int | None = None) -> dict[Space, int]:
    """Validate each stream of a program and the barriers between them: each
    key names a card and cluster of the config (and a phase); in a phase, a
    barrier id appears at most once per stream, every stream using it gives
    the number of streams using it as participants, and the streams meet
    their barriers in one consistent order (so no two wait for each other).
    Returns each on-chip space's extent over every stream: no instruction
    reads or writes a cluster buffer's bytes at or past it."""
    phases: dict[int, dict[StreamKey, list[tuple[int, int, int]]]] = {}
    extents = dict.fromkeys(Space, 0)
    for raw_key, stream in streams.items():
        try:
            key = StreamKey(*(operator.index(k) for k in raw_key))
        except TypeError:
            raise IsaError(f"stream key {raw_key!r} must be (card, cluster[, phase]) integers") from None
        if not (0 <= key.card < config.cards and 0 <= key.cluster < config.clusters_per_card and key.phase >= 0):
            raise IsaError(f"stream {tuple(key)}: card or cluster outside this config "
                           f"({config.cards} cards x {config.clusters_per_card} clusters) or negative phase")
        try:
            arr = decode_array(stream_bytes(stream))[0]
            for space, extent in _validate_array(arr, config, dram_bytes_used).items():
                extents[space] = max(extents[space], extent)
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
    return extents


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
