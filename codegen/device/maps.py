"""Lowering of the map-shaped layers: pools, element-wise ops, concatenation,
lookup tables, nearest upsampling, batched products of two tensors and
softmax over rows.

Each cuts its output into the [channels][rows][columns] tiles the tile pass
chose (two input and two output slots of the activation buffer, sized by
passes.tiling.map_tiles), and gives one job per tile: the LOADs of its
operands, one COMPUTE, one STORE.
Tables (average-pool multipliers, LUT entries, SOFTMAX's exponentials) are loaded once per layer
into the weight buffer.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from codegen.device.conv import Geometry, dense
from codegen.device.decisions import CodegenError, tile_decision
from codegen.device.dma import load, load_linear, padded, store
from codegen.device.image import ConstantImage
from codegen.device.stream import Job
from ir.graph import Node
from passes.tiling import MapPlan, bcast_mode, chw, eltwise_operands, map_tiles, matmul_dims, operand_strides
from runtime.hardware import HardwareConfig
from runtime.isa import Bcast, EltOp, Op, PoolMode, Space, instr, linear_size
from runtime.qscheme import ACTIVATION_RANGE, table_entries

IDENTITY = (1 << 30, 30)
"""rescale(v, 2^30, 30) = v: the multiplier of a plain copy."""


def _tiles(dims: tuple[int, int, int], plan) -> list[tuple[int, int, int, int, int, int]]:
    c, h, w = dims
    return [(c0, min(c0 + plan.ct, c), r0, min(r0 + plan.rt, h), x0, min(x0 + plan.wt, w))
            for c0 in range(0, c, plan.ct) for r0 in range(0, h, plan.rt) for x0 in range(0, w, plan.wt)]


class MapLayer(ABC):
    """Base: a layer with its jobs built once addresses are known. Each slot
    holds the operands of one tile back to back, two slots alternating
    (double buffering), sized by the planner's own rule (``self.tiles``)."""

    macs = 0
    table: tuple[int, int] | None = None
    """A table (DRAM address, bytes) the layer's computes read from WGT 0."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        self.node, self.config, self.image = node, config, image
        self.tiles = map_tiles(node)
        self.plan = MapPlan(**tile_decision(node))

    def table_loads(self) -> list:
        """The LOADs that bring the layer's table on chip: part of its first
        job, and of the first job of each cluster's share in split mode."""
        return [] if self.table is None else [load_linear(Space.WGT, 0, *self.table)]

    @abstractmethod
    def jobs(self, addr) -> list[Job]:
        """The layer's jobs, ``addr(value)`` giving DRAM addresses."""

    def _slots(self) -> tuple[list[int], list[int]]:
        """The operand addresses of slot 0 and slot 1 for the plan's tiles."""
        sizes = self.tiles.slot_sizes(self.plan.ct, self.plan.rt, self.plan.wt)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return starts, [sum(sizes) + start for start in starts]


