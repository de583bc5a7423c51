"""The quantized device ops (Q dialect) reject malformed parameters and
operands with a KernelError (the kernel) or a ShapeError (the IR type rule)
naming the attribute: the same checks (runtime/kernels/qparams.py) on both."""
from __future__ import annotations

import numpy as np
import pytest

from ir.errors import ShapeError
from runtime.errors import KernelError
from runtime.kernels import run_kernel
from tests.helpers.qops import INT8, ints, multipliers, one_node


def conv_setup():
    rng = np.random.default_rng(0)
    x = ints(rng, (1, 4, 5, 5), INT8)
    w = ints(rng, (4, 2, 3, 3), INT8, -127, 127)
    b = np.zeros(4, np.int32)
    mult, shift = multipliers(rng, 4)
    attrs = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=2, x_zero=0,
                 mult=mult, shift=shift, neg_mult=(), neg_shift=(), res_zero=0, res_mult=2**30, res_shift=1,
                 out_zero=0, lo=-128, hi=127, out_dtype="int8")
    return [x, w, b, ints(rng, (1, 4, 3, 3), INT8)], attrs


CONV_FAULTS = [
    ("x_zero", 128, "x_zero=128 is outside"),
    ("x_zero", 0.5, "x_zero must be an integer"),
    ("mult", [2**31, 2**30, 2**30, 2**30], r"mult\[0\]=2147483648 is outside"),
    ("mult", [2**30 - 1] * 4, r"mult\[0\]=1073741823 is outside"),
    ("mult", [2**30] * 3, "mult has 3 values, expected 4"),
    ("shift", [0, 5, 5, 5], r"shift\[0\]=0 is outside"),
    ("shift", [5, 5, 5, 63], r"shift\[3\]=63 is outside"),
    ("shift", "abc", "shift must be a list of integers"),
    ("neg_mult", [2**30] * 4, "neg_mult has 4 values but neg_shift has 0"),
    ("neg_mult", [2**30] * 2, "neg_mult has 2 values"),
    ("res_zero", -129, "res_zero=-129 is outside"),
    ("res_mult", 0, "res_mult=0 is outside"),
    ("res_shift", 99, "res_shift=99 is outside"),
    ("out_zero", 200, "out_zero=200 is outside"),
    ("lo", 5, "lo=5 is above hi=4"),
    ("hi", 128, "hi=128 is outside"),
    ("out_dtype", "int32", "out_dtype='int32' must be 'int8' or 'int16'"),
    ("kernel_shape", [2, 3], "kernel_shape"),
    ("group", 3, "group=3"),
    ("strides", [0, 1], "strides"),
    ("pads", [0, -1, 0, 0], "pads"),
]


@pytest.mark.parametrize("name, value, message", CONV_FAULTS)
def test_qconv_rejects_malformed_parameters(name, value, message):
    inputs, attrs = conv_setup()
    attrs[name] = value
    if name == "lo":
        attrs["hi"] = 4
    with pytest.raises(KernelError, match=message):
        run_kernel("QConv", inputs, attrs)
    with pytest.raises(ShapeError, match=message):
        one_node("QConv", inputs, consts=(1, 2), **attrs)


def test_an_accumulator_that_could_overflow_its_type_is_refused():
    inputs, attrs = conv_setup()
    inputs[0] = inputs[0].astype(np.int16)
    inputs[1] = np.full((4, 2, 3, 3), 30000, np.int16)
    with pytest.raises(KernelError, match="beyond the int32 accumulator"):
        run_kernel("QConv", inputs, attrs)
    with pytest.raises(ShapeError, match="beyond the int32 accumulator"):
        one_node("QConv", inputs, consts=(1, 2), **attrs)
    inputs[2] = inputs[2].astype(np.int64)
    run_kernel("QConv", inputs, attrs)


@pytest.mark.parametrize("index, array, message", [
    (0, np.zeros((1, 4, 5, 5), np.uint8), "x must be int8 or int16, got uint8"),
    (1, np.zeros((4, 2, 3, 3), np.float32), "w must be int8 or int16, got float32"),
    (2, np.zeros(4, np.int16), "b must be int32 or int64, got int16"),
    (2, np.zeros(3, np.int32), r"b must .*4"),
    (3, np.zeros((1, 4, 3, 2), np.int8), "r must have the output's shape"),
])
def test_qconv_rejects_malformed_operands(index, array, message):
    inputs, attrs = conv_setup()
    inputs[index] = array
    with pytest.raises(KernelError, match=message):
        run_kernel("QConv", inputs, attrs)
    with pytest.raises(ShapeError, match=message):
        one_node("QConv", inputs, consts=(1, 2), **attrs)


ELEMENT_FAULTS = [
    ("QAdd", "a_zero", -200, "a_zero=-200 is outside"),
    ("QAdd", "a_mult", 7, "a_mult=7 is outside"),
    ("QAdd", "b_shift", 70, "b_shift=70 is outside"),
    ("QMul", "mult", 2**31, "mult=2147483648 is outside"),
    ("QMul", "b_zero", 1000, "b_zero=1000 is outside"),
    ("QMul", "hi", 300, "hi=300 is outside"),
]


