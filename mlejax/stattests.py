"""Tests and derived quantities of a fit: Wald, likelihood-ratio and score
(LM) tests, predictions with delta-method standard errors, the delta method.

All of them are host-side functions of one (unbatched) :class:`FitResult`;
see docs/inference.md for the definitions and the statsmodels/R equivalents.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlejax import _prepare, inference
from mlejax.result import FitResult, _check_alpha

__all__ = [
    "lr_test",
    "wald_test",
    "score_test",
    "predict",
    "delta_method",
    "Prediction",
    "DeltaMethod",
    "TestResult",
]


class TestResult(NamedTuple):
    """``(statistic, df, pvalue)`` of a chi-squared test."""

    statistic: float
    df: int
    pvalue: float


class Prediction(NamedTuple):
    """``res.predict(..., se=True)``: the prediction, its standard error and interval.

    ``ci`` is ``(n, 2)``: the Wald interval on the linear scale, mapped
    through the inverse link for ``which="mean"`` (R's ``predict(se.fit=TRUE)``
    plus ``family$linkinv``; statsmodels' GLM ``get_prediction``).
    """

    mean: jax.Array
    se: jax.Array
    ci: jax.Array


class DeltaMethod(NamedTuple):
    value: jax.Array
    stderr: jax.Array
    cov: jax.Array


def _single(res: FitResult, what: str) -> None:
    if not isinstance(res, FitResult):
        raise TypeError(f"{what}: expected a FitResult; got {type(res).__name__}.")
    if res.batch_shape:
        raise ValueError(f"{what} is for a single fit; index a batch first: res[i].")


def _chi2_sf(stat, df):
    from scipy import stats

    return float(stats.chi2.sf(stat, df))


def n_params(res: FitResult) -> int:
    """Every estimated parameter: coefficients plus extras (as in the AIC)."""
    return res.n_coef + len(res.extra)


def lr_test(restricted: FitResult, full: FitResult) -> TestResult:
    """Likelihood-ratio test of a restricted (nested) fit against the full one.

    ``statistic = 2 (loglik_full - loglik_restricted)``, chi-squared with
    ``df`` = the difference of the numbers of estimated parameters
    (coefficients and extras), as statsmodels' ``compare_lr_test`` and R's
    ``anova(..., test="LRT")`` for known-dispersion families. Nesting is the
    caller's responsibility.
    """
    _single(restricted, "lr_test")
    _single(full, "lr_test")
    df = n_params(full) - n_params(restricted)
    if df <= 0:
        raise ValueError(
            f"lr_test(restricted, full): full must have more parameters than "
            f"restricted; got {n_params(full)} and {n_params(restricted)}."
        )
    stat = 2.0 * (float(full.loglik) - float(restricted.loglik))
    return TestResult(stat, df, _chi2_sf(stat, df))


def wald_test(res: FitResult, R, q=None) -> TestResult:
    """Wald test of ``H0: R @ params = q`` (flattened ``params``, ``res.cov``)."""
    _single(res, "wald_test")
    theta = np.asarray(ravel_pytree(res.params)[0])
    k = theta.shape[0]
    R = np.atleast_2d(np.asarray(R, dtype=float))
    if R.ndim != 2 or R.shape[1] != k:
        raise ValueError(
            f"R must have shape (r, {k}) (one row per restriction over the {k} "
            f"flattened params); got shape {np.shape(R)}."
        )
    r = R.shape[0]
    q = np.zeros(r) if q is None else np.atleast_1d(np.asarray(q, dtype=float))
    if q.shape != (r,):
        raise ValueError(f"q must have shape ({r},); got shape {q.shape}.")
    d = R @ theta - q
    V = R @ np.asarray(res.cov) @ R.T
    stat = float(d @ np.linalg.solve(V, d))
    return TestResult(stat, r, _chi2_sf(stat, r))


def score_test(
    restricted: FitResult,
    X_full,
    y,
    family,
    *,
    weights=None,
    offset=None,
    trials=None,
) -> TestResult:
    """Score (Lagrange multiplier) test of a restricted fit against a larger design.

    ``X_full`` is ``[X_restricted, X_extra]``: the restricted fit's columns
    first (same order), then the tested ones, whose coefficients are 0 under
    H0. The statistic is ``U' H^-1 U`` with ``U`` the full model's score and
    ``H`` its observed information (coefficients and extras, natural scale),
    both at the restricted MLE (extras at their restricted values); chi-squared
    with ``df`` = the number of added coefficients. For canonical links the
    observed information is the expected one (statsmodels' GLM
    ``score_test``, R's ``anova(test="Rao")`` for known dispersion).
    """
    _single(restricted, "score_test")
    X, y, w, off, tr, _ = _prepare.prepare(X_full, y, family, weights, offset, trials)
    beta_r = jnp.asarray(restricted.params)
    m = family.eta_dim
    p_r, p = beta_r.shape[0], X.shape[1]
    if p <= p_r:
        raise ValueError(
            f"X_full must have more columns than the restricted fit ({p_r}); got {p}."
        )
    pad = jnp.zeros((p - p_r,) + beta_r.shape[1:], beta_r.dtype)
    beta = jnp.concatenate([beta_r, pad], axis=0)
    eta = X @ beta + (off[:, None] if family.eta_has_axis else off)
    extra = {k: jnp.asarray(v) for k, v in restricted.extra.items()}
    stat = float(_lm_statistic(family, X, y, w, eta, extra, tr))
    df = (p - p_r) * m
    return TestResult(stat, df, _chi2_sf(stat, df))


@functools.partial(jax.jit, static_argnums=0)
def _lm_statistic(family, X, y, w, eta, extra, trials):
    S, H = inference.glm_scores_information(family, X, y, w, eta, extra, trials)
    U = jnp.sum(w[:, None] * S, axis=0)
    return U @ jnp.linalg.solve(H, U)


def predict(res: FitResult, X_new, offset=None, which="mean", se=False, alpha=0.05):
    """Predictions of a ``mj.fit`` result at ``X_new`` ``(n, p)``.

    ``which="linear"``: ``eta = X_new @ params + offset``; ``"mean"``: the
    inverse link of it. With ``se=True`` a :class:`Prediction`: the delta
    method with the exact (autodiff) derivative of the inverse link,
    ``se_mean = |dmu/deta| se_eta``, ``se_eta = sqrt(diag(X V X'))``, and the
    interval mapped from the linear scale (t quantiles with ``df_resid`` for
    Gaussian, as statsmodels' OLS; normal otherwise).

    Categorical (``K`` classes): ``"linear"`` gives ``eta`` ``(n, K-1)``,
    ``"mean"`` the class probabilities ``(n, K)``; with ``se=True`` the
    standard errors have the same shape and ``ci`` one more axis of 2 (see
    :func:`_predict_multi`).
    """
    _single(res, "predict")
    fam = res.family_obj
    if fam is None:
        raise ValueError(
            "predict needs the family of an mj.fit result; for fit_likelihood use "
            "mj.delta_method(res, fn)."
        )
    if which not in ("mean", "linear"):
        raise ValueError(f"which must be 'mean' or 'linear'; got {which!r}.")
    _check_alpha(alpha)
    beta = jnp.asarray(res.params)
    Xn = X_new.to_numpy() if hasattr(X_new, "to_numpy") else X_new
    Xn = np.asarray(Xn, beta.dtype)
    if Xn.ndim == 1:
        Xn = Xn[None, :]
    if Xn.ndim != 2 or Xn.shape[1] != beta.shape[0]:
        raise ValueError(
            f"X_new must have {beta.shape[0]} columns (those of the fitted X); got "
            f"shape {tuple(np.shape(X_new))}."
        )
    n = Xn.shape[0]
    off = np.zeros(n, beta.dtype) if offset is None else np.asarray(offset, beta.dtype)
    if off.shape != (n,):
        raise ValueError(f"offset must have shape ({n},); got {off.shape}.")
    q = float(np.asarray(res._quantile(alpha))) if se else 0.0
    out = _predict_core(
        fam, which, bool(se), Xn, beta, off, jnp.asarray(res.cov), np.asarray(q)
    )
    return Prediction(*out) if se else out


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _predict_core(fam, which, se, Xn, beta, off, V, q):
    """The prediction, compiled once per family, scale and shape."""
    axis = fam.eta_has_axis
    eta = Xn @ beta + (off[:, None] if axis else off)
    out = eta if which == "linear" else fam.mean(eta)
    if not se:
        return out
    if axis:
        return _predict_multi(fam, Xn, beta, eta, out, which, V, q)
    se_eta = jnp.sqrt(jnp.einsum("ni,ij,nj->n", Xn, V, Xn))
    lo, hi = eta - q * se_eta, eta + q * se_eta
    if which == "linear":
        return eta, se_eta, jnp.stack([lo, hi], axis=-1)
    dmu = jax.vmap(jax.grad(lambda e: fam.mean(e)))(eta)
    a, b = fam.mean(lo), fam.mean(hi)
    ci = jnp.stack([jnp.minimum(a, b), jnp.maximum(a, b)], axis=-1)
    return out, jnp.abs(dmu) * se_eta, ci


def _predict_multi(fam, Xn, beta, eta, out, which, V, q):
    """``predict(se=True)`` for a multi-predictor family (Categorical).

    ``which="linear"``: ``eta`` ``(n, K-1)`` with ``se_eta[i, c] =
    sqrt(x_i' V_c x_i)``, ``V_c`` the covariance of column ``c`` of
    ``params``; ``which="mean"``: the class probabilities ``(n, K)`` with the
    delta-method standard errors from the exact Jacobian of the softmax in all
    ``p (K-1)`` coefficients. Intervals ``(n, ., 2)``: Wald on the linear
    scale; for probabilities Wald on the probability scale clipped to
    ``[0, 1]`` (no single linear predictor maps to one class probability).
    """
    p, m = beta.shape[0], eta.shape[1]
    if which == "linear":
        Vc = V.reshape(p, m, p, m)
        se = jnp.sqrt(jnp.einsum("ni,icjc,nj->nc", Xn, Vc, Xn))
        return eta, se, jnp.stack([eta - q * se, eta + q * se], axis=-1)
    # d mu_k / d beta_{j,c} = x_j * d mu_k / d eta_c  (row-major beta, cov order)
    D = jax.vmap(jax.jacfwd(lambda e: fam.mean(e[None, :])[0]))(eta)  # (n, K, m)
    n, K, _ = D.shape
    J = jnp.einsum("nj,nkc->nkjc", Xn, D).reshape(n, K, p * m)
    se = jnp.sqrt(jnp.einsum("nka,ab,nkb->nk", J, V, J))
    lo = jnp.clip(out - q * se, 0.0, 1.0)
    hi = jnp.clip(out + q * se, 0.0, 1.0)
    return out, se, jnp.stack([lo, hi], axis=-1)


def delta_method(res: FitResult, fn) -> DeltaMethod:
    """``fn(params)`` with its delta-method covariance ``J cov J'`` (exact Jacobian).

    ``fn`` takes ``res.params`` (any pytree) and returns an array; the
    Jacobian is by autodiff over the flattened ``params`` (``res.cov``
    order). Returns ``(value, stderr, cov)``, shaped like ``fn``'s output
    (``cov`` over its flattened entries).
    """
    _single(res, "delta_method")
    theta, unravel = ravel_pytree(res.params)

    def f(t):
        return jnp.reshape(jnp.asarray(fn(unravel(t))), (-1,))

    value = jnp.asarray(fn(res.params))
    J = jax.jacobian(f)(theta)
    cov = J @ jnp.asarray(res.cov) @ J.T
    stderr = jnp.sqrt(jnp.diag(cov)).reshape(value.shape)
    return DeltaMethod(value, stderr, cov)
