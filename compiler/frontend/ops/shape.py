"""ONNX import handlers: shape."""
