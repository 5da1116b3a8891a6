"""The Laplace fit is the exact weighted LAD optimum (mlejax.solvers.lad).

Every check is against an outside reference: the LAD linear program solved by
HiGHS (``scipy.optimize.linprog``), statsmodels' ``QuantReg(q=0.5)``, or the
same data with replicated / deleted rows. Shapes are few and reused (each
distinct shape is one more compile).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from problems import rel_norm as rel
from problems import roundoff

import mlejax as mj
from mlejax.solvers.lad import lad

F = mj.families
LAD_JIT = jax.jit(lad, static_argnames="max_pivots")


def lad_lp(X, y, w=None, offset=None):
    """min sum w_i (u_i + v_i) s.t. X b + u - v = y - offset, u, v >= 0 (HiGHS)."""
    n, p = X.shape
    w = np.ones(n) if w is None else np.asarray(w, np.float64)
    yo = y if offset is None else y - offset
    c = np.r_[np.zeros(p), w, w]
    A_eq = np.hstack([X, np.eye(n), -np.eye(n)])
    bounds = [(None, None)] * p + [(0, None)] * (2 * n)
    out = scipy.optimize.linprog(c, A_eq=A_eq, b_eq=yo, bounds=bounds, method="highs")
    assert out.status == 0, out.message
    b = out.x[:p]
    # HiGHS's vertex is exact only to its feasibility tolerance (1e-9 relative
    # with 1e6 outliers): re-solve it from the p rows it interpolates (numpy)
    act = np.flatnonzero(w > 0)
    S = act[np.argsort(np.abs(yo - X @ b)[act], kind="stable")[:p]]
    if np.linalg.matrix_rank(X[S]) == p:
        b_v = np.linalg.solve(X[S], yo[S])
        obj = lambda t: np.sum(w * np.abs(yo - X @ t))  # noqa: E731
        if rel(b_v, b) < 1e-6 and obj(b_v) <= obj(b):
            b = b_v
    return b, out.fun


def optimal_face_box(X, y, w, f_star):
    """Range of each coefficient over the set of LAD optima (2p more LPs)."""
    n, p = X.shape
    c0 = np.r_[np.zeros(p), w, w]
    A_eq = np.hstack([X, np.eye(n), -np.eye(n)])
    bounds = [(None, None)] * p + [(0, None)] * (2 * n)
    box = []
    for k in range(p):
        ends = []
        for sgn in (1.0, -1.0):
            c = np.zeros(p + 2 * n)
            c[k] = sgn
            out = scipy.optimize.linprog(
                c,
                A_ub=c0[None, :],
                b_ub=[f_star * (1 + 1e-12)],
                A_eq=A_eq,
                b_eq=y,
                bounds=bounds,
                method="highs",
            )
            assert out.status == 0, out.message
            ends.append(out.x[k])
        box.append(sorted(ends))
    return np.array(box)


def lad_objective(X, y, b, w=None, offset=None):
    w = np.ones(len(y)) if w is None else w
    yo = y if offset is None else y - offset
    return float(np.sum(w * np.abs(yo - X @ np.asarray(b, np.float64))))


def continuous(seed, n, p, noise="laplace"):
    rng = np.random.default_rng(seed)
    X = np.c_[np.ones(n), rng.normal(size=(n, p - 1))] if p > 1 else np.ones((n, 1))
    if p == 1:
        X = rng.uniform(0.5, 2.0, (n, 1))  # through the origin: a weighted median
    beta = rng.normal(size=p)
    y = X @ beta + (rng.laplace(size=n) if noise == "laplace" else rng.normal(size=n))
    return rng, X, y


def check_against_lp(res, X, y, w=None, offset=None, unique=True):
    assert bool(res.converged), res.reason
    b_lp, f_lp = lad_lp(X, y, w, offset)
    f = lad_objective(X, y, res.params, w, offset)
    assert abs(f - f_lp) <= 1e-12 * f_lp, (f, f_lp)
    if unique:
        assert rel(res.params, b_lp) < 1e-9
    nobs = len(y) if w is None else np.sum(w)
    assert rel(res.extra["scale"], f_lp / nobs) < 1e-12
    assert rel(res.loglik, -nobs * (np.log(2 * f_lp / nobs) + 1)) < 1e-12
    return f_lp


@pytest.mark.parametrize("n, p", [(20, 1), (51, 3), (2000, 8)])
def test_continuous_data_matches_linprog(n, p):
    for seed in range(4):
        _, X, y = continuous(seed, n, p)
        check_against_lp(mj.fit(X, y, F.Laplace()), X, y)


def test_heavy_outliers_and_offset_match_linprog():
    n, p = 51, 3
    for seed in range(3):
        rng, X, y = continuous(10 + seed, n, p, noise="normal")
        y[: n // 5] += 1e6 * rng.standard_cauchy(n // 5)  # 20% gross outliers
        res = mj.fit(X, y, F.Laplace())
        check_against_lp(res, X, y)
        off = rng.normal(size=n)
        check_against_lp(mj.fit(X, y, F.Laplace(), offset=off), X, y, offset=off)


def test_matches_statsmodels_quantreg_median():
    sm = pytest.importorskip("statsmodels.api", reason="statsmodels: compare extra")
    from statsmodels.tools.sm_exceptions import IterationLimitWarning

    n, p = 51, 3
    for seed in range(3):
        _, X, y = continuous(20 + seed, n, p)
        res = mj.fit(X, y, F.Laplace())
        with warnings.catch_warnings():  # QuantReg's IRLS may stop at its cap
            warnings.simplefilter("ignore", IterationLimitWarning)
            q = sm.QuantReg(y, X).fit(q=0.5, max_iter=5000, p_tol=1e-12)
        # statsmodels' QuantReg is IRLS: it approaches the vertex, never lands on it
        assert rel(res.params, q.params) < 1e-5
        assert lad_objective(X, y, res.params) <= lad_objective(X, y, q.params)


WEIGHTS = np.repeat([0.0, 1.0, 2.0, 3.0], 10)  # n = 40, sum 60: fixed shapes


def test_frequency_weights_equal_replicated_rows_and_linprog():
    n, p = 40, 3
    for seed in range(3):
        rng, X, y = continuous(30 + seed, n, p)
        w = rng.permutation(WEIGHTS)
        y[w == 0] += 1e3  # rows with weight 0 must not matter at all
        res = mj.fit(X, y, F.Laplace(), weights=w)
        check_against_lp(res, X, y, w)
        k = w.astype(int)
        rep = mj.fit(np.repeat(X, k, axis=0), np.repeat(y, k), F.Laplace())
        np.testing.assert_allclose(res.params, rep.params, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.loglik, rep.loglik, rtol=1e-12)
        np.testing.assert_allclose(res.extra["scale"], rep.extra["scale"], rtol=1e-12)


def test_zero_weight_rows_never_enter_the_basis():
    n, p = 40, 3
    rng, X, y = continuous(40, n, p)
    w = rng.permutation(WEIGHTS)
    y[w == 0] = 0.0  # zero residual rows would be the first picks if allowed
    X[w == 0] = 0.0
    X[w == 0, 0] = 1.0
    out = LAD_JIT(X, y, w)
    assert bool(out.certified)
    assert np.all(w[np.asarray(out.basis)] > 0)
    _, f_lp = lad_lp(X[w > 0], y[w > 0], w[w > 0])
    assert abs(float(out.objective) - f_lp) <= 1e-12 * f_lp


def dummies(seed, n=60):
    """Integer y, an intercept, 3 group dummies and an integer covariate."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)
    X = np.c_[np.ones(n), (g[:, None] == np.arange(1, 4)), rng.integers(0, 3, n)]
    y = rng.integers(0, 6, n).astype(np.float64)
    w = rng.integers(0, 3, n).astype(np.float64)
    return X.astype(np.float64), y, w


