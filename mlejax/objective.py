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

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class GLMData(NamedTuple):
    X: jax.Array  # (n, p)
    y: jax.Array  # (n,)
    weights: jax.Array  # (n,)
    offset: jax.Array  # (n,)
    trials: jax.Array | None  # (n,) Binomial only
    #: (n,) precision weights (``var_weights=``), None: all 1
    var_weights: jax.Array | None = None


def split_var_weights(family, w, v):
    """``(w, v_rows)``: the weights the NLL sums with, and per-row precisions.

    ``"loglik"`` families (``log p`` times ``v``): ``v`` folds into the sum's
    weights (exact for the NLL and its derivatives), ``v_rows`` is None.
    ``"dispersion"`` families keep ``v`` per row (:func:`row_extras`).
    """
    if v is None:
        return w, None
    if family.var_weights_mode == "loglik":
        return w * v, None
    return w, v


def row_extras(family, extra: dict, v) -> dict:
    """The extras of rows with precision weights ``v`` (``v`` None: ``extra``)."""
    return extra if v is None else family.precision_extras(v, **extra)


def n_params(family, p: int) -> tuple[int, int, int]:
    """(m, n_coef, n_extra): predictors per row, coefficients, extra parameters."""
    m = family.eta_dim
    return m, p * m, len(family.extra_names)


# ----------------------------------------------------------------------------
# The fast GLM evaluation used by the Newton solver of ``mj.fit``
# ----------------------------------------------------------------------------
#: rows per block: a block of X (<= 1024 x p doubles) is read from memory once
#: and reused from cache for eta, the gradient and the Gram matrix.
BLOCK = 1024
#: up to this many columns the Gram matrix costs little more than the score,
#: so it is recomputed every step (no chord steps).
CHEAP_GRAM_P = 8


class GLMObjective(NamedTuple):
    """The NLL of ``theta = [vec(beta), log(extra)]`` and its derivatives."""

    evaluate: Callable  # (theta, hess: bool) -> (g, H | None, eta); no NLL value
    value_at: Callable  # (eta, theta) -> f  (elementwise: no pass over X)
    value: Callable  # theta -> f (one pass; differentiable, for first-order solvers)
    eta: Callable  # theta -> eta = X beta + offset
    lin: Callable  # coefficient direction -> X @ d  (shaped like eta)
    unpack: Callable  # theta -> (beta, extra dict on the natural scale)
    expected_information: Callable  # theta -> expected information in (beta, u)
    nb: int
    cheap_hessian: bool  # the Hessian costs little more than the score


