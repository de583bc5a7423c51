"""The Simulator API's parameters as pydantic (v2) models, with the fields
shared/reference/api-notes.md section 4.3 documents.

The documented misspellings are accepted as aliases of the fields the
examples use: ``input_encondings_path`` (and ``_0``/``_1``),
``input_model_path0``/``1``, ``meric``. Any other unknown field is an error,
so a misspelled option never silently does nothing. A file or folder that
does not exist is a validation error naming the field. Tessera has no GPU
path: ``use_cuda=True`` is accepted, warns, and runs on the CPU.

Some fields are Tessera's own: ``quantization_mode`` ("fake": simulated
quantization in float, the Exynos simulator's semantics and the default;
"integer": the accelerator's bit-exact integer arithmetic), for the
comparisons ``quantization_mode_0`` / ``_1`` to run the two models in
different modes, ``task`` (compare_model_by_inference: how the outputs
are read for the agreement of detections, compiler/agreement.py), and
``nonfinite``: what integer mode does with NaN and Inf in an input
(runtime/nonfinite.py).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

QuantizationMode = Literal["fake", "integer"]
Metric = Literal["snr", "rmse", "cosine", "max_abs"]
Task = Literal["yolo", "db", "centernet", "classify", "none"]
METRIC_NAMES = {"snr": "snr", "rmse": "rmse", "cosine": "cosine", "cos": "cosine", "cosine_similarity": "cosine",
                "max_abs": "max_abs", "maxabs": "max_abs", "max_abs_error": "max_abs"}
"""Spellings of each metric (case and '-' vs '_' do not matter)."""


class SimulatorWarning(UserWarning):
    """Something the Simulator does differently from what was asked (no GPU)."""


def _as_path(value: Any) -> Any:
    """Paths as strings (a pathlib.Path is accepted where the spec says string)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


PathText = Annotated[str, BeforeValidator(_as_path)]


class _Parameters(BaseModel):
    """What every call takes: the device (CPU only) and the quantization mode."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    use_cuda: bool = Field(False, description="the spec's GPU switch; Tessera runs on the CPU and warns when True")
    quantization_mode: QuantizationMode = Field(
        "fake", description="'fake': quantize-dequantize each encoded tensor, compute in float (the default); "
                            "'integer': the accelerator's bit-exact integer arithmetic")
    nonfinite: Literal["error", "saturate"] | None = Field(
        None, description="integer mode, NaN and Inf in an input: 'error' (a SimulatorError naming the input and "
                          "the first such value) or 'saturate' (+-Inf to the grid's end codes, NaN still an "
                          "error); None: the environment variable TESSERA_NONFINITE, else 'error'")

    @model_validator(mode="after")
    def _cpu_only(self):
        if self.use_cuda:
            warnings.warn("use_cuda=True: Tessera's Simulator has no GPU path; running on the CPU",
                          SimulatorWarning, stacklevel=3)
        return self


def _existing(kind: str, value: str | None, info: ValidationInfo) -> str | None:
    """``value`` if it names an existing ``kind`` ('file' or 'folder')."""
    if value is None:
        return None
    path = Path(value)
    if not path.exists():
        raise ValueError(f"{info.field_name}: no {kind} at {value!r}")
    if kind == "file" and path.is_dir():
        raise ValueError(f"{info.field_name}: {value!r} is a folder; give the {kind} itself")
    if kind == "folder" and not path.is_dir():
        raise ValueError(f"{info.field_name}: {value!r} is a file; give the folder holding the data files")
    return value


class InferenceSessionParameters(_Parameters):
    """``Simulator.get_inference_session`` and ``get_quantization_sim``: a
    model and its encodings (none, or an empty file: the model in float)."""

    input_model_path: PathText = Field(description="the ONNX model file")
    input_encodings_path: PathText | None = Field(
        None, validation_alias=AliasChoices("input_encodings_path", "input_encondings_path"),
        description="the AIMET-style encodings file; None or an empty file runs the model in float")

    @field_validator("input_model_path", "input_encodings_path")
    @classmethod
    def _files(cls, value, info: ValidationInfo):
        return _existing("file", value, info)


GetInferenceSessionParameters = InferenceSessionParameters
"""The name the spec's heading gives the session parameters."""


