"""The simulator's error type."""
from runtime.errors import TesseraError


class SimulatorError(TesseraError):
    """A program cannot be simulated: it failed validation, or a value read at
    run time (a PARAM record) is illegal; the message names the stream key,
    the instruction index and its opcode."""
