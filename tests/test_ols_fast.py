"""The tall least-squares path (issue 7): Gram + Cholesky + refinement.

``linalg.lstsq_core`` takes the tall path when ``n >= TALL_MIN_ROWS`` and
``n >= TALL_MIN_RATIO * p`` (``method="auto"``, what ``mj.ols`` uses); these
tests call it with ``method="tall"`` on small problems. References are the
exact least-squares solutions of the (float) data, computed in rational
arithmetic, so accuracy is measured, not just agreement with another library.

Measured when this file was written (n = 10,000, p = 9, min LRE over the
coefficients against the exact solution; scipy = ``scipy.linalg.lstsq``):

    design              cond(X)  equilibrated  route                  tall  scipy
    normal columns         1.0       1.0       fast sweeps            15.8   13.8
    poly deg 8 on [0,1]    7e5       4e5       CholQR2 + Dot2 sweeps  16.0    9.7
    poly deg 8 on [1,2]    3e9       7e8       QR's R + Dot2 sweeps   15.0    7.0
"""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import mlejax as mj
from mlejax import linalg

N = 10_000  # > one block of rows for p = 8 (8192): the ragged last block is exercised
EPS = np.finfo(np.float64).eps


def _error_bound(X, y, b, eps=EPS) -> np.ndarray:
    """First-order componentwise bound on how rounding moves a least-squares solution.

    ``eps (|X^+| (|y| + |X||b|) + |(X'X)^{-1}| |X'| |r|)``: the change in ``b``
    when every element of ``X`` and ``y`` moves by a relative ``eps`` (Björck
    1991; Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
    sec. 20.1). A solver that is componentwise backward stable up to a small
    multiple of ``eps`` (refinement with residuals accurate to working
    precision) is within a small multiple of it, on any CPU, with or without
    FMA: unlike a fixed number of ulps, the bound grows with the cancellation
    the data forces (an intercept next to ``x**2`` in the thousands).
    """
    X, y, b = (np.asarray(a, np.float64) for a in (X, y, b))
    r = y - X @ b
    cov = np.linalg.inv(X.T @ X)
    term1 = np.abs(np.linalg.pinv(X)) @ (np.abs(y) + np.abs(X) @ np.abs(b))
    return eps * (term1 + np.abs(cov) @ (np.abs(X.T) @ np.abs(r)))


def _exact_lstsq(X, y) -> np.ndarray:
    """Least-squares solution of float data, exactly (integers and Fractions)."""

    def to_int(A):
        f, e = np.frexp(np.asarray(A, np.float64))
        M = (f * 2.0**53).astype(np.int64)
        e = e - 53
        emin = np.where(M != 0, e, 10**6).min(axis=0)
        emin = np.where(emin == 10**6, 0, emin)
        out = np.empty(A.shape, dtype=object)
        for j in range(A.shape[1]):
            sh = e[:, j] - emin[j]
            out[:, j] = [
                int(m) << int(s) if m else 0 for m, s in zip(M[:, j], sh, strict=True)
            ]
        return out, emin

    Xi, ex = to_int(X)
    yi, ey = to_int(np.asarray(y)[:, None])
    G, c = Xi.T.dot(Xi), Xi.T.dot(yi[:, 0])
    p = G.shape[0]
    A = [
        [Fraction(int(G[i, j])) for j in range(p)] + [Fraction(int(c[i]))]
        for i in range(p)
    ]
    for k in range(p):
        piv = max(range(k, p), key=lambda i: abs(A[i][k]))
        A[k], A[piv] = A[piv], A[k]
        for i in range(k + 1, p):
            f = A[i][k] / A[k][k]
            A[i] = [a - f * b for a, b in zip(A[i], A[k], strict=True)]
    b = [Fraction(0)] * p
    for i in reversed(range(p)):
        b[i] = (A[i][p] - sum(A[i][j] * b[j] for j in range(i + 1, p))) / A[i][i]
    return np.array([float(b[j] * Fraction(2) ** int(ey[0] - ex[j])) for j in range(p)])


