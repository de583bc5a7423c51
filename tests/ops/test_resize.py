"""Resize (every mode x coordinate mode x rounding, scales or sizes, axes,
antialias, aspect-ratio policies) against onnx's reference evaluator; the
old forms (Resize 10/11, Upsample 7/9) against onnxruntime, which defines
their behaviour; the fused 2-D kernels against the generic separable path;
static output shapes; errors on bad or huge runtime parameters."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import backend
from compiler.errors import ModelImportError, UnsupportedOpError
from compiler.frontend import import_onnx
from runtime.errors import ExecutionError, KernelError
from runtime.kernels import run_kernel
from runtime.kernels.resize import COORDINATE_MODES, NEAREST_MODES
from tests.helpers.node_models import assert_matches_reference, make_node_model

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCALES = st.sampled_from([0.5, 0.6, 0.75, 1.0, 4 / 3, 1.5, 2.0, 2.5, 3.0])
DEFAULTS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
            "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
            "axes": None, "keep_aspect_ratio_policy": "stretch"}


def image(shape, dtype=np.float32, seed=0) -> np.ndarray:
    values = np.random.default_rng(seed).uniform(-4, 4, size=shape)
    if np.dtype(dtype).kind == "u":
        values = (values + 4) * 30
    return values.astype(dtype)


def floats(values) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def ints(values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def prepare(op, inputs, opset=23, consts=(), **attrs):
    return backend.prepare(make_node_model(op, inputs, 1, opset, consts, **attrs), check=True, strict_types=True)


def run(op, inputs, opset=23, consts=(), **attrs):
    feeds = {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts}
    return prepare(op, inputs, opset, consts, **attrs).run(feeds)[0]


def onnxruntime(op, inputs, opset, consts=(), **attrs):
    model = make_node_model(op, inputs, 1, opset, consts, **attrs)
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {f"in{i}": x for i, x in enumerate(inputs) if x is not None and i not in consts})[0]


def kernel(x, scales=None, sizes=None, roi=None, **attrs):
    return run_kernel("Resize", [x, roi, scales, sizes], {**DEFAULTS, **attrs})[0]


# ---------------------------------------------------------------- newest form vs the reference
@st.composite
def resize_cases(draw):
    rank = draw(st.sampled_from([4, 4, 3, 2, 5]))
    shape = [draw(st.integers(1, 2)) for _ in range(rank - 2)] + [draw(st.integers(1, 5)) for _ in range(2)]
    mode = draw(st.sampled_from(["nearest", "linear", "cubic"]))
    attrs = {"mode": mode, "coordinate_transformation_mode": draw(st.sampled_from(COORDINATE_MODES))}
    if mode == "nearest":
        attrs["nearest_mode"] = draw(st.sampled_from(NEAREST_MODES))
    else:
        attrs["antialias"] = draw(st.sampled_from([0, 1]))
    if mode == "cubic":
        attrs["cubic_coeff_a"] = draw(st.sampled_from([-0.75, -0.5]))
        # half_pixel_symmetric puts coordinates 1e-16 off the edge pixel, where exclude_outside
        # leaves only weights that round to 0 or not (the reference computes them in float32).
        if attrs["coordinate_transformation_mode"] != "half_pixel_symmetric":
            attrs["exclude_outside"] = draw(st.sampled_from([0, 1]))
    axes = draw(st.sampled_from([None, [rank - 2, rank - 1], [rank - 1, rank - 2], [rank - 1]]))
    if axes is not None:
        attrs["axes"] = axes
    resized = list(range(rank)) if axes is None else [a % rank for a in axes]
    use_sizes = draw(st.booleans())
    if use_sizes:
        sizes = [draw(st.integers(1, 8)) if a >= rank - 2 else shape[a] for a in resized]
        policy = draw(st.sampled_from(["stretch", "not_larger", "not_smaller"]))
        if policy != "stretch":
            attrs["keep_aspect_ratio_policy"] = policy
        params = [None, ints(sizes)]
    else:
        scales = [draw(SCALES) if a >= rank - 2 else 1.0 for a in resized]
        params = [floats(scales), None]
    roi = None
    if attrs["coordinate_transformation_mode"] == "tf_crop_and_resize":
        starts = [draw(st.sampled_from([0.0, 0.2, 0.4, -0.1])) for _ in resized]
        ends = [draw(st.sampled_from([1.0, 0.8, 0.6, 1.2])) for _ in resized]
        roi = floats(starts + ends)
        attrs["extrapolation_value"] = draw(st.sampled_from([0.0, 10.0]))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.uint8]))
    inputs = [image(shape, dtype), roi, *params]
    while inputs[-1] is None:
        inputs.pop()
    consts = tuple(i for i in range(1, len(inputs)) if inputs[i] is not None and draw(st.booleans()))
    return inputs, consts, attrs


@given(resize_cases())
@SETTINGS
def test_resize_matches_reference(case):
    inputs, consts, attrs = case
    atol = 1.0 if inputs[0].dtype == np.uint8 else 1e-4
    assert_matches_reference("Resize", inputs, consts=consts, rtol=1e-4, atol=atol, **attrs)


@st.composite
def hot_cases(draw):
    """Nearest/linear over H and W (the fused kernels) with any coordinate mode."""
    shape = [draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))]
    mode = draw(st.sampled_from(["nearest", "linear"]))
    coordinate_mode = draw(st.sampled_from(COORDINATE_MODES))
    scales = floats([1, 1, draw(SCALES), draw(SCALES)])
    roi = floats([0, 0, 0.1, -0.2, 1, 1, 0.9, 1.1]) if coordinate_mode == "tf_crop_and_resize" else None
    return image(shape, seed=draw(st.integers(0, 9))), roi, scales, {
        "mode": mode, "coordinate_transformation_mode": coordinate_mode, "extrapolation_value": -7.0,
        "nearest_mode": draw(st.sampled_from(NEAREST_MODES))}


@given(hot_cases())
@SETTINGS
def test_fused_2d_kernels_match_the_separable_path(case):
    """float32 takes the fused 2-D kernels, float64 the generic per-axis one."""
    x, roi, scales, attrs = case
    fused = kernel(x, scales, roi=roi, **attrs)
    generic = kernel(x.astype(np.float64), scales, roi=roi, **attrs)
    assert fused.dtype == np.float32
    np.testing.assert_allclose(fused, generic, rtol=1e-5, atol=1e-5)


def test_nearest_upsample_x2_is_repeat_on_many_threads():
    """YOLO's upsample: big enough to be split over threads (row copies stay in one chunk)."""
    x = image([1, 16, 40, 52])
    got = kernel(x, floats([1, 1, 2, 2]), coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    np.testing.assert_array_equal(got, x.repeat(2, axis=2).repeat(2, axis=3))


def test_bilinear_align_corners_keeps_the_corners():
    x = image([2, 3, 7, 9])
    got = kernel(x, sizes=ints([2, 3, 13, 17]), mode="linear", coordinate_transformation_mode="align_corners")
    np.testing.assert_allclose(got[..., ::6, ::8], x[..., ::3, ::4], rtol=1e-6)


def test_negative_axes_count_from_the_end():
    x = image([1, 2, 3, 4])
    want = kernel(x, floats([1.5, 2]), mode="linear", axes=[3, 2])
    np.testing.assert_array_equal(kernel(x, floats([1.5, 2]), mode="linear", axes=[-1, -2]), want)


def test_integer_and_bool_nearest_keep_their_dtype():
    x = np.arange(12, dtype=np.int8).reshape(1, 3, 4)
    got = kernel(x, floats([1, 2, 0.5]))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, x.repeat(2, axis=1)[:, :, ::2])
    flags = np.array([[True, False]])
    np.testing.assert_array_equal(kernel(flags, floats([1, 2])), [[True, True, False, False]])


