"""The simulator tests' harness: a DRAM image, programs run on the
simulator, and Python-integer oracles of a CONV's sums and epilogue (the
rescale is tests/oracle.py's)."""
from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import HealthCheck, settings

from runtime import isa
from runtime.hardware import HardwareConfig
from runtime.isa import Op, PoolMode, Space, instr
from runtime.isa import Token as T
from runtime.sim import Simulator
from runtime.sim import simulator as sim_module
from tests.oracle import rescale

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIG = HardwareConfig()


RECORD = np.dtype([("bias", "<i8"), ("mult", "<i4"), ("shift", "<i4"), ("neg_mult", "<i4"), ("neg_shift", "<i4")])
DTYPE = {8: np.int8, 16: np.int16}


def wrap32(v):
    return ((np.asarray(v, dtype=object) + (1 << 31)) % (1 << 32)) - (1 << 31)


def clamp(v, lo, hi):
    return np.minimum(np.maximum(np.asarray(v, dtype=object), lo), hi)


def conv_sums(x, w, groups, stride, dilation):
    """Σ x·w of a convolution [K][OH][OW] (object ints)."""
    c_in, in_h, in_w = x.shape
    k_out, cg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    oh, ow = (in_h - dh * (kh - 1) - 1) // sh + 1, (in_w - dw * (kw - 1) - 1) // sw + 1
    x = x.astype(object)
    out = np.zeros((k_out, oh, ow), dtype=object)
    kg = k_out // groups
    for k in range(k_out):
        g = k // kg
        for c in range(cg):
            for ky in range(kh):
                for kx in range(kw):
                    rows = slice(ky * dh, ky * dh + (oh - 1) * sh + 1, sh)
                    patch = x[g * cg + c, rows, kx * dw:kx * dw + (ow - 1) * sw + 1:sw]
                    out[k] += patch * int(w[k, c, ky, kx])
    return out


def conv_epilogue(acc, records, out_bits, out_zero, lo, hi, residual=None):
    """rescale by the records (negative multipliers below 0), residual, clamp."""
    out = np.empty(acc.shape, dtype=object)
    for k, rec in enumerate(records):
        a = acc[k]
        pos = rescale(a, int(rec["mult"]), int(rec["shift"]))
        neg = rescale(a, int(rec["neg_mult"]), int(rec["neg_shift"]))
        out[k] = np.where(a < 0, neg, pos)
    if residual is not None:
        r, rz, rm, rs = residual
        out = out + rescale(r.astype(object) - rz, rm, rs)
    return clamp(out + out_zero, lo, hi).astype(DTYPE[out_bits])


