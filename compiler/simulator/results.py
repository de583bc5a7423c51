"""What the comparisons return: pydantic models of per-sample and aggregate
metrics, and whether the aggregate passes the threshold.

Metrics are those of passes/quant/metrics.py, streamed by
compiler.compare.ErrorStats: model 0 is the reference, model 1 the one
tested. A sample's value is over all its compared tensors together; the
aggregate over all samples (for SNR: total signal over total noise, not a
mean of dBs; for max_abs: the largest). SNR (dB) and cosine pass when the
aggregate is at least the threshold, RMSE and max_abs when at most; NaN
never passes.
"""
from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from compiler.compare import ErrorStats
from compiler.simulator.schema.base import Metric

HIGHER_IS_BETTER = {"snr": True, "cosine": True, "rmse": False, "max_abs": False}


def metric_value(stats: ErrorStats, metric: str) -> float:
    """``metric`` of what ``stats`` has seen."""
    return {"snr": stats.snr_db, "rmse": stats.rmse, "cosine": stats.cosine, "max_abs": stats.max_abs}[metric]


def passes(value: float, metric: str, threshold: float) -> bool:
    """Whether ``value`` meets ``threshold`` in the metric's sense."""
    if math.isnan(value):
        return False
    return value >= threshold if HIGHER_IS_BETTER[metric] else value <= threshold


class ComparisonResult(BaseModel):
    """``compare_model_by_inference``: model 1's outputs against model 0's."""

    model_config = ConfigDict(ser_json_inf_nan="constants")  # identical tensors: SNR inf, kept in JSON

    metric: Metric
    threshold: float
    values: dict[str, float] = Field(description="the metric per sample, by data file name")
    aggregate: float = Field(description="the metric over every sample")
    passed: bool = Field(description="whether the aggregate meets the threshold in the metric's sense")
    outputs: dict[str, float] = Field(description="the metric over every sample, per output (model 0's names)")
    agreement: dict[str, dict] | None = Field(
        None, description="Tessera's own: per task head of model 0 recognised (or named by the task parameter), "
                          "model 1's detections or classes against model 0's over every sample "
                          "(compiler/agreement.py Agreement.record: task, precision, recall, f1 or top1, top5)")


class LayerComparison(BaseModel):
    """One matched pair of feature maps."""

    model_config = ConfigDict(ser_json_inf_nan="constants")  # identical tensors: SNR inf, kept in JSON

    tensor_0: str
    tensor_1: str
    values: dict[str, float] = Field(description="the metric per sample, by data file name")
    aggregate: float
    passed: bool


class LayerwiseResult(BaseModel):
    """``compare_model_by_layer``: each matched pair, in the order given."""

    model_config = ConfigDict(ser_json_inf_nan="constants")  # identical tensors: SNR inf, kept in JSON

    metric: Metric
    threshold: float
    layers: list[LayerComparison]
    passed: bool = Field(description="whether every pair passes")
    export_path: str | None = Field(None, description="where the feature maps were written")

    def by_sample(self) -> dict[str, dict[str, float]]:
        """data file name -> {model 1 tensor: metric}, the spec's layout."""
        samples = dict.fromkeys(name for layer in self.layers for name in layer.values)
        return {s: {layer.tensor_1: layer.values[s] for layer in self.layers} for s in samples}