def test_integer_y_with_dummy_columns_degenerate_vertices():
    n_unique = 0
    for seed in range(6):
        X, y, w = dummies(100 + seed)
        res = mj.fit(X, y, F.Laplace(), weights=w)
        f_lp = check_against_lp(res, X, y, w, unique=False)
        # the optimum is often a face: params must lie in it, and equal
        # linprog's where the face is a single point
        box = optimal_face_box(X, y, w, f_lp)
        b = np.asarray(res.params)
        assert np.all(b >= box[:, 0] - 1e-9) and np.all(b <= box[:, 1] + 1e-9)
        if np.all(box[:, 1] - box[:, 0] < 1e-9):
            n_unique += 1
            assert rel(b, box.mean(axis=1)) < 1e-9
    assert n_unique >= 1


def test_trace_and_iteration_count():
    n, p = 51, 3
    _, X, y = continuous(50, n, p)
    res = mj.fit(X, y, F.Laplace())
    assert res.reason == "converged" and int(res.status) == 0
    tr = np.asarray(res.trace)
    assert tr.shape == (101,)
    k = int(np.sum(np.isfinite(tr))) - 1  # IRLS steps, then the final value
    assert 1 <= k <= 6 and int(res.n_iter) >= k - 1
    np.testing.assert_allclose(tr[k], -float(res.loglik) / n, rtol=roundoff(n))
    assert np.all(np.diff(tr[:k]) <= 1e-13)  # IRLS keeps only improvements
    assert tr[k] <= tr[k - 1] * (1 + 1e-13)


