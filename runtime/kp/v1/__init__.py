"""kp.v1: where PLUS 2.x/3.x keep the 1.x names (kp.v1.inference.generic_raw_inference_send,
kp.v1.GenericRawImageHeader, ...); the same objects as kp's."""
from runtime.kp import inference
from runtime.kp.value import (
    GenericRawBypassPreProcImageHeader,
    GenericRawBypassPreProcResult,
    GenericRawBypassPreProcResultHeader,
    GenericRawImageHeader,
    GenericRawResult,
    GenericRawResultHeader,
    InferenceFixedNodeOutput,
    InferenceFloatNodeOutput,
)

__all__ = ["inference", "GenericRawImageHeader", "GenericRawResult", "GenericRawResultHeader",
           "GenericRawBypassPreProcImageHeader", "GenericRawBypassPreProcResult",
           "GenericRawBypassPreProcResultHeader", "InferenceFloatNodeOutput", "InferenceFixedNodeOutput"]
