"""NLL = a * n * loss + b, in value and gradient, for the five families with a loss.

The constants ``a`` and ``b`` are written out here from the textbook densities,
never taken from the code under test:

* Gaussian: ``-log p = (y - eta)^2 / (2 sigma^2) + log(2 pi sigma^2) / 2``, and
  mse is ``mean((eta - y)^2)``: ``a = 1 / (2 sigma^2)``,
  ``b = (n / 2) log(2 pi sigma^2)``.
* Bernoulli: ``-log p = softplus(eta) - y eta`` = the BCE term: ``a = 1, b = 0``.
* Categorical: ``-log p = logsumexp([0, eta]) - [0, eta]_y`` = the CE term
  with logits ``[0, eta]``: ``a = 1, b = 0``.
* Poisson: ``-log p = exp(eta) - y eta + log(y!)``, and poisson_nll drops
  ``log(y!)``: ``a = 1, b = sum log(y_i!)``.
* Laplace: ``-log p = |y - eta| / s + log(2 s)``: ``a = 1 / s``,
  ``b = n log(2 s)``.

The NLL itself is also checked against scipy.stats, so that both sides of the
identity are anchored outside the library.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp
from problems import EPS, LOSS_FAMILY_NAMES, assert_within, roundoff
from scipy.special import softmax

import mlejax as mj

F = mj.families
EQ = mj.equivalence
P = 3  # coefficients per linear predictor


def textbook_constants(name, y, scale=None):
    """(a, b) from the densities in the module docstring."""
    n = len(y)
    if name == "Gaussian":
        return 1 / (2 * scale**2), n / 2 * math.log(2 * math.pi * scale**2)
    if name in ("Bernoulli", "Categorical"):
        return 1.0, 0.0
    if name == "Poisson":  # log(y!) summed exactly over the integers
        return 1.0, sum(math.log(math.factorial(int(v))) for v in y)
    if name == "Laplace":
        return 1 / scale, n * math.log(2 * scale)
    raise AssertionError(name)


def scipy_nll(name, y, eta, scale=None):
    if name == "Gaussian":
        return -st.norm.logpdf(y, eta, scale).sum()
    if name == "Bernoulli":
        return -st.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta))).sum()
    if name == "Categorical":
        p = softmax(np.column_stack([np.zeros(len(y)), eta]), axis=1)
        return -np.log(p[np.arange(len(y)), y.astype(int)]).sum()
    if name == "Poisson":
        return -st.poisson.logpmf(y, np.exp(eta)).sum()
    if name == "Laplace":
        return -st.laplace.logpdf(y, eta, scale).sum()
    raise AssertionError(name)


def make_case(name, X, beta, rng_seed):
    """(family, y, extra) drawn from the family at eta = X @ beta."""
    rng = np.random.default_rng(rng_seed)
    eta = X @ beta
    n = X.shape[0]
    if name == "Gaussian":
        return F.Gaussian(), eta + 0.7 * rng.normal(size=n), {"scale": 0.7}
    if name == "Bernoulli":
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(np.float64)
        return F.Bernoulli(), y, {}
    if name == "Categorical":
        p = softmax(np.column_stack([np.zeros(n), eta]), axis=1)
        y = np.array([rng.choice(p.shape[1], p=row) for row in p], np.float64)
        return F.Categorical(eta.shape[1] + 1), y, {}
    if name == "Poisson":
        return F.Poisson(), rng.poisson(np.exp(eta)).astype(np.float64), {}
    if name == "Laplace":
        return F.Laplace(), eta + rng.laplace(scale=1.4, size=n), {"scale": 1.4}
    raise AssertionError(name)


LOSS_FAMILIES = list(LOSS_FAMILY_NAMES)


def _beta(name, beta):
    # Categorical(3): one coefficient column per non-reference class
    return np.column_stack([beta, -0.5 * beta[::-1]]) if name == "Categorical" else beta


def identity_parts(fam, X, y, beta, extra):
    """NLL and a*n*loss+b with the textbook (a, b), and their gradients."""
    a, b = textbook_constants(fam.name, y, extra.get("scale"))
    return _identity_parts(fam, X, y, beta, extra, a, b)


@functools.partial(jax.jit, static_argnums=0)
def _identity_parts(fam, X, y, beta, extra, a, b):
    n = y.shape[0]

    def nll(beta):
        return EQ.nll(fam, y, X @ beta, **extra)

    def affine_loss(beta):
        return a * n * EQ.loss(fam, y, X @ beta) + b

    eta = X @ beta
    g_eta_nll = jax.grad(lambda e: EQ.nll(fam, y, e, **extra))(eta)
    g_eta_loss = jax.grad(lambda e: a * n * EQ.loss(fam, y, e) + b)(eta)
    return (
        (nll(beta), affine_loss(beta)),
        (g_eta_nll, g_eta_loss),
        (jax.grad(nll)(beta), jax.grad(affine_loss)(beta)),
    )


def _assert_gradients_agree(X, eta_grads, beta_grads):
    """The two gradients agree to 1e-12 relative, or to rounding where they cancel.

    d/d eta per row: no sums, a few operations on terms of size ``max|g|``.
    d/d beta = X^T g: a sum of n terms bounded by ``|X|^T |g|``.
    """
    (ge_nll, ge_loss), (gb_nll, gb_loss) = eta_grads, beta_grads
    ge = np.asarray(ge_nll)
    np.testing.assert_allclose(
        ge_nll, ge_loss, rtol=1e-12, atol=roundoff(1, np.abs(ge).max())
    )
    terms = (np.abs(X).T @ np.abs(ge).reshape(len(X), -1)).reshape(np.shape(gb_nll))
    tol = 1e-12 * np.abs(np.asarray(gb_loss)) + roundoff(len(X), terms)
    assert_within(gb_nll, gb_loss, tol)


@pytest.mark.parametrize("name", LOSS_FAMILIES)
def test_nll_is_affine_in_the_loss(name, small_design):
    X, beta = small_design
    beta = _beta(name, beta)
    fam, y, extra = make_case(name, X, beta, rng_seed=11)
    assert fam.loss_name is not None
    (nll, affine), (ge_nll, ge_loss), (gb_nll, gb_loss) = identity_parts(
        fam, X, y, beta, extra
    )
    np.testing.assert_allclose(nll, affine, rtol=1e-12)
    _assert_gradients_agree(X, (ge_nll, ge_loss), (gb_nll, gb_loss))
    # and the NLL is the one scipy.stats gives
    np.testing.assert_allclose(
        nll, scipy_nll(name, y, X @ beta, extra.get("scale")), rtol=1e-12
    )


@pytest.mark.parametrize("name", LOSS_FAMILIES)
def test_affine_constants_are_the_textbook_ones(name, small_design):
    X, beta = small_design
    fam, y, extra = make_case(name, X, _beta(name, beta), rng_seed=5)
    a, b = EQ.affine_constants(fam, y, **extra)
    want_a, want_b = textbook_constants(name, y, extra.get("scale"))
    # a: one division; b: a sum of n log-factorials / logs, each a few ulp off
    np.testing.assert_allclose(a, want_a, rtol=16 * EPS)
    np.testing.assert_allclose(b, want_b, rtol=roundoff(len(y)), atol=1e-300)
    assert a > 0


@pytest.mark.parametrize("name", LOSS_FAMILIES)
def test_compare_reports_tiny_deviations(name, small_design):
    X, beta = small_design
    beta = _beta(name, beta)
    fam, y, extra = make_case(name, X, beta, rng_seed=23)
    out = jax.jit(EQ.compare, static_argnums=0)(fam, X, y, beta, **extra)
    want_a, want_b = textbook_constants(name, y, extra.get("scale"))
    np.testing.assert_allclose(out["a"], want_a, rtol=16 * EPS)
    np.testing.assert_allclose(out["b"], want_b, rtol=roundoff(len(y)), atol=1e-300)
    np.testing.assert_allclose(
        out["nll"], scipy_nll(name, y, X @ beta, extra.get("scale")), rtol=1e-12
    )
    assert out["value_dev"] <= 1e-12 * abs(out["nll"])
    assert out["grad_eta_dev"] <= 1e-12 * out["grad_eta_scale"]
    assert out["grad_beta_dev"] <= 1e-12 * out["grad_beta_scale"]


@pytest.mark.parametrize("name", LOSS_FAMILIES)
@given(
    shift=hnp.arrays(np.float64, P, elements=hs.floats(-3.0, 3.0)),
    scale=hs.floats(0.05, 20.0),
)
def test_identity_holds_for_any_coefficients_and_scale(
    name, small_design, shift, scale
):
    X, beta = small_design
    beta = _beta(name, beta + shift)
    fam, y, extra = make_case(name, X, _beta(name, small_design[1]), rng_seed=3)
    if "scale" in extra:
        extra = {"scale": scale}
    (nll, affine), (ge_nll, ge_loss), (gb_nll, gb_loss) = identity_parts(
        fam, X, y, beta, extra
    )
    np.testing.assert_allclose(nll, affine, rtol=1e-12)
    np.testing.assert_allclose(
        ge_nll, ge_loss, rtol=1e-12, atol=1e-12 * np.abs(ge_nll).max()
    )
    np.testing.assert_allclose(
        gb_nll, gb_loss, rtol=1e-12, atol=1e-12 * np.abs(gb_nll).max()
    )


def test_laplace_gradient_identity_holds_at_zero_residuals(small_design):
    # LAD fits interpolate p rows exactly; there dNLL/deta must equal a*n*dl1/deta
    # small integers and dyadic coefficients: X @ beta is exact in any order
    X = np.random.default_rng(4).integers(-3, 4, (12, P)).astype(np.float64)
    beta = np.array([0.5, -0.25, 1.0])
    fam, y, extra = make_case("Laplace", X, beta, rng_seed=2)
    y[:3] = (X @ beta)[:3]  # three exact zero residuals
    (nll, affine), (ge_nll, ge_loss), (gb_nll, gb_loss) = identity_parts(
        fam, X, y, beta, extra
    )
    np.testing.assert_allclose(nll, affine, rtol=1e-12)
    np.testing.assert_array_equal(ge_nll[:3], 0.0)
    _assert_gradients_agree(X, (ge_nll, ge_loss), (gb_nll, gb_loss))


def test_least_squares_zeroes_both_gradients(small_design):
    # the same stationary point: least squares solves both the MSE and the NLL
    X, beta = small_design
    fam, y, extra = make_case("Gaussian", X, beta, rng_seed=9)
    beta_hat = np.linalg.lstsq(X, y, rcond=None)[0]
    g_nll = jax.grad(lambda b: EQ.nll(fam, y, X @ b, **extra))(beta_hat)
    g_loss = jax.grad(lambda b: EQ.loss(fam, y, X @ b))(beta_hat)
    assert np.abs(g_nll).max() < 1e-12 and np.abs(g_loss).max() < 1e-12


def test_categorical_loss_input_is_zero_then_eta():
    eta = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_array_equal(
        EQ.loss_input(F.Categorical(3), eta), [[0.0, 1.0, -2.0], [0.0, 0.5, 3.0]]
    )
    np.testing.assert_array_equal(EQ.loss_input(F.Poisson(), eta[:, 0]), eta[:, 0])


NO_LOSS = [
    F.Binomial(),
    F.StudentT(),
    F.StudentT(df=3.0),
    F.Gamma(),
    F.NegativeBinomial(),
]


@pytest.mark.parametrize("fam", NO_LOSS, ids=lambda f: repr(f))
def test_families_without_a_loss_raise(fam, small_design):
    X, beta = small_design
    y = np.ones(X.shape[0])
    assert fam.loss_name is None
    with pytest.raises(
        ValueError, match=rf"^{fam.name} has no classic machine-learning loss"
    ):
        EQ.affine_constants(fam, y)
    with pytest.raises(
        ValueError, match=rf"^{fam.name} has no classic machine-learning loss"
    ):
        EQ.loss(fam, y, X @ beta)
    with pytest.raises(
        ValueError, match=rf"^{fam.name} has no classic machine-learning loss"
    ):
        EQ.compare(fam, X, y, beta)
