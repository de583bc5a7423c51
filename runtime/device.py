"""The device backend with no card attached: the accelerator simulated.

It holds every card's DRAM (the binary's constant image at address 0,
activations after it) and one Simulator per device segment, each validating
and decoding its streams once, at Init. Running a segment quantizes each of
its inputs into DRAM (QuantizeLinear: the tensor's scale and zero point),
runs the streams, and dequantizes each output out of DRAM
(DequantizeLinear), transposing the codes where a DramTensor carries a
permutation (an edge Transpose absorbed); those kernels are the CPU path's own, so the boundary
arithmetic is the integer reference's. Everything a run needs that does not
depend on its data is prepared once per segment, when its runner is made:
each interface tensor's kernel prepared for its grid
(runtime.kernels.registry.prepares), each image's card and offset, the
simulator's run (runtime/sim/simulator.py). The simulators' cycle models give
the device time (FWDNXT's hwtime) and the per-layer estimates.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from runtime.compiled import CompiledModel, DeviceSegment, DramTensor
from runtime.errors import ExecutionError, KernelError
from runtime.isa import IsaError, decode_array
from runtime.isa.codec import stream_bytes
from runtime.kernels.quant_prepared import SAW_NAN
from runtime.kernels.registry import prepared_kernel
from runtime.segments import CODES, FINITE, INTO, Runner, Table
from runtime.sim import Simulator
from runtime.sim.forward import lowest_store
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
        self.constant = _constant_bytes(model)
        """DRAM bytes from address 0 that nothing writes after Init: where
        the simulators' CONVs may read their weights in place
        (runtime/sim/forward.py)."""
        self._simulators: list[tuple[DeviceSegment, Simulator]] = []
        self._inspected: dict[int, tuple[DeviceSegment, frozenset[str]]] = {}

    def inspected(self, segment: DeviceSegment) -> frozenset[str]:
        """The inputs of ``segment`` (whose runner was made) whose every value
        its runner inspects as it quantizes them into DRAM, in the same pass:
        a NaN or ±Inf among them goes to the table's FINITE check
        (runtime.segments.FINITE) before the device runs, so the caller need
        not scan them first (the transposed ones are quantized by the
        kernel, and not inspected)."""
        known = self._inspected.get(id(segment))
        return known[1] if known is not None and known[0] is segment else frozenset()

    def runner(self, segment: DeviceSegment) -> Runner:
        """Validate and decode the segment's streams now, and prepare its
        tensors' kernels and places; run them on each call, for every image
        of the run at its instance's card and offset."""
        simulator = Simulator(self.model.config, segment.streams, self.model.dram_size, self.constant)
        simulator.check_drams(self.drams)  # the device's own, as they stay
        self._simulators.append((segment, simulator))
        inputs = [_Edge(segment, t, "QuantizeLinear") for t in segment.inputs]
        outputs = [_Edge(segment, t, "DequantizeLinear") for t in segment.outputs]
        self._inspected[id(segment)] = (segment, frozenset(edge.name for edge in inputs if edge.into is not None))
        # per image in turn, each edge with its table's index and its codes (made once: DRAM stays where it is):
        # one loop a call, where zipping images and tables took a small run's 0.5 us
        instances = segment.instances
        writes = [(k, edge, edge.codes(self.drams[i.card], i.offset).reshape(-1))
                  for k, i in enumerate(instances) for edge in inputs]
        reads = [(k, edge, edge.codes(self.drams[i.card], i.offset))
                 for k, i in enumerate(instances) for edge in outputs]
        count = len(instances)
        after_phase = (lambda phase: self._exchange(segment, phase)) if segment.exchanges else None
        drams = self.drams

        def run(tables: list[Table]) -> None:
            if len(tables) != count:
                raise ExecutionError(f"segment {segment.name!r} runs {count} image(s) at once; got {len(tables)}")
            for k, edge, codes in writes:
                edge.write(tables[k], codes)
            if after_phase is not None:
                after_phase(-1)
            simulator.run_checked(drams, after_phase)
            for k, edge, codes in reads:
                edge.read(tables[k], codes)

        return run

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

    @cached_property
    def hwtime_ms(self) -> float:
        """Estimated accelerator time of one run, in milliseconds (FWDNXT's
        hwtime: the device only, no host transfers or CPU segments, but the
        host's copies between cards that split mode needs mid-segment; the
        inputs' broadcast to every card is a host transfer). The cycle model
        is static, so it is computed once, after Init made every runner."""
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