def _lre(est, cert) -> float:
    err = np.abs(np.asarray(est) - cert) / np.where(cert != 0, np.abs(cert), 1.0)
    with np.errstate(divide="ignore"):
        return float(np.minimum(-np.log10(err), 16.0).min())


def _design(kind, seed):
    """9 columns (so each path compiles once): normal columns or a polynomial."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        X = np.column_stack([np.ones(N), rng.standard_normal((N, 8))])
        noise = 1.0
    else:
        lo, hi = kind
        X = np.vander(np.sort(rng.uniform(lo, hi, N)), 9, increasing=True)
        noise = 1e-2
    return X, X @ rng.standard_normal(9) + noise * rng.standard_normal(N)


@pytest.fixture(scope="module")
def tall():
    return jax.jit(lambda X, y, w: linalg.lstsq_core(X, y, w, method="tall"))


@pytest.fixture(scope="module")
def householder():
    return jax.jit(lambda X, y, w: linalg.lstsq_core(X, y, w, method="householder"))


# name: (design, seed, expected route)
CASES = {
    "well-conditioned": ("normal", 1, linalg.ROUTE_TALL),
    "ill-conditioned": ((0.0, 1.0), 2, linalg.ROUTE_TALL_ACCURATE),
    "very ill-conditioned": ((1.0, 2.0), 3, linalg.ROUTE_TALL_QR),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tall_path_accuracy_against_exact_solution(name, tall, householder):
    kind, seed, route = CASES[name]
    X, y = _design(kind, seed)
    cert = _exact_lstsq(X, y)
    w = jnp.ones(N)
    out = tall(X, y, w)
    assert int(out.route) == route, (name, int(out.route))
    scipy_b = scipy.linalg.lstsq(X, y)[0]
    lre_tall, lre_scipy = _lre(out.beta, cert), _lre(scipy_b, cert)
    cond_eq = np.linalg.cond(X / np.linalg.norm(X, axis=0))
    print(
        f"\n{name}: cond(X) {np.linalg.cond(X):.1e}, equilibrated {cond_eq:.1e};"
        f" min LRE tall {lre_tall:.1f}, scipy {lre_scipy:.1f}"
    )
    assert lre_tall >= 13.0, (name, lre_tall)
    assert lre_tall >= lre_scipy
    # agreement with scipy to within scipy's own error
    np.testing.assert_allclose(out.beta, scipy_b, rtol=10 * 10.0**-lre_scipy, atol=0)
    # same answer, RSS and covariance as the Householder path: both within the
    # 13-digit bar above, and the RSS within the rounding of a sum of N
    # squares (N eps relative each; first order in beta: the RSS is stationary)
    ref = householder(X, y, w)
    np.testing.assert_allclose(out.beta, ref.beta, rtol=2e-13, atol=0)
    np.testing.assert_allclose(out.rss, ref.rss, rtol=2 * N * EPS)
    # (X'X)^{-1} (standard errors) as good as Householder's: ~cond eps,
    # relative to sqrt(V_ii V_jj)
    V, V_ref = np.asarray(out.xtx_inv), np.asarray(ref.xtx_inv)
    scale = np.sqrt(np.outer(np.diag(V_ref), np.diag(V_ref)))
    assert np.max(np.abs(V - V_ref) / scale) <= 100 * cond_eq * 2.2e-16


def test_well_conditioned_agrees_with_scipy_and_statsmodels_to_1e12():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(7)
    X = np.column_stack([np.ones(N), rng.standard_normal((N, 7))])
    y = X @ rng.standard_normal(8) + rng.standard_normal(N)
    res = mj.ols(X, y)  # auto: n >= TALL_MIN_ROWS, so the tall path
    ref_sm = sm.OLS(y, X).fit()
    # LAPACK's QR (scipy; statsmodels' pinv) is normwise backward stable: its
    # error is up to ~N eps (kappa ~ 1 here) of the largest coefficient.
    atol = N * EPS * np.max(np.abs(ref_sm.params))
    np.testing.assert_allclose(
        res.params, scipy.linalg.lstsq(X, y)[0], rtol=1e-12, atol=atol
    )
    np.testing.assert_allclose(res.params, ref_sm.params, rtol=1e-12, atol=atol)
    np.testing.assert_allclose(res.stderr, ref_sm.bse, rtol=1e-10)
    # loglik = -N/2 (log(2 pi RSS / N) + 1): an RSS good to 2 N eps (relative,
    # either side) moves it by N/2 times that, absolutely
    np.testing.assert_allclose(
        float(res.loglik), ref_sm.llf, rtol=0, atol=N / 2 * 2 * N * EPS
    )


def test_tall_exact_fit_gives_zero_scale():
    x = np.arange(N, dtype=np.float64) % 97
    X = np.column_stack([np.ones(N), x, x**2])
    y = X @ np.array([3.0, -2.0, 0.5])  # exact in binary
    b = np.array([3.0, -2.0, 0.5])
    out = linalg.lstsq_core(X, y, None, method="tall")
    # Not a few ulps: the intercept's error is set by the rounding of
    # y - X b (terms to ~5e3), so it may be ~1e-14 relative (8e-15 measured on
    # an AVX-512 CPU); the bound is ~3e-13 relative for it, ~2e-15 for x**2.
    bound = _error_bound(X, y, b)
    assert np.all(np.abs(np.asarray(out.beta) - b) <= 2 * bound), (out.beta - b, bound)
    res = mj.ols(X, y)
    assert float(res.extra["scale"]) == 0.0 and float(res.loglik) == np.inf


def test_tall_weights_equal_dropping_and_repeating_rows():
    rng = np.random.default_rng(11)
    n = 6000
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 3))])
    y = X @ np.array([1.0, 0.5, -0.25, 2.0]) + rng.standard_normal(n)
    w = rng.integers(0, 3, n).astype(np.float64)  # 0, 1, 2: drop, keep, repeat
    out = linalg.lstsq_core(X, y, jnp.sqrt(w), method="tall")
    rep = np.repeat(np.arange(n), w.astype(int))
    ref = linalg.lstsq_core(X[rep], y[rep], None, method="householder")
    # each within the tall path's target (TALL_REL_TOL of the coefficients,
    # which are all much larger than their standard errors here)
    np.testing.assert_allclose(out.beta, ref.beta, rtol=2 * linalg.TALL_REL_TOL)
    np.testing.assert_allclose(out.rss, ref.rss, rtol=2 * len(rep) * EPS)
    np.testing.assert_allclose(out.xtx_inv, ref.xtx_inv, rtol=1e-10)


def test_tall_rank_deficiency_falls_back_and_names_columns():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, 4))
    X = np.column_stack([X, 1e6 * (X[:, 1] - 2.0 * X[:, 3])])  # scale-free collinearity
    y = rng.standard_normal(N)
    out = linalg.lstsq_core(X, y, None, method="tall")
    assert int(out.route) == linalg.ROUTE_TALL_QR
    assert linalg.collinear_columns(out.r_eq) == ["x1", "x3", "x4"]


def test_tall_vmap_and_float32():
    rng = np.random.default_rng(5)
    n, p = 4096, 4
    Xs = rng.standard_normal((2, n, p))
    ys = Xs @ np.array([1.0, -1.0, 0.5, 0.0]) + rng.standard_normal((2, n))
    f = jax.vmap(lambda X, y: linalg.lstsq_core(X, y, None, method="tall").beta)
    for X, y, b in zip(Xs, ys, f(Xs, ys), strict=True):
        cert = _exact_lstsq(X, y)
        err = np.abs(np.asarray(b) - cert)
        assert np.all(err <= 2 * _error_bound(X, y, cert)), err
    X32, y32 = jnp.asarray(Xs[0], jnp.float32), jnp.asarray(ys[0], jnp.float32)
    b32 = linalg.lstsq_core(X32, y32, None, method="tall").beta
    assert b32.dtype == jnp.float32
    X64, y64 = np.asarray(X32, np.float64), np.asarray(y32, np.float64)
    cert = _exact_lstsq(X64, y64)  # of the float32 data as given
    err = np.abs(np.asarray(b32, np.float64) - cert)
    eps32 = float(np.finfo(np.float32).eps)
    assert np.all(err <= 2 * _error_bound(X64, y64, cert, eps32)), err
