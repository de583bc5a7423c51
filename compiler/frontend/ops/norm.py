"""ONNX import handlers: norm."""
