"""The device backend with no card attached: the accelerator simulated.

It holds every card's DRAM (the binary's constant image at address 0,
activations after it) and one Simulator per device segment, each validating
and decoding its streams once, at Init. Running a segment quantizes each of
its inputs into DRAM (QuantizeLinear: the tensor's scale and zero point),
runs the streams, and dequantizes each output out of DRAM
(DequantizeLinear), transposing the codes where a DramTensor carries a
permutation (an edge Transpose absorbed); those kernels are the CPU path's own, so the boundary
arithmetic is the integer reference's. The simulators' cycle models give
the device time (FWDNXT's hwtime) and the per-layer estimates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.compiled import CompiledModel, DeviceSegment, Instance
from runtime.errors import ExecutionError, KernelError
from runtime.kernels import get_kernel
from runtime.segments import CODES, Runner, Table
from runtime.sim import Simulator
from runtime.sim.timing import exchange_cycles
from runtime.timeline import DeviceTimeline, device_timeline

_EDGE_ATTRS = {"axis": 1, "block_size": 0, "output_dtype": None, "precision": None}


@dataclass(frozen=True)
class DeviceCodes:
    """A tensor as the device left it in DRAM: integer ``codes`` (in the
    tensor's host order) on the grid ``value = scale * (codes - zero)``, for
    APIs that hand out fixed-point data (kp's fixed nodes)."""

    codes: np.ndarray
    scale: float
    zero: int


@dataclass(frozen=True)
class LayerTime:
    """One accelerator layer's share of the estimated device time."""

    name: str
    op: str
    onnx_nodes: tuple[str, ...]
    cycles: int
    macs: int


class SimulatedDevice:
    """The cards of a compiled model, simulated (not thread-safe: DRAM is shared state)."""

    def __init__(self, model: CompiledModel):
        self.model = model
        image = np.frombuffer(model.dram_image, np.uint8)
        self.drams = [np.zeros(model.dram_size, np.uint8) for _ in range(model.config.cards)]
        for dram in self.drams:
            dram[:image.size] = image
        self._simulators: list[tuple[DeviceSegment, Simulator]] = []
        self._quantize, self._dequantize = get_kernel("QuantizeLinear"), get_kernel("DequantizeLinear")

    def runner(self, segment: DeviceSegment) -> Runner:
        """Validate and decode the segment's streams now; run them on each
        call, for every image of the run at its instance's card and offset."""
        simulator = Simulator(self.model.config, segment.streams, self.model.dram_size)
        self._simulators.append((segment, simulator))
        grids = {t: (np.array(t.scale, np.float32), np.array(t.zero, t.dtype)) for t in (*segment.inputs,
                                                                                         *segment.outputs)}

        def run(tables: list[Table]) -> None:
            if len(tables) != len(segment.instances):
                raise ExecutionError(f"segment {segment.name!r} runs {len(segment.instances)} image(s) at once; "
                                     f"got {len(tables)}")
            for table, instance in zip(tables, segment.instances):
                self._write_inputs(segment, table, instance, grids)
            self._exchange(segment, -1)
            simulator.run(self.drams, after_phase=lambda phase: self._exchange(segment, phase))
            for table, instance in zip(tables, segment.instances):
                self._read_outputs(segment, table, instance, grids)

        return run

    def _write_inputs(self, segment: DeviceSegment, table: Table, instance: Instance, grids) -> None:
        """Quantize one image's inputs into its card's DRAM (QuantizeLinear:
        ±Inf saturates, a NaN, which a CPU segment before may have made, is an
        error naming the tensor)."""
        dram = self.drams[instance.card]
        for tensor in segment.inputs:
            try:
                codes = self._quantize([table[tensor.name], *grids[tensor]], _EDGE_ATTRS)[0]
            except KernelError as exc:
                raise ExecutionError(f"segment {segment.name!r}: quantizing its input {tensor.name!r}: {exc}") from exc
            if tensor.perm:
                codes = np.ascontiguousarray(codes.transpose(tensor.perm))
            if codes.nbytes != tensor.nbytes:  # a data-dependent CPU output the binary misdeclares
                raise ExecutionError(f"segment {segment.name!r}: input {tensor.name!r} came with shape "
                                     f"{list(codes.shape)}; its DRAM tensor holds {list(tensor.shape)}")
            at = tensor.addr + instance.offset
            dram[at:at + tensor.nbytes] = codes.reshape(-1).view(np.uint8)

    def _read_outputs(self, segment: DeviceSegment, table: Table, instance: Instance, grids) -> None:
        """Dequantize one image's outputs out of its card's DRAM (DequantizeLinear);
        keep a copy of their codes too when the table asks for them (CODES)."""
        dram = self.drams[instance.card]
        for tensor in segment.outputs:
            at = tensor.addr + instance.offset
            codes = dram[at:at + tensor.nbytes].view(tensor.dtype).reshape(tensor.shape)
            if tensor.perm:
                codes = np.ascontiguousarray(codes.transpose(tensor.perm))
            table[tensor.name] = self._dequantize([codes, *grids[tensor]], _EDGE_ATTRS)[0]
            if CODES in table:
                table[CODES][tensor.name] = DeviceCodes(codes.copy(), tensor.scale, tensor.zero)

    def _exchange(self, segment: DeviceSegment, phase: int) -> None:
        """The host's copies after ``phase`` (-1: before the first, the
        inputs' broadcast): each card's part of a tensor to every other card
        (split mode across cards)."""
        for exchange in segment.exchanges:
            if exchange.phase != phase:
                continue
            source = self.drams[exchange.card]
            for box in range(exchange.count):
                at = exchange.addr + box * exchange.stride
                for card, dram in enumerate(self.drams):
                    if card != exchange.card:
                        dram[at:at + exchange.size] = source[at:at + exchange.size]

    # ------------------------------------------------------------ timing
    @property
    def simulators(self) -> list[Simulator]:
        """One per device segment, in execution order."""
        return [s for _, s in self._simulators]

    @property
    def hwtime_ms(self) -> float:
        """Estimated accelerator time of one run, in milliseconds (FWDNXT's
        hwtime: the device only, no host transfers or CPU segments, but the
        host's copies between cards that split mode needs mid-segment; the
        inputs' broadcast to every card is a host transfer)."""
        config = self.model.config
        return float(sum(s.timing.hwtime_ms + exchange_cycles([e for e in seg.exchanges if e.phase >= 0], config)
                         / config.clock_hz * 1e3
                         for seg, s in self._simulators))

    @property
    def efficiency(self) -> float:
        """MACs done over the MACs the clusters used could do in hwtime."""
        sims = self.simulators
        cycles = sum(s.timing.total_cycles for s in sims)
        if not cycles:
            return 0.0
        return float(sum(s.timing.efficiency * s.timing.total_cycles for s in sims) / cycles)

    def cluster_activity(self) -> dict[tuple[int, int], dict[str, int]]:
        """Per (card, cluster): cycles of MAC, vector, DMA and barrier-wait
        work over every device segment (runtime.sim.timing.stream_activity)."""
        out: dict[tuple[int, int], dict[str, int]] = {}
        for simulator in self.simulators:
            for key, activity in simulator.timing.activity.items():
                mine = out.setdefault((key.card, key.cluster), dict.fromkeys(activity, 0))
                for what, cycles in activity.items():
                    mine[what] += cycles
        return out

    @property
    def instructions(self) -> int:
        """Instructions one run executes on the device."""
        return int(sum(s.instructions for s in self.simulators))

    def timeline(self) -> DeviceTimeline:
        """One run's modelled timeline: every cluster's modules and the host
        link, span by span, ending at hwtime (runtime/timeline.py)."""
        return device_timeline(self.model.config, self._simulators)

    def layer_times(self) -> list[LayerTime]:
        """Estimated cycles of every accelerator layer, in program order."""
        return [LayerTime(layer.name, layer.op, layer.onnx_nodes,
                          int(simulator.timing.range_cycles(layer.stream, layer.start, layer.stop)), layer.macs)
                for segment, simulator in self._simulators for layer in segment.layers]
