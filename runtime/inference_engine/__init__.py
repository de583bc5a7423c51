"""The Inference-Engine-style API over Tessera (shared/spec/inference-engine-python-api.md).

    from runtime.inference_engine import IENetwork, IEPlugin

    net = IENetwork(model="model.onnx")
    plugin = IEPlugin(device="HETERO:FPGA,CPU")
    exec_net = plugin.load(network=net, num_requests=2)
    result = exec_net.infer({"data": image})

A thin facade (docs/inference_engine.md): the compiler compiles, its
affinity pass places layers, the Engine runs. Importing this module needs
numpy and numba only; reading an ONNX model imports onnx then.
"""
from runtime.inference_engine.ie_api import (
    ExecutableNetwork,
    IENetLayer,
    IENetwork,
    IEPlugin,
    InferenceEngineError,
    InferRequest,
    InputInfo,
    OutputInfo,
    StatusCode,
    WaitMode,
    get_version,
)

__all__ = ["ExecutableNetwork", "IENetLayer", "IENetwork", "IEPlugin", "InferRequest", "InferenceEngineError",
           "InputInfo", "OutputInfo", "StatusCode", "WaitMode", "get_version"]
