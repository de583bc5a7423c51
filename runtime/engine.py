"""Running a compiled model end to end: accelerator segments on the device
backend (the simulator, as there is no card here), CPU segments on the CPU
executor, quantize/dequantize at the boundaries.

The host keeps one table of named float32 tensors. For a device segment it
quantizes each input into the card's DRAM (QuantizeLinear: the tensor's
scale and zero point), runs the segment's streams, and dequantizes each
output from DRAM (DequantizeLinear); the kernels are the CPU path's own, so
the boundary arithmetic is the integer reference's. Everything is prepared
once at construction (Init): DRAM holds the weights image, streams are
validated and decoded, kernel programs resolved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from runtime.compiled import CompiledModel, CpuSegment, DeviceSegment
from runtime.errors import ExecutionError
from runtime.executor import Executor
from runtime.kernels import get_kernel
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


class Engine:
    """A loaded CompiledModel, ready to run many times (not thread-safe:
    one run at a time per Engine, as the device's DRAM is shared state)."""

    def __init__(self, model: CompiledModel, check: bool = False):
        self.model = model
        image = np.frombuffer(model.dram_image, np.uint8)
        self.drams = [np.zeros(model.dram_size, np.uint8) for _ in range(model.config.cards)]
        for dram in self.drams:
            dram[:image.size] = image
        self._runners = []
        for segment in model.segments:
            if isinstance(segment, DeviceSegment):
                self._runners.append(Simulator(model.config, segment.streams, model.dram_size))
            else:
                self._runners.append(Executor(segment.program, check=check))
        self._reference = Executor(model.reference, check=check) if model.reference is not None else None
        self._quantize, self._dequantize = get_kernel("QuantizeLinear"), get_kernel("DequantizeLinear")
        self._grids = {t: (np.array(t.scale, np.float32), np.array(t.zero, t.dtype))
                       for s in model.device_segments for t in (*s.inputs, *s.outputs)}

    # ------------------------------------------------------------ running
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for ``feeds`` (input name -> float32 array)."""
        table = self._inputs(feeds)
        for segment, runner in zip(self.model.segments, self._runners):
            if isinstance(segment, DeviceSegment):
                self._run_device(segment, runner, table)
            else:
                self._run_cpu(segment, runner, table)
        return {t.name: table[t.name] for t in self.model.outputs}

    def run_reference(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The float reference program's outputs (FWDNXT's Run_th)."""
        if self._reference is None:
            raise ExecutionError("this binary was compiled without the float reference program "
                                 "(strip_reference); Run_th needs it")
        program = self._reference.program
        missing = [t.name for t in self.model.outputs if t.name not in program.output_names]
        if missing:
            raise ExecutionError(f"the float reference program does not compute the model outputs {missing}")
        table = self._inputs(feeds)
        return self._reference.run({n: table[n] for n in program.input_names})

    def _inputs(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        table = {}
        for spec in self.model.inputs:
            if spec.name not in feeds:
                raise ExecutionError(f"missing input {spec.name!r}; the inputs are "
                                     f"{[t.name for t in self.model.inputs]}")
            array = np.asarray(feeds[spec.name])
            if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
                raise ExecutionError(f"input {spec.name!r} must be {spec.dtype}{list(spec.shape)}, got "
                                     f"{array.dtype}{list(array.shape)}")
            table[spec.name] = array
        return table

    def _run_cpu(self, segment: CpuSegment, executor: Executor, table: dict) -> None:
        program = segment.program
        results = executor.run(dict(zip(program.input_names, (table[n] for n in segment.inputs))))
        table.update(zip(segment.outputs, (results[n] for n in program.output_names)))

    def _run_device(self, segment: DeviceSegment, simulator: Simulator, table: dict) -> None:
        dram = self.drams[0]
        for tensor in segment.inputs:
            codes = self._quantize([table[tensor.name], *self._grids[tensor]], _EDGE_ATTRS)[0]
            dram[tensor.addr:tensor.addr + tensor.nbytes] = codes.reshape(-1).view(np.uint8)
        simulator.run(self.drams)
        for tensor in segment.outputs:
            codes = dram[tensor.addr:tensor.addr + tensor.nbytes].view(tensor.dtype).reshape(tensor.shape)
            table[tensor.name] = self._dequantize([codes, *self._grids[tensor]], _EDGE_ATTRS)[0]

    # ------------------------------------------------------------ timing
    def simulators(self) -> list[Simulator]:
        return [r for r in self._runners if isinstance(r, Simulator)]

    @property
    def hwtime_ms(self) -> float:
        """Estimated accelerator time of one run, in milliseconds (FWDNXT's
        hwtime: the device only, no host transfers or CPU segments)."""
        return float(sum(s.timing.hwtime_ms for s in self.simulators()))

    @property
    def efficiency(self) -> float:
        """MACs done over the MACs the clusters used could do in hwtime."""
        sims = self.simulators()
        cycles = sum(s.timing.total_cycles for s in sims)
        if not cycles:
            return 0.0
        return float(sum(s.timing.efficiency * s.timing.total_cycles for s in sims) / cycles)

    @property
    def instructions(self) -> int:
        """Instructions one run executes on the device."""
        return int(sum(s.instructions for s in self.simulators()))

    def layer_times(self) -> list[LayerTime]:
        """Estimated cycles of every accelerator layer, in program order."""
        out = []
        for segment, runner in zip(self.model.segments, self._runners):
            if isinstance(segment, DeviceSegment):
                for layer in segment.layers:
                    cycles = runner.timing.range_cycles(layer.stream, layer.start, layer.stop)
                    out.append(LayerTime(layer.name, layer.op, layer.onnx_nodes, int(cycles), layer.macs))
        return out
