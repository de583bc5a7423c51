"""AIMET-style encodings files: offset conversions against the spec's worked
examples, exact round trips in both layouts, the empty file, every malformed
case rejected with the file, tensor and field named."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir.types import QuantParams
from passes.quant.encodings import (
    INT_DTYPES,
    Encodings,
    EncodingsError,
    UnsupportedEncodingError,
    export_encodings,
    grid_range,
    import_encodings,
    offset_from_zero,
    zero_from_offset,
)
from runtime.qscheme import activation_params

INT8, INT16 = np.dtype(np.int8), np.dtype(np.int16)
MISSING = object()
EMPTY_EXYNOS = {"activation_encodings": {}, "param_encodings": {}, "quantizer_args": {}, "version": None,
                "modules": {}}


def f32(x: float) -> float:
    return float(np.float32(x))


def with_changes(base: dict, changes: dict) -> dict:
    """``base`` updated with ``changes``; a MISSING value deletes the key."""
    out = dict(base)
    for key, value in changes.items():
        if value is MISSING:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def entry_0x(**changes) -> dict:
    """A valid 0.6.1 encoding (the spec's asymmetric example), changed."""
    base = {"bitwidth": 8, "dtype": "int", "is_symmetric": "False", "min": -2.10916, "max": 2.60870,
            "offset": -114, "scale": 0.0185014}
    return with_changes(base, changes)


def document_0x(activations=None, params=None, version="0.6.1") -> dict:
    return {"version": version, "activation_encodings": {} if activations is None else activations,
            "param_encodings": {} if params is None else params, "quantizer_args": {}}


def record_1(**changes) -> dict:
    """A valid 1.0.0 per-tensor record, changed."""
    base = {"name": "t", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 8, "is_sym": False,
            "scale": [0.0185014], "offset": [-114]}
    return with_changes(base, changes)


def document_1(activations=(), params=()) -> dict:
    return {"version": "1.0.0", "activation_encodings": list(activations), "param_encodings": list(params)}


# ------------------------------------------------------------- conversions

def test_symmetric_grids_have_offset_minus_half_the_codes():
    assert offset_from_zero(0, 8) == -128
    assert offset_from_zero(0, 16) == -32768
    assert offset_from_zero(0, 4) == -8  # the spec's symmetric 4-bit weight


@given(st.sampled_from([4, 8, 16]), st.data())
def test_offset_and_zero_convert_both_ways(bits, data):
    zero = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    offset = offset_from_zero(zero, bits)
    assert -(2 ** bits - 1) <= offset <= 0
    assert zero_from_offset(offset, bits) == zero
    # the same real for the same code: s * (q - z) == s * (q_u + offset) with q_u = q + 2^(bw-1)
    q = data.draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
    assert q - zero == (q + 2 ** (bits - 1)) + offset


def test_spec_asymmetric_example():
    """bw 8, min -2.10916, max 2.60870 -> scale 0.0185014, offset -114."""
    scale, zero = activation_params(-2.10916, 2.60870)
    assert scale == pytest.approx(0.0185014, rel=1e-5)
    assert zero == -14
    entry = export_encodings({"t": QuantParams(scale, zero, INT8)})["activation_encodings"]["t"][0]
    assert entry["offset"] == -114 and entry["is_symmetric"] == "False"
    assert entry["min"] == pytest.approx(-2.10916, abs=1e-4)
    assert entry["max"] == pytest.approx(2.60870, abs=1e-4)
    imported = import_encodings(document_0x({"t": [entry_0x()]}))
    assert imported.params["t"] == QuantParams(f32(0.0185014), -14, INT8)


def test_spec_symmetric_example():
    """Symmetric bw 8: scale 0.025, offset -128, min -3.2, max 3.175."""
    entry = export_encodings({"w": QuantParams(0.025, 0, INT8)}, weights={"w"})["param_encodings"]["w"][0]
    assert entry["offset"] == -128 and entry["is_symmetric"] == "True" and entry["bitwidth"] == 8
    assert entry["min"] == pytest.approx(-3.2) and entry["max"] == pytest.approx(3.175)
    spec = entry_0x(is_symmetric="True", offset=-128, scale=0.025, min=-3.2, max=3.175)
    imported = import_encodings(document_0x(params={"w": [spec]}))
    assert imported.params["w"] == QuantParams(f32(0.025), 0, INT8)
    assert imported.weights == {"w"}


def test_spec_4_bit_weight_grid_is_converted_but_not_supported():
    assert grid_range(0.5, offset_from_zero(0, 4), 4) == (-4.0, 3.5)
    spec = entry_0x(bitwidth=4, is_symmetric="True", offset=-8, scale=0.5, min=-4.0, max=3.5)
    with pytest.raises(UnsupportedEncodingError, match="4-bit") as info:
        import_encodings(document_0x(params={"w": [spec]}))
    assert (info.value.tensor, info.value.field) == ("w", "bitwidth")


def test_unsigned_symmetric_grid_offset_zero():
    entry = entry_0x(is_symmetric="True", offset=0, scale=0.01, min=0.0, max=2.55)
    assert import_encodings(document_0x({"r": [entry]})).params["r"] == QuantParams(f32(0.01), -128, INT8)


def test_min_max_within_half_a_step_of_the_grid_are_accepted():
    """Producers write min/max rounded independently of scale and offset."""
    entry = entry_0x(min=-2.109163284301758, max=2.6086959838867188, scale=0.018501389771699905)
    assert import_encodings(document_0x({"t": [entry]})).params["t"].zero == (-14,)


def test_16_bit_record_from_the_spec():
    record = record_1(bw=16, scale=[6.05e-05], offset=[-35799])
    params = import_encodings(document_1([record])).params["t"]
    assert params == QuantParams(f32(6.05e-05), 35799 - 32768, INT16)


# -------------------------------------------------------------- round trips

SCALES = st.floats(min_value=float(np.finfo(np.float32).smallest_subnormal), max_value=f32(1e30), width=32,
                   allow_subnormal=True)
NAMES = st.text(min_size=1, max_size=10)


@st.composite
def quant_params(draw):
    bits = draw(st.sampled_from(sorted(INT_DTYPES)))
    channels = draw(st.integers(1, 5))
    scales = draw(st.lists(SCALES, min_size=channels, max_size=channels))
    zeros = draw(st.lists(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1), min_size=channels,
                          max_size=channels))
    return QuantParams(scales, zeros, INT_DTYPES[bits], draw(st.integers(0, 3)))