class PoolLayer(MapLayer):
    """MaxPool and QAvgPool: POOL over padded row bands."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        a = node.attrs
        x = node.inputs[0].type
        self.kh, self.kw = a["kernel_shape"]
        self.sh, self.sw = a["strides"]
        self.pads = tuple(a["pads"])
        if node.op == "MaxPool" and any(d != 1 for d in a.get("dilations", (1, 1))):
            raise CodegenError(f"layer {node.name!r}: the accelerator has no dilated pooling")
        if max(self.pads) > 255 or max(self.kh, self.kw) > config.max_pool_kernel:
            raise CodegenError(f"layer {node.name!r}: window {self.kh}x{self.kw} with pads {list(self.pads)} "
                               f"exceeds the pool unit (max_pool_kernel={config.max_pool_kernel}, pads <= 255)")
        self.avg = node.op == "QAvgPool"
        self.e_in, self.e_out = x.dtype.itemsize, node.outputs[0].type.dtype.itemsize
        self.table = None
        if self.avg:
            table = np.zeros((self.kh * self.kw, 2), "<i4")
            table[:, 0], table[:, 1] = a["mults"], a["shifts"]
            if linear_size(table.nbytes) > config.weight_buffer_bytes:
                raise CodegenError(f"layer {node.name!r}: the {self.kh}x{self.kw} window's multiplier table "
                                   f"({table.nbytes} B) does not fit the weight buffer "
                                   f"({config.weight_buffer_bytes} B)")
            self.table = (image.add(padded(table.tobytes())), table.nbytes)
        self.batch, self.in_dims = x.shape[0], tuple(x.shape[1:])
        self.out_dims = tuple(node.outputs[0].type.shape[1:])

    def jobs(self, addr) -> list[Job]:
        x = dense(addr(self.node.inputs[0]), self.e_in, self.in_dims)
        out = dense(addr(self.node.outputs[0]), self.e_out, self.out_dims)
        slots = self._slots()
        jobs = []
        for n in range(self.batch):
            for c0, c1, r0, r1, x0, x1 in _tiles(self.out_dims, self.plan):
                src, dst = slots[len(jobs) % 2]
                job = Job(loads=[] if jobs else self.table_loads())
                rows, row_pads, row_skip = self._span(r0, r1, self.sh, self.kh, self.pads[0], self.pads[2],
                                                      self.in_dims[1])
                cols, col_pads, col_skip = self._span(x0, x1, self.sw, self.kw, self.pads[1], self.pads[3],
                                                      self.in_dims[2])
                job.loads.append(load(Space.ACT, src, x.at(n, c0, rows[0], cols[0]), self.e_in,
                                      (c1 - c0, rows[1] - rows[0], cols[1] - cols[0]), x.strides,
                                      (*row_pads, *col_pads), self._pad_value()))
                job.computes.append(self._pool(src, dst, c1 - c0, r1 - r0, x1 - x0, row_skip, col_skip))
                job.stores.append(store(dst, out.at(n, c0, r0, x0), self.e_out,
                                        (c1 - c0, r1 - r0, x1 - x0), out.strides))
                jobs.append(job)
        return jobs

    def _span(self, o0: int, o1: int, stride: int, kernel: int, pad_begin: int, pad_end: int, size: int):
        """Valid input range of output positions [o0, o1), the LOAD's padding
        around it, and the padding the window must not count."""
        start = o0 * stride - pad_begin
        stop = (o1 - 1) * stride - pad_begin + kernel
        valid = (max(start, 0), min(stop, size))
        if valid[1] <= valid[0]:
            raise CodegenError(f"layer {self.node.name!r}: a pool window covers only padding")
        loaded = (valid[0] - start, stop - valid[1])
        if self.avg and self.node.attrs["count_include_pad"]:
            skip = (max(0, -pad_begin - start), max(0, stop - (size + pad_end)))
        else:
            skip = loaded
        return valid, loaded, skip

    def _pad_value(self) -> int:
        return int(self.node.attrs["x_zero"]) if self.avg else 0

    def _pool(self, src: int, dst: int, c: int, rt: int, wt: int, row_skip, col_skip):
        a = self.node.attrs
        in_h, in_w = (rt - 1) * self.sh + self.kh, (wt - 1) * self.sw + self.kw
        fields = dict(mode=int(PoolMode.AVG if self.avg else PoolMode.MAX), in_addr=src, in_bits=8 * self.e_in,
                      c=c, in_h=in_h, in_w=in_w, kernel_h=self.kh, kernel_w=self.kw, stride_h=self.sh,
                      stride_w=self.sw, pad_top=row_skip[0], pad_bottom=row_skip[1], pad_left=col_skip[0],
                      pad_right=col_skip[1], out_addr=dst, out_bits=8 * self.e_out)
        if self.avg:
            fields.update(x_zero=int(a["x_zero"]), out_zero=int(a["out_zero"]), lo=int(a["lo"]), hi=int(a["hi"]),
                          param_addr=0)
        else:
            fields["lo"], fields["hi"] = ACTIVATION_RANGE[self.node.outputs[0].type.dtype]
        return instr(Op.POOL, 0, **fields)


TWO_GRIDS = {"QAdd": EltOp.ADD, "QSub": EltOp.SUB, "QMax": EltOp.MAX, "QMin": EltOp.MIN}
"""ELTWISE's function of each two-grid op."""


