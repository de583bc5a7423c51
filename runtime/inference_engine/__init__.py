"""The Inference-Engine-style API over Tessera (shared/spec/inference-engine-python-api.md).

    from runtime.inference_engine import IENetwork, IEPlugin

    net = IENetwork(model="model.onnx")
    plugin = IEPlugin(device="HETERO:FPGA,CPU")
    exec_net = plugin.load(network=net, num_requests=2)
    result = exec_net.infer({"data": image})

or, as 2019 R2-2021 scripts do, through IECore (read_network, load_network).

A thin facade (docs/inference_engine.md): the compiler compiles, its
affinity pass places layers, the Engine runs. Importing this module needs
numpy and numba only; reading an ONNX model imports onnx then.
"""
from runtime.inference_engine.ie_api import (
    Blob,
    DataPtr,
    ExecutableNetwork,
    IENetLayer,
    IENetwork,
    IEPlugin,
    InferenceEngineError,
    InferRequest,
    InputInfo,
    InputInfoPtr,
    OutputInfo,
    StatusCode,
    TensorDesc,
    WaitMode,
    get_version,
)
from runtime.inference_engine.ie_core import IECore, Version

__all__ = ["Blob", "DataPtr", "ExecutableNetwork", "IECore", "IENetLayer", "IENetwork", "IEPlugin", "InferRequest",
           "InferenceEngineError", "InputInfo", "InputInfoPtr", "OutputInfo", "StatusCode", "TensorDesc", "Version",
           "WaitMode", "get_version"]
