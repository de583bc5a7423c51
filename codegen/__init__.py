"""Code generation: IR -> CPU kernel programs (and, later, device binaries)."""
from codegen.cpu import lower_to_program

__all__ = ["lower_to_program"]