@st.composite
def encodings(draw):
    params = draw(st.dictionaries(NAMES, quant_params(), max_size=6))
    floats = draw(st.sets(NAMES.filter(lambda name: name not in params), max_size=3))
    names = sorted(set(params) | floats)
    weights = draw(st.sets(st.sampled_from(names), max_size=len(names))) if names else set()
    return Encodings(params, frozenset(weights), frozenset(floats))


def axes_of(params: dict[str, QuantParams]) -> dict[str, int]:
    return {name: p.axis for name, p in params.items() if p.per_channel}


@pytest.mark.parametrize("version", ["0.6.1", "1.0.0"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(original=encodings())
def test_export_import_round_trip_is_exact(tmp_path, version, original):
    path = tmp_path / "model.encodings"
    written = export_encodings(original.params, path, weights=original.weights,
                               float_tensors=original.float_tensors, version=version)
    assert json.loads(path.read_text()) == written
    back = import_encodings(path, axes=axes_of(original.params))
    assert back == original
    for name, params in original.params.items():
        assert np.array_equal(np.float32(back.params[name].scale).view(np.uint32),
                              np.float32(params.scale).view(np.uint32))


@pytest.mark.parametrize("version", ["0.6.1", "1.0.0"])
@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-20, 1e20), zero=st.integers(-128, 127))
def test_round_trip_keeps_float32_scale_of_a_float64_scale(version, scale, zero):
    back = import_encodings(export_encodings({"t": QuantParams(scale, zero, INT8)}, version=version))
    assert back.params["t"] == QuantParams(f32(scale), zero, INT8)


