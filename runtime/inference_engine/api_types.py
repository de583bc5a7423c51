"""The Inference-Engine API's plain parts: its constants and config keys,
its error, status codes and wait modes, and the descriptions of tensors a
network gives (an input as its shape list, DataPtr, TensorDesc,
InputInfoPtr, the outputs as a name list, Blob). ie_api.py re-exports them."""
from __future__ import annotations

import enum
from typing import Mapping, Sequence

import numpy as np

from runtime.errors import TesseraError
from runtime.version import TAGGED as VERSION

PRECISIONS = {"float32": "FP32", "float16": "FP16", "int8": "I8", "uint8": "U8", "int16": "I16", "int32": "I32",
              "int64": "I64", "bool": "BOOL"}
LAYOUTS = {0: "SCALAR", 1: "C", 2: "NC", 3: "CHW", 4: "NCHW", 5: "NCDHW"}
DEFERRED, AT_LOAD, NOT_QUANTIZED, BINARY = "DEFERRED", "AT_LOAD", "NOT_QUANTIZED", "BINARY"
"""How a loaded network's int8 ranges were calibrated (ExecutableNetwork's
TESSERA_CALIBRATION metric): on the requests' first inputs, at load on the
configured data, not at all (nothing on the accelerator), in the binary."""
CALIBRATION_IMAGES = 32
"""Calibration images per batch item read when the batch was changed (the
quantizer's default count of calibration inputs)."""
CONFIG_KEYS = {
    "TARGET_FALLBACK": "HETERO: the device priority of the fallback policy ('HETERO:FPGA,CPU' or 'FPGA,CPU')",
    "PERF_COUNT": "YES/NO: per-layer counters (always collected; kept for compatibility); YES with TESSERA_TRACE: "
                  "each request writes its last run's trace",
    "HETERO_DUMP_GRAPH_DOT": "YES/NO: write hetero_affinity_<net>.dot and hetero_subgraphs_<net>.dot at load",
    "TESSERA_CALIBRATION_DATA": "calibration inputs: a folder of .npy files or images, or a list of arrays; unset: "
                                "the requests' first input images (TESSERA_CALIBRATION_SAMPLES)",
    "TESSERA_CALIBRATION_SAMPLES": "with no calibration data: how many input images the first requests run in float32 "
                                   "on the CPU and feed to calibration before the int8 program takes over (default 32; "
                                   "unset: the environment variable of that name)",
    "TESSERA_CALIBRATOR": "the range method: minmax, percentile, percentile:<p>, entropy, mse (default)",
    "TESSERA_HWLINEAR": "YES/NO: fully-connected layers on the accelerator/the CPU (unset: where they pay)",
    "TESSERA_DEMOTE_ISLANDS": "YES (default)/NO: move an accelerator segment whose host transfers cost more than "
                              "it saves back to the CPU",
    "TESSERA_TRACE": "with PERF_COUNT YES, a file each request writes its last run's trace to, in Chrome's "
                     "trace-event format (docs/trace.md); '{request}' in it becomes the request's index; '' = none",
    "TESSERA_DOT_DIR": "the folder HETERO_DUMP_GRAPH_DOT writes to (default: the working folder)",
    "TESSERA_NONFINITE": "NaN and Inf in an input: 'error' (a request error naming the input and the first such "
                         "value) or 'saturate' (+-Inf to the grid's end codes, NaN still an error); unset: the "
                         "environment variable TESSERA_NONFINITE, else 'error'. Read at load",
}


class InferenceEngineError(TesseraError, RuntimeError):
    """A call of the Inference-Engine API failed; the message names the layer, input, key or request."""


class StatusCode(enum.IntEnum):
    """InferenceEngine::StatusCode (api-notes 2.2): what ``wait`` returns."""

    OK = 0
    GENERAL_ERROR = -1
    NOT_IMPLEMENTED = -2
    NETWORK_NOT_LOADED = -3
    PARAMETER_MISMATCH = -4
    NOT_FOUND = -5
    OUT_OF_BOUNDS = -6
    UNEXPECTED = -7
    REQUEST_BUSY = -8
    RESULT_NOT_READY = -9
    NOT_ALLOCATED = -10
    INFER_NOT_STARTED = -11
    NETWORK_NOT_READ = -12
    INFER_CANCELLED = -13


class WaitMode(enum.IntEnum):
    """``wait``'s special timeouts."""

    RESULT_READY = -1
    STATUS_ONLY = 0


def get_version() -> str:
    return VERSION