class EltwiseLayer(MapLayer):
    """QAdd, QSub, QMax, QMin and QMul: ELTWISE with b full-size, per
    channel or scalar (a subtraction keeps its operands' order). An operand
    that repeats along an axis (an outer product [1,1,H,W] x [1,C,1,1], a
    per-row constant [1,1,H,1], a per-position one [1,L] of [1,C,L]) is
    LOADed as a full box with zero strides along that axis."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        out = node.outputs[0].type
        self.batch, self.dims = chw(out.shape)
        self.a, self.b, self.swap = eltwise_operands(node)
        self.bcast = bcast_mode(node, self.b)
        self.e_a, self.e_b = self.a.type.dtype.itemsize, self.b.type.dtype.itemsize
        self.e_out = out.dtype.itemsize

    def _geometry(self, value, addr) -> Geometry:
        image_stride, strides = operand_strides(self.node, value)
        return Geometry(addr(value), value.type.dtype.itemsize, strides, image_stride)

    def jobs(self, addr) -> list[Job]:
        p = self.plan
        slots = self._slots()
        a_geo, b_geo = self._geometry(self.a, addr), self._geometry(self.b, addr)
        out = dense(addr(self.node.outputs[0]), self.e_out, self.dims)
        jobs = []
        for n in range(self.batch):
            for c0, c1, r0, r1, x0, x1 in _tiles(self.dims, p):
                a_at, b_at, out_at = slots[len(jobs) % 2]
                box = (c1 - c0, r1 - r0, x1 - x0)
                job = Job()
                job.loads.append(load(Space.ACT, a_at, a_geo.at(n, c0, r0, x0), self.e_a, box, a_geo.strides))
                if self.bcast == Bcast.FULL:
                    job.loads.append(load(Space.ACT, b_at, b_geo.at(n, c0, r0, x0), self.e_b, box, b_geo.strides))
                elif self.bcast == Bcast.CHANNEL:
                    job.loads.append(load(Space.ACT, b_at, b_geo.at(n, c0, 0, 0), self.e_b, (1, 1, c1 - c0),
                                          (0, 0, 1)))
                else:
                    job.loads.append(load(Space.ACT, b_at, b_geo.at(n, 0, 0, 0), self.e_b, (1, 1, 1), (0, 0, 1)))
                job.computes.append(self._eltwise(a_at, b_at, out_at, box))
                job.stores.append(store(out_at, out.at(n, c0, r0, x0), self.e_out, box, out.strides))
                jobs.append(job)
        return jobs

    def _eltwise(self, a_addr: int, b_addr: int, out_addr: int, box):
        at = self.node.attrs
        za, zb = (at["b_zero"], at["a_zero"]) if self.swap else (at["a_zero"], at["b_zero"])
        fields = dict(bcast=int(self.bcast), c=box[0], h=box[1], w=box[2], a_addr=a_addr, a_bits=8 * self.e_a,
                      a_zero=int(za), b_addr=b_addr, b_bits=8 * self.e_b, b_zero=int(zb), out_addr=out_addr,
                      out_bits=8 * self.e_out, out_zero=int(at["out_zero"]), lo=int(at["lo"]), hi=int(at["hi"]))
        if self.node.op == "QMul":
            fields.update(func=int(EltOp.MUL), a_mult=int(at["mult"]), a_shift=int(at["shift"]))
        else:
            (am, ash), (bm, bsh) = (at["a_mult"], at["a_shift"]), (at["b_mult"], at["b_shift"])
            if self.swap:
                (am, ash), (bm, bsh) = (bm, bsh), (am, ash)
            fields.update(func=int(TWO_GRIDS[self.node.op]), a_mult=int(am), a_shift=int(ash), b_mult=int(bm),
                          b_shift=int(bsh))
        return instr(Op.ELTWISE, 0, **fields)


def copy_instr(src: int, dst: int, box, in_bits: int, out_bits: int, zero: int, mult: int, shift: int,
               out_zero: int, lo: int, hi: int):
    """ELTWISE COPY: clamp(rescale(a - zero, mult, shift) + out_zero, lo, hi)."""
    return instr(Op.ELTWISE, 0, func=int(EltOp.COPY), c=box[0], h=box[1], w=box[2], a_addr=src, a_bits=in_bits,
                 a_zero=zero, a_mult=mult, a_shift=shift, out_addr=dst, out_bits=out_bits, out_zero=out_zero,
                 lo=lo, hi=hi)


class ConcatLayer(MapLayer):
    """QConcat: each input requantised by ELTWISE COPY into its slice of the
    output. Per image, input i is P rows of R_i contiguous codes placed at
    column offset O_i of the output's rows of R codes (any axis)."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        out = node.outputs[0].type
        axis = int(node.attrs["axis"]) % out.rank  # not 0: map_tiles refuses it
        self.batch = out.shape[0]
        self.rows = math.prod(out.shape[1:axis])
        self.widths = [math.prod(v.type.shape[axis:]) for v in node.inputs]
        self.e_out = out.dtype.itemsize

    def jobs(self, addr) -> list[Job]:
        a, p = self.node.attrs, self.plan
        total, offset, jobs = sum(self.widths), 0, []
        out_addr = addr(self.node.outputs[0])
        slots = self._slots()
        for i, (value, width) in enumerate(zip(self.node.inputs, self.widths)):
            e_in, src = value.type.dtype.itemsize, addr(value)
            for n in range(self.batch):
                for _, _, r0, r1, x0, x1 in _tiles((1, self.rows, width), p):
                    in_at, out_at = slots[len(jobs) % 2]
                    box = (1, r1 - r0, x1 - x0)
                    job = Job()
                    job.loads.append(load(Space.ACT, in_at, src + (n * self.rows * width + r0 * width + x0) * e_in,
                                          e_in, box, (0, width, 1)))
                    job.computes.append(copy_instr(in_at, out_at, box, 8 * e_in, 8 * self.e_out,
                                                   int(a["zeros"][i]), int(a["mults"][i]), int(a["shifts"][i]),
                                                   int(a["out_zero"]), int(a["lo"]), int(a["hi"])))
                    dst = out_addr + (n * self.rows * total + r0 * total + offset + x0) * self.e_out
                    job.stores.append(store(out_at, dst, self.e_out, box, (0, total, 1)))
                    jobs.append(job)
            offset += width
        return jobs


