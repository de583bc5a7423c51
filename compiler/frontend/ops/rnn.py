"""ONNX import handlers: rnn.

RNN, GRU and LSTM need none: every opset form from 7 on is the newest one
with ``layout`` at its default, so the default handler imports them as given.
"""