# ---------------------------------------------------------------- old opset forms vs onnxruntime
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 3.0, 1.5], [1.0, 1.0, 1.7, 2.4]])
def test_upsample_opset7_attribute_scales(mode, scales):
    x = image([1, 2, 3, 4])
    got = run("Upsample", [x], opset=7, mode=mode, scales=scales)
    want = onnxruntime("Upsample", [x], 7, mode=mode, scales=scales)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("consts", [(1,), ()])
def test_upsample_opset9_input_scales(mode, consts):
    x, scales = image([2, 1, 4, 3]), floats([1, 1, 2.5, 2])
    got = run("Upsample", [x, scales], opset=9, consts=consts, mode=mode)
    want = onnxruntime("Upsample", [x, scales], 9, consts=consts, mode=mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.75], [1, 1, 0.6, 1.5], [1, 1, 1.5, 0.4]])
def test_resize_opset10(mode, scales):
    """Asymmetric coordinates; nearest rounds down when upsampling, up when downsampling."""
    x = image([1, 2, 5, 6])
    got = run("Resize", [x, floats(scales)], opset=10, consts=(1,), mode=mode)
    want = onnxruntime("Resize", [x, floats(scales)], 10, consts=(1,), mode=mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("mode, coordinate_mode", [("nearest", "asymmetric"), ("linear", "half_pixel"),
                                                    ("linear", "align_corners"), ("cubic", "pytorch_half_pixel")])
def test_resize_opset11_and_13_with_empty_scales(opset, mode, coordinate_mode):
    x = image([1, 2, 4, 5])
    inputs = [x, floats([]), floats([]), ints([1, 2, 8, 10])]
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_mode}
    got = run("Resize", inputs, opset=opset, consts=(1, 2), **attrs)
    want = onnxruntime("Resize", inputs, opset, consts=(1, 2), **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_opset18_axes_and_antialias(mode):
    inputs = [image([1, 2, 6, 9]), None, floats([0.5, 0.4])]
    assert_matches_reference("Resize", inputs, opset=18, consts=(2,), rtol=1e-4, atol=1e-5, mode=mode, antialias=1,
                             axes=[2, 3])


def test_roi_is_dropped_where_it_is_not_read():
    rep = prepare("Resize", [image([1, 1, 2, 2]), floats([0, 0, 0, 0, 1, 1, 1, 1]), floats([1, 1, 2, 2])],
                  consts=(2,))
    (node,) = rep.graph.nodes
    assert [v is None for v in node.inputs] == [False, True, False]


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "floor"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.6], [1, 1, 1.6, 2.4]])
def test_resize_opset11_tf_half_pixel_for_nn(nearest_mode, scales):
    inputs = [image([1, 1, 5, 5]), floats([]), floats(scales)]
    attrs = {"coordinate_transformation_mode": "tf_half_pixel_for_nn", "nearest_mode": nearest_mode}
    got = run("Resize", inputs, opset=11, consts=(1, 2), **attrs)
    np.testing.assert_array_equal(got, onnxruntime("Resize", inputs, 11, consts=(1, 2), **attrs))