# ---------------------------------------------------------------- the network
class InputInfo(list):
    """An input as both forms of the API give it: the shape list itself
    (2018 R3/R4: ``n, c, h, w = net.inputs[name]``, indexable, equal to a
    list, printed as one) with ``shape``, ``precision`` (settable) and
    ``layout`` (2018 R5+). A dim the model leaves symbolic until ``reshape``
    fixes it is None. The dims change through ``IENetwork.reshape`` and
    ``batch_size`` only: the list's own mutators are refused."""

    def __init__(self, name: str, shape: list, precision: str, layout: str):
        super().__init__(shape)
        self.name, self.layout = name, layout
        self._precision = precision

    @property
    def shape(self) -> list:
        return list(self)

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS.values():
            raise InferenceEngineError(f"input {self.name!r}: precision {value!r} is none of "
                                       f"{sorted(PRECISIONS.values())}")
        self._precision = value

    def _set_shape(self, dims: Sequence) -> None:
        list.__setitem__(self, slice(None), list(dims))
        self.layout = LAYOUTS.get(len(self), "ANY")

    def _refuse(self, *args, **kwargs):
        raise InferenceEngineError(f"input {self.name!r}: its shape {list(self)} changes through "
                                   "IENetwork.reshape({name: shape}) or batch_size, not by editing the list")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self):
        return InputInfo, (self.name, list(self), self._precision, self.layout)


class DataPtr:
    """A tensor's ``name``, ``shape``, ``precision`` and ``layout`` (an
    output's shape is known once a plugin has loaded the network)."""

    def __init__(self, name: str, shape: list | None = None, precision: str = "FP32", layout: str = "ANY"):
        self.name, self.shape, self.precision, self.layout = name, shape, precision, layout

    def __repr__(self) -> str:
        return f"<DataPtr {self.name!r} {self.precision} {self.layout} {self.shape}>"


OutputInfo = DataPtr
"""2018 R5-2019's name for an output's DataPtr."""


class TensorDesc:
    """A blob's ``precision``, ``dims`` and ``layout``."""

    def __init__(self, precision: str, dims: Sequence[int], layout: str):
        self.precision, self.dims, self.layout = precision, list(dims), layout

    def __repr__(self) -> str:
        return f"<TensorDesc {self.precision} {self.dims} {self.layout}>"


class InputInfoPtr:
    """``net.input_info[name]`` (2020.2+): ``name``, ``precision``
    (settable, the same setting as ``net.inputs[name].precision``),
    ``layout``, ``input_data`` (a DataPtr) and ``tensor_desc``."""

    def __init__(self, info: InputInfo):
        self._info = info

    name = property(lambda self: self._info.name)
    layout = property(lambda self: self._info.layout)

    @property
    def precision(self) -> str:
        return self._info.precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._info.precision = value

    @property
    def input_data(self) -> DataPtr:
        return DataPtr(self._info.name, self._info.shape, self._info.precision, self._info.layout)

    @property
    def tensor_desc(self) -> TensorDesc:
        return TensorDesc(self._info.precision, self._info.shape, self._info.layout)

    def __repr__(self) -> str:
        return f"<InputInfoPtr {self.name!r} {self.precision} {self.layout} {self._info.shape}>"


class Outputs(list):
    """``net.outputs``: the output names in order (2018 R3/R4's list:
    iterate, index, ``len``, compare with a list) that also answers
    ``outputs[name]`` with the output's DataPtr, and ``keys``, ``values``,
    ``items`` and ``get`` as the later dict did."""

    def __init__(self, infos: Mapping[str, DataPtr]):
        super().__init__(infos)
        self._infos = dict(infos)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._infos:
                raise KeyError(f"the network has no output {key!r}; its outputs are {list(self)}")
            return self._infos[key]
        return super().__getitem__(key)

    def keys(self):
        return self._infos.keys()

    def values(self):
        return self._infos.values()

    def items(self):
        return self._infos.items()

    def get(self, key: str, default=None):
        return self._infos.get(key, default)


class Blob:
    """``request.input_blobs[name]`` / ``output_blobs[name]`` (2020.2+):
    ``buffer`` is the request's array itself (write an input's in place)
    and ``tensor_desc`` describes it."""

    def __init__(self, buffer: np.ndarray):
        self.buffer = buffer

    @property
    def tensor_desc(self) -> TensorDesc:
        return TensorDesc(PRECISIONS.get(self.buffer.dtype.name, self.buffer.dtype.name), self.buffer.shape,
                          LAYOUTS.get(self.buffer.ndim, "ANY"))

    def __repr__(self) -> str:
        return f"<Blob {self.tensor_desc}>"


