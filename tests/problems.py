"""Shared test problems, family lists and comparison helpers.

One place for what several test files need, so that every file fits the same
shapes (each new shape is one more compile) and compares numbers the same way:

* ``FAMILY_NAMES`` / ``LOSS_FAMILY_NAMES``: the nine built-in families, and the
  five whose negative log-likelihood is a classic machine-learning loss.
* ``glm_problems(n, seed)``: one well-posed ``n x 3`` problem per family.
* ``rel`` / ``rel_norm``: elementwise and normwise relative differences from a
  reference; ``roundoff``: a rounding-error bound ``k * n * eps * scale`` for a
  quantity computed two ways (a sum of ``n`` terms of size ``scale``), so that
  a tolerance says where it comes from instead of being a bare ``1e-15``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import mlejax as mj

EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)

FAMILY_NAMES = (
    "Gaussian",
    "Bernoulli",
    "Binomial",
    "Categorical",
    "Poisson",
    "Laplace",
    "StudentT",
    "Gamma",
    "NegativeBinomial",
)
#: families with a classic loss (``family.loss_name is not None``)
LOSS_FAMILY_NAMES = ("Gaussian", "Bernoulli", "Categorical", "Poisson", "Laplace")
#: the coefficients every ``glm_problems`` problem is drawn from
BETA = np.array([0.3, -0.6, 0.4])


class Problem(NamedTuple):
    """``(family, X, y, kw)``; ``kw`` holds ``trials`` for Binomial, else empty."""

    family: object
    X: np.ndarray
    y: np.ndarray
    kw: dict


def glm_problems(
    n: int = 20, seed: int = 20261124, *, min_trials: int = 2
) -> dict[str, Problem]:
    """name -> ``Problem``: one well-posed ``n x 3`` problem per family.

    ``X`` is an intercept plus two standard-normal columns, shared by every
    family; ``y`` is drawn at ``eta = X @ BETA``. Every problem has a finite
    MLE (no separation): the Categorical labels cycle ``0, 1, 2, 1, 0`` so no
    class is isolated (``n`` must be a multiple of 5). ``min_trials=0`` gives
    the Binomial some rows with zero trials.
    """
    if n % 5:
        raise ValueError(f"n must be a multiple of 5; got {n}")
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    eta = X @ BETA
    mu = np.exp(eta)
    p1 = 1.0 / (1.0 + np.exp(-eta))
    trials = rng.integers(min_trials, 9, n).astype(np.float64)
    f = mj.families
    yb = (rng.uniform(size=n) < p1).astype(np.float64)
    ycat = np.tile([0.0, 1.0, 2.0, 1.0, 0.0], n // 5)
    return {
        "Gaussian": Problem(f.Gaussian(), X, eta + rng.normal(size=n), {}),
        "Bernoulli": Problem(f.Bernoulli(), X, yb, {}),
        "Binomial": Problem(
            f.Binomial(),
            X,
            rng.binomial(trials.astype(int), p1).astype(np.float64),
            {"trials": trials},
        ),
        "Categorical": Problem(f.Categorical(3), X, ycat, {}),
        "Poisson": Problem(f.Poisson(), X, rng.poisson(mu).astype(np.float64), {}),
        "Laplace": Problem(f.Laplace(), X, eta + rng.laplace(size=n), {}),
        "StudentT": Problem(f.StudentT(), X, eta + rng.standard_t(3, n), {}),
        "Gamma": Problem(f.Gamma(), X, rng.gamma(3.0, mu / 3.0), {}),
        "NegativeBinomial": Problem(
            f.NegativeBinomial(),
            X,
            rng.negative_binomial(2, 1 / (1 + 0.5 * mu)).astype(np.float64),
            {},
        ),
    }


def rel(a, b) -> float:
    """Max elementwise relative difference of ``a`` from the reference ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def rel_norm(a, b) -> float:
    """Normwise relative difference ``max|a - b| / max|b|`` from the reference ``b``.

    For vectors whose small entries are only known to the accuracy of the large
    ones (a least-squares or LP solution).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def roundoff(n: int = 1, scale=1.0, *, k: float = 16.0, eps: float = EPS):
    """``k * n * eps * scale``: room for rounding in a sum of ``n`` terms of ``scale``.

    Two correct computations of the same sum (another order, fused multiply-add
    or not, another SIMD width) differ by at most about ``n * eps`` times the
    sum of the absolute terms; ``k`` is the margin. A wrong formula misses by
    far more.
    """
    return k * n * eps * np.asarray(scale, np.float64)


def assert_within(actual, desired, tol) -> None:
    """``|actual - desired| <= tol`` elementwise (``tol`` may be an array)."""
    actual = np.asarray(actual, np.float64)
    desired = np.asarray(desired, np.float64)
    err = np.abs(actual - desired)
    tol = np.broadcast_to(np.asarray(tol, np.float64), err.shape)
    bad = ~(err <= tol)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise AssertionError(
            f"{bad.sum()} of {bad.size} differ; first at flat index {i}: "
            f"actual {actual.ravel()[i]!r}, desired {desired.ravel()[i]!r}, "
            f"|diff| {err.ravel()[i]:.3e} > tol {tol.ravel()[i]:.3e}"
        )
