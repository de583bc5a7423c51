"""ONNX import handlers: elementwise."""
