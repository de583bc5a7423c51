"""Shapes users give for symbolic dims are checked against the element limit
before any pass runs: the input itself, and every tensor the import infers
from it, so nothing allocates an absurd tensor."""
from __future__ import annotations

import resource

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compiler.errors import ModelImportError
from compiler.frontend import import_onnx
from runtime import FWDNXT
from runtime.fwdnxt_flags import FWDNXTError


def symbolic_conv(channels: int = 64) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((channels, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["y"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["y"], ["out"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_huge_image_string_is_refused_before_compiling(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(symbolic_conv(), path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelImportError, match=r"input 'image': the given shape \[1, 3, 100000, 100000\] has "
                                               r"30000000000 elements, more than the limit of 1073741824"):
        FWDNXT().Compile("100000x100000x3", str(path), str(tmp_path / "model.bin"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KiB: under 1 GiB more
    assert not (tmp_path / "model.bin").exists()


def test_a_tensor_the_input_shape_makes_absurd_is_refused_at_its_node():
    """The input (201M elements) is allowed; the Conv's 64 channels of it are not."""
    with pytest.raises(ModelImportError, match=r"Conv node 'Conv_0' .*output 'y' would have shape "
                                               r"\[1, 64, 8192, 8192\] \(4294967296 elements\)"):
        import_onnx(symbolic_conv(), shapes={"image": [1, 3, 8192, 8192]})


def test_a_compile_into_a_folder_that_does_not_exist_fails_before_compiling(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(symbolic_conv(4), path)
    with pytest.raises(FWDNXTError, match=r"Compile: .*missing/model.bin: cannot be written: its folder .* does "
                                          "not exist"):
        FWDNXT().Compile("8x8x3", str(path), str(tmp_path / "missing" / "model.bin"))
