"""The one quantization configuration (compiler/quant_config.py): defaults,
validation naming the field, the keyword API building it; the quantization
passes in compiler/pipeline.py; each set of options quantized once."""
from __future__ import annotations

import dataclasses
import warnings

import pytest

from compiler.errors import QuantizationError
from compiler.pipeline import QUANTIZATION, QUANTIZE
from compiler.quant_config import FIELDS, OPTIONS, QuantConfig
from compiler.quantize import quantize_model
from passes.infra import PassContext, registered_options
from passes.instruments import PassTiming
from tests.helpers.quant import SHAPE, conv, inputs, make_model, node, seeded


def _model():
    weights = seeded(0, w1=(4, 3, 3, 3), w2=(2, 4, 3, 3))
    nodes = [conv("x", "c1", "w1", name="conv1"), node("Relu", ["c1"], "r1", name="relu1"),
             conv("r1", "y", "w2", name="conv2")]
    return make_model(nodes, {"x": SHAPE}, {"y": [1, 2, 8, 8]}, weights)


def test_every_field_is_a_registered_pass_option():
    assert set(OPTIONS) == set(FIELDS)
    options = QuantConfig().pass_options()
    assert set(options) <= set(registered_options())
    PassContext(options=options)  # every value of the right type


@pytest.mark.parametrize("field, value, message", [
    ("calibrator", "bogus", "QuantConfig.calibrator: unknown calibrator 'bogus'"),
    ("calibrator", 3, "QuantConfig.calibrator: must be a calibrator name"),
    ("tensor_calibrators", {"t": "auto"}, r"QuantConfig.tensor_calibrators\['t'\]: unknown calibrator 'auto'"),
    ("mode", "int4", r"QuantConfig.mode: must be one of \['int8', 'int16', 'radix8', 'radix16'\], got 'int4'"),
    ("layer_precision", {"conv1": "int12"}, r"QuantConfig.layer_precision\['conv1'\]: must be one of"),
    ("float_layers", "conv1", "QuantConfig.float_layers: must be a list of ONNX node names"),
    ("calibration_count", 0, "QuantConfig.calibration_count: must be a whole number of at least 1, got 0"),
    ("sensitivity", -1, "QuantConfig.sensitivity: must be a whole number of at least 0"),
    ("equalize", "yes", "QuantConfig.equalize: must be True or False, got 'yes'"),
    ("target_snr", float("nan"), "QuantConfig.target_snr: must be a finite number of dB or None, got nan"),
    ("float_layers", 3, "QuantConfig.float_layers: must be a list of ONNX node names, got 3"),
    ("target_budget", 2, r"QuantConfig.target_budget: the 16-bit MAC budget must be a fraction in \[0, 1\], got 2"),
    ("preprocess", "imagenet", "QuantConfig.preprocess: must be a PreprocessSpec or None"),
    ("encodings", 7, "QuantConfig.encodings: must be an encodings file's path"),
    ("fallback", "HETERO:FPGA,GPU", r"QuantConfig.fallback: fallback 'HETERO:FPGA,GPU' names unknown devices"),
])
def test_a_bad_value_is_an_error_naming_the_field(field, value, message):
    with pytest.raises(QuantizationError, match=message):
        QuantConfig(**{field: value})


def test_the_config_is_frozen_and_keeps_its_own_copies():
    precision = {"conv1": "int16"}
    config = QuantConfig(layer_precision=precision, float_layers=(n for n in ["conv2"]), target_snr=30)
    precision["conv2"] = "int16"
    assert dict(config.layer_precision) == {"conv1": "int16"} and config.float_layers == ("conv2",)
    assert config.target_snr == 30.0 and isinstance(config.target_snr, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mode = "int16"
    with pytest.raises(TypeError):
        config.layer_precision["conv2"] = "int16"
    assert dataclasses.replace(config, layer_precision={}, float_layers=(), target_snr=None) == QuantConfig()


def test_keywords_build_the_config_and_replace_its_fields():
    base = QuantConfig(calibrator="entropy", equalize=True)
    built = QuantConfig.build(base, {"equalize": False, "mode": "int16"})
    assert (built.calibrator, built.equalize, built.mode) == ("entropy", False, "int16")
    with pytest.raises(TypeError, match="quantize_model.. got an unexpected keyword argument 'equalise'"):
        QuantConfig.build(None, {"equalise": True}, where="quantize_model")
    with pytest.raises(QuantizationError, match="must be a QuantConfig"):
        QuantConfig.build({"mode": "int8"})


def test_quantize_model_takes_a_config_or_keywords_alike():
    model, data = _model(), inputs(4, 1)
    by_config = quantize_model(model, config=QuantConfig(calibrator="minmax", calibration_count=4),
                               calibration_data=data)
    by_keywords = quantize_model(model, calibrator="minmax", calibration_count=4, calibration_data=data)
    overridden = quantize_model(model, config=QuantConfig(calibrator="entropy"), calibrator="minmax",
                                calibration_count=4, calibration_data=data)
    grids = [q.activation_grids() for q in (by_config, by_keywords, overridden)]
    assert grids[0].keys() == grids[1].keys() == grids[2].keys()
    for name in grids[0]:
        assert grids[0][name].scale == grids[1][name].scale == grids[2][name].scale
    assert by_config.options["quant.calibrator"] == "minmax"
    assert "quant.trials" not in by_config.options and "quant.report" not in by_config.options


def test_the_pipeline_lists_the_quantization_passes_in_order():
    assert [p.name for p in QUANTIZATION.passes] == ["apply_encodings", "equalize", "absorb_bias", "head_grids",
                                                     "choose_ranges", "promote_sensitive", "reach_target_snr"]
    assert [p.name for p in QUANTIZE.passes] == ["place", "quantize"]


@pytest.mark.parametrize("settings, quantizations", [
    ({}, 1),
    ({"target_snr": 0.0}, 1),   # reached at once: the search's trial is the result
    ({"sensitivity": 1}, 2),    # the trial it measures, then the model with its layer in 16 bits
])
def test_each_set_of_options_is_quantized_once(settings, quantizations):
    timing = PassTiming()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_model(_model(), calibration_data=inputs(8, 1), calibrator="minmax", instruments=[timing],
                           **settings)
    runs = [name for name, _ in timing.times]
    assert runs.count("quantize") == quantizations
    assert {"apply_encodings", "equalize", "head_grids", "reach_target_snr"} <= set(runs)  # every pass is seen
    if "sensitivity" in settings:
        assert q.promoted and q.options["quant.layer_precision"] == {q.promoted[0]: "int16"}
    if "target_snr" in settings:
        assert q.target.reached and q.target.promoted == [] and q.promoted == []
