"""bench/profile_cpu.py --ort: each step is set beside the onnxruntime nodes
of the same signature, as onnxruntime reports them (its NCHWc layout pads a
convolution's channels to whole blocks; a Gemm's prepacked weight is not
listed), so that a layer of 24 channels is compared with its own node and
not left unmatched, its time counted against another layer."""
import importlib.util
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


@pytest.fixture()
def profile_cpu(monkeypatch):
    defaults = dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TESSERA_NUM_THREADS"),
                             "1")
    for var, value in {**defaults, "OPENBLAS_CORETYPE": "Haswell"}.items():
        monkeypatch.setenv(var, os.environ.get(var, value))  # bench/timing sets defaults on import: undone after
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_profile_cpu", BENCH / "profile_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def signature(profile_cpu):
    return profile_cpu._signature


def test_a_convolution_matches_onnxruntimes_node_with_its_channels_padded_to_blocks(signature):
    # MobileNetV2's 96 -> 24 projection and the 24 -> 144 expansion after it, as onnxruntime lists them (NCHW16c)
    assert signature("Conv", [(1, 96, 56, 56), (24, 96, 1, 1)]) == signature("FusedConv", [(1, 96, 56, 56),
                                                                                         (32, 96, 1, 1)])
    assert signature("FusedConv", [(1, 24, 56, 56), (144, 24, 1, 1)]) == signature("FusedConv", [(1, 32, 56, 56),
                                                                                               (144, 32, 1, 1)])
    # an image's 3 channels and a depthwise weight's 1 are not padded, by either side
    assert signature("FusedConv", [(1, 3, 224, 224), (32, 3, 3, 3)]) == ("conv", (1, 3, 224, 224), (32, 3, 3, 3))
    assert signature("FusedConv", [(1, 144, 56, 56), (144, 1, 3, 3)]) == ("conv", (1, 144, 56, 56), (144, 1, 3, 3))


def test_different_layers_keep_different_signatures(signature):
    assert signature("Conv", [(1, 32, 56, 56), (144, 32, 1, 1)]) != signature("Conv", [(1, 32, 28, 28),
                                                                                     (144, 32, 1, 1)])
    assert signature("Conv", [(1, 32, 56, 56), (144, 32, 1, 1)]) != signature("Conv", [(1, 48, 56, 56),
                                                                                     (144, 48, 1, 1)])
    assert signature("Conv", [(1, 32, 56, 56), (144, 32, 3, 3)]) != signature("Conv", [(1, 32, 56, 56),
                                                                                     (144, 32, 1, 1)])


def test_a_product_matches_by_its_activation(signature):
    # ours: activation and weight; onnxruntime: activation and bias (the weight prepacked)
    assert signature("Gemm", [(1, 1280), (1000, 1280)]) == signature("Gemm", [(1, 1280), (1000,)]) == ("gemm",
                                                                                                       (1, 1280))


def test_scaling_rows_put_the_steps_that_gain_least_from_the_pool_first(profile_cpu):
    """--scaling: a step's excess is its time over a perfect split of its one-thread time."""
    per_run = {("a", "Conv"): 0.50, ("b", "FusedConv"): 0.10, ("c", "Gemm"): 0.30}
    one = {("a", "Conv"): 1.00, ("b", "FusedConv"): 0.10}
    rows = profile_cpu.scaling_rows(per_run, one, 2)
    assert [row[0][0] for row in rows] == ["c", "b", "a"]  # c ran only here: all of it is excess
    assert rows[1][3] == pytest.approx(0.05) and rows[2][3] == pytest.approx(0.0)
    assert rows[0][1] != rows[0][1]  # NaN: no one-thread time
