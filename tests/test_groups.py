"""``mj.fit_groups``: one fit per group, ragged sizes, one compile per bucket.

Outside references: statsmodels (Logit, GLM) on single groups. The per-group
``mj.fit`` comparison checks the padding (weight-0 rows) is exact, and the
compile count checks that every bucket shares one compiled fit.
"""

import numpy as np
import pytest

import mlejax as mj
from mlejax import groups as mj_groups
from mlejax.status import ConvergenceWarning, Status


def _ragged_logistic(seed=5):
    """29 groups of 20 or 30 rows, a separated group of 24, a group of 2 rows.

    Buckets of 24 (groups of 20 and 24 rows) and 32 rows: every group is
    padded, by different amounts within a bucket. Two sizes to compare with
    each group's own ``mj.fit`` keep the reference compilations to two.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.choice([20, 30], size=29).tolist() + [24, 2]
    labels = [f"s{i:02d}" for i in range(29)] + ["sep", "tiny"]
    g = np.repeat(labels, sizes)
    n = len(g)
    X = mj.add_constant(rng.normal(size=(n, 2)))
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ [0.3, 0.9, -0.6]))).astype(float)
    sep = g == "sep"
    y[sep] = (X[sep, 1] > 0).astype(float)  # x1 separates the group completely
    perm = rng.permutation(n)  # groups interleaved, as in a real data set
    return X[perm], y[perm], g[perm], labels


def test_groups_equal_own_fits_statsmodels_and_compile_once_per_bucket():
    sm = pytest.importorskip("statsmodels.api")
    pd = pytest.importorskip("pandas")
    X, y, g, labels = _ragged_logistic()
    fam = mj.families.Bernoulli()
    before = mj_groups.compiled_count()
    with pytest.warns(ConvergenceWarning, match="2 of 31 groups"):
        res = mj.fit_groups(X, y, fam, groups=g)
    assert sorted(res.buckets) == [24, 32] and sum(res.buckets.values()) == 30
    assert sorted(set(res.sizes.tolist())) == [2, 20, 24, 30]
    assert mj_groups.compiled_count() - before == len(res.buckets) == 2
    assert res.groups.tolist() == sorted(labels)
    assert res.params.shape == (31, 3)

    worst = 0.0
    for lab in labels[:29]:
        m = g == lab
        one = mj.fit(X[m], y[m], fam)  # the group's own fit, no padding
        r = res[lab]
        assert bool(r.converged) and float(r.nobs) == m.sum()
        for a, b in ((r.params, one.params), (r.stderr, one.stderr)):
            a, b = np.asarray(a), np.asarray(b)
            worst = max(worst, np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))
        assert abs(float(r.loglik) - float(one.loglik)) <= 1e-10 * abs(
            float(one.loglik)
        )
    assert worst <= 1e-10, worst

    # outside reference: statsmodels' Logit on one group of each bucket
    for size in (20, 30):
        lab = next(s for s in labels[:29] if (g == s).sum() == size)
        m = g == lab
        ref = sm.Logit(y[m], X[m]).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
        np.testing.assert_allclose(res[lab].params, ref.params, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res[lab].stderr, ref.bse, rtol=1e-8)
        np.testing.assert_allclose(float(res[lab].loglik), ref.llf, rtol=1e-12)

    # flagged groups, never an exception: separation named, too few rows
    reasons = dict(zip(res.groups.tolist(), res.reason, strict=True))
    assert not bool(res["sep"].converged)
    assert int(res["sep"].status) == Status.SEPARATION
    assert "separation" in reasons["sep"] and "x1" in reasons["sep"]
    assert not bool(res["tiny"].converged) and np.isnan(res["tiny"].params).all()
    assert "2 rows of positive weight for 3 parameters" in reasons["tiny"]

    tab = res.table()
    assert list(tab.columns) == [
        "group",
        "term",
        "estimate",
        "stderr",
        "converged",
        "reason",
    ]
    assert len(tab) == 31 * 3
    row = tab[(tab.group == "s03") & (tab.term == "x1")].iloc[0]
    assert row.estimate == float(res["s03"].params[1]) and row.converged
    assert not tab[tab.group == "sep"].converged.any()

    # pandas categorical labels, categories in their own order: same shapes,
    # so nothing is compiled again, and the same numbers
    order = ["tiny", "sep", *labels[:29]]
    codes = pd.Series(pd.Categorical(g, categories=order))
    before = mj_groups.compiled_count()
    with pytest.warns(ConvergenceWarning):
        again = mj.fit_groups(X, y, fam, groups=codes)
    assert mj_groups.compiled_count() == before
    assert again.groups.tolist() == order
    np.testing.assert_array_equal(again["s07"].params, res["s07"].params)


@pytest.mark.parametrize(
    "groups, match",
    [
        (np.zeros(7), r"groups must have shape \(8,\)"),
        (np.r_[np.zeros(7), np.nan], "missing label .* at row 7"),
        (np.array(["a"] * 7 + [None], dtype=object), "missing label .* at row 7"),
        (np.zeros((8, 2)), r"groups must have shape \(8,\)"),
        (None, "groups= is required"),
    ],
)
def test_bad_groups_name_the_problem(groups, match):
    X = mj.add_constant(np.arange(8.0))
    y = np.r_[0.0, 1, 0, 1, 1, 0, 1, 0]
    with pytest.raises(ValueError, match=match):
        mj.fit_groups(X, y, mj.families.Bernoulli(), groups=groups)


def test_bad_options_name_the_problem():
    X = mj.add_constant(np.arange(8.0))
    y = np.r_[0.0, 1, 0, 1, 1, 0, 1, 0]
    g = np.repeat([1, 2], 4)
    fam = mj.families.Bernoulli()
    with pytest.raises(ValueError, match="cluster= .* goes with cov_type='cluster'"):
        mj.fit_groups(X, y, fam, groups=g, cov_type="cluster")
    with pytest.raises(ValueError, match="per_doubling must be 1, 2, 4 or 8"):
        mj.fit_groups(X, y, fam, groups=g, per_doubling=3)
    with pytest.raises(ValueError, match="every group has fewer rows"):
        mj.fit_groups(X[:4], y[:4], fam, groups=np.arange(4))


@pytest.mark.slow
def test_poisson_weights_offset_hc1_and_gaussian_against_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    sizes = [40, 55, 61, 90, 120]
    g = np.repeat(np.arange(5) * 10, sizes)  # integer labels 0, 10, ..., 40
    n = len(g)
    X = mj.add_constant(rng.normal(size=(n, 2)))
    off = rng.normal(scale=0.3, size=n)
    w = rng.integers(1, 4, size=n).astype(float)
    y = rng.poisson(np.exp(X @ [0.2, 0.5, -0.3] + off)).astype(float)
    res = mj.fit_groups(
        X,
        y,
        mj.families.Poisson(),
        groups=g,
        weights=w,
        offset=off,
        cov_type="HC1",
        per_doubling=8,
    )
    assert res.groups.tolist() == [0, 10, 20, 30, 40]
    for lab in res.groups:
        m = g == lab
        ref = sm.GLM(
            y[m], X[m], family=sm.families.Poisson(), offset=off[m], freq_weights=w[m]
        ).fit(tol=1e-13, cov_type="HC1")
        np.testing.assert_allclose(res[lab].params, ref.params, rtol=1e-9, atol=1e-12)
        # statsmodels' HC1 with freq_weights uses n = number of rows; ours the
        # sum of the weights (replicated rows): compare HC0 scaled exactly
        hc0 = sm.GLM(
            y[m], X[m], family=sm.families.Poisson(), offset=off[m], freq_weights=w[m]
        ).fit(tol=1e-13, cov_type="HC0")
        k, nobs = 3, w[m].sum()
        np.testing.assert_allclose(
            res[lab].stderr, hc0.bse * np.sqrt(nobs / (nobs - k)), rtol=1e-7
        )

    yg = X @ [1.0, -2.0, 0.5] + rng.normal(size=n)
    resg = mj.fit_groups(X, yg, mj.families.Gaussian(), groups=g.astype(str))
    tab = resg.table()
    assert set(tab.term) == {"x0", "x1", "x2", "scale"}
    for lab in resg.groups:
        m = g.astype(str) == lab
        ref = sm.OLS(yg[m], X[m]).fit()
        np.testing.assert_allclose(resg[lab].params, ref.params, rtol=1e-11)
        np.testing.assert_allclose(resg[lab].stderr, ref.bse, rtol=1e-10)
