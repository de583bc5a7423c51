"""The compile report: one self-contained HTML page that shows what Tessera
knows about a compiled model, for a browser rather than a terminal.

    from compiler.report import write_report
    write_report("model.bin")                                 # writes model.html beside it
    write_report("model.bin", "out.html", diagnosis="diag.json")

or ``tessera report model.bin [-o out.html] [--diagnosis diag.json]``. The
page shows the layers in program order (accelerator or CPU, fused groups,
each CPU node's reason and rule), per layer the estimated cycles, MAC use,
DRAM traffic and precision, the cards' and clusters' schedule as a Gantt
chart, each output's SNR and each layer's share of the output error where
they are recorded, and the binary's metadata (docs/report.md).

gather.py collects the data from the binary (layers.py, schedule.py,
quality.py, metadata.py each one part of it); page.py renders it with the
stylesheet and script in assets/.
"""
from __future__ import annotations

import os
from pathlib import Path

from compiler.report.gather import gather_report
from compiler.report.page import render_page
from runtime.files import write_atomic


def default_output(binary_path: str | os.PathLike) -> Path:
    """Where the report of ``binary_path`` goes by default: beside it, as
    NAME.html (NAME.html.html for a binary named NAME.html: never over the binary)."""
    path = Path(binary_path)
    return path.with_name(path.name + ".html") if path.suffix == ".html" else path.with_suffix(".html")


def write_report(binary_path: str | os.PathLike, out_path: str | os.PathLike | None = None,
                 diagnosis: str | os.PathLike | None = None) -> Path:
    """Write the report of the binary at ``binary_path`` to ``out_path``
    (default: :func:`default_output`), atomically; ``diagnosis``: a diagnosis
    JSON file (``tessera quantize --report FILE.json``) for the layers' shares
    of the output error. Returns the path written."""
    target = Path(out_path) if out_path is not None else default_output(binary_path)
    write_atomic(target, render_page(gather_report(binary_path, diagnosis)))
    return target


__all__ = ["default_output", "gather_report", "render_page", "write_report"]
