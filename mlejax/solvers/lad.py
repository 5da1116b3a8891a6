"""Exact weighted least absolute deviations by simplex pivots on the vertices.

Minimises ``f(b) = sum_i w_i |y_i - x_i b|`` (frequency weights ``w_i >= 0``;
rows with ``w_i = 0`` are ignored entirely) with a Barrodale-Roberts-style
simplex method on the LAD linear program, written as one ``lax.while_loop``:
pure, jit- and vmap-compatible (no host callbacks, static shapes).

A *vertex* is ``b = X_S^{-1} y_S`` for a basis ``S`` of ``p`` rows with
linearly independent ``x_i``. ``f`` is convex and piecewise linear and its
minimum is attained at a vertex, so walking from vertex to vertex along the
edges that decrease ``f`` ends at the exact LAD optimum:

1. *Initial basis*: rows in order of ``|r_i|`` at a starting point ``beta0``
   (e.g. a few IRLS steps), keeping a row when its part orthogonal to the rows
   already kept is more than ``max(1e-8, 100 eps)`` of its norm (designs with
   dummy columns often make the ``p`` smallest-residual rows singular).
2. *Certificate*: with ``s_i = sign(r_i)`` off the basis (0 for residuals at
   the rounding level of ``|y_i| + |x_i||b|``), ``g = sum_{i not in S} w_i s_i
   x_i`` and ``X_S' v = -g``, the vertex is optimal iff ``|v_i| <= w_i`` for
   every basic row (``0`` is then in the subdifferential). The check allows a
   relative slack ``1e3 eps (p + sqrt(n))`` for rounding.
3. *Pivot*: otherwise the basic row ``j`` with the largest ``|v_j| / w_j``
   leaves: along ``delta = sigma X_S^{-1} e_j`` (``sigma = -sign(v_j)``) the
   slope of ``f`` starts at ``w_j - |v_j| < 0`` and rises by ``2 w_i |z_i|``
   (``z = X delta``) at each breakpoint ``r_i / z_i > 0`` where a residual
   changes sign (``w_i |z_i|`` at 0 for a zero residual). The exact line search
   moves to the breakpoint where the slope becomes ``>= 0`` (a weighted
   median, passing several breakpoints at once as in Barrodale & Roberts,
   1973) and that row enters the basis. ``b`` is re-solved from the basis at
   every pivot (no drift); columns are equilibrated by powers of two.
4. Ties (degenerate vertices, common with integer ``y``) are broken by the
   stable order of the row index; cycling is possible in principle, hence the
   static pivot cap. Uncertified at the cap, the best vertex seen is returned
   with ``certified=False``.

Reference: I. Barrodale and F. D. K. Roberts, "An improved algorithm for
discrete l1 linear approximation", SIAM J. Numer. Anal. 10 (1973) 839-848.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve

from mlejax._math import pow2_scale

__all__ = ["LADResult", "lad", "lad_basis"]


class LADResult(NamedTuple):
    """Outcome of :func:`lad`.

    Attributes:
      beta: the coefficients ``(p,)`` (the vertex ``X_S^{-1} y_S``).
      objective: ``sum_i w_i |y_i - x_i beta|``.
      basis: ``(p,)`` row indices ``S`` of the final vertex.
      n_pivots: simplex pivots taken.
      certified: the optimality certificate holds at ``beta`` (exact optimum).
      exact_fit: every positive-weight residual is zero up to rounding.
    """

    beta: jax.Array
    objective: jax.Array
    basis: jax.Array
    n_pivots: jax.Array
    certified: jax.Array
    exact_fit: jax.Array


def lad_basis(A, r, w):
    """Greedy basis: ``p`` independent positive-weight rows, smallest ``|r|`` first.

    Scans the rows in order of ``|r_i|`` (one ``lax.while_loop`` that stops
    once ``p`` rows are kept) and keeps a row when the norm of its component
    orthogonal to the span of the rows already kept (Gram-Schmidt, twice) is
    more than ``max(1e-8, 100 eps)`` of its own norm.

    Returns ``(S, ok)``: the ``(p,)`` row indices and whether ``p`` were found.
    """
    n, p = A.shape
    dtype = A.dtype
    thr = max(1e-8, 100 * float(jnp.finfo(dtype).eps))
    key = jnp.where(w > 0, jnp.abs(r), jnp.inf)
    order = jnp.argsort(key, stable=True)
    norms = jnp.sqrt(jnp.sum(A * A, axis=1))

    def cond(c):
        idx, count, _, _ = c
        return (
            (count < p) & (idx < n) & jnp.isfinite(key[order[jnp.minimum(idx, n - 1)]])
        )

    def body(c):
        idx, count, Q, S = c
        i = order[idx]
        nrm = norms[i]
        a = A[i] / jnp.where(nrm > 0, nrm, 1.0)
        u = a - Q.T @ (Q @ a)
        u = u - Q.T @ (Q @ u)
        nu = jnp.sqrt(jnp.sum(u * u))
        keep = (nrm > 0) & (nu > thr)
        row = jnp.where(keep, u / jnp.where(nu > 0, nu, 1.0), 0.0)
        slot = jnp.minimum(count, p - 1)
        Q = Q.at[slot].set(jnp.where(keep, row, Q[slot]))
        S = S.at[slot].set(jnp.where(keep, i, S[slot]))
        return idx + 1, count + keep.astype(count.dtype), Q, S

    init = (
        jnp.asarray(0),
        jnp.asarray(0),
        jnp.zeros((p, p), dtype),
        jnp.zeros(p, order.dtype),
    )
    _, count, _, S = jax.lax.while_loop(cond, body, init)
    return S, count == p


class _Vertex(NamedTuple):
    lu: tuple
    c: jax.Array
    r: jax.Array
    rho: jax.Array
    zero: jax.Array
    s: jax.Array
    v: jax.Array
    f: jax.Array
    certified: jax.Array
    finite: jax.Array


def _vertex(A, yv, ev, w, active, S, zero_tol, slack):
    """Vertex of basis ``S``, its (lexicographic) residual signs and certificate.

    ``r`` are the residuals of ``y`` and ``rho`` those of the symbolic
    perturbation ``ev``: a residual that is zero up to rounding takes the sign
    of ``rho`` (the lexicographic residual ``(r_i, rho_i)`` is never 0).
    """
    n, p = A.shape
    AS = A[S]
    lu = lu_factor(AS)
    c = lu_solve(lu, yv[S])
    r = yv - A @ c
    rho = ev - A @ lu_solve(lu, ev[S])
    in_s = jnp.zeros(n, bool).at[S].set(True)
    zero = jnp.abs(r) <= zero_tol * (jnp.abs(yv) + jnp.abs(A) @ jnp.abs(c))
    s = jnp.where(zero, jnp.sign(rho), jnp.sign(r))
    s = jnp.where(in_s | ~active, 0.0, s).astype(A.dtype)
    g = (w * s) @ A
    v = lu_solve(lu, -g, trans=1)
    f = jnp.sum(jnp.where(active, w * jnp.abs(r), 0.0))
    t = jnp.abs(v) / w[S]
    finite = jnp.all(jnp.isfinite(c)) & jnp.all(jnp.isfinite(v))
    certified = finite & (jnp.max(t) <= 1.0 + slack)
    return _Vertex(lu, c, r, rho, zero, s, v, f, certified, finite)


class _State(NamedTuple):
    S: jax.Array
    vx: _Vertex
    best_c: jax.Array
    best_f: jax.Array
    best_S: jax.Array
    k: jax.Array
    stuck: jax.Array


def lad(X, y, weights=None, beta0=None, *, max_pivots: int | None = None) -> LADResult:
    """Exact weighted LAD fit ``argmin_b sum_i w_i |y_i - x_i b|`` (simplex pivots).

    Barrodale-Roberts-style simplex on the vertices of the LAD linear program
    (see the module docstring), warm-started from the basis of the ``p``
    linearly independent rows with the smallest residuals at ``beta0``.

    Args:
      X: design ``(n, p)`` of full column rank on the positive-weight rows.
      y: response ``(n,)`` (subtract any offset first).
      weights: frequency weights ``(n,)``, ``>= 0``; rows with 0 are ignored.
      beta0: starting point ``(p,)`` used only to order the rows for the
        initial basis (default: weighted least squares).
      max_pivots: static cap on the pivots (default ``10 * p + 100``).

    Returns:
      :class:`LADResult`. ``certified`` is the exact-optimality certificate;
      without it (pivot cap, or a singular basis from a rank-deficient
      design) ``beta`` is the best vertex seen.
    """
    X = jnp.asarray(X)
    n, p = X.shape
    dtype = X.dtype
    y = jnp.asarray(y, dtype)
    w = jnp.ones(n, dtype) if weights is None else jnp.asarray(weights, dtype)
    if max_pivots is None:
        max_pivots = 10 * p + 100
    eps = float(jnp.finfo(dtype).eps)
    zero_tol = 1e3 * eps
    slack = 1e3 * eps * (p + n**0.5)
    active = w > 0
    d = pow2_scale(X)
    A = X * d[None, :]
    if beta0 is None:
        sw = jnp.sqrt(w)
        c0 = jnp.linalg.lstsq(A * sw[:, None], y * sw)[0]
    else:
        c0 = jnp.asarray(beta0, dtype) / d
    c0 = jnp.where(jnp.isfinite(c0), c0, 0.0)
    S0, ok = lad_basis(A, y - A @ c0, w)
    # symbolic perturbation y + epsilon * ev (lexicographic anti-cycling rule)
    ev = jax.random.uniform(jax.random.PRNGKey(0), (n,), dtype, 1.0, 2.0)
    vertex = lambda S: _vertex(A, y, ev, w, active, S, zero_tol, slack)  # noqa: E731
    vx0 = vertex(S0)
    ok = ok & vx0.finite
    eye = jnp.eye(p, dtype=dtype)
    absA = jnp.abs(A)

    def cond(st):
        return (~st.vx.certified) & (~st.stuck) & (st.k < max_pivots)

    def body(st):
        S, vx = st.S, st.vx
        in_s = jnp.zeros(n, bool).at[S].set(True)
        wS = w[S]
        j = jnp.argmax(jnp.abs(vx.v) / wS)
        sigma = -jnp.sign(vx.v[j])
        delta = sigma * lu_solve(vx.lu, eye[j])
        z = A @ delta
        adelta = absA @ jnp.abs(delta)
        zsafe = jnp.where(z != 0, z, 1.0)
        # rows whose (lexicographic) residual reaches 0 for some step > 0
        cand = active & ~in_s & (jnp.abs(z) > 1e2 * eps * adelta) & (vx.s * z > 0)
        alpha = jnp.where(
            cand, jnp.where(vx.zero, 0.0, jnp.maximum(vx.r / zsafe, 0.0)), jnp.inf
        )
        inc = jnp.where(cand, 2.0 * w * jnp.abs(z), 0.0)
        d0 = wS[j] - jnp.sum(w * vx.s * z)
        order = jnp.argsort(alpha, stable=True)
        slope = d0 + jnp.cumsum(inc[order])
        hit = (slope >= 0) & cand[order]
        found = jnp.any(hit) & (d0 < 0)
        i_float = order[jnp.argmax(hit)]
        a_star = alpha[i_float]
        # breakpoints tied with a_star (zero residual at the new point, up to
        # rounding) are ordered by the perturbation's breakpoint rho_i / z_i
        tied = cand & (
            jnp.abs(vx.r - a_star * z)
            <= zero_tol * (jnp.abs(y) + absA @ jnp.abs(vx.c) + a_star * adelta)
        )
        tied = tied | (jnp.arange(n) == i_float)
        before = d0 + jnp.sum(jnp.where(cand & ~tied & (alpha < a_star), inc, 0.0))
        order2 = jnp.argsort(jnp.where(tied, vx.rho / zsafe, jnp.inf), stable=True)
        slope2 = before + jnp.cumsum(jnp.where(tied, inc, 0.0)[order2])
        hit2 = (slope2 >= 0) & tied[order2]
        i_new = jnp.where(jnp.any(hit2), order2[jnp.argmax(hit2)], i_float)
        S_new = jnp.where(found, S.at[j].set(i_new), S)
        vx_new = vertex(S_new)
        good = found & vx_new.finite
        vx_new = jax.tree.map(lambda a, b: jnp.where(good, a, b), vx_new, vx)
        S_new = jnp.where(good, S_new, S)
        better = good & (vx_new.f < st.best_f)
        return _State(
            S_new,
            vx_new,
            jnp.where(better, vx_new.c, st.best_c),
            jnp.where(better, vx_new.f, st.best_f),
            jnp.where(better, S_new, st.best_S),
            st.k + good.astype(st.k.dtype),
            ~good,
        )

    init = _State(S0, vx0, vx0.c, vx0.f, S0, jnp.asarray(0), ~ok)
    st = jax.lax.while_loop(cond, body, init)
    cert = st.vx.certified & ok
    c = jnp.where(cert, st.vx.c, st.best_c)
    S = jnp.where(cert, st.S, st.best_S)
    f = jnp.where(cert, st.vx.f, st.best_f)
    f0 = jnp.sum(jnp.where(active, w * jnp.abs(y - A @ c0), 0.0))
    c = jnp.where(ok, c, c0)
    f = jnp.where(ok, f, f0)
    r = y - A @ c
    exact = jnp.all(
        ~active | (jnp.abs(r) <= zero_tol * (jnp.abs(y) + jnp.abs(A) @ jnp.abs(c)))
    )
    return LADResult(c * d, f, S, st.k, cert, exact & cert)
