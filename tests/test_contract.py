"""The family contract and the contract breaks of the architecture issue.

A family defined here with nothing but ``log_prob`` gets ``fit``, standard
errors, ``vmap`` and buckets; each former contract break has a test.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import subprocess
import sys
import warnings
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize, stats

import mlejax as mj

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Weibull(mj.families.Family):
    """Weibull regression: scale ``exp(eta)``, estimated shape ``k``."""

    support: ClassVar[str] = "positive"
    extra_names: ClassVar[tuple[str, ...]] = ("k",)

    def log_prob(self, y, eta, k):
        z = y * jnp.exp(-eta)
        return jnp.log(k) - eta + (k - 1.0) * jnp.log(z) - z**k


@pytest.fixture(scope="module")
def weibull_data():
    rng = np.random.default_rng(11)
    n = 300
    X = mj.add_constant(rng.normal(size=(n, 2)))
    beta = np.array([0.5, 0.8, -0.4])
    y = np.exp(X @ beta) * rng.weibull(1.7, size=n)
    return X, y


def _scipy_weibull(X, y):
    """MLE and a finite-difference Hessian from scipy's weibull_min logpdf."""

    def nll(th):
        b, logk = th[:-1], th[-1]
        return -stats.weibull_min.logpdf(y, np.exp(logk), scale=np.exp(X @ b)).sum()

    sol = optimize.minimize(
        nll, np.r_[np.zeros(X.shape[1]), 0.0], method="BFGS", options={"gtol": 1e-10}
    )
    th = sol.x.copy()
    th[-1] = np.exp(th[-1])  # natural k

    def nll_nat(t):
        return nll(np.r_[t[:-1], np.log(t[-1])])

    h = 1e-4 * np.maximum(1.0, np.abs(th))
    k = th.size
    H = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            H[i, j] = (
                nll_nat(th + ei + ej)
                - nll_nat(th + ei - ej)
                - nll_nat(th - ei + ej)
                + nll_nat(th - ei - ej)
            ) / (4 * h[i] * h[j])
    return th, -sol.fun, np.sqrt(np.diag(np.linalg.inv(H)))


def test_user_family_with_only_log_prob_fits_like_scipy(weibull_data):
    X, y = weibull_data
    res = mj.fit(X, y, Weibull())
    th, ll, se = _scipy_weibull(X, y)
    assert bool(res.converged), res.reason
    np.testing.assert_allclose(res.params, th[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.extra["k"], th[-1], rtol=1e-5)
    np.testing.assert_allclose(res.loglik, ll, rtol=1e-9)
    np.testing.assert_allclose(res.stderr, se[:-1], rtol=1e-4)
    np.testing.assert_allclose(res.extra_stderr["k"], se[-1], rtol=1e-4)
    assert "k" in res.summary()


def test_user_family_under_vmap_and_buckets(weibull_data):
    X, y = weibull_data
    one = mj.fit(X, y, Weibull())
    Xs, ys = jnp.stack([X, X[::-1]]), jnp.stack([y, y[::-1]])
    batch = jax.vmap(lambda a, b: mj.fit(a, b, Weibull()))(Xs, ys)
    np.testing.assert_allclose(batch.params[0], one.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batch.params[1], one.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batch.stderr[0], one.stderr, rtol=1e-8)
    padded = mj.fit(X[:-3], y[:-3], Weibull(), buckets=True)
    plain = mj.fit(X[:-3], y[:-3], Weibull())
    np.testing.assert_allclose(padded.params, plain.params, rtol=1e-9, atol=1e-12)
    assert float(padded.nobs) == X.shape[0] - 3


def test_user_family_without_log_prob_is_a_clear_error():
    @dataclasses.dataclass(frozen=True)
    class Empty(mj.families.Family):
        pass

    with pytest.raises(NotImplementedError, match="must define log_prob"):
        mj.fit(np.ones((4, 1)), np.ones(4), Empty())


def test_optax_lbfgs_transform_is_a_solver():
    rng = np.random.default_rng(3)
    X = mj.add_constant(rng.normal(size=(200, 2)))
    y = (rng.random(200) < 1 / (1 + np.exp(-X @ [0.3, 1.0, -0.5]))).astype(float)
    ref = mj.fit(X, y, mj.families.Bernoulli())
    res = mj.fit(
        X, y, mj.families.Bernoulli(), solver=optax.lbfgs(), max_iter=60, tol=1e-8
    )
    assert bool(res.converged), res.reason
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-6, atol=1e-7)
    chained = optax.chain(optax.scale_by_adam(), optax.scale(-0.05))
    # 50 Adam steps stop short of the MLE: finite, and honestly not converged
    with pytest.warns(mj.ConvergenceWarning):
        res2 = mj.fit(X, y, mj.families.Bernoulli(), solver=chained, max_iter=50)
    assert np.all(np.isfinite(res2.params)) and not bool(res2.converged)


def test_laplace_lbfgs_gets_expected_information_stderr():
    rng = np.random.default_rng(5)
    X = mj.add_constant(rng.normal(size=(400, 2)))
    y = X @ [1.0, 2.0, -1.0] + rng.laplace(size=400)
    ref = mj.fit(X, y, mj.families.Laplace())  # exact LAD
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mj.ConvergenceWarning)  # kink at the optimum
        res = mj.fit(X, y, mj.families.Laplace(), solver="lbfgs", max_iter=500)
    assert np.all(np.isfinite(res.stderr))
    # b^2 (X'X)^-1 at nearly the same b: the same to the optimisation error
    np.testing.assert_allclose(res.stderr, ref.stderr, rtol=2e-2)
    np.testing.assert_allclose(
        res.extra_stderr["scale"], ref.extra_stderr["scale"], rtol=2e-2
    )
    b = float(res.extra["scale"])
    XtX_inv = np.linalg.inv(X.T @ X)
    np.testing.assert_allclose(res.stderr, b * np.sqrt(np.diag(XtX_inv)), rtol=1e-8)


