"""What the quantization passes did, for the caller to read back: a pass
that rewrites the float graph or decides an option for the quantize pass
records its summary here (the PassContext option ``quant.report``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from passes.infra import PassContext, register_option

register_option("quant.report", object, None,
                "a QuantReport the quantization passes record what they did in (None: nothing is recorded)")


@dataclass
class QuantReport:
    """Each field stays None (or empty) when its pass did not run."""

    equalized: int | None = None
    """Layer pairs cross-layer equalization rescaled (passes/quant/equalize.py)."""
    absorbed: int | None = None
    """Layer pairs bias absorption changed."""
    head_grids: Any = None
    """The heads split into channel groups or joined on the host (passes.quant.head_grids.HeadGrids)."""
    promoted: list[str] = field(default_factory=list)
    """ONNX node names a sensitivity analysis or a target SNR moved to 16 bits."""
    target: Any = None
    """What reaching a target SNR did (compiler.target_snr.TargetReport)."""


def report_of(ctx: PassContext) -> QuantReport:
    """The context's report (a throwaway one when it has none)."""
    report = ctx.option("quant.report")
    return QuantReport() if report is None else report
