"""Degenerate data: the MLE does not exist, or the solver cannot reach it.

The contract (API.md): never ``converged=True`` with diverging coefficients;
instead ``converged=False`` plus a warning that says why (separation, max_iter,
a StudentT df at its bound). Every fit here asserts the invariant
``converged => |params| < 1e3``. Shapes are the shared 20 x 3 of
``glm_problems``, so the newton/float64 programs are compiled once.
"""

from __future__ import annotations

import numpy as np
import pytest
from problems import BETA, roundoff

import mlejax as mj

F = mj.families
N = 20


def _sane(res):
    """The invariant: a converged fit has finite, non-absurd coefficients."""
    if bool(res.converged):
        p = np.asarray(res.params)
        assert np.isfinite(p).all() and np.abs(p).max() < 1e3, p
    return res


@pytest.fixture(scope="module")
def sep():
    """A 20 x 3 design whose column "dose" separates y = (dose > 0)."""
    pd = pytest.importorskip("pandas", reason="pandas: the compare extra")
    rng = np.random.default_rng(11)
    dose = np.linspace(-1.0, 1.0, N) + 0.01
    X = pd.DataFrame({"const": np.ones(N), "dose": dose, "noise": rng.normal(size=N)})
    return X, (dose > 0).astype(np.float64)


# ----------------------------------------------------------------------------
# separation
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_bernoulli_perfect_separation(sep, solver):
    X, y = sep
    with pytest.warns(mj.PerfectSeparationWarning, match=r"columns \['dose'\]"):
        res = _sane(mj.fit(X, y, F.Bernoulli(), solver=solver))
    assert not bool(res.converged)
    assert res.reason.startswith("separation")


def test_bernoulli_quasi_complete_separation(sep):
    """Two rows tie at dose = 0 with different outcomes: quasi-complete."""
    X, y = sep
    X = X.copy()
    y = y.copy()
    X.loc[9, "dose"] = 0.0
    X.loc[10, "dose"] = 0.0
    y[9], y[10] = 1.0, 0.0
    with pytest.warns(mj.PerfectSeparationWarning, match=r"columns \['dose'\]"):
        res = _sane(mj.fit(X, y, F.Bernoulli()))
    assert not bool(res.converged)


def test_binomial_separation(sep):
    X, y = sep
    trials = np.full(N, 5.0)
    with pytest.warns(
        mj.PerfectSeparationWarning, match=r"Binomial: .*columns \['dose'\]"
    ):
        res = _sane(mj.fit(X, 5.0 * y, F.Binomial(), trials=trials))
    assert not bool(res.converged)


