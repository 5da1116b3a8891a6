"""Accurate least squares: the reference every Gaussian fit is measured against.

``ols`` solves ``min ||y - X b||`` by

1. exact column equilibration (each column scaled by a power of two, so the
   scaling itself rounds nothing),
2. Householder QR of the equilibrated design,
3. iterative refinement: residuals ``r = y - X b`` accumulated with error-free
   transformations (TwoProduct/TwoSum, i.e. Ogita-Rump-Oishi ``Dot2``, about
   twice the working precision), then ``b += R^{-1} Q^T r``.

Tall designs (``n >= TALL_MIN_ROWS`` and ``n >= TALL_MIN_RATIO * p``, a static
choice by shape) take a faster path with the same accuracy target: the Gram
matrix of the equilibrated design in one blocked pass, its Cholesky factor,
then corrected semi-normal equations, refined in working precision while an
error estimate says that is good to ``TALL_REL_TOL`` and with Dot2 residuals
otherwise; designs too ill-conditioned for the Cholesky factor take ``R`` from
a Householder QR instead (decided at run time by ``lax.cond``). See
:func:`_tall_lstsq`.

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

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

#: relative size of a pivoted diagonal of the equilibrated R below which the
#: design counts as rank-deficient (equilibrated condition number above 1e11).
RANK_RTOL = 1e-11


#: ``LstsqParts.route``: Householder QR (chosen by shape); the tall path with
#: working-precision sweeps only; the tall path that also needed the accurate
#: sweeps; the tall path with ``R`` from a Householder QR (decided at run time:
#: too ill-conditioned for the Cholesky factor of the Gram).
ROUTE_HOUSEHOLDER, ROUTE_TALL, ROUTE_TALL_ACCURATE, ROUTE_TALL_QR = 0, 1, 2, 3


class LstsqParts(NamedTuple):
    """What the jitted least-squares core returns."""

    beta: jax.Array  # (p,)
    resid: jax.Array  # (n,) weighted residuals sqrt(w) * (y - offset - X beta)
    rss: jax.Array  # scalar, accurately summed
    xtx_inv: jax.Array  # (p, p) (X' W X)^{-1}
    r_eq: jax.Array  # (p, p) R of the equilibrated design (for rank checks)
    route: jax.Array | int = 0  # ROUTE_*: which path produced the answer


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


def _householder_lstsq(X, y, sqrt_w, n_refine: int) -> LstsqParts:
    """Householder QR + Björck refinement in double-double residuals (any shape).

    Refinement of the augmented system ``[I A; A' 0][r; z] = [y; 0]``, both
    residuals ``f = y - r - A z`` and ``A'r`` accumulated in about twice the
    working precision (plain refinement of ``z`` alone stalls at
    ``kappa^2 eps ||r||`` on inconsistent data). Each sweep is one pass over
    row blocks of ``A`` and ``Q``; ``r`` starts at 0, so the first sweep also
    computes the residual of the QR solution.
    """
    n, p = X.shape
    dt = X.dtype
    if sqrt_w is not None:
        X = X * sqrt_w[:, None]
        y = y * sqrt_w
    d = pow2_scale(X)
    A = X * d[None, :]
    Q, R = jnp.linalg.qr(A, mode="reduced")
    eye = jnp.eye(p, dtype=dt)
    r_inv = solve_triangular(R, eye, lower=False)
    z = solve_triangular(R, Q.T @ y, lower=False)
    blk = _block_rows(n, p, 2**16)
    zp = jnp.zeros(p, dt)

    def sweep(_, c):  # a loop, not unrolled: traced (and compiled) once
        z, dz, r, f = c
        zh, zl = _split(-z)

        def step(c, start, valid, Ab, Qb, yb, rb, fb):
            r, f, gs, ge, qf = c  # r, f are only written: updated in place
            rb = rb + (fb - Ab @ dz)
            ah, al = _split(Ab)
            fb = sum(_dd_residual_rows(jnp.stack([yb, -rb], axis=1), ah, al, zh, zl))
            r, f = _put_rows(r, rb, start), _put_rows(f, fb, start)
            if valid is not None:  # rows of the block before: counted already
                rb, fb = jnp.where(valid, rb, 0.0), jnp.where(valid, fb, 0.0)
            cs, ce = _dd_cross_rows(ah, al, rb)
            gs, ge2 = _two_sum(gs, cs)
            qf = qf + jnp.sum(Qb * fb[:, None], axis=0)
            return r, f, gs, ge + ge2 + ce, qf

        zn = jnp.zeros(n, dt)
        r, f, gs, ge, qf = _fold_rows(step, (zn, zn, zp, zp, zp), (A, Q, y, r, f), blk)
        h = r_inv.T @ (gs + ge)  # R^{-T} A'r
        dz = solve_triangular(R, qf + h, lower=False)
        return z + dz, dz, r, f

    z, dz, r, f = lax.fori_loop(
        0, n_refine + 1, sweep, (z, zp, jnp.zeros(n, dt), jnp.zeros(n, dt))
    )

    r = r + (f - A @ dz)  # the last sweep's pending update
    return _finish(z, d, r, r_inv, R, ROUTE_HOUSEHOLDER)


def _finish(z, d, r, r_inv, R, route):
    def add_squares(c, start, valid, rb):
        rb = rb if valid is None else jnp.where(valid, rb, 0.0)
        s, e = _two_sum(c[0], jnp.sum(rb * rb))
        return s, c[1] + e

    zero = jnp.zeros((), r.dtype)
    s, e = _fold_rows(add_squares, (zero, zero), (r,), _block_rows(r.shape[0], 1))
    xtx_inv = (d[:, None] * (r_inv @ r_inv.T)) * d[None, :]
    return LstsqParts(z * d, r, s + e, xtx_inv, R, jnp.asarray(route))


# -- the tall path: Cholesky of the Gram + refinement (n >> p) ----------------
#: ``method="auto"`` takes the tall path when ``n >= TALL_MIN_ROWS`` and
#: ``n >= TALL_MIN_RATIO * p`` (a static, shape-based choice).
TALL_MIN_ROWS = 4096
TALL_MIN_RATIO = 8
#: the Cholesky factor of the equilibrated Gram is used only when
#: ``cond_2(R)^2 * eps`` is at most this (each refinement sweep then shrinks
#: the error by about that factor); otherwise ``R`` comes from a Householder
#: QR of the design, decided at run time (``LstsqParts.route == ROUTE_TALL_QR``).
TALL_MAX_KAPPA2_EPS = 1e-3
#: above this ``kappa^2 eps`` a second Gram pass (CholQR2) improves ``R``, so
#: that ``(X'X)^{-1}`` (standard errors) is good to ~kappa eps, not kappa^2 eps
TALL_COV_KAPPA2_EPS = 1e-12
#: accuracy asked of every coefficient on the tall path (float64; scaled by
#: eps for float32), relative to the larger of the coefficient and its standard
#: error: when the estimated rounding error of the working-precision sweeps is
#: larger, accurate (double-double) sweeps follow, at most
#: ``TALL_MAX_ACC_SWEEPS`` of them.
TALL_REL_TOL = 1e-13
TALL_MAX_ACC_SWEEPS = 6


def _block_rows(n: int, p: int, budget: int = 2**18) -> int:
    """Rows per block: a power of two, about ``budget`` elements (``n`` if fewer)."""
    rows = 2 ** max(0, int(math.floor(math.log2(max(1, budget // max(p, 1))))))
    return int(min(n, 8192, max(256, rows)))


def _fold_rows(fn, carry, arrays, block: int):
    """Fold ``fn(carry, start, valid, *row_blocks)`` over row blocks of ``arrays``.

    A ``fori_loop`` of dynamic slices: no copy or padding of ``X``. When
    ``block`` does not divide ``n`` the last block is the last ``block`` rows,
    overlapping the one before; ``valid`` (or ``None`` when every row is new)
    masks the rows already seen. One block shape, so ``fn`` is traced once.
    """
    n = arrays[0].shape[0]
    nb = -(-n // block)
    ragged = n % block != 0

    def body(i, c):
        start = jnp.minimum(i * block, n - block)
        valid = (start + jnp.arange(block)) >= i * block if ragged else None
        blocks = (lax.dynamic_slice_in_dim(a, start, block) for a in arrays)
        return fn(c, start, valid, *blocks)

    return lax.fori_loop(0, nb, body, carry)


def _block_inputs(Xb, yb, swb, valid):
    """Weighted rows of one block, rows already seen zeroed."""
    if valid is not None:
        m = valid.astype(Xb.dtype)
        swb = m if swb is None else swb * m
    if swb is None:
        return Xb, yb
    return Xb * swb[:, None], yb * swb


def _put_rows(r, rb, start):
    """Write a block of rows into a carried vector (write-only: updated in place).

    Rows the overlapping last block shares with the one before are written
    twice with the same values (computed from the same inputs), so no mask.
    """
    return lax.dynamic_update_slice_in_dim(r, rb, start, 0)


def _tree_sum2_axis(terms: jax.Array, axis: int, radix: int = 8):
    """Sums of ``terms (m, k)`` along ``axis`` as ``(s, e)``; ``s + e`` is about twice
    as precise as the working precision.

    Like :func:`_tree_sum2`, but ``radix``-ary and on contiguous slabs: each
    level cascades TwoSum over ``radix`` slabs of whole rows (``axis=0``) or
    of column ranges (``axis=1``), so every operation is a vectorised add, and
    the rounding errors travel along in ``e`` (error ~eps^2 sum|terms|). Fewer,
    wider levels than a binary tree of strided slices: 2-3x faster to compile
    and to run.
    """

    def slab(a, lo, hi):
        return a[lo:hi] if axis == 0 else a[:, lo:hi]

    errs = jnp.zeros_like(terms)
    while terms.shape[axis] > 1:
        m = terms.shape[axis]
        k = min(radix, m)
        h = -(-m // k)
        if h * k != m:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (0, h * k - m)
            terms, errs = jnp.pad(terms, pad), jnp.pad(errs, pad)
        s, err = slab(terms, 0, h), slab(errs, 0, h)
        for j in range(1, k):
            s, e = _two_sum(s, slab(terms, j * h, (j + 1) * h))
            err = err + slab(errs, j * h, (j + 1) * h) + e
        terms, errs = s, err
    return (terms[0], errs[0]) if axis == 0 else (terms[:, 0], errs[:, 0])


def _dd_residual_rows(consts, ah, al, zh, zl):
    """``sum(consts, 1) + (ah + al) @ (zh + zl)`` by Dot2 (exact half-products).

    ``consts`` is ``(m, k)``, constants for the ``m`` rows. Returns ``(hi, lo)``.
    """
    terms = jnp.concatenate(
        [
            consts,
            ah * zh[None, :],
            ah * zl[None, :],
            al * zh[None, :],
            al * zl[None, :],
        ],
        axis=1,
    )
    s, e = _tree_sum2_axis(terms, 1)
    hi = s + e
    return hi, e - (hi - s)


def _dd_cross_rows(ah, al, r):
    """``A' r`` over the rows of a block by Dot2 (exact half-products) as ``(s, e)``."""
    rh, rl = _split(r)
    rh, rl = rh[:, None], rl[:, None]
    return _tree_sum2_axis(jnp.concatenate([ah * rh, ah * rl, al * rh, al * rl]), 0)


def _gram_panels_init(p: int, dt):
    """Zero accumulators for :func:`_gram_add` (two row panels when ``p >= 32``)."""
    q = p // 2 if p >= 32 else p
    return (jnp.zeros((q, p), dt),) + (
        (jnp.zeros((p - q, p - q), dt),) if q < p else ()
    )


def _gram_add(panels, B):
    """Add ``B'B`` into the panels: its upper rows ``[:q, :]`` and ``[q:, q:]``.

    The symmetric block ``[q:, :q]`` is skipped: 3/4 of a full product (XLA
    has no SYRK), on the block transposed in cache so each panel is a
    contiguous slice. About 15% faster than ``B'B`` at p = 100.
    """
    q = panels[0].shape[0]
    Bt = B.T
    nt = (((1,), (1,)), ((), ()))
    out = (panels[0] + lax.dot_general(Bt[:q], Bt, nt),)
    if len(panels) > 1:
        out += (panels[1] + lax.dot_general(Bt[q:], Bt[q:], nt),)
    return out


def _gram_full(panels):
    top = panels[0]
    if len(panels) == 1:
        return top
    q = top.shape[0]
    bottom = jnp.concatenate([top[:, q:].T, panels[1]], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def _tall_lstsq(X, y, sqrt_w, n_refine: int) -> LstsqParts:
    """Least squares for ``n >> p`` in a few passes over row blocks of ``X``.

    1. One pass: ``G = A'A``, ``A'y``, ``y'y`` of the weighted design ``A``.
    2. Exact power-of-two equilibration (``d G d`` is the Gram of the
       equilibrated design bit for bit), Cholesky ``G_eq = R'R``.
    3. If ``G`` is not finite, the Cholesky failed or ``kappa = cond_2(R)``
       has ``kappa^2 eps > TALL_MAX_KAPPA2_EPS``, ``R`` comes from a
       Householder QR of ``[A y]`` instead (``lax.cond``; an ``n x p`` copy;
       the last column gives the usual QR solution as the start) and the
       accurate sweeps of step 5 follow. They converge for ``kappa eps << 1``
       and reach a relative error ~``kappa^2 eps^2`` (semi-normal equations
       square the condition number: ~1e-13 at ``kappa`` = 1e9, where the
       Householder path's ``Q``-based refinement keeps ~1e-16).
    4. Otherwise, if ``kappa^2 eps > TALL_COV_KAPPA2_EPS``, a second pass
       improves ``R`` (CholQR2, see ``second_pass``); then corrected
       semi-normal equations: start from ``R'R z = A'y``; each sweep is one
       pass computing ``r = y - A z`` and ``A'r`` while the block is in cache,
       then ``z += R^{-1} R^{-T} A'r``, until the correction reaches rounding
       level or stops shrinking.
    5. The rounding error those working-precision sweeps leave in ``z`` is
       estimated from ``G``, ``y'y`` and the RSS; if it could exceed
       ``TALL_REL_TOL`` of some coefficient (or of its standard error, if
       larger), accurate sweeps follow: ``r`` and ``A'r`` by Dot2 with exact
       half-products (the Householder path's arithmetic), ``r`` kept as a
       double-double; they converge to the solution of the data as given.

    The returned ``resid`` is the last sweep's (before its correction, which
    is at rounding level); ``rss`` is corrected exactly for it
    (``||r - A dz||^2 = ||r||^2 - ||R dz||^2`` when ``R'R dz = A'r``).
    """
    n, p = X.shape
    dt = X.dtype
    eps = jnp.finfo(dt).eps
    block = _block_rows(n, p)
    arrays = (X, y) if sqrt_w is None else (X, y, sqrt_w)
    zero = jnp.zeros((), dt)
    eye = jnp.eye(p, dtype=dt)

    def gram_step(c, start, valid, Xb, yb, swb=None):
        G, Ay, yy, m = c
        Ab, yb = _block_inputs(Xb, yb, swb, valid)
        G = _gram_add(G, Ab)
        Ay = Ay + jnp.sum(Ab * yb[:, None], axis=0)
        if swb is None and valid is None:
            m = m + block
        else:  # rows that count: new ones with a positive weight
            live = jnp.ones(block, bool) if valid is None else valid
            live = live if swb is None else live & (swb != 0)
            m = m + jnp.sum(live).astype(dt)
        return G, Ay, yy + jnp.sum(yb * yb), m

    init = (_gram_panels_init(p, dt), jnp.zeros(p, dt), zero, zero)
    G, Ay, yy, n_eff = _fold_rows(gram_step, init, arrays, block)
    G = _gram_full(G)
    dg = jnp.diag(G)
    good = jnp.all(jnp.isfinite(G)) & jnp.all(dg > jnp.finfo(dt).tiny / eps)
    norms = jnp.sqrt(jnp.where(dg > 0, dg, 1.0))
    d = jnp.ldexp(jnp.ones((), dt), (-jnp.round(jnp.log2(norms))).astype(jnp.int32))
    Geq = G * d[:, None] * d[None, :]
    R_chol = jnp.linalg.cholesky(jnp.where(good, Geq, eye)).T
    inv_chol = solve_triangular(R_chol, eye, lower=False)
    sv = jnp.linalg.svd(jnp.where(jnp.isfinite(R_chol), R_chol, 0.0), compute_uv=False)
    kappa = sv[0] / sv[-1]  # 2-norm condition number of the equilibrated design
    kappa = jnp.where(jnp.all(jnp.isfinite(R_chol)), kappa, jnp.inf)
    use_chol = good & (kappa * kappa * eps <= TALL_MAX_KAPPA2_EPS)

    def fast_sweep(z):
        """Residual ``r = y - A z`` and ``A'r`` in working precision (one pass)."""
        b = z * d

        def step(c, start, valid, Xb, yb, swb=None):
            r, g, s, e = c
            Ab, yb = _block_inputs(Xb, yb, swb, None)
            rb = yb - Ab @ b
            r = _put_rows(r, rb, start)
            if valid is not None:  # rows of the block before: counted already
                rb = jnp.where(valid, rb, 0.0)
            s, e2 = _two_sum(s, jnp.sum(rb * rb))
            return r, g + jnp.sum(Ab * rb[:, None], axis=0), s, e + e2

        init = (jnp.zeros(n, dt), jnp.zeros(p, dt), zero, zero)
        r, g, s, e = _fold_rows(step, init, arrays, block)
        return r, g, s + e

    def acc_sweep(z):
        """``r = y - A z`` as a double-double and ``A'r`` by Dot2 (one pass)."""
        zh, zl = _split(-(z * d))

        def step(c, start, valid, Xb, yb, swb=None):
            r, gs, ge, s, e = c
            Ab, yb = _block_inputs(Xb, yb, swb, None)
            ah, al = _split(Ab)
            rh, rl = _dd_residual_rows(yb[:, None], ah, al, zh, zl)
            r = _put_rows(r, rh, start)
            if valid is not None:  # rows of the block before: counted already
                rh, rl = jnp.where(valid, rh, 0.0), jnp.where(valid, rl, 0.0)
            cs, ce = _dd_cross_rows(ah, al, rh)
            gs, ge2 = _two_sum(gs, cs)
            ge = ge + ge2 + ce + jnp.sum(Ab * rl[:, None], axis=0)
            s, e2 = _two_sum(s, jnp.sum(rh * rh))
            return r, gs, ge, s, e + e2 + 2 * jnp.sum(rh * rl)

        zp = jnp.zeros(p, dt)
        init = (jnp.zeros(n, dt), zp, zp, zero, zero)
        r, gs, ge, s, e = _fold_rows(step, init, arrays, _block_rows(n, p, 2**16))
        return r, gs + ge, s + e

    def refine(sweep, R, inv, z, r, rss, max_sweeps, componentwise=False):
        def cond(c):
            return (c[0] < max_sweeps) & ~c[-1]

        def body(c):
            k, z, prev, _, _, _, _ = c
            r, g, rss = sweep(z)
            dz = inv @ (inv.T @ (g * d))  # (R'R)^{-1} A'r, equilibrated
            size = jnp.max(jnp.abs(dz))
            take = size <= prev
            z = jnp.where(take, z + dz, z)
            # RSS at z + dz without another sweep: ||r - A dz||^2 = ||r||^2 - ||R dz||^2
            rss = jnp.where(take, rss - jnp.sum((R @ dz) ** 2), rss)
            if componentwise:  # every coefficient settled
                done = jnp.all(jnp.abs(dz) <= eps * jnp.abs(z))
            else:  # settled relative to the largest
                done = size <= eps * jnp.max(jnp.abs(z))
            # stop too when stalled, or on NaN (a singular R: rank-deficient X)
            stop = done | ~(size <= 0.5 * prev)
            return k + 1, z, size, r, jnp.maximum(rss, 0.0), jnp.abs(dz), stop

        init = (0, z, jnp.asarray(jnp.inf, dt), r, rss, jnp.zeros(p, dt), False)
        _, z, _, r, rss, last, _ = lax.while_loop(cond, body, init)
        return z, r, rss, last

    def second_pass(_):
        """CholQR2: ``R = R2 R1`` with ``R2`` from the Gram of ``A R1^{-1}``.

        ``R1'R1`` is the computed Gram, off by ~eps ||A||^2 in any direction,
        so ``R1^{-1} R1^{-T}`` is only good to ~kappa^2 eps. ``A R1^{-1}`` is
        well conditioned, so ``R2 R1`` is as good as a Householder ``R`` (a
        backward-stable factor, ``(R'R)^{-1}`` good to ~kappa eps) and the
        refinement contracts by ~kappa eps instead of ~kappa^2 eps a sweep.
        """
        m1 = d[:, None] * inv_chol

        def step(c, start, valid, Xb, yb, swb=None):
            Ab, _ = _block_inputs(Xb, yb, swb, valid)
            B = Ab @ m1
            return _gram_add(c, B)

        G2 = _gram_full(_fold_rows(step, _gram_panels_init(p, dt), arrays, block))
        R2 = jnp.linalg.cholesky(G2).T
        inv2 = solve_triangular(R2, eye, lower=False)
        R, inv = R2 @ R_chol, inv_chol @ inv2
        ok = jnp.all(jnp.isfinite(inv))
        return jnp.where(ok, R, R_chol), jnp.where(ok, inv, inv_chol)

    def cholesky_start(_):
        R, inv = lax.cond(
            kappa * kappa * eps > TALL_COV_KAPPA2_EPS,
            second_pass,
            lambda _: (R_chol, inv_chol),
            None,
        )
        z0 = inv @ (inv.T @ (Ay * d))
        z, r, rss, last = refine(
            fast_sweep, R, inv, z0, jnp.zeros(n, dt), zero, n_refine + 2
        )
        if n_refine == 0:  # a factorisation is all that was asked for
            return R, inv, z, r, rss, jnp.asarray(False)
        # Expected size of the error that rounding in the sweeps leaves in z
        # (equilibrated units; it overestimated the actual one 3-300x in the
        # tests): r_i = y_i - a_i z rounds by ~eps (|y_i| + sum_j |a_ij z_j|),
        # and mean_i (sum_j |a_ij z_j|)^2 <= (sum_j sqrt(G_jj / n) |z_j|)^2
        # (Cauchy-Schwarz over rows), which moves z_j by eps sqrt(h_jj mean(..));
        # A'r summed over blocks of m rows rounds by ~eps sqrt(m/2) ||a_j o r||,
        # moving z by h times that.
        h_inv = inv @ inv.T
        hd = jnp.diag(h_inv)
        az = jnp.sum(jnp.sqrt(jnp.diag(Geq)) * jnp.abs(z))
        ms = 2.0 * (yy + az * az) / n_eff
        e1 = eps * jnp.sqrt(hd * ms)
        hh = (h_inv * h_inv) @ jnp.diag(Geq)
        e2 = eps * jnp.sqrt((block / 2) * hh * rss / n_eff)
        se = jnp.sqrt(hd * rss / jnp.maximum(n_eff - p, 1.0))
        tol = TALL_REL_TOL * (eps / np.finfo(np.float64).eps)  # scaled for float32
        rough = jnp.any(e1 + e2 + last > tol * jnp.maximum(jnp.abs(z), se))
        return R, inv, z, r, rss, rough

    def qr_start(_):
        # R from Householder QR of [A y] (an n x (p+1) copy): its last column
        # gives the usual QR solution, a good start for the accurate sweeps.
        Ab, yb = _block_inputs(X, y, sqrt_w, None)
        Rf = jnp.linalg.qr(
            jnp.concatenate([Ab * d[None, :], yb[:, None]], axis=1), mode="r"
        )
        R = Rf[:p, :p]
        inv = solve_triangular(R, eye, lower=False)
        z = inv @ Rf[:p, p]
        if n_refine == 0:  # no accurate sweeps: one for the residual
            r, _, rss = fast_sweep(z)
        else:
            r, rss = jnp.zeros(n, dt), Rf[p, p] ** 2
        return R, inv, z, r, rss, jnp.asarray(n_refine > 0)

    R, inv, z, r, rss, rough = lax.cond(use_chol, cholesky_start, qr_start, None)
    if n_refine > 0:

        def accurate(_):
            out = refine(acc_sweep, R, inv, z, r, rss, TALL_MAX_ACC_SWEEPS, True)
            return out[:3]

        z, r, rss = lax.cond(rough, accurate, lambda _: (z, r, rss), None)
    route = jnp.where(
        use_chol, jnp.where(rough, ROUTE_TALL_ACCURATE, ROUTE_TALL), ROUTE_TALL_QR
    )
    xtx_inv = (d[:, None] * (inv @ inv.T)) * d[None, :]
    return LstsqParts(z * d, r, rss, xtx_inv, R, route)


def lstsq_core(
    X, y, sqrt_w=None, n_refine: int = 3, method: str = "auto"
) -> LstsqParts:
    """Jittable accurate least squares of ``sqrt_w*y`` on ``sqrt_w*X``.

    ``method`` (static): ``"householder"`` (any shape), ``"tall"`` (Gram +
    Cholesky + refinement; ``R`` from a Householder QR instead, at run time,
    when the equilibrated design is too ill-conditioned for that), or
    ``"auto"``: ``"tall"`` when ``n >= TALL_MIN_ROWS`` and
    ``n >= TALL_MIN_RATIO * p``.
    """
    n, p = X.shape
    if method == "auto":
        tall = n >= TALL_MIN_ROWS and n >= TALL_MIN_RATIO * p
        method = "tall" if tall else "householder"
    if method == "householder":
        return _householder_lstsq(X, y, sqrt_w, n_refine)
    if method == "tall":
        return _tall_lstsq(X, y, sqrt_w, n_refine)
    raise ValueError(f"method must be 'auto', 'householder' or 'tall'; got {method!r}.")


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
