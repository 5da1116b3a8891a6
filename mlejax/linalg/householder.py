"""Householder QR + Björck refinement with double-double residuals (any shape).

The equilibrated design ``A = X D`` (``D`` powers of two, :func:`pow2_scale`)
is factored ``A = QR``; then the augmented system ``[I A; A' 0][r; z] = [y; 0]``
is refined with both residuals ``f = y - r - A z`` and ``A'r`` accumulated in
about twice the working precision (plain refinement of ``z`` alone stalls at
``kappa^2 eps ||r||`` on inconsistent data).

References:
  Björck (1996), Numerical Methods for Least Squares Problems, sec. 2.9.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

from mlejax._math import dd_cross_rows, dd_residual_rows, pow2_scale, split, two_sum
from mlejax.linalg.blocks import block_rows, fold_rows, put_rows
from mlejax.linalg.parts import ROUTE_HOUSEHOLDER, LstsqParts, unscaled_inverse_gram

#: the carry of one refinement sweep: ``(z, dz, r, f)``
_Sweep = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
#: the carry of its fold over row blocks: ``(r, f, gs, ge, qf)``
_Fold = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


def householder_lstsq(
    X: jax.Array, y: jax.Array, sqrt_w: jax.Array | None, n_refine: int
) -> LstsqParts:
    """Least squares of ``sqrt_w*y`` on ``sqrt_w*X`` by Householder QR, refined.

    Each of the ``n_refine + 1`` sweeps is one pass over row blocks of ``A``
    and ``Q``; ``r`` starts at 0, so the first sweep also computes the residual
    of the QR solution.
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
    blk = block_rows(n, p, 2**16)
    zp = jnp.zeros(p, dt)
    # a loop, not unrolled: the sweep is traced (and compiled) once
    sweep = functools.partial(_sweep, A, Q, y, R, r_inv, zp, blk)
    init = (z, zp, jnp.zeros(n, dt), jnp.zeros(n, dt))
    z, dz, r, f = lax.fori_loop(0, n_refine + 1, sweep, init)

    r = r + (f - A @ dz)  # the last sweep's pending update
    rss = _sum_of_squares(r)
    return LstsqParts(
        z * d,
        r,
        rss,
        unscaled_inverse_gram(r_inv, d),
        R,
        jnp.asarray(ROUTE_HOUSEHOLDER),
    )


def _sweep(
    A: jax.Array,
    Q: jax.Array,
    y: jax.Array,
    R: jax.Array,
    r_inv: jax.Array,
    zp: jax.Array,
    blk: int,
    _: jax.Array,
    c: _Sweep,
) -> _Sweep:
    """One refinement sweep: the pending ``r`` update, ``f``, ``A'r``, then ``dz``."""
    z, dz, r, f = c
    zh, zl = split(-z)
    step = functools.partial(_sweep_step, dz, zh, zl)
    zn = jnp.zeros(A.shape[0], A.dtype)
    r, f, gs, ge, qf = fold_rows(step, (zn, zn, zp, zp, zp), (A, Q, y, r, f), blk)
    h = r_inv.T @ (gs + ge)  # R^{-T} A'r
    dz = solve_triangular(R, qf + h, lower=False)
    return z + dz, dz, r, f


def _sweep_step(
    dz: jax.Array,
    zh: jax.Array,
    zl: jax.Array,
    c: _Fold,
    start: jax.Array,
    valid: jax.Array | None,
    Ab: jax.Array,
    Qb: jax.Array,
    yb: jax.Array,
    rb: jax.Array,
    fb: jax.Array,
) -> _Fold:
    """One row block of a sweep: ``r += f - A dz``, ``f = y - r - A z`` (Dot2), sums."""
    r, f, gs, ge, qf = c  # r, f are only written: updated in place
    rb = rb + (fb - Ab @ dz)
    ah, al = split(Ab)
    fb = sum(dd_residual_rows(jnp.stack([yb, -rb], axis=1), ah, al, zh, zl))
    r, f = put_rows(r, rb, start), put_rows(f, fb, start)
    if valid is not None:  # rows of the block before: counted already
        rb, fb = jnp.where(valid, rb, 0.0), jnp.where(valid, fb, 0.0)
    cs, ce = dd_cross_rows(ah, al, rb)
    gs, ge2 = two_sum(gs, cs)
    qf = qf + jnp.sum(Qb * fb[:, None], axis=0)
    return r, f, gs, ge + ge2 + ce, qf


def _sum_of_squares(r: jax.Array) -> jax.Array:
    """``sum(r**2)``: block sums, accumulated across blocks with TwoSum."""
    zero = jnp.zeros((), r.dtype)
    s, e = fold_rows(_add_squares, (zero, zero), (r,), block_rows(r.shape[0], 1))
    return s + e


def _add_squares(
    c: tuple[jax.Array, jax.Array],
    start: jax.Array,
    valid: jax.Array | None,
    rb: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    rb = rb if valid is None else jnp.where(valid, rb, 0.0)
    s, e = two_sum(c[0], jnp.sum(rb * rb))
    return s, c[1] + e
