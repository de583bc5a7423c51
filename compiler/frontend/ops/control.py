"""ONNX import handlers: control."""
