"""Differentiable fits: implicit gradients against finite differences of OUTSIDE refits.

Every derivative of ``mj.fit`` / ``mj.fit_likelihood`` here is checked against
central finite differences of refits by another library (statsmodels GLM and
discrete NegativeBinomial, scikit-learn, scipy.optimize.minimize, a torch
Newton solve) along random directions, never against mlejax itself. The
reverse-mode Jacobian (``jax.jacrev``) is contracted with the direction and
compared with the finite difference; ``jax.jvp`` along the same direction must
agree with it. Steps are chosen so that the finite-difference error (step^2
truncation plus refit tolerance / step) is far below the 1e-5 tolerance.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import statsmodels.api as sm
from scipy.special import expit

import mlejax as mj

RTOL = 1e-5


def _fd(refit, args, a, v, h):
    """Central difference of ``refit(*args)`` along ``v`` in argument ``a``."""
    up, dn = list(args), list(args)
    up[a] = args[a] + h * v
    dn[a] = args[a] - h * v
    return (np.asarray(refit(*up)) - np.asarray(refit(*dn))) / (2 * h)


def _check_directions(f, refit, args, argnums, h, seed=0, rtol=RTOL, jvp=False):
    """jacrev(f) . v == FD of the outside refit (and == jvp(f) . v), per argument."""
    args = [np.asarray(a, float) for a in args]
    jargs = [jnp.asarray(a) for a in args]
    J = jax.jacrev(f, argnums=tuple(argnums))(*jargs)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for j, a in enumerate(argnums):
        v = rng.normal(size=args[a].shape)
        rev = np.tensordot(np.asarray(J[j]), v, axes=v.ndim)
        if jvp:
            tangents = [jnp.zeros_like(x) for x in jargs]
            tangents[a] = jnp.asarray(v)
            _, fwd = jax.jvp(f, tuple(jargs), tuple(tangents))
            atol = 1e-12 * np.abs(rev).max()
            np.testing.assert_allclose(fwd, rev, rtol=1e-10, atol=atol)
        fd = _fd(refit, args, a, v, h)
        err = np.max(np.abs(rev - fd)) / np.max(np.abs(fd))
        assert err < rtol, (a, err, rev, fd)
        worst = max(worst, err)
    return worst


@pytest.mark.slow  # several seconds of compilation each (CI budget)
def test_bernoulli_weights_offset_X_match_statsmodels_glm():
    rng = np.random.default_rng(0)
    n = 60
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = (rng.random(n) < expit(X @ [0.3, 0.8, -0.5])).astype(float)
    w = rng.integers(1, 4, n).astype(float)
    off = 0.2 * rng.normal(size=n)
    fam = mj.families.Bernoulli()

    def f(X, w, off):
        res = mj.fit(X, y, fam, weights=w, offset=off)
        return jnp.concatenate([res.params, res.loglik[None], res.deviance[None]])

    def refit(X, w, off):
        r = sm.GLM(y, X, family=sm.families.Binomial(), freq_weights=w, offset=off).fit(
            tol=1e-15, maxiter=100
        )
        return np.concatenate([r.params, [r.llf, r.deviance]])

    _check_directions(f, refit, (X, w, off), (0, 1, 2), h=1e-5, jvp=True)


@pytest.mark.slow  # several seconds of compilation each (CI budget)
def test_gaussian_all_inputs_and_scale_match_sklearn():
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    off = rng.normal(size=n)
    fam = mj.families.Gaussian()

    def f(X, y, w, off):
        res = mj.fit(X, y, fam, weights=w, offset=off)
        return jnp.concatenate([res.params, res.extra["scale"][None], res.loglik[None]])

    def refit(X, y, w, off):
        lr = LinearRegression(fit_intercept=False).fit(X, y - off, sample_weight=w)
        r = y - off - X @ lr.coef_
        s2 = np.sum(w * r**2) / np.sum(w)
        ll = -0.5 * np.sum(w) * (np.log(2 * np.pi * s2) + 1)
        return np.concatenate([lr.coef_, [np.sqrt(s2), ll]])

    _check_directions(f, refit, (X, y, w, off), (0, 1, 2, 3), h=1e-5)


@pytest.mark.slow  # several seconds of compilation each (CI budget)
def test_negative_binomial_joint_alpha_matches_statsmodels_discrete():
    from statsmodels.discrete.discrete_model import NegativeBinomial

    rng = np.random.default_rng(2)
    n = 80
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    mu = np.exp(X @ [0.7, 0.4, -0.3])
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)).astype(float)
    off = 0.1 * rng.normal(size=n)
    fam = mj.families.NegativeBinomial()

    def f(X, off):
        res = mj.fit(X, y, fam, offset=off)
        return jnp.concatenate([res.params, res.extra["alpha"][None], res.loglik[None]])

    def refit(X, off):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = NegativeBinomial(y, X, loglike_method="nb2", offset=off).fit(
                method="newton", tol=1e-14, maxiter=200, disp=0
            )
        return np.concatenate([r.params, [r.llf]])  # params end with alpha

    _check_directions(f, refit, (X, off), (0, 1), h=1e-5)
    # The joint Hessian matters: holding alpha at its estimate (a GLM with
    # fixed alpha, as the expected information's block-diagonal form would)
    # gives a visibly different derivative of the coefficients.
    alpha = float(mj.fit(X, y, fam, offset=off).extra["alpha"])

    def refit_fixed(off):
        r = sm.GLM(
            y, X, family=sm.families.NegativeBinomial(alpha=alpha), offset=off
        ).fit(tol=1e-15, maxiter=100)
        return r.params

    v = np.random.default_rng(0).normal(size=n)
    fixed = _fd(refit_fixed, [off], 0, v, 1e-5)
    _, joint = jax.jvp(
        lambda o: mj.fit(X, y, fam, offset=o).params,
        (jnp.asarray(off),),
        (jnp.asarray(v),),
    )
    assert np.max(np.abs(fixed - joint)) / np.max(np.abs(joint)) > 1e-3


def _torch_studentt_refit(X, y, w, off, fixed=None):
    """MLE of a Student-t regression by Newton in torch (float64, autograd Hessian).

    ``theta = [beta, log scale, log df]``; ``fixed``: hold the last two at
    these values (a coefficient-only refit).
    """
    torch = pytest.importorskip("torch")
    Xt, yt, wt, ot = (torch.tensor(a, dtype=torch.float64) for a in (X, y, w, off))
    p = X.shape[1]

    def nll(th):
        u = th[p:] if fixed is None else torch.tensor(fixed, dtype=torch.float64)
        dist = torch.distributions.StudentT(
            torch.exp(u[1]), Xt @ th[:p] + ot, torch.exp(u[0])
        )
        return -(wt * dist.log_prob(yt)).sum()

    k = p + (2 if fixed is None else 0)
    beta0 = np.linalg.lstsq(X, y - off, rcond=None)[0]
    th = torch.tensor(
        np.concatenate([beta0, [0.0, np.log(5.0)]])[:k], dtype=torch.float64
    )
    for _ in range(100):
        g = torch.autograd.functional.jacobian(nll, th)
        H = torch.autograd.functional.hessian(nll, th)
        step = torch.linalg.solve(H, g)
        t = 1.0
        while nll(th - t * step) > nll(th) + 1e-12 * abs(float(nll(th))) and t > 1e-8:
            t /= 2
        th = th - t * step
        if float(torch.max(torch.abs(t * step))) < 1e-15:
            break
    out = th.detach().numpy()
    if fixed is None:
        out = np.concatenate([out[:p], np.exp(out[p:]), [-float(nll(th))]])
    return out


@pytest.mark.slow  # several seconds of compilation each (CI budget)
def test_studentt_joint_hessian_matches_torch_refits():
    rng = np.random.default_rng(3)
    n = 60
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 1))])
    y = X @ [1.0, 2.0] + 0.7 * rng.standard_t(4, size=n)
    w = rng.integers(1, 3, n).astype(float)
    off = 0.3 * rng.normal(size=n)
    fam = mj.families.StudentT()

    def f(X, y, w, off):
        res = mj.fit(X, y, fam, weights=w, offset=off)
        ex = jnp.stack([res.extra["scale"], res.extra["df"], res.loglik])
        return jnp.concatenate([res.params, ex])

    _check_directions(f, _torch_studentt_refit, (X, y, w, off), (0, 1, 2, 3), h=1e-5)
    # the coefficient-only derivative (scale and df held) is visibly different
    res = mj.fit(X, y, fam, weights=w, offset=off)
    fixed = (np.log(float(res.extra["scale"])), np.log(float(res.extra["df"])))
    v = np.random.default_rng(0).normal(size=n)
    only_beta = _fd(
        lambda yy: _torch_studentt_refit(X, yy, w, off, fixed), [y], 0, v, 1e-5
    )
    _, joint = jax.jvp(
        lambda yy: mj.fit(X, yy, fam, weights=w, offset=off).params,
        (jnp.asarray(y),),
        (jnp.asarray(v),),
    )
    assert np.max(np.abs(only_beta - joint)) / np.max(np.abs(joint)) > 1e-3


@pytest.mark.slow  # several seconds of compilation each (CI budget)
def test_laplace_active_set_derivative_matches_sklearn_lad():
    from sklearn.linear_model import QuantileRegressor

    rng = np.random.default_rng(4)
    n = 40
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 1))])
    y = X @ [0.5, 1.5] + rng.laplace(size=n)
    fam = mj.families.Laplace()

    def f(X, y):
        res = mj.fit(X, y, fam)
        return jnp.concatenate([res.params, res.extra["scale"][None], res.loglik[None]])

    def refit(X, y):
        q = QuantileRegressor(quantile=0.5, alpha=0.0, fit_intercept=False)
        b = q.set_params(solver="highs").fit(X, y).coef_
        s = np.mean(np.abs(y - X @ b))
        return np.concatenate([b, [s, -n * (np.log(2 * s) + 1)]])

    # piecewise linear: a small step stays on the vertex, FD is exact there
    _check_directions(f, refit, (X, y), (0, 1), h=1e-7)


def test_fit_likelihood_weibull_matches_scipy_minimize_refits():
    rng = np.random.default_rng(5)
    n = 80
    x = rng.normal(size=n)
    t = np.exp(0.3 + 0.5 * x) * rng.weibull(1.7, n)

    def loglik(th, t, x):
        k, lam = jnp.exp(th["log_k"]), jnp.exp(th["b"][0] + th["b"][1] * x)
        z = t / lam
        return jnp.sum(jnp.log(k / lam) + (k - 1) * jnp.log(z) - z**k)

    init = {"log_k": jnp.array(0.0), "b": jnp.zeros(2)}

    def f(t, x):
        res = mj.fit_likelihood(loglik, init, t, x)
        return jnp.concatenate(
            [res.params["b"], res.params["log_k"][None], res.loglik[None]]
        )

    def refit(t, x):
        def nll_grad(th):
            lk, b0, b1 = th
            k = np.exp(lk)
            logz = np.log(t) - b0 - b1 * x
            zk = np.exp(k * logz)
            ll = np.sum(lk - (b0 + b1 * x) + (k - 1) * logz - zk)
            g_lk = np.sum(1 + k * logz * (1 - zk))
            g_eta = k * (zk - 1)
            return -ll, -np.array([g_lk, g_eta.sum(), (g_eta * x).sum()])

        r = scipy.optimize.minimize(
            nll_grad, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-12}
        )
        # polish to the rounding level: the score equations by scipy's root
        th = scipy.optimize.root(lambda th: nll_grad(th)[1], r.x, tol=1e-15).x
        return np.concatenate([th[1:], th[:1], [-nll_grad(th)[0]]])

    _check_directions(f, refit, (t, x), (0, 1), h=1e-6, jvp=True)


def test_vmap_of_grad_equals_the_loop_and_nonconverged_is_nan():
    rng = np.random.default_rng(6)
    B, n = 100, 30
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Y = (rng.random((B, n)) < expit(X @ [0.2, 0.5])).astype(float)
    Y[0] = (X[:, 1] > 0).astype(float)  # completely separated: no MLE
    fam = mj.families.Bernoulli()

    def slope(w, y):
        return mj.fit(X, y, fam, weights=w).params[1]

    grad = jax.jit(jax.grad(slope))
    w = jnp.ones(n)
    batched = jax.jit(jax.vmap(jax.grad(slope), in_axes=(None, 0)))(w, jnp.asarray(Y))
    loop = np.stack([grad(w, jnp.asarray(yb)) for yb in Y])
    assert np.all(np.isnan(batched[0])) and np.all(np.isnan(loop[0]))
    assert np.all(np.isfinite(batched[1:]))
    np.testing.assert_allclose(batched, loop, rtol=1e-10, atol=1e-14)

    # and the batch's gradients are right: one checked against statsmodels
    def refit(w):
        return (
            sm.GLM(Y[1], X, family=sm.families.Binomial(), freq_weights=w)
            .fit(tol=1e-15)
            .params[1]
        )

    v = np.random.default_rng(0).normal(size=n)
    fd = _fd(refit, [np.ones(n)], 0, v, 1e-5)
    assert abs(float(batched[1] @ v) - fd) < RTOL * abs(fd)


def test_ridge_alpha_and_weights_gradients_match_sklearn_refits():
    # d params / d alpha and d params / d weights of a Ridge-penalised logistic
    # fit (the MAP: the penalised Hessian in the implicit solve) against central
    # differences of scikit-learn refits, C = 1 / alpha, intercept unpenalised
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n = 200
    X = mj.add_constant(rng.normal(size=(n, 3)))
    y = (rng.uniform(size=n) < expit(X @ [0.3, 1.0, -0.7, 0.4])).astype(float)
    w0 = rng.uniform(0.5, 2.0, n)
    fam = mj.families.Bernoulli()

    def params(a, w):
        pen = mj.penalties.Ridge(a)
        return mj.fit(X, y, fam, weights=w, penalty=pen, tol=1e-13).params

    def sk(a, w):
        m = LogisticRegression(
            C=1.0 / a, tol=1e-14, max_iter=10_000, solver="newton-cholesky"
        ).fit(X[:, 1:], y, sample_weight=w)
        return np.r_[m.intercept_, m.coef_.ravel()]

    a0 = 3.0
    np.testing.assert_allclose(np.asarray(params(a0, w0)), sk(a0, w0), rtol=1e-9)
    jac_a, jac_w = jax.jacrev(params, argnums=(0, 1))(jnp.asarray(a0), jnp.asarray(w0))
    h = 1e-4
    fd_a = (sk(a0 + h, w0) - sk(a0 - h, w0)) / (2 * h)
    np.testing.assert_allclose(np.asarray(jac_a), fd_a, rtol=1e-5, atol=1e-9)
    v = rng.normal(size=n)
    fd_w = (sk(a0, w0 + h * v) - sk(a0, w0 - h * v)) / (2 * h)
    np.testing.assert_allclose(np.asarray(jac_w) @ v, fd_w, rtol=1e-5, atol=1e-9)