def make_glm(family, data: GLMData) -> GLMObjective:
    """Gradient and Hessian of a GLM's NLL in one pass over row blocks of ``X``.

    For each block of rows, ``eta = X_b beta + offset`` and the exact
    per-observation derivatives in ``(eta_i, extra)`` (closed form for the
    canonical families, autodiff of ``log_prob`` otherwise) are formed and
    contracted with the same block while it is in cache:
    ``X_b' [X_b * h, g_eta, h_eta,extra]`` gives the Gram block, the score and
    the mixed block in one matrix product. The NLL itself is not formed there
    (its logarithms cost more than the rest of the pass): the solver gets it
    from :attr:`GLMObjective.value_at`, elementwise on an ``eta`` it already
    has. ``eta`` is returned too, so a line search along ``d`` costs one
    product ``X d`` and elementwise work only.
    """
    X, y, w, offset, trials = data[:5]
    w, v_rows = split_var_weights(family, w, data.var_weights)
    n, p = X.shape
    m, nb, q = n_params(family, p)
    names = family.extra_names
    t_all = trials if trials is not None else jnp.zeros_like(y)
    v_all = v_rows if v_rows is not None else jnp.ones_like(y)
    axis = family.eta_has_axis

    def extras(u):
        return dict(zip(names, jnp.exp(u), strict=True))

    def beta_of(theta):
        return theta[:nb].reshape(p, m) if axis else theta[:nb]

    def unpack(theta):
        return beta_of(theta), extras(theta[nb:])

    def lin(d):
        return X @ (d.reshape(p, m) if axis else d)

    def eta_of(theta):
        return lin(theta[:nb]) + (offset[:, None] if axis else offset)

    def nll_rows(eta, u, yy, tt, vv):
        kw = row_extras(family, extras(u), None if v_rows is None else vv)
        if trials is not None:
            kw["trials"] = tt
        return -family.log_prob_rows(yy, eta, **kw)

    # The parameter-free part of log p (log y!, log C(trials, y): a gammaln
    # each, several times the cost of the rest) is summed once per fit.
    kw_t = {"trials": t_all} if trials is not None else {}
    const_rows = family.log_prob_const(y, **kw_t)
    if const_rows is not None:
        const = jnp.sum(jnp.where(w > 0, w * const_rows, 0.0))

    def value_at(eta, theta):
        # zero-weight rows (padding, masked rows) count exactly nothing
        if const_rows is None:
            rows = nll_rows(eta, theta[nb:], y, t_all, v_all)
            return jnp.sum(jnp.where(w > 0, w * rows, 0.0))
        kw = row_extras(family, extras(theta[nb:]), v_rows)
        if trials is not None:
            kw["trials"] = t_all
        rows = family.log_prob_kernel(y, eta, **kw)
        return -(jnp.sum(jnp.where(w > 0, w * rows, 0.0)) + const)

    def value(theta):
        return value_at(eta_of(theta), theta)

    def row_nll(z, yi, ti, vi):
        eta_i = z[:m] if axis else z[0]
        return nll_rows(eta_i, z[m:], yi, ti, vi)

    def row_derivs(eta, theta, yb, tb, vb):
        """Per-row gradient ``(r, m+q)`` and Hessian ``(r, m+q, m+q)`` of -log p."""
        if not q and not axis:  # canonical links: closed form (None: autodiff)
            kw = {"trials": tb} if trials is not None else {}
            closed = family.nll_derivs(yb, eta, **kw)
            if closed is not None:
                d1, d2 = closed
                return d1[:, None], d2[:, None, None]
        eta2 = eta if axis else eta[:, None]
        z = jnp.concatenate([eta2, jnp.broadcast_to(theta[nb:], (eta2.shape[0], q))], 1)
        gh = jax.vmap(
            lambda z, yi, ti, vi: (
                jax.grad(row_nll)(z, yi, ti, vi),
                jax.hessian(row_nll)(z, yi, ti, vi),
            )
        )
        return gh(z, yb, tb, vb)

    def assemble(g_b, g_u, H_bb, H_bu, H_uu):
        g = jnp.concatenate([g_b, g_u])
        if H_bb is None:
            return g, None
        return g, jnp.block([[H_bb, H_bu], [H_bu.T, H_uu]])

    def expected_rows(eta, theta, yb, tb, vb):
        """Per-row expected Hessian in ``(eta, u = log extra)`` (score: observed)."""
        eta2 = eta if axis else eta[:, None]
        gi, _ = row_derivs(eta, theta, yb, tb, vb)
        e = jnp.exp(theta[nb:])
        Hn = family.expected_nll_hessian(eta2 if axis else eta, **extras(theta[nb:]))
        J = jnp.concatenate([jnp.ones(m, e.dtype), e])  # d natural / d u
        return gi, Hn * J[None, :, None] * J[None, None, :]

    def block(xb, yb, wb, ob, tb, vb, theta, hess, expected=False):
        beta = beta_of(theta)
        eta = xb @ beta + (ob[:, None] if axis else ob)
        derivs = expected_rows if expected else row_derivs
        gi, Hi = derivs(eta, theta, yb, tb, vb)
        # zero-weight rows count nothing, even where their derivatives are not finite
        gi = jnp.where(wb[:, None] > 0, gi, 0.0)
        Hi = jnp.where(wb[:, None, None] > 0, Hi, 0.0)
        gi = wb[:, None] * gi
        g_u = jnp.sum(gi[:, m:], axis=0)
        if not hess:
            g_b = (xb.T @ gi[:, :m]).reshape(-1) if axis else jnp.sum(xb * gi[:, :1], 0)
            return (*assemble(g_b, g_u, None, None, None), eta)
        Hi = wb[:, None, None] * Hi
        H_uu = jnp.sum(Hi[:, m:, m:], axis=0)
        if axis:
            g_b = (xb.T @ gi[:, :m]).reshape(-1)
            H_bb = jnp.einsum("ni,nab,nj->iajb", xb, Hi[:, :m, :m], xb).reshape(nb, nb)
            H_bu = jnp.einsum("ni,nak->iak", xb, Hi[:, :m, m:]).reshape(nb, q)
        else:
            B = jnp.concatenate([xb * Hi[:, :1, 0], gi[:, :1], Hi[:, 0, 1:]], axis=1)
            C = xb.T @ B
            H_bb, g_b, H_bu = C[:, :p], C[:, p], C[:, p + 1 :]
        return (*assemble(g_b, g_u, H_bb, H_bu, H_uu), eta)

    def evaluate(theta, hess: bool, expected: bool = False):
        if n < 2 * BLOCK:
            return block(X, y, w, offset, t_all, v_all, theta, hess, expected)
        # ceil(n / BLOCK) blocks; the last one is clamped to end at row n and
        # masks the rows the previous block already counted (one block body).
        n_blocks = -(-n // BLOCK)
        eta_shape = (n, m) if axis else (n,)
        rows = jnp.arange(BLOCK)

        def body(i, carry):
            g, H, eta = carry
            start = jnp.minimum(i * BLOCK, n - BLOCK)
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, start, BLOCK)  # noqa: E731
            wb = jnp.where(start + rows >= i * BLOCK, sl(w), 0.0)
            gb, Hb, eb = block(
                sl(X),
                sl(y),
                wb,
                sl(offset),
                sl(t_all),
                sl(v_all),
                theta,
                hess,
                expected,
            )
            eta = jax.lax.dynamic_update_slice_in_dim(eta, eb, start, 0)
            return g + gb, (H + Hb) if hess else H, eta

        k = nb + q
        init = (
            jnp.zeros(k, X.dtype),
            jnp.zeros((k, k) if hess else (), X.dtype),
            jnp.zeros(eta_shape, X.dtype),
        )
        g, H, eta = jax.lax.fori_loop(0, n_blocks, body, init)
        return g, (H if hess else None), eta

    # Lazy Hessians pay only where the Gram matrix dominates the pass.
    cheap = (p <= CHEAP_GRAM_P and not axis) or n < 2 * BLOCK

    def expected_information(theta):
        return evaluate(theta, True, expected=True)[1]

    return GLMObjective(
        evaluate,
        value_at,
        value,
        eta_of,
        lin,
        unpack,
        expected_information,
        nb,
        cheap,
    )


