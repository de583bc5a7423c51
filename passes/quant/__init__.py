"""Quantization: the scheme's parameters, calibration, encodings files and fidelity metrics."""
