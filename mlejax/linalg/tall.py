"""Least squares for ``n >> p``: Cholesky of the Gram + refinement, by row blocks.

:func:`tall_lstsq` reads the weighted design ``A`` in a few passes over row
blocks (``blocks.fold_rows``: no copy of ``X``):

1. One pass (:func:`_gram_pass`): ``G = A'A``, ``A'y``, ``y'y``.
2. Exact power-of-two equilibration (``d G d`` is the Gram of the
   equilibrated design bit for bit), Cholesky ``G_eq = R'R``
   (:func:`_factor`).
3. If ``G`` is not finite, the Cholesky failed or ``kappa = cond_2(R)``
   has ``kappa^2 eps > TALL_MAX_KAPPA2_EPS``, ``R`` comes from a
   Householder QR of ``[A y]`` instead (:func:`_qr_start`, under
   ``lax.cond``; an ``n x p`` copy; the last column gives the usual QR
   solution as the start) and the accurate sweeps of step 5 follow. They
   converge for ``kappa eps << 1`` and reach a relative error
   ~``kappa^2 eps^2`` (semi-normal equations square the condition number:
   ~1e-13 at ``kappa`` = 1e9, where the Householder path's ``Q``-based
   refinement keeps ~1e-16).
4. Otherwise (:func:`_cholesky_start`), if ``kappa^2 eps >
   TALL_COV_KAPPA2_EPS``, a second pass improves ``R`` (CholQR2, see
   :func:`_second_pass`); then corrected semi-normal equations
   (:func:`_refine`): start from ``R'R z = A'y``; each sweep is one pass
   computing ``r = y - A z`` and ``A'r`` while the block is in cache
   (:func:`_fast_sweep`), then ``z += R^{-1} R^{-T} A'r``, until the
   correction reaches rounding level or stops shrinking.
5. The rounding error those working-precision sweeps leave in ``z`` is
   estimated from ``G``, ``y'y`` and the RSS (:func:`_is_rough`); if it could
   exceed ``TALL_REL_TOL`` of some coefficient (or of its standard error, if
   larger), accurate sweeps follow (:func:`_accurate_sweep`): ``r`` and
   ``A'r`` by Dot2 with exact half-products (the Householder path's
   arithmetic), ``r`` kept as a double-double; they converge to the solution
   of the data as given.

The returned ``resid`` is the last sweep's (before its correction, which is
at rounding level); ``rss`` is corrected exactly for it (``||r - A dz||^2 =
||r||^2 - ||R dz||^2`` when ``R'R dz = A'r``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

from mlejax._math import (
    dd_cross_rows,
    dd_residual_rows,
    pow2_from_norms,
    split,
    two_sum,
)
from mlejax.linalg.blocks import (
    block_inputs,
    block_rows,
    fold_rows,
    gram_add,
    gram_full,
    gram_panels_init,
    put_rows,
)
from mlejax.linalg.parts import (
    ROUTE_TALL,
    ROUTE_TALL_ACCURATE,
    ROUTE_TALL_QR,
    LstsqParts,
    unscaled_inverse_gram,
)

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

#: the rows of the design: ``(X, y)`` or ``(X, y, sqrt_w)``
Rows = tuple[jax.Array, ...]
#: a sweep: ``z -> (r, A'r, ||r||^2)``
Sweep = Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
#: what a start returns: ``(R, R^{-1}, z, r, rss, rough)``
Start = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]


class Gram(NamedTuple):
    """One pass over the weighted rows (:func:`_gram_pass`)."""

    G: jax.Array  # (p, p) A'A
    Ay: jax.Array  # (p,) A'y
    yy: jax.Array  # y'y
    n_eff: jax.Array  # rows that count: new ones with a positive weight


class Factor(NamedTuple):
    """The Cholesky factor of the equilibrated Gram (:func:`_factor`)."""

    d: jax.Array  # (p,) powers of two: A D is the equilibrated design
    Geq: jax.Array  # (p, p) D G D
    R: jax.Array  # (p, p) upper Cholesky factor of Geq
    inv: jax.Array  # (p, p) R^{-1}
    kappa: jax.Array  # 2-norm condition number of R (inf when not finite)
    use_chol: jax.Array  # bool: good enough to refine with


def tall_lstsq(
    X: jax.Array, y: jax.Array, sqrt_w: jax.Array | None, n_refine: int
) -> LstsqParts:
    """Least squares of ``sqrt_w*y`` on ``sqrt_w*X`` in a few passes over row blocks.

    See the module docstring for the steps. ``n_refine == 0`` asks for a
    factorisation only (no accurate sweeps).
    """
    n, p = X.shape
    block = block_rows(n, p)
    rows = (X, y) if sqrt_w is None else (X, y, sqrt_w)
    gram = _gram_pass(rows, block)
    fac = _factor(gram.G)
    cholesky_start = functools.partial(
        _cholesky_start, rows, block, gram, fac, n_refine
    )
    qr_start = functools.partial(_qr_start, rows, block, fac.d, n_refine)
    R, inv, z, r, rss, rough = lax.cond(fac.use_chol, cholesky_start, qr_start, None)
    if n_refine > 0:
        accurate = functools.partial(_accurate, rows, R, inv, fac.d, z, r, rss)
        z, r, rss = lax.cond(rough, accurate, lambda _: (z, r, rss), None)
    route = jnp.where(
        fac.use_chol, jnp.where(rough, ROUTE_TALL_ACCURATE, ROUTE_TALL), ROUTE_TALL_QR
    )
    xtx_inv = unscaled_inverse_gram(inv, fac.d)
    return LstsqParts(z * fac.d, r, rss, xtx_inv, R, route)


# -- pass 1 and the factor ----------------------------------------------------
def _gram_pass(rows: Rows, block: int) -> Gram:
    """``A'A`` (in panels), ``A'y``, ``y'y`` and the count of live rows, one pass."""
    p, dt = rows[0].shape[1], rows[0].dtype
    zero = jnp.zeros((), dt)
    init = (gram_panels_init(p, dt), jnp.zeros(p, dt), zero, zero)
    G, Ay, yy, n_eff = fold_rows(_gram_step, init, rows, block)
    return Gram(gram_full(G), Ay, yy, n_eff)


