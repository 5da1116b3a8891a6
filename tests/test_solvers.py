"""Solvers and transformations: L-BFGS / Optax reach the Newton or closed-form
answer; vmap, jit, no retracing, float32.

First-order solvers minimise the *mean* NLL, so learning rates below are for
gradients of order 1 whatever n is.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import rel, roundoff

import mlejax as mj

F = mj.families

# Built once at module level: a fresh transform hashes differently and recompiles.
SGD = optax.sgd(learning_rate=0.5, momentum=0.5)
_SGD_BASE = optax.sgd(learning_rate=4.0, momentum=0.5)
# The same transform with its update counted: traced at most once overall.
COUNTED = optax.GradientTransformation(
    _SGD_BASE.init, chex.assert_max_traces(_SGD_BASE.update, n=1)
)


def _ols_problem():
    rng = np.random.default_rng(11)
    X = mj.add_constant(rng.normal(size=(100, 2)))
    y = X @ np.array([1.0, 2.0, -0.5]) + rng.normal(size=100)
    return X, y


def _gauss_loglik(theta, X, y):
    """Gaussian regression log-likelihood, all constants, sigma = exp(log_sigma)."""
    r = y - X @ theta["beta"]
    s = jnp.exp(theta["log_sigma"])
    return jnp.sum(-0.5 * (r / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi))


@pytest.mark.parametrize("solver", ["lbfgs", SGD], ids=["lbfgs", "optax-sgd"])
def test_first_order_solvers_reach_closed_form_ols(solver):
    X, y = _ols_problem()
    ref = mj.ols(X, y)
    init = {"beta": jnp.zeros(3), "log_sigma": jnp.asarray(0.0)}
    res = mj.fit_likelihood(_gauss_loglik, init, X, y, solver=solver, max_iter=500)
    assert bool(res.converged), res.reason
    assert rel(res.params["beta"], ref.params) < 1e-8
    assert rel(jnp.exp(res.params["log_sigma"]), ref.extra["scale"]) < 1e-8
    assert rel(res.loglik, ref.loglik) < 1e-12


@pytest.mark.parametrize("solver", ["lbfgs", SGD], ids=["lbfgs", "optax-sgd"])
def test_gaussian_fit_honours_the_solver_argument(solver):
    X, y = _ols_problem()
    out = jax.eval_shape(lambda a, b: mj.fit(a, b, F.Gaussian(), solver=solver), X, y)
    assert out.solver == ("lbfgs" if solver == "lbfgs" else "optax")


def _poisson_problem():
    rng = np.random.default_rng(12)
    X = mj.add_constant(rng.normal(size=(100, 2)) * 0.5)
    y = rng.poisson(np.exp(X @ np.array([0.5, 0.4, -0.3]))).astype(np.float64)
    return X, y


def test_lbfgs_matches_newton_on_poisson():
    X, y = _poisson_problem()
    ref = mj.fit(X, y, F.Poisson())
    res = mj.fit(X, y, F.Poisson(), solver="lbfgs", max_iter=200)
    assert bool(res.converged) and res.solver == "lbfgs"
    assert rel(res.params, ref.params) < 1e-8
    assert rel(res.stderr, ref.stderr) < 1e-7
    assert rel(res.loglik, ref.loglik) < roundoff(len(y))  # flat at the optimum


# ----------------------------------------------------------------------------
# vmap / jit / retracing / float32 on small logistic problems (n=50, p=3)
# ----------------------------------------------------------------------------
N_BATCH, N_OBS = 1000, 50
BETA = np.array([0.2, 0.8, -0.6])


def _logistic_batch(dtype=np.float64):
    rng = np.random.default_rng(13)
    X = np.concatenate(
        [np.ones((N_BATCH, N_OBS, 1)), rng.normal(size=(N_BATCH, N_OBS, 2))], axis=2
    )
    p = 1.0 / (1.0 + np.exp(-(X @ BETA)))
    y = (rng.uniform(size=p.shape) < p).astype(np.float64)
    return X.astype(dtype), y.astype(dtype)


@pytest.fixture(scope="module")
def logistic_batch():
    return _logistic_batch()


def test_vmap_over_1000_logistic_fits_equals_loop(logistic_batch):
    X, y = logistic_batch
    batched = jax.vmap(lambda a, b: mj.fit(a, b, F.Bernoulli()))(X, y)
    assert batched.params.shape == (N_BATCH, 3)
    assert batched.stderr.shape == (N_BATCH, 3)
    assert batched.cov.shape == (N_BATCH, 3, 3)
    assert bool(jnp.all(batched.converged))
    for i in range(0, N_BATCH, N_BATCH // 20):  # 20 single fits, same compiled code
        one = mj.fit(X[i], y[i], F.Bernoulli())
        assert rel(batched.params[i], one.params) < 1e-10
        assert rel(batched.stderr[i], one.stderr) < 1e-10
        assert rel(batched.loglik[i], one.loglik) < 1e-12
    # sampling sanity: the mean estimate is near the truth
    assert np.max(np.abs(np.mean(batched.params, axis=0) - BETA)) < 0.1


def test_jit_of_partial_fit(logistic_batch):
    X, y = logistic_batch
    fit_j = jax.jit(functools.partial(mj.fit, family=F.Bernoulli(), solver="newton"))
    a, b = fit_j(X[0], y[0]), mj.fit(X[0], y[0], F.Bernoulli())
    assert rel(a.params, b.params) < 1e-12
    assert rel(a.stderr, b.stderr) < 1e-12
    c = fit_j(X[1], y[1])  # same shapes: cached
    assert rel(c.params, mj.fit(X[1], y[1], F.Bernoulli()).params) < 1e-12


def test_reused_optax_transform_does_not_retrace(logistic_batch):
    """COUNTED.update may be traced once; a second fit with new data reuses it."""
    X, y = logistic_batch
    for i in range(3):
        res = mj.fit(X[i], y[i], F.Bernoulli(), solver=COUNTED, max_iter=400)
        assert bool(res.converged), res.reason
        assert res.solver == "optax"
        ref = mj.fit(X[i], y[i], F.Bernoulli())
        assert rel(res.params, ref.params) < 1e-8


def test_float32_data_give_float32_results(logistic_batch):
    X, y = logistic_batch
    res32 = mj.fit(X[0].astype(np.float32), y[0].astype(np.float32), F.Bernoulli())
    res64 = mj.fit(X[0], y[0], F.Bernoulli())
    for leaf in (res32.params, res32.stderr, res32.cov, res32.loglik, res32.aic):
        assert leaf.dtype == jnp.float32
    assert bool(res32.converged)
    assert rel(res32.params, res64.params) < 1e-4
    assert rel(res32.stderr, res64.stderr) < 1e-4
    assert rel(res32.loglik, res64.loglik) < 1e-5
