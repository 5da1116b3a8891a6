"""Penalised (MAP) fits of every smooth family: Ridge by Newton, L1 by proximal Newton.

The penalty acts on ``vec(beta)`` only (weights from
:meth:`mlejax.penalties.Penalty.coef_weights`); the extras ``u = log extra``
are optimised jointly and never penalised. The smooth part, the likelihood's
NLL plus ``l2/2 sum w beta^2``, wraps :func:`mlejax.objective.make_glm`, so
its gradient and Hessian stay exact (the penalty adds ``l2 w beta`` and
``l2 diag(w)``).

Covariance (a Laplace approximation to the posterior, not a sampling
covariance): Ridge: ``(H + l2 W)^{-1}`` at the MAP over all parameters. L1:
the coefficients at exactly zero get NaN (the posterior mode sits on the kink
of ``|beta_j|``: there is no curvature there and no estimate to have an error),
the others the inverse of the penalised Hessian restricted to the active set
and the extras.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlejax import inference, objective
from mlejax.engines import EngineResult
from mlejax.engines.glm import extra_projection, start_values
from mlejax.objective import GLMData
from mlejax.solvers import lbfgs, newton_loop, optax_loop
from mlejax.solvers.prox_newton import prox_newton_loop
from mlejax.status import Status


def strengths(penalty, X, m: int, q: int):
    """``(l1, l2)`` per entry of ``theta = [vec(beta), u]`` (zeros for the extras)."""
    w = penalty.coef_weights(X, m)
    zeros = jnp.zeros(q, X.dtype)
    l1 = jnp.concatenate([penalty.l1_strength * w, zeros]).astype(X.dtype)
    l2 = jnp.concatenate([penalty.l2_strength * w, zeros]).astype(X.dtype)
    return l1, l2


def optimality_residual(grad_nll, theta, penalty, X, m: int, q: int):
    """The MAP's first-order conditions as a smooth function of ``(theta, penalty)``.

    ``grad_nll`` is the likelihood's gradient in ``theta = [vec(beta), u]`` at
    ``theta``. Returns ``grad_nll + l2 theta + l1 sign(theta)`` on the active set
    (nonzero or unpenalised entries) and ``theta`` itself at exact zeros, so it
    vanishes at the solution and its Jacobian in ``theta`` is nonsingular for a
    strict solution: the function an implicit-function-theorem derivative of a
    penalised fit (with respect to ``penalty.alpha``, a leaf) differentiates.
    The support is locally constant in ``alpha`` (away from the kinks of the
    path), so zeros have zero derivative.
    """
    l1, l2 = strengths(penalty, X, m, q)
    active = (theta != 0) | (l1 == 0)
    r = grad_nll + l2 * theta + l1 * jnp.sign(theta)
    return jnp.where(active, r, theta)


def add_ridge(obj, l2):
    """The problem ``obj + sum l2 theta^2 / 2`` (same plug-in fields)."""

    def evaluate(theta, hess, *args):
        g, H, eta = obj.evaluate(theta, hess, *args)
        g = g + l2 * theta
        return g, (None if H is None else H + jnp.diag(l2)), eta

    def value_at(eta, theta):
        return obj.value_at(eta, theta) + 0.5 * jnp.sum(l2 * theta**2)

    def value(theta):
        return obj.value(theta) + 0.5 * jnp.sum(l2 * theta**2)

    return obj._replace(evaluate=evaluate, value_at=value_at, value=value)


def active_information(info, active):
    """The information restricted to ``active`` (others: identity, to be masked)."""
    both = active[:, None] & active[None, :]
    return jnp.where(both, info, 0.0) + jnp.diag(jnp.where(active, 0.0, 1.0))


def fit(family, data: GLMData, solver, tol, max_iter: int, penalty, theta0=None):
    """MAP over ``theta = [vec(beta), log(extra)]``; an :class:`EngineResult`."""
    X, y, w, offset, trials = data[:5]
    n, p = X.shape
    m, nb, q = objective.n_params(family, p)
    obj_ll = objective.make_glm(family, data)
    l1, l2 = strengths(penalty, X, m, q)
    obj = add_ridge(obj_ll, l2)
    project = extra_projection(family, nb)
    convex = family.convex
    if theta0 is None:
        theta0 = start_values(family, data, p)
    if project is not None:
        theta0 = project(theta0)
    if penalty.kind == "l1":
        out = prox_newton_loop(
            obj, theta0, l1, tol=tol, max_iter=max_iter, convex=convex, project=project
        )
        g, H = out.g, out.H
    elif solver == "newton":
        out = newton_loop(
            obj, theta0, tol=tol, max_iter=max_iter, convex=convex, project=project
        )
        g, H = out.g, out.H
    else:  # Ridge by L-BFGS / Optax on the mean penalised NLL (as glm.fit)
        nobs = jnp.sum(w)
        proj = project or (lambda th: th)
        mean_obj = lambda th: obj.value(proj(th)) / nobs  # noqa: E731
        if solver == "lbfgs":
            out = lbfgs(mean_obj, proj(theta0), tol=tol, max_iter=max_iter)
        else:
            out = optax_loop(mean_obj, proj(theta0), solver, tol=tol, max_iter=max_iter)
        out = out._replace(x=proj(out.x), trace=out.trace * nobs)
        g, H, _ = obj.evaluate(out.x, True)
    theta = out.x
    active = (theta != 0) | (l1 == 0)
    info = inference.natural_hessian(H, g, theta, nb)
    info = active_information(info, active)
    inf = inference.from_information(info, nb)
    nan = jnp.asarray(jnp.nan, X.dtype)
    act_b = active[:nb]
    cov = jnp.where(act_b[:, None] & act_b[None, :], inf.cov, nan)
    stderr = jnp.where(act_b, inf.stderr, nan)
    beta, extra = obj_ll.unpack(theta)
    eta = obj_ll.eta(theta)
    loglik = -obj_ll.value_at(eta, theta)
    objective_value = -loglik + penalty.value(theta[:nb], penalty.coef_weights(X, m))
    status = out.status
    pd = jnp.all(jnp.isfinite(jnp.where(act_b, stderr, 0.0)))
    pd = pd & jnp.all(jnp.isfinite(inf.extra_stderr))
    bad_info = Status.RANK_DEFICIENT if convex else Status.NOT_MAXIMUM
    status = jnp.where((status == Status.CONVERGED) & ~pd, int(bad_info), status)
    status = jnp.where(family.at_bound(y, w, extra), int(Status.BOUND), status)
    status = jnp.where(family.empty_class(y, w), int(Status.EMPTY_CLASS), status)
    return EngineResult(
        params=beta,
        extra=extra,
        extra_stderr=dict(zip(family.extra_names, inf.extra_stderr, strict=True)),
        cov=cov,
        stderr=stderr.reshape(jnp.shape(beta)),
        loglik=loglik,
        n_iter=out.n_iter,
        converged=status == Status.CONVERGED,
        status=status,
        trace=out.trace,
        objective=objective_value,
        hess=H,  # the penalised Hessian in theta (mlejax.implicit)
    )


def theta_of(family, params, extra) -> jax.Array:
    """``[vec(beta), log(extra)]`` from a result's fields (a warm start)."""
    parts = [jnp.reshape(params, (-1,))]
    if family.extra_names:
        parts.append(jnp.log(jnp.stack([extra[k] for k in family.extra_names])))
    return jnp.concatenate(parts)