def _gram_step(
    c: tuple,
    start: jax.Array,
    valid: jax.Array | None,
    Xb: jax.Array,
    yb: jax.Array,
    swb: jax.Array | None = None,
) -> tuple:
    G, Ay, yy, m = c
    block, dt = Xb.shape[0], Xb.dtype
    Ab, yb = block_inputs(Xb, yb, swb, valid)
    G = gram_add(G, Ab)
    Ay = Ay + jnp.sum(Ab * yb[:, None], axis=0)
    if swb is None and valid is None:
        m = m + block
    else:  # rows that count: new ones with a positive weight
        live = jnp.ones(block, bool) if valid is None else valid
        live = live if swb is None else live & (swb != 0)
        m = m + jnp.sum(live).astype(dt)
    return G, Ay, yy + jnp.sum(yb * yb), m


def _factor(G: jax.Array) -> Factor:
    """Equilibrate ``G`` exactly, factor it, and judge whether the factor will do."""
    p, dt = G.shape[0], G.dtype
    eps = jnp.finfo(dt).eps
    eye = jnp.eye(p, dtype=dt)
    dg = jnp.diag(G)
    good = jnp.all(jnp.isfinite(G)) & jnp.all(dg > jnp.finfo(dt).tiny / eps)
    d = pow2_from_norms(jnp.sqrt(jnp.where(dg > 0, dg, 1.0)))
    Geq = G * d[:, None] * d[None, :]
    R = jnp.linalg.cholesky(jnp.where(good, Geq, eye)).T
    inv = solve_triangular(R, eye, lower=False)
    sv = jnp.linalg.svd(jnp.where(jnp.isfinite(R), R, 0.0), compute_uv=False)
    kappa = sv[0] / sv[-1]  # 2-norm condition number of the equilibrated design
    kappa = jnp.where(jnp.all(jnp.isfinite(R)), kappa, jnp.inf)
    use_chol = good & (kappa * kappa * eps <= TALL_MAX_KAPPA2_EPS)
    return Factor(d, Geq, R, inv, kappa, use_chol)


# -- the two starts (branches of one lax.cond) --------------------------------
def _cholesky_start(
    rows: Rows, block: int, gram: Gram, fac: Factor, n_refine: int, _: None
) -> Start:
    """CholQR2 if needed, working-precision sweeps, and whether they are enough."""
    n, p = rows[0].shape
    dt = rows[0].dtype
    eps = jnp.finfo(dt).eps
    R, inv = lax.cond(
        fac.kappa * fac.kappa * eps > TALL_COV_KAPPA2_EPS,
        functools.partial(_second_pass, rows, block, fac),
        lambda _: (fac.R, fac.inv),
        None,
    )
    z0 = inv @ (inv.T @ (gram.Ay * fac.d))
    sweep = functools.partial(_fast_sweep, rows, block, fac.d)
    zero = jnp.zeros((), dt)
    z, r, rss, last = _refine(
        sweep, R, inv, fac.d, z0, jnp.zeros(n, dt), zero, n_refine + 2
    )
    if n_refine == 0:  # a factorisation is all that was asked for
        return R, inv, z, r, rss, jnp.asarray(False)
    rough = _is_rough(inv, fac.Geq, gram, z, rss, last, block)
    return R, inv, z, r, rss, rough


