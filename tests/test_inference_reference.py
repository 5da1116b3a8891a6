"""Inference against outside references: R's ``anova`` and ``predict(se.fit=TRUE)``
(numbers stored by ``tests/reference/anova_predict.R``), statsmodels'
``get_prediction``, and a closed-form NumPy sandwich for hand-written
likelihoods; a vmapped batch of robust fits against the per-fit loop.
"""

from __future__ import annotations

import csv
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import mlejax as mj

sm = pytest.importorskip("statsmodels.api")

F = mj.families
REF = os.path.join(os.path.dirname(__file__), "reference")


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _csv(name):
    with open(os.path.join(REF, name)) as f:
        rows = list(csv.DictReader(f))
    out = {}
    for k in rows[0]:
        vals = [r[k].strip() for r in rows]
        try:
            out[k] = np.array([float(v) if v != "NA" else np.nan for v in vals])
        except ValueError:
            out[k] = np.array(vals)
    return out


@pytest.fixture(scope="module")
def d():
    return _csv("anova_predict_data.csv")


def _design(d, cols):
    return mj.add_constant(np.column_stack([d[c] for c in cols]))


@pytest.fixture(scope="module")
def lr_ref():
    t = _csv("anova_predict_lr.csv")
    return {m: {k: v[i] for k, v in t.items()} for i, m in enumerate(t["model"])}


SMALL, BIG = ["x1"], ["x1", "x2", "x3"]


def _pair(d, family, y, **kw):
    return (
        mj.fit(_design(d, SMALL), d[y], family, tol=1e-13, **kw),
        mj.fit(_design(d, BIG), d[y], family, tol=1e-13, **kw),
    )


@pytest.mark.parametrize(
    "model, family, y, kw",
    [
        ("bernoulli", F.Bernoulli(), "yb", {}),
        ("poisson", F.Poisson(), "yp", {"exposure": True}),
        pytest.param("negbin", F.NegativeBinomial(), "ynb", {}, marks=pytest.mark.slow),
    ],
)
def test_lr_test_equals_r_anova(d, lr_ref, model, family, y, kw):
    """Known dispersion (anova.glm, test="Chisq") and NB with theta re-estimated
    in each model (MASS's anova.negbin): both are 2 (l_big - l_small)."""
    if kw:
        kw = {"offset": np.log(d["expo"])}
    small, big = _pair(d, family, y, **kw)
    ref = lr_ref[model]
    stat, df, p = mj.lr_test(small, big)
    assert df == int(ref["df"])
    assert rel(stat, ref["deviance"]) < 1e-8
    assert rel(p, ref["pvalue"]) < 1e-8
    assert rel([small.loglik, big.loglik], [ref["loglik_small"], ref["loglik_big"]]) < (
        1e-10
    )
    if model != "negbin":  # R's residual deviances
        want = [ref["resid_dev_small"], ref["resid_dev_big"]]
        assert rel([small.deviance, big.deviance], want) < 1e-9


@pytest.mark.slow
def test_gamma_anova_convention(d, lr_ref):
    """R's anova for a dispersion family is not an LR test: it divides the
    deviance difference by the larger model's Pearson dispersion. The
    deviances are R's; the anova statistic follows from them and the Pearson
    dispersion computed here (NumPy); mj.lr_test is the LR test with the
    shape re-estimated in each model, a different (documented) statistic."""
    small, big = _pair(d, F.Gamma(), "yg")
    ref = lr_ref["gamma"]
    want = [ref["resid_dev_small"], ref["resid_dev_big"]]
    assert rel([small.deviance, big.deviance], want) < 1e-9
    X, y = _design(d, BIG), d["yg"]
    mu = np.exp(X @ np.asarray(big.params))
    phi = np.sum(((y - mu) / mu) ** 2) / (len(y) - X.shape[1])
    assert rel(phi, ref["pearson_dispersion_big"]) < 1e-9
    f_stat = (float(small.deviance) - float(big.deviance)) / phi
    assert rel(f_stat, ref["deviance"] / ref["pearson_dispersion_big"]) < 1e-9
    # the p-value amplifies the statistic's rounding by f_stat / 2 = 13
    assert rel(stats.chi2.sf(f_stat, 2), ref["pvalue"]) < 5e-8
    # the true LR statistic (shape at its MLE in each fit) differs from it
    lr = mj.lr_test(small, big)
    assert rel(lr.statistic, 2 * (float(big.loglik) - float(small.loglik))) < 1e-12
    assert abs(lr.statistic - f_stat) > 1e-3 * f_stat


