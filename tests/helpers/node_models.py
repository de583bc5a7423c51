"""Run one ONNX node through Tessera and through a reference: onnx's
reference evaluator, or onnxruntime where the reference departs from the spec."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from compiler import backend

ORT_MAX_IR_VERSION = 10
"""The newest model IR version the installed onnxruntime loads."""


def make_node_model(op: str, inputs: Sequence[np.ndarray | None], num_outputs: int = 1, opset: int = 23,
                    consts: Sequence[int] = (), **attrs):
    """A one-node model. ``inputs[i] is None`` omits optional input i; the
    inputs listed in ``consts`` become initializers (constants to Tessera)."""
    in_names = ["" if x is None else f"in{i}" for i, x in enumerate(inputs)]
    out_names = [f"out{i}" for i in range(num_outputs)]
    node = helper.make_node(op, in_names, out_names, **attrs)
    graph_inputs, inits = [], []
    for i, (name, x) in enumerate(zip(in_names, inputs)):
        if x is None:
            continue
        x = np.asarray(x)
        if i in consts:
            inits.append(helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape,
                                            x.reshape(-1).tolist()))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype),
                                                              x.shape))
    outputs = [helper.make_empty_tensor_value_info(n) for n in out_names]
    graph = helper.make_graph([node], f"{op}_test", graph_inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def node_feeds(inputs: Sequence[np.ndarray | None], consts: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """The feeds of a model made by :func:`make_node_model`."""
    return {f"in{i}": np.asarray(x) for i, x in enumerate(inputs) if x is not None and i not in consts}


def run_tessera(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple:
    """Tessera's outputs, the node run by its own kernel (not optimised into a fused
    group), with output checks and strict type cross-checks on."""
    return backend.prepare(model, check=True, strict_types=True, optimize=False).run(feeds)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list:
    """onnxruntime's outputs (on a copy whose IR version it can read)."""
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = min(copy.ir_version, ORT_MAX_IR_VERSION)
    session = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def run_both(op: str, inputs: Sequence[np.ndarray | None], num_outputs: int = 1, opset: int = 23,
             consts: Sequence[int] = (), **attrs) -> tuple[tuple, list]:
    """(Tessera's outputs, the reference evaluator's outputs)."""
    model = make_node_model(op, inputs, num_outputs, opset, consts, **attrs)
    feeds = node_feeds(inputs, consts)
    return run_tessera(model, feeds), ReferenceEvaluator(model).run(None, feeds)


def assert_outputs_close(ours, theirs, op: str, rtol: float, atol: float) -> None:
    """Same dtypes, same shapes, values close (NaNs equal)."""
    assert len(ours) == len(theirs), f"{op}: {len(ours)} outputs, expected {len(theirs)}"
    for got, want in zip(ours, theirs):
        want = np.asarray(want)
        assert got.dtype == want.dtype, f"{op}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{op}: shape {got.shape} != {want.shape}"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


def assert_matches_reference(op: str, inputs, num_outputs: int = 1, opset: int = 23, consts=(),
                             rtol: float = 1e-5, atol: float = 1e-6, **attrs) -> tuple:
    ours, theirs = run_both(op, inputs, num_outputs, opset, consts, **attrs)
    assert_outputs_close(ours, theirs, op, rtol, atol)
    return ours


def assert_matches_onnxruntime(op: str, inputs, num_outputs: int = 1, opset: int = 22, consts=(),
                               rtol: float = 1e-4, atol: float = 1e-5, **attrs) -> tuple:
    """Like :func:`assert_matches_reference`, against onnxruntime."""
    model = make_node_model(op, inputs, num_outputs, opset, consts, **attrs)
    feeds = node_feeds(inputs, consts)
    ours = run_tessera(model, feeds)
    assert_outputs_close(ours, run_onnxruntime(model, feeds), op, rtol, atol)
    return ours
