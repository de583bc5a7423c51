"""How Tessera's command lines (``tessera``, ``tessera-infer``) end: a user
error (any TesseraError, a FileError among them, or an OSError on a path
the user gave) is one line on standard error and exit status 1; a bug is
one line saying it is an internal error, exit status 70; Ctrl-C is one line
and 130. ``--debug`` adds the traceback to each."""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable, Sequence

from runtime.errors import TesseraError

USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 1, 70, 130
"""Exit statuses (70 is sysexits' EX_SOFTWARE; argparse exits 2 on a bad option)."""


def add_debug_flag(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """``--debug`` on ``parser``; a subcommand's (``top=False``) leaves the
    top-level value alone unless given, so it works before or after the command."""
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="on an error, print the Python traceback too")


def run_command(prog: str, body: Callable[[], int], debug: bool) -> int:
    """``body()``'s exit status, or the status and one line of the module docstring."""
    from runtime.jit import CompileReport  # the first run of a fresh install compiles its kernels: say so

    try:
        with CompileReport(prog):
            return body()
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", INTERRUPTED, debug)
    except (TesseraError, OSError) as exc:
        return _fail(prog, f"error: {describe(exc)}", USER_ERROR, debug)
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, not a wall of traceback
        hint = "" if debug else "; run again with --debug for the traceback"
        line = f"internal error (a bug in Tessera, please report it): {type(exc).__name__}: {describe(exc)}{hint}"
        return _fail(prog, line, INTERNAL_ERROR, debug)


def import_failed(prog: str, argv: Sequence[str] | None) -> int:
    """The exit status of a command whose module failed to import with the
    TesseraError being handled (its kernels are linked at import: a
    ``TESSERA_GEMM_ISA`` naming no kernel family), after one line, as any
    other error ends (``--debug``: the traceback too)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    return _fail(prog, f"error: {describe(sys.exc_info()[1])}", USER_ERROR, debug)


def describe(exc: BaseException) -> str:
    """An exception as one line: an OSError as ``path: reason``, others as their message."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    lines = [line.strip() for line in str(exc).splitlines()]
    return "; ".join(line for line in lines if line) or type(exc).__name__


def _fail(prog: str, line: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"{prog}: {line}", file=sys.stderr)
    return status
