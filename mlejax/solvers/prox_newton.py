"""Proximal Newton for ``f(x) + sum_j l1_j |x_j|``, as ``lax.while_loop``s.

The smooth part ``f`` (a negative log-likelihood plus any ridge term) is a
:class:`mlejax.solvers.NewtonProblem`; the L1 strengths ``l1`` are one per
coordinate (0 for unpenalised ones: an intercept, extra parameters). This is
the method of glmnet and glum's ``irls-cd`` (Friedman, Hastie & Tibshirani
2010; Lee, Sun & Saunders 2014):

1. at ``x`` form the gradient ``g`` and Hessian ``H`` of ``f`` (made positive
   definite by reflecting its eigenvalues where the problem is not convex);
2. minimise the model ``g'd + d'Hd/2 + sum l1_j |x_j + d_j|`` by cyclic
   coordinate descent (soft-thresholding), sweeping until the largest
   relative coordinate change is below ``tol / 100``: exact zeros;
3. backtrack ``x + t d`` until ``F(x + t d) <= F(x) + 1e-4 t Delta``,
   ``Delta = g'd + P(x + d) - P(x) < 0`` (the model's predicted decrease).

Converged when a step's ``max |t d_i| / (1 + |x_i|) <= tol`` (as the Newton
loop), or ``Delta`` is at the rounding level of ``F``. Near the optimum the
support is identified and the steps are Newton steps on the active set
(quadratic convergence), so the KKT conditions hold to the tolerance.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlejax.solvers.newton import NewtonProblem, NewtonResult, stop_status
from mlejax.status import Status

#: coordinate descent sweeps per Newton step, at most
MAX_SWEEPS = 5000


def soft_threshold(u: jax.Array, lam: jax.Array) -> jax.Array:
    """``sign(u) max(|u| - lam, 0)``."""
    return jnp.sign(u) * jnp.maximum(jnp.abs(u) - lam, 0.0)


def positive_definite(H: jax.Array, convex: bool) -> jax.Array:
    """``H`` itself if convex or positive definite; else with |eigenvalues| floored."""
    if convex:
        return H
    diag = jnp.abs(jnp.diag(H))
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), 1.0)
    Hs = H * d[:, None] * d[None, :]
    ok = jnp.all(jnp.isfinite(jnp.linalg.cholesky(Hs)))

    def modified(_):
        w, V = jnp.linalg.eigh(Hs)
        floor = jnp.maximum(jnp.max(jnp.abs(w)) * 1e-8, jnp.finfo(w.dtype).tiny)
        w = jnp.maximum(jnp.abs(w), floor)
        return (V * w[None, :]) @ V.T / (d[:, None] * d[None, :])

    return jax.lax.cond(ok, lambda _: H, modified, None)


def cd_direction(g, H, x, l1, tol, max_sweeps: int = MAX_SWEEPS):
    """Minimise ``g'd + d'Hd/2 + sum l1 |x + d|`` by cyclic coordinate descent.

    Returns ``(d, sweeps)``. Coordinates with ``H_jj <= 0`` are left alone.
    """
    k = x.shape[0]
    a = jnp.diag(H)
    a_ok = a > 0
    a_safe = jnp.where(a_ok, a, 1.0)

    def coord(j, c):
        z, Hd, delta = c
        r = g[j] + Hd[j]
        z_new = soft_threshold(a_safe[j] * z[j] - r, l1[j]) / a_safe[j]
        z_new = jnp.where(a_ok[j], z_new, z[j])
        dz = z_new - z[j]
        Hd = Hd + H[:, j] * dz
        delta = jnp.maximum(delta, jnp.abs(dz) / (1.0 + jnp.abs(z_new)))
        return z.at[j].set(z_new), Hd, delta

    def sweep(c):
        z, Hd, _, n = c
        z, Hd, delta = jax.lax.fori_loop(0, k, coord, (z, Hd, jnp.zeros_like(tol)))
        return z, Hd, delta, n + 1

    def keep_going(c):
        return (c[2] > tol) & (c[3] < max_sweeps)

    init = (x, jnp.zeros_like(x), jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0))
    z, _, _, n = jax.lax.while_loop(keep_going, sweep, init)
    return z - x, n


class _State(NamedTuple):
    x: jax.Array
    f: jax.Array  # smooth part at x
    g: jax.Array
    H: jax.Array
    rel_step: jax.Array
    tiny: jax.Array
    ls_fail: jax.Array
    bad_step: jax.Array
    n_iter: jax.Array
    done: jax.Array
    status: jax.Array
    trace: jax.Array


def prox_newton_loop(
    obj: NewtonProblem,
    x0: jax.Array,
    l1: jax.Array,
    *,
    tol,
    max_iter: int,
    convex: bool = False,
    project=None,
    max_halvings: int = 40,
) -> NewtonResult:
    """Minimise ``obj(x) + sum l1 |x|`` (see the module docstring).

    ``NewtonResult.f`` and ``trace`` hold the full objective (smooth + L1);
    ``H`` is the smooth part's Hessian at the returned point (for inference).
    """
    project = project or (lambda x: x)
    nb = obj.nb
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    k = x0.shape[0]
    l1 = jnp.asarray(l1, dtype)
    # the start: soft-threshold nothing, but coefficients exactly zero are fine
    f0 = obj.value_at(obj.eta(x0), x0)
    init = _State(
        x=x0,
        f=f0,
        g=jnp.zeros(k, dtype),
        H=jnp.zeros((k, k), dtype),
        rel_step=jnp.asarray(jnp.inf, dtype),
        tiny=jnp.asarray(False),
        ls_fail=jnp.asarray(False),
        bad_step=jnp.asarray(False),
        n_iter=jnp.asarray(0),
        done=jnp.asarray(False),
        status=jnp.asarray(int(Status.MAX_ITER)),
        trace=jnp.full((max_iter + 1,), jnp.nan, dtype),
    )
    inner_tol = jnp.asarray(tol, dtype) * 1e-2

    def pen(x):
        return jnp.sum(l1 * jnp.abs(x))

    def body(s: _State):
        converged = (
            (s.n_iter > 0) & (((s.rel_step <= tol) & ~s.ls_fail) | s.tiny) & ~s.bad_step
        )
        stop = converged | s.ls_fail | s.bad_step | (s.n_iter >= max_iter)
        g, H, eta = obj.evaluate(s.x, True)
        F = s.f + pen(s.x)
        trace = s.trace.at[s.n_iter].set(F)
        nonfinite = ~jnp.isfinite(F) | ~jnp.all(jnp.isfinite(g)) | s.bad_step
        status = stop_status(converged, nonfinite, s.ls_fail)
        done = stop | nonfinite
        s = s._replace(g=g, H=H, trace=trace)

        def take_step(s: _State):
            Hm = positive_definite(s.H, convex)
            d, _ = cd_direction(s.g, Hm, s.x, l1, inner_tol)
            d_ok = jnp.all(jnp.isfinite(d))
            d = jnp.where(d_ok, d, 0.0)
            P0 = pen(s.x)
            delta = jnp.dot(s.g, d) + pen(s.x + d) - P0
            Xd = obj.lin(d[:nb])
            slack = 256 * eps * jnp.abs(F)

            def full(t):
                x_t = project(s.x + t * d)
                return obj.value_at(eta + t * Xd, x_t) + pen(x_t)

            def armijo(t, F_new, F_ref):
                ok = F_new <= F_ref + 1e-4 * t * delta + slack
                return ok & jnp.isfinite(F_new)

            def ls_cond(c):
                t, F_new, j, F_ref, _ = c
                return ~armijo(t, F_new, F_ref) & (j < max_halvings) & ~done

            def ls_body(c):
                t, F_new, j, F_ref, measured = c

                def remeasure(_):
                    return t, F_new, j, obj.value_at(eta, s.x) + P0, True

                def halve(_):
                    return 0.5 * t, full(0.5 * t), j + 1, F_ref, True

                return jax.lax.cond(measured, halve, remeasure, None)

            one = jnp.ones((), dtype)
            t, F_new, j, F_ref, _ = jax.lax.while_loop(
                ls_cond, ls_body, (one, full(one), 0, F, jnp.asarray(False))
            )
            ls_ok = (j < max_halvings) | armijo(t, F_new, F_ref)
            x_new = jnp.where(ls_ok, project(s.x + t * d), s.x)
            rel_step = jnp.max(jnp.abs(x_new - s.x) / (1.0 + jnp.abs(s.x)))
            return s._replace(
                x=x_new,
                f=jnp.where(ls_ok, F_new - pen(x_new), s.f),
                rel_step=rel_step,
                tiny=d_ok & (jnp.abs(delta) <= 64 * eps * (1.0 + jnp.abs(F))),
                ls_fail=~ls_ok,
                bad_step=~d_ok,
                n_iter=s.n_iter + 1,
            )

        s = jax.lax.cond(done, lambda s: s, take_step, s)
        return s._replace(done=done, status=status)

    out = jax.lax.while_loop(lambda s: ~s.done, body, init)
    F = out.f + pen(out.x)
    return NewtonResult(
        out.x, F, out.g, out.H, out.n_iter, out.status == 0, out.status, out.trace
    )
