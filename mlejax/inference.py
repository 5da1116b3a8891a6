"""Information -> covariance -> standard errors, the same for every path.

Every engine hands this layer an information matrix over all estimated
parameters (coefficients first, then the extras on their natural scale) and
gets back the covariance, the standard errors and the information criteria.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlejax._math import quick_jit
from mlejax.linalg.blocks import weighted_grams
from mlejax.objective import row_extras, split_var_weights


class Inference(NamedTuple):
    cov: jax.Array  # covariance of the coefficients (nb x nb)
    stderr: jax.Array  # standard errors of the coefficients (nb,)
    extra_stderr: jax.Array  # standard errors of the extras (q,)


def inverse_information(info: jax.Array) -> jax.Array:
    """Inverse of a symmetric positive-definite information matrix.

    Equilibrated Cholesky: ``D (D I D)^{-1} D`` with ``D = diag(I)^{-1/2}``, so
    parameters on very different scales lose no accuracy. Not positive
    definite (an undetermined or saddle point) gives NaN, never a
    finite-looking answer; so does a numerically singular one (the smallest
    pivot of the equilibrated Cholesky at the rounding level).
    """
    diag = jnp.diag(info)
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
    L = jnp.linalg.cholesky(info * d[:, None] * d[None, :])
    k = info.shape[0]
    # Numerically singular (an exact collinearity leaves a pivot at the
    # rounding level, not always a failed Cholesky): NaN as well.
    tiny = jnp.min(jnp.diag(L)) ** 2 <= 64 * k * jnp.finfo(info.dtype).eps
    eye = jnp.eye(k, dtype=info.dtype)
    inv = jax.scipy.linalg.cho_solve((L, True), eye)
    return jnp.where(tiny, jnp.nan, inv * d[:, None] * d[None, :])


def natural_hessian(H: jax.Array, g: jax.Array, theta: jax.Array, nb: int) -> jax.Array:
    """Hessian in ``(beta, e)`` from the one in ``(beta, u = log e)`` (exact).

    ``g`` is the gradient in ``(beta, u)``; pass zeros for an expected
    information (the score has expectation zero).
    """
    q = theta.shape[0] - nb
    if not q:
        return H
    e = jnp.exp(theta[nb:])
    J = jnp.concatenate([jnp.ones(nb, H.dtype), 1.0 / e])
    Hn = H * J[:, None] * J[None, :]
    corr = jnp.concatenate([jnp.zeros(nb, H.dtype), g[nb:] / e**2])
    return Hn - jnp.diag(corr)


def from_information(info: jax.Array, nb: int, cov_scale=1.0) -> Inference:
    """Covariance and standard errors from the information over ``(beta, extra)``.

    ``cov_scale`` multiplies the coefficient covariance (Gaussian's OLS
    convention ``n / (n - p)``); the extras' standard errors are not scaled.
    """
    cov_full = inverse_information(info)
    se_full = jnp.sqrt(jnp.diag(cov_full))
    cov = cov_full[:nb, :nb] * cov_scale
    return Inference(cov, jnp.sqrt(jnp.diag(cov)), se_full[nb:])


INFORMATION = ("observed", "expected")


def check_information(information, family) -> None:
    """ValueError for an unknown ``information`` or one the family cannot give."""
    if information not in INFORMATION:
        raise ValueError(
            f"information must be 'observed' (exact Hessian) or 'expected' (Fisher "
            f"information, R's summary.glm); got {information!r}."
        )
    if information == "expected" and family.smooth:
        probe = {k: 1.0 for k in family.extra_names}
        has = not family.eta_has_axis and (
            family.expected_eta_weight(jnp.ones(1), **probe) is not None
        )
        if not has:
            raise ValueError(
                f"information='expected' is not available for {family.name}: it "
                "needs the family's Fisher weight (Family.expected_eta_weight; the "
                "GLM families Gaussian, Bernoulli, Binomial, Poisson, Gamma and "
                "NegativeBinomial have it). Use information='observed'."
            )


def expected_glm_information(family, data, obj, theta, observed):
    """Fisher information over ``(beta, extras)``, block diagonal.

    The coefficient block is ``X' diag(w W) X`` with the family's Fisher
    weight ``W = mu'(eta)^2 / Var(y)`` (:meth:`Family.expected_eta_weight`,
    R's IRLS weight), so ``cov`` reproduces R's ``summary.glm``/``vcov`` and
    statsmodels' IRLS covariance for any link. Between the coefficients and
    the extras (dispersion, shape, NB alpha) the expected information is 0
    for these families; the extras' block is kept from ``observed`` (the
    observed information of the extras at the MLE: the expected one for
    Gaussian scale and Gamma shape, and what R's ``glm.nb`` reports for
    ``theta``).
    """
    X, y, w, offset, trials = data[:5]
    w, v_rows = split_var_weights(family, w, data.var_weights)
    nb = obj.nb
    beta, extra = obj.unpack(theta)
    eta = obj.eta(theta)
    kw = row_extras(family, dict(extra), v_rows)  # precision weights
    if trials is not None:
        kw["trials"] = trials
    W = family.expected_eta_weight(eta, **kw)
    W = jnp.where(w > 0, w * W, 0.0)
    H_bb = X.T @ (X * W[:, None])
    info = jnp.zeros_like(observed).at[:nb, :nb].set(H_bb)
    return info.at[nb:, nb:].set(observed[nb:, nb:])


def information_criteria(loglik, k, nobs):
    """``(aic, bic) = (-2 l + 2 k, -2 l + k log n)``."""
    return -2.0 * loglik + 2.0 * k, -2.0 * loglik + k * jnp.log(nobs)


# ----------------------------------------------------------------------------
# Robust (sandwich) covariances
# ----------------------------------------------------------------------------
COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")


def sandwich(bread_info, S, w, cov_type, codes, nobs, k):
    """``H^-1 M H^-1`` with the meat ``M`` from per-observation scores ``S``.

    ``bread_info``: the information ``H`` (``(d, d)``); ``S``: unweighted
    per-row scores ``(n, d)``; ``w``: frequency weights (a row of weight ``w``
    counts as ``w`` replicated rows: ``w s s'`` in HC, ``w s`` summed within
    its cluster); ``codes``: ``None`` or a tuple of ``(inverse codes, bound)``
    per clustering (two-way: ``(g1, g2, g1 x g2)`` combined as
    ``V1 + V2 - V12``). ``k`` (coefficient count) enters HC1 ``n/(n-k)`` and
    the cluster correction ``G/(G-1) (n-1)/(n-k)``. Returns the covariance and
    the numbers of clusters (``None`` for HC).
    """
    B = inverse_information(bread_info)
    S = jnp.where(w[:, None] > 0, S, 0.0)
    if cov_type in ("HC0", "HC1"):
        meat = S.T @ (w[:, None] * S)
        cov = B @ meat @ B
        if cov_type == "HC1":
            cov = cov * (nobs / (nobs - k))
        return cov, None
    covs, counts = [], []
    for inv, bound in codes:
        T = jax.ops.segment_sum(w[:, None] * S, inv, num_segments=bound)
        G = jnp.sum(jax.ops.segment_sum(w, inv, num_segments=bound) > 0)
        corr = G / (G - 1.0) * (nobs - 1.0) / (nobs - k)
        covs.append(B @ (T.T @ T) @ B * corr)
        counts.append(G)
    if len(covs) == 1:
        return covs[0], counts[0]
    return covs[0] + covs[1] - covs[2], jnp.stack(counts[:2])


def cluster_codes(groups, bounds):
    """In-trace dense codes for ``groups`` ``(n,)`` or ``(n, 2)``.

    ``bounds``: static upper bounds of the numbers of groups (one per
    clustering, plus one for the intersection when two-way); every distinct
    value must fit under its bound (``jnp.unique(size=bound)``).
    """

    def dense(g, bound):
        _, inv = jnp.unique(g, size=bound, fill_value=g[0], return_inverse=True)
        return inv.reshape(-1), bound

    if groups.ndim == 1:
        return (dense(groups, bounds[0]),)
    g1, g2 = groups[:, 0], groups[:, 1]
    c1, c2 = dense(g1, bounds[0]), dense(g2, bounds[1])
    # the intersection: a pair code from the dense codes (no overflow: < n^2)
    pair = c1[0].astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    pair = pair * bounds[1] + c2[0]
    return (c1, c2, dense(pair, bounds[2]))


def glm_row_derivs(family, y, eta, extra: dict, trials, hess: bool = True, v=None):
    """Per-row gradient ``(n, m+q)`` (and Hessian) of ``-log p`` in ``(eta, extras)``.

    Extras on their natural scale; exact (autodiff of ``log_prob_rows``).
    ``v``: precision weights (``var_weights``): a row's ``-log p`` is the
    precision-weighted one (``v log p``, or dispersion ``phi / v``).
    """
    m, names = family.eta_dim, family.extra_names
    axis = family.eta_has_axis
    q = len(names)
    scale_rows = v is not None and family.var_weights_mode == "loglik"
    v_rows = None if v is None or scale_rows else v

    def row_nll(z, yi, ti, vi):
        kw = dict(zip(names, [z[m + j] for j in range(q)], strict=True))
        kw = row_extras(family, kw, None if v_rows is None else vi)
        if trials is not None:
            kw["trials"] = ti
        return -family.log_prob_rows(yi, z[:m] if axis else z[0], **kw)

    eta2 = eta if axis else eta[:, None]
    ex = jnp.stack([jnp.asarray(extra[k], eta.dtype) for k in names]) if q else None
    z = (
        eta2
        if not q
        else jnp.concatenate([eta2, jnp.broadcast_to(ex, (eta2.shape[0], q))], 1)
    )
    t = trials if trials is not None else jnp.zeros_like(y)
    vv = v_rows if v_rows is not None else jnp.ones_like(y)
    g = jax.vmap(jax.grad(row_nll))(z, y, t, vv)
    if scale_rows:
        g = g * v[:, None]
    if not hess:
        return g, None
    h = jax.vmap(jax.hessian(row_nll))(z, y, t, vv)
    return g, (h * v[:, None, None] if scale_rows else h)


def glm_scores_information(family, X, y, w, eta, extra, trials, v=None):
    """Per-row scores ``(n, nb+q)`` of ``log p`` and the observed information.

    Over the natural parameters ``[vec(beta) (row-major), extras]``, the
    order of ``res.cov`` and ``extra_stderr``. Zero-weight rows count nothing.
    ``w`` frequency weights, ``v`` precision weights (in each row's score).
    """
    n, p = X.shape
    m = family.eta_dim
    g, h = glm_row_derivs(family, y, eta, extra, trials, v=v)
    keep = w > 0
    g = jnp.where(keep[:, None], g, 0.0)
    h = jnp.where(keep[:, None, None], h, 0.0)
    S = -jnp.concatenate(
        [(X[:, :, None] * g[:, None, :m]).reshape(n, p * m), g[:, m:]], axis=1
    )
    wh = w[:, None, None] * h
    nb = p * m
    H_bb = jnp.einsum("ni,nab,nj->iajb", X, wh[:, :m, :m], X).reshape(nb, nb)
    H_bu = jnp.einsum("ni,nak->iak", X, wh[:, :m, m:]).reshape(nb, -1)
    H_uu = jnp.sum(wh[:, m:, m:], axis=0)
    H = jnp.block([[H_bb, H_bu], [H_bu.T, H_uu]])
    return S, H


def _robust_hc_single(family, data, eta, extra):
    """HC0/HC1 pieces of a one-predictor GLM without extras: the information
    ``X' diag(w h) X`` and the meat ``X' diag(w g^2) X`` (``g``, ``h``: the
    per-row derivatives of ``-log p`` in ``eta``), one pass over ``X``."""
    X, y, w, _, trials, v = data
    closed = None
    if v is None:  # canonical links: closed forms (one exp), else autodiff
        closed = family.nll_derivs(
            y, eta, **({} if trials is None else {"trials": trials})
        )
    if closed is not None:
        g, h = closed
    else:
        g, h = glm_row_derivs(family, y, eta, extra, trials, v=v)
        g, h = g[:, 0], h[:, 0, 0]
    keep = w > 0
    a = jnp.where(keep, w * h, 0.0)
    b = jnp.where(keep, w * g * g, 0.0)
    return weighted_grams(X, a, b)


def robust_glm(family, data, beta, extra, cov_type, groups, bounds):
    """``(cov, stderr, extra_stderr, n_groups)`` of a GLM fit, robust ``cov_type``."""
    X, y, w, offset, trials, v = data
    axis = family.eta_has_axis
    eta = X @ beta + (offset[:, None] if axis else offset)
    if cov_type in ("HC0", "HC1") and not axis and not family.extra_names:
        H, meat = _robust_hc_single(family, data, eta, extra)
        B = inverse_information(H)
        cov = B @ meat @ B
        if cov_type == "HC1":
            nobs, k = jnp.sum(w), beta.size
            cov = cov * (nobs / (nobs - k))
        se = jnp.sqrt(jnp.diag(cov))
        return cov, se.reshape(beta.shape), se[:0], None
    S, H = glm_scores_information(family, X, y, w, eta, extra, trials, v)
    nb = beta.size
    codes = cluster_codes(groups, bounds) if cov_type == "cluster" else None
    cov, n_groups = sandwich(H, S, w, cov_type, codes, jnp.sum(w), nb)
    se = jnp.sqrt(jnp.diag(cov))
    return cov[:nb, :nb], se[:nb].reshape(beta.shape), se[nb:], n_groups


# ----------------------------------------------------------------------------
# Deviance (R's definitions) for the families that define a saturated model
# ----------------------------------------------------------------------------
def _intercept_only(f, c0, max_iter: int = 30):
    """Minimise the scalar ``f`` by safeguarded Newton from ``c0``.

    A step is taken only if it lowers ``f`` (else the step length is
    quartered); stops when the step is below ``1e-12 (1 + |c|)``. Lean on
    purpose: it is compiled into every fit.
    """

    def cond(carry):
        _, _, _, k, done = carry
        return (k < max_iter) & ~done

    def body(carry):
        c, t, fc, k, _ = carry
        g, h = jax.jvp(jax.grad(f), (c,), (jnp.ones_like(c),))
        d = -g / jnp.where(h > 0, h, jnp.abs(g) + 1.0)
        cn = c + t * d
        fn = f(cn)
        ok = jnp.isfinite(fn) & (fn <= fc)
        small = jnp.abs(t * d) <= 1e-12 * (1.0 + jnp.abs(c))
        return (
            jnp.where(ok, cn, c),
            jnp.where(ok, jnp.minimum(1.0, 2.0 * t), 0.25 * t),
            jnp.where(ok, fn, fc),
            k + 1,
            small | ~jnp.isfinite(d),
        )

    one = jnp.ones_like(c0)
    init = (c0, one, f(c0), jnp.asarray(0), jnp.asarray(False))
    return jax.lax.while_loop(cond, body, init)[0]


def deviances(family, data, beta, extra, loglik=None):
    """``(deviance, null_deviance)`` as R's ``glm`` defines them (NaN if undefined).

    ``D = phi * 2 * sum w (log p_saturated - log p)`` with ``phi`` the
    family's :meth:`~mlejax.families.Family.deviance_scale` (Gaussian: the
    RSS; Gamma: dispersion-free). The null model is R's: an intercept plus the
    offset when ``X`` has a constant column (its intercept fitted here by a
    scalar Newton, the extras held at the fitted values), the offset alone
    otherwise.
    """
    X, y, w, offset, trials = data[:5]
    w, v_rows = split_var_weights(family, w, data.var_weights)
    kw = row_extras(family, dict(extra), v_rows)
    if trials is not None:
        kw["trials"] = trials
    sat = None if family.eta_has_axis else family.saturated_log_prob(y, **kw)
    if sat is None:
        nan = jnp.asarray(jnp.nan, X.dtype)
        return nan, nan
    phi = family.deviance_scale(**extra)
    pos = w > 0

    def dev(eta):
        ll = family.log_prob_rows(y, eta, **kw)
        return phi * 2.0 * jnp.sum(jnp.where(pos, w * (sat - ll), 0.0))

    if loglik is not None:  # the fit's own log-likelihood: no pass over X
        d = phi * 2.0 * (jnp.sum(jnp.where(pos, w * sat, 0.0)) - loglik)
        fitted = jnp.where(jnp.isfinite(loglik), d, 0.0)
    else:
        fitted = dev(X @ beta + offset)

    def nll(c):
        ll = family.log_prob_rows(y, offset + c, **kw)
        return -jnp.sum(jnp.where(pos, w * ll, 0.0))

    # a constant non-zero column among the positive-weight rows (one fused
    # comparison-and-reduction over X, no temporary)
    row0 = X[jnp.argmax(pos)]
    same = jnp.all(jnp.where(pos[:, None], X == row0[None, :], True), axis=0)
    has_const = jnp.any(same & (row0 != 0))
    # start at the exact answer without offset, link(weighted mean of y)
    # (exponential families, any link): the loop then stops after a step
    data_kw = {} if trials is None else {"trials": trials}
    w_mean = w if v_rows is None else w * v_rows  # the precision-weighted mean
    c0 = family.linkfun(family.null_mean(y, w_mean, **data_kw))
    if c0 is None:
        c0 = jnp.zeros((), X.dtype)
    mean_off = jnp.sum(jnp.where(pos, w * offset, 0.0)) / jnp.sum(w)
    c0 = jnp.where(jnp.isfinite(c0), c0 - mean_off, 0.0)
    c = jnp.where(has_const, _intercept_only(nll, c0), 0.0)
    return fitted, dev(offset + c)


def robust_fields(family, data, params, extra, cov, groups) -> dict:
    """The robust ``cov``/``stderr``/``extra_stderr``/``n_groups`` of a GLM fit.

    ``cov = (cov_type, bounds[, information])``; ``{}`` for ``"nonrobust"``.
    """
    cov_type, bounds = cov[:2]
    if cov_type == "nonrobust":
        return {}
    c, se, ese, n_groups = robust_glm(
        family, data, params, extra, cov_type, groups, bounds
    )
    extra_se = dict(zip(family.extra_names, ese, strict=True))
    return dict(cov=c, stderr=se, extra_stderr=extra_se, n_groups=n_groups)


def finish(res, data, groups, family, cov):
    """A fit result with its robust covariance (``cov = (cov_type, bounds)``),
    traced: the caller's ``jit``/``vmap``."""
    kw = robust_fields(family, data, res.params, res.extra, cov, groups)
    return res.replace(cov_type=cov[0], **kw)


