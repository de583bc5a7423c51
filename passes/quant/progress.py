"""A dependency-free progress line for long loops such as calibration.

On a terminal (the stream is a tty) one line is redrawn in place with the
count, the rate and the time left; elsewhere (logs, CI, captured output)
a single summary line is written when the loop ends.

    for feeds in progress(batches, total=32, label="calibrating"):
        ...
    with Progress(total=32) as bar:
        ...; bar.advance()
"""
from __future__ import annotations

import operator
import sys
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

REDRAW_S = 0.1
"""Least time between two redraws of the terminal line."""


class Progress:
    """Counts steps and shows them on ``stream`` (stderr by default)."""

    def __init__(self, total: int | None = None, *, label: str = "progress", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total = total or None
        self.label = label
        self.done = 0
        self._stream = sys.stderr if stream is None else stream
        self._live = _is_tty(self._stream)
        self._clock = clock
        self._start = clock()
        self._drawn_at = -float("inf")
        self._width = 0
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more; redraw the terminal line if it is due."""
        self.done += steps
        now = self._clock()
        if self._live and (now - self._drawn_at >= REDRAW_S or self.done == self.total):
            self._draw(self._running_line(now))
            self._drawn_at = now

    def close(self) -> None:
        """End the display: the terminal line gets its final state and a
        newline; a non-terminal stream gets the one summary line."""
        if self._closed:
            return
        self._closed = True
        line = self._summary_line(self._clock())
        if self._live:
            self._draw(line)
            self._stream.write("\n")
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def _running_line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        line = f"{self.label} {count} {_rate(rate)}"
        if self.total and rate > 0:
            line += f" ETA {_clock_time(max(self.total - self.done, 0) / rate)}"
        return line

    def _summary_line(self, now: float) -> str:
        elapsed = max(now - self._start, 0.0)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return f"{self.label}: {self.done} in {_clock_time(elapsed)} ({_rate(rate)})"

    def _draw(self, line: str) -> None:
        """Overwrite the terminal line (padding out a longer previous one)."""
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)


def progress(iterable: Iterable[T], *, total: int | None = None, label: str = "progress",
             stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> Iterator[T]:
    """Yield the items of ``iterable``, showing progress; ``total`` defaults
    to the iterable's length (or length hint) when it has one."""
    if total is None:
        total = operator.length_hint(iterable, 0) or None
    with Progress(total, label=label, stream=stream, clock=clock) as bar:
        for item in iterable:
            yield item
            bar.advance()


def _is_tty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _rate(per_second: float) -> str:
    if 0 < per_second < 1:
        return f"{1 / per_second:.1f} s/it"
    return f"{per_second:.1f}/s"


def _clock_time(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
