"""Conv and FusedConv steps prepared with their constant weights: the same
results as the generic kernel, every call they were not prepared for handed
to it (so errors read the same), and weights rewritten in place repacked."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from runtime import ExecutionError, Executor
from runtime.gemm import family
from runtime.gemm import pack as gemm_pack
from runtime.gemm.family import host_isa, narrow_isa
from runtime.kernels import conv_weights
from runtime.kernels.nn_prepared import PreparedConv
from runtime.kernels.registry import get_kernel, prepared_kernel
from runtime.program import NO_SLOT, Program, Step
from tests.helpers.conv import conv_attrs
from tests.helpers.gemm import NEEDS_NARROW

RNG = np.random.default_rng(7)


def _case(chans, out_c, size, kernel, group, batch=1):
    x = RNG.standard_normal((batch, chans, size, size)).astype(np.float32)
    w = RNG.standard_normal((out_c, chans // group, kernel, kernel)).astype(np.float32)
    b = RNG.standard_normal(out_c).astype(np.float32)
    return x, w, b


CASES = {  # (chans, out channels, plane size, kernel, group)
    "pointwise": (16, 24, 7, 1, 1),
    "pointwise one pixel": (8, 8, 1, 1, 1),  # the packed GEMM still: its bits are calibrated on
    "one position 3x3": (8, 8, 1, 3, 1),  # dot products: a 3x3 of a 1x1 map, its column holds the padding
    "depthwise same": (12, 12, 9, 3, 12),
    "depthwise multiplier": (4, 8, 6, 3, 4),
    "3x3 dense (column matrix)": (3, 5, 8, 3, 1),
    "3x3 dense of a 2x2 plane": (16, 24, 2, 3, 1),  # 4 columns: the weights packed narrow where the host has it
    "3x3 winograd": (16, 16, 12, 3, 1),
}
LAYOUTS = {"one position": "_OnePosition", "pointwise": "_Pointwise", "depthwise": "_Depthwise",
           "3x3 dense": "_Im2col", "3x3 winograd": "_Winograd"}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_prepared_fused_conv_equals_the_generic_kernel(name, with_residual, batch):
    chans, out_c, size, kernel, group = CASES[name]
    x, w, b = _case(chans, out_c, size, kernel, group, batch)
    attrs = conv_attrs(kernel, group)
    generic = get_kernel("FusedConv")
    prepared = prepared_kernel("FusedConv", attrs, [None, w, b, None])
    assert isinstance(prepared, PreparedConv)
    expected_shape = generic([x, w, b, None], attrs)[0].shape
    residual = RNG.standard_normal(expected_shape).astype(np.float32) if with_residual else None
    for _ in range(2):  # the first call prepares the layout, the second uses it
        got = prepared([x, w, b, residual], attrs)[0]
        np.testing.assert_array_equal(got, generic([x, w, b, residual], attrs)[0])
    kind = type(prepared.layouts[x.shape]).__name__ if prepared.layouts[x.shape] else "generic"
    assert kind == next(layout for prefix, layout in LAYOUTS.items() if name.startswith(prefix))


@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("batch", [1, 2])
def test_a_convolution_run_by_bands_is_prepared_as_bands_and_equals_the_generic_kernel(monkeypatch, with_residual,
                                                                                       batch):
    from runtime.kernels import nn_im2col

    monkeypatch.setattr(nn_im2col, "BAND_BLOCK", 27 * 32 * 4)  # bands of 4 rows of the 32 x 32 output
    x, w, b = _case(3, 16, 32, 3, 1, batch)
    attrs = conv_attrs(3)
    generic = get_kernel("FusedConv")
    prepared = prepared_kernel("FusedConv", attrs, [None, w, b, None])
    expected_shape = generic([x, w, b, None], attrs)[0].shape
    residual = RNG.standard_normal(expected_shape).astype(np.float32) if with_residual else None
    for _ in range(2):
        np.testing.assert_array_equal(prepared([x, w, b, residual], attrs)[0], generic([x, w, b, residual], attrs)[0])
    layout = prepared.layouts[x.shape]
    assert type(layout).__name__ == "_Banded" and layout.band == 4


def test_prepared_conv_without_bias_and_unfused():
    x, w, _ = _case(16, 8, 5, 1, 1)
    attrs = conv_attrs(1, clamp=None)
    prepared = prepared_kernel("Conv", attrs, [None, w])
    assert isinstance(prepared, PreparedConv)
    np.testing.assert_array_equal(prepared([x, w], attrs)[0], get_kernel("Conv")([x, w], attrs)[0])


def test_calls_it_was_not_prepared_for_go_to_the_generic_kernel():
    x, w, b = _case(8, 8, 4, 1, 1)
    attrs = conv_attrs(1)
    generic = get_kernel("FusedConv")
    prepared = prepared_kernel("FusedConv", attrs, [None, w, b, None])
    other_w = w.copy()
    np.testing.assert_array_equal(prepared([x, other_w, b, None], attrs)[0], generic([x, other_w, b, None], attrs)[0])
    strided = np.ascontiguousarray(np.repeat(x, 2, axis=3))[..., ::2]  # not C-contiguous
    np.testing.assert_array_equal(prepared([strided, w, b, None], attrs)[0], generic([x, w, b, None], attrs)[0])
    bigger = RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)  # another shape: prepared again
    np.testing.assert_array_equal(prepared([bigger, w, b, None], attrs)[0], generic([bigger, w, b, None], attrs)[0])
    with pytest.raises(Exception, match="must be float32") as prepared_error:
        prepared([x.astype(np.float64), w, b, None], attrs)
    with pytest.raises(Exception) as generic_error:
        generic([x.astype(np.float64), w, b, None], attrs)
    assert str(prepared_error.value) == str(generic_error.value)
    wrong = np.zeros((1, 8, 3, 3), np.float32)
    with pytest.raises(Exception, match="residual must be a float32 array of shape") as prepared_error:
        prepared([x, w, b, wrong], attrs)


def test_a_weight_rewritten_in_place_is_repacked():
    x, w, b = _case(8, 8, 4, 1, 1)
    attrs = conv_attrs(1, clamp=None)
    prepared = prepared_kernel("FusedConv", attrs, [None, w, b, None])
    before = prepared([x, w, b, None], attrs)[0]
    w *= 2
    after = prepared([x, w, b, None], attrs)[0]
    np.testing.assert_allclose(after - b[None, :, None, None], 2 * (before - b[None, :, None, None]), rtol=1e-5,
                               atol=1e-5)


def test_frozen_weights_keep_their_packing_until_they_are_writeable_again():
    x, w, b = _case(8, 8, 4, 1, 1)
    attrs = conv_attrs(1, clamp=None)
    w.flags.writeable = False
    prepared = prepared_kernel("FusedConv", attrs, [None, w, b, None])
    before = prepared([x, w, b, None], attrs)[0]
    packed = prepared.packed()
    assert prepared.packed() is packed
    np.testing.assert_array_equal(prepared([x, w, b, None], attrs)[0], before)
    w.flags.writeable = True
    w *= 2
    after = prepared([x, w, b, None], attrs)[0]
    assert prepared.packed() is not packed
    np.testing.assert_allclose(after - b[None, :, None, None], 2 * (before - b[None, :, None, None]), rtol=1e-5,
                               atol=1e-5)


def test_steps_without_constant_weights_or_with_bad_attributes_stay_generic():
    x, w, b = _case(8, 8, 4, 1, 1)
    generic = get_kernel("FusedConv")
    assert prepared_kernel("FusedConv", conv_attrs(1), [None, None, None, None]) is generic
    assert prepared_kernel("FusedConv", conv_attrs(1), [None, w.astype(np.float64), None, None]) is generic
    assert prepared_kernel("FusedConv", conv_attrs(3), [None, w, b, None]) is generic  # kernel_shape does not match W
    assert prepared_kernel("FusedConv", dict(conv_attrs(1), clamp=("a", 1)), [None, w, b, None]) is generic
    assert prepared_kernel("FusedConv", {}, [None, w, b, None]) is generic


def test_the_executor_prepares_conv_steps_and_a_bad_step_still_names_its_node():
    x, w, b = _case(8, 8, 4, 1, 1)
    attrs = conv_attrs(1)
    steps = [Step("FusedConv", (0, 1, 2, NO_SLOT), (3,), attrs, "pw")]
    program = Program(["x", "w", "b", "y"], [0], [3], steps, {1: w, 2: b})
    executor = Executor(program)
    assert isinstance(executor._calls[0][0], PreparedConv)
    got = executor.run({"x": x})["y"]
    np.testing.assert_array_equal(got, get_kernel("FusedConv")([x, w, b, None], attrs)[0])
    bad = Program(["x", "w", "b", "y"], [0], [3], [Step("FusedConv", (0, 1, 2, NO_SLOT), (3,), conv_attrs(3), "bad")],
                  {1: w, 2: b})
    with pytest.raises(ExecutionError, match="bad.*kernel_shape"):
        Executor(bad).run({"x": x})


@NEEDS_NARROW
@pytest.mark.parametrize("chans, out_c, size, kernel, stride", [(16, 24, 2, 3, 1), (32, 40, 1, 1, 1), (24, 16, 4, 1, 2),
                                                                (8, 64, 4, 3, 2), (40, 24, 3, 1, 1), (16, 32, 3, 3, 1)])
def test_few_column_convolutions_take_the_narrow_packing_with_the_hosts_bits(monkeypatch, chans, out_c, size, kernel,
                                                                             stride):
    """A convolution whose products have a few columns (a 3x3, 2x2 or 1x1
    output plane) reads its weights packed narrow where this CPU's family
    takes that many (family.narrow_columns: AVX2 1 to 12, AVX-512 9 to 12),
    prepared, scheduled and generic alike, with the bits of the host's
    packing."""
    x, w, b = _case(chans, out_c, size, kernel, 1)
    attrs = dict(conv_attrs(kernel, 1), strides=[stride, stride])
    generic = get_kernel("FusedConv")
    prepared = prepared_kernel("FusedConv", attrs, [None, w, b, None])
    gc.collect()  # an earlier test's array waiting in a reference cycle left the count below when collected
    before = len(conv_weights.narrow_weights)
    got = prepared([x, w, b, None], attrs)[0], generic([x, w, b, None], attrs)[0]
    columns = got[0].shape[2] * got[0].shape[3]
    assert columns <= family.NARROW_COLUMNS
    assert len(conv_weights.narrow_weights) == before + (columns in family.narrow_columns(host_isa()))
    assert conv_weights.narrow_weights.get(w).isa == narrow_isa(host_isa())
    monkeypatch.setattr(gemm_pack, "narrow_isa", lambda isa: None)  # every packing the host's from here
    w2 = w.copy()
    host = prepared_kernel("FusedConv", attrs, [None, w2, b, None])([x, w2, b, None], attrs)[0]
    assert conv_weights.narrow_weights.get(w2).isa == host_isa()
    for array in got:
        np.testing.assert_array_equal(array, host)
