"""Family + data -> negative log-likelihood of a flat parameter vector.

The parameter vector is ``theta = [vec(beta), u]``: the coefficients
(``(p,)``, or ``(p, K-1)`` raveled row-major for Categorical) and the extra
parameters, on the log scale for the solvers (``u = log extra``) or on their
natural scale for inference. :func:`make_glm` assembles the gradient and
Hessian from exact per-observation derivatives in ``(eta_i, extra)`` (autodiff
of ``log_prob``), so the coefficient block is the weighted Gram matrix
``X' diag(h) X`` rather than an autodiff Hessian through ``X``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class GLMData(NamedTuple):
    X: jax.Array  # (n, p)
    y: jax.Array  # (n,)
    weights: jax.Array  # (n,)
    offset: jax.Array  # (n,)
    trials: jax.Array | None  # (n,) Binomial only


class Objective(NamedTuple):
    value: object  # theta -> scalar NLL
    unpack: object  # theta -> (beta, extra dict on the natural scale)
    eta: object  # beta -> eta


def n_params(family, p: int) -> tuple[int, int, int]:
    """(m, n_coef, n_extra): predictors per row, coefficients, extra parameters."""
    m = family.eta_dim
    return m, p * m, len(family.extra_names)


def make(family, data: GLMData, log_extra: bool = True) -> Objective:
    """The NLL of ``theta`` for ``family`` on ``data`` (for first-order solvers)."""
    X, y, w, offset, trials = data
    p = X.shape[1]
    m, nb, q = n_params(family, p)
    names = family.extra_names
    axis = family.eta_has_axis

    def unpack(theta):
        beta = theta[:nb].reshape(p, m) if axis else theta[:nb]
        e = theta[nb:]
        e = jnp.exp(e) if log_extra else e
        return beta, dict(zip(names, e))

    def eta_of(beta):
        return X @ beta + (offset[:, None] if axis else offset)

    def value(theta):
        beta, extra = unpack(theta)
        kw = dict(extra)
        if trials is not None:
            kw["trials"] = trials
        return -jnp.sum(w * family._log_prob(y, eta_of(beta), **kw))

    return Objective(value, unpack, eta_of)


# ----------------------------------------------------------------------------
# The fast GLM evaluation used by the Newton solver of ``mj.fit``
# ----------------------------------------------------------------------------
#: rows per block: a block of X (<= 1024 x p doubles) is read from memory once
#: and reused from cache for eta, the gradient and the Gram matrix.
BLOCK = 1024
#: up to this many columns the Gram matrix is a fused sum of the unique
#: column products (a batched 5 x 5 XLA dot is slow under vmap).
SMALL_P = 8


class GLMObjective(NamedTuple):
    evaluate: object  # (theta, hess: bool) -> (f, g, H | None, eta)
    value_at: object  # (eta, theta) -> f  (elementwise: no pass over X)
    lin: object  # coefficient direction -> X @ d  (shaped like eta)
    unpack: object
    m: int
    nb: int
    q: int
    cheap_hessian: bool  # the Hessian costs little more than the score


def make_glm(family, data: GLMData, log_extra: bool = True) -> GLMObjective:
    """NLL, gradient and Hessian of a GLM in one pass over row blocks of ``X``.

    For each block of rows, ``eta = X_b beta + offset`` and the exact
    per-observation derivatives in ``(eta_i, extra)`` (autodiff of
    ``log_prob``) are formed and contracted with the same block while it is in
    cache: ``X_b' [X_b * h, g_eta, h_eta,extra]`` gives the Gram block, the
    score and the mixed block in one matrix product. The caller's ``eta`` is
    returned too, so a line search along ``d`` costs one product ``X d`` and
    elementwise work only.
    """
    X, y, w, offset, trials = data
    n, p = X.shape
    m, nb, q = n_params(family, p)
    names = family.extra_names
    t_all = trials if trials is not None else jnp.zeros_like(y)
    axis = family.eta_has_axis

    def extras(u):
        e = jnp.exp(u) if log_extra else u
        return dict(zip(names, e))

    def beta_of(theta):
        return theta[:nb].reshape(p, m) if axis else theta[:nb]

    def unpack(theta):
        return beta_of(theta), extras(theta[nb:])

    def lin(d):
        return X @ (d.reshape(p, m) if axis else d)

    def nll_rows(eta, u, yy, tt):
        kw = extras(u)
        if trials is not None:
            kw["trials"] = tt
        return -family._log_prob(yy, eta, **kw)

    def value_at(eta, theta):
        return jnp.sum(w * nll_rows(eta, theta[nb:], y, t_all))

    def row_nll(z, yi, ti):
        eta_i = z[:m] if axis else z[0]
        return nll_rows(eta_i, z[m:], yi, ti)

    row_gh = jax.vmap(
        lambda z, yi, ti: (jax.grad(row_nll)(z, yi, ti), jax.hessian(row_nll)(z, yi, ti))
    )
    closed = hasattr(family, "_nll_derivs") and not q and not axis
    iu, ju = np.triu_indices(p)
    sym_map = np.zeros((len(iu), p * p))
    sym_map[np.arange(len(iu)), iu * p + ju] = 1.0
    sym_map[np.arange(len(iu)), ju * p + iu] = 1.0

    def block(xb, yb, wb, ob, tb, theta, hess):
        beta = beta_of(theta)
        eta = xb @ beta + (ob[:, None] if axis else ob)
        f = jnp.sum(wb * nll_rows(eta, theta[nb:], yb, tb))
        eta2 = eta if axis else eta[:, None]
        z = jnp.concatenate([eta2, jnp.broadcast_to(theta[nb:], (eta2.shape[0], q))], 1)
        if closed:  # canonical link: -log p derivatives in closed form
            kw = {"trials": tb} if trials is not None else {}
            d1, d2 = family._nll_derivs(yb, eta, **kw)
            gi, Hi = d1[:, None], d2[:, None, None]
        else:
            gi, Hi = row_gh(z, yb, tb)
        gi = wb[:, None] * gi
        g_u = jnp.sum(gi[:, m:], axis=0)
        if not hess:
            if axis:
                g_b = (xb.T @ gi[:, :m]).reshape(-1)
            else:
                g_b = jnp.sum(xb * gi[:, :1], axis=0)
            return f, jnp.concatenate([g_b, g_u]), None, eta
        Hi = wb[:, None, None] * Hi
        H_uu = jnp.sum(Hi[:, m:, m:], axis=0)
        if axis:
            g_b = (xb.T @ gi[:, :m]).reshape(-1)
            H_bb = jnp.einsum("ni,nab,nj->iajb", xb, Hi[:, :m, :m], xb).reshape(nb, nb)
            H_bu = jnp.einsum("ni,nak->iak", xb, Hi[:, :m, m:]).reshape(nb, q)
        elif p <= SMALL_P:
            # static slices and a constant 0/1 map: no gather/scatter, which
            # XLA runs slowly when batched by vmap
            # one fused reduction per unique column product, from static
            # slices (batched by vmap, a stacked (n, pairs) temporary, a
            # gather or a small dot are all several times slower in XLA)
            h, g0, hu = Hi[:, 0, 0], gi[:, 0], Hi[:, 0, 1:]
            upper = jnp.stack([jnp.sum(xb[:, i] * xb[:, j] * h) for i, j in zip(iu, ju)])
            H_bb = (upper @ jnp.asarray(sym_map, xb.dtype)).reshape(p, p)
            g_b = jnp.stack([jnp.sum(xb[:, i] * g0) for i in range(p)])
            H_bu = jnp.stack([jnp.sum(xb[:, i : i + 1] * hu, axis=0) for i in range(p)])
        else:
            B = jnp.concatenate([xb * Hi[:, :1, 0], gi[:, :1], Hi[:, 0, 1:]], axis=1)
            C = xb.T @ B
            H_bb, g_b, H_bu = C[:, :p], C[:, p], C[:, p + 1 :]
        g = jnp.concatenate([g_b, g_u])
        H = jnp.block([[H_bb, H_bu], [H_bu.T, H_uu]])
        return f, g, H, eta

    def evaluate(theta, hess: bool):
        if n < 2 * BLOCK or (p <= SMALL_P and not axis):
            return block(X, y, w, offset, t_all, theta, hess)
        # ceil(n / BLOCK) blocks; the last one is clamped to end at row n and
        # masks the rows the previous block already counted (one block body).
        n_blocks = -(-n // BLOCK)
        eta_shape = (n, m) if axis else (n,)
        rows = jnp.arange(BLOCK)

        def body(i, carry):
            f, g, H, eta = carry
            start = jnp.minimum(i * BLOCK, n - BLOCK)
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, start, BLOCK)  # noqa: E731
            wb = jnp.where(start + rows >= i * BLOCK, sl(w), 0.0)
            fb, gb, Hb, eb = block(sl(X), sl(y), wb, sl(offset), sl(t_all), theta, hess)
            eta = jax.lax.dynamic_update_slice_in_dim(eta, eb, start, 0)
            return f + fb, g + gb, (H + Hb) if hess else H, eta

        k = nb + q
        init = (
            jnp.zeros((), X.dtype),
            jnp.zeros(k, X.dtype),
            jnp.zeros((k, k) if hess else (), X.dtype),
            jnp.zeros(eta_shape, X.dtype),
        )
        f, g, H, eta = jax.lax.fori_loop(0, n_blocks, body, init)
        return f, g, (H if hess else None), eta

    cheap = (p <= SMALL_P and not axis) or n < 2 * BLOCK
    return GLMObjective(evaluate, value_at, lin, unpack, m, nb, q, cheap)
