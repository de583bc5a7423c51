"""Ctrl-C held off while Numba compiles or loads kernels.

A KeyboardInterrupt raised in the middle of Numba's compilation, or inside
one of llvmlite's finalizers it triggers, can leave llvmlite's objects half
closed and abort the process later ("double free"). The engine therefore
runs the steps that compile or load kernels (its construction and its first
run of each kind) with a first Ctrl-C deferred to the end of the step; a
second Ctrl-C interrupts at once. Later runs are interrupted at once and
leave the engine usable. Only the main thread receives SIGINT, and only
Python's default handler is replaced: a program's own handler is left alone.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def deferred_interrupt(what: str) -> Iterator[None]:
    """Run the body with a first SIGINT recorded, not raised; raise
    KeyboardInterrupt naming ``what`` when the body ends."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pending: list[int] = []

    def record(signum, frame) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt(f"interrupted during {what} (held until its kernels were compiled)")
