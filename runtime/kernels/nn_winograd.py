"""Winograd convolution for 3x3, stride 1, undilated, ungrouped float32 convs.

F(m x m, 3 x 3) (Lavin & Gray, 2016) computes each m x m output tile from an
(m+2) x (m+2) input tile with (m+2)^2 multiplications per channel pair
instead of 9 m^2: ``Y = A^T [ (G g G^T) * (B^T d B) ] A``. Per call:

* the weights are transformed once per weight array (``U = G g G^T``, in
  float64, cached while the array lives: :data:`winograd_weights`);
* the input tiles are transformed (``V = B^T d B``, zero padding included
  exactly);
* the (m+2)^2 products ``M[e] = U[e] @ V[e]`` (K x C by C x tiles) are one
  batched GEMM: Tessera's, with U packed once (:data:`packed_winograd_weights`),
  or numpy's BLAS when U is given as a plain array;
* the output tiles are transformed (``A^T M A`` plus the bias) straight into
  the output, cropping the partial tiles at the far edges, with the fused
  epilogue (residual, clamp) on each output row.

With Tessera's GEMM the transforms are the LLVM IR kernels of
runtime.kernels.winograd_ir, on the thread pool, over planes, and V and the
products are laid out with their items an odd number of cache lines apart
(:func:`~runtime.kernels.winograd_ir.item_stride`). With BLAS (a host
without AVX2) they are the Numba loops below, on the calling thread:
measured inside ResNet-50 on 2 threads, splitting them made the layers
slower, as after each multithreaded BLAS call OpenBLAS's idle worker spins
on the other core for about 0.1 s.

The transforms (runtime.kernels.winograd_matrices) come from the Toom-Cook construction on the points
0, 1, -1 (m = 2) and 0, 1, -1, 2, -1/2 (m = 4). All their entries are exact
binary fractions. Float32 error on ResNet-like data, relative to the
output's largest magnitude: F(2x2) about 5e-7 (im2col: 4e-7), F(4x4) 2e-6 to
4e-6 (with the usual points 2 and -2 instead of 2 and -1/2: 5e-6 to 1e-5).
A NaN or Inf in the input spreads to its whole output tile (up to m x m
outputs, where a direct convolution touches 3 x 3); weights holding them
are left to im2col (see :func:`_transform_weights`).
"""
from __future__ import annotations

import threading

import numba
import numpy as np

from runtime import gemm, parallel
from runtime.errors import KernelError
from runtime.jit import jit, readonly
from runtime.kernels import winograd_ir
from runtime.kernels.conv_epilogue import NO_CLAMP, finish_run, gate_run
from runtime.kernels.limits import check_output_size
from runtime.kernels.nn_window import valid_range
from runtime.kernels.weight_cache import WeightCache
from runtime.kernels.winograd_ir import input_tiles_ir, item_stride, output_tiles_ir
from runtime.kernels.winograd_matrices import A_T, B_T, MATRICES, POINTS
from runtime.parallel import parallel_for
from runtime.schedule.records import WINOGRAD_IN, WINOGRAD_OUT

TILE_ELEMENTS = 1 << 22
"""Most elements of transformed input handled in one pass: larger batches go
image group by image group, so the buffers stay a few MiB."""

MIN_CHANNELS, MIN_PLANE, MIN_PLANE_F4 = 16, 10, 40
"""Where Winograd is used (see :func:`tile_size`)."""


# ---------------------------------------------------------------- Numba loops
# Both transforms work on whole planes so that every loop is a long
# unit-stride run that LLVM vectorises (one tile row is too short for
# 16-lane vectors). A plane's tiles are numbered u = ty*(TW+1) + tx: each
# tile row has one extra tile, never used, so that a shift by one tile
# column stays inside a flat run. Every array is indexed flat, from offsets
# computed per plane, with unsigned indices: no views are made inside the
# loops (each view costs reference-count atomics that both threads contend
# for, tens of nanoseconds, and a plane's transform makes dozens of runs),
# and LLVM drops the negative-index tests.
_u = numba.uint64


