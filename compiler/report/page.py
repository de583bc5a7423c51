"""The compile report's HTML: one self-contained page, the report data
embedded as JSON, the hand-written stylesheet and script (assets/) inlined,
nothing fetched from anywhere.

The data holds names from an untrusted binary: in the JSON every ``<``
becomes ``\\u003c`` (so no name can close the script element or open a
comment in it), and the page's script puts text into the page as text.
A first, separate script records any script error into ``<pre
id="errors">`` so that a headless browser's DOM dump shows it.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Mapping

ASSETS = Path(__file__).resolve().parent / "assets"

ERROR_HOOK = """\
window.onerror = function (message, source, line) {
  var pre = document.getElementById("errors");
  pre.hidden = false;
  pre.textContent += "error: " + message + (line ? " (line " + line + ")" : "") + "\\n";
};
window.addEventListener("unhandledrejection", function (event) {
  window.onerror("unhandled rejection: " + (event.reason && event.reason.message || event.reason));
});"""

TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
@CSS@</style>
</head>
<body>
<pre id="errors" hidden></pre>
<script>
@HOOK@
</script>
<header></header>
<nav><a href="#top">Summary</a><a href="#graph">Placement</a><a href="#schedule">Schedule</a>\
<a href="#layers">Layers</a><a href="#quality">Quantization fidelity</a>\
<a href="#metadata">Binary and metadata</a></nav>
<main><div id="top"></div></main>
<div id="tip"></div>
<script type="application/json" id="report-data">@DATA@</script>
<script>
@JS@</script>
</body>
</html>
"""


def embedded_json(data: Mapping[str, Any]) -> str:
    """``data`` as compact JSON safe inside a script element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False).replace("<", "\\u003c")


def render_page(data: Mapping[str, Any]) -> str:
    """The report page of the gathered ``data`` (compiler.report.gather)."""
    title = f"{data['model'].get('source') or data['file']['name']} — Tessera compile report"
    parts = {"@TITLE@": html.escape(str(title)), "@CSS@": _asset("report.css"), "@HOOK@": ERROR_HOOK,
             "@JS@": _asset("report.js")}
    page = TEMPLATE
    for marker, text in parts.items():
        page = page.replace(marker, text)
    return page.replace("@DATA@", embedded_json(data))  # last: the data is never searched for markers


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


__all__ = ["embedded_json", "render_page"]