@pytest.mark.parametrize("version", ["0.6.1", "1.0.0"])
def test_per_channel_weight_defaults_to_axis_0_and_axes_override(version):
    weight = QuantParams([0.5, 0.25, 0.125], [0, 0, 0], INT8, axis=1)
    document = export_encodings({"fc.weight": weight}, weights={"fc.weight"}, version=version)
    assert import_encodings(document).params["fc.weight"].axis == 0
    assert import_encodings(document, axes={"fc.weight": 1}).params["fc.weight"] == weight


@pytest.mark.parametrize("version", ["0.6.1", "1.0.0"])
def test_per_channel_activation_defaults_to_the_channel_axis_and_axes_override(version):
    document = export_encodings({"act": QuantParams([0.1, 0.2], [3, -4], INT8, axis=1)}, version=version)
    assert import_encodings(document).params["act"].axis == 1
    assert import_encodings(document, axes={"act": 2}).params["act"].axis == 2


def test_exported_layouts():
    params = {"x": QuantParams(0.5, 3, INT8), "w": QuantParams([0.25, 0.125], [0, 0], INT16, axis=0)}
    old = export_encodings(params, weights={"w"}, float_tensors={"y"}, quantizer_args={"per_channel": True})
    assert old == {
        "version": "0.6.1",
        "activation_encodings": {
            "x": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "False", "max": 62.0, "min": -65.5,
                   "offset": -131, "scale": 0.5}],
            "y": [{"bitwidth": 32, "dtype": "float"}]},
        "param_encodings": {"w": [
            {"bitwidth": 16, "dtype": "int", "is_symmetric": "True", "max": 8191.75, "min": -8192.0,
             "offset": -32768, "scale": 0.25},
            {"bitwidth": 16, "dtype": "int", "is_symmetric": "True", "max": 4095.875, "min": -4096.0,
             "offset": -32768, "scale": 0.125}]},
        "quantizer_args": {"per_channel": True}}
    new = export_encodings(params, weights={"w"}, float_tensors={"y"}, version="1.0.0")
    assert new == {
        "version": "1.0.0",
        "activation_encodings": [
            {"name": "x", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 8, "is_sym": False, "scale": [0.5],
             "offset": [-131]},
            {"name": "y", "dtype": "FLOAT", "enc_type": "PER_TENSOR", "bw": 32}],
        "param_encodings": [
            {"name": "w", "dtype": "INT", "enc_type": "PER_CHANNEL", "bw": 16, "is_sym": True,
             "scale": [0.25, 0.125], "offset": [-32768, -32768]}],
        "quantizer_args": {}}


# ------------------------------------------------------- the files accepted

def test_exynos_empty_file_means_run_in_float(tmp_path):
    path = tmp_path / "empty.encodings"
    path.write_text(json.dumps(EMPTY_EXYNOS))
    encodings = import_encodings(path)
    assert encodings == Encodings()
    assert encodings.is_empty


def test_float_encodings_of_16_and_32_bits():
    document = document_0x({"a": [{"bitwidth": 16, "dtype": "float"}]},
                           {"w": [{"bitwidth": 32, "dtype": "float"}]})
    encodings = import_encodings(document)
    assert encodings.float_tensors == {"a", "w"} and encodings.weights == {"w"}
    assert not encodings.params and not encodings.is_empty
    record = {"name": "b", "dtype": "FLOAT", "bw": 16}
    assert import_encodings(document_1([record])).float_tensors == {"b"}


def test_version_0_4_0_needs_no_dtype_and_no_version_means_0_4_0():
    entry = entry_0x(dtype=MISSING)
    for document in (document_0x({"t": [entry]}, version="0.4.0"),
                     with_changes(document_0x({"t": [entry]}), {"version": MISSING})):
        assert import_encodings(document).params["t"].zero == (-14,)


def test_boolean_is_symmetric_and_integral_float_offset_are_accepted():
    entry = entry_0x(is_symmetric=False, offset=-114.0)
    assert import_encodings(document_0x({"t": [entry]})).params["t"].zero == (-14,)


