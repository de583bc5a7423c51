"""ONNX import handlers: gather."""
