"""ONNX import handlers: nn."""
