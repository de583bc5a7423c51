"""Lowering of the CONV layers (QConv, QGemm, a QConvTranspose's phases, a
wide global average pool's GEMM): weight packing and the tiled CONV jobs.

Weights are packed per tile, in the order the MAC units read them: for each
output-channel tile and input-channel chunk, the block
``w[k0:k1, c0:c1, :, :]`` contiguous ([out_c][in_c/groups][kh][kw], each
unit reading one output channel's reduction vector), followed by the tile's
PARAM records (docs/isa.md). One LOAD brings a tile's weights and records
into a weight slot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegen.device.decisions import CodegenError, tile_decision
from codegen.device.dma import load, load_linear, padded, store
from codegen.device.image import ConstantImage
from codegen.device.stream import Job
from ir.graph import Node
from passes.conv_parts import ConvPart
from passes.distribute import worker_parts
from passes.tile import part_decisions
from passes.tiling import a8, chw, conv_plan
from runtime.hardware import HardwareConfig
from runtime.isa import WIDE_LUT_ENTRIES, AccMode, Op, Space, instr, linear_size

PARAM_DTYPE = np.dtype([("bias", "<i8"), ("mult", "<i4"), ("shift", "<i4"), ("neg_mult", "<i4"),
                        ("neg_shift", "<i4")])
"""One PARAM record (24 bytes, docs/isa.md)."""


@dataclass(frozen=True)
class Geometry:
    """Where a [channels][rows][cols] operand of one image lies in DRAM:
    element strides of the channel, row and column axes, and the stride
    between images."""

    addr: int
    elem: int
    strides: tuple[int, int, int]
    image_stride: int

    def at(self, n: int, c: int, y: int, x: int) -> int:
        zs, ys, xs = self.strides
        return self.addr + (n * self.image_stride + c * zs + y * ys + x * xs) * self.elem


def dense(addr: int, elem: int, dims: tuple[int, int, int]) -> Geometry:
    """A dense [C][H][W] map at ``addr``, images one after another."""
    c, h, w = dims
    return Geometry(addr, elem, (h * w, w, 1), c * h * w)


def param_records(node: Node, bias: np.ndarray, channels: tuple[int, int] | None = None) -> np.ndarray:
    """The PARAM records of the output channels ``channels`` (default all;
    ``bias`` is theirs) of a QConv, QConvTranspose or QGemm (a global
    average pool's GEMM: its multiplier for a whole plane)."""
    a = node.attrs
    if node.op == "QAvgPool":
        count = int(np.prod(a["kernel_shape"]))
        mult = np.asarray(a["mults"][count - 1:count], np.int64)
        shift = np.asarray(a["shifts"][count - 1:count], np.int64)
        neg_mult, neg_shift = mult, shift
    else:
        mult, shift = np.asarray(a["mult"], np.int64), np.asarray(a["shift"], np.int64)
        neg_mult = np.asarray(a["neg_mult"] or a["mult"], np.int64)
        neg_shift = np.asarray(a["neg_shift"] or a["shift"], np.int64)
    if channels is not None:
        k0, k1 = channels
        mult, shift, neg_mult, neg_shift = (v[k0:k1] if v.size > 1 else v for v in (mult, shift, neg_mult,
                                                                                      neg_shift))
    records = np.zeros(len(mult), PARAM_DTYPE)
    records["bias"], records["mult"], records["shift"] = bias.astype(np.int64), mult, shift
    records["neg_mult"], records["neg_shift"] = neg_mult, neg_shift
    return records


def conv_lowerings(node: Node, config: HardwareConfig, image: ConstantImage) -> list[list[ConvLowering]]:
    """The CONV layers of one layer (passes.conv_parts), per worker of its
    split (passes/distribute.py; one worker without one), each with its
    weights and folded bias: a QConv's or QGemm's own; per output phase of
    a QConvTranspose, the phase's taps in its order and the input zero
    point folded over them; for a global average pool's GEMM, ones and the
    zero point times the plane; a share of output channels their slice."""
    split = node.annotations.get("split")
    decision = tile_decision(node)
    shares = worker_parts(node, config, split)
    decisions = decision["workers"] if split else [decision]
    if len(decisions) != len(shares):
        raise CodegenError(f"layer {node.name!r}: {len(decisions)} tiling decisions for {len(shares)} workers")
    lowerings = []
    for parts, worker in zip(shares, decisions):
        per_part = part_decisions(worker) if parts else []
        if len(per_part) != len(parts):
            raise CodegenError(f"layer {node.name!r}: {len(per_part)} tiling decisions for {len(parts)} CONV "
                               "layers")
        lowerings.append([ConvLowering(node, part, *_operands(node, part), d, image)
                          for part, d in zip(parts, per_part)])
    return lowerings


def _operands(node: Node, part: ConvPart) -> tuple[np.ndarray, np.ndarray]:
    """The weights [K][C/groups][kh][kw] and folded bias of one part (its
    output channels')."""
    if node.op == "QAvgPool":
        plane = part.shape.c
        return np.ones((1, plane, 1, 1), np.int8), np.array([-int(node.attrs["x_zero"]) * plane], np.int64)
    w, b = node.inputs[1].const, node.inputs[2].const.astype(np.int64)
    if part.taps is not None:
        rows, cols = part.taps
        w = np.ascontiguousarray(w[:, :, list(rows)][:, :, :, list(cols)])
        b = b - int(node.attrs["x_zero"]) * w.reshape(len(w), -1).astype(np.int64).sum(axis=1)
    k0, k1 = part.channel0, part.channel0 + part.shape.k
    return w[k0:k1], b[k0:k1]


class ConvLowering:
    """One CONV layer of a layer (a QConv, a QGemm, one phase of a
    QConvTranspose, a global average pool's GEMM): its weights packed at
    construction, its jobs on demand."""

    def __init__(self, node: Node, part: ConvPart, weights: np.ndarray, bias: np.ndarray, decision: dict,
                 image: ConstantImage):
        self.node, self.part = node, part
        self.residual = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3] is not None else None
        self.gemm = part.shape.channels_last
        self.shape = part.shape
        self.batch = 1 if self.gemm else node.inputs[0].type.shape[0]
        self.pads = part.pads
        if max(self.pads) > 255:
            raise CodegenError(f"layer {node.name!r}: padding {list(self.pads)} exceeds the DMA's 255")
        self.plan = conv_plan(self.shape, decision)
        k0 = part.channel0
        self.tiles = self._pack(weights, param_records(node, bias, (k0, k0 + part.shape.k)), image)
        table = node.attrs.get("table") or ()
        # the epilogue's table (DRAM address, bytes); a wide one has 513 entries read by int16 codes (lut_wide=1)
        self.table, self.wide_table = None, len(table) == WIDE_LUT_ENTRIES
        out_dtype = node.outputs[0].type.dtype
        if self.wide_table and out_dtype != np.int16:
            raise CodegenError(f"layer {node.name!r}: a {WIDE_LUT_ENTRIES}-entry table maps int16 codes in place, "
                               f"so its output must be int16, not {out_dtype}")
        if len(table):
            codes = np.asarray(table, np.int64).astype(out_dtype.newbyteorder("<")).tobytes()
            self.table = (image.add(padded(codes)), len(codes))
        s = self.shape
        self.macs = self.batch * s.oh * s.ow * s.k * s.cg * s.kh * s.kw

    # ------------------------------------------------------------ packing
    def _ranges(self):
        s, p = self.shape, self.plan
        ks = s.k_ranges(p.kt)
        cs = [(c0, min(c0 + p.ct, s.c)) for c0 in range(0, s.c, p.ct)] if s.groups == 1 else [(0, s.cg)]
        return ks, cs

    def _pack(self, weights: np.ndarray, records: np.ndarray, image: ConstantImage) -> dict:
        ks, cs = self._ranges()
        w = weights.reshape(self.shape.k, self.shape.cg, self.shape.kh, self.shape.kw)
        tiles = {}
        for ki, (k0, k1) in enumerate(ks):
            for ci, (c0, c1) in enumerate(cs):
                block = np.ascontiguousarray(w[k0:k1, c0:c1])
                w_addr = image.add(padded(block.tobytes()))
                p_addr = image.add(padded(records[k0:k1].tobytes()))
                tiles[ki, ci] = (w_addr, block.nbytes, p_addr, records[k0:k1].nbytes)
        return tiles

    # ------------------------------------------------------------ jobs
    def geometry(self, addr) -> tuple[Geometry, Geometry, Geometry | None]:
        """Where the input, output and residual lie (``addr(value)``: DRAM
        addresses): a GEMM's rows channels-last; a convolution's maps
        channel-major, a phase's outputs every ``step`` rows and columns
        from its ``origin``."""
        x, out, res = self.node.inputs[0], self.node.outputs[0], self.residual
        if self.gemm:
            features = self.node.outputs[0].type.shape[-1]
            maps = [None if v is None else Geometry(addr(v), v.type.dtype.itemsize, (1, 0, n), 0)
                    for v, n in ((x, self.shape.c), (out, features), (res, features))]
        else:
            maps = [None if v is None else dense(addr(v), v.type.dtype.itemsize, chw(v.type.shape)[1])
                    for v in (x, out, res)]
        first = maps[0]
        first = Geometry(first.addr + self.part.in_channel0 * first.strides[0] * first.elem, first.elem,
                         first.strides, first.image_stride)
        return first, self._placed(maps[1]), None if maps[2] is None else self._placed(maps[2])

    def _placed(self, geo: Geometry) -> Geometry:
        """An output operand seen from this part: its first channel, row and
        column at the part's, rows and columns ``step`` apart."""
        (oy, ox), (sy, sx) = self.part.origin, self.part.step
        zs, ys, xs = geo.strides
        return Geometry(geo.addr + (self.part.channel0 * zs + oy * ys + ox * xs) * geo.elem, geo.elem,
                        (zs, ys * sy, xs * sx), geo.image_stride)

    def jobs(self, addr, *others) -> list[Job]:
        """The tile jobs of the image whose tensors ``addr(value)`` places
        and of ``others`` (mvbatch: the images a cluster's MAC units take
        together), the images innermost: each weight tile is loaded once for
        all of them (once per image where the reduction is split in chunks,
        which an image's accumulators take in turn). An input tile stays on
        chip for the jobs after it that read the same one (band outermost:
        every output-channel tile of a band), as ``passes.tiling.conv_cost``
        counts it; input tiles alternate between the two input slots as they
        are loaded, so a new one overwrites the tile before the last, whose
        jobs ended at least two jobs earlier (the slot's token, ``stream.py``)."""
        images = [self.geometry(a) for a in (addr, *others)]
        s, p = self.shape, self.plan
        ks, cs = self._ranges()
        bands = [(r0, min(r0 + p.rt, s.oh), c0, min(c0 + p.wt, s.ow))
                 for r0 in range(0, s.oh, p.rt) for c0 in range(0, s.ow, p.wt)]
        if p.k_outer:
            order = [(m, n, ki, band, ci) for n in range(self.batch) for ki in range(len(ks)) for band in bands
                     for m in range(len(images)) for ci in range(len(cs))]
        else:
            order = [(m, n, ki, band, ci) for n in range(self.batch) for band in bands for ki in range(len(ks))
                     for m in range(len(images)) for ci in range(len(cs))]
        slots = self._slots()
        jobs, loaded, wslot, stored = [], None, 1, 0
        tile, in_slot = None, 1
        for i, (m, n, ki, band, ci) in enumerate(order):
            x, out, res = images[m]
            job, slot = Job(), i % 2
            if i == 0 and self.table is not None:
                job.loads.append(load_linear(Space.WGT, slots["lut"], *self.table))
            (k0, k1), (r0, r1, c0, c1) = ks[ki], band
            if loaded != (ki, ci):
                loaded, wslot = (ki, ci), 1 - wslot
                w_addr, w_bytes, p_addr, p_bytes = self.tiles[ki, ci]
                job.loads.append(load_linear(Space.WGT, slots["wgt"][wslot], w_addr, w_bytes))
                job.loads.append(load_linear(Space.WGT, slots["par"][wslot], p_addr, p_bytes))
            wanted = (m, n, self._channels(ks[ki], cs[ci]), band)
            if wanted != tile or not job.loads:
                tile, in_slot = wanted, 1 - in_slot
                job.loads.append(self._input_load(x, n, ks[ki], cs[ci], band, slots["in"][in_slot]))
            mode = _acc_mode(ci, len(cs))
            out_slot = slots["out"][stored % 2]
            if mode in (AccMode.FULL, AccMode.LAST):
                if res is not None:
                    job.loads.append(load(Space.ACT, slots["res"][slot], res.at(n, k0, r0, c0), res.elem,
                                          (k1 - k0, r1 - r0, c1 - c0), res.strides))
                job.stores.append(store(out_slot, out.at(n, k0, r0, c0), out.elem, (k1 - k0, r1 - r0, c1 - c0),
                                        out.strides))
                stored += 1
            job.computes.append(self._conv(ks[ki], cs[ci], band, mode, slots, slot, in_slot, wslot, out_slot))
            jobs.append(job)
        return jobs

    def _slots(self) -> dict[str, list[int]]:
        p = self.plan
        at, act = 0, {}
        for name, size in (("in", p.in_bytes), ("res", p.res_bytes), ("out", p.out_bytes)):
            act[name] = [at, at + a8(size)]
            at += 2 * a8(size)
        w_size, p_size = linear_size(p.wgt_bytes), linear_size(p.param_bytes)
        return {**act, "wgt": [0, w_size + p_size], "par": [w_size, 2 * w_size + p_size], "lut": 2 * (w_size + p_size)}

    def _input_span(self, band) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """Valid input rows/cols of a band and the padding around them."""
        s, (pt, pl, _, _) = self.shape, self.pads
        r0, r1, c0, c1 = band
        y0 = r0 * s.sh - pt
        y1 = (r1 - 1) * s.sh - pt + s.dh * (s.kh - 1) + 1
        x0 = c0 * s.sw - pl
        x1 = (c1 - 1) * s.sw - pl + s.dw * (s.kw - 1) + 1
        vy0, vy1, vx0, vx1 = max(y0, 0), min(y1, s.h), max(x0, 0), min(x1, s.w)
        if vy1 <= vy0 or vx1 <= vx0:
            raise CodegenError(f"layer {self.node.name!r}: an output tile reads only padding")
        return (vy0, vy1, vx0, vx1), (vy0 - y0, y1 - vy1, vx0 - x0, x1 - vx1)

    def _channels(self, k_range, c_range) -> tuple[int, int]:
        s = self.shape
        if s.groups == 1:
            return c_range
        g0, g1 = k_range[0] // s.kg, -(-k_range[1] // s.kg)
        return g0 * s.cg, g1 * s.cg

    def _input_load(self, x: Geometry, n: int, k_range, c_range, band, sram: int):
        (vy0, vy1, vx0, vx1), pads = self._input_span(band)
        c0, c1 = self._channels(k_range, c_range)
        return load(Space.ACT, sram, x.at(n, c0, vy0, vx0), x.elem, (c1 - c0, vy1 - vy0, vx1 - vx0), x.strides,
                    pads, int(self.node.attrs["x_zero"]))

    def _conv(self, k_range, c_range, band, mode: AccMode, slots, slot: int, in_slot: int, wslot: int,
              out_slot: int):
        s, a = self.shape, self.node.attrs
        (k0, k1), (r0, r1, c0, c1) = k_range, band
        ch0, ch1 = self._channels(k_range, c_range)
        fields = dict(in_addr=slots["in"][in_slot], in_bits=8 * s.e_in, in_c=ch1 - ch0, in_h=s.in_rows(r1 - r0),
                      in_w=s.in_cols(c1 - c0), wgt_addr=slots["wgt"][wslot], wgt_bits=8 * s.e_w,
                      groups=max(1, (k1 - k0) // s.kg) if s.groups > 1 else 1, kernel_h=s.kh, kernel_w=s.kw,
                      stride_h=s.sh, stride_w=s.sw, dilation_h=s.dh, dilation_w=s.dw, out_c=k1 - k0,
                      acc_mode=int(mode))
        if mode != AccMode.MIDDLE:
            fields["param_addr"] = slots["par"][wslot]
        if mode != AccMode.FULL:
            fields["acc_addr"] = 0
        if mode in (AccMode.FULL, AccMode.LAST):
            fields.update(out_addr=out_slot, out_bits=8 * s.e_out, out_zero=int(a["out_zero"]), lo=int(a["lo"]),
                          hi=int(a["hi"]))
            if self.table is not None:
                fields.update(lut=1, lut_addr=slots["lut"], lut_wide=int(self.wide_table))
            if self.residual is not None:
                fields.update(residual=1, res_addr=slots["res"][slot], res_bits=8 * s.e_res,
                              res_zero=int(a["res_zero"]), res_mult=int(a["res_mult"]),
                              res_shift=int(a["res_shift"]))
        return instr(Op.CONV, 0, **fields)


def _acc_mode(chunk: int, chunks: int) -> AccMode:
    if chunks == 1:
        return AccMode.FULL
    if chunk == 0:
        return AccMode.FIRST
    return AccMode.LAST if chunk == chunks - 1 else AccMode.MIDDLE
