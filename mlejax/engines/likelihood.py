"""``fit_likelihood``: any log-likelihood over any pytree of parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlejax import inference, linear_rows
from mlejax.penalties import Penalty
from mlejax.solvers import dense_problem, lbfgs, newton, newton_loop, optax_loop
from mlejax.solvers.prox_newton import prox_newton_loop
from mlejax.status import Status


def fit(
    init_params,
    data: tuple,
    tol,
    groups=None,
    *,
    loglik,
    solver,
    max_iter: int,
    n_obs,
    cov=("nonrobust", None),
    penalty=None,
    linear=None,
):
    """Traced core: returns the fields of a ``FitResult`` as a dict.

    ``penalty``: ``None``, a ``mj.penalties`` penalty on every leaf, or a
    callable ``log_prior(params)`` (its negative is added to the NLL).
    ``linear``: ``None`` or the checked declaration ``((key, i), ...)`` of
    :func:`mlejax.linear_rows.check_linear`: derivatives by per-row terms in
    the linear predictors (:mod:`mlejax.linear_rows`).
    """
    flat0, unravel = ravel_pytree(init_params)

    def nll_ll(theta):
        return -jnp.sum(loglik(unravel(theta), *data))

    l1 = None
    pen_nll = None  # the penalty's part of the NLL (theta -> scalar)
    if penalty is None:
        nll = nll_ll
    elif isinstance(penalty, Penalty):
        w_pen = penalty.tree_weights(init_params)
        l2 = penalty.l2_strength * w_pen
        if penalty.kind == "l1":
            l1 = penalty.l1_strength * w_pen

        def pen_nll(theta):
            return 0.5 * jnp.sum(l2 * theta**2)

        def nll(theta):
            return nll_ll(theta) + pen_nll(theta)
    else:

        def pen_nll(theta):
            return -penalty(unravel(theta))

        def nll(theta):
            return nll_ll(theta) + pen_nll(theta)

    rows = None
    if linear is not None:  # the structured problem over z = theta[perm]
        rows, lay = linear_rows.make_rows(
            loglik, linear, init_params, data, penalty_nll=pen_nll
        )
        perm, inv = jnp.asarray(lay.perm), jnp.asarray(lay.inv)
    if rows is not None and (l1 is not None or solver == "newton"):
        z0 = flat0[perm]
        if l1 is not None:
            out = prox_newton_loop(rows, z0, l1[perm], tol=tol, max_iter=max_iter)
        elif (
            pen_nll is None and rows.eta(z0).shape[0] >= linear_rows.SUBSAMPLE_MIN_ROWS
        ):
            z0, H0, H0_ok = linear_rows.subsample_start(
                loglik, linear, init_params, data, z0
            )
            out = newton_loop(rows, z0, tol=tol, max_iter=max_iter, H0=H0, H0_ok=H0_ok)
        else:
            out = newton_loop(rows, z0, tol=tol, max_iter=max_iter)
        # the loop's H is the one at out.x: back to ravel_pytree order
        out = out._replace(x=out.x[inv], g=out.g[inv], H=out.H[inv][:, inv])
        info, trace = out.H, out.trace
    elif l1 is not None:

        def vgh(theta):
            f, g = jax.value_and_grad(nll)(theta)
            return f, g, jax.hessian(nll)(theta)

        problem = dense_problem(nll, vgh, flat0.shape[0])
        out = prox_newton_loop(problem, flat0, l1, tol=tol, max_iter=max_iter)
        info, trace = out.H, out.trace
    elif solver == "newton":

        def vgh(theta):
            f, g = jax.value_and_grad(nll)(theta)
            return f, g, jax.hessian(nll)(theta)

        out = newton(nll, vgh, flat0, tol=tol, max_iter=max_iter)
        info, trace = out.H, out.trace  # the loop's H is the one at out.x
    else:
        mean_nll = lambda t: nll(t) / n_obs  # noqa: E731
        if solver == "lbfgs":
            out = lbfgs(mean_nll, flat0, tol=tol, max_iter=max_iter)
        else:
            out = optax_loop(mean_nll, flat0, solver, tol=tol, max_iter=max_iter)
        if rows is None:
            info = jax.hessian(nll)(out.x)
        else:
            info = rows.evaluate(out.x[perm], True)[1][inv][:, inv]
        trace = out.trace * n_obs
    theta = out.x
    k = flat0.shape[0]
    active = None
    if l1 is not None:  # zeros on the kink: no curvature, stderr NaN
        active = (theta != 0) | (l1 == 0)
        both = active[:, None] & active[None, :]
        info = jnp.where(both, info, 0.0) + jnp.diag(jnp.where(active, 0.0, 1.0))
    inf = inference.from_information(info, k)
    if active is not None:
        both = active[:, None] & active[None, :]
        inf = inf._replace(
            cov=jnp.where(both, inf.cov, jnp.nan),
            stderr=jnp.where(active, inf.stderr, jnp.nan),
        )
    n_groups = None
    if cov[0] != "nonrobust":  # per-observation scores: loglik returns (n,)
        if rows is None:
            S = jax.jacrev(lambda t: loglik(unravel(t), *data))(theta)
        else:  # per-row scores from the per-row derivatives
            S = rows.scores(theta[perm])
        w = jnp.ones(S.shape[0], S.dtype)
        codes = inference.cluster_codes(groups, cov[1]) if cov[0] == "cluster" else None
        nobs_r = jnp.asarray(S.shape[0], S.dtype)
        c, n_groups = inference.sandwich(info, S, w, cov[0], codes, nobs_r, k)
        inf = inf._replace(cov=c, stderr=jnp.sqrt(jnp.diag(c)))
    ll = -nll_ll(theta)
    # A maximum needs a negative-definite Hessian of the log-likelihood (the
    # Cholesky the covariance needs): a saddle, a minimum or a flat direction
    # is reported, never called converged.
    se_act = inf.stderr if active is None else jnp.where(active, inf.stderr, 0.0)
    pd = jnp.all(jnp.isfinite(se_act))
    status = jnp.where(
        (out.status == Status.CONVERGED) & ~pd, int(Status.NOT_MAXIMUM), out.status
    )
    nobs = jnp.asarray(n_obs, flat0.dtype)
    aic, bic = inference.information_criteria(ll, k, nobs)
    return dict(
        params=unravel(theta),
        extra={},
        extra_stderr={},
        stderr=unravel(inf.stderr),
        cov=inf.cov,
        loglik=ll,
        n_iter=out.n_iter,
        converged=status == Status.CONVERGED,
        aic=aic,
        bic=bic,
        nobs=nobs,
        status=status,
        trace=trace,
        n_groups=n_groups,
        objective=None if penalty is None else nll(theta) + _l1_value(l1, theta),
        hess=info,  # the exact Hessian at theta (mlejax.implicit), not a FitResult field
    )


def _l1_value(l1, theta):
    return 0.0 if l1 is None else jnp.sum(l1 * jnp.abs(theta))
