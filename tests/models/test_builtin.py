"""Tessera's built-in models match onnxruntime on the CPU path."""
from pathlib import Path

import numpy as np
import pytest

from compiler.zoo import mobilenet_v2, resnet, transformer_block
from tests.helpers.models import compare_with_onnxruntime

pytest.importorskip("onnxruntime")

MODELS = {
    "resnet10": lambda: resnet(10, image=64, width=16),
    "mobilenet_v2": lambda: mobilenet_v2(image=96, width=0.5),
    "transformer": transformer_block,
}


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
@pytest.mark.parametrize("name", MODELS)
def test_builtin_model_matches_onnxruntime(name, optimized):
    errors = compare_with_onnxruntime(MODELS[name](), optimized=optimized)
    assert max(errors.values()) <= 1e-3, errors


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 17, 23])
@pytest.mark.parametrize("name", ["resnet10", "mobilenet_v2"])
def test_cnn_matches_onnxruntime_across_opsets(name, opset):
    build = {"resnet10": lambda: resnet(10, image=32, width=8, opset=opset),
             "mobilenet_v2": lambda: mobilenet_v2(image=32, width=0.35, opset=opset)}[name]
    errors = compare_with_onnxruntime(build(), optimized=True)
    assert max(errors.values()) <= 1e-3, errors


def test_sample_photos_are_scikit_learns_without_importing_it():
    """compiler.zoo.images reads scikit-learn's two photographs from where it
    installed them (``import sklearn.datasets`` costs every run seconds):
    the same files, decoded to the same pixels as ``load_sample_images``."""
    import subprocess
    import sys

    from sklearn.datasets import load_sample_images

    from compiler.zoo.images import sample_photo_files, sample_photos

    reference = load_sample_images()
    assert [path.name for path in sample_photo_files()] == [Path(name).name for name in reference.filenames]
    for ours, theirs in zip(sample_photos(), reference.images, strict=True):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    probe = ("import sys; from compiler.zoo.images import sample_photos; sample_photos(); "
             "print('sklearn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
