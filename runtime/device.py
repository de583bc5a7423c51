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

from runtime.compiled import CompiledModel, DeviceSegment
from runtime.kernels import get_kernel
from runtime.segments import Runner, Table
from runtime.sim import Simulator

_EDGE_ATTRS = {"axis": 1, "block_size": 0, "output_dtype": None, "precision": None}


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
        """Validate and decode the segment's streams now; run them on each call."""
        simulator = Simulator(self.model.config, segment.streams, self.model.dram_size)
        self._simulators.append((segment, simulator))
        grids = {t: (np.array(t.scale, np.float32), np.array(t.zero, t.dtype)) for t in (*segment.inputs,
                                                                                         *segment.outputs)}
        dram = self.drams[0]

        def run(table: Table) -> None:
            for tensor in segment.inputs:
                codes = self._quantize([table[tensor.name], *grids[tensor]], _EDGE_ATTRS)[0]
                if tensor.perm:
                    codes = np.ascontiguousarray(codes.transpose(tensor.perm))
                dram[tensor.addr:tensor.addr + tensor.nbytes] = codes.reshape(-1).view(np.uint8)
            simulator.run(self.drams)
            for tensor in segment.outputs:
                codes = dram[tensor.addr:tensor.addr + tensor.nbytes].view(tensor.dtype).reshape(tensor.shape)
                if tensor.perm:
                    codes = np.ascontiguousarray(codes.transpose(tensor.perm))
                table[tensor.name] = self._dequantize([codes, *grids[tensor]], _EDGE_ATTRS)[0]

        return run

    # ------------------------------------------------------------ timing
    @property
    def simulators(self) -> list[Simulator]:
        """One per device segment, in execution order."""
        return [s for _, s in self._simulators]

    @property
    def hwtime_ms(self) -> float:
        """Estimated accelerator time of one run, in milliseconds (FWDNXT's
        hwtime: the device only, no host transfers or CPU segments)."""
        return float(sum(s.timing.hwtime_ms for s in self.simulators))

    @property
    def efficiency(self) -> float:
        """MACs done over the MACs the clusters used could do in hwtime."""
        sims = self.simulators
        cycles = sum(s.timing.total_cycles for s in sims)
        if not cycles:
            return 0.0
        return float(sum(s.timing.efficiency * s.timing.total_cycles for s in sims) / cycles)

    @property
    def instructions(self) -> int:
        """Instructions one run executes on the device."""
        return int(sum(s.instructions for s in self.simulators))

    def layer_times(self) -> list[LayerTime]:
        """Estimated cycles of every accelerator layer, in program order."""
        return [LayerTime(layer.name, layer.op, layer.onnx_nodes,
                          int(simulator.timing.range_cycles(layer.stream, layer.start, layer.stop)), layer.macs)
                for segment, simulator in self._simulators for layer in segment.layers]
