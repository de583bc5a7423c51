"""Tessera's version, the one place it is written: the package's
(pyproject.toml reads it), the compiler's stamp in a binary and the
version strings the runtime's APIs report."""

VERSION = "0.1.0"
TAGGED = f"tessera-{VERSION}"
"""The version as FWDNXT's GetInfo('version') and the Inference Engine report it."""
