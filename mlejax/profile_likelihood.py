"""Profile-likelihood intervals for any likelihood (:func:`mlejax.fit_likelihood`).

The same exact, batched endpoint search as :mod:`mlejax.profile`, over the
flattened parameters of a ``fit_likelihood`` result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlejax.profile import _batched, _check_alpha, _expand, _finish
from mlejax.solvers import dense_problem, newton_loop
from mlejax.status import Status

__all__ = ["profile_ci_likelihood"]


@functools.partial(jax.jit, static_argnames=("loglik", "unravel", "max_iter"))
def _lik_profile(theta_hat, se, data, z, tol, *, loglik, unravel, max_iter):
    k = theta_hat.shape[0]

    def nll(th):
        return -jnp.sum(loglik(unravel(th), *data))

    llhat = -nll(theta_hat)

    def inner(b, free_init, j):
        full = lambda f: _expand(f, b, j, k)  # noqa: E731
        if k > 1:
            fn = lambda f: nll(full(f))  # noqa: E731

            def vgh(f):
                v, g = jax.value_and_grad(fn)(f)
                return v, g, jax.hessian(fn)(f)

            out = newton_loop(
                dense_problem(fn, vgh, k - 1), free_init, tol=tol, max_iter=max_iter
            )
            free, ok = out.x, out.status != Status.NON_FINITE
        else:
            free, ok = free_init, jnp.asarray(True)
        th = full(free)
        f, g = jax.value_and_grad(nll)(th)
        ok = ok & jnp.isfinite(f) & jnp.isfinite(g[j])
        return free, -f, -g[j], ok

    return _batched(inner, jnp.arange(k), theta_hat, se, llhat, z, tol)


def profile_ci_likelihood(
    loglik: Callable,
    res: Any,
    *data: Any,
    alpha: float = 0.05,
    tol: float = 1e-10,
    max_iter: int = 200,
    full_output: bool = False,
):
    """Profile-likelihood intervals for a :func:`mlejax.fit_likelihood` fit.

    ``loglik`` and ``*data`` are those of the fit, ``res`` its result.
    Intervals are over the flattened parameters (``ravel_pytree`` order, as
    ``res.cov``), on the scale ``loglik`` uses; the other parameters are
    re-maximised by Newton at each step. Returns ``(k, 2)`` (or a
    :class:`ProfileCI` with ``full_output=True``); endpoints are ``±inf``
    where the profile never reaches the cutoff (flat, or a boundary where the
    log-likelihood stops being finite), NaN where the search failed.

    >>> import jax.numpy as jnp, mlejax as mj
    >>> x = jnp.array([0.5, 1.5, 2.5, 3.5])
    >>> ll = lambda th, x: jnp.sum(jnp.log(th) - th * x)   # exponential, rate th
    >>> res = mj.fit_likelihood(ll, jnp.array(1.0), x)
    >>> ci = mj.profile_ci_likelihood(ll, res, x)
    >>> [round(float(v), 4) for v in ci[0]]
    [0.1552, 1.1615]
    """
    from scipy import stats

    alpha = _check_alpha(alpha)
    theta_hat, _ = ravel_pytree(res.params)
    se, _ = ravel_pytree(res.stderr)
    dtype = theta_hat.dtype
    z = float(stats.norm.ppf(1 - alpha / 2))
    ci, st, it = _lik_profile(
        theta_hat,
        jnp.asarray(se, dtype),
        tuple(data),
        jnp.asarray(z, dtype),
        jnp.asarray(tol, dtype),
        loglik=loglik,
        unravel=_Unravel(res.params),
        max_iter=max_iter,
    )
    return _finish(ci, st, it, theta_hat, full_output, "profile_ci_likelihood")


class _Unravel:
    """A hashable unravel (a static argument): the tree structure and leaf shapes."""

    def __init__(self, params):
        leaves, self.treedef = jax.tree_util.tree_flatten(params)
        self.shapes = tuple(tuple(np.shape(x)) for x in leaves)
        self.key = (self.treedef, self.shapes)

    def __call__(self, th):
        out, start = [], 0
        for shp in self.shapes:
            size = int(np.prod(shp, dtype=int))
            out.append(th[start : start + size].reshape(shp))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, out)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Unravel) and self.key == other.key
