"""Calls from one jitted function to another that do not link the callee's
code into the caller.

When a Numba function calls another, Numba links the callee's whole
compiled module (and its callees', down the tree) into the caller's and
optimises and generates machine code for all of it again: a caller costs
as much to compile as its whole call tree. A team driver
(:mod:`runtime.parallel`) is ten lines, but compiling one took a second,
its kernel's compilation done over again (15 drivers, 10 s of a cold
``tessera run``).

``call_unlinked(fn, args)`` in jitted code calls ``fn(*args)`` through its
address instead. Typing the call compiles ``fn`` for these argument types
as a direct call would; the caller's module then gets, per call site, a
64-bit *slot* the call reads the address from, and the callee's name and
argument types as JSON (:func:`encode_type`) beside it. Machine code cannot
hold the address itself: a cached kernel is loaded in another process,
where the callee sits elsewhere. So whenever a Tessera function's compiled
code joins its dispatcher, compiled or loaded from the kernel cache
(:func:`watch`, which :func:`runtime.jit.jit` installs), its slots are
filled: each callee compiled or loaded for its recorded types, its address
written in. A function making such calls may itself be linked into another
(a direct call): its slots are copied into the caller's module, where the
caller's own filling finds them. A slot still empty when called raises
RuntimeError instead of jumping to address 0.

A record names its callee by module and qualified name, looked up among the
dispatchers :func:`watch` was given (the caller's module imported the
callee's before any of its code could run), never imported. Callees it
cannot record (a function :func:`watch` was not given, types other than
arrays, scalars and tuples of them) are called the ordinary way, linked.
The team drivers call their kernels this way.
"""
from __future__ import annotations

import ctypes
import json

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

SLOT = "tessera.callee."
"""Prefix of a slot's symbol (``<prefix><caller's symbol>.<site>``); its
record is the same name with :data:`RECORD` after it."""
RECORD = ".record"


# ---------------------------------------------------------------- argument types as JSON
def encode_type(t) -> list | None:
    """A Numba argument type as JSON (arrays, scalars, literals, tuples of
    them), or None for any other kind."""
    if isinstance(t, types.Array):
        return ["array", str(t.dtype), t.ndim, t.layout, bool(not t.mutable)]
    if isinstance(t, types.UniTuple):
        inner = encode_type(t.dtype)
        return None if inner is None else ["unituple", inner, t.count]
    if isinstance(t, types.Tuple):
        inner = [encode_type(x) for x in t.types]
        return None if None in inner else ["tuple", inner]
    if isinstance(t, (types.IntegerLiteral, types.BooleanLiteral)):
        return ["literal", t.literal_value]
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return ["scalar", str(t)]
    return None


def decode_type(data):
    """The Numba type :func:`encode_type` wrote (ValueError on anything else)."""
    kind = data[0] if isinstance(data, list) and data else None
    if kind == "array" and len(data) == 5 and data[3] in ("C", "F", "A") and isinstance(data[2], int):
        return types.Array(_scalar(data[1]), data[2], data[3], readonly=bool(data[4]))
    if kind == "unituple" and len(data) == 3 and isinstance(data[2], int):
        return types.UniTuple(decode_type(data[1]), data[2])
    if kind == "tuple" and len(data) == 2 and isinstance(data[1], list):
        return types.Tuple([decode_type(x) for x in data[1]])
    if kind == "literal" and len(data) == 2 and isinstance(data[1], (bool, int)):
        return types.literal(data[1])
    if kind == "scalar" and len(data) == 2:
        return _scalar(data[1])
    raise ValueError(f"not a kernel argument type: {data!r}")


