"""A FusedConv whose residual dies with it writes its output into the
residual's memory (codegen.cpu.residuals_in_place marks it, the executor
keeps values a caller fetches, watches or fed, the prepared 1x1 conv writes
there): the same bits as a fresh output, and nothing a caller can see
overwritten."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codegen import lower_to_program
from compiler.pipeline import optimize
from ir import GraphBuilder
from runtime import Executor
from runtime.errors import KernelError
from runtime.gemm import PackedProduct, pack_weights
from runtime.kernels.registry import prepared_kernel
from runtime.program import NO_SLOT

C, SIZE = 16, 9


def block(residual_is_output: bool = False, residual_read_later: bool = False, residual_is_input: bool = False,
          depth: int = 200):
    """ResNet's bottleneck in small: r = relu(conv(x)) (the block's input),
    s = relu(conv(r)), y = relu(conv1x1(s) + r), the 1x1 conv's reduction
    ``depth`` deep (one GEMM block up to 256)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("block")
    x = b.input("x", [1, C, SIZE, SIZE])

    def conv(v, cin, cout):
        w = b.const((rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32))
        return b.Conv(v, w, b.const(rng.standard_normal(cout).astype(np.float32)))

    r = b.input("r", [1, 300, SIZE, SIZE]) if residual_is_input else b.Relu(conv(x, C, 300))
    s = b.Relu(conv(r, 300, depth))
    y = b.Relu(b.Add(conv(s, depth, 300), r))
    outputs = [y]
    if residual_is_output:
        outputs.append(r)
    if residual_read_later:
        outputs.append(b.GlobalAveragePool(r))
    return optimize(b.build(*outputs))


def fused_conv_with_residual(program):
    steps = [s for s in program.steps if s.kernel == "FusedConv" and s.inputs[3] != NO_SLOT]
    assert len(steps) == 1
    return steps[0]


def without_inplace(program):
    steps = [dataclasses.replace(s, attrs={k: v for k, v in s.attrs.items() if k != "inplace"})
             for s in program.steps]
    return dataclasses.replace(program, steps=steps)


def feeds(program):
    rng = np.random.default_rng(1)
    return {name: rng.standard_normal((1, C if name == "x" else 300, SIZE, SIZE)).astype(np.float32)
            for name in program.input_names}


def test_a_residual_that_dies_takes_the_output_with_the_same_bits():
    program = lower_to_program(block())
    step = fused_conv_with_residual(program)
    assert step.attrs.get("inplace") == 3
    inputs = feeds(program)
    got = Executor(program, check=True).run(inputs)
    want = Executor(without_inplace(program), check=True).run(inputs)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    # the residual's memory holds the output: the value fetched beside it is the residual as computed
    residual = program.slots[step.inputs[3]]
    fetched = Executor(program).run(inputs, fetch=[residual, program.slots[step.outputs[0]]])
    alone = Executor(without_inplace(program)).run(inputs, fetch=[residual])
    np.testing.assert_array_equal(fetched[residual], alone[residual])
    assert not np.shares_memory(fetched[residual], fetched[program.slots[step.outputs[0]]])


def test_watched_residuals_are_not_overwritten():
    program = lower_to_program(block())
    residual = program.slots[fused_conv_with_residual(program).inputs[3]]
    seen = {}
    Executor(program).run(feeds(program), observe=lambda name, value: seen.setdefault(name, value),
                          watch=[residual])
    alone = Executor(without_inplace(program)).run(feeds(program), fetch=[residual])
    np.testing.assert_array_equal(seen[residual], alone[residual])


@pytest.mark.parametrize("case", ["output", "read later", "graph input"])
def test_residuals_still_needed_are_not_marked(case):
    program = lower_to_program(block(residual_is_output=case == "output", residual_read_later=case == "read later",
                                     residual_is_input=case == "graph input"))
    assert "inplace" not in fused_conv_with_residual(program).attrs
    inputs = feeds(program)
    saved = {k: v.copy() for k, v in inputs.items()}
    got = Executor(program, check=True).run(inputs)
    for name, value in saved.items():
        np.testing.assert_array_equal(inputs[name], value)
    assert all(np.isfinite(v).all() for v in got.values())


@pytest.mark.parametrize("depth, in_place", [(200, True), (300, False)])
def test_the_prepared_conv_writes_into_the_residual_only_over_one_reduction_block(depth, in_place):
    """Several GEMM blocks write partial sums into C before the last adds
    the residual: there the output is a fresh array."""
    program = lower_to_program(block(depth=depth))
    step = fused_conv_with_residual(program)
    assert step.attrs.get("inplace") == 3
    kernel = prepared_kernel(step.kernel, step.attrs, [program.constants.get(i) for i in step.inputs])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, depth, SIZE, SIZE)).astype(np.float32)
    residual = rng.standard_normal((1, 300, SIZE, SIZE)).astype(np.float32)
    inputs = [x] + [program.constants[i] for i in step.inputs[1:3]]
    want = kernel(inputs + [residual.copy()], {**step.attrs, "inplace": -1})[0]
    got = kernel(inputs + [residual], step.attrs)[0]
    assert np.shares_memory(got, residual) == in_place
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("k, in_place", [(256, True), (700, False)])
def test_a_packed_product_into_its_own_residual(k, in_place):
    rng = np.random.default_rng(2)
    m, n = 40, 52
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    bias, residual = rng.standard_normal(m).astype(np.float32), rng.standard_normal((m, n)).astype(np.float32)
    product = PackedProduct(pack_weights(a), n, bias, (0.0, 5.0), True)
    assert product.single_block == in_place
    fresh = product.run(b, np.empty((m, n), np.float32), residual)
    np.testing.assert_allclose(fresh, np.clip(a.astype(np.float64) @ b + bias[:, None] + residual, 0.0, 5.0),
                               rtol=1e-4, atol=1e-3)
    target = residual.copy()
    if in_place:
        product.run(b, target, target)
        np.testing.assert_array_equal(target, fresh)
    else:
        with pytest.raises(KernelError, match="overlaps"):
            product.run(b, target, target)
