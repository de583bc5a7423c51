import os

os.environ.setdefault("TESSERA_NUM_THREADS", "2")


def pytest_sessionstart(session):
    """On a cold kernel cache, a helper compiles the suite's kernels ahead of
    the tests on the second core (compiler/precompile.py, manifest
    compiler/manifests/suite.json); commands the tests run start none of their own."""
    from compiler import precompile

    session.config.tessera_precompiler = precompile.start("suite")
    os.environ["TESSERA_PRECOMPILE"] = "0"


def pytest_collection_modifyitems(session, config, items):
    """The bounds-checked run (tests/test_boundscheck.py) starts in the
    background as soon as its test is collected, and the test goes last."""
    checked = [item for item in items if item.nodeid.startswith("tests/test_boundscheck.py")]
    if checked:
        from tests.helpers import boundscheck

        boundscheck.start()
        items[:] = [item for item in items if item not in checked] + checked


def pytest_unconfigure(config):
    import sys

    helper = getattr(config, "tessera_precompiler", None)
    if helper is not None:
        helper.stop()
    if "tests.helpers.boundscheck" in sys.modules:
        sys.modules["tests.helpers.boundscheck"].stop()
