"""ONNX import handlers: pool."""
