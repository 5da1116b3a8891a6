"""``mj.fit_likelihood(..., linear=...)``: the structured row-block path.

Weibull accelerated-failure-time regression with right censoring (about 30%
censored), checked against outside references: a NumPy Newton fit with the
closed-form score and Hessian (and scipy's ``trust-exact`` on the same), the
closed-form inverse Hessian for the standard errors, and central finite
differences of NumPy refits for the implicit derivative. n = 2500 runs over
three row blocks of 1024 (the last one clamped and masked).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import mlejax as mj

N, P = 2500, 4


def aft_loglik(params, X, t, d):
    """log T = X @ beta + sigma W, W standard minimum-Gumbel; d = 1: observed."""
    ls = params["log_sigma"]
    z = (jnp.log(t) - X @ params["beta"]) * jnp.exp(-ls)
    return jnp.sum(d * (z - ls - jnp.log(t)) - jnp.exp(z))


def np_derivs(theta, X, t, d):
    """Closed-form loglik, score and Hessian of the Weibull AFT in (beta, log sigma)."""
    beta, ls = theta[:-1], theta[-1]
    s = np.exp(ls)
    z = (np.log(t) - X @ beta) / s
    ez = np.exp(z)
    ll = np.sum(d * (z - ls - np.log(t)) - ez)
    g = np.r_[X.T @ ((ez - d) / s), np.sum(z * (ez - d) - d)]
    h_ee = -ez / s**2
    h_es = -(z * ez + ez - d) / s
    h_ss = np.sum(-z * (ez - d) - z**2 * ez)
    H = np.block(
        [[X.T @ (X * h_ee[:, None]), (X.T @ h_es)[:, None]], [X.T @ h_es, h_ss]]
    )
    return ll, g, H


def np_newton(X, t, d, theta):
    """Plain Newton on the closed forms from a start near the MLE (where the
    Hessian is negative definite): the MLE to rounding (an outside reference)."""
    for _ in range(100):
        ll, g, H = np_derivs(theta, X, t, d)
        step = np.linalg.solve(H, g)
        lam = 1.0
        while np_derivs(theta - lam * step, X, t, d)[0] < ll - 1e-12 * abs(ll):
            lam /= 2
        theta = theta - lam * step
        if np.max(np.abs(lam * step)) < 1e-14:
            break
    return theta


def aft_data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, P - 1))])
    beta = np.r_[1.0, rng.normal(scale=0.3, size=P - 1)]
    T = np.exp(X @ beta + 0.7 * np.log(rng.exponential(size=n)))
    C = rng.exponential(scale=8.0, size=n)
    return X, np.minimum(T, C), (T <= C).astype(float)


@pytest.fixture(scope="module")
def data():
    return aft_data(N)


@pytest.fixture(scope="module")
def structured(data):
    p0 = {"beta": jnp.zeros(P), "log_sigma": jnp.array(0.0)}
    return mj.fit_likelihood(aft_loglik, p0, *data, linear={"beta": 0})


def test_weibull_aft_matches_closed_form(data, structured):
    X, t, d = data
    assert 0.2 < 1 - d.mean() < 0.4  # right censoring about 30%
    res = structured
    assert bool(res.converged)
    theta = np.r_[np.asarray(res.params["beta"]), float(res.params["log_sigma"])]
    sp = scipy.optimize.minimize(
        lambda th: -np_derivs(th, X, t, d)[0],
        np.zeros(P + 1),
        jac=lambda th: -np_derivs(th, X, t, d)[1],
        hess=lambda th: -np_derivs(th, X, t, d)[2],
        method="trust-exact",
        options={"gtol": 1e-10},
    )
    ref = np_newton(X, t, d, sp.x)
    for r in (ref, sp.x):
        assert np.max(np.abs(theta - r) / (1 + np.abs(r))) < 1e-8
    ll_ref, g_ref, H_ref = np_derivs(ref, X, t, d)
    assert abs(float(res.loglik) - ll_ref) <= 1e-10 * abs(ll_ref)
    # stderr and cov from the closed-form Hessian at the MLE (1e-8 relative)
    cov_ref = np.linalg.inv(-np_derivs(theta, X, t, d)[2])
    se = np.r_[np.asarray(res.stderr["beta"]), float(res.stderr["log_sigma"])]
    se_ref = np.sqrt(np.diag(cov_ref))
    assert np.max(np.abs(se - se_ref) / se_ref) < 1e-8
    # ravel_pytree order: beta, then log_sigma (dict keys sorted)
    assert np.max(np.abs(np.asarray(res.cov) - cov_ref)) < 1e-8 * np.max(cov_ref)


def test_declaration_errors(data):
    X, t, d = data
    p0 = {"beta": jnp.zeros(P), "log_sigma": jnp.array(0.0)}
    fit = mj.fit_likelihood
    bad = [
        ({"gamma": 0}, "gamma"),  # no such parameter
        ({"beta": 3}, "index"),  # no data[3]
        ({"beta": "X"}, "int"),
        ({"beta": 1}, "2-D"),  # data[1] is t, a vector
        ([("beta", 0)], "dict"),
    ]
    for linear, what in bad:
        with pytest.raises(ValueError, match=f"linear(.|\n)*{what}"):
            fit(aft_loglik, p0, X, t, d, linear=linear)
    with pytest.raises(ValueError, match=r"linear(.|\n)*shape \(3,\)"):
        fit(aft_loglik, {**p0, "beta": jnp.zeros(P - 1)}, X, t, d, linear={"beta": 0})

    # a term in beta outside X @ beta (a ridge prior inside loglik) breaks
    # the declaration, even though it vanishes at the zero start
    def ridge_inside(params, X, t, d):
        return aft_loglik(params, X, t, d) - 0.5 * jnp.sum(params["beta"] ** 2)

    with pytest.raises(ValueError, match="linear=.*does not describe loglik"):
        fit(ridge_inside, p0, X, t, d, linear={"beta": 0})

    def x_elsewhere(params, X, t, d):  # X's second column used on its own too
        return aft_loglik(params, X, t * jnp.exp(0.01 * X[:, 1]), d)

    with pytest.raises(ValueError, match="linear=.*does not describe loglik"):
        fit(x_elsewhere, p0, X, t, d, linear={"beta": 0})

    def fixed_shape(params, X, t, d):  # not shape-agnostic: fails on one row
        return aft_loglik({**params, "beta": params["beta"].reshape(P)}, X, t, d)

    with pytest.raises(ValueError, match="linear=.*fails on one row"):
        fit(fixed_shape, p0, X, t, d, linear={"beta": 0})


def test_implicit_derivative_vs_refits(data, structured):
    """d beta / d log t along a direction: jvp (implicit) vs NumPy refits."""
    X, t, d = data
    p0 = {"beta": jnp.zeros(P), "log_sigma": jnp.array(0.0)}
    v = np.sin(np.arange(N))  # direction in log t

    def coef(h):
        res = mj.fit_likelihood(
            aft_loglik, p0, X, jnp.asarray(t) * jnp.exp(h * v), d, linear={"beta": 0}
        )
        return jnp.concatenate([res.params["beta"], res.params["log_sigma"][None]])

    val, tangent = jax.jvp(coef, (0.0,), (1.0,))
    base = np.r_[np.asarray(structured.params["beta"]), structured.params["log_sigma"]]
    assert np.max(np.abs(np.asarray(val) - base)) < 1e-12
    h = 1e-5
    up = np_newton(X, t * np.exp(h * v), d, base)
    dn = np_newton(X, t * np.exp(-h * v), d, base)
    fd = (up - dn) / (2 * h)
    assert np.max(np.abs(np.asarray(tangent) - fd)) < 1e-6 * np.max(np.abs(fd))


@pytest.mark.slow
def test_same_as_generic_path_vmap_robust_penalty(data, structured):
    """linear= changes the derivatives' route, not their values."""
    X, t, d = data
    p0 = {"beta": jnp.zeros(P), "log_sigma": jnp.array(0.0)}
    gen = mj.fit_likelihood(aft_loglik, p0, X, t, d)
    for a, b in [
        (structured.params["beta"], gen.params["beta"]),
        (structured.cov, gen.cov),
        (structured.loglik, gen.loglik),
    ]:
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-10 * np.max(
            np.abs(np.asarray(b))
        )

    # per-row terms: HC0 from per-row scores; ridge and lasso penalties
    def rows(params, X, t, d):
        ls = params["log_sigma"]
        z = (jnp.log(t) - X @ params["beta"]) * jnp.exp(-ls)
        return d * (z - ls - jnp.log(t)) - jnp.exp(z)

    for kw in (
        dict(cov_type="HC0"),
        dict(penalty=mj.penalties.Ridge(2.0)),
        dict(penalty=mj.penalties.Lasso(30.0)),  # proximal Newton, same problem
    ):
        s = mj.fit_likelihood(rows, p0, X, t, d, linear={"beta": 0}, **kw)
        g = mj.fit_likelihood(rows, p0, X, t, d, **kw)
        # (lasso: an exact zero has NaN cov entries, in both)
        cs, cg = np.asarray(s.cov), np.asarray(g.cov)
        assert np.array_equal(np.isnan(cs), np.isnan(cg))
        assert np.nanmax(np.abs(cs - cg)) < 1e-10 * np.nanmax(cg)
        dp = np.asarray(s.params["beta"] - g.params["beta"])
        assert np.max(np.abs(dp)) < 1e-10

    # vmap over two outcome vectors equals the two separate fits
    T2 = jnp.stack([jnp.asarray(t), jnp.asarray(t) * 1.1])
    out = jax.vmap(
        lambda tt: mj.fit_likelihood(aft_loglik, p0, X, tt, d, linear={"beta": 0})
    )(T2)
    one = mj.fit_likelihood(aft_loglik, p0, X, t * 1.1, d, linear={"beta": 0})
    assert (
        np.max(np.abs(np.asarray(out.params["beta"][1] - one.params["beta"]))) < 1e-10
    )
    assert (
        np.max(np.abs(np.asarray(out.stderr["beta"][0] - structured.stderr["beta"])))
        < 1e-12
    )
    assert bool(jnp.all(out.converged))


