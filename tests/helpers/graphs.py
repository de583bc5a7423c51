"""Helpers for pass tests: run a pass under verification, run graphs, compare."""
from __future__ import annotations

import copy

import numpy as np

from codegen.cpu import lower_to_program
from ir.graph import Graph
from passes.infra import Pass, PassContext
from passes.instruments import VerifyEachPass
from runtime.executor import Executor


def run_graph(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return Executor(lower_to_program(graph), check=True).run(feeds)


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in graph.inputs}


def apply(p: Pass, graph: Graph, **options) -> Graph:
    """Run one pass with the verifier after it."""
    with PassContext(options=options, instruments=[VerifyEachPass()]):
        return p(graph)


def assert_same_numerics(p: Pass, graph: Graph, rtol: float = 1e-5, atol: float = 1e-5, **options) -> Graph:
    """Apply ``p`` and check the graph computes what it computed before
    (same output names, same values)."""
    feeds = random_feeds(graph)
    before = run_graph(copy.deepcopy(graph), feeds)
    after_graph = apply(p, graph, **options)
    after = run_graph(after_graph, feeds)
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=rtol, atol=atol, err_msg=name)
    return after_graph


def ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]
