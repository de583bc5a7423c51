"""ONNX import handlers: reduce."""
