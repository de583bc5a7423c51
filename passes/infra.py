"""Pass infrastructure, TVM-style.

A pass is a named Graph -> Graph transformation with an opt level and an
optional list of passes it requires. ``@graph_pass`` turns a function into
one; :class:`Sequential` composes passes (and is a pass itself, so pipelines
nest); :class:`PassContext` is a context manager carrying the opt level, a
typed options mapping, the disabled passes, the instruments and the lowering
passes that run a graph use (``lower``: passes sit below codegen, so the
compiler hands it in).

    @graph_pass(opt_level=1)
    def remove_identity(graph: Graph, ctx: PassContext) -> Graph:
        ...
        return graph

    with PassContext(opt_level=2, instruments=[VerifyEachPass()]):
        graph = Sequential([fold_constants, remove_identity])(graph)

Passes may edit the graph they are given in place; they return the graph
(the same object or a new one). A required pass that has not run yet in the
current context runs first, once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ir.graph import Graph, Value
from runtime.errors import TesseraError
from runtime.program import Program


class PassError(TesseraError):
    """A pass failed or left a broken graph; the message names the pass."""


@dataclass(frozen=True)
class PassInfo:
    name: str
    opt_level: int
    required: tuple[str, ...] = ()
    doc: str = ""


PassFunction = Callable[[Graph, "PassContext"], Graph]
Lowering = Callable[[Graph], tuple[Program, dict[Value, str]]]
"""A graph to the kernel Program computing it, with the slot name of every
value (codegen.cpu.lower_with_names)."""


class Pass:
    """A named graph transformation. Calling it runs it under the current
    PassContext: enabled check, required passes, instruments."""

    def __init__(self, fn: PassFunction, info: PassInfo):
        self.fn = fn
        self.info = info

    @property
    def name(self) -> str:
        return self.info.name

    def __call__(self, graph: Graph) -> Graph:
        if not _stack():  # outside any context: run in a default one
            with PassContext():
                return self(graph)
        ctx = PassContext.current()
        if not ctx.enabled(self.info):
            return graph
        for name in self.info.required:
            if name not in ctx.ran:
                graph = get_pass(name)(graph)
        if not all(inst.should_run(graph, self.info) for inst in ctx.instruments):
            return graph
        for inst in ctx.instruments:
            inst.run_before_pass(graph, self.info)
        graph = self._run(graph, ctx)
        ctx.ran.add(self.name)
        for inst in ctx.instruments:
            inst.run_after_pass(graph, self.info)
        return graph

    def _run(self, graph: Graph, ctx: PassContext) -> Graph:
        try:
            result = self.fn(graph, ctx)
        except TesseraError:
            raise
        except Exception as exc:  # a bug in the pass: say which pass
            raise PassError(f"pass {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, Graph):
            raise PassError(f"pass {self.name!r} returned {type(result).__name__}, not a Graph")
        return result

    def __repr__(self) -> str:
        return f"<Pass {self.name} opt_level={self.info.opt_level}>"


class Sequential(Pass):
    """Passes run in order; a Sequential is a pass (pipelines nest)."""

    def __init__(self, passes: Sequence[Pass], name: str = "sequential", opt_level: int = 0,
                 required: Sequence[str] = ()):
        self.passes = list(passes)
        super().__init__(self._run_all, PassInfo(name, opt_level, tuple(required)))

    def _run_all(self, graph: Graph, ctx: PassContext) -> Graph:
        for p in self.passes:
            graph = p(graph)
        return graph

    def _run(self, graph: Graph, ctx: PassContext) -> Graph:
        return self._run_all(graph, ctx)


_PASSES: dict[str, Pass] = {}


def graph_pass(fn: PassFunction | None = None, *, opt_level: int, name: str | None = None,
               required: Sequence[str] = ()) -> Pass | Callable[[PassFunction], Pass]:
    """Decorator: a function ``(graph, ctx) -> graph`` becomes a registered Pass."""
    def wrap(f: PassFunction) -> Pass:
        doc = (f.__doc__ or "").strip().split("\n\n")[0]
        p = Pass(f, PassInfo(name or f.__name__, opt_level, tuple(required), doc))
        if p.name in _PASSES:
            raise PassError(f"pass {p.name!r} is registered twice")
        _PASSES[p.name] = p
        return p
    return wrap(fn) if fn is not None else wrap


def get_pass(name: str) -> Pass:
    try:
        return _PASSES[name]
    except KeyError:
        raise PassError(f"no pass named {name!r}; the passes are {sorted(_PASSES)}") from None


def registered_passes() -> list[str]:
    return sorted(_PASSES)


# ---------------------------------------------------------------- options

@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: type
    default: Any
    doc: str


_OPTIONS: dict[str, OptionSpec] = {}


def register_option(name: str, type: type, default: Any, doc: str) -> OptionSpec:
    """Declare a PassContext option (a misspelled key is then an error)."""
    if name in _OPTIONS:
        raise PassError(f"option {name!r} is declared twice")
    spec = OptionSpec(name, type, default, doc)
    _OPTIONS[name] = spec
    return spec


def registered_options() -> dict[str, OptionSpec]:
    return dict(_OPTIONS)


def _check_option(name: str, value: Any) -> Any:
    spec = _OPTIONS.get(name)
    if spec is None:
        raise PassError(f"unknown pass option {name!r}; the options are {sorted(_OPTIONS)}")
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is tuple and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, spec.type) or (spec.type is int and isinstance(value, bool)):
        raise PassError(f"pass option {name!r} must be a {spec.type.__name__}, got {value!r}")
    return value


# ---------------------------------------------------------------- context

class PassInstrument:
    """Hooks around every pass run in a PassContext; override what you need."""

    def enter_pass_ctx(self) -> None:
        """Called when the PassContext is entered."""

    def exit_pass_ctx(self) -> None:
        """Called when the PassContext is left."""

    def should_run(self, graph: Graph, info: PassInfo) -> bool:
        return True

    def run_before_pass(self, graph: Graph, info: PassInfo) -> None:
        """Called before each pass."""

    def run_after_pass(self, graph: Graph, info: PassInfo) -> None:
        """Called after each pass."""

    def record_time(self, stage: str, seconds: float) -> None:
        """Called with the seconds of a stage that is not a pass (the import,
        part of a pass such as calibration's float runs, code generation)."""


@dataclass
class PassContext:
    """Opt level, typed options, disabled passes, instruments and the
    lowering for the passes run inside ``with PassContext(...):``."""

    opt_level: int = 2
    options: dict[str, Any] = field(default_factory=dict)
    disabled: Iterable[str] = ()
    required: Iterable[str] = ()
    instruments: Sequence[PassInstrument] = ()
    lower: Lowering | None = None
    """How a pass that must run the graph (calibration, bias correction)
    turns it into a kernel Program; None: such a pass says it needs one."""

    def __post_init__(self):
        self.options = {k: _check_option(k, v) for k, v in dict(self.options).items()}
        self.disabled = frozenset(self.disabled)
        self.required = frozenset(self.required)
        self.instruments = list(self.instruments)
        self.ran: set[str] = set()

    def option(self, name: str) -> Any:
        """The value of a declared option (its default when not set)."""
        if name not in _OPTIONS:
            raise PassError(f"unknown pass option {name!r}; the options are {sorted(_OPTIONS)}")
        return self.options.get(name, _OPTIONS[name].default)

    def lowering(self, why: str) -> Lowering:
        """``lower``, or an error saying that ``why`` needs it."""
        if self.lower is None:
            raise PassError(f"{why} runs the graph on the CPU kernels: give the PassContext a lowering "
                            "(PassContext(lower=codegen.cpu.lower_with_names), as compiler/ does)")
        return self.lower

    def enabled(self, info: PassInfo) -> bool:
        if info.name in self.disabled:
            return False
        return info.name in self.required or self.opt_level >= info.opt_level

    def __enter__(self) -> PassContext:
        _stack().append(self)
        for inst in self.instruments:
            inst.enter_pass_ctx()
        return self

    def __exit__(self, *exc) -> None:
        for inst in self.instruments:
            inst.exit_pass_ctx()
        _stack().pop()

    def record_time(self, stage: str, seconds: float) -> None:
        """Report a stage's seconds to the instruments (PassInstrument.record_time)."""
        for inst in self.instruments:
            inst.record_time(stage, seconds)

    @staticmethod
    def current() -> PassContext:
        """The innermost active context (a fresh default one outside any ``with``)."""
        stack = _stack()
        return stack[-1] if stack else PassContext()


_local = threading.local()


def _stack() -> list[PassContext]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack
