"""Helpers the test modules share: a test module imports shared code from
here (or from tests/oracle.py, the quantization scheme's oracle), never from
another test module."""
