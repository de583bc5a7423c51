"""tests/conftest.py gives each pytest-xdist worker one BLAS thread (the
README's command runs two workers on two cores): set before numpy loaded
its BLAS, or it would not hold."""
import os

import numpy  # noqa: F401  (loads its BLAS)
from threadpoolctl import threadpool_info


def test_a_worker_runs_numpy_on_one_blas_thread():
    blas = {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
    assert blas, "numpy loaded no BLAS that threadpoolctl sees"
    if "PYTEST_XDIST_WORKER" in os.environ:
        assert blas == {1}, blas
    else:  # a serial session leaves the host's default (or the user's setting) alone
        assert os.environ.get("OPENBLAS_NUM_THREADS") != "1" or blas == {1}