@pytest.mark.parametrize("op, name, value, message", ELEMENT_FAULTS)
def test_element_ops_reject_malformed_parameters(op, name, value, message):
    a, b = np.zeros((2, 3), np.int8), np.zeros((1, 3), np.int8)
    attrs = dict(a_zero=0, b_zero=0, out_zero=0, lo=-128, hi=127, out_dtype="int8")
    attrs.update(dict(a_mult=2**30, a_shift=30, b_mult=2**30, b_shift=30) if op == "QAdd" else
                 dict(mult=2**30, shift=30))
    attrs[name] = value
    with pytest.raises(KernelError, match=message):
        run_kernel(op, [a, b], attrs)
    with pytest.raises(ShapeError, match=message):
        one_node(op, [a, b], **attrs)


def test_element_ops_reject_shapes_that_do_not_broadcast():
    attrs = dict(a_zero=0, b_zero=0, mult=2**30, shift=30, out_zero=0, lo=-128, hi=127, out_dtype="int8")
    with pytest.raises(KernelError, match="do not broadcast"):
        run_kernel("QMul", [np.zeros((2, 3), np.int8), np.zeros((4,), np.int8)], attrs)


POOL_FAULTS = [
    ("mults", [2**30] * 3, "mults has 3 values, expected 4"),
    ("shifts", [1, 2, 3, 64], r"shifts\[3\]=64 is outside"),
    ("ceil_mode", 2, "ceil_mode=2 must be 0 or 1"),
    ("count_include_pad", -1, "count_include_pad=-1 must be 0 or 1"),
    ("pads", [2, 0, 0, 0], "covers no element"),
    ("x_zero", 300, "x_zero=300 is outside"),
]


@pytest.mark.parametrize("name, value, message", POOL_FAULTS)
def test_qavg_pool_rejects_malformed_parameters(name, value, message):
    x = np.zeros((1, 2, 4, 4), np.int8)
    attrs = dict(kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 0, 0], ceil_mode=0, count_include_pad=0, x_zero=0,
                 mults=[2**30] * 4, shifts=[30] * 4, out_zero=0, lo=-128, hi=127, out_dtype="int8")
    attrs[name] = value
    with pytest.raises(KernelError, match=message):
        run_kernel("QAvgPool", [x], attrs)
    with pytest.raises(ShapeError, match=message):
        one_node("QAvgPool", [x], **attrs)


def test_a_convolution_table_read_by_16_bit_codes_has_16_bit_entries():
    x, w, b = np.zeros((1, 1, 2, 2), np.int8), np.ones((1, 1, 1, 1), np.int8), np.zeros(1, np.int32)
    attrs = dict(kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1, x_zero=0,
                 mult=[2**30], shift=[30], neg_mult=[], neg_shift=[], out_zero=0, lo=-32768, hi=32767,
                 table=[0] * 513, out_dtype="int8")
    with pytest.raises(KernelError, match="out_dtype=int8 with a 513-entry table"):
        run_kernel("QConv", [x, w, b], attrs)


@pytest.mark.parametrize("table, x, message", [
    (list(range(-128, 127)), np.zeros(3, np.int8), "table has 255 values, expected 256"),
    ([0] * 255 + [128], np.zeros(3, np.int8), r"table\[255\]=128 is outside"),
    ([0] * 256, np.zeros(3, np.int16), "table has 256 values, expected 513"),
    ([0] * 513, np.zeros(3, np.int8), "table has 513 values, expected 256"),
    ([0] * 256, np.zeros(3, np.int32), "x must be int8 or int16, got int32"),
])
def test_qlut_rejects_malformed_tables_and_inputs(table, x, message):
    with pytest.raises(KernelError, match=message):
        run_kernel("QLut", [x], dict(table=table, out_dtype="int8"))
    with pytest.raises(ShapeError, match=message):
        one_node("QLut", [x], table=table)


@pytest.mark.parametrize("change, message", [
    (dict(zeros=[0]), "zeros has 1 values, expected 2"),
    (dict(mults=[2**30]), "mults has 1 values, expected 2"),
    (dict(zeros=[0, -129]), r"zeros\[1\]=-129 is outside"),
    (dict(axis=3), "axis=3 is out of range"),
    (dict(axis=0), "does not match x_0"),
])
def test_qconcat_rejects_malformed_parameters(change, message):
    xs = [np.zeros((2, 3, 4), np.int8), np.zeros((2, 5, 4), np.int8)]
    attrs = dict(axis=1, zeros=[0, 0], mults=[2**30] * 2, shifts=[30] * 2, out_zero=0, lo=-128, hi=127,
                 out_dtype="int8")
    attrs.update(change)
    with pytest.raises(KernelError, match=message):
        run_kernel("QConcat", xs, attrs)
    with pytest.raises(ShapeError, match=message):
        one_node("QConcat", xs, **attrs)


def test_qgemm_rejects_mismatched_operands():
    attrs = dict(x_zero=0, mult=[2**30] * 3, shift=[30] * 3, neg_mult=(), neg_shift=(), out_zero=0, lo=-128,
                 hi=127, out_dtype="int8")
    x, w, b = np.zeros((2, 4), np.int8), np.zeros((3, 5), np.int8), np.zeros(3, np.int32)
    with pytest.raises(KernelError, match="differ in the reduced dim"):
        run_kernel("QGemm", [x, w, b], attrs)
    with pytest.raises(ShapeError, match="differ in the reduced dim"):
        one_node("QGemm", [x, w, b], consts=(1, 2), **attrs)
