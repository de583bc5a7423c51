"""A compiled model as data: what codegen produces, the binary stores and the
runtime runs.

A :class:`CompiledModel` is the model's segments in execution order. A
:class:`CpuSegment` is a kernel Program for the CPU executor; a
:class:`DeviceSegment` is instruction streams for the accelerator with the
quantized tensors it exchanges with the host: the host quantizes each input
(QuantizeLinear semantics, the tensor's scale and zero point) into DRAM at
the tensor's address, the streams run, and the host dequantizes each output
from DRAM. Tensors crossing between segments live in one table of named
float32 values, like :mod:`runtime.segments`.

DRAM holds, on every card, ``dram_image`` at address 0 (packed weights, PARAM
records, lookup tables) followed by the activations, ``dram_size`` bytes in
all. Every object here is plain data (numbers, strings, bytes, numpy arrays,
kernel Programs), so the binary can hold it without pickle.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from runtime.hardware import HardwareConfig
from runtime.isa import StreamKey
from runtime.program import Program

FORMAT_DTYPES = ("float32", "int8", "int16", "int32", "int64", "uint8", "bool")
"""Element types a tensor at the host interface may have."""


@dataclass(frozen=True)
class HostTensor:
    """A tensor the host sees: a model input or output (float32 as a rule)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class DramTensor:
    """A quantized tensor in a card's DRAM: dense row-major codes of ``dtype``
    and ``shape`` at byte address ``addr``; the real value is
    ``scale * (code - zero)``. ``perm``, when given, is a Transpose the host
    applies to the codes on their way: a segment input's codes go into DRAM
    as ``codes.transpose(perm)``, a segment output's come out as
    ``dram.transpose(perm)`` (an NHWC model's edge Transpose costs no device
    pass)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    addr: int
    scale: float
    zero: int
    perm: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Instance:
    """One image of a batch run on the device: the card whose DRAM holds it
    and the byte offset added to the segment's interface addresses (each
    instance has its own activation region; the weights image is shared)."""

    card: int = 0
    offset: int = 0


@dataclass(frozen=True)
class Exchange:
    """A copy the host makes between two phases of a segment split across
    cards (the ISA has no DMA between cards): after phase ``phase``, the
    ``count`` boxes of ``size`` bytes every ``stride`` bytes from ``addr`` on
    ``card`` (the part of a tensor that card computed) go to the same
    addresses of every other card."""

    phase: int
    card: int
    addr: int
    size: int
    count: int = 1
    stride: int = 0

    @property
    def nbytes(self) -> int:
        return self.size * self.count


@dataclass(frozen=True)
class Layer:
    """Provenance of one lowered layer (a fused group): its instructions are
    ``[start, stop)`` of the stream ``stream``; ``onnx_nodes`` are the ONNX
    nodes it computes; ``macs`` its multiply-accumulates."""

    name: str
    op: str
    onnx_nodes: tuple[str, ...]
    stream: StreamKey
    start: int
    stop: int
    macs: int = 0


@dataclass
class DeviceSegment:
    """Accelerator work: ``streams`` (64-byte instructions, ending with END)
    by (card, cluster, phase), phases local to the segment and run in order;
    ``inputs`` are quantized by the host into DRAM, ``outputs`` read back and
    dequantized (their names are those of the float tensors in the model's
    table), at each instance's card and offset."""

    name: str
    inputs: list[DramTensor]
    outputs: list[DramTensor]
    streams: dict[StreamKey, bytes]
    layers: list[Layer] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=lambda: [Instance()])
    """The images of one run (batch mode: one per cluster, card and
    imgs_per_cluster; split mode and single-cluster code: one)."""
    exchanges: list[Exchange] = field(default_factory=list)
    """The host's copies between phases (split mode across cards)."""


@dataclass
class CpuSegment:
    """Host work: a kernel Program; ``inputs``/``outputs`` name, in the model's
    table of tensors, the program's inputs and outputs in order."""

    name: str
    program: Program
    inputs: list[str]
    outputs: list[str]


Segment = Union[DeviceSegment, CpuSegment]


@dataclass
class CompiledModel:
    """Everything Init needs: the hardware config the code was generated
    for, the model interface, the segments in execution order, the DRAM
    image and size, and optionally the float reference program (Run_th).
    ``metadata`` is JSON-ready information (source model, compile options,
    compiler version, nlayers)."""

    config: HardwareConfig
    inputs: list[HostTensor]
    outputs: list[HostTensor]
    segments: list[Segment]
    dram_image: bytes
    dram_size: int
    reference: Program | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    batch: int = 1
    """Images per run: numcard x numclus x imgs_per_cluster in batch mode, 1
    in split mode (every device segment has this many instances)."""

    @property
    def device_segments(self) -> list[DeviceSegment]:
        return [s for s in self.segments if isinstance(s, DeviceSegment)]

    @property
    def layers(self) -> list[Layer]:
        return [layer for s in self.device_segments for layer in s.layers]

    def output_counts(self) -> int | tuple[int, ...]:
        """FWDNXT's Compile/Init result: the number of output values of one
        run (every image of the batch), a tuple when the model has several
        outputs (shared/reference/api-notes.md 1.5)."""
        counts = tuple(int(np.prod(t.shape, dtype=np.int64)) * self.batch for t in self.outputs)
        return counts[0] if len(counts) == 1 else counts
