import os
from pathlib import Path

os.environ.setdefault("TESSERA_NUM_THREADS", "2")
if "PYTEST_XDIST_WORKER" in os.environ:
    # each of the workers has a core: numpy's BLAS threads would only contend with the other worker and
    # spin (read when numpy loads its BLAS, which no plugin has done yet: tests/test_conftest_threads.py)
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

# The processes started from here on (xdist's workers, the bounds-checked run, the CLI and Ray processes the
# tests start) keep the memory they free for their next arrays instead of returning it to the kernel and
# faulting it in again: glibc's malloc maps every block above its threshold (128 KiB, rising with use) on its
# own and unmaps it when freed. Measured on three modules on two workers (detector fidelity, binary fuzzing,
# detector heads; 2-core EPYC, warm): 1.09 M -> 0.26 M page faults, 12 -> 5.5 s of system time, wall 48-52 ->
# 44-49 s. Read by glibc when a process starts; any other C library ignores them.
for _var, _value in (("MALLOC_MMAP_THRESHOLD_", str(32 << 20)), ("MALLOC_TRIM_THRESHOLD_", str(4 << 30)),
                     ("MALLOC_TOP_PAD_", str(64 << 20))):
    os.environ.setdefault(_var, _value)

BOUNDSCHECK = "tests/test_boundscheck.py"


def _worker() -> bool:
    """Whether this process is a pytest-xdist worker."""
    return "PYTEST_XDIST_WORKER" in os.environ


def _distributing(config) -> bool:
    """Whether this process is the controller of pytest-xdist workers."""
    return not _worker() and bool(getattr(config.option, "numprocesses", None)) and \
        getattr(config.option, "dist", "no") != "no"


def pytest_configure(config):
    """A distributed session (``-n 2``: the README's command, so both cores
    run tests) starts the bounds-checked run here, once, for whichever worker
    runs its test (tests/helpers/boundscheck.py), when the arguments include
    that test and select by no keyword or marker."""
    if _distributing(config) and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # the workers' order (LONGEST_FIRST), not the most tests first
    if _distributing(config) and _selects_boundscheck(config):
        from tests.helpers import boundscheck

        boundscheck.start(share=True)


def _selects_boundscheck(config) -> bool:
    if config.option.keyword or config.option.markexpr or \
            any(BOUNDSCHECK in d for d in (config.option.deselect or ())):
        return False
    root = Path(config.rootpath)
    target = (root / BOUNDSCHECK).resolve()
    paths = config.args or [str(root / p) for p in config.getini("testpaths")] or [str(root)]
    for arg in paths:
        path = Path(arg.split("::")[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if path == target or path in target.parents:
            return True
    return False


def pytest_sessionstart(session):
    """On a cold kernel cache, a serial session starts a helper that compiles
    the suite's kernels ahead of the tests on the second core
    (compiler/precompile.py, manifest compiler/manifests/suite.json); a
    distributed one needs none (its workers compile on every core, each
    signature once: runtime/jit.py). Commands the tests run start none of
    their own."""
    if not _worker() and not _distributing(session.config):
        from compiler import precompile

        session.config.tessera_precompiler = precompile.start("suite")
    os.environ["TESSERA_PRECOMPILE"] = "0"


LONGEST_FIRST = ("tests/models/test_zoo.py", "tests/runtime/test_fwdnxt_flags.py", "tests/runtime/test_api_misuse.py",
                 "tests/ops/test_nn.py", "tests/ops/test_conv_gate.py", "tests/conformance/test_onnx_node.py",
                 "tests/codegen/test_device.py", "tests/compiler/test_detector_fidelity.py")
"""The modules that take longest (a minute or two each, cold, measured with
``--durations=0``), which a distributed session hands out first: pytest-xdist
gives whole modules (``--dist loadscope``) to whichever worker is free, in
collection order (xdist's own reordering, most tests first, is turned off in
pytest_configure: by it the modules of few but long tests, the Ray cluster's,
the model zoo's, came last, and one worker was still in them while the other
had nothing left). Not among them: modules whose tests start processes that
load kernels themselves (tests/runtime/test_infer_app.py's Ray actors and
app runs): first, on a cold cache, they took 112 and 88 s where late, the
kernels saved, they take 22 and 10; collected late, they stay late."""


def pytest_collection_modifyitems(session, config, items):
    """In a pytest-xdist worker, the :data:`LONGEST_FIRST` modules go first
    (each worker collects, and must order, alike). The bounds-checked run
    (tests/test_boundscheck.py) starts in the background as soon as its test
    is collected (a serial session; a distributed one started it in its
    controller), and the test goes last."""
    if _worker():
        rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest as collected
    checked = [item for item in items if item.nodeid.startswith(BOUNDSCHECK)]
    if checked:
        from tests.helpers import boundscheck

        if not _worker():
            boundscheck.start()
        items[:] = [item for item in items if item not in checked] + checked


def pytest_unconfigure(config):
    import sys

    helper = getattr(config, "tessera_precompiler", None)
    if helper is not None:
        helper.stop()
    if "tests.helpers.boundscheck" in sys.modules:
        sys.modules["tests.helpers.boundscheck"].stop()