def test_quantizer_args_and_unknown_keys_are_kept_or_ignored():
    document = with_changes(document_0x({"t": [entry_0x(extra=1)]}),
                            {"quantizer_args": {"activation_bitwidth": 8}, "excluded_layers": []})
    encodings = import_encodings(document)
    assert encodings.quantizer_args == {"activation_bitwidth": 8}
    assert list(encodings.params) == ["t"]


# ------------------------------------------------------- malformed files

def channels(*entries):
    return {"w": list(entries)}


MALFORMED_0X = {
    # case: (activations, params, version, error class, tensor, field)
    "section is a list": ([], {}, "0.6.1", EncodingsError, None, "activation_encodings"),
    "module-keyed": ({"conv1": {"output": {"0": entry_0x()}}}, {}, "0.6.1", EncodingsError, "conv1", None),
    "encodings not a list": ({"t": 3}, {}, "0.6.1", EncodingsError, "t", None),
    "empty list": ({"t": []}, {}, "0.6.1", EncodingsError, "t", None),
    "encoding not an object": ({"t": ["x"]}, {}, "0.6.1", EncodingsError, "t", None),
    "dtype missing in 0.5.0": ({"t": [entry_0x(dtype=MISSING)]}, {}, "0.5.0", EncodingsError, "t", "dtype"),
    "dtype unknown": ({"t": [entry_0x(dtype="int8")]}, {}, "0.6.1", EncodingsError, "t", "dtype"),
    **{f"{key} missing": ({"t": [entry_0x(**{key: MISSING})]}, {}, "0.6.1", EncodingsError, "t", key)
       for key in ("bitwidth", "is_symmetric", "min", "max", "offset", "scale")},
    "bitwidth a string": ({"t": [entry_0x(bitwidth="8")]}, {}, "0.6.1", EncodingsError, "t", "bitwidth"),
    "bitwidth a bool": ({"t": [entry_0x(bitwidth=True)]}, {}, "0.6.1", EncodingsError, "t", "bitwidth"),
    "bitwidth 32": ({"t": [entry_0x(bitwidth=32)]}, {}, "0.6.1", UnsupportedEncodingError, "t", "bitwidth"),
    "is_symmetric a word": ({"t": [entry_0x(is_symmetric="yes")]}, {}, "0.6.1", EncodingsError, "t",
                            "is_symmetric"),
    "symmetric with an asymmetric offset": ({"t": [entry_0x(is_symmetric="True")]}, {}, "0.6.1", EncodingsError,
                                            "t", "is_symmetric"),
    "scale zero": ({"t": [entry_0x(scale=0)]}, {}, "0.6.1", EncodingsError, "t", "scale"),
    "scale negative": ({"t": [entry_0x(scale=-0.1)]}, {}, "0.6.1", EncodingsError, "t", "scale"),
    "scale a string": ({"t": [entry_0x(scale="0.1")]}, {}, "0.6.1", EncodingsError, "t", "scale"),
    "scale beyond float32": ({"t": [entry_0x(scale=1e39)]}, {}, "0.6.1", EncodingsError, "t", "scale"),
    "scale NaN": ({"t": [entry_0x(scale=float("nan"))]}, {}, "0.6.1", EncodingsError, "t", "scale"),
    "offset fractional": ({"t": [entry_0x(offset=-114.5)]}, {}, "0.6.1", EncodingsError, "t", "offset"),
    "offset positive": ({"t": [entry_0x(offset=5)]}, {}, "0.6.1", EncodingsError, "t", "offset"),
    "offset below the grid": ({"t": [entry_0x(offset=-256)]}, {}, "0.6.1", EncodingsError, "t", "offset"),
    "offset null": ({"t": [entry_0x(offset=None)]}, {}, "0.6.1", EncodingsError, "t", "offset"),
    "min inconsistent": ({"t": [entry_0x(min=-2.5)]}, {}, "0.6.1", EncodingsError, "t", "min"),
    "max inconsistent": ({"t": [entry_0x(max=2.0)]}, {}, "0.6.1", EncodingsError, "t", "max"),
    "max a string": ({"t": [entry_0x(max="2.6")]}, {}, "0.6.1", EncodingsError, "t", "max"),
    "channels of different bitwidths": (
        {}, channels(entry_0x(), entry_0x(bitwidth=16, offset=-29000,
                                          **dict(zip(("min", "max"), grid_range(0.0185014, -29000, 16))))),
        "0.6.1", EncodingsError, "w", "bitwidth"),
    "int and float channels": ({}, channels(entry_0x(), {"bitwidth": 16, "dtype": "float"}), "0.6.1",
                               EncodingsError, "w", "dtype"),
    "float of 8 bits": ({"t": [{"bitwidth": 8, "dtype": "float"}]}, {}, "0.6.1", UnsupportedEncodingError,
                        "t", "bitwidth"),
    "float without bitwidth": ({"t": [{"dtype": "float"}]}, {}, "0.6.1", EncodingsError, "t", "bitwidth"),
    "tensor in both sections": ({"t": [entry_0x()]}, {"t": [entry_0x()]}, "0.6.1", EncodingsError, "t", None),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_0X))