class LutLayer(MapLayer):
    """QLut: LUT over tiles of the flattened tensor (one row of codes), the
    table in WGT: 256 entries read by int8 codes, or 513 read by int16
    codes and interpolated (wide=1)."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        x, out = node.inputs[0].type, node.outputs[0].type
        self.e_in, self.e_out = x.dtype.itemsize, out.dtype.itemsize
        self.count = math.prod(out.shape)
        table = np.asarray(node.attrs["table"], np.int64).astype(out.dtype.newbyteorder("<"))
        if len(table) != table_entries(x.dtype):
            raise CodegenError(f"layer {node.name!r}: {x.dtype} codes read a table of {table_entries(x.dtype)} "
                               f"entries, not {len(table)}")
        self.table = (image.add(padded(table.tobytes())), table.nbytes)

    def jobs(self, addr) -> list[Job]:
        src, dst = addr(self.node.inputs[0]), addr(self.node.outputs[0])
        slots = self._slots()
        jobs = []
        for *_, start, stop in _tiles((1, 1, self.count), self.plan):
            in_at, out_at = slots[len(jobs) % 2]
            size = stop - start
            job = Job(loads=[] if jobs else self.table_loads())
            job.loads.append(load(Space.ACT, in_at, src + start * self.e_in, self.e_in, (1, 1, size), (0, 0, 1)))
            job.computes.append(instr(Op.LUT, 0, in_addr=in_at, count=size, param_addr=0, out_addr=out_at,
                                      out_bits=8 * self.e_out, wide=int(self.e_in == 2)))
            job.stores.append(store(out_at, dst + start * self.e_out, self.e_out, (1, 1, size), (0, 0, 1)))
            jobs.append(job)
        return jobs


class MatMulLayer(MapLayer):
    """QMatMul: MATMUL over tiles of [batch][rows of a][columns of b], each
    loading its rows of a (whole reduction) and its columns of b."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        a, b = (v.type for v in node.inputs)
        self.e_a, self.e_b, self.e_out = a.dtype.itemsize, b.dtype.itemsize, node.outputs[0].type.dtype.itemsize
        self.dims, self.k = matmul_dims(node.outputs[0].type.shape), a.shape[-1]
        self.macs = math.prod(self.dims) * self.k

    def jobs(self, addr) -> list[Job]:
        (_, m, n), k, a = self.dims, self.k, self.node.attrs
        pa, pb, po = addr(self.node.inputs[0]), addr(self.node.inputs[1]), addr(self.node.outputs[0])
        slots = self._slots()
        jobs = []
        for c0, c1, r0, r1, x0, x1 in _tiles(self.dims, self.plan):
            (a_at, b_at, out_at), box = slots[len(jobs) % 2], (c1 - c0, r1 - r0, x1 - x0)
            job = Job()
            job.loads.append(load(Space.ACT, a_at, pa + (c0 * m + r0) * k * self.e_a, self.e_a, (box[0], box[1], k),
                                  (m * k, k, 1)))
            job.loads.append(load(Space.ACT, b_at, pb + (c0 * k * n + x0) * self.e_b, self.e_b, (box[0], k, box[2]),
                                  (k * n, n, 1)))
            job.computes.append(instr(
                Op.MATMUL, 0, batch=box[0], m=box[1], k=k, n=box[2], a_addr=a_at, a_bits=8 * self.e_a,
                a_zero=int(a["a_zero"]), b_addr=b_at, b_bits=8 * self.e_b, b_zero=int(a["b_zero"]), out_addr=out_at,
                out_bits=8 * self.e_out, out_zero=int(a["out_zero"]), mult=int(a["mult"]), shift=int(a["shift"]),
                lo=int(a["lo"]), hi=int(a["hi"])))
            job.stores.append(store(out_at, po + ((c0 * m + r0) * n + x0) * self.e_out, self.e_out, box,
                                    (m * n, n, 1)))
            jobs.append(job)
        return jobs


