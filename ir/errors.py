"""Errors raised by the IR: building, shape inference and verification."""
from runtime.errors import TesseraError


class IRError(TesseraError):
    """A graph was built or edited in a way the IR does not allow."""


class ShapeError(IRError):
    """An op's type rule rejected its inputs or attributes."""

    def __init__(self, message: str, op: str | None = None, node: str | None = None):
        where = f"{op} node {node!r}" if node else (op or "")
        super().__init__(f"{where}: {message}" if where else message)
        self.op, self.node, self.reason = op, node, message


class VerificationError(IRError):
    """The verifier found broken invariants; ``problems`` lists each one."""

    def __init__(self, problems: list[str], graph: str = "graph"):
        lines = "\n  ".join(problems)
        super().__init__(f"{graph} failed verification ({len(problems)} problem(s)):\n  {lines}")
        self.problems = problems