def test_malformed_0x_entries_are_rejected(tmp_path, case):
    activations, params, version, error, tensor, field = MALFORMED_0X[case]
    path = tmp_path / "bad.encodings"
    path.write_text(json.dumps(document_0x(activations, params, version)))
    with pytest.raises(error) as info:
        import_encodings(path)
    assert (info.value.file, info.value.tensor, info.value.field) == (str(path), tensor, field)
    assert str(path) in str(info.value)
    if tensor is not None:
        assert repr(tensor) in str(info.value)
    if field is not None:
        assert repr(field) in str(info.value)


MALFORMED_1 = {
    # case: (records, error class, tensor, field)
    "PER_BLOCK": ([record_1(enc_type="PER_BLOCK", block_size=64)], UnsupportedEncodingError, "t", "enc_type"),
    "LPBQ": ([record_1(enc_type="LPBQ", compressed_bw=4)], UnsupportedEncodingError, "t", "enc_type"),
    "enc_type unknown": ([record_1(enc_type="PER_ROW")], EncodingsError, "t", "enc_type"),
    "record not an object": (["t"], EncodingsError, None, "activation_encodings"),
    "name missing": ([record_1(name=MISSING)], EncodingsError, None, "name"),
    "name empty": ([record_1(name="")], EncodingsError, None, "name"),
    **{f"{key} missing": ([record_1(**{key: MISSING})], EncodingsError, "t", key)
       for key in ("dtype", "enc_type", "bw", "is_sym", "scale", "offset")},
    "dtype lowercase": ([record_1(dtype="int")], EncodingsError, "t", "dtype"),
    "bw 4": ([record_1(bw=4, is_sym=True, offset=[-8])], UnsupportedEncodingError, "t", "bw"),
    "bw a float": ([record_1(bw=8.0)], EncodingsError, "t", "bw"),
    "float of 64 bits": ([{"name": "t", "dtype": "FLOAT", "bw": 64}], UnsupportedEncodingError, "t", "bw"),
    "is_sym a string": ([record_1(is_sym="false")], EncodingsError, "t", "is_sym"),
    "symmetric with an asymmetric offset": ([record_1(is_sym=True)], EncodingsError, "t", "is_sym"),
    "scale not a list": ([record_1(scale=0.1)], EncodingsError, "t", "scale"),
    "scale empty": ([record_1(scale=[], offset=[])], EncodingsError, "t", "scale"),
    "scale negative": ([record_1(scale=[-0.1])], EncodingsError, "t", "scale"),
    "offset fractional": ([record_1(offset=[-0.5])], EncodingsError, "t", "offset"),
    "offset out of the grid": ([record_1(offset=[-300])], EncodingsError, "t", "offset"),
    "fewer offsets than scales": ([record_1(enc_type="PER_CHANNEL", scale=[0.1, 0.2], offset=[-1])],
                                  EncodingsError, "t", "offset"),
    "PER_TENSOR with two scales": ([record_1(scale=[0.1, 0.2], offset=[-1, -2])], EncodingsError, "t", "scale"),
    "fractional zero point": ([record_1(zero_point_shift=0.5)], UnsupportedEncodingError, "t",
                              "zero_point_shift"),
    "duplicate records": ([record_1(), record_1()], EncodingsError, "t", None),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_1))
