"""Bad input is a loud, specific error before anything compiles.

Every case asserts the exception type *and* that the message names the
offending argument (and, where there is one, the bad value), so a user can fix
the call without reading the source. Under ``jax.jit`` with traced data the
value checks cannot run (the values do not exist yet): there failure is data,
``converged=False`` or a non-finite ``loglik``, never an exception.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import mlejax as mj

F = mj.families
N = 20


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, 2))])
    return {
        "X": X,
        "yb": np.tile([0.0, 1.0], N // 2),
        "yc": rng.poisson(2.0, N).astype(np.float64),
        "yg": rng.normal(size=N),
        "ycat": np.tile([0.0, 1.0, 2.0, 1.0], N // 4),
        "trials": np.full(N, 9.0),
    }


def _at(a, i, v):
    a = np.array(a, dtype=np.float64, copy=True)
    a.flat[i] = v
    return a


# (id, family, kwargs builder, exception, match). The builder takes the data dict
# and returns fit's (X, y, keywords).
CASES = [
    # --- non-finite values: every array argument, each named -----------------
    (
        "nan-X",
        F.Gaussian(),
        lambda d: (_at(d["X"], 10, np.nan), d["yg"], {}),
        ValueError,
        r"^X has a non-finite value \(nan\)",
    ),
    (
        "inf-X",
        F.Poisson(),
        lambda d: (_at(d["X"], 7, -np.inf), d["yc"], {}),
        ValueError,
        r"^X has a non-finite value \(-inf\)",
    ),
    (
        "nan-y-gaussian",
        F.Gaussian(),
        lambda d: (d["X"], _at(d["yg"], 2, np.nan), {}),
        ValueError,
        r"y has a non-finite value \(nan\) at index 2",
    ),
    (
        "inf-y-laplace",
        F.Laplace(),
        lambda d: (d["X"], _at(d["yg"], 3, np.inf), {}),
        ValueError,
        r"y has a non-finite value \(inf\) at index 3",
    ),
    (
        "nan-y-poisson",
        F.Poisson(),
        lambda d: (d["X"], _at(d["yc"], 4, np.nan), {}),
        ValueError,
        r"Poisson: y has a non-finite value",
    ),
    (
        "inf-y-studentt",
        F.StudentT(),
        lambda d: (d["X"], _at(d["yg"], 0, np.inf), {}),
        ValueError,
        r"StudentT: y has a non-finite value",
    ),
    (
        "nan-weights",
        F.Bernoulli(),
        lambda d: (d["X"], d["yb"], {"weights": _at(np.ones(N), 1, np.nan)}),
        ValueError,
        r"^weights has a non-finite value \(nan\) at index 1",
    ),
    (
        "inf-offset",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"offset": _at(np.zeros(N), 5, np.inf)}),
        ValueError,
        r"^offset has a non-finite value \(inf\) at index 5",
    ),
    (
        "nan-trials",
        F.Binomial(),
        lambda d: (d["X"], d["yc"], {"trials": _at(d["trials"], 6, np.nan)}),
        ValueError,
        r"trials has a non-finite value",
    ),
    # --- shapes -------------------------------------------------------------
    (
        "len-y",
        F.Bernoulli(),
        lambda d: (d["X"], d["yb"][:-1], {}),
        ValueError,
        r"mismatched numbers of observations: X has 20, y has 19",
    ),
    (
        "len-weights",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"weights": np.ones(N - 1)}),
        ValueError,
        r"weights has 19",
    ),
    (
        "len-offset",
        F.Gamma(),
        lambda d: (d["X"], d["yc"] + 1, {"offset": np.zeros(N + 1)}),
        ValueError,
        r"offset has 21",
    ),
    (
        "len-trials",
        F.Binomial(),
        lambda d: (d["X"], d["yc"], {"trials": d["trials"][:-2]}),
        ValueError,
        r"trials has 18",
    ),
    (
        "X-1d",
        F.Gaussian(),
        lambda d: (d["X"][:, 1], d["yg"], {}),
        ValueError,
        r"^X must be 2-D \(n, p\); got shape \(20,\)",
    ),
    (
        "X-3d",
        F.Gaussian(),
        lambda d: (d["X"][None], d["yg"], {}),
        ValueError,
        r"^X must be 2-D",
    ),
    (
        "y-2d",
        F.Gaussian(),
        lambda d: (d["X"], d["yg"][:, None], {}),
        ValueError,
        r"^y must be 1-D \(n,\); got shape \(20, 1\)",
    ),
    (
        "weights-2d",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"weights": np.ones((N, 1))}),
        ValueError,
        r"^weights must be 1-D",
    ),
    (
        "X-no-columns",
        F.Poisson(),
        lambda d: (d["X"][:, :0], d["yc"], {}),
        ValueError,
        r"^X has no columns",
    ),
    # --- y outside the family's support --------------------------------------
    (
        "bernoulli-y2",
        F.Bernoulli(),
        lambda d: (d["X"], _at(d["yb"], 4, 2.0), {}),
        ValueError,
        r"Bernoulli: y has value 2\.0 at index 4; expected 0 or 1",
    ),
    (
        "bernoulli-y-half",
        F.Bernoulli(),
        lambda d: (d["X"], _at(d["yb"], 0, 0.5), {}),
        ValueError,
        r"Bernoulli: y has value 0\.5",
    ),
    (
        "poisson-negative",
        F.Poisson(),
        lambda d: (d["X"], _at(d["yc"], 4, -1.0), {}),
        ValueError,
        r"Poisson: y has value -1\.0 at index 4; expected a non-negative integer",
    ),
    (
        "poisson-fraction",
        F.Poisson(),
        lambda d: (d["X"], _at(d["yc"], 8, 2.5), {}),
        ValueError,
        r"Poisson: y has value 2\.5 at index 8",
    ),
    (
        "gamma-zero",
        F.Gamma(),
        lambda d: (d["X"], _at(d["yc"] + 1, 4, 0.0), {}),
        ValueError,
        r"Gamma: y has value 0\.0 at index 4; expected a strictly positive",
    ),
    (
        "gamma-negative",
        F.Gamma(),
        lambda d: (d["X"], _at(d["yc"] + 1, 1, -2.0), {}),
        ValueError,
        r"Gamma: y has value -2\.0",
    ),
    (
        "categorical-label-K",
        F.Categorical(3),
        lambda d: (d["X"], _at(d["ycat"], 4, 3.0), {}),
        ValueError,
        r"Categorical: y has value 3\.0 at index 4; "
        r"expected an integer class label in 0\.\.2",
    ),
    (
        "categorical-label-negative",
        F.Categorical(3),
        lambda d: (d["X"], _at(d["ycat"], 2, -1.0), {}),
        ValueError,
        r"Categorical: y has value -1\.0",
    ),
    (
        "negbin-fraction",
        F.NegativeBinomial(),
        lambda d: (d["X"], _at(d["yc"], 4, 1.5), {}),
        ValueError,
        r"NegativeBinomial: y has value 1\.5 at index 4",
    ),
    (
        "binomial-y-above-trials",
        F.Binomial(),
        lambda d: (d["X"], _at(d["yc"], 3, 10.0), {"trials": d["trials"]}),
        ValueError,
        r"Binomial: y has value 10\.0 at index 3; expected an integer in 0\.\.trials",
    ),
    (
        "binomial-missing-trials",
        F.Binomial(),
        lambda d: (d["X"], d["yc"], {}),
        ValueError,
        r"Binomial: trials= is required",
    ),
    (
        "binomial-negative-trials",
        F.Binomial(),
        lambda d: (d["X"], 0 * d["yc"], {"trials": -d["trials"]}),
        ValueError,
        r"Binomial: trials must be non-negative integers",
    ),
    (
        "trials-for-poisson",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"trials": d["trials"]}),
        ValueError,
        r"trials= is only for Binomial, not Poisson",
    ),
    # --- weights, size, identification ----------------------------------------
    (
        "negative-weights",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"weights": _at(np.ones(N), 3, -1.0)}),
        ValueError,
        r"weights must be non-negative frequency weights; weights\[3\] = -1\.0",
    ),
    (
        "empty",
        F.Poisson(),
        lambda d: (d["X"][:0], d["yc"][:0], {}),
        ValueError,
        r"dataset is empty \(n = 0 rows\)",
    ),
    (
        "p-greater-than-n",
        F.Gaussian(),
        lambda d: (d["X"][:2], d["yg"][:2], {}),
        ValueError,
        r"more parameters \(4\) than observations with positive weight \(2\)",
    ),
    (
        "categorical-params-exceed-n",
        F.Categorical(3),
        lambda d: (d["X"][:5], d["ycat"][:5], {}),
        ValueError,
        r"more parameters \(6\) than observations",
    ),
    (
        "all-weights-zero",
        F.Bernoulli(),
        lambda d: (d["X"], d["yb"], {"weights": np.zeros(N)}),
        ValueError,
        r"observations with positive weight \(0\)",
    ),
    # --- argument types -------------------------------------------------------
    (
        "unknown-solver",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"solver": "bfgs"}),
        ValueError,
        r"solver must be 'newton', 'lbfgs' or an optax.GradientTransformation; "
        r"got 'bfgs'",
    ),
    (
        "solver-wrong-type",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"solver": 3}),
        TypeError,
        r"solver must be .* got int",
    ),
    (
        "family-string",
        "poisson",
        lambda d: (d["X"], d["yc"], {}),
        TypeError,
        r"family must be an mlejax family",
    ),
    (
        "X-strings",
        F.Poisson(),
        lambda d: (d["X"].astype(str), d["yc"], {}),
        TypeError,
        r"^X must be a real numeric array",
    ),
    (
        "X-complex",
        F.Gaussian(),
        lambda d: (d["X"] + 0j, d["yg"], {}),
        TypeError,
        r"^X must be a real numeric array; got dtype complex128",
    ),
    (
        "y-strings",
        F.Bernoulli(),
        lambda d: (d["X"], d["yb"].astype(int).astype(str), {}),
        TypeError,
        r"^y must be a real numeric array",
    ),
    (
        "weights-complex",
        F.Poisson(),
        lambda d: (d["X"], d["yc"], {"weights": np.ones(N) + 0j}),
        TypeError,
        r"^weights must be a real numeric array",
    ),
]


@pytest.mark.parametrize(
    "family,build,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_named_error(data, family, build, exc, match):
    X, y, kw = build(data)
    with pytest.raises(exc, match=match):
        mj.fit(X, y, family, **kw)


def test_at_least_thirty_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


# ----------------------------------------------------------------------------
# rank: scale-free, and the collinear columns are named
# ----------------------------------------------------------------------------
RANK_CASES = [
    ("duplicate", lambda X: np.column_stack([X, X[:, 1]]), ["x1", "x3"]),
    (
        "sum-of-two",
        lambda X: np.column_stack([X, X[:, 1] + X[:, 2]]),
        ["x1", "x2", "x3"],
    ),
    ("zero-column", lambda X: np.column_stack([X, np.zeros(N)]), ["x3"]),
    # a tiny multiple of a column is still exactly collinear (scale-free judgement)
    ("scaled-duplicate", lambda X: np.column_stack([X, 1e-9 * X[:, 2]]), ["x2", "x3"]),
]


@pytest.mark.parametrize("family", [F.Gaussian(), F.Poisson(), F.Laplace()], ids=str)
@pytest.mark.parametrize(
    "make,cols", [c[1:] for c in RANK_CASES], ids=[c[0] for c in RANK_CASES]
)
def test_rank_deficient_X_names_collinear_columns(data, family, make, cols):
    Xr = make(data["X"])
    y = data["yc"] if isinstance(family, F.Poisson) else data["yg"]
    with pytest.raises(ValueError, match=r"X is rank-deficient") as info:
        mj.fit(Xr, y, family)
    assert f"columns {cols!r} are collinear (of 4)" in str(info.value)


def test_rank_deficient_pandas_names_columns(data):
    pd = pytest.importorskip("pandas", reason="pandas: the compare extra")
    X = data["X"]
    df = pd.DataFrame(
        np.column_stack([X, X[:, 1] + X[:, 2]]),
        columns=["const", "age", "income", "total"],
    )
    for family, y in ((F.Poisson(), data["yc"]), (F.Gaussian(), data["yg"])):
        with pytest.raises(
            ValueError, match=r"\['age', 'income', 'total'\] are collinear"
        ):
            mj.fit(df, y, family)


def test_rank_ignores_zero_weight_rows_only_when_they_matter(data):
    """Collinearity among the positive-weight rows is what counts."""
    X = data["X"].copy()
    X[:, 2] = 0.0
    X[0, 2] = 1.0  # column 2 lives only on row 0 ...
    w = np.ones(N)
    w[0] = 0.0  # ... which carries no weight: the effective design is rank 2
    with pytest.raises(ValueError, match=r"\['x2'\] are collinear"):
        mj.fit(X, data["yc"], F.Poisson(), weights=w)


@pytest.mark.parametrize(
    "family,yname",
    [(F.Gaussian(), "yg"), (F.Poisson(), "yc")],
    ids=["Gaussian", "Poisson"],
)
def test_badly_scaled_full_rank_design_is_accepted(data, family, yname):
    X, y = data["X"], data[yname]
    c = np.array([1.0, 1e8, 1e-8])
    ref = mj.fit(X, y, family)
    res = mj.fit(X * c, y, family)
    assert bool(res.converged) and bool(ref.converged)
    np.testing.assert_allclose(
        np.asarray(res.params) * c, ref.params, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(np.asarray(res.stderr) * c, ref.stderr, rtol=1e-8)
    np.testing.assert_allclose(res.loglik, ref.loglik, rtol=1e-12)


# ----------------------------------------------------------------------------
# under jit the values are not there: no exception, failure is data
# ----------------------------------------------------------------------------
def test_nan_under_jit_is_data_not_an_exception(data):
    """Documented behaviour: with traced data the host checks are skipped.

    A NaN in y inside the caller's ``jit`` does not raise (it cannot: the value
    is not known at trace time); the fit reports it as ``converged=False`` or a
    non-finite ``loglik``. Check data before jitting, or inspect ``converged``.
    """
    fam = F.Poisson()
    fit = jax.jit(lambda X, y: mj.fit(X, y, fam))
    y = _at(data["yc"], 2, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning: converged is traced
        res = fit(data["X"], y)
    assert (not bool(res.converged)) or (not np.isfinite(float(res.loglik)))
    # out-of-support y (Poisson y = -1) is not caught either; the host call is
    with pytest.raises(ValueError, match=r"Poisson: y has value -1\.0"):
        mj.fit(data["X"], _at(data["yc"], 2, -1.0), fam)
    # shape checks are static, so they still run under jit
    with pytest.raises(ValueError, match=r"^y must be 1-D"):
        fit(data["X"], data["yc"][:, None])


def test_one_bad_fit_does_not_sink_a_vmap_batch(data):
    fam = F.Poisson()
    Y = np.stack([data["yc"], _at(data["yc"], 0, np.nan), data["yc"][::-1].copy()])
    res = jax.vmap(lambda y: mj.fit(data["X"], y, fam))(Y)
    conv = np.asarray(res.converged)
    ll = np.asarray(res.loglik)
    assert conv[0] and conv[2] and np.isfinite(ll[[0, 2]]).all()
    assert (not conv[1]) or (not np.isfinite(ll[1]))
    np.testing.assert_allclose(
        res.params[0], mj.fit(data["X"], data["yc"], fam).params, rtol=1e-10
    )
