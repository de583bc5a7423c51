"""The child side of compiler.frontend.onnx_isolated: a process that runs
onnx's C++ operations on models it is sent, so that an abort or a segfault
in onnx's C++ on a malformed model kills this process, not the caller's.

Run as a script (``python -P onnx_worker.py``): it imports onnx and the
standard library only. Each request on stdin is one JSON header line
({"operation", "args", "size"}) followed by ``size`` bytes of a serialized
ModelProto; each reply on stdout is one JSON header line ({"size"}, or
{"error"}: the exception onnx raised) followed by ``size`` bytes of the
resulting ModelProto. It exits when stdin closes.
"""
import json
import sys

import onnx
import onnx.inliner
import onnx.shape_inference
import onnx.version_converter


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's inferred types only (graph inputs, outputs, value_info):
    nodes and initializers are dropped, the caller has them."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    del inferred.graph.node[:]
    del inferred.graph.initializer[:]
    return inferred


def inline_local_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.inliner.inline_local_functions(model)


def convert_version(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    return onnx.version_converter.convert_version(model, target)


OPERATIONS = {"infer_shapes": infer_shapes, "inline_local_functions": inline_local_functions,
              "convert_version": convert_version}


def answer(header: dict, payload: bytes) -> tuple[dict, bytes]:
    """The reply header and bytes for one request."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(payload)
        result = OPERATIONS[header["operation"]](model, **header["args"]).SerializeToString()
    except Exception as exc:  # onnx raises ValidationError, RuntimeError, ...: the caller words it
        return {"error": f"{type(exc).__name__}: {exc}"}, b""
    return {"size": len(result)}, result


def serve(requests, replies) -> None:
    """Answer requests until ``requests`` ends."""
    for line in requests:
        header = json.loads(line)
        reply, result = answer(header, requests.read(header["size"]))
        replies.write(json.dumps(reply).encode() + b"\n" + result)
        replies.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