def test_malformed_1_0_0_records_are_rejected(tmp_path, case):
    records, error, tensor, field = MALFORMED_1[case]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document_1(records)))
    with pytest.raises(error) as info:
        import_encodings(path)
    assert (info.value.file, info.value.tensor, info.value.field) == (str(path), tensor, field)
    assert str(path) in str(info.value)


def test_zero_point_shift_of_zero_is_accepted():
    assert import_encodings(document_1([record_1(zero_point_shift=0)])).params["t"].zero == (-14,)


MALFORMED_DOCUMENTS = {
    "version 2.0.0": (with_changes(document_0x(), {"version": "2.0.0"}), UnsupportedEncodingError, "version"),
    "version a number": (with_changes(document_0x(), {"version": 0.6}), EncodingsError, "version"),
    "1.0.0 with dict sections": (with_changes(document_1(), {"param_encodings": {}}), EncodingsError,
                                 "param_encodings"),
    "activation_encodings missing": (with_changes(document_0x(), {"activation_encodings": MISSING}),
                                     EncodingsError, "activation_encodings"),
    "param_encodings missing": (with_changes(document_1(), {"param_encodings": MISSING}), EncodingsError,
                                "param_encodings"),
    "quantizer_args a list": (with_changes(document_0x(), {"quantizer_args": []}), EncodingsError,
                              "quantizer_args"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_DOCUMENTS))
def test_malformed_documents_are_rejected(case):
    document, error, field = MALFORMED_DOCUMENTS[case]
    with pytest.raises(error) as info:
        import_encodings(document)
    assert (info.value.file, info.value.tensor, info.value.field) == ("<encodings>", None, field)


@pytest.mark.parametrize("text", ["[]", "{not json", '"encodings"'])
def test_files_that_are_not_encodings_documents(tmp_path, text):
    path = tmp_path / "bad.encodings"
    path.write_text(text)
    with pytest.raises(EncodingsError, match="bad.encodings"):
        import_encodings(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(EncodingsError, match="nowhere.encodings: cannot read"):
        import_encodings(tmp_path / "nowhere.encodings")


# ------------------------------------------------------- export errors

@pytest.mark.parametrize("params, kwargs, error, tensor, field", [
    ({"b": QuantParams(0.1, 0, np.int32)}, {}, UnsupportedEncodingError, "b", "dtype"),
    ({"x": QuantParams(0.1, 128, INT8)}, {}, EncodingsError, "x", "zero"),
    ({"x": QuantParams(0.1, -40000, INT16)}, {}, EncodingsError, "x", "zero"),
    ({"x": QuantParams(1e300, 0, INT8)}, {}, EncodingsError, "x", "scale"),
    ({"x": QuantParams(1e-300, 0, INT8)}, {}, EncodingsError, "x", "scale"),
    ({"x": QuantParams(0.1, 0, INT8)}, {"float_tensors": ["x"]}, EncodingsError, "x", None),
    ({}, {"weights": ["w"]}, EncodingsError, "w", None),
    ({}, {"version": "2.0.0"}, EncodingsError, None, "version"),
    ({}, {"quantizer_args": [("a", 1)]}, EncodingsError, None, "quantizer_args"),
])
def test_export_rejects_what_it_cannot_write(tmp_path, params, kwargs, error, tensor, field):
    path = tmp_path / "out.encodings"
    with pytest.raises(error) as info:
        export_encodings(params, path, **kwargs)
    assert (info.value.file, info.value.tensor, info.value.field) == (str(path), tensor, field)
    assert not path.exists()
