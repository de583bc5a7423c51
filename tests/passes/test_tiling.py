"""The capacity planner (passes/tiling.py): tiles that fit every buffer of
any hardware config, priced as the simulator's cycle model prices them, and
an error naming the layer and the buffer when none fits."""
from __future__ import annotations

import dataclasses

import pytest

from passes.tiling import ConvShape, TilingError, conv_cost, plan_conv
from runtime.hardware import PRESETS, HardwareConfig
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