@pytest.mark.parametrize(
    "model, family, y",
    [
        ("bernoulli", F.Bernoulli(), "yb"),
        ("poisson", F.Poisson(), "yp"),
        pytest.param("gaussian", F.Gaussian(), "yo", marks=pytest.mark.slow),
    ],
)
def test_predict_equals_r_and_statsmodels(d, model, family, y):
    t = _csv("anova_predict_pred.csv")
    m = t["model"] == model
    X = _design(d, BIG)
    Xn = _design({c: t[c][m] for c in BIG}, BIG)
    kw, kwn = {}, {}
    if model == "poisson":
        kw, kwn = {"offset": np.log(d["expo"])}, {"offset": np.log(t["expo"][m])}
    res = mj.fit(X, d[y], family, tol=1e-13, **kw)
    lin = res.predict(Xn, which="linear", se=True, **kwn)
    mean = res.predict(Xn, which="mean", se=True, **kwn)
    assert rel(lin.mean, t["link"][m]) < 1e-8
    assert rel(lin.se, t["link_se"][m]) < 1e-8
    assert rel(mean.mean, t["response"][m]) < 1e-8
    assert rel(mean.se, t["response_se"][m]) < 1e-8
    # statsmodels' get_prediction, both scales (intervals too)
    smfam = {
        "bernoulli": sm.families.Binomial(),
        "poisson": sm.families.Poisson(),
        "gaussian": sm.families.Gaussian(),
    }[model]
    ref = sm.GLM(d[y], X, family=smfam, **kw).fit(tol=1e-13)
    if model == "gaussian":  # t intervals with df_resid, as statsmodels' OLS
        ref = sm.OLS(d[y], X).fit()
    for which, pr in (("linear", lin), ("mean", mean)):
        extra = {} if model == "gaussian" else {"which": which}
        sf = ref.get_prediction(Xn, **extra, **kwn).summary_frame()
        sf = sf.iloc[:, :4]  # OLS adds prediction ("obs") intervals
        sf.columns = ["mean", "se", "lo", "hi"]  # names differ between the scales
        assert rel(pr.mean, sf["mean"]) < 1e-8
        assert rel(pr.se, sf["se"]) < 1e-8
        assert rel(pr.ci, sf[["lo", "hi"]].to_numpy()) < 1e-8


@pytest.mark.parametrize("ct", ["cluster", pytest.param("HC0", marks=pytest.mark.slow)])
def test_weibull_fit_likelihood_sandwich_closed_form(d, ct):
    """Hand-written Weibull regression (log-scale linear in x, log-shape free):
    HC0 and cluster covariances against the NumPy sandwich from closed-form
    scores and Hessian (each cov_type compiles its own fit_likelihood: the
    logistic HC0 case is in test_inference.py, this one's HC0 under -m slow)."""
    X = _design(d, ["x1"])
    t = d["yg"]
    g = (np.arange(len(t)) * 5) % 9

    def ll(th, X, t):
        k = jnp.exp(th["logk"])
        lam = jnp.exp(X @ th["b"])
        z = t / lam
        return jnp.log(k) - jnp.log(lam) + (k - 1) * jnp.log(z) - z**k

    init = {"b": jnp.zeros(2), "logk": jnp.zeros(())}
    kw = {"groups": g} if ct == "cluster" else {}
    res = mj.fit_likelihood(ll, init, X, t, cov_type=ct, **kw)
    b, c = np.asarray(res.params["b"]), float(res.params["logk"])
    k = np.exp(c)
    lz = np.log(t) - X @ b
    zk = np.exp(k * lz)
    # per-row scores: d/db = k (z^k - 1) x ; d/dc = 1 + k lz (1 - z^k)
    S = np.column_stack([(k * (zk - 1))[:, None] * X, 1 + k * lz * (1 - zk)])
    # Hessian of the log-likelihood (summed)
    Hbb = -(X.T * (k * k * zk)) @ X
    Hbc = X.T @ (k * (zk - 1) + k * k * lz * zk)
    Hcc = np.sum(k * lz * (1 - zk) - (k * lz) ** 2 * zk)
    H = np.block([[Hbb, Hbc[:, None]], [Hbc[None, :], np.array([[Hcc]])]])
    Hi = np.linalg.inv(-H)
    # ravel_pytree order: "b" then "logk"
    if ct == "HC0":
        assert rel(res.cov, Hi @ (S.T @ S) @ Hi) < 1e-8
        return
    T = np.stack([S[g == j].sum(0) for j in range(9)])
    n, kk = len(t), 3
    V = Hi @ (T.T @ T) @ Hi * (9 / 8) * (n - 1) / (n - kk)
    assert rel(res.cov, V) < 1e-8
    assert int(res.n_groups) == 9


def _batch_data(B, n, seed):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    eta = X @ [0.2, 0.7, -0.4]
    Y = (rng.random((B, n)) < special.expit(eta)).astype(float)
    Y[3] = (X[:, 1] > 0).astype(float)  # completely separated member
    return X, Y


