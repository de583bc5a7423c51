"""The capacity planner (passes/tiling.py): tiles that fit every buffer of
any hardware config, priced as the simulator's cycle model prices them, and
an error naming the layer and the buffer when none fits."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ir import GraphBuilder
from passes.tiling import (
    ConvShape,
    TilingError,
    bcast_mode,
    conv_cost,
    eltwise_operands,
    operand_dims,
    operand_strides,
    plan_conv,
)
from runtime.hardware import PRESETS, HardwareConfig
from runtime.isa import Bcast
from runtime.sim import timing

CONFIGS = {"default": PRESETS["fwdnxt"], "tiny": PRESETS["tiny"], "large": PRESETS["large"]}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_planner_fits_every_buffer(config):
    hw = CONFIGS[config]
    for shape in (ConvShape(256, 14, 14, 256, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4),
                  ConvShape(3, 224, 224, 64, 112, 112, 7, 7, 2, 2, 1, 1, 1, 1, 1, 1, 0, 4),
                  ConvShape(96, 56, 56, 96, 56, 56, 3, 3, 1, 1, 1, 1, 96, 1, 1, 1, 0, 4),
                  ConvShape(2048, 1, 1, 1000, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 4)):
        plan = plan_conv(shape, hw, "layer")
        assert 2 * (plan.in_bytes + plan.res_bytes + plan.out_bytes) <= hw.activation_buffer_bytes
        assert 2 * (plan.wgt_bytes + plan.param_bytes) <= hw.weight_buffer_bytes
        assert plan.acc_bytes <= hw.accumulator_buffer_bytes


@pytest.mark.parametrize("config", ["default", "large"])  # tiny's 1 KiB holds a few pixels of 256 channels: no choice
def test_planner_keeps_dram_rows_at_least_a_burst_wide(config):
    """Stride-2 1x1 downsampling convolutions (ResNet's): counting bytes
    alone, one output column a tile reads only the columns used (55 rows of
    1 byte per channel); at DRAM burst granularity that costs 64x, so the
    planner takes wide tiles and reads the skipped columns too."""
    for c, size, k in ((256, 56, 512), (512, 28, 1024), (1024, 14, 2048)):
        shape = ConvShape(c, size, size, k, size // 2, size // 2, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 0, 4)
        plan = plan_conv(shape, CONFIGS[config], "downsample")
        assert shape.in_cols(plan.wt) * shape.e_in >= timing.DRAM_BURST_BYTES // 2 or plan.wt == shape.ow, plan
        narrow = dataclasses.replace(plan, wt=1)
        assert conv_cost(shape, plan, CONFIGS[config])[0] < conv_cost(shape, narrow, CONFIGS[config])[0]


def test_infeasible_layer_names_layer_and_buffer():
    hw = HardwareConfig(weight_buffer_bytes=64, activation_buffer_bytes=64, accumulator_buffer_bytes=64)
    with pytest.raises(TilingError, match=r"layer 'big'.*activation buffer"):
        plan_conv(ConvShape(64, 64, 64, 64, 64, 64, 11, 11, 1, 1, 1, 1, 1, 1, 1, 1, 0, 4), hw, "big")


def test_eltwise_operands_broadcast_by_zero_strides():
    """An operand repeating along an axis is read as a full box with a zero
    stride there; one per channel or one in all is ELTWISE's b directly."""
    b = GraphBuilder()
    var, gamma = b.input("var", [1, 1, 3, 5]), b.input("gamma", [1, 4, 1, 1])
    node = b.Mul(gamma, var).producer
    a, bb, swapped = eltwise_operands(node)
    assert (a.name, bb.name, swapped) == ("var", "gamma", True)
    assert bcast_mode(node, var) == Bcast.FULL and bcast_mode(node, gamma) == Bcast.CHANNEL
    assert operand_strides(node, var) == (15, (0, 5, 1))
    assert operand_strides(node, gamma) == (4, (1, 0, 0))
    boxes = b.input("boxes", [2, 4, 40])
    stride = b.Mul(boxes, b.input("s", [1, 40])).producer  # YOLO's box times stride: per position, one image
    assert operand_strides(stride, stride.inputs[1]) == (0, (0, 0, 1))
    assert bcast_mode(stride, stride.inputs[1]) == Bcast.FULL
    codes = b.input("codes", [2, 4, 40], np.int8)
    scalar = b.QSub(b.input("one", [1], np.int8), codes, a_zero=0, a_mult=1 << 30, a_shift=30, b_zero=0,
                    b_mult=1 << 30, b_shift=30, out_zero=0, lo=-128, hi=127, out_dtype="int8").producer
    assert eltwise_operands(scalar)[2] is False  # QSub keeps its order: a broadcast a, zero strides
    assert operand_strides(scalar, scalar.inputs[0]) == (0, (0, 0, 0))
    with pytest.raises(TilingError, match="does not broadcast"):
        operand_dims(stride, b.input("bad", [1, 1, 1, 40]))
