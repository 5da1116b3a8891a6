"""Damped Newton with a backtracking (Armijo) line search, as one while_loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class NewtonResult(NamedTuple):
    x: jax.Array
    f: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    trace: jax.Array


class _State(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    H: jax.Array
    n_iter: jax.Array
    done: jax.Array
    status: jax.Array
    trace: jax.Array


def newton_direction(g: jax.Array, H: jax.Array, convex: bool) -> jax.Array:
    """Solve ``H d = g`` in equilibrated form; a safeguarded direction if H is not PD.

    Cholesky of ``D H D`` with ``D = diag(H)^{-1/2}``; when it fails (H not
    positive definite away from the optimum) and the problem is not known to be
    convex, the eigenvalues of ``D H D`` are reflected and floored (a
    modified-Newton step that is always a descent direction).
    """
    diag = jnp.abs(jnp.diag(H))
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), 1.0)
    Hs = H * d[:, None] * d[None, :]
    gs = g * d
    L = jnp.linalg.cholesky(Hs)
    step = jax.scipy.linalg.cho_solve((L, True), gs)
    if convex:
        return step * d
    ok = jnp.all(jnp.isfinite(step))

    def modified(_):
        w, V = jnp.linalg.eigh(Hs)
        floor = jnp.maximum(jnp.max(jnp.abs(w)) * 1e-8, jnp.finfo(w.dtype).tiny)
        w = jnp.maximum(jnp.abs(w), floor)
        return V @ ((V.T @ gs) / w)

    step = jax.lax.cond(ok, lambda _: step, modified, None)
    return step * d


def newton(
    value: Callable[[jax.Array], jax.Array],
    value_grad_hess: Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]],
    x0: jax.Array,
    *,
    tol,
    max_iter: int,
    convex: bool = False,
    project: Callable[[jax.Array], jax.Array] | None = None,
    max_halvings: int = 40,
) -> NewtonResult:
    """Minimise ``value`` by damped Newton steps.

    Each iteration solves ``H d = g`` (see :func:`newton_direction`), then halves
    the step until the Armijo condition ``f(x - t d) <= f(x) - 1e-4 t g.d``
    holds. Converged when the step was small, ``max_i |t d_i| / (1 + |x_i|) <=
    tol``, or when the predicted decrease ``g.d / 2`` is below the rounding
    level of ``f`` (no further progress is possible in this precision).

    Returns:
      NewtonResult with the last iterate, its objective, iterations, the
      converged flag, a status code (0 converged, 1 max_iter, 2 line search
      failed, 3 non-finite) and the objective trace (NaN-padded, max_iter+1).
    """
    project = project or (lambda x: x)
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps
    f0, g0, H0 = value_grad_hess(x0)
    trace0 = jnp.full((max_iter + 1,), jnp.nan, dtype).at[0].set(f0)
    bad0 = ~jnp.isfinite(f0)
    init = _State(x0, f0, g0, H0, jnp.asarray(0), bad0, jnp.where(bad0, 3, 1), trace0)

    def keep_going(s: _State):
        return (~s.done) & (s.n_iter < max_iter)

    def step(s: _State):
        d = newton_direction(s.g, s.H, convex)
        d = jnp.where(jnp.isfinite(d), d, 0.0)
        slope = jnp.dot(s.g, d)

        # Armijo with a rounding allowance: near the optimum f cannot resolve
        # the decrease, and the full Newton step must still be taken.
        slack = 16 * eps * jnp.abs(s.f)

        def ls_cond(c):
            t, f_new, k = c
            armijo = f_new <= s.f - 1e-4 * t * slope + slack
            return (~(armijo & jnp.isfinite(f_new))) & (k < max_halvings)

        def ls_body(c):
            t, _, k = c
            t = 0.5 * t
            return t, value(project(s.x - t * d)), k + 1

        one = jnp.ones((), dtype)
        t, f_new, k = jax.lax.while_loop(
            ls_cond, ls_body, (one, value(project(s.x - d)), jnp.asarray(0))
        )
        ls_ok = (k < max_halvings) | (
            (f_new <= s.f - 1e-4 * t * slope + slack) & jnp.isfinite(f_new)
        )
        x_new = jnp.where(ls_ok, project(s.x - t * d), s.x)
        f_new = jnp.where(ls_ok, f_new, s.f)
        f1, g1, H1 = value_grad_hess(x_new)
        rel_step = jnp.max(jnp.abs(x_new - s.x) / (1.0 + jnp.abs(s.x)))
        tiny_decrease = 0.5 * jnp.abs(slope) <= 64 * eps * (1.0 + jnp.abs(s.f))
        converged = (ls_ok & (rel_step <= tol)) | tiny_decrease
        nonfinite = ~jnp.isfinite(f1)
        done = converged | (~ls_ok) | nonfinite
        status = jnp.where(
            converged, 0, jnp.where(nonfinite, 3, jnp.where(~ls_ok, 2, 1))
        )
        n = s.n_iter + 1
        return _State(x_new, f1, g1, H1, n, done, status, s.trace.at[n].set(f1))

    out = jax.lax.while_loop(keep_going, step, init)
    return NewtonResult(
        out.x, out.f, out.n_iter, out.status == 0, out.status, out.trace
    )
