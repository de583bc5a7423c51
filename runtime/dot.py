"""Graphviz DOT strings that hold any text safely: the one escaping helper
for every DOT file Tessera writes (``tessera show --dot`` through ir/dot.py,
the Inference Engine's HETERO_DUMP_GRAPH_DOT), whose names come from models.

A backslash and a double quote are escaped, a line break becomes DOT's
``\\n`` (a new line in a label), and any other character that is not
printable (NUL, a carriage return, a tab, a lone surrogate) is shown as its
Python escape (``\\x00``), so no model name can end a string, a statement or
the file early, or make the file fail to encode as UTF-8.
"""
from __future__ import annotations


def quote(text: str) -> str:
    """A DOT double-quoted string that shows ``text`` (the module docstring)."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape", "backslashreplace").decode("ascii").replace("\\", "\\\\"))
    return '"' + "".join(out) + '"'