_robust_jit = quick_jit(robust_fields, static_argnums=(0, 4))
# large n: the per-row elementwise work needs LLVM's vectorisation
_robust_jit_large = jax.jit(robust_fields, static_argnums=(0, 4))
#: from this many entries of X on, the robust covariance is fully optimised
ROBUST_LARGE_SIZE = 2**18


def finish_jit(res, data, groups, family, cov):
    """:func:`finish` on the host path: the robust covariance is compiled
    apart from the fit (so every ``cov_type`` shares one compiled fit), and
    only when one is asked for."""
    kw = {}
    if cov[0] != "nonrobust":
        large = data[0].size >= ROBUST_LARGE_SIZE
        run = _robust_jit_large if large else _robust_jit
        kw = run(family, data, res.params, res.extra, cov, groups)
    return res.replace(cov_type=cov[0], **kw)


# ----------------------------------------------------------------------------
# Dispersion convention of the model-based covariance (dispersion=)
# ----------------------------------------------------------------------------
def pearson_dispersion(family, data, beta, extra):
    """R's Pearson dispersion ``sum(w v (y - mu)**2 / V(mu)) / (n - k)``.

    ``w`` frequency weights (``n = sum w``), ``v`` precision weights, ``k``
    coefficients: ``summary(glm)$dispersion``.
    """
    X, y, w, offset, trials, v = data
    df = jnp.sum(w) - beta.size
    if family.ols_convention:  # at the MLE of the scale: RSS / (n - k), no pass over X
        return family.deviance_scale(**extra) * jnp.sum(w) / df
    mu = family.mean(X @ beta + offset)
    r2 = (y - mu) ** 2 / family.variance(mu)
    if v is not None:
        r2 = v * r2
    return jnp.sum(jnp.where(w > 0, w * r2, 0.0)) / df


