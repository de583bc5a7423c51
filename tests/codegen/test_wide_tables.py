"""Device code for tables read by int16 codes (docs/isa.md, the wide table):
a QLut on int16 data lowers to LUTs with wide=1 whose tiles hold 2-byte
codes, a QConv whose 513-entry table interpolates its int16 clamp to CONVs
with lut_wide=1 and room for the whole table in WGT; the simulator runs the
streams as the CPU kernels compute the layers."""
from __future__ import annotations

import numpy as np
import pytest

from codegen.device.conv import conv_lowerings
from codegen.device.image import ConstantImage
from codegen.device.maps import LutLayer
from codegen.device.stream import StreamBuilder
from ir import GraphBuilder
from passes.tile import plan_layer
from passes.tiling import conv_shape, map_tiles
from runtime.hardware import PRESETS
from runtime.isa import WIDE_LUT_ENTRIES, Op, column, decode_array, linear_size
from runtime.kernels import run_kernel
from runtime.sim import Simulator

CONFIGS = {"tiny": PRESETS["tiny"], "default": PRESETS["fwdnxt"]}
"""tiny (1 KiB of ACT, 2 KiB of WGT) cuts the layers into many tiles."""


def _simulate(node, jobs_of, config, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower ``node`` (its jobs from ``jobs_of(image)``, which adds its constants to the image), run the
    stream on ``x`` and return (the output, the decoded stream)."""
    image = ConstantImage()
    jobs_for = jobs_of(image)
    out = node.outputs[0]
    x_at = -(-image.size // 64) * 64
    out_at = x_at + -(-x.nbytes // 64) * 64
    nbytes = int(np.prod(out.type.shape)) * out.type.dtype.itemsize
    stream = StreamBuilder()
    stream.add_layer(node.name, node.op, (), jobs_for(lambda v: x_at if v is node.inputs[0] else out_at))
    raw = stream.finish()
    dram = np.zeros(out_at + nbytes, np.uint8)
    dram[:image.size] = np.frombuffer(image.tobytes(), np.uint8)
    dram[x_at:x_at + x.nbytes] = x.view(np.uint8).reshape(-1)
    Simulator(config, {(0, 0): raw}, dram.size).run([dram])
    got = dram[out_at:out_at + nbytes].view(out.type.dtype).reshape(out.type.shape)
    return got, decode_array(raw)[0]


def _rows(arr: np.ndarray, op: Op) -> np.ndarray:
    return arr[arr[:, 0] == op]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("out_dtype", ["int8", "int16"])
def test_qlut_on_int16_codes_is_a_wide_lut(config, out_dtype):
    hw, rng = CONFIGS[config], np.random.default_rng(5)
    info = np.iinfo(out_dtype)
    table = rng.integers(info.min, info.max + 1, WIDE_LUT_ENTRIES)
    b = GraphBuilder("wide_lut")
    node = b.QLut(b.input("x", [1, 3, 10, 30], np.int16), table=table.tolist(), out_dtype=out_dtype).producer
    node.annotations["tile"] = plan_layer(node, hw)
    assert map_tiles(node).operands[0].elem == 2, "a tile's codes take 2 bytes each"
    x = rng.integers(-32768, 32768, (1, 3, 10, 30)).astype(np.int16)
    x.reshape(-1)[:2] = (-32768, 32767)
    got, arr = _simulate(node, lambda image: LutLayer(node, hw, image).jobs, hw, x)
    luts = _rows(arr, Op.LUT)
    assert (luts[:, column(Op.LUT, "wide")] == 1).all() and luts[:, column(Op.LUT, "count")].sum() == x.size
    assert (luts[:, column(Op.LUT, "out_bits")] == 8 * np.dtype(out_dtype).itemsize).all()
    if config == "tiny":
        assert len(luts) > 2, "the layer is cut into several tiles"
    (want,) = run_kernel("QLut", [x], node.attrs)
    np.testing.assert_array_equal(got, want)


def _qconv(rng, table_entries: int, out_dtype: str, code_range=(-32768, 32767)):
    """A 3x3 QConv of 8-bit data whose clamp gives codes in ``code_range`` into a table of ``table_entries``."""
    b = GraphBuilder("wide_conv")
    x = b.input("x", [1, 8, 9, 9], np.int8)
    w = b.const(rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8))
    bias = b.const(rng.integers(-5000, 5000, 16).astype(np.int32))
    info = np.iinfo(out_dtype)
    table = rng.integers(info.min, info.max + 1, table_entries).tolist()
    y = b.QConv(x, w, bias, pads=[1, 1, 1, 1], x_zero=3, mult=[1 << 30] * 16, shift=[32] * 16, out_zero=-20,
                lo=code_range[0], hi=code_range[1], out_dtype=out_dtype, table=table)
    return y.producer


@pytest.mark.parametrize("config", CONFIGS)
def test_qconv_with_a_513_entry_table_sets_lut_wide(config):
    hw, rng = CONFIGS[config], np.random.default_rng(9)
    node = _qconv(rng, WIDE_LUT_ENTRIES, "int16")
    assert conv_shape(node).lut_bytes == WIDE_LUT_ENTRIES * 2
    node.annotations["tile"] = plan_layer(node, hw)

    def jobs_of(image):
        (lowerings,) = conv_lowerings(node, hw, image)
        (lowering,) = lowerings
        assert lowering.plan.lut_bytes == linear_size(WIDE_LUT_ENTRIES * 2)
        assert lowering.plan.needs()["weight"] <= hw.weight_buffer_bytes
        return lowering.jobs

    x = rng.integers(-128, 128, (1, 8, 9, 9)).astype(np.int8)
    got, arr = _simulate(node, jobs_of, hw, x)
    convs = _rows(arr, Op.CONV)
    finishing = convs[(convs[:, column(Op.CONV, "acc_mode")] & 2) == 0]
    assert (finishing[:, column(Op.CONV, "lut")] == 1).all() and (finishing[:, column(Op.CONV, "lut_wide")] == 1).all()
    assert (finishing[:, column(Op.CONV, "out_bits")] == 16).all()
    (want,) = run_kernel("QConv", [x, node.inputs[1].const, node.inputs[2].const], node.attrs)
    assert np.unique(want).size > 100, "the codes spread over the table"
    np.testing.assert_array_equal(got, want)


def test_a_256_entry_table_keeps_lut_wide_0():
    """Today's tables on int8 codes lower as before."""
    hw, rng = PRESETS["fwdnxt"], np.random.default_rng(2)
    node = _qconv(rng, 256, "int16", (-128, 127))
    node.annotations["tile"] = plan_layer(node, hw)
    image = ConstantImage()
    (lowerings,) = conv_lowerings(node, hw, image)
    convs = [ins for job in lowerings[0].jobs(lambda v: 0) for ins in job.computes]
    assert all(ins["lut"] == 1 and ins["lut_wide"] == 0 for ins in convs)
    assert lowerings[0].plan.lut_bytes == 512