@jit
def _terms(coefs):
    """The nonzero entries of each row of ``coefs`` (rows x at most 6):
    their values, their column indices and their count per row."""
    rows = coefs.shape[0]
    cf = np.zeros((rows, 6), dtype=coefs.dtype)
    js = np.zeros((rows, 6), dtype=np.int64)
    counts = np.zeros(rows, dtype=np.int64)
    for r in range(rows):
        for j in range(min(coefs.shape[1], 6)):
            if coefs[r, j] != 0:
                cf[r, counts[r]], js[r, counts[r]] = coefs[r, j], j
                counts[r] += 1
    return cf, js, counts


@jit(inline="always")
def _lincomb(dst, d0, src, offs, cf, count, length, start):
    """dst[d0 + z] = start + sum_t cf[t] * src[offs[t] + z] for z < length,
    over the ``count`` (1 to 6) terms: one pass, no zero terms (0 * Inf
    would be NaN)."""
    d, n = _u(d0), _u(length)
    c0, c1, c2, c3, c4, c5 = cf[0], cf[1], cf[2], cf[3], cf[4], cf[5]
    o0, o1, o2 = _u(offs[0]), _u(offs[1]), _u(offs[2])
    o3, o4, o5 = _u(offs[3]), _u(offs[4]), _u(offs[5])
    if count == 1:
        for z in range(n):
            dst[d + z] = start + c0 * src[o0 + z]
    elif count == 2:
        for z in range(n):
            dst[d + z] = start + c0 * src[o0 + z] + c1 * src[o1 + z]
    elif count == 3:
        for z in range(n):
            dst[d + z] = start + c0 * src[o0 + z] + c1 * src[o1 + z] + c2 * src[o2 + z]
    elif count == 4:
        for z in range(n):
            dst[d + z] = start + c0 * src[o0 + z] + c1 * src[o1 + z] + c2 * src[o2 + z] + c3 * src[o3 + z]
    elif count == 5:
        for z in range(n):
            dst[d + z] = (start + c0 * src[o0 + z] + c1 * src[o1 + z] + c2 * src[o2 + z] + c3 * src[o3 + z]
                          + c4 * src[o4 + z])
    else:
        for z in range(n):
            dst[d + z] = (start + c0 * src[o0 + z] + c1 * src[o1 + z] + c2 * src[o2 + z] + c3 * src[o3 + z]
                          + c4 * src[o4 + z] + c5 * src[o5 + z])


@jit(inline="always")
def _deinterleave(src, dst, count, stride, m):
    """dst[px*stride + q] = src[q*m + px] for q < count: src cut into its m
    phases (m is 2 or 4), spelt out per m so that LLVM vectorises it."""
    n, s = _u(count), _u(stride)
    if m == 4:
        for q in range(n):
            dst[q], dst[s + q], dst[2 * s + q], dst[3 * s + q] = src[4 * q], src[4 * q + 1], src[4 * q + 2], \
                src[4 * q + 3]
    else:
        for q in range(n):
            dst[q], dst[s + q] = src[2 * q], src[2 * q + 1]


@jit(inline="always")
def _interleave(dst, src, s0, count, stride, m):
    """dst[q*m + px] = src[s0 + px*stride + q] for q < count: the inverse
    of _deinterleave (m is 2 or 4)."""
    n, s, b = _u(count), _u(stride), _u(s0)
    if m == 4:
        for q in range(n):
            dst[4 * q], dst[4 * q + 1], dst[4 * q + 2], dst[4 * q + 3] = src[b + q], src[b + s + q], \
                src[b + 2 * s + q], src[b + 3 * s + q]
    else:
        for q in range(n):
            dst[2 * q], dst[2 * q + 1] = src[b + q], src[b + s + q]


