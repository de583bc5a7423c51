"""Error types shared by every layer.

Every error Tessera raises on purpose derives from :class:`TesseraError`, so a
caller can tell "the model or input is bad" from a bug. Each message names the
thing at fault (file, node, field)."""


class TesseraError(Exception):
    """Base class of every error Tessera raises on purpose."""


class KernelError(TesseraError):
    """A CPU kernel was given inputs or attributes it cannot run on."""


class ExecutionError(TesseraError):
    """Running a program failed; the message names the step (node) at fault."""

    def __init__(self, message: str, node: str | None = None):
        super().__init__(f"node {node!r}: {message}" if node else message)
        self.node = node