def test_grad_through_fit_is_the_implicit_derivative():
    # Poisson with its canonical link: the score X'(y - mu) = 0 gives
    # d beta / d y = (X' diag(mu) X)^{-1} X' in closed form (mu from statsmodels);
    # a normal mean: d mean / d x_i = 1 / n. Full checks: tests/test_implicit.py.
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(1)
    X = mj.add_constant(rng.normal(size=(50, 1)))
    y = rng.poisson(2.0, 50).astype(float)

    def f(yy):
        return mj.fit(X, yy, mj.families.Poisson()).params[1]

    mu = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-14).mu
    closed = np.linalg.solve(X.T @ (mu[:, None] * X), X.T)[1]
    np.testing.assert_allclose(jax.grad(f)(jnp.asarray(y)), closed, rtol=1e-9)
    g = jax.grad(
        lambda x: (
            mj.fit_likelihood(
                lambda th, x: jnp.sum(stats_norm_logpdf(x, th)), jnp.array(0.0), x
            ).params
        )
    )(jnp.asarray(y))
    np.testing.assert_allclose(g, np.full(50, 1 / 50), rtol=1e-12)


def stats_norm_logpdf(x, mu):
    return -0.5 * (x - mu) ** 2


def test_jit_with_captured_concrete_X_and_traced_offset():
    rng = np.random.default_rng(2)
    X = jnp.asarray(mj.add_constant(rng.normal(size=(60, 1))))
    y = jnp.asarray(rng.poisson(3.0, 60).astype(float))
    fam = mj.families.Poisson()
    off = jnp.asarray(rng.normal(size=60) * 0.1)
    res = jax.jit(lambda o: mj.fit(X, y, fam, offset=o))(off)
    ref = mj.fit(X, y, fam, offset=off)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-10)
    assert int(res.status) == 0


def test_invalid_y_under_jit_is_reported_as_invalid_input():
    X = jnp.asarray(mj.add_constant(np.linspace(-1, 1, 20)))
    y = jnp.asarray((np.arange(20) % 2).astype(float)).at[3].set(3.0)
    res = jax.jit(lambda X, y: mj.fit(X, y, mj.families.Bernoulli()))(X, y)
    assert not bool(res.converged)
    assert int(res.status) == mj.Status.INVALID_INPUT
    assert "invalid input" in res.reason


def test_mlejax_fit_is_the_module_and_callable():
    import importlib

    mod = importlib.import_module("mlejax.fit")
    assert mod is sys.modules["mlejax.fit"]
    assert callable(mj.fit) and hasattr(mod, "fit_likelihood")
    import mlejax.fit as fit_module

    assert fit_module is mod


def test_batched_result_indexes_and_summarises():
    rng = np.random.default_rng(4)
    Xs = jnp.asarray(np.stack([mj.add_constant(rng.normal(size=(40, 1)))] * 3))
    ys = jnp.asarray(rng.poisson(2.0, (3, 40)).astype(float))
    batch = jax.vmap(lambda X, y: mj.fit(X, y, mj.families.Poisson()))(Xs, ys)
    assert batch.batch_shape == (3,) and len(batch) == 3
    one = batch[1]
    ref = mj.fit(Xs[1], ys[1], mj.families.Poisson())
    np.testing.assert_allclose(one.params, ref.params, rtol=1e-10)
    assert "const" not in one.summary() and "x1" in one.summary()
    s = batch.summary()
    assert "res[i]" in s and "3" in s
    assert batch.reason == ["converged"] * 3
    with pytest.raises(TypeError, match="single fit"):
        ref[0]


def test_status_is_one_table():
    assert [int(s) for s in mj.Status] == list(range(len(mj.Status)))
    assert mj.status.reason(99) == "unknown status 99"


# ---------------------------------------------------------------------------
# the layers, checked on the source
# ---------------------------------------------------------------------------
LIB = ROOT / "mlejax"
FAMILY_CLASSES = set(mj.families.__all__) - {"STUDENT_T_DF_MAX", "Family"}


def _sources():
    return sorted(p for p in LIB.rglob("*.py"))


def test_no_module_over_500_lines_and_fit_only_wires():
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
        for p in _sources()
    }
    assert max(sizes.values()) <= 500, sizes
    assert sizes["mlejax/fit.py"] < 300  # wiring plus the public docstring


def test_no_isinstance_or_hasattr_on_families_outside_families():
    for path in _sources():
        if path.parent.name == "families":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "isinstance" and len(node.args) == 2:
                names = {
                    n.attr
                    for n in ast.walk(node.args[1])
                    if isinstance(n, ast.Attribute)
                }
                names |= {
                    n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)
                }
                assert not (names & FAMILY_CLASSES), f"{path}:{node.lineno}"
            if node.func.id == "hasattr" and node.args:
                arg = node.args[0]
                assert not (isinstance(arg, ast.Name) and arg.id == "family"), (
                    f"{path}:{node.lineno}"
                )


def test_import_mlejax_pulls_in_no_application_code():
    code = (
        "import sys, mlejax; bad = [m for m in ('experiments', 'matplotlib', 'rich',"
        " 'configs') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"MLEJAX_COMPILATION_CACHE": "0", "PATH": ""},
    )
    assert out.returncode == 0, out.stdout + out.stderr
