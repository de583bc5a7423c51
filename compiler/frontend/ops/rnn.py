"""ONNX import handlers: rnn."""
