"""Invariances any correct maximum-likelihood fit must have (hypothesis).

Shapes are fixed (the shared 20 x 3 problems, 40 x 3 for duplicated rows), so
hypothesis only varies values and nothing recompiles per example. Each property
is checked against an independent computation (a permuted/duplicated/rescaled
dataset, ``np.linalg.lstsq``, or ``family.log_prob`` summed by hand), never
against mlejax's own earlier output.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from problems import BETA, FAMILY_NAMES

import mlejax as mj

F = mj.families
N = 20
FEW = settings(max_examples=12, deadline=None)


def _fit(prob, **kw):
    fam, X, y, extra = prob
    return mj.fit(X, y, fam, **{**extra, **kw})


def _close(a, b, rtol, atol=0.0):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def _same_fit(a, b, rtol=1e-8, atol=1e-10):
    assert bool(a.converged) and bool(b.converged)
    _close(a.params, b.params, rtol, atol)
    _close(a.stderr, b.stderr, rtol, atol)
    _close(a.loglik, b.loglik, rtol, atol)
    for k in a.extra:
        _close(a.extra[k], b.extra[k], rtol, atol)


FAMS = ["Gaussian", "Bernoulli", "Categorical", "Poisson", "Laplace", "Gamma"]


@pytest.mark.parametrize("name", FAMS)
@FEW
@given(perm=st.permutations(range(N)))
def test_row_order_does_not_matter(glm_problems, name, perm):
    fam, X, y, kw = glm_problems[name]
    perm = np.asarray(perm)
    res = _fit(glm_problems[name])
    res_p = mj.fit(X[perm], y[perm], fam, **{k: v[perm] for k, v in kw.items()})
    _same_fit(res, res_p, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["Poisson", "Gamma", "Binomial"])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_duplicating_rows_equals_weight_two(glm_problems, name, seed):
    fam, X, _, kw = glm_problems[name]
    rng = np.random.default_rng(seed)
    mu = np.exp(X @ BETA)
    if name == "Poisson":
        y = rng.poisson(mu).astype(np.float64)
    elif name == "Gamma":
        y = rng.gamma(3.0, mu / 3.0)
    else:
        t = kw["trials"]
        y = rng.binomial(t.astype(int), 1 / (1 + 1 / mu)).astype(np.float64)
        y[0], y[1] = 0.0, t[1]  # keep both ends present, interior rows too
        y[2:6] = np.clip(y[2:6], 1, t[2:6] - 1)
    res_w = mj.fit(X, y, fam, weights=np.full(N, 2.0), **kw)
    res_d = mj.fit(
        np.vstack([X, X]), np.r_[y, y], fam, **{k: np.r_[v, v] for k, v in kw.items()}
    )
    # different summation orders: agreement to the solver's tolerance, ~9 digits
    _same_fit(res_w, res_d, rtol=1e-7, atol=1e-8)
    _close(res_w.bic, res_d.bic, 1e-10)  # n in BIC is the sum of the weights


@pytest.mark.parametrize("name", ["Bernoulli", "Poisson", "StudentT", "Gaussian"])
@FEW
@given(
    j=st.integers(1, 2),
    log10c=st.floats(-4, 4),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_rescaling_a_column_rescales_its_coefficient(
    glm_problems, name, j, log10c, sign
):
    fam, X, y, kw = glm_problems[name]
    c = sign * 10.0**log10c
    Xc = X.copy()
    Xc[:, j] *= c
    res, res_c = _fit(glm_problems[name]), mj.fit(Xc, y, fam, **kw)
    scale = np.ones(3)
    scale[j] = c
    assert bool(res_c.converged)
    _close(np.asarray(res_c.params) * scale, res.params, 1e-7, 1e-9)
    _close(np.abs(np.asarray(res_c.stderr) * scale), res.stderr, 1e-6)
    _close(res_c.loglik, res.loglik, 1e-10)


@pytest.mark.parametrize("name", ["Gaussian", "Poisson", "Bernoulli", "Gamma"])
@FEW
@given(k=st.floats(-3, 3))
def test_constant_offset_shifts_the_intercept(glm_problems, name, k):
    fam, X, y, kw = glm_problems[name]
    res = _fit(glm_problems[name])
    res_o = mj.fit(X, y, fam, offset=np.full(N, k), **kw)
    want = np.asarray(res.params).copy()
    want[0] -= k
    _close(res_o.params, want, 1e-8, 1e-9)
    _close(res_o.stderr, res.stderr, 1e-6)
    _close(res_o.loglik, res.loglik, 1e-10)


@FEW
@given(
    vals=st.lists(st.floats(-100, 100), min_size=2 * N, max_size=2 * N),
    ys=st.lists(st.floats(-1e3, 1e3), min_size=N, max_size=N),
)
def test_gaussian_fit_and_ols_match_lstsq(vals, ys):
    """Both Gaussian routes against numpy: lstsq params, textbook OLS stderr."""
    X = np.column_stack([np.ones(N), np.reshape(vals, (N, 2))])
    y = np.asarray(ys)
    norms = np.linalg.norm(X, axis=0)
    assume((norms > 0).all())
    _, s, vt = np.linalg.svd(X / norms, full_matrices=False)
    assume(s[-1] > 1e-6 * s[0])  # full rank, and lstsq itself accurate to ~1e-10
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ beta
    rss = r @ r
    # diag((X'X)^-1) from the SVD of the equilibrated X (no squared condition)
    xtx_inv_diag = np.sum((vt / s[:, None]) ** 2, axis=0) / norms**2
    se = np.sqrt(rss / (N - 3) * xtx_inv_diag)
    ll = -N / 2 * (np.log(2 * np.pi * rss / N) + 1)
    scale = np.abs(y).max() + 1.0
    for res in (mj.fit(X, y, F.Gaussian()), mj.ols(X, y)):
        _close(res.params, beta, 1e-7, 1e-9 * scale)
        if rss > N * (1e-3 * scale) ** 2:  # residuals far above their rounding
            _close(res.stderr, se, 1e-6)
            _close(res.loglik, ll, 1e-9, 1e-6)


@pytest.mark.parametrize("name", FAMILY_NAMES)
@settings(max_examples=10, deadline=None)
@given(
    d=st.lists(st.floats(-1, 1), min_size=6, max_size=6),
    size=st.floats(1e-4, 1.0),
)
def test_loglik_at_optimum_beats_perturbed_points(glm_problems, name, d, size):
    fam, X, y, kw = glm_problems[name]
    res = _fit(glm_problems[name])
    assert bool(res.converged)
    extra = {k: np.asarray(v) for k, v in res.extra.items()}
    params = np.asarray(res.params)

    def ll(b):
        return float(np.sum(fam.log_prob(y, X @ b, **extra, **kw)))

    # log_prob summed by hand reproduces the reported loglik at the optimum ...
    _close(ll(params), res.loglik, 1e-10)
    # ... and no nearby point (coefficients moved, extras held) does better
    step = size * np.reshape(np.asarray(d[: params.size]), params.shape)
    tol = 1e-9 * abs(float(res.loglik)) + 1e-9
    assert ll(params + step) <= float(res.loglik) + tol
