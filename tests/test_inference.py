"""Inference: robust covariances, Wald/LR/score tests, predictions, deviance.

References: statsmodels (``fit(cov_type=...)``, ``get_prediction``,
``wald_test``, ``score_test``, GLM ``deviance``/``null_deviance``) and closed
forms in NumPy. Small problems, few distinct compiled fits.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import mlejax as mj

sm = pytest.importorskip("statsmodels.api")

F = mj.families
N = 120


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20261127)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, 2))])
    eta = X @ [0.3, 0.8, -0.5]
    yb = (rng.random(N) < 1 / (1 + np.exp(-eta))).astype(float)
    off = 0.3 * rng.normal(size=N)
    yp = rng.poisson(np.exp(0.2 + 0.4 * X[:, 1] + off)).astype(float)
    yg = rng.gamma(2.0, np.exp(0.5 + 0.3 * X[:, 1]) / 2.0)
    yo = X @ [1.0, 2.0, 3.0] + rng.normal(size=N) * (1 + np.abs(X[:, 1]))
    g = rng.integers(0, 10, N)
    g2 = np.column_stack([g, rng.integers(0, 7, N)])
    fw = rng.integers(1, 4, N).astype(float)
    return dict(X=X, yb=yb, yp=yp, off=off, yg=yg, yo=yo, g=g, g2=g2, fw=fw)


def _kw(ct, groups):
    return {"groups": groups} if ct == "cluster" else {}


def _cov_kwds(ct, groups):
    return {"cov_kwds": {"groups": groups}} if ct == "cluster" else {}


@pytest.mark.parametrize("ct", ["HC0", "HC1", "cluster"])
def test_logit_robust_vs_statsmodels(data, ct):
    X, y, g = data["X"], data["yb"], data["g"]
    res = mj.fit(X, y, F.Bernoulli(), cov_type=ct, **_kw(ct, g))
    sm_ct = "HC0" if ct == "HC1" else ct  # statsmodels' Logit HC1 has no n/(n-k)
    ref = sm.Logit(y, X).fit(disp=0, cov_type=sm_ct, **_cov_kwds(ct, g))
    want = ref.cov_params() * (N / (N - 3) if ct == "HC1" else 1.0)
    assert rel(res.cov, want) < 1e-8
    assert res.cov_type == ct
    np.testing.assert_allclose(res.stderr, np.sqrt(np.diag(want)), rtol=1e-8)
    if ct == "cluster":
        assert int(res.n_groups) == 10
        assert "cluster (10 groups)" in res.summary()


def test_logit_two_way_cluster(data):
    X, y, g2 = data["X"], data["yb"], data["g2"]
    res = mj.fit(X, y, F.Bernoulli(), cov_type="cluster", groups=g2)
    ref = sm.GLM(y, X, family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": g2}
    )
    assert rel(res.cov, ref.cov_params()) < 1e-8
    assert np.asarray(res.n_groups).tolist() == [10, 7]


@pytest.mark.parametrize("ct", ["HC0", "cluster"])
def test_poisson_offset_weights_robust(data, ct):
    X, y, off, fw, g = data["X"], data["yp"], data["off"], data["fw"], data["g"]
    if ct == "HC0":  # statsmodels' freq_weights: same as replicated rows
        res = mj.fit(X, y, F.Poisson(), offset=off, weights=fw, cov_type=ct)
        ref = sm.GLM(y, X, family=sm.families.Poisson(), offset=off, freq_weights=fw)
        ref = ref.fit(cov_type=ct, tol=1e-13)
        assert rel(res.cov, ref.cov_params()) < 1e-8
        k = fw.astype(int)
        rep = sm.GLM(
            np.repeat(y, k),
            np.repeat(X, k, 0),
            family=sm.families.Poisson(),
            offset=np.repeat(off, k),
        ).fit(cov_type="HC0", tol=1e-13)
        assert rel(res.cov, rep.cov_params()) < 1e-8
    else:
        # unweighted (statsmodels does not support cluster with freq_weights)
        res = mj.fit(X, y, F.Poisson(), offset=off, cov_type=ct, groups=g)
        ref = sm.GLM(y, X, family=sm.families.Poisson(), offset=off).fit(
            cov_type=ct, cov_kwds={"groups": g}, tol=1e-13
        )
        assert rel(res.cov, ref.cov_params()) < 1e-8


@pytest.mark.parametrize("ct", ["HC0", "cluster"])
def test_gamma_log_robust(data, ct):
    X, y, g = data["X"], data["yg"], data["g"]
    res = mj.fit(X, y, F.Gamma(), cov_type=ct, **_kw(ct, g))
    fam = sm.families.Gamma(sm.families.links.Log())
    ref = sm.GLM(y, X, family=fam).fit(cov_type=ct, cov_kwds=_kw(ct, g), tol=1e-13)
    assert rel(res.cov, ref.cov_params()) < 1e-8


@pytest.mark.parametrize("ct", ["nonrobust", "HC0", "HC1", "cluster"])
def test_ols_robust_t_and_intervals(data, ct):
    X, y, g = data["X"], data["yo"], data["g"]
    res = mj.fit(X, y, F.Gaussian(), cov_type=ct, **_kw(ct, g))
    # statsmodels' robust OLS defaults to the normal; ours is t(df_resid)
    ref = sm.OLS(y, X).fit(cov_type=ct, cov_kwds=_kw(ct, g), use_t=True)
    assert rel(res.cov, ref.cov_params()) < 1e-8
    assert rel(res.tvalues, ref.tvalues) < 1e-8
    if ct == "cluster":  # statsmodels: t(G-1); ours (and the contract): t(df_resid)
        t = np.asarray(res.tvalues)
        assert rel(res.pvalues, 2 * stats.t.sf(np.abs(t), N - 3)) < 1e-8
        q = stats.t.ppf(0.975, N - 3) * np.asarray(res.stderr)
        b = np.asarray(res.params)
        assert rel(res.conf_int(), np.column_stack([b - q, b + q])) < 1e-8
    else:
        assert rel(res.pvalues, ref.pvalues) < 1e-6
        assert rel(res.conf_int(), ref.conf_int()) < 1e-8
    assert float(res.df_resid) == N - 3
    assert "Wald t distribution" in res.summary()


def test_glm_pvalues_normal_and_conf_int(data):
    X, y = data["X"], data["yb"]
    res = mj.fit(X, y, F.Bernoulli())
    ref = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-13)
    assert rel(res.pvalues, ref.pvalues) < 1e-7
    assert rel(res.conf_int(0.1), ref.conf_int(0.1)) < 1e-7
    assert "Wald z distribution" in res.summary()


def test_fit_likelihood_logistic_sandwich(data):
    X, y, g = data["X"], data["yb"], data["g"]

    def ll(b, X, y):
        eta = X @ b
        return y * eta - jnp.logaddexp(0.0, eta)

    res = mj.fit_likelihood(ll, jnp.zeros(3), X, y, cov_type="HC0")
    b = np.asarray(res.params)
    mu = 1 / (1 + np.exp(-X @ b))
    Hi = np.linalg.inv(X.T @ (X * (mu * (1 - mu))[:, None]))
    V = Hi @ (X.T @ (X * ((y - mu) ** 2)[:, None])) @ Hi
    assert rel(res.cov, V) < 1e-8
    # cluster by hand: the scores summed per group, G/(G-1) (n-1)/(n-k)
    # (mj.fit's Bernoulli: the same model, one compile less than fit_likelihood)
    res = mj.fit(X, y, F.Bernoulli(), cov_type="cluster", groups=g)
    S = X * (y - mu)[:, None]
    T = np.stack([S[g == k].sum(0) for k in range(10)])
    Vc = Hi @ (T.T @ T) @ Hi * (10 / 9) * (N - 1) / (N - 3)
    assert rel(res.cov, Vc) < 1e-8
    with pytest.raises(ValueError, match="per-observation"):
        mj.fit_likelihood(
            lambda b, X, y: jnp.sum(ll(b, X, y)), jnp.zeros(3), X, y, cov_type="HC0"
        )


def test_lr_wald_score_tests(data):
    X, y, off = data["X"], data["yp"], data["off"]
    full = mj.fit(X, y, F.Poisson(), offset=off)
    restr = mj.fit(X[:, :2], y, F.Poisson(), offset=off)
    rf = sm.GLM(y, X, family=sm.families.Poisson(), offset=off).fit(tol=1e-13)
    rr = sm.GLM(y, X[:, :2], family=sm.families.Poisson(), offset=off).fit(tol=1e-13)
    stat, df, p = mj.lr_test(restr, full)
    llr = 2 * (rf.llf - rr.llf)
    assert abs(stat - llr) < 1e-8 * max(1.0, llr) and df == 1
    assert abs(p - stats.chi2.sf(llr, 1)) < 1e-8
    R = np.array([[0.0, 1, 0], [0, 0, 1]])
    w = full.wald_test(R)
    ref = rf.wald_test(R, scalar=True, use_f=False)
    assert rel(w.statistic, ref.statistic) < 1e-8 and w.df == 2
    assert rel(w.pvalue, ref.pvalue) < 1e-7
    st = mj.score_test(restr, X, y, F.Poisson(), offset=off)
    ref_st = rr.model.score_test(rr.params, exog_extra=X[:, 2:])
    assert rel(st.statistic, ref_st[0][0]) < 1e-8 and st.df == 1
    with pytest.raises(ValueError, match="more parameters"):
        mj.lr_test(full, restr)
    with pytest.raises(ValueError, match="R must have shape"):
        full.wald_test(np.ones((1, 4)))


def test_predict_vs_statsmodels(data):
    X, y, off = data["X"], data["yp"], data["off"]
    res = mj.fit(X, y, F.Poisson(), offset=off)
    ref = sm.GLM(y, X, family=sm.families.Poisson(), offset=off).fit(tol=1e-13)
    sf = ref.get_prediction(X[:7], offset=off[:7]).summary_frame()
    pr = res.predict(X[:7], offset=off[:7], se=True)
    assert rel(pr.mean, sf["mean"]) < 1e-8
    assert rel(pr.se, sf["mean_se"]) < 1e-7
    assert rel(pr.ci, sf[["mean_ci_lower", "mean_ci_upper"]].to_numpy()) < 1e-7
    lin = res.predict(X[:7], offset=off[:7], which="linear")
    np.testing.assert_allclose(lin, X[:7] @ np.asarray(res.params) + off[:7])
    # OLS: t intervals with df_resid
    ro = mj.fit(X, data["yo"], F.Gaussian())
    so = sm.OLS(data["yo"], X).fit().get_prediction(X[:7]).summary_frame()
    po = ro.predict(X[:7], se=True)
    assert rel(po.se, so["mean_se"]) < 1e-8
    assert rel(po.ci, so[["mean_ci_lower", "mean_ci_upper"]].to_numpy()) < 1e-8
    with pytest.raises(ValueError, match="X_new"):
        res.predict(X[:, :2])
    with pytest.raises(ValueError, match="alpha"):
        res.predict(X, se=True, alpha=1.5)


def test_delta_method(data):
    res = mj.fit(data["X"], data["yp"], F.Poisson(), offset=data["off"])
    d = mj.delta_method(res, jnp.exp)
    b, V = np.asarray(res.params), np.asarray(res.cov)
    np.testing.assert_allclose(d.value, np.exp(b), rtol=1e-14)
    np.testing.assert_allclose(d.cov, np.outer(np.exp(b), np.exp(b)) * V, rtol=1e-12)


@pytest.mark.parametrize("name", ["bernoulli", "poisson", "gamma", "gaussian"])
def test_deviance_vs_statsmodels(data, name):
    X = data["X"]
    fam, smfam, y, kw = {
        "bernoulli": (F.Bernoulli(), sm.families.Binomial(), data["yb"], {}),
        "poisson": (
            F.Poisson(),
            sm.families.Poisson(),
            data["yp"],
            {"offset": data["off"]},
        ),
        "gamma": (
            F.Gamma(),
            sm.families.Gamma(sm.families.links.Log()),
            data["yg"],
            {},
        ),
        "gaussian": (F.Gaussian(), sm.families.Gaussian(), data["yo"], {}),
    }[name]
    res = mj.fit(X, y, fam, **kw)
    ref = sm.GLM(y, X, family=smfam, **kw).fit(tol=1e-13)
    assert rel(res.deviance, ref.deviance) < 1e-9
    assert rel(res.null_deviance, ref.null_deviance) < 1e-9


def test_bad_input(data):
    X, y, g = data["X"], data["yb"], data["g"]
    with pytest.raises(ValueError, match="groups"):
        mj.fit(X, y, F.Bernoulli(), cov_type="cluster", groups=g[:-1])
    with pytest.raises(ValueError, match="groups"):
        mj.fit(X, y, F.Bernoulli(), cov_type="cluster", groups=np.zeros(N, int))
    with pytest.raises(ValueError, match="groups"):
        mj.fit(X, y, F.Bernoulli(), cov_type="cluster")
    with pytest.raises(ValueError, match="cov_type"):
        mj.fit(X, y, F.Bernoulli(), cov_type="HC3")
    with pytest.raises(ValueError, match="Laplace"):
        mj.fit(X, data["yo"], F.Laplace(), cov_type="HC0")
    res = mj.fit(X, y, F.Bernoulli())
    with pytest.raises(ValueError, match="alpha"):
        res.conf_int(0.0)