@pytest.mark.slow
def test_two_linear_predictors_location_scale():
    """Heteroscedastic normal: mean X @ beta, log sd Z @ gamma (two design matrices)."""
    rng = np.random.default_rng(3)
    n = 3000
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), rng.uniform(size=n)])
    y = X @ [1.0, 2.0] + np.exp(Z @ [-0.5, 1.0]) * rng.normal(size=n)

    def ll(params, X, Z, y):
        mu, ls = X @ params["beta"], Z @ params["gamma"]
        return jnp.sum(-ls - 0.5 * ((y - mu) * jnp.exp(-ls)) ** 2)

    p0 = {"beta": jnp.zeros(2), "gamma": jnp.zeros(2)}
    s = mj.fit_likelihood(ll, p0, X, Z, y, linear={"beta": 0, "gamma": 1})

    def negll(th):
        mu, ls = X @ th[:2], Z @ th[2:]
        return -np.sum(-ls - 0.5 * ((y - mu) * np.exp(-ls)) ** 2)

    def grad(th):
        r = (y - X @ th[:2]) * np.exp(-(Z @ th[2:]))
        return -np.r_[X.T @ (r * np.exp(-(Z @ th[2:]))), Z.T @ (r**2 - 1)]

    ref = scipy.optimize.minimize(
        negll, np.zeros(4), jac=grad, method="BFGS", options={"gtol": 1e-9}
    ).x
    theta = np.r_[np.asarray(s.params["beta"]), np.asarray(s.params["gamma"])]
    assert np.max(np.abs(theta - ref)) < 1e-6
    g = mj.fit_likelihood(ll, p0, X, Z, y)
    assert np.max(np.abs(np.asarray(s.cov - g.cov))) < 1e-10 * np.max(np.abs(g.cov))


@pytest.mark.slow
def test_subsample_start(data, structured, monkeypatch):
    """The strided-subsample warm start (large n) reaches the same MLE and SEs."""
    from mlejax import linear_rows

    monkeypatch.setattr(linear_rows, "SUBSAMPLE_MIN_ROWS", 2000)
    monkeypatch.setattr(linear_rows, "SUBSAMPLE_ROWS", 600)
    X, t, d = data

    def ll(params, X, t, d):  # a new function object: a fresh trace
        return aft_loglik(params, X, t, d)

    p0 = {"beta": jnp.zeros(P), "log_sigma": jnp.array(0.0)}
    res = mj.fit_likelihood(ll, p0, X, t, d, linear={"beta": 0})
    assert bool(res.converged)
    theta = np.r_[np.asarray(res.params["beta"]), float(res.params["log_sigma"])]
    ref = np.r_[np.asarray(structured.params["beta"]), structured.params["log_sigma"]]
    assert np.max(np.abs(theta - ref)) < 1e-9
    cov_ref = np.linalg.inv(-np_derivs(theta, X, t, d)[2])
    assert np.max(np.abs(np.asarray(res.cov) - cov_ref)) < 1e-8 * np.max(cov_ref)