# ----------------------------------------------------------------------------
# Public: one fused pass for the NLL and its gradient in the coefficients
# ----------------------------------------------------------------------------
def _nll_terms(family, yb, eta, wb, extra, tb):
    """Weighted per-row NLL (zero-weight rows count exactly nothing)."""
    kw = dict(extra)
    if tb is not None:
        kw["trials"] = tb
    rows = -family.log_prob_rows(yb, eta, **kw)
    return jnp.where(wb > 0, wb * rows, 0.0)


def _vg_reference(family, params, X, y, w, offset, extra, trials):
    """The plain two-pass formula: the fused pass is differentiated as this."""
    off = offset[:, None] if family.eta_has_axis else offset

    def nll(b):
        return jnp.sum(_nll_terms(family, y, X @ b + off, w, extra, trials))

    return jax.value_and_grad(nll)(params)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _vg_fused(family, params, X, y, w, offset, extra, trials):
    n = X.shape[0]
    axis = family.eta_has_axis
    canonical = not extra and not axis

    def block(xb, yb, wb, ob, tb):
        eta = xb @ params + (ob[:, None] if axis else ob)
        kw = {} if tb is None else {"trials": tb}
        closed = family.nll_derivs(yb, eta, **kw) if canonical else None
        f = jnp.sum(_nll_terms(family, yb, eta, wb, extra, tb))
        if closed is not None:  # closed-form score: no autodiff of the logs
            r = jnp.where(wb > 0, wb * closed[0], 0.0)
        else:  # the rows are independent: d(sum)/d eta is each row's score
            r = jax.grad(lambda e: jnp.sum(_nll_terms(family, yb, e, wb, extra, tb)))(
                eta
            )
        return f, xb.T @ r

    if n < 2 * BLOCK:
        return block(X, y, w, offset, trials)
    # ceil(n / BLOCK) blocks, the last clamped to end at row n with the rows
    # the previous block counted masked (one block body, no copy of X)
    n_blocks = -(-n // BLOCK)
    rows = jnp.arange(BLOCK)

    def body(i, carry):
        start = jnp.minimum(i * BLOCK, n - BLOCK)
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, start, BLOCK)  # noqa: E731
        wb = jnp.where(start + rows >= i * BLOCK, sl(w), 0.0)
        tb = None if trials is None else sl(trials)
        fb, gb = block(sl(X), sl(y), wb, sl(offset), tb)
        return carry[0] + fb, carry[1] + gb

    init = (jnp.zeros((), X.dtype), jnp.zeros_like(params))
    return jax.lax.fori_loop(0, n_blocks, body, init)