def _is_rough(
    inv: jax.Array,
    Geq: jax.Array,
    gram: Gram,
    z: jax.Array,
    rss: jax.Array,
    last: jax.Array,
    block: int,
) -> jax.Array:
    """Whether the working-precision sweeps may miss ``TALL_REL_TOL``.

    Expected size of the error that rounding in the sweeps leaves in z
    (equilibrated units; it overestimated the actual one 3-300x in the
    tests): r_i = y_i - a_i z rounds by ~eps (|y_i| + sum_j |a_ij z_j|),
    and mean_i (sum_j |a_ij z_j|)^2 <= (sum_j sqrt(G_jj / n) |z_j|)^2
    (Cauchy-Schwarz over rows), which moves z_j by eps sqrt(h_jj mean(..));
    A'r summed over blocks of m rows rounds by ~eps sqrt(m/2) ||a_j o r||,
    moving z by h times that. ``last`` is the last correction ``|dz|``.
    """
    p = z.shape[0]
    eps = jnp.finfo(z.dtype).eps
    h_inv = inv @ inv.T
    hd = jnp.diag(h_inv)
    az = jnp.sum(jnp.sqrt(jnp.diag(Geq)) * jnp.abs(z))
    ms = 2.0 * (gram.yy + az * az) / gram.n_eff
    e1 = eps * jnp.sqrt(hd * ms)
    hh = (h_inv * h_inv) @ jnp.diag(Geq)
    e2 = eps * jnp.sqrt((block / 2) * hh * rss / gram.n_eff)
    se = jnp.sqrt(hd * rss / jnp.maximum(gram.n_eff - p, 1.0))
    tol = TALL_REL_TOL * (eps / np.finfo(np.float64).eps)  # scaled for float32
    return jnp.any(e1 + e2 + last > tol * jnp.maximum(jnp.abs(z), se))


def _qr_start(rows: Rows, block: int, d: jax.Array, n_refine: int, _: None) -> Start:
    """``R`` from Householder QR of ``[A y]`` (an ``n x (p+1)`` copy).

    Its last column gives the usual QR solution, a good start for the
    accurate sweeps.
    """
    X, y, *sw = rows
    n, p = X.shape
    dt = X.dtype
    eye = jnp.eye(p, dtype=dt)
    Ab, yb = block_inputs(X, y, sw[0] if sw else None, None)
    Rf = jnp.linalg.qr(
        jnp.concatenate([Ab * d[None, :], yb[:, None]], axis=1), mode="r"
    )
    R = Rf[:p, :p]
    inv = solve_triangular(R, eye, lower=False)
    z = inv @ Rf[:p, p]
    if n_refine == 0:  # no accurate sweeps: one for the residual
        r, _, rss = _fast_sweep(rows, block, d, z)
    else:
        r, rss = jnp.zeros(n, dt), Rf[p, p] ** 2
    return R, inv, z, r, rss, jnp.asarray(n_refine > 0)


def _second_pass(
    rows: Rows, block: int, fac: Factor, _: None
) -> tuple[jax.Array, jax.Array]:
    """CholQR2: ``R = R2 R1`` with ``R2`` from the Gram of ``A R1^{-1}``.

    ``R1'R1`` is the computed Gram, off by ~eps ||A||^2 in any direction,
    so ``R1^{-1} R1^{-T}`` is only good to ~kappa^2 eps. ``A R1^{-1}`` is
    well conditioned, so ``R2 R1`` is as good as a Householder ``R`` (a
    backward-stable factor, ``(R'R)^{-1}`` good to ~kappa eps) and the
    refinement contracts by ~kappa eps instead of ~kappa^2 eps a sweep.
    Falls back to ``R1`` when ``R2`` is not finite.
    """
    p, dt = rows[0].shape[1], rows[0].dtype
    eye = jnp.eye(p, dtype=dt)
    m1 = fac.d[:, None] * fac.inv
    step = functools.partial(_second_pass_step, m1)
    G2 = gram_full(fold_rows(step, gram_panels_init(p, dt), rows, block))
    R2 = jnp.linalg.cholesky(G2).T
    inv2 = solve_triangular(R2, eye, lower=False)
    R, inv = R2 @ fac.R, fac.inv @ inv2
    ok = jnp.all(jnp.isfinite(inv))
    return jnp.where(ok, R, fac.R), jnp.where(ok, inv, fac.inv)


def _second_pass_step(
    m1: jax.Array,
    c: tuple[jax.Array, ...],
    start: jax.Array,
    valid: jax.Array | None,
    Xb: jax.Array,
    yb: jax.Array,
    swb: jax.Array | None = None,
) -> tuple[jax.Array, ...]:
    Ab, _ = block_inputs(Xb, yb, swb, valid)
    B = Ab @ m1
    return gram_add(c, B)


