"""GEMM kernel families: the tile shapes and instructions a family of
microkernels uses (:class:`Isa`), and which family this CPU runs (:func:`host_isa`)."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import llvmlite.binding as llvm

from runtime.errors import KernelError

UNIT = 8
"""Tile widths (and packed B panel widths) are multiples of 8 lanes."""

KINDS = ("f32", "u8s8")

@dataclass(frozen=True)
class Isa:
    """A kernel family: tiles of ``mr`` rows and up to ``nr`` lanes built
    from vectors of at most ``vw`` lanes, whether ``vpdpbusd`` is there, and
    the LLVM target to compile for."""

    name: str
    vw: int
    mr: int
    nr: int
    vnni: bool
    cpu: str
    features: str
    vbmi: bool = False
    """Whether AVX512-VBMI's byte permutes are there (runtime/sim/bytevec.py)."""
    remainder_panels: int = 0
    """Row panels a float remainder kernel takes at once (0: the family has
    none), fewer for wide remainders (:func:`remainder_group`)."""
    remainder_cols: int = 0
    """Ragged last column panels this narrow (1 to this many columns) use a
    remainder kernel: A's steps as vectors along the rows, every lane
    useful, where a tile ``UNIT`` wide would leave lanes empty."""
    wide_tail: int = 0
    """How many columns past ``nr`` (1 to this, at most ``remainder_cols``)
    a last column panel may carry in one ``nr + t``-wide float kernel
    instead of a panel for a remainder kernel (0: never). Needs remainder
    kernels (``remainder_panels``), which keep the narrower rests."""
    tall_panels: int = 0
    """Row panels a float tile one ``UNIT`` wide takes at once (0: one, the
    plain tile). Where ``mr`` rows of one vector are too few independent
    multiply-add chains to cover the FMA latency (AVX2: 4 chains, where two
    FMA units with a latency of 4 cycles need 8), a product with a narrow
    last column panel (N = 4: a 2 x 2 output plane; N = 196: 8 panels of 24
    and 4 columns) runs at half speed; two panels at once give 8 chains."""

    def vectors(self, width: int) -> tuple[int, ...]:
        """The vector widths making up one tile row ``width`` lanes wide."""
        return (self.vw,) * (width // self.vw) + ((UNIT,) if width % self.vw else ())


    @property
    def a_words(self) -> int:
        """32-bit words a row of a packed int8 A panel takes per step (four
        ``k``): 1 where ``vpdpbusd`` multiplies the four bytes as they are,
        2 without VNNI, where the kernels multiply 16-bit pairs
        (``pmaddwd``) and the packers split each word of A in advance into
        its even bytes (k, k + 2) and its odd ones (k + 1, k + 3), each
        sign-extended to 16 bits (:func:`runtime.gemm.pack.split_a_lanes`).
        The weights are packed once and kept, so the kernel's inner loop no
        longer spends three shifts a row and step on them (AVX2, Zen 3: the
        4 x 24 tile 8.0 -> 5.4-6.2 ns a step)."""
        return a_words("u8s8", self.vnni)


def a_words(kind: str, vnni: bool) -> int:
    """4-byte words a row of ``kind``'s packed A takes per step: 2 for
    int8 without VNNI (:attr:`Isa.a_words`), else 1. The one rule the
    packers, the plans and the kernels' IR all follow."""
    return 2 if kind == "u8s8" and not vnni else 1


EMULATED = {
    "avx512bw": ("skylake-avx512", False),
    "avx512vnni": ("cascadelake", True),
}
"""Intel AVX-512 families an AVX-512 host can run as that CPU would, by
``TESSERA_GEMM_ISA``: the LLVM CPU the kernels are compiled for and whether
it has VNNI. Skylake-SP (``avx512bw``) has neither VNNI nor VBMI (its int8
kernels multiply 16-bit pairs, its byte tables are ``vpshufb``s); Cascade
Lake (``avx512vnni``), the common cloud Intel host, has VNNI and no VBMI.
The kernels are compiled for that CPU's features only, so no instruction
it lacks (a VBMI byte permute LLVM might pick for a shuffle) gets in."""
_AVX512_CORE = "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+avx512f,+avx512cd,+avx512bw,+avx512dq,+avx512vl"
FORCED = os.environ.get("TESSERA_GEMM_ISA", "").lower()
"""``TESSERA_GEMM_ISA``: ``avx2`` runs the AVX2 family (Zen 3, Haswell on)
on an AVX-512 host; ``avx512bw`` and ``avx512vnni`` the :data:`EMULATED`
Intel families; unset, the host's own. Numba's own code follows
``NUMBA_CPU_NAME`` (with ``NUMBA_CPU_FEATURES=""``: that CPU's features):
docs/runtime.md, "Kernel families"."""


@functools.cache
def host_isa(forced: str = FORCED) -> Isa:
    """The best kernel family for this CPU, asked once per process: AVX-512
    with BW (every AVX-512 server CPU since Skylake-SP; the int8 kernels
    need its 16-bit multiplies where VNNI is missing) (32 registers: 8 x 48
    tiles, 24 accumulators) or AVX2 + FMA (16
    registers: 4 x 24 tiles, 12 accumulators). Both have remainder kernels
    for a last column panel of a few columns (AVX2: 1 to 3; AVX-512: 1 to
    4, where the 4 columns of a 2 x 2 output plane left half of an 8-lane
    tile's lanes empty: ResNet-10's 2 x 2 layers at 32 x 32): on AVX2, 4 row
    panels at once (measured on Zen 3, one thread: a 512 x 4608 by 4608 x
    49 product 3.35 -> 2.69 ms, against 2.51 ms for 48 columns; 2 and 8
    panels at once did less well). On AVX-512 the 8 x 48 kernel also comes
    with 1 to 3 extra columns (``wide_tail``): its 24 accumulators leave
    registers for them, so N = 49 (the 7 x 7 planes) reads A once, not
    twice (see the wide kernels in :mod:`runtime.gemm.microkernel_ir`).
    ``forced`` is :data:`FORCED`: a family this host can run in its stead.
    An unknown one is a :class:`KernelError` here, at the first kernel, not
    at import: ``import runtime`` works, and a command line says it in one line."""
    if forced not in ("", "avx2", *EMULATED):
        raise KernelError(f"TESSERA_GEMM_ISA={forced!r}: expected avx2, {', '.join(EMULATED)} or nothing "
                          "(the host's own kernel family)")
    features = llvm.get_host_cpu_features()
    if features.get("avx512f") and features.get("avx512bw") and forced != "avx2":
        if forced in EMULATED:
            cpu, vnni = EMULATED[forced]
            if vnni and not features.get("avx512vnni"):
                raise KernelError(f"TESSERA_GEMM_ISA={forced}: this host has no AVX512-VNNI to run its kernels")
            target, vbmi = _AVX512_CORE + (",+avx512vnni" if vnni else ""), False
        else:
            cpu, target = llvm.get_host_cpu_name(), features.flatten()
            vnni = bool(features.get("avx512vnni") and features.get("avx512vl"))
            vbmi = bool(features.get("avx512vbmi"))
        return Isa("avx512", vw=16, mr=8, nr=48, vnni=vnni, cpu=cpu, features=target, vbmi=vbmi,
                   remainder_panels=8, remainder_cols=4, wide_tail=3)
    if forced in EMULATED:
        raise KernelError(f"TESSERA_GEMM_ISA={forced}: this host has no AVX-512 BW to run its kernels")
    if features.get("avx2") and features.get("fma"):
        return Isa("avx2", vw=8, mr=4, nr=24, vnni=False, cpu="haswell", features="+avx,+avx2,+fma",
                   remainder_panels=4, remainder_cols=3, tall_panels=2)
    raise KernelError(f"Tessera's GEMM needs an x86 CPU with AVX2 and FMA; this one is {llvm.get_host_cpu_name()}")


NARROW_COLUMNS = 12
"""Products of at most this many columns (a 3 x 3, 2 x 2 or 1 x 1 output
plane: a small model's last stages) may take the float A packed for
:func:`narrow_isa`."""


@functools.cache
def narrow_isa(isa: Isa) -> Isa | None:
    """The float kernel family for products of at most
    :data:`NARROW_COLUMNS` columns on ``isa``'s CPU, or None where
    ``isa``'s own serves them. On AVX2 the host's A panels are 4 rows, half
    a vector: 1 to 3 columns ran on remainder kernels of half vectors, 4
    on the tall 8-lane tile with half its lanes empty, 9 as that tile plus
    a remainder pass reading A again. Packed in panels of a whole vector of
    rows (8), a remainder kernel's step of A fills every lane (1 to 4
    columns), and an 8-wide tile with 1 to 3 more columns (``wide_tail``,
    A's step as broadcasts for the tile and as one vector for the rest)
    reads A once for 9 to 11. The results are those of ``isa``'s kernels
    bit for bit: each sum the same chain of multiply-adds over the same
    reduction blocks; only which rows a vector holds differs. Zen 3, the
    host and the narrow packing alternating in one process, median ratio:
    256 x 2304 by 2304 x 4 ~190 -> 85-130 us on one thread; 320 x 960 by
    960 x N on one thread N = 4 0.61, N = 8 0.92, N = 9 0.77, N = 11 0.85,
    N = 12 0.87, on two N = 4 0.77, N = 9 0.63, N = 11 0.66. AVX-512's 8-row
    panels are half a 16-lane vector too, and its narrow family is 16 rows:
    it serves the column counts :func:`narrow_columns` says."""
    if isa.name not in ("avx2", "avx512"):
        return None
    return Isa(f"{isa.name}-narrow", vw=isa.vw, mr=isa.vw, nr=UNIT, vnni=isa.vnni, cpu=isa.cpu, features=isa.features,
               vbmi=isa.vbmi,
               remainder_panels=4, remainder_cols=4, wide_tail=3)


@functools.cache
def narrow_columns(isa: Isa) -> range:
    """The column counts of the products that take :func:`narrow_isa`'s
    packing on ``isa``'s CPU (none where it has no narrow family). AVX2: 1
    to :data:`NARROW_COLUMNS`. AVX-512: 9 to 12, where the host's tiles are
    16 lanes wide with 9 to 12 in use, and the narrow 8-wide tile with 1 to
    3 more columns reads A once (320 x 960 by 960 x N on two threads, AMD
    EPYC Zen 4, the two packings alternating in one process, median ratio:
    N = 9 0.62, 10 0.56, 11 0.59, 12 0.75). From 1 to 8 columns the host's
    own kernels fill their 8-lane vectors already (its remainder kernels,
    its 8-wide tile), and there the 16-row panels ran 1.10-1.47 times as
    long for 1 to 4 columns (Zen 4 executes a 16-lane multiply-add as two
    8-lane halves, so they gain no throughput, and give a product half as
    many row panels to cut into tasks: ResNet-10 at 32 x 32, whose 2 x 2
    planes' products have 4 columns, ran 1.09-1.11 times as long), 0.95-0.97
    for 5 to 8."""
    if narrow_isa(isa) is None:
        return range(0)
    return range(UNIT + 1 if isa.name == "avx512" else 1, NARROW_COLUMNS + 1)


def tall_kernel(isa: Isa, kind: str) -> int:
    """Where the tall tile (:attr:`Isa.tall_panels`) is in the table of
    ``isa``'s ``kind`` kernels (runtime.gemm.microkernel.kernel_addresses),
    or 0 where there is none: after the tiles, the remainder kernels and
    the wide tiles."""
    if kind != "f32" or not isa.tall_panels or not isa.remainder_panels:
        return 0
    return isa.nr // UNIT + isa.remainder_cols + isa.wide_tail + 1


def remainder_group(isa: Isa, cols: int) -> int:
    """Row panels the remainder kernel of ``cols`` columns takes at once:
    ``isa.remainder_panels``, halved while its accumulators (a vector of
    ``mr`` lanes per panel and column) would take more than 3/4 of the
    vector registers (AVX-512: 32, AVX2: 16) and spill: AVX-512's 4-column
    kernel takes 4 panels (16 accumulators), its narrower ones 8."""
    registers = 32 if isa.vw == 16 else 16
    panels = isa.remainder_panels
    while panels > 1 and panels * cols > registers * 3 // 4:
        panels //= 2
    return panels


def available() -> bool:
    """Whether this CPU can run Tessera's GEMM (else use numpy's)."""
    try:
        host_isa()
    except KernelError:
        return False
    return True
