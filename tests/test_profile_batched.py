"""The batched profile path (mlejax._profile_batched) against R and the search."""

import numpy as np
import pytest
from scipy import stats
from test_profile import _bernoulli, _csv  # the R reference data and its reader

import mlejax as mj
from mlejax import _profile_batched, objective, profile

Z = float(stats.norm.ppf(0.975))


def _direct(X, y, fam, offset=None, logit=False):
    res = mj.fit(X, y, fam, offset=offset)
    n = y.shape[0]
    off = np.zeros(n) if offset is None else offset
    data = objective.GLMData(X, y, np.ones(n), off, None)
    k = X.shape[1]
    e, done, it = _profile_batched.batched_profile_quick(
        data, np.asarray(res.params), np.arange(k), Z, 1e-10, family=fam, logit=logit
    )
    return np.asarray(e), np.asarray(done), np.asarray(it)


@pytest.mark.parametrize("which", ["bernoulli", "poisson"])
def test_batched_matches_exact_r_profile_and_the_search(which, monkeypatch):
    """R's exact (uniroot) endpoints to 1e-9: Bernoulli through the logit pass
    (products of q), Poisson with an offset through the generic pass; and for
    Bernoulli, profile_ci with the batched path equals the per-endpoint search."""
    if which == "bernoulli":
        X, y = _bernoulli()
        fam, off = mj.families.Bernoulli(), None
    else:
        d = _csv("profile_poisson.csv")
        X = mj.add_constant(np.column_stack([d["x1"], d["x2"]]))
        y, fam = d["y"], mj.families.Poisson()
        off = np.log(d["exposure"])
    ref = _csv(f"profile_ci_{which}_ref.csv")
    want = np.column_stack([ref["lower"], ref["upper"]])
    # the batched iteration alone solves every endpoint (no hand-over)
    e, done, it = _direct(X, y, fam, off, logit=which == "bernoulli")
    assert done.all() and (it < _profile_batched.MAX_PASSES).all()
    np.testing.assert_allclose(e, want, rtol=0, atol=1e-9)
    if which == "bernoulli":
        monkeypatch.setattr(profile, "BATCHED_MIN_SIZE", 0)
        fast = profile.profile_ci_full(X, y, fam)
        assert (fast.status == profile.CONVERGED).all()
        monkeypatch.setattr(profile, "BATCHED_MIN_SIZE", 2**62)
        slow = np.asarray(mj.profile_ci(X, y, fam))
        np.testing.assert_allclose(np.asarray(fast.ci), slow, rtol=0, atol=1e-9)


def test_batched_endpoints_are_roots_by_statsmodels_refits():
    """Each endpoint, refitted by statsmodels with the coordinate fixed through
    an offset, gives |r| = z to 1e-8 (larger problem: the chord regime)."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(3)
    n, k = 5000, 4  # over 2 BLOCKs (1024): blocked pass, clamped last block
    X = mj.add_constant(rng.standard_normal((n, k - 1)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [0.3, 1.0, -0.5, 0.2])))).astype(float)
    e, done, it = _direct(X, y, mj.families.Bernoulli(), logit=True)
    assert done.all() and it.max() <= 6
    llhat = sm.GLM(y, X, family=sm.families.Binomial()).fit(tol=1e-13).llf
    for j in range(k):
        for s in range(2):
            b = e[j, s]
            f = sm.GLM(
                y,
                np.delete(X, j, axis=1),
                family=sm.families.Binomial(),
                offset=b * X[:, j],
            ).fit(tol=1e-13)
            r = np.sqrt(2 * (llhat - f.llf))
            assert abs(r - Z) < 1e-8, (j, s, r - Z)


def test_batched_hands_separation_to_the_search(monkeypatch):
    """A separated coefficient has an infinite endpoint: the batched iteration
    does not claim it, profile_ci reports +inf with its reason, and the other
    parameters' endpoints equal the per-endpoint search."""
    X, y = _bernoulli()
    x2 = np.where(y == 1, 1.0, -1.0) * np.abs(X[:, 2])
    x2[:8] = 0.0
    X = np.column_stack([X[:, :2], x2])
    fam = mj.families.Bernoulli()
    monkeypatch.setattr(profile, "BATCHED_MIN_SIZE", 0)
    with pytest.warns(mj.ConvergenceWarning, match="levels off"):
        fast = profile.profile_ci_full(X, y, fam)
    monkeypatch.setattr(profile, "BATCHED_MIN_SIZE", 2**62)
    with pytest.warns(mj.ConvergenceWarning, match="levels off"):
        slow = profile.profile_ci_full(X, y, fam)
    assert float(fast.ci[2, 1]) == np.inf and fast.status[2, 1] == profile.FLAT
    assert "infinite" in fast.reason[2][1]
    np.testing.assert_array_equal(fast.status, slow.status)
    ok = fast.status == profile.CONVERGED
    np.testing.assert_allclose(
        np.asarray(fast.ci)[ok], np.asarray(slow.ci)[ok], rtol=0, atol=1e-8
    )


def test_hc0_blocked_grams_match_statsmodels():
    """HC0 from the blocked two-Gram pass (n over 2 blocks, clamped last
    block) against statsmodels' Logit sandwich."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    n = 2500
    X = mj.add_constant(rng.standard_normal((n, 2)))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [0.2, 0.8, -0.4])))).astype(float)
    res = mj.fit(X, y, mj.families.Bernoulli(), cov_type="HC0", tol=1e-12)
    ref = sm.Logit(y, X).fit(disp=0, cov_type="HC0", tol=1e-12, method="newton")
    np.testing.assert_allclose(np.asarray(res.stderr), ref.bse, rtol=1e-9)