def _scalar(name):
    scalar = getattr(types, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(scalar, (types.Integer, types.Float, types.Boolean)):
        raise ValueError(f"not a scalar type: {name!r}")
    return scalar


# ---------------------------------------------------------------- the call (jitted code)
def _key(dispatcher) -> tuple[str, str]:
    return dispatcher.py_func.__module__, dispatcher.py_func.__qualname__


_watched: dict[tuple[str, str], object] = {}
"""The dispatchers :func:`watch` was given, by (module, qualified name):
where a slot's record finds its callee (a name looked up, never imported)."""


def _record(fn: types.Dispatcher, args: tuple) -> bytes | None:
    """What a slot's filler needs to find the callee again: its module,
    name and argument types, or None where they cannot be written down or
    do not name it (a function :func:`watch` was not given)."""
    encoded = [encode_type(t) for t in args]
    if None in encoded or _watched.get(_key(fn.dispatcher)) is not fn.dispatcher:
        return None
    return json.dumps([*_key(fn.dispatcher), encoded], separators=(",", ":")).encode()


@intrinsic
def call_unlinked(typingctx, fn, arguments):
    """``fn(*arguments)`` through the address in a slot of the caller's
    module (the module docstring); ``fn`` is a jitted function. (A tuple, not
    ``*args``: a call's star arguments make Numba build a tuple starting with
    ``fn``, which it reads as a first-class function and warns about.)"""
    if not isinstance(fn, types.Dispatcher) or not isinstance(arguments, types.BaseTuple):
        return None
    args = tuple(arguments)
    callee = typingctx.resolve_function_type(fn, args, {})  # compiles fn for these types, as a call would
    if callee is None or tuple(callee.args) != args:
        return None
    record = _record(fn, args)
    sig = callee.return_type(fn, arguments)

    def codegen(context, builder, signature, llargs):
        values = cgutils.unpack_tuple(builder, llargs[1])
        if record is None:  # linked, as an ordinary call
            return context.get_function(fn, callee)(builder, values)
        module, prefix = builder.module, f"{SLOT}{builder.function.name}."
        site = sum(1 for name in module.globals if name.startswith(prefix) and not name.endswith(RECORD))
        name = f"{prefix}{site}"
        slot = ir.GlobalVariable(module, ir.IntType(64), name)
        slot.initializer = ir.Constant(ir.IntType(64), 0)
        text = record + b"\0"
        kept = ir.GlobalVariable(module, ir.ArrayType(ir.IntType(8), len(text)), name + RECORD)
        kept.initializer = ir.Constant(ir.ArrayType(ir.IntType(8), len(text)), bytearray(text))
        kept.global_constant = True
        # one definition however often the caller is linked into another (a diamond: two of that one's callees
        # both link this caller), as Numba's own functions are
        slot.linkage = kept.linkage = "weak_odr"
        address = builder.load(slot)
        with cgutils.if_unlikely(builder, cgutils.is_null(builder, address)):
            context.call_conv.return_user_exc(
                builder, RuntimeError, (f"the address of {fn.dispatcher.py_func.__qualname__} was never filled in "
                                        "(runtime.unlinked)",))
        target = builder.inttoptr(address, context.call_conv.get_function_type(callee.return_type,
                                                                               callee.args).as_pointer())
        status, result = context.call_conv.call_function(builder, target, callee.return_type, callee.args, values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return result

    return sig, codegen


# ---------------------------------------------------------------- filling the slots (Python)
def _slots(library) -> list[str]:
    """The slots a compiled library defines."""
    module = library._shared_module if library._shared_module is not None else library._final_module
    return [g.name for g in module.global_variables
            if g.name.startswith(SLOT) and not g.name.endswith(RECORD) and not g.is_declaration]


def _address(library, name: str) -> int:
    engine = library._codegen._engine
    return engine._ee.get_global_value_address(name) if engine.is_symbol_defined(name) else 0


def fill(library) -> None:
    """Write each callee's address into the slots of ``library`` (a compiled
    or cache-loaded overload's), compiling or loading the callee as needed."""
    for name in _slots(library):
        slot, at = _address(library, name), _address(library, name + RECORD)
        if not slot or not at:
            continue
        module, qualname, encoded = json.loads(ctypes.string_at(at).decode())
        fn = _watched.get((module, qualname))
        if fn is None:  # not defined in this process: the slot stays empty and its call raises
            continue
        args = tuple(decode_type(t) for t in encoded)
        fn.compile(args)
        cres = fn.overloads[args]
        ctypes.c_int64.from_address(slot).value = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


def watch(dispatcher):
    """Have ``dispatcher`` fill the slots of each overload it gains
    (compiled or loaded) before the overload can be called, and be a
    callee that slots can name."""
    _watched[_key(dispatcher)] = dispatcher
    add = dispatcher.add_overload

    def add_overload(cres):
        if not cres.objectmode:
            fill(cres.library)
        add(cres)

    dispatcher.add_overload = add_overload
    return dispatcher
