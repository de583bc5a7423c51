"""Seeded mutations the fuzz campaigns share: bytes (flip, overwrite,
insert, delete, truncate), integers and floats pushed to boundary values,
and edits of JSON documents. Every function takes a numpy Generator, so a
case is reproducible from its seed."""
from __future__ import annotations

import copy

import numpy as np

BOUNDARY_INTS = (0, 1, -1, 2, 3, 7, 8, 15, 16, 63, 64, 65, 255, 256, 65535, 65536, (1 << 31) - 1, 1 << 31,
                 -(1 << 31), -(1 << 31) - 1, (1 << 32) - 1, 1 << 32, 1 << 40, 10**12, (1 << 63) - 1, -(1 << 63))
BOUNDARY_FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 1e-38, 3.4e38, -3.4e38, 1e300, float("inf"), float("-inf"),
                   float("nan"))
BYTE_MUTATIONS = ("flip", "overwrite", "insert", "delete", "truncate", "boundary")


def pick(rng: np.random.Generator, items):
    """One of ``items`` (a sequence), uniformly."""
    return items[int(rng.integers(len(items)))]


def boundary_int(rng: np.random.Generator, near: int | None = None) -> int:
    """A boundary integer, or (half the time, given ``near``) one close to ``near``."""
    if near is not None and rng.random() < 0.5:
        return int(near) + int(pick(rng, (-65, -2, -1, 1, 2, 64))) if rng.random() < 0.7 else -int(near)
    return int(pick(rng, BOUNDARY_INTS))


def boundary_float(rng: np.random.Generator) -> float:
    return float(pick(rng, BOUNDARY_FLOATS))


def mutate_bytes(rng: np.random.Generator, data: bytes, kind: str | None = None) -> bytes:
    """``data`` with one byte-level mutation (``kind`` or a random one)."""
    out = bytearray(data)
    kind = kind or pick(rng, BYTE_MUTATIONS)
    if not out:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
    at = int(rng.integers(len(out)))
    if kind == "flip":
        out[at] ^= 1 << int(rng.integers(8))
    elif kind == "overwrite":
        out[at:at + 16] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    elif kind == "insert":
        out[at:at] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    elif kind == "delete":
        del out[at:at + int(rng.integers(1, 65))]
    elif kind == "truncate":
        del out[at:]
    else:
        width = int(pick(rng, (1, 2, 4, 8)))
        value = boundary_int(rng) & ((1 << (8 * width)) - 1)
        out[at:at + width] = value.to_bytes(width, "little")
    return bytes(out)


# ---------------------------------------------------------------- JSON
def json_places(document) -> list[tuple]:
    """Every (container, key) of a JSON document, depth first."""
    places, pending = [], [document]
    while pending:
        node = pending.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            places.append((node, key))
            if isinstance(node[key], (dict, list)):
                pending.append(node[key])
    return places


def json_value(rng: np.random.Generator, old=None):
    """A hostile or nearby JSON value (``old`` the value it replaces)."""
    choice = int(rng.integers(9))
    if choice == 0 and isinstance(old, int) and not isinstance(old, bool):
        return boundary_int(rng, old)
    return [None, True, boundary_int(rng), boundary_float(rng), "", "x" * int(rng.integers(1, 9)),
            pick(rng, ("float32", "int8", "int16", "uint8", "cpu", "device", "Relu", "FusedElementwise", "add",
                       "image", "probabilities")),
            [int(v) for v in rng.integers(-2, 70, int(rng.integers(0, 5)))],
            pick(rng, ({}, {"array": 0}, {"scalar": 0}, {"program": {}}, [[]]))][choice]


def tweak_json(rng: np.random.Generator, document) -> None:
    """Change one place of ``document`` in place: replace or nudge a value,
    delete a key or item, duplicate an item, or swap two items."""
    places = json_places(document)
    if not places:
        return
    node, key = pick(rng, places)
    action = pick(rng, ("replace", "replace", "delete", "duplicate", "swap"))
    if action == "delete":
        del node[key]
    elif action == "duplicate" and isinstance(node, list):
        node.insert(key, copy.deepcopy(node[key]))
    elif action == "swap" and isinstance(node, list) and len(node) > 1:
        other = int(rng.integers(len(node)))
        node[key], node[other] = node[other], node[key]
    else:
        node[key] = copy.deepcopy(json_value(rng, node[key]))