class InferenceRunnerParameters(InferenceSessionParameters):
    """``Simulator.run_inference``: a model, its encodings and a data folder."""

    input_data_path: PathText = Field(description="a folder with one .npy, .npz or .h5 file per sample")
    layerwise_check_name: list[str] = Field(
        default_factory=list, description="tensors whose values are appended to each sample's outputs")

    @field_validator("input_data_path")
    @classmethod
    def _folder(cls, value, info: ValidationInfo):
        return _existing("folder", value, info)

    @field_validator("layerwise_check_name", mode="before")
    @classmethod
    def _one_name(cls, value):
        return [value] if isinstance(value, str) else value


def _metric(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    key = value.strip().lower().replace("-", "_")
    if key not in METRIC_NAMES:
        raise ValueError(f"metric: {value!r} is not one of {sorted(set(METRIC_NAMES.values()))}")
    return METRIC_NAMES[key]


class InferenceCheckerParameters(_Parameters):
    """``Simulator.compare_model_by_inference``: two model + encodings pairs
    run on one data folder, compared by ``metric`` against ``threshold``."""

    input_model_path_0: PathText = Field(validation_alias=AliasChoices("input_model_path_0", "input_model_path0"))
    input_encodings_path_0: PathText | None = Field(
        None, validation_alias=AliasChoices("input_encodings_path_0", "input_encondings_path_0",
                                        "input_encodings_path0", "input_encondings_path0"))
    input_model_path_1: PathText = Field(validation_alias=AliasChoices("input_model_path_1", "input_model_path1"))
    input_encodings_path_1: PathText | None = Field(
        None, validation_alias=AliasChoices("input_encodings_path_1", "input_encondings_path_1",
                                        "input_encodings_path1", "input_encondings_path1"))
    input_data_path: PathText
    metric: Annotated[Metric, BeforeValidator(_metric)] = Field(
        "snr", validation_alias=AliasChoices("metric", "meric"),
        description="'snr' (dB) or 'cosine': higher is better; 'rmse' or 'max_abs': lower is better")
    threshold: float = Field(description="the aggregate metric the models must reach to be equivalent")
    quantization_mode_0: QuantizationMode | None = Field(None, description="model 0's mode, if not quantization_mode")
    quantization_mode_1: QuantizationMode | None = Field(None, description="model 1's mode, if not quantization_mode")
    task: Task | None = Field(None, description="compare_model_by_inference: how the outputs are read for the "
                                                "agreement of detections or classes (compiler/agreement.py); None: "
                                                "the heads recognised, 'none': no agreement")

    @field_validator("input_model_path_0", "input_model_path_1", "input_encodings_path_0", "input_encodings_path_1")
    @classmethod
    def _files(cls, value, info: ValidationInfo):
        return _existing("file", value, info)

    @field_validator("input_data_path")
    @classmethod
    def _folder(cls, value, info: ValidationInfo):
        return _existing("folder", value, info)

    def mode(self, index: int) -> QuantizationMode:
        """The quantization mode of model ``index`` (0 or 1)."""
        return (self.quantization_mode_0, self.quantization_mode_1)[index] or self.quantization_mode


class LayerwiseCheckerParameters(InferenceCheckerParameters):
    """``Simulator.compare_model_by_layer``: the checker's fields, plus which
    feature map of model 0 is compared with which of model 1, and whether
    to write the feature maps out."""

    layer_match_info: list[tuple[str, str]] = Field(min_length=1, description="(model 0 tensor, model 1 tensor) pairs")
    export_featuremap: bool = False
    export_featuremap_path: PathText | None = Field(None, description="folder the feature maps are written to")

    @model_validator(mode="after")
    def _export_folder(self):
        if self.task is not None:
            raise ValueError("task: compare_model_by_layer compares tensors, not detections (task is "
                             "compare_model_by_inference's)")
        path = self.export_featuremap_path
        if self.export_featuremap and path is None:
            raise ValueError("export_featuremap_path: needed when export_featuremap is True")
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise ValueError(f"export_featuremap_path: {path!r} is a file, not a folder")
        return self