def _batch_vs_loop(B, n, sample, seed):
    X, Y = _batch_data(B, n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failure is data here: checked below
        batch = jax.vmap(lambda y: mj.fit(X, y, F.Bernoulli(), cov_type="HC0"))(Y)
    conv = np.asarray(batch.converged)
    assert not conv[3] and "separat" in batch.reason[3]
    assert conv[np.arange(B) != 3].all()
    rng = np.random.default_rng(seed + 1)
    pick = [3, *rng.choice(np.setdiff1d(np.arange(B), [3]), sample - 1, replace=False)]
    for i in pick:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if i == 3 else "error")
            one = mj.fit(X, Y[i], F.Bernoulli(), cov_type="HC0")
        assert bool(one.converged) == bool(conv[i])
        if i == 3:
            assert int(one.status) == int(np.asarray(batch.status)[3])
            continue
        np.testing.assert_allclose(batch.params[i], one.params, rtol=1e-10)
        np.testing.assert_allclose(batch.cov[i], one.cov, rtol=1e-9)
    # the separated member leaves the others as they are: the same batch with
    # it replaced by a regular data set gives the same numbers for the others
    Y2 = Y.copy()
    Y2[3] = Y[4]
    again = jax.vmap(lambda y: mj.fit(X, y, F.Bernoulli(), cov_type="HC0"))(Y2)
    assert np.asarray(again.converged).all()
    others = np.arange(B) != 3
    np.testing.assert_allclose(
        np.asarray(again.stderr)[others], np.asarray(batch.stderr)[others], rtol=1e-12
    )


def test_vmapped_hc0_batch_equals_loop_separated_member_flagged():
    _batch_vs_loop(B=200, n=60, sample=20, seed=7)


@pytest.mark.slow
def test_vmapped_hc0_batch_of_1000_equals_loop():
    _batch_vs_loop(B=1000, n=60, sample=1000, seed=11)


def test_bad_input_names_the_argument(d):
    X, y = _design(d, SMALL), d["yb"]
    res = mj.fit(X, y, F.Bernoulli())
    with pytest.raises(ValueError, match="groups"):
        mj.fit(X, y, F.Bernoulli(), cov_type="cluster", groups=np.arange(5))
    with pytest.raises(ValueError, match="groups"):
        mj.fit(X, y, F.Bernoulli(), cov_type="cluster", groups=np.ones(len(y)))
    for bad in (0.0, 1.0, -0.5, 2.0):
        with pytest.raises(ValueError, match="alpha"):
            res.conf_int(bad)
        with pytest.raises(ValueError, match="alpha"):
            res.predict(X, se=True, alpha=bad)
    with pytest.raises(ValueError, match="R must have shape"):
        res.wald_test(np.eye(3))
    with pytest.raises(ValueError, match="X_new"):
        res.predict(np.ones((4, 3)))


def test_categorical_predict_se_closed_form():
    """Class probabilities and their delta-method SEs: statsmodels' MNLogit
    parameters and covariance with the closed-form softmax Jacobian
    dp_k/deta_c = p_k (1[k = c+1] - p_{c+1}) (class 0 the reference)."""
    rng = np.random.default_rng(3)
    n, K = 90, 3
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = rng.integers(0, K, n).astype(float)
    res = mj.fit(X, y, F.Categorical(n_classes=K), tol=1e-13)
    ref = sm.MNLogit(y, X).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
    b = np.asarray(ref.params)  # (p, K-1)
    # statsmodels orders its covariance column by column (class-major)
    p = X.shape[1]
    perm = np.arange(p * (K - 1)).reshape(K - 1, p).T.ravel()
    V = np.asarray(ref.cov_params())[np.ix_(perm, perm)]
    assert rel(res.cov, V) < 1e-7
    Xn = X[:5] + 0.25
    pr = res.predict(Xn, se=True)
    eta = np.column_stack([np.zeros(5), Xn @ b])
    P = np.exp(eta) / np.exp(eta).sum(1, keepdims=True)
    assert rel(pr.mean, P) < 1e-8
    se = np.empty((5, K))
    for i in range(5):
        for k in range(K):
            d = P[i, k] * ((np.arange(1, K) == k) - P[i, 1:])  # (K-1,)
            J = np.kron(Xn[i], d)  # row-major beta order
            se[i, k] = np.sqrt(J @ V @ J)
    assert pr.mean.shape == pr.se.shape == (5, K) and pr.ci.shape == (5, K, 2)
    assert rel(pr.se, se) < 1e-7
    lin = res.predict(Xn, which="linear", se=True)
    se_lin = np.sqrt(
        [[Xn[i] @ V[c::2, c::2] @ Xn[i] for c in range(K - 1)] for i in range(5)]
    )
    assert lin.mean.shape == (5, K - 1)
    assert rel(lin.se, se_lin) < 1e-7