@_vg_fused.defjvp
def _vg_fused_jvp(family, primals, tangents):
    # forward mode (and reverse through it, the JVP being linear in the
    # tangents) of the plain formula: exact, at the cost of its two passes
    return jax.jvp(functools.partial(_vg_reference, family), primals, tangents)


def value_and_grad(
    family, params, X, y, weights=None, offset=None, trials=None, **extra
) -> tuple[jax.Array, jax.Array]:
    """The NLL ``-sum_i w_i log p(y_i | x_i' params + offset_i)`` and its gradient.

    One fused pass over row blocks of ``X``: each block forms ``eta``, the
    per-row NLL and score, and accumulates ``X_b' r_b`` while it is in cache
    (``jax.value_and_grad`` of the plain formula reads ``X`` twice, and XLA
    on CPU runs the transposed product ``X' r`` far below memory speed).

    Args:
      family: a :mod:`mlejax.families` instance.
      params: coefficients, ``(p,)`` (``(p, K-1)`` for ``Categorical``).
      X: ``(n, p)`` design; y: ``(n,)`` responses.
      weights: ``(n,)`` frequency weights (default 1; zero-weight rows count
        exactly nothing, even where their log-likelihood is not finite).
      offset: ``(n,)`` added to ``eta`` (default 0).
      trials: ``(n,)`` for ``Binomial``.
      **extra: the family's extra parameters on their natural scale
        (``scale=`` for Gaussian, ``alpha=`` for NegativeBinomial, ...), held
        fixed: the gradient is in ``params`` only.

    Returns:
      ``(nll, grad)``, ``grad`` shaped like ``params``. Differentiable (a custom
      JVP: forward and reverse mode, any order) in ``params``, ``X``, ``y``,
      ``weights``, ``offset`` and the extras; ``jit``/``vmap`` compatible.
    """
    X = jnp.asarray(X)
    dtype = jnp.result_type(X.dtype, float)
    X = X.astype(dtype)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, p); got shape {X.shape}.")
    n, p = X.shape
    params = jnp.asarray(params, dtype)
    want = (p, family.eta_dim) if family.eta_has_axis else (p,)
    if params.shape != want:
        raise ValueError(
            f"params must have shape {want} for X of shape {X.shape} and "
            f"{family.name}; got {params.shape}."
        )
    y = jnp.asarray(y, dtype)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X; got {y.shape}.")

    def rows(a, name, default):
        a = jnp.full((n,), default, dtype) if a is None else jnp.asarray(a, dtype)
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},); got {a.shape}.")
        return a

    w = rows(weights, "weights", 1.0)
    off = rows(offset, "offset", 0.0)
    t = None if trials is None else rows(trials, "trials", 1.0)
    if set(extra) != set(family.extra_names):
        raise ValueError(
            f"{family.name} needs the extras {sorted(family.extra_names)} as "
            f"keywords (natural scale); got {sorted(extra)}."
        )
    ex = {k: jnp.asarray(v, dtype) for k, v in extra.items()}
    return _vg_fused(family, params, X, y, w, off, ex, t)
