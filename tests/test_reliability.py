"""Honest results under transforms and at degenerate input (reliability issue).

Each group of the issue: eagerly a clear error or ``converged=False`` with the
reason and a warning; under ``jit``/``vmap`` ``converged=False`` with the
reason, the good members of a batch unchanged.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import mlejax as mj

F = mj.families
S = mj.Status


@pytest.fixture(scope="module")
def design():
    rng = np.random.default_rng(0)
    return mj.add_constant(rng.normal(size=(120, 2)))


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# 1. Gaussian under plain vmap -------------------------------------------------
def test_gaussian_and_ols_under_vmap(design):
    rng = np.random.default_rng(1)
    ys = jnp.asarray(design @ [1.0, 2.0, 3.0] + rng.normal(size=(3, 120)))
    Xs = jnp.broadcast_to(jnp.asarray(design), (3, *design.shape))
    batch = jax.vmap(lambda X, y: mj.fit(X, y, F.Gaussian()))(Xs, ys)
    ols = jax.vmap(mj.ols)(Xs, ys)
    for i in range(3):
        ref = np.linalg.lstsq(design, np.asarray(ys[i]), rcond=None)[0]
        np.testing.assert_allclose(batch.params[i], ref, rtol=1e-10)
        np.testing.assert_allclose(ols.params[i], ref, rtol=1e-10)
    assert batch.reason == ["converged"] * 3


# 2. failure under jit/vmap is data ----------------------------------------------
def _bad_cases(X, y):
    """A good case and five bad ones, all (n, 4): one vmapped call per family."""
    Xg = np.column_stack([X, np.random.default_rng(10).normal(size=len(y))])
    w = np.ones_like(y)
    nan_X = Xg.copy()
    nan_X[7, 2] = np.nan
    cases = {
        "good": (Xg, y, w),
        "duplicated column": (np.column_stack([X, X[:, 1]]), y, w),
        "zero column": (np.column_stack([X, 0 * X[:, 1]]), y, w),
        "nan in X": (nan_X, y, w),
        "inf in y": (Xg, np.where(np.arange(y.size) == 3, np.inf, y), w),
        "zero weights": (Xg, y, 0 * w),
    }
    names = list(cases)
    stack = [jnp.asarray(np.stack([cases[k][i] for k in names])) for i in range(3)]
    return names, stack


FAMS = {
    "Gaussian": (F.Gaussian(), lambda r, mu: mu + r.normal(size=mu.shape)),
    "Bernoulli": (F.Bernoulli(), lambda r, mu: (r.random(mu.shape) < 0.5) * 1.0),
    "Poisson": (F.Poisson(), lambda r, mu: r.poisson(2.0, mu.shape) * 1.0),
    "Gamma": (F.Gamma(), lambda r, mu: r.gamma(2.0, size=mu.shape)),
    "StudentT": (F.StudentT(), lambda r, mu: mu + r.standard_t(4, size=mu.shape)),
    "NegativeBinomial": (
        F.NegativeBinomial(),
        lambda r, mu: r.negative_binomial(2, 0.4, mu.shape) * 1.0,
    ),
}


@pytest.mark.parametrize("fam_name", sorted(FAMS))
def test_bad_input_under_vmap_is_not_converged(design, fam_name):
    fam, draw = FAMS[fam_name]
    y = draw(np.random.default_rng(2), design[:, 1])
    names, (Xs, ys, ws) = _bad_cases(design, y)
    batch = _quiet(jax.vmap(lambda X, y, w: mj.fit(X, y, fam, weights=w)), Xs, ys, ws)
    good = _quiet(mj.fit, np.asarray(Xs[0]), np.asarray(ys[0]), fam)
    conv = dict(zip(names, np.asarray(batch.converged).tolist(), strict=True))
    assert conv.pop("good") == bool(good.converged), batch.reason
    assert not any(conv.values()), dict(zip(names, batch.reason, strict=True))
    if bool(good.converged):  # the good member is unchanged by its neighbours
        np.testing.assert_allclose(batch.params[0], good.params, rtol=1e-8, atol=1e-10)


def test_vmap_batch_mixing_good_and_bad_members(design):
    rng = np.random.default_rng(3)
    y = (rng.random(120) < 0.5) * 1.0
    good = mj.fit(design, y, F.Bernoulli())
    Xbad = np.column_stack([design[:, :2], design[:, 1]])  # duplicated column
    Xs = jnp.asarray(np.stack([design, Xbad, design]))
    ys = jnp.asarray(np.stack([y, y, np.where(np.arange(120) == 0, 3.0, y)]))
    batch = jax.vmap(lambda X, y: mj.fit(X, y, F.Bernoulli()))(Xs, ys)
    np.testing.assert_array_equal(np.asarray(batch.converged), [True, False, False])
    assert int(batch.status[2]) == S.INVALID_INPUT
    np.testing.assert_allclose(batch.params[0], good.params, rtol=1e-10)
    np.testing.assert_allclose(batch.stderr[0], good.stderr, rtol=1e-10)


# 3. rank deficiency at any size ------------------------------------------------------
def test_rank_deficient_large_design_is_an_error():
    rng = np.random.default_rng(4)
    n, p = 3000, 260  # n p^2 > 2e8: the up-front host check is skipped
    X = rng.normal(size=(n, p))
    X[:, -1] = X[:, 0]
    y = (rng.random(n) < 0.5) * 1.0
    with pytest.raises(ValueError, match="rank-deficient.*x0.*x259"):
        mj.fit(X, y, F.Bernoulli())


# 4. NegativeBinomial at no overdispersion ---------------------------------------------
@pytest.mark.parametrize("alpha", [1e-16, 1e-10, 1e-6, 0.009, 0.011, 0.5])
def test_negative_binomial_log_prob_accurate_as_alpha_goes_to_zero(alpha):
    mpmath.mp.dps = 50
    fam = F.NegativeBinomial()
    for y, eta in [(0.0, 0.3), (3.0, 1.2), (50.0, 3.9), (2.0, -30.0)]:
        r, mu = 1 / mpmath.mpf(alpha), mpmath.e ** mpmath.mpf(eta)
        ref = (
            mpmath.loggamma(y + r)
            - mpmath.loggamma(r)
            - mpmath.loggamma(y + 1)
            + r * mpmath.log(r / (r + mu))
            + y * mpmath.log(mu / (r + mu))
        )
        got = float(fam.log_prob(jnp.array(y), jnp.array(eta), alpha=jnp.array(alpha)))
        scale = max(1.0, abs(float(ref)), float(mpmath.loggamma(y + 1)))
        assert abs(got - float(ref)) <= 64 * np.finfo(float).eps * scale, (y, eta)


def test_negative_binomial_on_poisson_data_reports_the_boundary(design):
    outcomes = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        y = rng.poisson(np.exp(design @ [0.5, 0.2, -0.1])) * 1.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = mj.fit(design, y, F.NegativeBinomial())
        assert float(res.loglik) < 0  # a count model's log-likelihood
        pois = mj.fit(design, y, F.Poisson())
        assert float(res.loglik) >= float(pois.loglik) - 1e-6  # NB nests Poisson
        if bool(res.converged):
            outcomes.append("interior")
            assert float(res.extra["alpha"]) > 1e-8
        else:
            outcomes.append("boundary")
            assert int(res.status) == S.BOUND
            assert any(
                "alpha" in str(w.message) and "Poisson" in str(w.message)
                for w in caught
            )
            np.testing.assert_allclose(res.params, pois.params, atol=1e-5)
    assert "boundary" in outcomes  # about half of Poisson samples: alpha-hat = 0


def test_negative_binomial_weighted_replicated_and_bucketed_agree(design):
    rng = np.random.default_rng(7)
    y = rng.negative_binomial(3, 0.5, 120) * 1.0
    w = rng.integers(1, 4, 120) * 1.0
    weighted = mj.fit(design, y, F.NegativeBinomial(), weights=w)
    rep = np.repeat(np.arange(120), w.astype(int))
    replicated = mj.fit(design[rep], y[rep], F.NegativeBinomial())
    bucketed = mj.fit(design, y, F.NegativeBinomial(), weights=w, buckets=True)
    for other in (replicated, bucketed):
        np.testing.assert_allclose(other.params, weighted.params, rtol=1e-8)
        np.testing.assert_allclose(
            other.extra["alpha"], weighted.extra["alpha"], rtol=1e-7
        )
        np.testing.assert_allclose(other.loglik, weighted.loglik, rtol=1e-10)


# 5. boundaries are not convergence -------------------------------------------------------
def test_categorical_empty_class(design):
    y = np.random.default_rng(5).integers(0, 2, 120) * 1.0  # class 2 never occurs
    with pytest.warns(mj.ConvergenceWarning, match=r"class\(es\) \[2\]"):
        res = mj.fit(design, y, F.Categorical(3))
    assert int(res.status) == S.EMPTY_CLASS
    traced = jax.jit(lambda X, y: mj.fit(X, y, F.Categorical(3)))(design, y)
    assert int(traced.status) == S.EMPTY_CLASS


def test_student_t_exact_fit_and_gamma_constant_y(design):
    y = design @ [1.0, 2.0, 3.0]
    y[:4] += 1.0
    with pytest.warns(mj.ConvergenceWarning, match="scale -> 0"):
        res = mj.fit(design, y, F.StudentT())
    assert int(res.status) == S.BOUND and not bool(res.converged)
    with pytest.warns(mj.ConvergenceWarning, match="shape -> inf"):
        res = mj.fit(design, np.full(120, 3.0), F.Gamma())
    assert int(res.status) == S.BOUND
    assert float(res.extra["shape"]) <= 1e10 * (1 + 1e-12)  # exp(log(cap))


def test_gaussian_scale_free_in_y(design):
    # squared residuals of y ~ 1e155 overflow and of y ~ 1e-160 underflow:
    # the fit must not see either (it solves for y scaled by a power of two)
    rng = np.random.default_rng(6)
    e = rng.normal(size=120)
    base = mj.fit(design, design @ [1.0, 2.0, 3.0] + e, F.Gaussian())
    for c in (1e155, 1e-160):
        res = mj.fit(design, c * (design @ [1.0, 2.0, 3.0] + e), F.Gaussian())
        assert bool(res.converged), res.reason
        np.testing.assert_allclose(res.params / c, base.params, rtol=1e-13)
        np.testing.assert_allclose(res.stderr / c, base.stderr, rtol=1e-13)
        n = design.shape[0]
        np.testing.assert_allclose(res.loglik, base.loglik - n * np.log(c), rtol=1e-12)


def test_student_t_lbfgs_respects_the_df_bound(design):
    y = design @ [1.0, 2.0, 3.0] + np.random.default_rng(8).normal(size=120)
    res = _quiet(mj.fit, design, y, F.StudentT(), solver="lbfgs", max_iter=400)
    assert float(res.extra["df"]) <= mj.STUDENT_T_DF_MAX * (1 + 1e-12)
    if float(res.extra["df"]) >= mj.STUDENT_T_DF_MAX * (1 - 1e-9):
        assert int(res.status) == S.BOUND


# 6. fit_likelihood: only maxima are maxima -------------------------------------------------
@pytest.mark.parametrize(
    "loglik, start",
    [
        (lambda a: a**2 - a**4, 0.0),  # a local minimum of the log-likelihood
        (lambda th: th[0] ** 2 - th[1] ** 2, [0.0, 0.0]),  # a saddle
        (lambda a: a, 0.0),  # unbounded
    ],
)
def test_fit_likelihood_non_maxima_are_reported(loglik, start):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = mj.fit_likelihood(loglik, jnp.asarray(start))
    assert not bool(res.converged) and int(res.status) != S.CONVERGED
    batch = jax.vmap(lambda s: mj.fit_likelihood(loglik, s))(jnp.asarray([start] * 2))
    assert not np.any(np.asarray(batch.converged))


def test_fit_likelihood_true_maximum_still_converges():
    res = mj.fit_likelihood(lambda a: -((a - 1.5) ** 2) - a**4 / 10, jnp.asarray(0.0))
    assert bool(res.converged) and np.isfinite(float(res.stderr))


# 7. pandas alignment ------------------------------------------------------------------------
def test_pandas_series_is_aligned_on_the_index(design):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(9)
    X = pd.DataFrame(design, columns=["const", "a", "b"], index=np.arange(120) * 3)
    y = pd.Series(design @ [1.0, 2.0, 3.0] + rng.normal(size=120), index=X.index)
    ref = mj.fit(X, y, F.Gaussian())
    perm = rng.permutation(120)
    res = mj.fit(X, y.iloc[perm], F.Gaussian(), weights=pd.Series(1.0, X.index[perm]))
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-12)
    y_other = y.copy()
    y_other.index = y_other.index + 1
    with pytest.raises(ValueError, match="index does not match X's index"):
        mj.fit(X, y_other, F.Gaussian())


@pytest.mark.parametrize("expo", [-200, 160])
def test_extreme_column_scales_are_fitted_exactly(expo):
    # full rank after equilibration: a column times 1e-200 or 1e160 (its squares
    # leave float64) is fitted after an exact power-of-two rescaling; the
    # answer is statsmodels' fit of the unscaled design with that coefficient
    # (and its standard error) divided by the factor
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(7)
    X = mj.add_constant(rng.normal(size=(80, 2)))
    y = (rng.uniform(size=80) < 1 / (1 + np.exp(-X @ [0.3, 1.0, -1.0]))).astype(float)
    ref = sm.Logit(y, X).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
    Xs = X.copy()
    Xs[:, 2] *= 10.0**expo
    res = mj.fit(Xs, y, mj.families.Bernoulli())
    assert bool(res.converged), res.reason
    f = np.array([1.0, 1.0, 10.0**-expo])
    np.testing.assert_allclose(np.asarray(res.params), ref.params * f, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(res.stderr), ref.bse * f, rtol=1e-8)
    np.testing.assert_allclose(float(res.loglik), ref.llf, rtol=1e-12)