def test_pivot_cap_returns_best_vertex_uncertified():
    n, p = 40, 3
    _, X, y = continuous(60, n, p)
    w = np.ones(n)
    full = LAD_JIT(X, y, w, np.zeros(p))
    assert bool(full.certified) and int(full.n_pivots) >= 2
    capped = LAD_JIT(X, y, w, np.zeros(p), max_pivots=1)
    assert not bool(capped.certified) and int(capped.n_pivots) == 1
    f = lad_objective(X, y, capped.beta)
    np.testing.assert_allclose(float(capped.objective), f, rtol=roundoff(n))
    _, f_lp = lad_lp(X, y)
    assert f > f_lp and float(full.objective) <= f_lp * (1 + 1e-12)


def test_vmap_equals_loop_and_jit_works():
    B, n, p = 50, 30, 3
    rng = np.random.default_rng(70)
    Xs = np.concatenate([np.ones((B, n, 1)), rng.normal(size=(B, n, p - 1))], axis=2)
    ys = Xs @ np.array([1.0, 2.0, -1.0]) + rng.laplace(size=(B, n))
    batched = jax.jit(jax.vmap(lambda X, y: mj.fit(X, y, F.Laplace())))(Xs, ys)
    assert batched.params.shape == (B, p)
    assert np.all(np.asarray(batched.converged))
    for i in range(B):
        single = mj.fit(Xs[i], ys[i], F.Laplace())
        # the same vertex, solved by batched and unbatched kernels: equal up to
        # cond(X_basis) * p * eps; a neighbouring vertex is off by > 1e-3
        np.testing.assert_allclose(batched.params[i], single.params, rtol=1e-10)
        np.testing.assert_allclose(batched.loglik[i], single.loglik, rtol=roundoff(n))
        assert int(batched.n_iter[i]) == int(single.n_iter)
    for i in (0, 17, 49):  # and the LP agrees
        check_against_lp(jax.tree.map(lambda a, i=i: a[i], batched), Xs[i], ys[i])


def test_float32_reaches_the_lp_optimum():
    n, p = 51, 3
    for seed in range(3):
        _, X, y = continuous(80 + seed, n, p)
        X32, y32 = X.astype(np.float32), y.astype(np.float32)
        res = mj.fit(X32, y32, F.Laplace(), tol=1e-5)
        assert bool(res.converged) and res.params.dtype == np.float32
        X64, y64 = X32.astype(np.float64), y32.astype(np.float64)
        b_lp, f_lp = lad_lp(X64, y64)
        assert lad_objective(X64, y64, res.params) <= f_lp * (1 + 1e-5)
        assert rel(res.params, b_lp) < 1e-4


def test_lad_solver_is_pure_under_jit_and_vmap():
    n, p = 40, 3
    rng = np.random.default_rng(90)
    X = jnp.asarray(np.c_[np.ones(n), rng.normal(size=(n, p - 1))])
    Y = jnp.asarray(rng.laplace(size=(4, n)))
    w = jnp.ones(n)
    out = jax.vmap(lambda y: LAD_JIT(X, y, w))(Y)
    for i in range(4):
        one = LAD_JIT(X, Y[i], w)
        np.testing.assert_array_equal(out.basis[i], one.basis)
        # the same basis: the same p x p solve, up to its condition number
        cond = np.linalg.cond(np.asarray(X)[np.asarray(one.basis)])
        np.testing.assert_allclose(out.beta[i], one.beta, rtol=roundoff(p, cond))
        _, f_lp = lad_lp(np.asarray(X), np.asarray(Y[i]))
        assert abs(float(one.objective) - f_lp) <= 1e-12 * f_lp
