"""Imported first by compiler/__init__.py: before the compiler imports ir,
passes, codegen and runtime, check that each is Tessera's and not another
distribution's package of the same name (runtime/packages.py), so that a
clash fails here, naming the path and the distribution, instead of as an
odd error deep inside an import."""
import importlib.util

RUNTIME_MARKER = "TESSERA_PACKAGE = True"
"""runtime.packages.MARKER, for when 'runtime' itself is not Tessera's (then that module is not there)."""

try:
    from runtime.packages import check_packages
except ImportError as error:
    spec = importlib.util.find_spec("runtime")
    origin = spec.origin if spec is not None and spec.has_location else None
    try:
        ours = origin is not None and RUNTIME_MARKER in open(origin, encoding="utf-8").read().splitlines()
    except OSError:
        ours = False
    if ours:  # Tessera's runtime failed to import for a reason of its own
        raise
    raise ImportError(f"Tessera's compiler needs Tessera's runtime package, but 'runtime' resolves to {origin} "
                      f"({error}); another distribution or a folder on sys.path owns that name: uninstall it, "
                      "or give Tessera a virtual environment of its own") from error

check_packages()
