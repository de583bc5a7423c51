"""The compile pipeline in one place: which passes run, in which order, with
which options. Read this file to see the whole compile at a glance.

    import (compiler/frontend)
    -> SIMPLIFY       canonicalise and fold
    -> QUANTIZATION   the float rewrites before calibration, the searches deciding the quantize pass's options
    -> QUANTIZE       PLACE (affinity, fuse, partition), then quantize the accelerator segments
    -> PLAN           distribute over clusters, tile, plan memory
    -> codegen        (codegen/device, codegen/cpu; compiler/build.py)

compiler/quantize.py runs SIMPLIFY, QUANTIZATION and QUANTIZE with the
options of a compiler.quant_config.QuantConfig; compiler/compile.py adds
PLAN and code generation (compiler/build.py).

Affinity comes before fusion (ARCHITECTURE.md has it after): FuseOps never
fuses nodes of different devices, so a group never drags a supported op to
the CPU with an unsupported neighbour, and quantization (later) sees which
nodes run on the accelerator.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from compiler.apply_encodings import apply_encodings
from compiler.range_choice import choose_ranges
from compiler.sensitivity import promote_sensitive
from compiler.target_snr import reach_target_snr
from ir.graph import Graph
from passes.affinity import assign_affinity
from passes.canonicalize_linear import canonicalize_linear
from passes.canonicalize_mean import canonicalize_mean
from passes.canonicalize_sum import canonicalize_sum
from passes.dce import eliminate_dead_code
from passes.distribute import distribute
from passes.fold_affine import fold_affine
from passes.fold_batchnorm import fold_batchnorm
from passes.fold_constants import fold_constants
from passes.fold_pad import fold_pad
from passes.fuse_ops import fuse_ops
from passes.infra import PassContext, PassInstrument, Sequential
from passes.layout import layout
from passes.lower_lrn import lower_lrn
from passes.partition import partition
from passes.plan_memory import plan_memory
from passes.prune_conv_taps import prune_conv_taps
from passes.quant.equalize import absorb_bias, equalize
from passes.quant.extract_qdq import extract_qdq
from passes.quant.head_grids import head_grids
from passes.quant.quantize import quantize
from passes.remove_noops import remove_noops
from passes.simplify_inference import simplify_inference
from passes.tile import tile

SIMPLIFY = Sequential([
    extract_qdq,          # a pre-quantized model's Q/DQ pairs -> quantization parameters of its tensors
    fold_constants,       # shape subgraphs and constant expressions, through the kernels
    canonicalize_sum,     # n-ary Sum -> a chain of binary Adds (the residual adds of zoo ResNets)
    remove_noops,         # Identity, Dropout, no-op Reshape/Transpose/Cast/Pad
    layout,               # Transposes sink through layout-agnostic ops and cancel (NHWC exports)
    canonicalize_mean,    # ReduceMean over H and W -> GlobalAveragePool (torchvision's x.mean([2, 3]))
    fold_pad,             # Pad before Conv -> Conv pads
    fold_batchnorm,       # BatchNorm after Conv/ConvTranspose/Gemm -> weights and bias
    fold_affine,          # per-channel Mul/Add after Conv/BatchNorm -> weights and bias
    simplify_inference,   # the BatchNorms left -> per-channel Mul + Add
    canonicalize_linear,  # MatMul/Gemm with constant weights -> Gemm(x, W[N,K], b), transB=1
    remove_noops,         # what the rewrites above left behind
    eliminate_dead_code,
], name="simplify")

OPTIMIZE = Sequential([
    SIMPLIFY,
    prune_conv_taps,      # kernel taps that meet only padding (3x3 convs of 1x1 maps) -> smaller kernels
    fuse_ops,
], name="optimize")
"""The float CPU path of compiler.backend. Pruning taps stays out of SIMPLIFY,
which the device pipeline shares: there it runs after the affinity pass, on
the host's layers (a smaller kernel changes a layer's cost, and so what the
policy places where). Run_th's reference program and the Simulator API's
float runs prune too, so every API gives the same bits (docs/passes.md)."""

PLACE = Sequential([
    assign_affinity,      # HETERO policy: first device of partition.fallback that supports the node
    prune_conv_taps,      # the host's convolutions, as OPTIMIZE's (the accelerator's keep their kernels)
    lower_lrn,            # accelerator LRNs -> x*x, a 1x1 window-sum Conv, a table, a Mul
    fuse_ops,             # never across devices
    partition,            # cycle-free single-device Segment nodes; tiny device islands back to the CPU
], name="place")

PARTITION = Sequential([SIMPLIFY, PLACE], name="partition_pipeline")

QUANTIZATION = Sequential([
    apply_encodings,      # an encodings file: its head groups, weight grids and settings (quant.encodings)
    equalize,             # cross-layer equalization of convolution pairs (quant.equalize)
    absorb_bias,          # always-positive channel floors into the next layer's bias (quant.absorb_bias)
    head_grids,           # a model output of several quantities: a grid per group of channels (quant.head_grids)
    choose_ranges,        # calibrator 'auto': each tensor's range method by its error at the outputs
    promote_sensitive,    # sensitivity=k: the k layers adding the most error to 16 bits (quant.layer_precision)
    reach_target_snr,     # target_snr: layers to 16 bits until every output's SNR reaches it
], name="quantization")
"""On the simplified float graph, before it is placed: the float rewrites
(the float reference keeps them), then the searches, which try options
with QUANTIZE (the PassContext's ``quant.trials``) and leave the ones they
choose in the context's options for the QUANTIZE that follows."""

QUANTIZE = Sequential([
    PLACE,
    quantize,             # accelerator segments -> integer Q ops, calibrated (calibration data, calibrator, mode)
], name="place_and_quantize")
"""A copy of the float graph after QUANTIZATION, placed and quantized."""

PLAN = Sequential([
    distribute,           # split mode: how each accelerator layer divides over a card's clusters (device.placement)
    tile,                 # each accelerator layer's tiles for the hardware config (target.hardware)
    plan_memory,          # each accelerator segment's activations placed in DRAM
], name="plan")
"""After quantization: the decisions device code generation follows."""


def optimize(graph: Graph, *, opt_level: int = 2, options: Mapping[str, Any] | None = None,
             disabled: Iterable[str] = (), instruments: Sequence[PassInstrument] = ()) -> Graph:
    """Simplify and fuse (in place), for the float CPU path; returns the graph."""
    with PassContext(opt_level=opt_level, options=dict(options or {}), disabled=disabled,
                     instruments=instruments):
        return OPTIMIZE(graph)


def partition_graph(graph: Graph, *, opt_level: int = 2, options: Mapping[str, Any] | None = None,
                    disabled: Iterable[str] = (), instruments: Sequence[PassInstrument] = ()) -> Graph:
    """Simplify, assign affinities, fuse and partition into device segments."""
    with PassContext(opt_level=opt_level, options=dict(options or {}), disabled=disabled,
                     instruments=instruments):
        return PARTITION(graph)
