"""Instruction streams from layers of tile jobs, with the dependency tokens
that let loads, compute and stores overlap.

A layer is a list of :class:`Job`: the LOADs that bring one tile's operands
on chip, the COMPUTE instructions on them, and the STOREs of its result
(none for the partial passes of a split reduction). Jobs alternate between
two input slots and (the storing ones) two output slots, so LOAD fills slot
i+1 while COMPUTE works on slot i and STORE drains the previous result
(double buffering, docs/isa.md "a double-buffered convolution"):

- a job's loads wait (pop_next) until COMPUTE has finished job i-2, the last
  user of the slot they fill, and the last one pushes (push_next) "tile ready";
- its first compute pops that token; the compute writing the output slot
  waits (pop_next) until STORE has drained storing job o-2; the last compute
  frees the input slot (push_prev) and hands the output to STORE (push_next);
- its first store pops, and the last frees the output slot (push_prev).

A move (codegen/device/moves.py) computes nothing: its job LOADs a box into
one slot, a NOP_COMPUTE passes the tokens and STORE writes the same slot
back (``in_place``). Job i's compute then waits for STORE to drain job i-1
and frees that slot for job i+1's loads, so LOAD fills one slot while STORE
drains the other.

Between layers a barrier orders DRAM: the last STORE of a layer pushes, a
NOP_COMPUTE passes the token on, and the next layer's first LOAD pops it, so
every tensor is in DRAM before a later layer reads it and every on-chip slot
is free again. In split mode (:meth:`StreamBuilder.sync`) a SYNC takes the
NOP_COMPUTE's place: it waits for the stream's last STORE, meets the other
clusters' streams at the barrier and only then releases the next layer's
first LOAD, so what every cluster stored is in DRAM before any cluster reads
it. Tokens are pushed only where a pop will take them, so each queue is
empty at END.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from runtime.compiled import Layer
from runtime.isa import Instruction, Op, StreamKey, Token, encode_stream, instr


@dataclass
class Job:
    loads: list[Instruction] = field(default_factory=list)
    computes: list[Instruction] = field(default_factory=list)
    stores: list[Instruction] = field(default_factory=list)


def _flag(ins: Instruction, flag: Token) -> None:
    ins.flags = Token(ins.flags | flag)


class StreamBuilder:
    """Collects the layers of one stream and records each layer's
    instruction range (provenance)."""

    def __init__(self, key: StreamKey = StreamKey(0, 0, 0)):
        self.key = key
        self.instructions: list[Instruction] = []
        self.layers: list[Layer] = []
        self._stored = False
        """The last layer's last STORE pushed a token COMPUTE has not taken."""
        self._released = False
        """COMPUTE pushed a token (a barrier passed) the next LOAD must take."""

    def add_layer(self, name: str, op: str, onnx_nodes: tuple[str, ...], jobs: list[Job], macs: int = 0,
                  in_place: bool = False) -> None:
        """Append one layer's jobs with their tokens; ``in_place``: each job
        stores from the slot its loads fill (a move: the compute is a NOP)."""
        if not jobs:
            return
        start = len(self.instructions)
        if self._stored:
            self._release(instr(Op.NOP_COMPUTE, Token.POP_NEXT))
        gated, self._released = self._released, False
        for i, job in enumerate(jobs):
            if not job.loads or not job.computes or (in_place and not job.stores):
                raise ValueError(f"layer {name!r}: job {i} needs at least one load and one compute"
                                 f"{' and one store' if in_place else ''}")
            if i >= 2 or (i == 0 and gated):
                _flag(job.loads[0], Token.POP_NEXT)
            _flag(job.loads[-1], Token.PUSH_NEXT)
            _flag(job.computes[0], Token.POP_PREV)
        (self._in_place if in_place else self._double_buffered)(jobs)
        for job in jobs:
            self.instructions += job.loads + job.computes + job.stores
        storing = [job for job in jobs if job.stores]
        if storing:
            _flag(storing[-1].stores[-1], Token.PUSH_PREV)
            self._stored = True
        self.layers.append(Layer(name, op, tuple(onnx_nodes), self.key, start, len(self.instructions), macs))

    @staticmethod
    def _double_buffered(jobs: list[Job]) -> None:
        """Separate input and output slots: a job's last compute frees its
        input slot for job i+2 and waits for storing job o-2 to drain its
        output slot."""
        n = len(jobs)
        storing = [i for i, job in enumerate(jobs) if job.stores]
        order = {i: o for o, i in enumerate(storing)}
        for i, job in enumerate(jobs):
            if i + 2 < n:
                _flag(job.computes[-1], Token.PUSH_PREV)
            if job.stores:
                o = order[i]
                if o >= 2:
                    _flag(job.computes[-1], Token.POP_NEXT)
                _flag(job.computes[-1], Token.PUSH_NEXT)
                _flag(job.stores[0], Token.POP_PREV)
                if o + 2 < len(storing):
                    _flag(job.stores[-1], Token.PUSH_PREV)

    @staticmethod
    def _in_place(jobs: list[Job]) -> None:
        """One slot per job, read by its STOREs: the slot of job i-1 is free
        once STORE has drained it, so job i's compute waits for that store
        and then frees the slot for job i+1's loads."""
        n = len(jobs)
        for i, job in enumerate(jobs):
            if i >= 1:
                _flag(job.computes[0], Token.POP_NEXT)
                if i + 1 < n:
                    _flag(job.computes[-1], Token.PUSH_PREV)
            _flag(job.computes[-1], Token.PUSH_NEXT)
            _flag(job.stores[0], Token.POP_PREV)
            if i + 1 < n:
                _flag(job.stores[-1], Token.PUSH_PREV)

    def sync(self, barrier: int, participants: int) -> None:
        """A barrier with the other streams of the phase: after this stream's
        last STORE, meet ``participants`` streams at ``barrier``; the next
        layer's loads start after it (docs/isa.md SYNC)."""
        self._release(instr(Op.SYNC, Token.POP_NEXT if self._stored else 0, barrier=barrier,
                            participants=participants))

    def _release(self, ins: Instruction) -> None:
        """Append a COMPUTE instruction that releases the next LOAD (taking
        the pending STORE token where ``ins`` pops one); a release no LOAD
        has taken yet is taken first by a NOP_LOAD, so LOAD waits for the
        latest."""
        if self._released:
            self.instructions.append(instr(Op.NOP_LOAD, Token.POP_NEXT))
        _flag(ins, Token.PUSH_PREV)
        self.instructions.append(ins)
        self._stored, self._released = False, True

    def finish(self) -> bytes:
        """The stream's bytes, END included (pending tokens are taken by a
        last NOP_COMPUTE or NOP_LOAD so every queue is empty)."""
        if self._stored:
            self.instructions.append(instr(Op.NOP_COMPUTE, Token.POP_NEXT))
            self._stored = False
        if self._released:
            self.instructions.append(instr(Op.NOP_LOAD, Token.POP_NEXT))
            self._released = False
        self.instructions.append(instr(Op.END))
        return encode_stream(self.instructions)
