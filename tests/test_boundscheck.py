"""Numba without a safety net (issue 23 item 3): the float executor, the
quantized CPU kernels and the device simulator run the built-in models and
the device test models with NUMBA_BOUNDSCHECK=1 (tests/helpers/boundscheck.py,
in a subprocess started in the background at collection), so an
out-of-range index in a kernel fails here instead of corrupting memory."""
from __future__ import annotations

from tests.helpers import boundscheck


def test_every_kernel_path_runs_with_bounds_checking():
    status, output = boundscheck.finish()
    assert "bounds checking is off" not in output  # its probe read past an array's end unchecked (exit 2)
    assert status == 0, output[-6000:]
    for name in boundscheck.BUILTIN:
        assert f"float {name}:" in output, output[-3000:]
    for name in boundscheck.DEVICE:
        for card in ("fwdnxt", "tiny"):
            assert f"device {name} on {card}: bit-exact" in output, output[-3000:]

