"""Links of the GLM families and information="observed" | "expected".

References: R's ``glm`` / ``MASS::glm.nb`` with ``epsilon = 1e-14``
(tests/reference/links.R -> links_ref.csv, data sets exported next to it) and
statsmodels' ``GLM.hessian(observed=True)`` for the observed information.
"""

from __future__ import annotations

import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import mlejax as mj

REF = pathlib.Path(__file__).parent / "reference"
TABLE = pd.read_csv(REF / "links_ref.csv")
CASES = sorted(set(zip(TABLE["data"], TABLE["family"], TABLE["link"], strict=True)))
#: the default run (CI budget): binomial with trials, a link with an edge, an
#: extra parameter with the expected-information block; every link: -m slow
DEFAULT = {
    ("esoph", "Binomial", "cloglog"),
    ("warpbreaks", "Poisson", "identity"),
    ("mtcars", "Gamma", "inverse"),
}


def _data(name):
    d = pd.read_csv(REF / f"links_{name}.csv")
    X = d[[c for c in d.columns if c.startswith("x")]].to_numpy(float)
    t = d["trials"].to_numpy(float) if "trials" in d else None
    return X, d["y"].to_numpy(float), t


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _sm_family(fam, link, extra):
    sm = pytest.importorskip("statsmodels.api")
    L = sm.families.links
    lk = {
        "logit": L.Logit(),
        "probit": L.Probit(),
        "cloglog": L.CLogLog(),
        "cauchit": L.Cauchy(),
        "log": L.Log(),
        "identity": L.Identity(),
        "sqrt": L.Sqrt(),
        "inverse": L.InversePower(),
    }[link]
    F = sm.families
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' DomainWarning for the links
        if fam in ("Bernoulli", "Binomial"):
            return F.Binomial(link=lk), 1.0
        if fam == "Poisson":
            return F.Poisson(link=lk), 1.0
        if fam == "Gamma":
            return F.Gamma(link=lk), 1.0 / extra
        if fam == "Gaussian":
            return F.Gaussian(link=lk), None
        return None, None


def _check_case(data, fam_name, link):
    ref = TABLE[
        (TABLE["data"] == data)
        & (TABLE["family"] == fam_name)
        & (TABLE["link"] == link)
    ].sort_values("term")
    X, y, t = _data(data)
    family = getattr(mj.families, fam_name)(link=link)
    kw = {"trials": t} if t is not None else {}
    obs = mj.fit(X, y, family, **kw)
    exp = mj.fit(X, y, family, information="expected", **kw)
    assert bool(obs.converged) and bool(exp.converged), obs.reason
    np.testing.assert_allclose(obs.params, exp.params, rtol=0, atol=0)
    assert _rel(obs.params, ref["coef"]) < 1e-8
    assert _rel(exp.stderr, ref["se_expected"]) < 1e-6
    r0 = ref.iloc[0]
    assert _rel(obs.loglik, r0["loglik"]) < 1e-9
    assert _rel(obs.deviance, r0["deviance"]) < 1e-8
    assert _rel(obs.null_deviance, r0["null_deviance"]) < 1e-8
    name = {"Gamma": "shape", "NegativeBinomial": "alpha", "Gaussian": "scale"}
    if fam_name in name:
        assert _rel(obs.extra[name[fam_name]], r0["extra"]) < 1e-7
    # observed information: statsmodels' exact Hessian of the GLM log-likelihood
    sm_fam, scale = _sm_family(fam_name, link, r0.get("extra"))
    if sm_fam is None:
        return
    import statsmodels.api as sm

    endog = np.column_stack([y, t - y]) if t is not None else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm.GLM(endog, X, family=sm_fam)
    p = np.asarray(obs.params)
    if scale is None:  # Gaussian: R's and mlejax's OLS convention RSS / (n - p)
        mu = np.asarray(family.mean(jnp.asarray(X @ p)))
        scale = np.sum((y - mu) ** 2) / (len(y) - X.shape[1])
    H = model.hessian(p, scale=scale, observed=True)
    se_obs = np.sqrt(np.diag(np.linalg.inv(-H)))
    assert _rel(obs.stderr, se_obs) < 1e-6


@pytest.mark.parametrize(
    "case",
    [c if c in DEFAULT else pytest.param(c, marks=pytest.mark.slow) for c in CASES],
    ids=lambda c: "-".join(c),
)
def test_links_match_r(case):
    _check_case(*case)


def test_bad_links_and_information():
    with pytest.raises(ValueError, match=r"Poisson: link='logit'.*\['log', 'identity'"):
        mj.families.Poisson(link="logit")
    with pytest.raises(ValueError, match=r"Bernoulli: link='probitt'"):
        mj.families.Bernoulli(link="probitt")
    with pytest.raises(ValueError, match="Gamma: link='sqrt'"):
        mj.families.Gamma(link="sqrt")
    X, y, _ = _data("infert")
    with pytest.raises(ValueError, match="information must be 'observed'"):
        mj.fit(X, y, mj.families.Bernoulli(), information="fisher")
    with pytest.raises(ValueError, match="not available for StudentT"):
        mj.fit(X, y, mj.families.StudentT(), information="expected")
    # the classic loss belongs to the canonical link only
    fam = mj.families.Bernoulli(link="probit")
    assert fam.loss_name is None and fam.link_name == "probit"
    assert mj.families.Bernoulli().loss_name == "bce_with_logits"
    with pytest.raises(ValueError, match="only with the canonical link 'logit'"):
        mj.equivalence.affine_constants(fam, y)
    with pytest.raises(ValueError, match="no classic machine-learning loss"):
        mj.equivalence.loss(fam, y, jnp.zeros(len(y)))
    assert hash(fam) == hash(mj.families.Bernoulli(link="probit"))
    assert fam != mj.families.Bernoulli()


