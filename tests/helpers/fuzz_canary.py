"""A fuzz target whose cases pass, are rejected, fail uncleanly, crash or
hang on purpose, by kind: the campaign runner's own test."""
from __future__ import annotations

import os
import signal
import time

import numpy as np

from runtime.errors import TesseraError
from tests.helpers.fuzzing import Case

KINDS = ("accepted", "rejected", "unclean", "crash", "hang")


def setup() -> None:
    return None


def generate(state: None, rng: np.random.Generator) -> Case:
    kind = KINDS[int(rng.integers(len(KINDS)))]
    return Case(kind.encode(), kind, ".txt")


def execute(state: None, path: str, kind: str) -> None:
    if kind == "rejected":
        raise TesseraError("a named error")
    if kind == "unclean":
        raise KeyError("an unnamed error")
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(3600)
