"""NaN and ±Inf in a model's float inputs: the one rule of every path that
turns inputs into device codes (docs/runtime.md, "Non-finite inputs").

Run, Run_sw, PutInput, the Inference-Engine API, kp (through the Engine)
and the Simulator's integer mode check each float input once, before
anything runs, under a policy:

- ``"error"`` (the default): a NaN, +Inf or -Inf is a NonFiniteInputError
  naming the input, the first such value (flat and per-axis index) and how
  many there are;
- ``"saturate"``: ±Inf goes on to quantization, which saturates it to the
  grid's end code as it does any value beyond the grid; a NaN is still an
  error, as no code stands for it.

The default policy is the environment variable TESSERA_NONFINITE's; each
API also sets it in its own idiom (docs/runtime.md lists them). The float
reference (Run_th) has no codes, so no policy: there NaN and Inf follow
IEEE arithmetic, as in onnxruntime.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from runtime.errors import ExecutionError, TesseraError
from runtime.jit import jit

POLICIES = ("error", "saturate")
DEFAULT = "error"
ENVIRONMENT = "TESSERA_NONFINITE"


class NonFiniteInputError(ExecutionError):
    """A float input holds a value the policy refuses; the message names the input, the value and where it is."""


class NonFinitePolicyError(TesseraError, ValueError):
    """A non-finite policy name that is neither 'error' nor 'saturate'; the message says where it was given."""


def nonfinite_policy(value: str | None = None) -> str:
    """``value``, else $TESSERA_NONFINITE, else 'error': the policy a new
    engine or Simulator model takes (an unknown name is refused at once)."""
    where = "the non-finite policy"
    if value is None:
        value, where = os.environ.get(ENVIRONMENT) or DEFAULT, f"the environment variable {ENVIRONMENT}"
    if value not in POLICIES:
        raise NonFinitePolicyError(f"{where} is {value!r}; it takes one of {list(POLICIES)}")
    return value


def check_feeds(feeds: Mapping[str, np.ndarray], policy: str, where: str = "") -> None:
    """check_input on every array of ``feeds`` (input name -> array)."""
    for name, array in feeds.items():
        check_input(name, np.asarray(array), policy, where)


def check_input(name: str, array: np.ndarray, policy: str, where: str = "") -> None:
    """NonFiniteInputError at the first value of a float ``array`` that
    ``policy`` refuses (NaN always, ±Inf under 'error'); a finite input
    costs one pass over it (:func:`all_finite`). ``where`` is added after
    the input's name."""
    if array.dtype.kind != "f" or all_finite(array):
        return
    bad = np.isnan(array) if policy == "saturate" else ~np.isfinite(array)
    if not bad.any():
        return
    first = array.reshape(-1)[np.flatnonzero(bad)[0]]
    count = int(bad.sum())
    count = f"{count} of its {array.size} values {'is' if count == 1 else 'are'}"
    why = (f"{count} NaN, which no device code stands for under any non-finite policy: replace them first "
           "(np.nan_to_num, for one)" if policy == "saturate" else
           f"{count} NaN or ±Inf, which the non-finite policy 'error' refuses ('saturate' takes ±Inf to the "
           f"grid's end codes: {ENVIRONMENT}, or the API's own setting)")
    raise NonFiniteInputError(f"input {name!r}{where} holds {_spelled(first)} at {located(bad)}; {why}")


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a float ``array`` is finite: for float32 and
    float64, one compiled integer pass over its bits (no array made: ~1 µs
    for a small input, where np.isfinite(x).all() takes 2.5; the exponent
    mask is a constant of the compiled pass, as a scalar argument would
    cost more to dispatch than the pass); np.isfinite for other float types."""
    if array.dtype == _F32:
        return _no_exponent_all_ones_32(array.reshape(-1).view(np.uint32))
    if array.dtype == _F64:
        return _no_exponent_all_ones_64(array.reshape(-1).view(np.uint64))
    return bool(np.isfinite(array).all())


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


@jit
def _no_exponent_all_ones_32(bits) -> bool:
    """Whether no float32 whose ``bits`` these are has an exponent of all
    ones (NaN and ±Inf alone have): an integer OR over the whole array,
    which vectorises; no early exit."""
    found = 0
    for i in range(bits.shape[0]):
        found |= (bits[i] & 0x7F800000) == 0x7F800000
    return found == 0


@jit
def _no_exponent_all_ones_64(bits) -> bool:
    """:func:`_no_exponent_all_ones_32` for float64 bits."""
    exponent = np.uint64(0x7FF0000000000000)
    found = 0
    for i in range(bits.shape[0]):
        found |= (bits[i] & exponent) == exponent
    return found == 0


def located(mask: np.ndarray) -> str:
    """'flat index 5 (index [0, 1, 0, 1])': where the first True of ``mask`` is."""
    flat = int(np.flatnonzero(mask)[0])
    return f"flat index {flat} (index {[int(i) for i in np.unravel_index(flat, mask.shape)]})"


def _spelled(value) -> str:
    """NaN, +Inf or -Inf."""
    return "NaN" if np.isnan(value) else "+Inf" if value > 0 else "-Inf"
