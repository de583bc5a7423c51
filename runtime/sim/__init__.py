"""The accelerator simulator: executes instruction streams bit-exactly per
docs/isa.md and estimates cycles (docs/simulator.md).

``Simulator(config, streams, dram_bytes_used)`` validates and decodes the
streams once and computes the static schedule (``timing``); ``run(drams)``
executes them on one DRAM image per card. The package: ``simulator``
(planning and running), ``schedule`` (the event simulation), ``timing`` (the
cycle model and the report), ``interpreter`` (the Numba loop), and the
kernels ``dma``, ``conv``, ``vector`` with ``memory`` and ``params``.
"""
from runtime.sim.errors import SimulatorError
from runtime.sim.simulator import Simulator
from runtime.sim.timing import Timing

__all__ = ["Simulator", "SimulatorError", "Timing"]