def test_binomial_zeros_on_one_side_only_is_not_separation(sep):
    """All-zero rows below dose 0 but 0 < y < trials above: the MLE exists.

    Rows strictly inside 0..trials pin x_i.b = 0 for any diverging direction
    b, and the 10 interior rows span R^3, so there is none: a finite fit.
    """
    X, y = sep
    trials = np.full(N, 5.0)
    yy = np.where(y > 0, np.tile([2.0, 3.0], N // 2), 0.0)
    res = _sane(mj.fit(X, yy, F.Binomial(), trials=trials))
    assert bool(res.converged)


@pytest.mark.parametrize("which", ["all-classes", "one-class"])
def test_categorical_separation(sep, which):
    X, y = sep
    dose = X["dose"].to_numpy()
    if which == "all-classes":
        lab = np.where(dose < -0.3, 0.0, np.where(dose < 0.3, 1.0, 2.0))
    else:  # only class 2 is perfectly predicted (dose > 0.5); 0/1 are mixed
        lab = np.where(dose > 0.5, 2.0, np.tile([0.0, 1.0], N // 2))
    with pytest.warns(
        mj.PerfectSeparationWarning, match=r"Categorical: .*probability 1"
    ):
        res = _sane(mj.fit(X, lab, F.Categorical(3)))
    assert not bool(res.converged)


@pytest.mark.parametrize("family", [F.Poisson(), F.NegativeBinomial()], ids=str)
def test_all_zero_counts_intercept_diverges(glm_problems, family):
    X = glm_problems["Poisson"][1]
    with pytest.warns(mj.PerfectSeparationWarning, match=r"columns \['x0'\]"):
        res = _sane(mj.fit(X, np.zeros(N), family))
    assert not bool(res.converged)
    assert float(res.params[0]) < -10  # mean -> 0: the intercept runs to -inf


def test_poisson_zero_group_is_quasi_separation(glm_problems):
    """All counts zero in one dummy group: that dummy's coefficient diverges."""
    X = glm_problems["Poisson"][1].copy()
    X[:, 1] = (np.arange(N) < 5).astype(np.float64)
    y = np.tile([1.0, 2.0, 3.0, 4.0], N // 4)
    y[:5] = 0.0
    with pytest.warns(mj.PerfectSeparationWarning, match=r"columns \['x1'\]"):
        res = _sane(mj.fit(X, y, F.Poisson()))
    assert not bool(res.converged)


def test_poisson_zeros_without_separating_direction_converge(glm_problems):
    """Zeros on one side of a continuous x is NOT separation for counts."""
    X = glm_problems["Poisson"][1]
    y = np.where(X[:, 1] < 0, 0.0, np.tile([1.0, 2.0, 3.0, 4.0], N // 4))
    res = _sane(mj.fit(X, y, F.Poisson()))
    assert bool(res.converged)


def test_confident_but_genuine_fit_is_not_separation(glm_problems):
    """Strong signal with overlap: converged, no warning (filterwarnings=error)."""
    X = glm_problems["Bernoulli"][1]
    y = (X[:, 1] > 0).astype(np.float64)
    y[np.argmin(np.abs(X[:, 1]))] = 1.0 - y[np.argmin(np.abs(X[:, 1]))]  # one overlap
    y[np.argmax(X[:, 1])] = 0.0
    res = _sane(mj.fit(X, y, F.Bernoulli()))
    assert bool(res.converged)


# ----------------------------------------------------------------------------
# exact fits
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["constant", "exact-linear"])
def test_gaussian_exact_fit(glm_problems, kind):
    X = glm_problems["Gaussian"][1]
    beta = (
        np.array([3.0, 0.0, 0.0]) if kind == "constant" else np.array([1.0, 2.0, -0.5])
    )
    y = X @ beta
    res = _sane(mj.fit(X, y, F.Gaussian()))
    # "exact" up to the rounding of y = X @ beta and of the solve
    np.testing.assert_allclose(res.params, beta, rtol=0, atol=roundoff(N, 3.0))
    assert float(res.extra["scale"]) == 0.0
    np.testing.assert_array_equal(np.asarray(res.stderr), 0.0)
    assert float(res.loglik) == np.inf


def test_gaussian_constant_y_coefficients_exact(glm_problems):
    """The coefficients of an exact fit are exact (the part that works today)."""
    X = glm_problems["Gaussian"][1]
    res = _sane(mj.fit(X, np.full(N, 3.0), F.Gaussian()))
    np.testing.assert_allclose(
        res.params, [3.0, 0.0, 0.0], rtol=0, atol=roundoff(N, 3.0)
    )
    assert float(res.extra["scale"]) < 1e-12 and np.abs(res.stderr).max() < 1e-12


def test_laplace_constant_y_exact_fit(glm_problems):
    X = glm_problems["Laplace"][1]
    res = _sane(mj.fit(X, np.full(N, 3.0), F.Laplace()))
    np.testing.assert_allclose(res.params, [3.0, 0.0, 0.0], rtol=0, atol=1e-12)
    assert float(res.extra["scale"]) == 0.0 and float(res.loglik) == np.inf


# ----------------------------------------------------------------------------
# non-convergence
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_max_iter_one_is_flagged_and_keeps_last_iterate(glm_problems, solver):
    fam, X, y, _ = glm_problems["Poisson"]
    full = _sane(mj.fit(X, y, fam, solver=solver))
    with pytest.warns(
        mj.ConvergenceWarning, match=r"did not converge .* in 1 iterations"
    ):
        res = _sane(mj.fit(X, y, fam, solver=solver, max_iter=1))
    assert not bool(res.converged) and int(res.n_iter) == 1
    assert res.reason == "max_iter reached"
    # the returned params are the last iterate: loglik is evaluated at them ...
    ll = float(np.sum(fam.log_prob(y, X @ np.asarray(res.params))))
    np.testing.assert_allclose(float(res.loglik), ll, rtol=1e-12)
    # ... which is a real step, not the start and not the optimum
    assert float(res.loglik) < float(full.loglik)
    assert not np.allclose(res.params, full.params, rtol=1e-6)


def test_studentt_df_runs_to_bound_on_light_tailed_noise(glm_problems):
    """Noise lighter-tailed than Gaussian: the df MLE is infinite."""
    fam, X, _, _ = glm_problems["StudentT"]
    e = np.random.default_rng(5).permutation(np.linspace(-1.0, 1.0, N))
    y = X @ BETA + e
    with pytest.warns(mj.ConvergenceWarning, match=r"df reached its bound .*Gaussian"):
        res = _sane(mj.fit(X, y, fam))
    assert not bool(res.converged)
    assert float(res.extra["df"]) == pytest.approx(mj.STUDENT_T_DF_MAX)
    # the location part is still the sensible (near least-squares) answer
    np.testing.assert_allclose(res.params, mj.ols(X, y).params, atol=0.2)


def test_studentt_df_bound_on_large_gaussian_sample():
    """Huge n of exactly Gaussian-shaped residuals: df runs to the bound."""
    from scipy.stats import norm

    n = 4000
    rng = np.random.default_rng(9)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    e = rng.permutation(norm.ppf((np.arange(n) + 0.5) / n))
    with pytest.warns(
        mj.ConvergenceWarning, match=r"fit mj.families.Gaussian\(\) instead"
    ):
        res = _sane(mj.fit(X, X @ np.array([1.0, 0.5]) + e, F.StudentT()))
    assert not bool(res.converged) and int(res.status) == mj.Status.BOUND
