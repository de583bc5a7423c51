"""Programs of CONV tiles through ping-pong buffers, as the compiler cuts a
layer's output channels (SqueezeNet's last CONV): the simulator's groups
(tests/runtime/test_sim_groups.py), its chains (tests/runtime/test_sim_chains.py)
and its driver's table of arrays (tests/runtime/test_sim_whole.py) run them."""
from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import numpy as np

from runtime import isa
from runtime.isa import AccMode, Op, Space, instr
from runtime.isa import Token as T
from runtime.sim import Simulator, chains, conv_gemm, groups
from tests.helpers.simulator import CONFIG, Image, as_load, conv_epilogue, conv_sums, flat_box, padded, records, values

IN_C, OUT_C, HW = 32, 16, (9, 9)
WGT_BYTES, REC_AT, OUT_AT = 8 * 1024, 64 * 1024, 128 * 1024


def tiles(count: int, chain: bool = False, bad: tuple[int, ...] = (), seed: int = 5, high: bool = False):
    """One input tile LOADed into ACT, a 1x1 CONV of it to OUT_C channels,
    then ``count`` CONV tiles of OUT_C channels, each with its weights and
    PARAM records LOADed into one of two WGT buffers and its output into
    one of two ACT buffers (tokens: a LOAD waits for the CONV two tiles
    back, a CONV for the STORE two back), each STOREd to DRAM: 3x3 CONVs of
    the input, or (``chain``) 1x1 CONVs each of the tile before. ``bad``:
    tiles whose first record's multiplier is out of range; ``high``: every
    channel's shift on the epilogue's 32-bit path (which the GEMM's kernels
    do in their registers: runtime.sim.conv_gemm._place). The weights,
    records and input come first in the image (its constant bytes), the
    outputs after. Returns (stream, image, constant bytes, each tile's DRAM
    output address, the expected outputs)."""
    rng = np.random.default_rng(seed)
    image = Image()
    k = 1 if chain else 3
    x = values(rng, 8, (IN_C, *HW))
    w0, rec0 = values(rng, 8, (OUT_C, IN_C, 1, 1)), records(rng, OUT_C)
    at = {name: image.put(as_load(Space.ACT, 0, data)[2]) for name, data in (("x", x), ("w0", w0), ("rec0", rec0))}
    prev = conv_epilogue(conv_sums(x, w0, 1, (1, 1), (1, 1)) + rec0["bias"].astype(object)[:, None, None], rec0, 8, 0,
                         -128, 127)
    tiles, expect = [], []
    for t in range(count):
        w, rec = values(rng, 8, (OUT_C, OUT_C if chain else IN_C, k, k)), records(rng, OUT_C)
        if high:
            rec["shift"] = rec["neg_shift"] = rng.integers(36, 44, OUT_C)
        if t in bad:
            rec["mult"][0] = 7
        out = conv_epilogue(conv_sums(prev if chain else x, w, 1, (1, 1), (1, 1))
                            + rec["bias"].astype(object)[:, None, None], rec, 8, 0, -128, 127)
        tiles.append((image.put(as_load(Space.WGT, 0, w)[2]), padded(w.nbytes),
                      image.put(as_load(Space.WGT, 0, rec)[2]), padded(rec.nbytes)))
        expect.append(out)
        prev = out
    constant = image.top
    outs = [image.reserve(padded(out.nbytes)) for out in expect]
    prog = [instr(Op.LOAD, 0, space=Space.ACT, sram_addr=0, dram_addr=at["x"], **flat_box(padded(x.nbytes))),
            instr(Op.LOAD, 0, space=Space.WGT, sram_addr=2 * WGT_BYTES, dram_addr=at["w0"],
                  **flat_box(padded(w0.nbytes))),
            instr(Op.LOAD, T.PUSH_NEXT, space=Space.WGT, sram_addr=REC_AT + 2048, dram_addr=at["rec0"],
                  **flat_box(padded(rec0.nbytes))),
            instr(Op.CONV, T.POP_PREV, **conv_fields(IN_C, 0, 2 * WGT_BYTES, REC_AT + 2048, OUT_AT, 1))]
    first_out = OUT_AT + 4096
    for t, (w_dram, w_bytes, rec_dram, rec_bytes) in enumerate(tiles):
        wgt_at, rec_at, out_at = (t % 2) * WGT_BYTES, REC_AT + (t % 2) * 1024, first_out + (t % 2) * 4096
        in_at = (OUT_AT if t == 0 else first_out + ((t - 1) % 2) * 4096) if chain else 0
        prog.append(instr(Op.LOAD, T.POP_NEXT if t >= 2 else 0, space=Space.WGT, sram_addr=wgt_at, dram_addr=w_dram,
                          **flat_box(w_bytes)))
        prog.append(instr(Op.LOAD, T.PUSH_NEXT, space=Space.WGT, sram_addr=rec_at, dram_addr=rec_dram,
                          **flat_box(rec_bytes)))
        flags = T.POP_PREV | T.PUSH_NEXT | (T.POP_NEXT if t >= 2 else 0) | (T.PUSH_PREV if t < count - 2 else 0)
        prog.append(instr(Op.CONV, flags, **conv_fields(OUT_C if chain else IN_C, in_at, wgt_at, rec_at, out_at, k)))
        prog.append(instr(Op.STORE, T.POP_PREV | (T.PUSH_PREV if t < count - 2 else 0), space=Space.ACT,
                          sram_addr=out_at, dram_addr=outs[t], **flat_box(padded(expect[t].nbytes))))
    return isa.encode_stream(prog + [instr(Op.END)]), image, constant, outs, expect


def conv_fields(in_c, in_at, wgt_at, rec_at, out_at, k):
    return dict(in_addr=in_at, in_bits=8, in_c=in_c, in_h=HW[0], in_w=HW[1], wgt_addr=wgt_at, wgt_bits=8, groups=1,
                kernel_h=k, kernel_w=k, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_c=OUT_C,
                acc_mode=AccMode.FULL, out_bits=8, out_zero=0, lo=-128, hi=127, param_addr=rec_at, out_addr=out_at)


def tile_simulator(stream, image, constant, grouped: bool, chained: bool = False) -> Simulator:
    """The tiles' simulator, their segment cut into GROUPS (``grouped``)
    and its tiles run as a chain (``chained``) whatever the work."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(conv_gemm, "MIN_MACS", 0))
        stack.enter_context(mock.patch.object(chains, "MIN_MACS", 0 if chained else 1 << 62))
        stack.enter_context(mock.patch.object(groups, "MIN_SEGMENT_NS", 0 if grouped else 1 << 62))
        stack.enter_context(mock.patch.object(groups, "GAIN", 2.0))
        return Simulator(CONFIG, {(0, 0): stream}, image.top, constant)


def tile_outputs(image, outs, expect):
    return [image.data[a:a + e.nbytes].view(np.int8).reshape(e.shape) for a, e in zip(outs, expect)]