def test_stable_tails():
    """log mu and log(1 - mu) at |eta| = 40 against SciPy and closed forms."""
    from scipy import special

    e = np.array([-40.0, -5.0, 0.5, 40.0])
    links = mj.families.links
    pr = links.get("Bernoulli", "probit", ("probit",))
    cl = links.get("Bernoulli", "cloglog", ("cloglog",))
    ca = links.get("Bernoulli", "cauchit", ("cauchit",))
    f = mj.families.Bernoulli(link="probit")

    @jax.jit  # one compile for all of it
    def values(e):
        g = jax.vmap(jax.grad(lambda et: f.log_prob_rows(jnp.ones(()), et)))(e)
        h = jax.vmap(jax.hessian(lambda et: f.log_prob_rows(jnp.zeros(()), et)))(e)
        return pr.log_mean(e), pr.log1m_mean(e), cl.log_mean(e), ca.log1m_mean(e), g, h

    p_lm, p_l1m, c_lm, c_l1m, g, h = values(jnp.asarray(e))
    np.testing.assert_allclose(p_lm, special.log_ndtr(e), rtol=1e-13)
    np.testing.assert_allclose(p_l1m, special.log_ndtr(-e), rtol=1e-13)
    # log(1 - exp(-e^eta)): e^eta tiny -> eta - e^eta / 2
    want = np.where(e < -20, e - np.exp(e) / 2, np.log(-np.expm1(-np.exp(e))))
    np.testing.assert_allclose(c_lm, want, rtol=1e-13)
    # 1 - F(40) = atan(1/40) / pi for the Cauchy distribution
    np.testing.assert_allclose(
        c_l1m[-1], np.log(np.arctan(1 / 40.0) / np.pi), rtol=1e-14
    )
    # d/deta log Phi(eta) = phi/Phi -> -eta for eta -> -inf (Mills ratio)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    assert abs(g[0] - 40.0) / 40.0 < 1e-3 and h[-1] < 0


def test_jit_vmap_noncanonical_link():
    X, y, _ = _data("warpbreaks")
    fam = mj.families.Poisson(link="sqrt")
    ref = TABLE[(TABLE["data"] == "warpbreaks") & (TABLE["link"] == "sqrt")]
    ref = ref[ref["family"] == "Poisson"].sort_values("term")
    ys = jnp.stack([jnp.asarray(y), jnp.asarray(y[::-1])])
    fit = jax.jit(jax.vmap(lambda yy: mj.fit(X, yy, fam, information="expected")))
    res = fit(ys)
    assert bool(np.all(res.converged))
    assert _rel(res.params[0], ref["coef"]) < 1e-8
    assert _rel(res.stderr[0], ref["se_expected"]) < 1e-6


def test_out_of_range_mean_is_reported():
    """esoph with the binomial log link: R's glm finds no valid coefficients."""
    X, y, t = _data("esoph")
    with pytest.warns(mj.status.ConvergenceWarning, match="valid range of the link"):
        res = mj.fit(X, y, mj.families.Binomial(link="log"), trials=t)
    assert not bool(res.converged)
    assert int(res.status) == mj.Status.INVALID_MEAN
    # Poisson identity where a mean would have to be negative
    x = np.arange(8.0)
    yy = np.array([0.0, 0, 0, 0, 1, 6, 9, 14])
    with pytest.warns(mj.status.ConvergenceWarning):
        res = mj.fit(mj.add_constant(x), yy, mj.families.Poisson(link="identity"))
    assert int(res.status) == mj.Status.INVALID_MEAN


@pytest.mark.slow  # a vmapped fit per link (the default suite runs it too)
def test_link_choice_experiment_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    from experiments import EXPERIMENTS, config, core
    from experiments import link_choice as lc

    cfg = config.LinkChoice(n=60, replications=4, links=["logit", "probit"])
    key = core.fold(jax.random.key(0), "link_choice")
    out = core.run(EXPERIMENTS["link_choice"], cfg, key)
    X, Y, _ = lc.data(cfg, key)
    rows = {r["link"]: r for r in out["tables"]["links"]}
    L = sm.families.links
    for name, lk in (("logit", L.Logit()), ("probit", L.Probit())):
        ref = sm.GLM(np.asarray(Y[0]), np.asarray(X), family=sm.families.Binomial(lk))
        ref = ref.fit(tol=1e-13)
        assert _rel(rows[name]["loglik"], ref.llf) < 1e-10
        assert _rel(rows[name]["aic"], ref.aic) < 1e-10
    assert rows["logit"]["classic_loss"] == "bce_with_logits"
    assert rows["probit"]["classic_loss"] == "none"
    assert sum(r["best_aic_share"] for r in rows.values()) == pytest.approx(1.0)
