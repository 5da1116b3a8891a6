"""``fit_likelihood``: any log-likelihood over any pytree of parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlejax import inference
from mlejax.solvers import lbfgs, newton, optax_loop
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
):
    """Traced core: returns the fields of a ``FitResult`` as a dict."""
    flat0, unravel = ravel_pytree(init_params)

    def nll(theta):
        return -jnp.sum(loglik(unravel(theta), *data))

    if solver == "newton":

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
        info, trace = jax.hessian(nll)(out.x), out.trace * n_obs
    theta = out.x
    k = flat0.shape[0]
    inf = inference.from_information(info, k)
    n_groups = None
    if cov[0] != "nonrobust":  # per-observation scores: loglik returns (n,)
        S = jax.jacrev(lambda t: loglik(unravel(t), *data))(theta)
        w = jnp.ones(S.shape[0], S.dtype)
        codes = inference.cluster_codes(groups, cov[1]) if cov[0] == "cluster" else None
        nobs_r = jnp.asarray(S.shape[0], S.dtype)
        c, n_groups = inference.sandwich(info, S, w, cov[0], codes, nobs_r, k)
        inf = inf._replace(cov=c, stderr=jnp.sqrt(jnp.diag(c)))
    ll = -nll(theta)
    # A maximum needs a negative-definite Hessian of the log-likelihood (the
    # Cholesky the covariance needs): a saddle, a minimum or a flat direction
    # is reported, never called converged.
    pd = jnp.all(jnp.isfinite(inf.stderr))
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
        hess=info,  # the exact Hessian at theta (mlejax.implicit), not a FitResult field
    )
