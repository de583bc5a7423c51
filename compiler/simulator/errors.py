"""The Simulator API's error."""
from runtime.errors import TesseraError


class SimulatorError(TesseraError):
    """A Simulator call cannot be done as asked: a data file that does not
    fit the model, a tensor the model does not have, a feed of the wrong
    shape; the message names the file, tensor or input at fault."""