class SoftmaxLayer(MapLayer):
    """QSoftmax: SOFTMAX over bands of whole rows, the exp table in WGT."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        _, self.rows, self.cols = self.tiles.dims
        if self.plan.wt != self.cols:
            raise CodegenError(f"layer {node.name!r}: a SOFTMAX tile must hold whole rows of {self.cols}, the plan "
                               f"has {self.plan.wt}")
        self.e_in, self.e_out = node.inputs[0].type.dtype.itemsize, node.outputs[0].type.dtype.itemsize
        table = np.asarray(node.attrs["table"], "<i4")
        self.table = (image.add(padded(table.tobytes())), table.nbytes)

    def jobs(self, addr) -> list[Job]:
        a, cols = self.node.attrs, self.cols
        src, dst = addr(self.node.inputs[0]), addr(self.node.outputs[0])
        slots = self._slots()
        jobs = []
        for _, _, r0, r1, _, _ in _tiles(self.tiles.dims, self.plan):
            in_at, out_at = slots[len(jobs) % 2]
            box = (1, r1 - r0, cols)
            job = Job(loads=[] if jobs else self.table_loads())
            job.loads.append(load(Space.ACT, in_at, src + r0 * cols * self.e_in, self.e_in, box, (0, cols, 1)))
            job.computes.append(instr(
                Op.SOFTMAX, 0, rows=r1 - r0, cols=cols, in_addr=in_at, in_bits=8 * self.e_in,
                in_mult=int(a["in_mult"]), in_shift=int(a["in_shift"]), param_addr=0, out_addr=out_at,
                out_bits=8 * self.e_out, out_zero=int(a["out_zero"]), mult=int(a["mult"]), shift=int(a["shift"]),
                lo=int(a["lo"]), hi=int(a["hi"])))
            job.stores.append(store(out_at, dst + r0 * cols * self.e_out, self.e_out, box, (0, cols, 1)))
            jobs.append(job)
        return jobs


class UpsampleLayer(MapLayer):
    """Nearest Resize by integer factors (fh, fw): each tile copied once on
    chip, then stored fh x fw times with strides that interleave the copies."""

    def __init__(self, node: Node, config: HardwareConfig, image: ConstantImage):
        super().__init__(node, config, image)
        x, y = node.inputs[0].type, node.outputs[0].type  # an integer upsampling: map_tiles checked it
        self.batch, self.dims, self.out_dims = x.shape[0], tuple(x.shape[1:]), tuple(y.shape[1:])
        self.fh, self.fw = y.shape[2] // x.shape[2], y.shape[3] // x.shape[3]
        self.e = x.dtype.itemsize

    def jobs(self, addr) -> list[Job]:
        e = self.e
        src = dense(addr(self.node.inputs[0]), e, self.dims)
        out = dense(addr(self.node.outputs[0]), e, self.out_dims)
        slots = self._slots()
        low, high = ACTIVATION_RANGE[self.node.inputs[0].type.dtype]
        zs, ys, xs = out.strides
        interleaved = (zs, ys * self.fh, xs * self.fw)  # each copy lands on every fh-th row, fw-th column
        jobs = []
        for n in range(self.batch):
            for c0, c1, r0, r1, x0, x1 in _tiles(self.dims, self.plan):
                in_at, out_at = slots[len(jobs) % 2]
                box = (c1 - c0, r1 - r0, x1 - x0)
                job = Job()
                job.loads.append(load(Space.ACT, in_at, src.at(n, c0, r0, x0), e, box, src.strides))
                job.computes.append(copy_instr(in_at, out_at, box, 8 * e, 8 * e, 0, *IDENTITY, 0, low, high))
                for ry in range(self.fh):
                    for rx in range(self.fw):
                        job.stores.append(store(out_at, out.at(n, c0, r0 * self.fh + ry, x0 * self.fw + rx), e, box,
                                                interleaved))
                jobs.append(job)
        return jobs
