"""The transform matrices of Winograd's F(m x m, 3 x 3) (Lavin & Gray,
2016), built exactly by the Toom-Cook construction: what the weight
transform (runtime.kernels.nn_winograd), the Numba tile loops and the LLVM
IR tile kernels (runtime.kernels.winograd_ir) all compute with."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, Fraction(-1, 2))}
"""Interpolation points (besides infinity) of F(m x m, 3 x 3) per tile size m."""


def _poly(roots: list[Fraction]) -> list[Fraction]:
    """Coefficients (lowest power first) of prod (x - root)."""
    coeffs = [Fraction(1)]
    for root in roots:
        coeffs = [Fraction(0)] + coeffs
        for i in range(len(coeffs) - 1):
            coeffs[i] -= root * coeffs[i + 1]
    return coeffs


def toom_cook(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A^T, G, B^T) of F(m, r) as float64 arrays of shapes (m, n), (n, r),
    (n, n) with n = m + r - 1: the correlation ``y[i] = sum_k d[i+k] g[k]``
    of d (n,) and g (r,) is ``A^T ((G g) * (B^T d))``. Built exactly in
    rationals: evaluation at the points and infinity, Lagrange interpolation."""
    points = [Fraction(p) for p in POINTS[m]]
    n = m + r - 1
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, got {len(points)}")
    others = [[q for q in points if q != p] for p in points]
    scale = [np.prod([p - q for q in rest]) for p, rest in zip(points, others)]
    a_t = [[p ** i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = [[p ** k / s for k in range(r)] for p, s in zip(points, scale)]
    g.append([Fraction(int(k == r - 1)) for k in range(r)])
    b_t = [_poly(rest) + [Fraction(0)] for rest in others] + [_poly(points)]
    return tuple(np.array([[float(v) for v in row] for row in rows]) for rows in (a_t, g, b_t))


MATRICES = {m: toom_cook(m) for m in POINTS}
A_T = {m: a_t.astype(np.float32) for m, (a_t, _, _) in MATRICES.items()}
B_T = {m: b_t.astype(np.float32) for m, (_, _, b_t) in MATRICES.items()}
