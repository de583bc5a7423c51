"""parallel_for: every index exactly once, errors re-raised, nesting inline."""
import threading

import numpy as np
import pytest

from runtime import parallel
from runtime.parallel import chunks, parallel_for


@pytest.mark.parametrize("n, parts, grain", [(10, 3, 1), (7, 8, 1), (100, 4, 30), (1, 4, 1)])
def test_chunks_cover_the_range_once(n, parts, grain):
    spans = chunks(n, parts, grain)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(spans) <= parts and (len(spans) == 1 or min(e - s for s, e in spans) >= grain)


def test_every_index_is_visited_exactly_once(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 3)
    hits = np.zeros(1000, np.int64)
    lock = threading.Lock()

    def body(start, stop, out):
        with lock:
            out[start:stop] += 1

    parallel_for(body, len(hits), hits)
    assert (hits == 1).all()


def test_errors_in_any_chunk_reach_the_caller(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)

    def body(start, stop):
        if start <= 500 < stop:
            raise ValueError("chunk with 500")

    with pytest.raises(ValueError, match="chunk with 500"):
        parallel_for(body, 1000)


def test_nested_calls_from_pool_threads_run_inline(monkeypatch):
    monkeypatch.setattr(parallel, "NUM_THREADS", 2)
    seen = []

    def inner(start, stop):
        seen.append((start, stop))

    def outer(start, stop):
        parallel_for(inner, 10)

    parallel_for(outer, 8)
    assert sum(stop - start for start, stop in seen) == 10 * 8