# -- refinement ----------------------------------------------------------------
def _refine(
    sweep: Sweep,
    R: jax.Array,
    inv: jax.Array,
    d: jax.Array,
    z: jax.Array,
    r: jax.Array,
    rss: jax.Array,
    max_sweeps: int,
    componentwise: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Corrected semi-normal equations: ``z += (R'R)^{-1} A'(y - A z)``, repeated.

    At most ``max_sweeps`` sweeps; stops when the correction is at rounding
    level (of every coefficient if ``componentwise``, else of the largest),
    stops shrinking, or is NaN. Returns ``(z, r, rss, |last dz|)``.
    """
    p, dt = z.shape[0], z.dtype
    body = functools.partial(_refine_body, sweep, R, inv, d, componentwise)
    init = (0, z, jnp.asarray(jnp.inf, dt), r, rss, jnp.zeros(p, dt), False)
    _, z, _, r, rss, last, _ = lax.while_loop(
        functools.partial(_refine_cond, max_sweeps), body, init
    )
    return z, r, rss, last


def _refine_cond(max_sweeps: int, c: tuple) -> jax.Array:
    return (c[0] < max_sweeps) & ~c[-1]


def _refine_body(
    sweep: Sweep,
    R: jax.Array,
    inv: jax.Array,
    d: jax.Array,
    componentwise: bool,
    c: tuple,
) -> tuple:
    k, z, prev, _, _, _, _ = c
    eps = jnp.finfo(z.dtype).eps
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


def _accurate(
    rows: Rows,
    R: jax.Array,
    inv: jax.Array,
    d: jax.Array,
    z: jax.Array,
    r: jax.Array,
    rss: jax.Array,
    _: None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Refinement by :func:`_accurate_sweep`, every coefficient to rounding level."""
    sweep = functools.partial(_accurate_sweep, rows, d)
    out = _refine(sweep, R, inv, d, z, r, rss, TALL_MAX_ACC_SWEEPS, True)
    return out[:3]


# -- the sweeps: one pass each -------------------------------------------------
def _fast_sweep(
    rows: Rows, block: int, d: jax.Array, z: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Residual ``r = y - A z`` and ``A'r`` in working precision (one pass)."""
    n, p = rows[0].shape
    dt = rows[0].dtype
    zero = jnp.zeros((), dt)
    step = functools.partial(_fast_step, z * d)
    init = (jnp.zeros(n, dt), jnp.zeros(p, dt), zero, zero)
    r, g, s, e = fold_rows(step, init, rows, block)
    return r, g, s + e


def _fast_step(
    b: jax.Array,
    c: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    start: jax.Array,
    valid: jax.Array | None,
    Xb: jax.Array,
    yb: jax.Array,
    swb: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    r, g, s, e = c
    Ab, yb = block_inputs(Xb, yb, swb, None)
    rb = yb - Ab @ b
    r = put_rows(r, rb, start)
    if valid is not None:  # rows of the block before: counted already
        rb = jnp.where(valid, rb, 0.0)
    s, e2 = two_sum(s, jnp.sum(rb * rb))
    return r, g + jnp.sum(Ab * rb[:, None], axis=0), s, e + e2


def _accurate_sweep(
    rows: Rows, d: jax.Array, z: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``r = y - A z`` as a double-double and ``A'r`` by Dot2 (one pass)."""
    n, p = rows[0].shape
    dt = rows[0].dtype
    zero = jnp.zeros((), dt)
    zh, zl = split(-(z * d))
    step = functools.partial(_accurate_step, zh, zl)
    zp = jnp.zeros(p, dt)
    init = (jnp.zeros(n, dt), zp, zp, zero, zero)
    r, gs, ge, s, e = fold_rows(step, init, rows, block_rows(n, p, 2**16))
    return r, gs + ge, s + e


def _accurate_step(
    zh: jax.Array,
    zl: jax.Array,
    c: tuple[jax.Array, ...],
    start: jax.Array,
    valid: jax.Array | None,
    Xb: jax.Array,
    yb: jax.Array,
    swb: jax.Array | None = None,
) -> tuple[jax.Array, ...]:
    r, gs, ge, s, e = c
    Ab, yb = block_inputs(Xb, yb, swb, None)
    ah, al = split(Ab)
    rh, rl = dd_residual_rows(yb[:, None], ah, al, zh, zl)
    r = put_rows(r, rh, start)
    if valid is not None:  # rows of the block before: counted already
        rh, rl = jnp.where(valid, rh, 0.0), jnp.where(valid, rl, 0.0)
    cs, ce = dd_cross_rows(ah, al, rh)
    gs, ge2 = two_sum(gs, cs)
    ge = ge + ge2 + ce + jnp.sum(Ab * rl[:, None], axis=0)
    s, e2 = two_sum(s, jnp.sum(rh * rh))
    return r, gs, ge, s, e + e2 + 2 * jnp.sum(rh * rl)
