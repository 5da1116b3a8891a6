"""Family + data -> negative log-likelihood of a flat parameter vector.

The parameter vector is ``theta = [vec(beta), u]``: the coefficients
(``(p,)``, or ``(p, K-1)`` raveled row-major for Categorical) and the extra
parameters, on the log scale for the solvers (``u = log extra``) or on their
natural scale for inference. The gradient and Hessian are assembled from exact
per-observation derivatives in ``(eta_i, extra)`` (autodiff of ``log_prob``),
so the coefficient block is the weighted Gram matrix ``X' diag(h) X`` rather
than an autodiff Hessian through ``X``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class GLMData(NamedTuple):
    X: jax.Array  # (n, p)
    y: jax.Array  # (n,)
    weights: jax.Array  # (n,)
    offset: jax.Array  # (n,)
    trials: jax.Array | None  # (n,) Binomial only


class Objective(NamedTuple):
    value: object  # theta -> scalar NLL
    value_grad_hess: object  # theta -> (f, g, H)
    unpack: object  # theta -> (beta, extra dict on the natural scale)
    eta: object  # beta -> eta


def n_params(family, p: int) -> tuple[int, int, int]:
    """(m, n_coef, n_extra): predictors per row, coefficients, extra parameters."""
    m = family.eta_dim
    return m, p * m, len(family.extra_names)


def make(family, data: GLMData, log_extra: bool = True) -> Objective:
    """Build the NLL of ``theta`` for ``family`` on ``data``."""
    X, y, w, offset, trials = data
    p = X.shape[1]
    m, nb, q = n_params(family, p)
    names = family.extra_names

    def unpack(theta):
        beta = theta[:nb] if m == 1 else theta[:nb].reshape(p, m)
        e = theta[nb:]
        e = jnp.exp(e) if log_extra else e
        return beta, dict(zip(names, e))

    def eta_of(beta):
        if m == 1:
            return X @ beta + offset
        return X @ beta + offset[:, None]

    def row_nll(z, yi, ti):
        eta_i = z[0] if m == 1 else z[:m]
        e = z[m:]
        e = jnp.exp(e) if log_extra else e
        extra = dict(zip(names, e))
        if trials is not None:
            extra["trials"] = ti
        return -family._log_prob(yi, eta_i, **extra)

    t = trials if trials is not None else jnp.zeros_like(y)

    def value(theta):
        beta, extra = unpack(theta)
        eta = eta_of(beta)
        kw = dict(extra)
        if trials is not None:
            kw["trials"] = trials
        return -jnp.sum(w * family._log_prob(y, eta, **kw))

    row_vgh = jax.vmap(
        lambda z, yi, ti: (row_nll(z, yi, ti), *_grad_hess(row_nll, z, yi, ti))
    )

    def value_grad_hess(theta):
        beta, _ = unpack(theta)
        eta = eta_of(beta)
        eta2 = eta[:, None] if m == 1 else eta
        z = jnp.concatenate(
            [eta2, jnp.broadcast_to(theta[nb:], (eta2.shape[0], q))], axis=1
        )
        f_i, g_i, H_i = row_vgh(z, y, t)
        f = jnp.sum(w * f_i)
        wg = w[:, None] * g_i
        wH = w[:, None, None] * H_i
        if m == 1:
            g_b = wg[:, 0] @ X
            H_bb = X.T @ (X * wH[:, 0, 0][:, None])
            H_bu = X.T @ wH[:, 0, 1:]
        else:
            g_b = (X.T @ wg[:, :m]).reshape(-1)
            H_bb = jnp.einsum("ni,nab,nj->iajb", X, wH[:, :m, :m], X).reshape(nb, nb)
            H_bu = jnp.einsum("ni,nak->iak", X, wH[:, :m, m:]).reshape(nb, q)
        g_u = jnp.sum(wg[:, m:], axis=0)
        H_uu = jnp.sum(wH[:, m:, m:], axis=0)
        g = jnp.concatenate([g_b, g_u])
        H = jnp.block([[H_bb, H_bu], [H_bu.T, H_uu]])
        return f, g, H

    return Objective(value, value_grad_hess, unpack, eta_of)


def _grad_hess(fn, z, yi, ti):
    g = jax.grad(fn)(z, yi, ti)
    H = jax.hessian(fn)(z, yi, ti)
    return g, H
