"""ONNX import handlers: resize."""
