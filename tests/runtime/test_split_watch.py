"""The choice between a whole run on the pool and on the calling thread
alone (runtime.cpu_load.SplitWatch): the faster way on this host now,
probed less often while it holds, runs the pool could not take counted for
neither way, and the same bits either way."""
import threading

import numpy as np

from codegen.cpu import lower_to_program
from compiler.frontend import import_onnx
from compiler.pipeline import optimize
from compiler.zoo import resnet
from runtime import cpu_load, parallel
from runtime.executor import Executor
from tests.helpers.pool import steady_pool


class _Host:
    """A fake clock and the seconds a run takes each way."""

    def __init__(self, monkeypatch, pool_s: float, alone_s: float):
        self.now, self.pool_s, self.alone_s = 1000.0, pool_s, alone_s
        monkeypatch.setattr(cpu_load.time, "perf_counter", lambda: self.now)
        self.watch = cpu_load.SplitWatch()
        self.ways: list[tuple[float, bool]] = []

    def run(self, seconds: float, pooled: bool = True) -> None:
        """Runs back to back for ``seconds`` of the fake clock."""
        end = self.now + seconds
        while self.now < end:
            alone = self.watch.choose()
            took = self.alone_s if alone else self.pool_s
            self.ways.append((self.now, alone))
            self.now += took
            self.watch.record(alone, took, pooled and not alone)

    def probes(self, alone: bool) -> list[float]:
        """When each stretch of runs taken ``alone`` began."""
        return [t for (t, a), (_, before) in zip(self.ways[1:], self.ways) if a == alone and before != alone]


def test_the_pool_kept_where_faster_probed_ever_less_often(monkeypatch):
    host = _Host(monkeypatch, pool_s=0.001, alone_s=0.0015)
    host.run(cpu_load.FIRST_PROBE_SECONDS * 0.9)
    assert not any(alone for _, alone in host.ways)  # no probe before the first interval
    host.run(40.0)
    starts = host.probes(True)
    gaps = np.diff(starts)
    assert len(starts) >= 5 and not host.watch.alone and host.watch.switches == 0
    # each probe one warm-up run and PROBE_RUNS timed ones, the gaps doubling up to the last interval
    assert sum(alone for _, alone in host.ways) == len(starts) * (cpu_load.PROBE_RUNS + 1)
    assert all(b > 1.8 * a for a, b in zip(gaps[:2], gaps[1:3]))
    assert max(gaps) < cpu_load.LAST_PROBE_SECONDS + 0.1 and max(gaps) > cpu_load.LAST_PROBE_SECONDS * 0.9


def test_a_probe_that_costs_much_waits_long(monkeypatch):
    """A large model whose runs alone take far longer (ResNet-50's float
    run, 60 against 34 ms): after the first probe the next waits until its
    loss is PROBE_SHARE of the time between."""
    host = _Host(monkeypatch, pool_s=0.034, alone_s=0.060)
    host.run(200.0)
    starts = host.probes(True)
    loss = (cpu_load.PROBE_RUNS + 1) * (0.060 - 0.034)
    assert len(starts) >= 2 and not host.watch.alone
    assert min(np.diff(starts)) > 0.95 * loss / cpu_load.PROBE_SHARE
    probed = sum(alone for _, alone in host.ways) * (0.060 - 0.034)
    assert probed < 2 * cpu_load.PROBE_SHARE * 200.0 + loss  # the first probe, then at most the share


def test_alone_taken_when_the_host_makes_it_faster_and_the_pool_probed_again(monkeypatch):
    host = _Host(monkeypatch, pool_s=0.001, alone_s=0.0015)
    host.run(20.0)  # the probe interval has grown
    host.pool_s = 0.0022  # the cores moved apart: the pool's runs now slower than the caller's alone
    while not host.watch.switches and host.now < 1000.0 + 20.0 + cpu_load.LAST_PROBE_SECONDS + 1.0:
        host.run(0.001)
    assert host.watch.alone and host.watch.switches == 1
    switched = host.now
    host.run(5.0)
    pool_runs = [t for t, alone in host.ways if t > switched and not alone]
    # the pool probed again one first interval after the switch: a warm-up and PROBE_RUNS timed runs
    assert pool_runs[0] - switched < cpu_load.FIRST_PROBE_SECONDS + 0.01
    assert len([t for t in pool_runs if t < pool_runs[0] + 0.1]) == cpu_load.PROBE_RUNS + 1
    assert host.watch.alone  # the pool, probed, still slower
    host.pool_s = 0.0008  # and back
    host.run(cpu_load.LAST_PROBE_SECONDS + 1.0)
    assert not host.watch.alone and host.watch.switches == 2


def test_runs_the_pool_could_not_take_count_for_neither_way(monkeypatch):
    host = _Host(monkeypatch, pool_s=0.001, alone_s=0.0001)
    host.run(10.0, pooled=False)  # another call held the pool, or the cores were taken: nothing to compare
    assert not any(alone for _, alone in host.ways) and not host.watch.alone


def test_a_run_alone_gives_the_pools_bits(monkeypatch):
    """ResNet-10 at 32 x 32 (operations of several chunks), its schedule
    told to run alone: the caller runs every chunk (the pool takes no part)
    and the outputs are the pool's, bit for bit."""
    program = lower_to_program(optimize(import_onnx(resnet(10, image=32, classes=10)))).frozen()
    feeds = {program.slots[s]: np.random.default_rng(1).standard_normal(program.types[s][0]).astype(np.float32)
             for s in program.inputs}
    executor = Executor(program)
    pooled = executor.run(feeds)
    watch = executor._schedule().split
    if parallel.NUM_THREADS < 2:  # one thread: every run alone, nothing to choose
        assert watch is None
        return
    taken = []
    run_phases = parallel.run_phases
    monkeypatch.setattr(parallel, "run_phases", lambda *a, **k: taken.append(run_phases(*a, **k)) or taken[-1])
    monkeypatch.setattr(watch, "alone", True)
    monkeypatch.setattr(watch, "choose", lambda: True)
    alone = executor.run(feeds)
    assert taken and not any(taken)
    for name in pooled:
        np.testing.assert_array_equal(alone[name], pooled[name])


def test_a_run_alone_by_choice_is_a_job_in_progress_for_other_threads(monkeypatch):
    """Chosen alone, a run still counts as a user thread inside a job
    (runtime.cpu_load.Callers), so another request's run beside it goes
    alone too rather than taking the pool (three busy threads on two
    cores); and the pool takes no part."""
    steady_pool(monkeypatch)
    callers = parallel._get_pool().callers
    inside = []

    def driver(team, state, role, first):
        inside.append(threading.get_ident() in callers._jobs)

    assert parallel.run_phases(driver, 1, chosen=True, whole_run=True) is False
    assert inside == [True] and threading.get_ident() not in callers._jobs
