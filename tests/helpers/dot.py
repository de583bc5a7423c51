"""A small reader of the Graphviz DOT Tessera writes, for tests (no Graphviz
here): its tokens, checked against what DOT allows, and the text each
quoted string shows."""
from __future__ import annotations

import re

TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|->|[{}\[\];=,]|[A-Za-z0-9_.]+', re.S)


def tokens(text: str) -> list[str]:
    """The tokens of a whole ``digraph``: an AssertionError at anything DOT
    does not allow there (an unterminated string, a stray character, a
    control character inside a string, braces that do not balance)."""
    out, at = [], 0
    while at < len(text):
        match = TOKEN.match(text, at)
        assert match, f"not DOT at offset {at}: {text[at:at + 40]!r}"
        if not match.group().isspace():
            out.append(match.group())
        at = match.end()
    assert out[:1] == ["digraph"] and out[2] == "{" and out[-1] == "}", out[:3]
    depth = 0
    for index, token in enumerate(out[2:], 2):
        depth += {"{": 1, "}": -1}.get(token, 0)
        assert depth > 0 or index == len(out) - 1, f"the graph closes early, at token {index}"
        assert not token.startswith('"') or not re.search(r"[\x00-\x1f\x7f]", token), token
    assert depth == 0
    return out


def shown(token: str) -> str:
    """What a quoted DOT string shows in a label: ``\\"`` and ``\\\\``
    unescaped, ``\\n`` a line break."""
    assert len(token) >= 2 and token[0] == token[-1] == '"', token
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], token[1:-1])


def labels(toks: list[str]) -> list[str]:
    """The text of every ``label=`` in order."""
    return [shown(toks[i + 2]) for i, token in enumerate(toks[:-2]) if token == "label" and toks[i + 1] == "="]
