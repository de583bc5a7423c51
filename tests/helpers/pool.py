"""The thread pool kept on, as tests of it need it."""
from runtime import cpu_load, parallel, pool_protocol


def steady_pool(monkeypatch) -> None:
    """The pool stays on through a test (the stand-aside test drives the
    load verdicts itself): a loaded CI host must not send it aside; and no
    other test's threads count as running jobs."""
    pool = parallel._get_pool()
    monkeypatch.setattr(pool.load, "window", None)
    monkeypatch.setattr(pool.load, "serial", False)
    pool.state[pool_protocol.CROWD] = 0
    monkeypatch.setattr(pool, "callers", cpu_load.Callers(pool.state, pool_protocol.CROWD))
