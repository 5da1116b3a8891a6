"""Accurate least squares: the reference every Gaussian fit is measured against.

``ols`` solves ``min ||y - X b||`` by

1. exact column equilibration (each column scaled by a power of two, so the
   scaling itself rounds nothing),
2. Householder QR of the equilibrated design,
3. iterative refinement: residuals ``r = y - X b`` accumulated with error-free
   transformations (TwoProduct/TwoSum, i.e. Ogita-Rump-Oishi ``Dot2``, about
   twice the working precision), then ``b += R^{-1} Q^T r``.

Rank is judged scale-free on the equilibrated factor ``R``: a badly scaled but
full-rank design is accepted, a numerically rank-deficient one (``|R_kk| <
RANK_RTOL * max|R_jj|`` after pivoting) is a ``ValueError`` naming the
collinear columns.

References:
  NIST StRD linear regression, https://www.itl.nist.gov/div898/strd/
  Ogita, Rump & Oishi (2005), Accurate sum and dot product, SIAM J. Sci. Comput.
  Björck (1996), Numerical Methods for Least Squares Problems, sec. 2.9.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

#: relative size of a pivoted diagonal of the equilibrated R below which the
#: design counts as rank-deficient (equilibrated condition number above 1e11).
RANK_RTOL = 1e-11


class LstsqParts(NamedTuple):
    """What the jitted least-squares core returns."""

    beta: jax.Array  # (p,)
    resid: jax.Array  # (n,) weighted residuals sqrt(w) * (y - offset - X beta)
    rss: jax.Array  # scalar, accurately summed
    xtx_inv: jax.Array  # (p, p) (X' W X)^{-1}
    r_eq: jax.Array  # (p, p) R of the equilibrated design (for rank checks)


# -- error-free transformations (no FMA needed: Veltkamp/Dekker splitting) ----
def _split(a):
    """Dekker split ``a = hi + lo`` into halves of at most 26 (float64) bits.

    ``hi`` is ``a`` rounded to nearest at half its mantissa by
    ``lax.reduce_precision`` (bit arithmetic), not by Veltkamp's
    ``c - (c - a)``, which a compiler that contracts to FMA silently breaks.
    """
    finfo = jnp.finfo(a.dtype)
    half = (finfo.nmant + 1) // 2 - 1  # 25 explicit bits for float64, 11 for float32
    hi = jax.lax.reduce_precision(a, exponent_bits=finfo.nexp, mantissa_bits=half)
    return hi, a - hi


def _two_sum(a, b):
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def _tree_sum2(terms: jax.Array, errs: jax.Array) -> jax.Array:
    """Sum along the last axis in about twice the working precision.

    Pairwise TwoSum levels (vectorised, log2(m) of them); the rounding errors
    travel along in ``errs`` and are added once at the end. (A ``lax.scan``
    formulation was measured to lose the error-free property on XLA:CPU.)
    """
    while terms.shape[-1] > 1:
        if terms.shape[-1] % 2:
            pad = [(0, 0)] * (terms.ndim - 1) + [(0, 1)]
            terms, errs = jnp.pad(terms, pad), jnp.pad(errs, pad)
        s, e = _two_sum(terms[..., 0::2], terms[..., 1::2])
        errs = errs[..., 0::2] + errs[..., 1::2] + e
        terms = s
    return terms[..., 0] + errs[..., 0]


def _residual_rows(y, A, zh, zl):
    ah, al = _split(A)
    # Each of the four half-products is exact (26 x 26 bits), so a compiler
    # that contracts multiply-adds into FMAs cannot change them.
    y = y[:, None] if y.ndim == 1 else y
    terms = jnp.concatenate([y, ah * zh, ah * zl, al * zh, al * zl], axis=1)
    return _tree_sum2(terms, jnp.zeros_like(terms))


def accurate_residual(y: jax.Array, A: jax.Array, z: jax.Array, block: int = 8192):
    """``y - A @ z`` accumulated in about twice the working precision.

    ``y`` may also be ``(n, k)``: then the row sums of ``y`` are the constants.

    Ogita-Rump-Oishi ``Dot2`` in an FMA-proof form: ``A`` and ``z`` are split
    into halves, the 4p half-products are exact, and their sum with ``y`` is
    accumulated by pairwise TwoSum. Rows are processed in blocks to bound memory.
    """
    zh, zl = _split(-z)
    zh, zl = zh[None, :], zl[None, :]
    n = y.shape[0]
    if n <= block:
        return _residual_rows(y, A, zh, zl)
    nb = -(-n // block)
    pad = nb * block - n
    yb = jnp.pad(y, ((0, pad),) + ((0, 0),) * (y.ndim - 1)).reshape(
        (nb, block) + y.shape[1:]
    )
    Ab = jnp.pad(A, ((0, pad), (0, 0))).reshape(nb, block, A.shape[1])
    out = jax.lax.map(lambda t: _residual_rows(t[0], t[1], zh, zl), (yb, Ab))
    return out.reshape(-1)[:n]


def _accurate_sum(x: jax.Array) -> jax.Array:
    """Sum of a 1-D array in about twice the working precision."""
    return _tree_sum2(x, jnp.zeros_like(x))


def pow2_scale(X: jax.Array) -> jax.Array:
    """Per-column powers of two close to 1/||x_j|| (exact scaling; 1 for zero columns)."""
    norms = jnp.sqrt(jnp.sum(X * X, axis=0))
    e = jnp.where(norms > 0, jnp.round(jnp.log2(jnp.where(norms > 0, norms, 1.0))), 0.0)
    # ldexp is exact; exp2 may be evaluated as exp(x log 2) and round.
    return jnp.ldexp(jnp.ones((), X.dtype), (-e).astype(jnp.int32))


def lstsq_core(X, y, sqrt_w=None, n_refine: int = 3) -> LstsqParts:
    """Jittable accurate least squares of ``sqrt_w*y`` on ``sqrt_w*X``."""
    if sqrt_w is not None:
        X = X * sqrt_w[:, None]
        y = y * sqrt_w
    d = pow2_scale(X)
    A = X * d[None, :]
    Q, R = jnp.linalg.qr(A, mode="reduced")

    def solve_r(v):
        return solve_triangular(R, Q.T @ v, lower=False)

    # Refinement of the augmented system [I A; A' 0][r; z] = [y; 0] (Björck),
    # both residuals accumulated in about twice the working precision: plain
    # refinement of z alone stalls at kappa^2 eps ||r|| on inconsistent data.
    z = solve_r(y)
    r = accurate_residual(y, A, z)
    zero_p = jnp.zeros(A.shape[1], A.dtype)
    for _ in range(n_refine):
        f = accurate_residual(jnp.stack([y, -r], axis=1), A, z)
        g = accurate_residual(zero_p, A.T, r)
        h = solve_triangular(R, g, trans="T", lower=False)
        dz = solve_triangular(R, Q.T @ f - h, lower=False)
        z = z + dz
        r = r + (f - A @ dz)
    r = accurate_residual(y, A, z)
    eye = jnp.eye(R.shape[0], dtype=R.dtype)
    r_inv = solve_triangular(R, eye, lower=False)
    xtx_inv = (d[:, None] * (r_inv @ r_inv.T)) * d[None, :]
    return LstsqParts(z * d, r, _accurate_sum(r * r), xtx_inv, R)


def collinear_columns(r_eq, names=None, rtol: float = RANK_RTOL) -> list[str] | None:
    """Names of a collinear set of columns from an equilibrated R (host side).

    Returns ``None`` when the design is numerically full rank. Otherwise the
    columns that take part in one exact linear dependency (a null vector of R).
    """
    import scipy.linalg

    R = np.asarray(r_eq, dtype=np.float64)
    p = R.shape[1]
    names = list(names) if names is not None else [f"x{j}" for j in range(p)]
    if not np.isfinite(R).all():
        return names
    # Re-equilibrate (R's columns have the norms of the design's columns).
    norms = np.linalg.norm(R, axis=0)
    if (norms == 0).any():
        return [names[j] for j in np.flatnonzero(norms == 0)]
    _, R2, piv = scipy.linalg.qr(R / norms, pivoting=True)
    diag = np.abs(np.diag(R2))
    rank = int(np.sum(diag > rtol * diag[0]))
    if rank == p:
        return None
    # Null vector for the first dependent column: R11 c = R12[:, 0].
    c = scipy.linalg.solve_triangular(R2[:rank, :rank], R2[:rank, rank])
    v = np.zeros(p)
    v[piv[:rank]] = -c
    v[piv[rank]] = 1.0
    involved = np.flatnonzero(np.abs(v) > 1e-8 * np.abs(v).max())
    return [names[j] for j in sorted(involved)]


def rank_error(cols: list[str], p: int) -> ValueError:
    return ValueError(
        "X is rank-deficient (judged after column equilibration): columns "
        f"{cols} are collinear (of {p}); drop one of them or reparametrise."
    )