@jit(fastmath=True)
def input_tiles(start, stop, x, v, b_t, geo):
    """Items [start, stop) of the input transform:
    v[i*n + k, c, tile] = (B^T d B)[i, k] for each n x n tile d of plane c of
    image x[image] (N, C, H, W), zero padded by geo = (pad_top, pad_left,
    TH, TW, parts); v: (n*n, C, N*TH*(TW+1)), tiles numbered (image*TH +
    ty)*(TW+1) + tx. Item (part*N + image)*C + c gives plane c's rows i in
    [part*n // parts, (part+1)*n // parts) (:func:`input_parts`).

    The padded plane's rows go to ``padded`` grouped by row phase (rows py,
    py + m, ...: tile row ty's row j is then at one offset from ty in every
    group), so the column transform over j, for all tile rows at once, is
    one run per output row i (into ``rows``); that run, cut into its m
    column phases, gives the row transform over l as one run per (i, k)."""
    top, left, th, tw, parts = geo[0], geo[1], geo[2], geo[3], geo[4]
    batch, chans, height, width = x.shape
    n = b_t.shape[0]
    m = n - 2
    cols = tw + 1
    span = th * cols
    pitch = cols * m
    groups = th + 1
    tiles = v.shape[2]
    if v.shape[0] != n * n or v.shape[1] != chans or tiles != batch * span or n not in (4, 6) or b_t.shape[1] != n:
        return
    if parts < 1 or parts > n:
        return
    if min(top, left) < 0 or left + width > pitch or top + height > groups * m:
        return
    padded = np.zeros(m * groups * pitch, dtype=x.dtype)
    rows = np.empty(span * m, dtype=x.dtype)
    phases = np.zeros(m * (span + 1), dtype=x.dtype)
    cf, js, counts = _terms(b_t)
    offs = np.zeros(6, dtype=np.int64)
    xs, vs = x.reshape(-1), v.reshape(-1)
    planes = batch * chans
    for item in range(start, min(stop, parts * planes)):
        part, p = item // planes, item % planes
        c = p % chans
        image = p // chans
        for py in range(m):
            lo_y, hi_y = valid_range(py - top, m, height, groups)
            for q in range(lo_y, hi_y):
                src = _u(((image * chans + c) * height + q * m + py - top) * width)
                dst = _u((py * groups + q) * pitch + left)
                for z in range(_u(width)):
                    padded[dst + z] = xs[src + z]
        for i in range(part * n // parts, (part + 1) * n // parts):
            for t in range(counts[i]):
                offs[t] = ((js[i, t] % m) * groups + js[i, t] // m) * pitch
            _lincomb(rows, 0, padded, offs, cf[i], counts[i], span * m, 0)
            _deinterleave(rows, phases, span, span + 1, m)
            for k in range(n):
                for t in range(counts[k]):
                    offs[t] = (js[k, t] % m) * (span + 1) + js[k, t] // m
                _lincomb(vs, ((i * n + k) * chans + c) * tiles + image * span, phases, offs, cf[k], counts[k], span,
                         0)


@jit(fastmath=True)
def output_tiles(start, stop, prods, y, a_t, bias, geo, res, clamp, flags):
    """Planes [start, stop) (index image*K + k) of the output transform: each
    m x m tile of y (N, K, OH, OW) is A^T M A + bias[k], M the tile's n x n
    products in prods (n*n, K, N*TH*(TW+1)); geo = (TH, TW). Tiles past the
    output's edges are cropped. The fused epilogue follows on each output
    row: + res (the output's shape, flags[0]; it may be y itself), clamp to
    [clamp[0], clamp[1]] (flags[1]), and the clamp array's gate on each
    finished plane."""
    th, tw = geo[0], geo[1]
    batch, out_c, out_h, out_w = y.shape
    m, n = a_t.shape
    cols = tw + 1
    span = th * cols
    tiles = prods.shape[2]
    if prods.shape[0] != n * n or prods.shape[1] != out_c or tiles != batch * span or n not in (4, 6):
        return
    if bias.shape[0] != out_c or th * m < out_h or tw * m < out_w or (flags[0] and res.shape != y.shape):
        return
    lo, hi = clamp[0], clamp[1]
    half = np.empty(n * m * span, dtype=y.dtype)
    done = np.empty(m * m * span, dtype=y.dtype)
    row = np.empty(tw * m, dtype=y.dtype)
    cf, js, counts = _terms(a_t)
    offs = np.zeros(6, dtype=np.int64)
    ps, ys, rs = prods.reshape(-1), y.reshape(-1), res.reshape(-1)
    zero = y.dtype.type(0)
    for p in range(start, min(stop, batch * out_c)):
        k = p % out_c
        image = p // out_c
        for i in range(n):
            for b in range(m):
                for t in range(counts[b]):
                    offs[t] = ((i * n + js[b, t]) * out_c + k) * tiles + image * span
                _lincomb(half, (i * m + b) * span, ps, offs, cf[b], counts[b], span, zero)
        for a in range(m):
            for b in range(m):
                for t in range(counts[a]):
                    offs[t] = (js[a, t] * m + b) * span
                _lincomb(done, (a * m + b) * span, half, offs, cf[a], counts[a], span, bias[k])
            for ty in range(min(th, (out_h - a + m - 1) // m)):
                _interleave(row, done, a * m * span + ty * cols, tw, span, m)
                finish_run(ys, ((image * out_c + k) * out_h + ty * m + a) * out_w, row, rs, out_w, lo, hi, flags[0],
                           flags[1])
        if flags[1]:
            gate_run(ys, p * out_h * out_w, out_h * out_w, clamp)


# ---------------------------------------------------------------- weights
def _transform_weights(w: np.ndarray, m: int) -> np.ndarray | None:
    """U (n*n, K, C) float32 with U[i*n + j, k, c] = (G w[k, c] G^T)[i, j],
    computed in float64 as one GEMM: U = kron(G, G) @ w viewed as (9, K*C).
    None when w holds NaN or Inf (the transform would turn them into NaN
    where a direct convolution gives Inf)."""
    if not np.isfinite(w).all():
        return None
    _, g, _ = MATRICES[m]
    n = g.shape[0]
    out_c, chans = w.shape[:2]
    u = np.kron(g, g) @ w.reshape(out_c * chans, 9).astype(np.float64).T
    return u.astype(np.float32).reshape(n * n, out_c, chans)


winograd_weights = WeightCache(_transform_weights)
"""The process-wide cache: ``winograd_weights.get(w, m)`` is U for w (K, C,
3, 3) and tile size m, or None when w holds NaN or Inf."""


def _packed_transform(w: np.ndarray, m: int) -> gemm.PackedMatrix | None:
    """U packed (U itself is not kept: the packed copy is all the GEMM reads)."""
    u = _transform_weights(w, m)
    return None if u is None else gemm.pack_weights(u)


packed_winograd_weights = WeightCache(_packed_transform)
"""``packed_winograd_weights.get(w, m)``: U packed for Tessera's batched
GEMM (what :func:`winograd_conv2d` takes), or None."""


# ---------------------------------------------------------------- driver
_scratch = threading.local()


SCRATCH_BYTES = 64 << 20
"""Largest work buffer :func:`scratch` keeps between calls."""


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A work buffer of this shape, kept per thread and per name between
    calls and grown as needed (up to SCRATCH_BYTES; larger ones are
    allocated per call). Fresh multi-MiB buffers on every call were often
    fresh mappings from glibc, paid for with a page fault per 4 KiB touched:
    1.3 ms for two 1.9 MiB buffers, more than the Winograd layer's own work.
    The caller must be done with a buffer before its next call with the same
    name on the same thread."""
    shape = check_output_size(shape, f"Conv {name} buffer")
    size = int(np.prod(shape))
    if size * np.dtype(dtype).itemsize > SCRATCH_BYTES:
        return np.empty(shape, dtype=dtype)
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    key = (name, np.dtype(dtype).str)
    buf = buffers.get(key)
    if buf is None or buf.size < size:
        buf = buffers[key] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def tile_size(x_shape, w_shape, pads) -> int:
    """The Winograd tile size m worth using for this float32 3x3 conv
    (stride 1, no dilation, one group), or 0 where im2col is faster.

    Measured inside ResNet-50 on 2 threads (where weights and buffers come
    from DRAM rather than cache): F(4x4) pays on planes of 40 and more,
    F(2x2) (smaller transformed weights, larger GEMMs) on planes of 10 to
    40; 7x7 planes make GEMMs too narrow for either."""
    chans, out_c = x_shape[1], w_shape[0]
    out_h = x_shape[2] + pads[0] + pads[2] - 2
    out_w = x_shape[3] + pads[1] + pads[3] - 2
    if min(chans, out_c) < MIN_CHANNELS or min(out_h, out_w) < MIN_PLANE:
        return 0
    return 4 if min(out_h, out_w) >= MIN_PLANE_F4 else 2


def input_parts() -> int:
    """In how many parts the input transform cuts each plane's rows ``i``
    of ``B^T d B`` on the thread pool (2, or 1 on one thread). The batched
    product then claims its items ``e = i*n + k`` in order, the caller from
    the front and pool threads from the back (runtime.parallel), so with
    the rows cut in two each thread writes the part of V that it goes on to
    multiply (but for the chunks near the middle, which go to whichever
    thread gets there first): cut by channels, half of V crossed cores
    between the two steps. Each part copies the padded plane again (a few
    percent of the transform); ResNet-50 on 2 threads ran as fast with the
    cut (37.3 ms against 37.2), and 2.3% faster (45.6 ms against 46.7) in
    episodes when the host placed the two vCPUs on different sockets (a
    cache-line round trip of 600 ns, not 60)."""
    return 2 if parallel.NUM_THREADS > 1 else 1


def winograd_conv2d(x: np.ndarray, u, b: np.ndarray | None, out: np.ndarray, pads, m: int,
                    residual: np.ndarray | None = None, clamp: np.ndarray | None = None) -> None:
    """out = Conv(x, w) + b for a 3x3 kernel, stride 1, no dilation, one
    group: x (N, C, H, W) float32, u = ``winograd_weights.get(w, m)`` (BLAS
    products, transforms by the Numba loops on this thread) or
    ``packed_winograd_weights.get(w, m)`` (Tessera's GEMM, the transforms by
    the LLVM IR kernels of runtime.kernels.winograd_ir, everything on the
    thread pool), b (K,) or None; out (N, K, OH, OW) float32; pads = (top,
    left, bottom, right); m: tile size, 2 or 4. Then, when given, +
    ``residual`` (the output's shape, C-contiguous float32) and the clamp
    and gate of the clamp array ``clamp`` (:mod:`runtime.kernels.conv_epilogue`).
    The whole batch goes through each stage at once, or a group of images at
    a time when it is large."""
    packed = isinstance(u, gemm.PackedMatrix)
    _check(x, u.shape if packed else u, b, out, pads, m)
    if residual is not None and (residual.shape != out.shape or residual.dtype != np.float32
                                 or not residual.flags.c_contiguous):
        raise KernelError(f"Conv: the residual must be C-contiguous float32 of shape {list(out.shape)}")
    flags = np.array([residual is not None, clamp is not None], np.bool_)
    clamp = NO_CLAMP if clamp is None else clamp
    batch, chans = x.shape[:2]
    out_c, out_h, out_w = out.shape[1:]
    n = m + 2
    th, tw = -(-out_h // m), -(-out_w // m)
    bias = readonly(np.zeros(out_c, dtype=np.float32) if b is None else b)
    step = max(1, TILE_ELEMENTS // (n * n * th * (tw + 1) * max(chans, out_c)))
    parts = input_parts() if packed else 1
    geo = np.array([pads[0], pads[1], th, tw, parts], np.int64)
    for first in range(0, batch, step):
        xs, ys = x[first:first + step], out[first:first + step]
        rs = ys if residual is None else residual[first:first + step]
        tiles = xs.shape[0] * th * (tw + 1)
        if not packed:
            v = scratch("Winograd tiles", (n * n, chans, tiles), np.float32)
            input_tiles(0, xs.shape[0] * chans, xs, v, B_T[m], geo)
            prods = np.matmul(u, v, out=scratch("Winograd products", (n * n, out_c, tiles), np.float32))
            output_tiles(0, ys.shape[0] * out_c, prods, ys, A_T[m], bias, geo[2:4], rs, clamp, flags)
            continue
        kernels = winograd_ir.kernel_addresses()
        v = scratch("Winograd tiles", (n * n, item_stride(chans, tiles)), np.float32)
        parallel_for(input_tiles_ir, parts * xs.shape[0] * chans, xs, v, geo, kernels)
        prods = scratch("Winograd products", (n * n, item_stride(out_c, tiles)), np.float32)
        gemm.sgemm_batched(None, _items(v, chans, tiles), _items(prods, out_c, tiles), packed_a=u)
        parallel_for(output_tiles_ir, ys.shape[0] * out_c, prods, ys, bias, geo[2:4], rs, clamp, flags, kernels)


def _items(buffer: np.ndarray, rows: int, tiles: int) -> np.ndarray:
    """The (n*n, rows, tiles) matrices at the start of ``buffer``'s rows."""
    return buffer[:, :rows * tiles].reshape(buffer.shape[0], rows, tiles)


def lower_winograd(ctx, x, u: gemm.PackedMatrix, b: np.ndarray | None, out, pads, m: int, residual=None,
                   clamp: np.ndarray | None = None) -> None:
    """:func:`winograd_conv2d` with packed ``u`` as schedule operations
    (runtime.schedule): ``x``, ``out`` and ``residual`` are operands of the
    shapes it takes; each group of images is the input transform, the
    batched product and the output transform, into scratch buffers."""
    batch, chans, height, width = x.shape
    out_c, out_h, out_w = out.shape[1:]
    n = m + 2
    if m not in POINTS or u.shape != (n * n, out_c, chans) or min(pads) < 0 or (
            (height + pads[0] + pads[2] - 2, width + pads[1] + pads[3] - 2) != (out_h, out_w)):
        raise ValueError("not a Winograd convolution of these operands")
    th, tw = -(-out_h // m), -(-out_w // m)
    bias = np.zeros(out_c, dtype=np.float32) if b is None else b
    flags = (residual is not None, clamp is not None)
    clamp = NO_CLAMP if clamp is None else clamp
    residual = out if residual is None else residual
    step = max(1, TILE_ELEMENTS // (n * n * th * (tw + 1) * max(chans, out_c)))
    parts = input_parts()
    kernels = ctx.pin(winograd_ir.kernel_addresses())
    x_bytes, y_bytes = chans * height * width * 4, out_c * out_h * out_w * 4
    for first in range(0, batch, step):
        count = min(step, batch - first)
        tiles = count * th * (tw + 1)
        v = ctx.scratch((n * n, item_stride(chans, tiles)), np.float32)
        ctx.emit(WINOGRAD_IN, [*x.ref(first * x_bytes), count, chans, height, width, *v.ref(), *v.shape,
                               int(pads[0]), int(pads[1]), th, tw, parts, *kernels], parts * count * chans)
        prods = ctx.scratch((n * n, item_stride(out_c, tiles)), np.float32)
        gemm.lower_sgemm(ctx, u, v, prods.ref(), (prods.shape[1] * 4, tiles * 4, 4), matrix=(chans, tiles))
        ctx.emit(WINOGRAD_OUT, [*prods.ref(), *prods.shape, *out.ref(first * y_bytes), count, out_c, out_h, out_w,
                                *ctx.pin(bias), th, tw, *residual.ref(first * y_bytes), *ctx.pin(clamp), *flags,
                                *kernels], count * out_c)


def _check(x, u, b, out, pads, m: int) -> None:
    """Everything the loops rely on, checked before they run; ``u`` is the
    transformed weights' array, or their shape when they come packed."""
    if m not in POINTS:
        raise KernelError(f"Conv: Winograd tile size {m} is not supported ({sorted(POINTS)})")
    n = m + 2
    shape = tuple(u) if isinstance(u, tuple) else u.shape
    if x.ndim != 4 or out.ndim != 4 or shape != (n * n, out.shape[1], x.shape[1]):
        raise KernelError(f"Conv: Winograd F({m}x{m}, 3x3) needs X (N, C, H, W), transformed weights "
                          f"({n * n}, K, C) and Y (N, K, OH, OW), got {list(x.shape)}, {list(shape)} "
                          f"and {list(out.shape)}")
    arrays = [x, out] + ([] if isinstance(u, tuple) else [u]) + ([] if b is None else [b])
    if any(not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous for a in arrays):
        raise KernelError("Conv: Winograd needs C-contiguous float32 operands")
    if b is not None and b.shape != (shape[1],):
        raise KernelError(f"Conv: B has shape {list(b.shape)}, expected [{shape[1]}]")
    pads = tuple(int(p) for p in pads)
    if len(pads) != 4 or min(pads) < 0:
        raise KernelError(f"Conv: Winograd pads {list(pads)} must be 4 non-negative ints")
    expected = (x.shape[0], shape[1], x.shape[2] + pads[0] + pads[2] - 2, x.shape[3] + pads[1] + pads[3] - 2)
    if out.shape != expected or min(expected) < 1:
        raise KernelError(f"Conv: Winograd output has shape {list(out.shape)}, expected {list(expected)}")
