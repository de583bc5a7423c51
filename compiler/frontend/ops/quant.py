"""ONNX import handlers: quant."""
