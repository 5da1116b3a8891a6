"""Derivatives of a fit by the implicit function theorem (no solver unrolling).

A fit returns the optimum ``theta*(d)`` of ``nll(theta, d)``, where ``d`` is
a pytree of the differentiable inputs (``X``, ``y``, ``weights``, ``offset``
of :func:`mlejax.fit`; the float leaves of ``*data`` of
:func:`mlejax.fit_likelihood`). At the optimum ``grad_theta nll(theta*, d) =
0`` for every ``d``, so along a data tangent ``d_dot``::

    H theta_dot = -(d/dd grad_theta nll)(theta*, d) . d_dot

with ``H`` the exact Hessian of ``nll`` over all estimated parameters jointly
(coefficients and the extras on the solvers' log scale). The right-hand side
is one forward-mode derivative of the gradient at fixed ``theta*`` (no mixed
Jacobian is formed) and the solve reuses the Hessian the engine formed at
``theta*`` (equilibrated Cholesky, one ``cho_solve`` per tangent). Every
tangent is linear in ``d_dot``, so JAX transposes the rule for reverse mode
(``jax.grad``, ``jax.jacrev``); the rules are ``jax.custom_jvp`` rules of the
traced fits in :mod:`mlejax.fit` and :mod:`mlejax.any_likelihood`.

What is differentiated (see docs/differentiable.md): ``params``, ``extra``,
``loglik`` (total derivative; the ``theta`` term vanishes at the optimum by the
envelope theorem), ``aic``, ``bic``, ``nobs`` and ``deviance``. ``stderr``,
``cov``, ``extra_stderr``, ``null_deviance`` and ``trace`` get zero tangents
(not differentiated); integer outputs get ``float0`` tangents. A fit that did
not converge gets NaN tangents (a derivative of a point that is not the
optimum would be a confident wrong number).

Penalties and active sets: :func:`glm_nll` takes an optional
``penalty_value(beta, penalty)``; the penalty pytree then travels in
``d["penalty"]`` (so its ``alpha`` is differentiated like the data), and
:func:`solve_pd`'s ``free`` mask restricts the solve to the active set
(coefficients fixed at zero by a Lasso keep a zero tangent).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mlejax import objective
from mlejax.objective import GLMData

__all__ = [
    "zero_tangents",
    "solve_pd",
    "implicit_tangent",
    "glm_theta",
    "glm_nll",
    "fit_jvp",
    "assemble",
    "likelihood_jvp",
]

#: LAD residuals below this (relative to ``|y - offset| + |x||beta|``) count as
#: zero when judging whether a vertex is degenerate
LAD_ZERO_TOL = 1e-9


def _zero(a):
    a = jnp.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.inexact):
        return jnp.zeros_like(a)
    return np.zeros(a.shape, jax.dtypes.float0)


def zero_tangents(tree):
    """Zero tangents shaped like ``tree``: ``float0`` for integer and bool leaves."""
    return jax.tree_util.tree_map(_zero, tree)


def solve_pd(H: jax.Array, rhs: jax.Array, free: jax.Array | None = None) -> jax.Array:
    """``H^{-1} rhs`` by the Cholesky of ``D H D`` (``D = diag(H)^{-1/2}``).

    Linear in ``rhs`` (``H`` is a primal value), so reverse mode transposes it.
    A Hessian that is not positive definite gives NaN, never a finite-looking
    answer. ``free`` (bool ``(k,)``): solve on those coordinates only, the
    others get 0 (the active-set hook for penalties that pin coefficients at
    zero).
    """
    k = H.shape[0]
    if free is not None:
        H = jnp.where(free[:, None] & free[None, :], H, jnp.eye(k, dtype=H.dtype))
        rhs = jnp.where(free, rhs, 0.0)
    diag = jnp.diag(H)
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
    L = jnp.linalg.cholesky(H * d[:, None] * d[None, :])
    x = jax.scipy.linalg.cho_solve((L, True), rhs * d) * d
    return x if free is None else jnp.where(free, x, 0.0)


def implicit_tangent(
    nll: Callable,
    theta: jax.Array,
    data,
    data_dot,
    hess: jax.Array,
    free: jax.Array | None = None,
    extra=None,
):
    """``(theta_dot, nll_dot)`` at the optimum ``theta`` of ``nll(., data)``.

    ``theta_dot = -H^{-1} (d/dd grad_theta nll) . data_dot`` (one JVP of the
    gradient at fixed ``theta`` and one solve); ``nll_dot`` is the total
    derivative of ``nll(theta*(d), d)``: the partial in ``d`` plus
    ``grad . theta_dot`` (zero at an exact optimum: the envelope theorem; kept
    so that a penalised fit's unpenalised part would be right too).
    """
    vg = jax.value_and_grad(nll)
    (_, g), (f_dot, g_dot) = jax.jvp(lambda d: vg(theta, d), (data,), (data_dot,))
    if extra is not None:  # a penalty pen(theta, p) with its own tangent p_dot
        pen, p, p_dot = extra
        _, gp_dot = jax.jvp(lambda q: jax.grad(pen)(theta, q), (p,), (p_dot,))
        g_dot = g_dot + gp_dot
    theta_dot = -solve_pd(hess, g_dot, free)
    return theta_dot, f_dot + jnp.dot(g, theta_dot)


# ----------------------------------------------------------------------------
# mj.fit
# ----------------------------------------------------------------------------
def glm_theta(family, params: jax.Array, extra: dict) -> jax.Array:
    """The solvers' parameter vector ``[vec(beta), log(extra)]`` of a fit."""
    logs = [
        jnp.log(jnp.asarray(extra[k], params.dtype))[None] for k in family.extra_names
    ]
    return jnp.concatenate([jnp.ravel(params), *logs])


def glm_nll(
    family,
    p: int,
    trials=None,
    penalty_value: Callable | None = None,
    var_weights=None,
) -> Callable:
    """``nll(theta, d)`` of a regression fit, ``d = {"X", "y", "weights", "offset"}``.

    ``theta = [vec(beta), log(extra)]`` as in :mod:`mlejax.objective`. A row of
    weight 0 counts nothing, but its weight's derivative is the row's
    log-likelihood (the influence of adding the row). With ``penalty_value``,
    ``d["penalty"]`` (a pytree, e.g. a penalty with its ``alpha`` leaf) adds
    ``penalty_value(beta, d["penalty"])`` to the objective.
    """
    m, names, axis = family.eta_dim, family.extra_names, family.eta_has_axis
    nb = p * m

    def nll(theta, d):
        beta = theta[:nb].reshape(p, m) if axis else theta[:nb]
        kw = dict(zip(names, jnp.exp(theta[nb:]), strict=True))
        w, v_rows = objective.split_var_weights(family, d["weights"], var_weights)
        kw = objective.row_extras(family, kw, v_rows)  # precision weights
        if trials is not None:
            kw["trials"] = trials
        offset = d["offset"][:, None] if axis else d["offset"]
        rows = family.log_prob_rows(d["y"], d["X"] @ beta + offset, **kw)
        rows = jnp.where((w > 0) | jnp.isfinite(rows), rows, 0.0)
        f = -jnp.sum(w * rows)
        if penalty_value is not None and "penalty" in d:
            f = f + penalty_value(beta, d["penalty"])
        return f

    return nll


def _mask(res):
    """1 for a converged fit, NaN otherwise (multiplies every tangent)."""
    return jnp.where(res.converged, 1.0, jnp.nan)


def _deviance_dot(family, res, data, data_dot, extra_dot, loglik_dot):
    """Tangent of R's deviance ``phi * 2 * (sum w log p_sat - loglik)``."""
    _, y, w, _, trials = data[:5]
    if family.eta_has_axis or res.deviance is None:
        return None

    def dev(extra, y, w, ll):
        kw = dict(extra)
        if trials is not None:
            kw["trials"] = trials
        sat = family.saturated_log_prob(y, **kw)
        if sat is None:
            return jnp.zeros_like(ll)
        sat = jnp.where((w > 0) | jnp.isfinite(sat), sat, 0.0)
        return family.deviance_scale(**extra) * 2.0 * (jnp.sum(w * sat) - ll)

    _, t = jax.jvp(
        dev,
        (res.extra, y, w, res.loglik),
        (extra_dot, data_dot.y, data_dot.weights, loglik_dot),
    )
    return jnp.where(jnp.isfinite(res.deviance), t, 0.0).astype(res.deviance.dtype)


def fit_jvp(family, res, aux, data, data_dot) -> dict:
    """Tangents of the differentiated fields of an ``mj.fit`` result (a dict;
    :func:`assemble` makes the ``FitResult`` tangent).

    ``data``: ``(X, y, weights, offset, trials, ...)`` (the fit's arguments);
    ``data_dot``: the tangents of ``(X, y, weights, offset)``.

    ``aux = (hess, basis)`` from the engine: the Hessian of the NLL in
    ``[vec(beta), log(extra)]`` at the optimum (``None``: formed here, one
    pass over ``X``: the Gaussian least-squares engine), or the LAD basis
    (Laplace). ``trials`` is not differentiated (integer data).
    """
    hess, basis = aux
    (data, *rest), (data_dot, *rest_dot) = data, data_dot
    penalty = rest[3] if len(rest) > 3 else None
    penalty_dot = rest_dot[3] if len(rest_dot) > 3 else None
    v = data.var_weights
    data, data_dot = GLMData(*data[:5]), GLMData(*data_dot[:4], None)
    if basis is not None:
        params_dot, extra_dot, loglik_dot = _lad_jvp(res, basis, data, data_dot)
    else:
        params_dot, extra_dot, loglik_dot = _smooth_jvp(
            family, res, hess, data, data_dot, v, penalty, penalty_dot
        )
    mask = _mask(res)
    if basis is None and not family.smooth:
        # a non-smooth NLL fitted by a first-order solver: no Hessian and no
        # known active set (Laplace with solver="newton" has its LAD basis)
        mask = mask * jnp.nan
    params_dot = params_dot * mask
    extra_dot = {k: v * mask for k, v in extra_dot.items()}
    loglik_dot = loglik_dot * mask
    nobs_dot = jnp.sum(data_dot.weights) * mask
    k = res.params.size + len(res.extra)
    out = dict(
        params=params_dot,
        extra=extra_dot,
        loglik=loglik_dot,
        aic=-2.0 * loglik_dot,
        bic=-2.0 * loglik_dot + k * nobs_dot / res.nobs,
        nobs=nobs_dot,
    )
    dev_dot = _deviance_dot(family, res, data, data_dot, extra_dot, loglik_dot)
    return out if dev_dot is None else {**out, "deviance": dev_dot}


def assemble(res, dots: dict):
    """The tangent of ``res``: ``dots`` where given, zero (``float0``) elsewhere."""
    return zero_tangents(res).replace(**dots)


def _smooth_jvp(family, res, hess, data, data_dot, v=None, penalty=None, pen_dot=None):
    X, y, w, offset, trials = data[:5]
    theta = glm_theta(family, res.params, res.extra)
    if hess is None:
        full = GLMData(*data[:5], v)
        hess = objective.make_glm(family, full).evaluate(theta, True)[1]
    nll = glm_nll(family, X.shape[1], trials, var_weights=v)
    d = {"X": X, "y": y, "weights": w, "offset": offset}
    dd = {
        "X": data_dot.X,
        "y": data_dot.y,
        "weights": data_dot.weights,
        "offset": data_dot.offset,
    }
    free = None
    if penalty is not None:
        # MAP: the penalty's alpha is differentiated too; the loglik tangent
        # stays that of the unpenalised log-likelihood (not zero at a MAP)
        from mlejax.engines import penalized

        m, nb = family.eta_dim, res.params.size
        q = theta.size - nb

        def pen(theta, dp):
            l1, l2 = penalized.strengths(dp, X, m, q)
            return jnp.sum(l1 * jnp.abs(theta)) + 0.5 * jnp.sum(l2 * theta**2)

        if penalty.kind == "l1":
            l1, _ = penalized.strengths(penalty, X, m, q)
            free = (theta != 0) | (l1 == 0)
        pen_dot = jax.tree_util.tree_map(
            lambda a, t: jnp.zeros_like(a) if t.dtype == jax.dtypes.float0 else t,
            penalty,
            pen_dot,
        )
        theta_dot, nll_dot = implicit_tangent(
            nll, theta, d, dd, hess, free, extra=(pen, penalty, pen_dot)
        )
    else:
        theta_dot, nll_dot = implicit_tangent(nll, theta, d, dd, hess)
    nb = res.params.size
    params_dot = theta_dot[:nb].reshape(res.params.shape)
    extra_dot = {
        k: res.extra[k] * theta_dot[nb + i] for i, k in enumerate(family.extra_names)
    }
    return params_dot, extra_dot, -nll_dot


def _lad_jvp(res, basis, data, data_dot):
    """Laplace (exact LAD): the derivative on the active set of the vertex.

    The LAD optimum is the vertex ``X_S beta = y_S - offset_S`` of its basis
    ``S``; while the data move slightly, a non-degenerate vertex stays optimal
    with the same basis, so ``beta_dot = X_S^{-1} (y_dot - offset_dot - X_dot
    beta)_S`` (the weights do not move it), and the scale ``b = sum w |r| /
    sum w`` and ``loglik = -nobs (log 2b + 1)`` follow. At a degenerate vertex
    (more than ``p`` zero residuals: ties, integer ``y``, an exact fit) or a
    non-unique optimum (a basic row with ``|v_j| = w_j`` in the certificate)
    the derivative does not exist (the one-sided derivatives differ): NaN.
    """
    X, y, w, offset, _ = data[:5]
    beta = res.params
    n, p = X.shape
    yo = y - offset
    r = yo - X @ beta
    XS = X[basis]
    rhs = data_dot.y[basis] - data_dot.offset[basis] - data_dot.X[basis] @ beta
    beta_dot = jnp.linalg.solve(XS, rhs)
    # degeneracy: zero residuals beyond the basis, or a tight certificate
    zero = jnp.abs(r) <= LAD_ZERO_TOL * (jnp.abs(yo) + jnp.abs(X) @ jnp.abs(beta))
    in_s = jnp.zeros(n, bool).at[basis].set(True)
    extra_zero = jnp.sum((w > 0) & zero & ~in_s)
    s = jnp.where(in_s | (w <= 0), 0.0, jnp.sign(r))
    v = jnp.linalg.solve(XS.T, -((w * s) @ X))
    tight = jnp.any(jnp.abs(v) >= w[basis] * (1.0 - 1e-9))
    ok = (extra_zero == 0) & ~tight

    def scale_ll(b_, X_, y_, w_, o_):
        nobs = jnp.sum(w_)
        b = jnp.sum(w_ * jnp.abs(y_ - o_ - X_ @ b_)) / nobs
        return b, -nobs * (jnp.log(2.0 * b) + 1.0)

    _, (b_dot, ll_dot) = jax.jvp(
        scale_ll,
        (beta, X, y, w, offset),
        (beta_dot, data_dot.X, data_dot.y, data_dot.weights, data_dot.offset),
    )
    nan = jnp.where(ok, 1.0, jnp.nan)
    return beta_dot * nan, {"scale": b_dot * nan}, ll_dot * nan


# ----------------------------------------------------------------------------
# mj.fit_likelihood
# ----------------------------------------------------------------------------
def likelihood_jvp(
    loglik: Callable, res, hess, data: tuple, data_dot: tuple, free=None
) -> dict:
    """Tangents of a ``fit_likelihood`` result along the float leaves of ``data``.

    ``hess``: the Hessian of ``-sum(loglik)`` over the raveled parameters at
    the optimum (the engine's). Integer leaves of ``data`` are not
    differentiated; the start ``init_params`` does not enter (the MLE does not
    depend on it).
    """
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(res.params)
    leaves, treedef = jax.tree_util.tree_flatten(data)
    dleaves = treedef.flatten_up_to(data_dot)
    idx = [
        i
        for i, a in enumerate(leaves)
        if jnp.issubdtype(jnp.result_type(a), jnp.inexact)
    ]

    def nll(theta, dd):
        ls = list(leaves)
        for j, i in enumerate(idx):
            ls[i] = dd[j]
        return -jnp.sum(
            loglik(unravel(theta), *jax.tree_util.tree_unflatten(treedef, ls))
        )

    d = [jnp.asarray(leaves[i]) for i in idx]
    dd = [jnp.asarray(dleaves[i], d[j].dtype) for j, i in enumerate(idx)]
    theta_dot, nll_dot = implicit_tangent(nll, flat, d, dd, hess, free)
    mask = _mask(res)
    loglik_dot = (-nll_dot * mask).astype(res.loglik.dtype)
    return dict(
        params=unravel((theta_dot * mask).astype(flat.dtype)),
        loglik=loglik_dot,
        aic=-2.0 * loglik_dot,
        bic=-2.0 * loglik_dot,
    )