def apply_dispersion(family, data, beta, extra, cov, stderr, pearson):
    """``(cov, stderr, phi)`` with the dispersion ``phi`` of the convention.

    ``pearson`` (a traced bool): R's Pearson dispersion, else the MLE
    (``deviance_scale`` of the fitted extras); families without an estimated
    dispersion (no ``variance``): unchanged, ``phi`` None. The coefficient
    block of the information of an exponential-dispersion family is
    proportional to ``1 / phi`` and, at the MLE, orthogonal to the
    dispersion parameter, so the covariance the engine computed (with the
    MLE, or with Pearson's for the OLS convention) is rescaled exactly
    (by 1 where the convention is the engine's own); the extras' standard
    errors stay the MLE's.
    """
    if not family.has_dispersion:
        return cov, stderr, None
    phi_p = pearson_dispersion(family, data, beta, extra)
    phi_m = family.deviance_scale(**extra)
    phi = jnp.where(pearson, phi_p, phi_m)
    # the factor from the engine's convention, without forming phi / phi
    # (scale**2 under- or overflows for y ~ 1e-160 or 1e160)
    if family.ols_convention:
        w = data.weights
        f = jnp.where(pearson, 1.0, 1.0 - beta.size / jnp.sum(w))
    else:
        f = jnp.where(pearson, phi_p / phi_m, 1.0)
    return cov * f, stderr * jnp.sqrt(f), phi