class Image:
    """A DRAM image built up from arrays at 64-byte aligned addresses."""

    def __init__(self, size: int = 1 << 20):
        self.data, self.top = np.zeros(size, np.uint8), 0

    def put(self, array: np.ndarray) -> int:
        raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        addr = self.top
        self.data[addr:addr + raw.size] = raw
        self.top = -(-(addr + raw.size) // 64) * 64
        return addr

    def reserve(self, nbytes: int) -> int:
        addr = self.top
        self.top = -(-(addr + nbytes) // 64) * 64
        return addr


def flat_box(nbytes: int) -> dict:
    """A LOAD/STORE box of nbytes contiguous bytes (rows of up to 1024)."""
    x = next(x for x in range(min(nbytes, 1024), 0, -1) if nbytes % x == 0)
    return dict(elem_bytes=1, z_size=1, y_size=nbytes // x, x_size=x, y_stride=x, x_stride=1)


def single_phase(loads, computes, stores, image: Image, config=CONFIG):
    """LOADs, then COMPUTE instructions, then STOREs, chained by one token
    each way: loads [(space, sram_addr, array)], stores [(space, sram_addr,
    nbytes)]. Returns (stream bytes, DRAM addresses of the stores)."""
    prog = []
    for j, (space, sram, array) in enumerate(loads):
        flags = T.PUSH_NEXT if j == len(loads) - 1 else 0
        prog.append(instr(Op.LOAD, flags, space=space, sram_addr=sram, dram_addr=image.put(array),
                          **flat_box(array.nbytes)))
    for j, ins in enumerate(computes):
        flags = (T.POP_PREV if j == 0 else 0) | (T.PUSH_NEXT if j == len(computes) - 1 and stores else 0)
        prog.append(isa.Instruction(ins.op, ins.fields, flags))
    outs = []
    for j, (space, sram, nbytes) in enumerate(stores):
        outs.append(image.reserve(nbytes))
        prog.append(instr(Op.STORE, T.POP_PREV if j == 0 else 0, space=space, sram_addr=sram, dram_addr=outs[-1],
                          **flat_box(nbytes)))
    return isa.encode_stream(prog + [instr(Op.END)]), outs


def simulate(loads, computes, stores, large=False, config=CONFIG):
    """Run a single-stream program; return each store's bytes and the simulator."""
    image = Image()
    stream, outs = single_phase(loads, computes, stores, image, config)
    with mock.patch.object(sim_module, "LARGE_CONV_MACS", 0 if large else 1 << 62):
        sim = Simulator(config, {(0, 0): stream}, image.top)
    sim.run([image.data])
    return [image.data[a:a + n].copy() for a, (_, _, n) in zip(outs, stores)], sim


def records(rng, out_c, bias_bound=1000, neg=False):
    rec = np.zeros(out_c, RECORD)
    rec["bias"] = rng.integers(-bias_bound, bias_bound + 1, out_c)
    rec["mult"] = rng.integers(1 << 30, 1 << 31, out_c)
    rec["shift"] = rng.integers(8, 24, out_c)
    rec["shift"][1::2] = rng.integers(33, 46, out_c // 2)  # the epilogue's 32-bit path (qscheme.rescale_high)
    rec["neg_mult"] = rng.integers(1 << 30, 1 << 31, out_c) if neg else rec["mult"]
    rec["neg_shift"] = rng.integers(10, 30, out_c) if neg else rec["shift"]
    return rec


def values(rng, bits, shape, bound=None):
    bound = bound or (1 << (bits - 1))
    return rng.integers(-bound, bound, shape).astype(DTYPE[bits])


def padded(nbytes):
    return -(-nbytes // 1024) * 1024 if nbytes > 1024 else nbytes


def as_load(space, addr, array):
    """array's bytes padded to a flat_box size."""
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return space, addr, np.concatenate([raw, np.zeros(padded(raw.size) - raw.size, np.uint8)])


def check_pool(rng, mode, bits, c, in_hw, kernel, stride, pads, bounds=None):
    """One POOL of random values against the Python-integer oracle;
    ``bounds`` (lo, hi), by default a little inside the output's range."""
    (in_h, in_w), (kh, kw), (sh, sw), (top, bottom, left, right) = in_hw, kernel, stride, pads
    x = values(rng, bits, (c, in_h, in_w))
    out_bits = bits if mode == PoolMode.MAX else int(rng.choice([8, 16]))
    lo, hi = bounds or (-(1 << (out_bits - 1)) + 3, (1 << (out_bits - 1)) - 5)
    x_zero, out_zero = (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))) if mode == PoolMode.AVG else (0, 0)
    table = np.zeros((kh * kw, 2), np.int32)
    table[:, 0] = rng.integers(1 << 30, 1 << 31, kh * kw)
    table[:, 1] = rng.integers(1, 20, kh * kw)
    oh, ow = (in_h - kh) // sh + 1, (in_w - kw) // sw + 1
    expect = np.empty((c, oh, ow), dtype=object)
    for oy in range(oh):
        for ox in range(ow):
            y0, y1 = max(oy * sh, top), min(oy * sh + kh, in_h - bottom)
            x0, x1 = max(ox * sw, left), min(ox * sw + kw, in_w - right)
            window = x[:, y0:y1, x0:x1].astype(object)
            if y1 <= y0 or x1 <= x0:
                return  # a window of padding only: the validator's business, not this test's
            if mode == PoolMode.MAX:
                expect[:, oy, ox] = window.max(axis=(1, 2))
            else:
                m, n = table[window[0].size - 1]
                expect[:, oy, ox] = rescale((window - x_zero).sum(axis=(1, 2)), int(m), int(n)) + out_zero
    expect = clamp(expect, lo, hi).astype(DTYPE[out_bits])
    out_at = 4096 * (1 + x.nbytes // 4096)  # past the input, word-aligned
    fields = dict(mode=mode, in_addr=0, in_bits=bits, c=c, in_h=in_h, in_w=in_w, kernel_h=kh, kernel_w=kw,
                  stride_h=sh, stride_w=sw, pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right,
                  out_addr=out_at, out_bits=out_bits, x_zero=x_zero, out_zero=out_zero, lo=lo, hi=hi)
    loads = [as_load(Space.ACT, 0, x)]
    if mode == PoolMode.AVG:
        fields["param_addr"] = 64
        loads.append(as_load(Space.WGT, 64, table))
    (got,), _ = simulate(loads, [instr(Op.POOL, **fields)], [(Space.ACT, out_at, padded(expect.nbytes))])
    np.testing.assert_array_equal(got[:expect.nbytes].view(expect.dtype).reshape(expect.shape), expect)
