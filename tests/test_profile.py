"""Profile-likelihood intervals against exact references (tests/reference/)."""

import csv
import os

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats

import mlejax as mj
from mlejax import profile

REF = os.path.join(os.path.dirname(__file__), "reference")


def _csv(name):
    with open(os.path.join(REF, name)) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "term"}


def _bernoulli():
    d = _csv("profile_bernoulli.csv")
    return mj.add_constant(np.column_stack([d["x1"], d["x2"]])), d["y"]


def test_bernoulli_matches_exact_r_profile():
    X, y = _bernoulli()
    ref = _csv("profile_ci_bernoulli_ref.csv")
    ci = np.asarray(mj.profile_ci(X, y, mj.families.Bernoulli()))
    want = np.column_stack([ref["lower"], ref["upper"]])
    np.testing.assert_allclose(ci, want, rtol=0, atol=1e-6)


def test_poisson_offset_matches_exact_r_profile():
    d = _csv("profile_poisson.csv")
    X = mj.add_constant(np.column_stack([d["x1"], d["x2"]]))
    ref = _csv("profile_ci_poisson_ref.csv")
    out = profile.profile_ci_full(
        X, d["y"], mj.families.Poisson(), offset=np.log(d["exposure"])
    )
    want = np.column_stack([ref["lower"], ref["upper"]])
    np.testing.assert_allclose(np.asarray(out.ci), want, rtol=0, atol=1e-6)
    assert (out.status == 0).all()


def test_separated_bernoulli_gives_infinite_endpoint_with_reason():
    X, y = _bernoulli()  # same shapes as above: the compiled profile is reused
    x2 = np.where(y == 1, 1.0, -1.0) * np.abs(X[:, 2])
    x2[:8] = 0.0  # ties of both classes: quasi-complete separation in x2
    X = np.column_stack([X[:, :2], x2])
    with pytest.warns(mj.ConvergenceWarning, match="levels off"):
        out = profile.profile_ci_full(X, y, mj.families.Bernoulli())
    assert out.ci.shape == (3, 2)
    assert float(out.ci[2, 1]) == np.inf
    assert out.status[2, 1] == profile.FLAT
    assert "infinite" in out.reason[2][1]
    # never a finite-looking number at a failed endpoint
    ok = out.status == profile.CONVERGED
    assert np.isfinite(np.asarray(out.ci)[ok]).all()
    assert not np.isfinite(np.asarray(out.ci)[~ok]).any()


def test_fit_likelihood_exponential_rate_closed_form():
    x = jnp.array([0.5, 1.5, 2.5, 3.5, 0.2, 1.1])

    def ll(th, x):
        return jnp.sum(jnp.log(th["rate"]) - th["rate"] * x)

    res = mj.fit_likelihood(ll, {"rate": jnp.array(1.0)}, x)
    ci = np.asarray(mj.profile_ci_likelihood(ll, res, x, alpha=0.1))
    n, s = x.shape[0], float(jnp.sum(x))
    rh = n / s
    cut = n * np.log(rh) - n - stats.norm.ppf(0.95) ** 2 / 2
    f = lambda r: n * np.log(r) - r * s - cut  # noqa: E731
    want = [
        optimize.brentq(f, 1e-6, rh, xtol=1e-15),
        optimize.brentq(f, rh, 50, xtol=1e-15),
    ]
    np.testing.assert_allclose(ci[0], want, rtol=0, atol=1e-8)


def test_bad_alpha_is_value_error():
    X, y = _bernoulli()
    for bad in (0.0, 1.0, -0.1, "x"):
        with pytest.raises(ValueError, match="alpha"):
            mj.profile_ci(X, y, mj.families.Bernoulli(), alpha=bad)


def test_chord_refits_match_exact_r_profile(monkeypatch):
    """Large problems refit with the MLE's Hessian (chord iterations): the
    endpoints are the same roots (R's exact uniroot endpoints), forced here on
    the small reference problem."""
    monkeypatch.setattr(profile, "CHORD_MIN_SIZE", 0)
    X, y = _bernoulli()
    ref = _csv("profile_ci_bernoulli_ref.csv")
    out = profile.profile_ci_full(X, y, mj.families.Bernoulli())
    want = np.column_stack([ref["lower"], ref["upper"]])
    np.testing.assert_allclose(np.asarray(out.ci), want, rtol=0, atol=1e-6)
    assert (out.status == profile.CONVERGED).all()
