"""The pieces of LLVM IR text the depthwise kernels' generators share
(runtime.kernels.depthwise_text, runtime.kernels.depthwise_phased,
runtime.kernels.depthwise_blocks_text): a splat, a constant vector, a
(masked) load, a tap's column mask, an input row's tap loads and the
clamp."""
from __future__ import annotations


def splat(name: str, value: str, lanes: int, kind: str) -> list[str]:
    """``%{name}``: ``value`` (of type ``kind``) in each of ``lanes`` lanes."""
    return [f"  %{name}.i = insertelement <{lanes} x {kind}> poison, {kind} {value}, i64 0",
            f"  %{name} = shufflevector <{lanes} x {kind}> %{name}.i, <{lanes} x {kind}> poison, "
            f"<{lanes} x i32> zeroinitializer"]


def splat_i64(name: str, value: str, lanes: int) -> list[str]:
    """``%{name}``: the i64 ``value`` as i32 in each of ``lanes`` lanes."""
    return [f"  %{name}.t = trunc i64 {value} to i32", *splat(name, f"%{name}.t", lanes, "i32")]


def constant(values, kind: str = "i32") -> str:
    """A constant vector of ``values``."""
    return "<" + ", ".join(f"{kind} {v}" for v in values) + ">"


def masked_load(n: int, at: str, out: str, mask: str | None) -> str:
    """``out`` = the ``n`` floats at ``at``: a masked load of the lanes of
    ``mask`` (the others zero), or a plain load where ``mask`` is None."""
    if mask is None:
        return f"  {out} = load <{n} x float>, ptr {at}, align 4"
    return (f"  {out} = call <{n} x float> @llvm.masked.load.v{n}f32.p0(ptr {at}, i32 4, <{n} x i1> {mask}, "
            f"<{n} x float> zeroinitializer)")


def tap_mask(b: str, kw: int, lanes: int, width: str, first: str, shift: int) -> list[str]:
    """``%{b}mk{kw}``: the lanes ``i`` of a block whose column ``first + i +
    shift`` lies in ``[0, w)``, where ``width`` is a splat of ``w - first``
    and ``first`` one of the block's first column (int32 vectors of
    ``lanes``): ``i < w - first - shift``, and ``i >= -shift - first`` where
    ``shift`` is negative (no left edge to check otherwise)."""
    index = constant(range(lanes))
    below = f"%{b}mk{kw}" if shift >= 0 else f"%{b}up{kw}"
    lines = [f"  %{b}hi{kw} = sub <{lanes} x i32> {width}, {constant([shift] * lanes)}",
             f"  {below} = icmp slt <{lanes} x i32> {index}, %{b}hi{kw}"]
    if shift < 0:
        lines += [f"  %{b}lo{kw} = sub <{lanes} x i32> {constant([-shift] * lanes)}, {first}",
                  f"  %{b}dn{kw} = icmp sge <{lanes} x i32> {index}, %{b}lo{kw}",
                  f"  %{b}mk{kw} = and <{lanes} x i1> %{b}up{kw}, %{b}dn{kw}"]
    return lines


def tap_loads(v: int, q: str, b: str, j: int, ksize: int, masked: bool, where) -> tuple[list[str], list[str]]:
    """Input row ``j`` of a block (named with the body's prefix ``b``; the
    block's with ``q``): one load a tap of ``V`` columns from ``ox +
    shift`` of the row at ``%{q}base{suffix}{j}``, ``(suffix, shift) =
    where(kw)``, masked by the tap's mask where ``masked``. Returns the
    lines and the taps' vectors."""
    lines, taps = [], []
    for kw in range(ksize):
        suffix, shift = where(kw)
        t = f"{b}{j}_{kw}"
        lines += [f"  %o{t} = add i64 %{q}ox, {shift}",
                  f"  %p{t} = getelementptr float, ptr %{q}base{suffix}{j}, i64 %o{t}",
                  masked_load(v, f"%p{t}", f"%a{t}", f"%{b}mk{kw}" if masked else None)]
        taps.append(f"%a{t}")
    return lines, taps


def clamp(v: int, o: str, value: str | None = None) -> list[str]:
    """``%out{o}``: ``value`` (``%sum{o}`` by default), ``v`` lanes, clamped
    to [``%lov``, ``%hiv``] as numpy's maximum, then minimum (NaN stays NaN)."""
    vec = f"<{v} x float>"
    value = f"%sum{o}" if value is None else value
    return [f"  %ge{o} = fcmp uge {vec} {value}, %lov",
            f"  %up{o} = select <{v} x i1> %ge{o}, {vec} {value}, {vec} %lov",
            f"  %le{o} = fcmp ule {vec} %up{o}, %hiv",
            f"  %out{o} = select <{v} x i1> %le{o}, {vec} %up{o}, {vec} %hiv"]
