"""Compiling a model with dynamic input dims once per input signature.

A model whose inputs have symbolic dims (``['batch', 3, 'height', 'width']``,
PaddlePaddle's -1) cannot be compiled before its input shapes are known:
whoever runs it takes the shapes from the data, checks them against the
model's fixed dims (:func:`input_signature`), and keeps what it compiled for
each signature in a small LRU cache (:class:`SignatureCache`), so running
again with the same shapes compiles nothing. compiler.backend (an IR program
per signature) and the Simulator API (a quantized model per signature) both
work this way.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Mapping, Sequence, TypeVar

from compiler.errors import ModelImportError
from compiler.frontend.shapes import DeclaredDim, merge_input_shape

CACHE_SIZE = 8
"""Input signatures whose compiled form a cache keeps by default."""

Signature = tuple[tuple[int, ...], ...]
"""The shapes of a model's inputs, in input order."""

Compiled = TypeVar("Compiled")


def input_signature(dims: Mapping[str, Sequence[DeclaredDim] | None], shapes: Mapping[str, Sequence[int]],
                    label: str | None = None) -> Signature:
    """The ``shapes`` given for every input of ``dims`` (name -> declared
    dims), in input order, each checked against its input's rank, fixed dims
    and the element limit: the ModelImportError names the input, the dim and
    ``label`` (the model's file)."""
    signature = []
    for name, declared in dims.items():
        shape = tuple(int(d) for d in shapes[name])
        try:
            merge_input_shape(name, declared, shape)
        except ModelImportError as exc:
            raise ModelImportError(exc.reason, file=label) from None
        signature.append(shape)
    return tuple(signature)


def fixed_signature(dims: Mapping[str, Sequence[DeclaredDim] | None]) -> Signature | None:
    """The one signature of a model whose input dims are all fixed, else None."""
    if any(d is None or not all(isinstance(x, int) for x in d) for d in dims.values()):
        return None
    return tuple(tuple(d) for d in dims.values())


class SignatureCache(Generic[Compiled]):
    """What ``build(signature)`` gives, for the ``size`` signatures used
    last (least recently used first out)."""

    def __init__(self, build: Callable[[Signature], Compiled], size: int = CACHE_SIZE):
        if size < 1:
            raise ValueError(f"cache_size={size} must be at least 1")
        self.build, self.size = build, size
        self._cache: OrderedDict[Signature, Compiled] = OrderedDict()
        self.latest: Compiled | None = None
        """What the latest :meth:`get` returned."""

    @property
    def signatures(self) -> list[Signature]:
        """The signatures held, least recently used first."""
        return list(self._cache)

    def get(self, signature: Signature) -> Compiled:
        """The compiled form of ``signature``: cached, or built now."""
        compiled = self.cached(signature)
        if compiled is None:
            compiled = self.build(signature)
            self._cache[signature] = compiled
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
            self.latest = compiled
        return compiled

    def cached(self, signature) -> Compiled | None:
        """The compiled form of ``signature`` if it is cached (now the most
        recently used), else None: a signature met before was checked then,
        so a run with the same shapes needs no check again."""
        compiled = self._cache.get(signature)
        if compiled is not None:
            self._cache.move_to_end(signature)
            self.latest = compiled
        return compiled