def _constant_bytes(model: CompiledModel) -> int:
    """The weight image's bytes below every byte a run writes into DRAM:
    the inputs the host quantizes into it, the copies between cards, the
    STOREs of every device segment (a binary is untrusted: it may write
    anywhere). Malformed streams count as writing everywhere: their
    simulator refuses them anyway."""
    low = len(model.dram_image)
    for segment in model.segments:
        if not isinstance(segment, DeviceSegment):
            continue
        for tensor in segment.inputs:
            low = min([low] + [tensor.addr + instance.offset for instance in segment.instances])
        low = min([low] + [exchange.addr for exchange in segment.exchanges])
        for data in segment.streams.values():
            try:
                low = min(low, lowest_store(decode_array(stream_bytes(data))[0]))
            except IsaError:
                return 0
    return max(low, 0)


class _Edge:
    """One interface tensor of a device segment with its kernel prepared for
    its grid: QuantizeLinear into DRAM for an input, DequantizeLinear out of
    DRAM for an output (±Inf saturates, a NaN, which a CPU segment before may
    have made, is an error naming the tensor)."""

    def __init__(self, segment: DeviceSegment, tensor: DramTensor, op: str):
        self.segment, self.tensor, self.name = segment, tensor, tensor.name
        self.scale, self.zero = np.array(tensor.scale, np.float32), np.array(tensor.zero, tensor.dtype)
        self.kernel = prepared_kernel(op, _EDGE_ATTRS, [None, self.scale, self.zero])
        self.into = getattr(self.kernel, "into", None) if not tensor.perm else None
        """The prepared kernel's pass with no checks of its parameters (the
        edge's own) and no array made, where the codes stay untransposed:
        quantization straight into DRAM, dequantization into a new array or
        the caller's (INTO)."""

    def codes(self, dram: np.ndarray, offset: int) -> np.ndarray:
        """The tensor's codes in ``dram``, at ``offset`` past its address: a
        view, in the DRAM's layout (made once: DRAM stays where it is)."""
        at, size = self.tensor.addr + offset, self.tensor.nbytes
        if at + size > dram.size:
            raise ExecutionError(f"segment {self.segment.name!r}: tensor {self.name!r} ({size} bytes at {at}) "
                                 f"leaves the DRAM's {dram.size} bytes")
        return dram[at:at + size].view(self.tensor.dtype).reshape(self.tensor.shape)

    def write(self, table: Table, flat: np.ndarray) -> None:
        """Quantize the tensor's value in ``table`` into its codes in DRAM
        (``flat``: :meth:`codes` made one-dimensional); a NaN or ±Inf in it
        goes to the table's FINITE check first, if it has one."""
        x = table[self.name]
        if self.into is not None:
            seen = self.into(x, flat)
            if seen == 0:
                return
            if seen is not None:  # (None: the kernel's to do)
                check = table.get(FINITE)
                if check is not None:
                    check(self.name, x)  # the non-finite policy's error, for a model input
                if not seen & SAW_NAN:
                    return  # ±Inf the policy takes: their codes saturated
        tensor = self.tensor
        try:
            value = self.kernel([x, self.scale, self.zero], _EDGE_ATTRS)[0]
        except KernelError as exc:
            raise ExecutionError(f"segment {self.segment.name!r}: quantizing its input {tensor.name!r}: {exc}"
                                 ) from exc
        if tensor.perm:
            value = np.ascontiguousarray(value.transpose(tensor.perm))
        if value.nbytes != flat.nbytes:  # a data-dependent CPU output the binary misdeclares
            raise ExecutionError(f"segment {self.segment.name!r}: input {tensor.name!r} came with shape "
                                 f"{list(value.shape)}; its DRAM tensor holds {list(tensor.shape)}")
        flat.view(np.uint8)[:] = value.reshape(-1).view(np.uint8)

    def read(self, table: Table, codes: np.ndarray) -> None:
        """Dequantize the tensor's ``codes`` in DRAM into ``table`` (a new
        array: the next run overwrites DRAM, not it; or the array the table
        names for it, INTO); a copy of its codes too when the table asks for
        them (CODES)."""
        tensor = self.tensor
        value = None
        if self.into is not None:
            into = table.get(INTO)
            value = into.get(self.name) if into is not None else None
            if value is None:
                value = np.empty(codes.shape, np.float32)
            if not self.into(codes, value):
                value = None
        if value is None:
            if tensor.perm:
                codes = np.ascontiguousarray(codes.transpose(tensor.perm))
            value = self.kernel([codes, self.scale, self.zero], _EDGE_ATTRS)[0]
        table[self.name] = value
        if CODES in table:
            table[CODES][self.name] = DeviceCodes(codes.copy(), tensor.scale, tensor.zero)
