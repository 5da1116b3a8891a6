"""Precision weights (``var_weights=``), ``exposure=`` and ``dispersion=``.

References: R (``lm``/``glm`` with ``weights=``, ``summary.glm``'s Pearson
dispersion, ``MASS::gamma.shape``, ``MASS::Insurance`` with
``offset(log(Holders))``), numbers stored by tests/reference/weights.R; and
statsmodels' ``GLM(var_weights=, freq_weights=, exposure=)`` and ``WLS`` at
test time (log-likelihood, deviance, model-based and HC0 covariances).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import mlejax as mj
from mlejax.status import Status

sm = pytest.importorskip("statsmodels.api")

REF = Path(__file__).parent / "reference"
fams = mj.families


def _ref(model, quantity):
    t = pd.read_csv(REF / "weights_ref.csv", keep_default_na=False)
    sel = t[(t.model == model) & (t.quantity == quantity)]
    assert len(sel), (model, quantity)
    return sel.value.astype(float).to_numpy()


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _gaussian():
    d = pd.read_csv(REF / "weights_gaussian_data.csv")
    X = np.column_stack([np.ones(len(d)), d.x1, d.x2])
    return X, d.y.to_numpy(), d.v.to_numpy()


def _gamma():
    d = pd.read_csv(REF / "weights_gamma_data.csv")
    X = np.column_stack([np.ones(len(d)), d.x1, d.x2])
    return X, d.y.to_numpy(), d.v.to_numpy()


def _insurance():
    d = pd.read_csv(REF / "weights_insurance_data.csv")
    X = d.drop(columns=["Claims", "Holders"]).to_numpy()
    return X, d.Claims.to_numpy(), d.Holders.to_numpy()


def test_gaussian_precision_weights_match_R_lm_and_statsmodels():
    X, y, v = _gaussian()
    res = mj.ols(X, y, var_weights=v)  # = mj.fit(X, y, Gaussian(), var_weights=v)
    assert bool(res.converged)
    assert _rel(res.params, _ref("gaussian", "coef")) < 1e-12
    # Gaussian, identity link: observed = expected information, so R's lm and
    # glm(gaussian) standard errors (Pearson dispersion sum(v r^2)/(n-p)) match
    assert _rel(res.stderr, _ref("gaussian", "se_lm")) < 1e-10
    assert _rel(res.stderr, _ref("gaussian", "se_glm")) < 1e-10
    assert res.dispersion_method == "pearson"
    assert _rel(res.dispersion, _ref("gaussian", "dispersion")) < 1e-10
    assert _rel(res.deviance, _ref("gaussian", "deviance")) < 1e-10
    assert _rel(res.null_deviance, _ref("gaussian", "null_deviance")) < 1e-10
    assert _rel(res.loglik, _ref("gaussian", "loglik")) < 1e-12  # logLik(lm(weights=))
    assert float(res.nobs) == len(y)  # rows, not sum(v)
    assert float(res.df_resid) == _ref("gaussian", "df_residual")[0]
    text = res.summary().lower()
    assert "dispersion" in text and "pearson" in text
    # the MLE dispersion: scale^2 = sum(v r^2) / n, standard errors with it
    # (statsmodels' GLM with that fixed scale)
    mle = mj.fit(X, y, fams.Gaussian(), var_weights=v, dispersion="mle")
    s2 = float(mle.extra["scale"]) ** 2
    assert _rel(mle.dispersion, s2) < 1e-14
    glm = sm.GLM(y, X, family=sm.families.Gaussian(), var_weights=v)
    assert _rel(mle.cov, glm.fit(scale=s2).cov_params()) < 1e-10


@pytest.mark.slow
def test_gaussian_precision_weights_robust_and_first_order():
    """HC0 with the precision weights in each row's score (statsmodels GLM and
    WLS); the fit by L-BFGS on the row-block objective, padded to a shape
    bucket."""
    X, y, v = _gaussian()
    glm = sm.GLM(y, X, family=sm.families.Gaussian(), var_weights=v)
    hc0 = mj.fit(X, y, fams.Gaussian(), var_weights=v, cov_type="HC0")
    assert _rel(hc0.cov, glm.fit(cov_type="HC0").cov_params()) < 1e-10
    wls = sm.WLS(y, X, weights=v).fit(cov_type="HC0")
    assert _rel(hc0.cov, wls.cov_params()) < 1e-10
    Xs, ys, vs = X[:-1], y[:-1], v[:-1]
    lb = mj.fit(
        Xs,
        ys,
        fams.Gaussian(),
        var_weights=vs,
        solver="lbfgs",
        tol=1e-12,
        max_iter=500,
        buckets=True,
    )
    ref = sm.WLS(ys, Xs, weights=vs).fit()
    assert _rel(lb.params, ref.params) < 1e-9
    assert _rel(lb.stderr, ref.bse) < 1e-8
    assert _rel(lb.loglik, ref.llf) < 1e-12
    assert float(lb.nobs) == len(ys)


def test_gamma_precision_weights_and_pearson_dispersion_match_R():
    X, y, v = _gamma()
    res = mj.fit(X, y, fams.Gamma(), var_weights=v, dispersion="pearson")
    assert bool(res.converged)
    assert _rel(res.params, _ref("gamma", "coef")) < 1e-10
    # R's summary(glm(Gamma, weights=v))$dispersion
    assert _rel(res.dispersion, _ref("gamma", "dispersion")) < 1e-8
    assert _rel(res.deviance, _ref("gamma", "deviance")) < 1e-10
    assert _rel(res.null_deviance, _ref("gamma", "null_deviance")) < 1e-10
    # extra["shape"] stays the MLE (MASS::gamma.shape, prior weights used)
    assert _rel(res.extra["shape"], _ref("gamma", "shape_mle")) < 1e-8
    # R's summary.glm: expected (Fisher) information x Pearson dispersion
    rs = mj.fit(
        X, y, fams.Gamma(), var_weights=v, dispersion="pearson", information="expected"
    )
    assert _rel(rs.stderr, _ref("gamma", "se_summary")) < 1e-8
    assert float(res.df_resid) == _ref("gamma", "df_residual")[0]
    text = res.summary()
    assert "Pearson" in text and "t distribution" in text
    # observed information x Pearson dispersion: statsmodels' Newton fit with
    # scale="X2" (R's summary.glm uses the expected information instead:
    # its standard errors are stored in weights_ref.csv, se_summary)
    glm = sm.GLM(y, X, family=sm.families.Gamma(sm.families.links.Log()), var_weights=v)
    sp = glm.fit(method="newton", scale="X2", tol=1e-14, maxiter=100)
    assert _rel(res.cov, sp.cov_params()) < 1e-9
    # dispersion="mle" (the default for Gamma): phi = 1 / shape
    mle = mj.fit(X, y, fams.Gamma(), var_weights=v)
    assert mle.dispersion_method == "mle" and "MLE" in mle.summary()
    phi = 1.0 / float(mle.extra["shape"])
    assert _rel(mle.dispersion, phi) < 1e-14
    sf = glm.fit(method="newton", scale=phi, tol=1e-14, maxiter=100)
    assert _rel(mle.cov, sf.cov_params()) < 1e-9
    # log-likelihood: statsmodels' Gamma density with shape_i = shape * v_i
    mu = np.exp(X @ np.asarray(mle.params))
    ll = glm.family.loglike(y, mu, var_weights=v, scale=phi)
    assert _rel(mle.loglik, ll) < 1e-12


def test_poisson_exposure_matches_R_insurance():
    X, y, holders = _insurance()
    res = mj.fit(X, y, fams.Poisson(), exposure=holders)
    assert bool(res.converged)
    assert _rel(res.params, _ref("insurance", "coef")) < 1e-10
    assert _rel(res.stderr, _ref("insurance", "se")) < 1e-10
    assert _rel(res.deviance, _ref("insurance", "deviance")) < 1e-10
    # R's null model: intercept + offset(log(Holders))
    assert _rel(res.null_deviance, _ref("insurance", "null_deviance")) < 1e-10
    assert _rel(res.loglik, _ref("insurance", "loglik")) < 1e-12
    assert res.dispersion is None and "dispersion" not in res.summary()


def test_poisson_var_weights_exposure_offset_match_statsmodels():
    X, y, holders = _insurance()
    n = len(y)
    v = 0.5 + (np.arange(n) % 5) / 4.0
    off = 0.1 * np.sin(np.arange(n))
    glm = sm.GLM(
        y, X, family=sm.families.Poisson(), var_weights=v, exposure=holders, offset=off
    )
    ref = glm.fit(tol=1e-14, maxiter=100)
    kw = dict(exposure=holders, offset=off, var_weights=v)
    res = mj.fit(X, y, fams.Poisson(), **kw)
    assert _rel(res.params, ref.params) < 1e-10
    assert _rel(res.cov, ref.cov_params()) < 1e-10
    assert _rel(res.loglik, ref.llf) < 1e-12
    assert _rel(res.deviance, ref.deviance) < 1e-10
    assert _rel(res.null_deviance, ref.null_deviance) < 1e-10
    assert float(res.nobs) == n and float(res.df_resid) == ref.df_resid
    hc0 = mj.fit(X, y, fams.Poisson(), cov_type="HC0", **kw)
    ref_hc0 = glm.fit(tol=1e-14, maxiter=100, cov_type="HC0")
    assert _rel(hc0.cov, ref_hc0.cov_params()) < 1e-9
    # frequency and precision weights together; a row of precision 0 is left
    # out (statsmodels: the row dropped)
    f = 1.0 + np.arange(n) % 3
    v0 = v.copy()
    v0[5] = 0.0
    keep = v0 > 0
    both = sm.GLM(
        y[keep],
        X[keep],
        family=sm.families.Poisson(),
        var_weights=v0[keep],
        freq_weights=f[keep],
        exposure=holders[keep],
    ).fit(tol=1e-14, maxiter=100)
    r2 = mj.fit(X, y, fams.Poisson(), exposure=holders, var_weights=v0, weights=f)
    assert _rel(r2.params, both.params) < 1e-10
    assert _rel(r2.cov, both.cov_params()) < 1e-10
    assert _rel(r2.loglik, both.llf) < 1e-12
    assert _rel(r2.deviance, both.deviance) < 1e-10
    assert float(r2.nobs) == f[keep].sum()  # nobs = sum of frequency weights


def test_vmap_over_var_weights_with_invalid_member():
    """A batch of precision-weight vectors in one compiled Gamma fit with HC0
    covariance; a negative entry is data (INVALID_INPUT), a zero leaves its
    row out."""
    X, y, v = _gamma()
    v_zero = v.copy()
    v_zero[0] = 0.0
    v_bad = v.copy()
    v_bad[3] = -1.0
    V = jnp.asarray(np.stack([v, v_zero, v_bad]))

    def one(vw):
        r = mj.fit(
            X, y, fams.Gamma(), var_weights=vw, dispersion="pearson", cov_type="HC0"
        )
        return r.params, r.cov, r.dispersion, r.status, r.converged

    params, cov, phi, status, conv = jax.jit(jax.vmap(one))(V)
    fam = sm.families.Gamma(sm.families.links.Log())
    for i, keep in ((0, slice(None)), (1, slice(1, None))):
        vi = np.asarray(V[i])[keep]
        glm = sm.GLM(y[keep], X[keep], family=fam, var_weights=vi)
        kw = dict(method="newton", tol=1e-14, maxiter=100)
        ref = glm.fit(scale="X2", **kw)
        assert bool(conv[i]) and int(status[i]) == Status.CONVERGED
        assert _rel(params[i], ref.params) < 1e-9
        assert _rel(phi[i], ref.scale) < 1e-9
        assert _rel(cov[i], glm.fit(cov_type="HC0", **kw).cov_params()) < 1e-9
    assert _rel(phi[0], _ref("gamma", "dispersion")) < 1e-8
    assert int(status[2]) == Status.INVALID_INPUT and not bool(conv[2])


@pytest.mark.parametrize(
    "family, kw, words",
    [
        (
            fams.Gaussian(),
            dict(exposure=np.ones(6)),
            ["exposure", "Gaussian", "offset="],
        ),
        (
            fams.Bernoulli(),
            dict(exposure=np.ones(6)),
            ["exposure", "'logit'", "offset="],
        ),
        (
            fams.Poisson(),
            dict(exposure=np.r_[1.0, 0, 1, 1, 1, 1]),
            ["exposure[1]", "positive"],
        ),
        (
            fams.Poisson(),
            dict(exposure=np.r_[1.0, 1, np.nan, 1, 1, 1]),
            ["exposure[2]"],
        ),
        (fams.Poisson(), dict(exposure=np.ones(5)), ["exposure", "length 5"]),
        (
            fams.Poisson(),
            dict(var_weights=np.r_[1.0, -2, 1, 1, 1, 1]),
            ["var_weights[1]", "-2"],
        ),
        (
            fams.Poisson(),
            dict(var_weights=np.r_[1.0, 1, 1, np.inf, 1, 1]),
            ["var_weights[3]"],
        ),
        (fams.Poisson(), dict(var_weights=np.ones(7)), ["var_weights", "length 7"]),
        (fams.Poisson(), dict(var_weights=np.ones((6, 1))), ["var_weights", "1-D"]),
        (fams.Poisson(), dict(var_weights=np.zeros(6)), ["var_weights", "all 0"]),
        (
            fams.NegativeBinomial(),
            dict(var_weights=np.ones(6)),
            ["var_weights", "NegativeBinomial", "weights="],
        ),
        (fams.StudentT(), dict(var_weights=np.ones(6)), ["var_weights", "StudentT"]),
        (fams.Poisson(), dict(dispersion="pearson"), ["dispersion", "Poisson"]),
        (fams.Gamma(), dict(dispersion="deviance"), ["dispersion", "'pearson'"]),
    ],
)
def test_bad_input_named_before_compilation(family, kw, words):
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    y = np.r_[0.0, 1, 0, 1, 1, 0]
    with pytest.raises(ValueError) as e:
        mj.fit(X, y, family, **kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_exposure_unknown_link_user_family():
    class Mine(mj.families.Family):
        def log_prob(self, y, eta):
            return -0.5 * (y - eta) ** 2

    X = np.column_stack([np.ones(6), np.arange(6.0)])
    with pytest.raises(ValueError, match="link_name"):
        mj.fit(X, np.ones(6), Mine(), exposure=np.ones(6))
    with pytest.raises(ValueError, match="var_weights_mode"):
        mj.fit(X, np.ones(6), Mine(), var_weights=np.ones(6))
