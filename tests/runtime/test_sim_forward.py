"""CONVs that read their weights in DRAM's constant bytes and the weight
LOADs nobody reads then (runtime/sim/forward.py): the same outputs on every
CONV path, and every case that must keep reading WGT does."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from runtime import isa
from runtime.isa import AccMode, Op, PoolMode, Space, instr
from runtime.isa import Token as T
from runtime.sim import Simulator, conv_gemm
from runtime.sim import simulator as sim_module
from runtime.sim.interpreter import FROM_DRAM, REDIRECT, UNREAD
from tests.helpers.simulator import CONFIG, Image, as_load, conv_epilogue, conv_sums, flat_box, padded, records, values

PARAM, ACT_OUT = 64 * 1024, 200 * 1024

# in_c, out_c, map, whether the GEMM plans it: the dot products of a few pixels, the reordered dense
# weights, the planned GEMM
PATHS = {"few_pixels": (32, 16, (3, 3), False), "dense": (16, 24, (7, 8), False), "gemm": (16, 24, (7, 8), True)}


def _program(kind: str, seed: int = 3, pad_weights: bool = False):
    """LOAD weights, input and PARAM records; a 3x3 CONV; STORE its output.
    The weights and records are first in the image (constant), the input
    after them.
    Returns (stream, image, constant bytes, DRAM of the outputs, expected
    output, weights)."""
    in_c, out_c, hw, _ = PATHS[kind]
    rng = np.random.default_rng(seed)
    x, w = values(rng, 8, (in_c, *hw)), values(rng, 8, (out_c, in_c, 3, 3))
    rec = records(rng, out_c, 1000, True)
    image = Image()
    prog = []
    if pad_weights:  # one zero row in front: a LOAD whose SRAM box is not its DRAM bytes in order
        raw = np.concatenate([np.zeros(w[0].size, np.int8), w.reshape(-1)]).view(np.uint8)
        prog.append(instr(Op.LOAD, 0, space=Space.WGT, sram_addr=0, dram_addr=image.put(w.reshape(-1)), elem_bytes=1,
                          z_size=1, y_size=out_c, x_size=w[0].size, y_stride=w[0].size, x_stride=1, pad_top=1,
                          pad_value=0))
        wgt_addr = w[0].size
        assert raw.size == (out_c + 1) * w[0].size
    else:
        _, _, data = as_load(Space.WGT, 0, w)
        prog.append(instr(Op.LOAD, 0, space=Space.WGT, sram_addr=0, dram_addr=image.put(data), **flat_box(data.size)))
        wgt_addr = 0
    _, _, data = as_load(Space.WGT, PARAM, rec)
    prog.append(instr(Op.LOAD, 0, space=Space.WGT, sram_addr=PARAM, dram_addr=image.put(data), **flat_box(data.size)))
    constant = image.top
    _, _, data = as_load(Space.ACT, 0, x)
    prog.append(instr(Op.LOAD, T.PUSH_NEXT, space=Space.ACT, sram_addr=0, dram_addr=image.put(data),
                      **flat_box(data.size)))
    prog.append(instr(Op.CONV, T.POP_PREV | T.PUSH_NEXT, in_addr=0, in_bits=8, in_c=in_c, in_h=hw[0], in_w=hw[1],
                      wgt_addr=wgt_addr, wgt_bits=8, groups=1, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1,
                      dilation_h=1, dilation_w=1, out_c=out_c, acc_mode=AccMode.FULL, out_bits=8, out_zero=-2,
                      lo=-128, hi=127, param_addr=PARAM, out_addr=ACT_OUT))
    expect = conv_epilogue(conv_sums(x, w, 1, (1, 1), (1, 1)) + rec["bias"].astype(object)[:, None, None], rec, 8, -2,
                           -128, 127)
    outs = [image.reserve(padded(expect.nbytes))]
    prog.append(instr(Op.STORE, T.POP_PREV, space=Space.ACT, sram_addr=ACT_OUT, dram_addr=outs[0],
                      **flat_box(padded(expect.nbytes))))
    stream = isa.encode_stream(prog + [instr(Op.END)])
    return stream, image, constant, outs, expect, w


def _simulator(kind: str, stream: bytes, image: Image, constant: int, large: bool = False) -> Simulator:
    gemm = PATHS[kind][3]
    with mock.patch.object(conv_gemm, "MIN_MACS", 0 if gemm else 1 << 62), \
            mock.patch.object(sim_module, "LARGE_CONV_MACS", 0 if large else 1 << 62):
        sim = Simulator(CONFIG, {(0, 0): stream}, image.top, constant)
    run = sim._phases[0][0].run
    assert (run.gemm.index >= 0).any() == gemm and run.large.any() == large
    return sim


def _redirects(sim: Simulator) -> np.ndarray:
    run = sim._phases[0][0].run
    return run.code[:, REDIRECT] if run.code.shape[1] > REDIRECT else np.zeros(run.prog.shape[0], np.int64)


def _output(image: Image, at: int, expect: np.ndarray) -> np.ndarray:
    return image.data[at:at + expect.nbytes].view(np.int8).reshape(expect.shape)


@pytest.mark.parametrize("kind, large", [(kind, False) for kind in sorted(PATHS)] + [("gemm", True)])
def test_a_conv_reads_its_weights_in_dram_and_their_loads_are_not_copied(kind, large):
    """Weights and PARAM records in the constant bytes, read by the CONV
    alone (in the interpreter, or as phases on the pool): the CONV reads them
    in DRAM, neither LOAD copies (WGT stays zero), and the output is the
    oracle's, run after run; with no constant bytes (a caller's own DRAM)
    nothing is redirected and WGT holds the weights."""
    stream, image, constant, (out, *_), expect, w = _program(kind)
    for given, redirected in ((constant, True), (0, False)):
        sim = _simulator(kind, stream, image, given, large)
        marks = _redirects(sim)
        prog = sim._phases[0][0].run.prog
        ops, spaces = prog[:, isa.COL_OPCODE], prog[:, isa.column(Op.LOAD, "space")]
        conv, wgt_loads = ops == Op.CONV, (ops == Op.LOAD) & (spaces == Space.WGT)
        assert (marks[conv] == FROM_DRAM).all() == redirected and (marks[wgt_loads] == UNREAD).all() == redirected
        assert not (marks[~conv & ~wgt_loads]).any(), "only the CONV and the weight LOADs are redirected"
        for _ in range(2):
            image.data[out:out + expect.nbytes] = 0
            sim.run([image.data])
            np.testing.assert_array_equal(_output(image, out, expect), expect)
            wgt = sim._memory[0].wgt.u8[:w.nbytes]
            assert (wgt == 0).all() if redirected else (wgt == w.reshape(-1).view(np.uint8)).all()


@pytest.mark.parametrize("kind", ["few_pixels", "gemm"])
def test_weights_a_store_may_overwrite_or_a_padded_load_places_are_read_in_wgt(kind):
    """Constant bytes end below the lowest STORE (a binary may store into
    its own weights); a LOAD with padding does not lay DRAM's bytes out in
    order: in both cases the CONV reads WGT, as before."""
    stream, image, constant, (out,), expect, _ = _program(kind)
    low_store = image.top  # the constant bytes the caller claims reach past the program's STOREs
    sim = _simulator(kind, stream, image, low_store + 4096)
    convs = sim._phases[0][0].run.prog[:, isa.COL_OPCODE] == Op.CONV
    assert (_redirects(sim)[convs] == FROM_DRAM).all(), "STOREs above the weights leave them constant"
    stream, image, constant, (out,), expect, _ = _program(kind, pad_weights=True)
    sim = _simulator(kind, stream, image, constant)
    marks, prog = _redirects(sim), sim._phases[0][0].run.prog
    assert marks[prog[:, isa.COL_OPCODE] == Op.CONV].tolist() == [0] and marks[0] == 0
    sim.run([image.data])
    np.testing.assert_array_equal(_output(image, out, expect), expect)


def test_a_large_conv_off_the_gemm_reads_wgt():
    """A large CONV the GEMM does not run goes to Python (conv.run_large),
    which reads WGT: neither it nor its LOADs are redirected."""
    stream, image, constant, (out,), expect, _ = _program("dense")
    sim = _simulator("dense", stream, image, constant, large=True)
    assert not _redirects(sim).any()
    sim.run([image.data])
    np.testing.assert_array_equal(_output(image, out, expect), expect)


def test_a_store_into_the_weight_image_ends_the_constant_bytes():
    """A STORE below the weights' end (into the image itself): nothing
    above it is constant, so the CONV reads WGT, and the run is exact."""
    stream, image, constant, (out,), expect, w = _program("dense")
    prog = isa.decode_array(stream)[0]
    store = np.flatnonzero(prog[:, isa.COL_OPCODE] == Op.STORE)[0]
    moved = [isa.Instruction(i.op, dict(i.fields, dram_addr=64) if j == store else i.fields, i.flags)
             for j, i in enumerate(isa.decode(stream))]  # over the weights, after their LOAD
    sim = _simulator("dense", isa.encode_stream(moved), image, constant)
    assert not _redirects(sim).any()
    sim.run([image.data])
    np.testing.assert_array_equal(_output(image, 64, expect), expect)


def test_a_pool_between_keeps_the_loads_its_cluster_may_read():
    """An instruction other than LOAD, STORE and CONV may read any WGT byte
    (an average POOL reads its table there; a max POOL reads none, and is
    not told apart): the LOADs before it are copied, and WGT holds the
    weights after the run; the CONV still reads them in DRAM."""
    stream, image, constant, (out,), expect, w = _program("dense")
    program = list(isa.decode(stream))
    conv = next(j for j, i in enumerate(program) if i.op == Op.CONV)
    pool = instr(Op.POOL, 0, mode=PoolMode.MAX, in_addr=0, in_bits=8, out_bits=8, c=1, in_h=2, in_w=2, kernel_h=2,
                 kernel_w=2, stride_h=1, stride_w=1, out_addr=ACT_OUT + 8192, lo=-128, hi=127)
    program.insert(conv + 1, pool)
    sim = _simulator("dense", isa.encode_stream(program), image, constant)
    marks, prog = _redirects(sim), sim._phases[0][0].run.prog
    assert marks[prog[:, isa.COL_OPCODE] == Op.CONV].tolist() == [FROM_DRAM] and not (marks == UNREAD).any()
    sim.run([image.data])
    np.testing.assert_array_equal(_output(image, out, expect), expect)
    np.testing.assert_array_equal(sim._memory[0].wgt.u8[:w.nbytes], w.reshape(-1).view(np.uint8))