def test_tf_half_pixel_for_nn_with_other_rounding_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="tf_half_pixel_for_nn"):
        prepare("Resize", [image([1, 1, 2, 2]), floats([]), floats([1, 1, 2, 2])], opset=11, consts=(1, 2),
                coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="ceil")


# ---------------------------------------------------------------- output shapes at compile time
@pytest.mark.parametrize("scales, want", [([1, 1, 0.7, 1.1], (1, 2, 6, 11)), ([1, 1, 0.3, 2.2], (1, 2, 3, 22))])
def test_constant_scales_give_floor_of_in_times_scale(scales, want):
    rep = prepare("Resize", [image([1, 2, 10, 10]), None, floats(scales)], consts=(2,))
    assert rep.graph.outputs[0].type.shape == want


def test_constant_sizes_with_aspect_policy_give_a_static_shape():
    rep = prepare("Resize", [image([1, 2, 4, 6]), None, None, ints([8, 8])], consts=(3,), axes=[2, 3],
                  keep_aspect_ratio_policy="not_larger")
    assert rep.graph.outputs[0].type.shape == (1, 2, 5, 8)


def test_runtime_scales_leave_resized_dims_unknown():
    graph = import_onnx(make_node_model("Resize", [image([1, 2, 4, 6]), None, floats([2, 2])], axes=[2, 3]))
    assert graph.outputs[0].type.shape == (1, 2, None, None)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("roi, scales, sizes, attrs, message", [
    (None, floats([1, 1, 2, 2]), ints([1, 1, 4, 4]), {}, "exactly one of scales and sizes"),
    (None, None, None, {}, "exactly one of scales and sizes"),
    (None, floats([1, 2]), None, {}, "2 values for 4 resized axes"),
    (None, floats([1, 1, 0, 2]), None, {}, "positive and at most"),
    (None, floats([1, 1, np.nan, 2]), None, {}, "positive and at most"),
    (None, None, ints([1, 1, -3, 2]), {}, "must not be negative"),
    (None, None, ints([1, 1, 1 << 20, 1 << 20]), {}, "exceeds"),
    (None, floats([1, 1, 1e30, 1]), None, {}, "positive and at most"),
    (None, floats([1, 1, 3e4, 3e4]), None, {}, "exceeds"),
    (None, floats([1, 1, 2, 2]), None, {"coordinate_transformation_mode": "tf_crop_and_resize"}, "needs the roi"),
    (floats([0, 1]), floats([1, 1, 2, 2]), None, {"coordinate_transformation_mode": "tf_crop_and_resize"},
     "roi has 2 values, expected 8"),
    (None, floats([1, 1, 2, 2]), None, {"mode": "bicubic"}, "mode='bicubic'"),
    (None, floats([2, 2]), None, {"axes": [2, 2]}, "repeats an axis"),
])
def test_bad_runtime_parameters_are_kernel_errors(roi, scales, sizes, attrs, message):
    with pytest.raises(KernelError, match=message):
        kernel(image([1, 1, 2, 2]), scales, sizes, roi, **attrs)


def test_huge_runtime_sizes_fail_cleanly_when_run():
    rep = prepare("Resize", [image([1, 1, 2, 2]), None, None, ints([1, 1, 4, 4])])
    with pytest.raises(ExecutionError, match="exceeds"):
        rep.run({"in0": image([1, 1, 2, 2]), "in3": ints([1, 1, 1 << 40, 1 << 40])})


def test_bad_constant_parameters_fail_at_compile_time():
    with pytest.raises(ModelImportError, match="positive and at most"):
        prepare("Resize", [image([1, 1, 2, 2]), None, floats([1, 1, -2, 2])], consts=(2,))
    with pytest.raises(UnsupportedOpError, match="mode='cubic'"):
        prepare("Upsample", [image([1, 1, 2, 2]), floats([1, 1, 2, 2])], opset=9, consts=(1,), mode="cubic")


def test_empty_output_axis():
    got = kernel(image([1, 1, 2, 3]), scales=floats([1, 1, 0.4, 1]))
    assert got.shape == (1, 1, 0, 3)
    assert math.prod(got.shape) == 0
