"""Synthetic data drawn from the true model with a fixed NumPy seed.

Every design has a leading column of ones (the intercept) followed by standard
normal covariates. Coefficients are small (|eta| has standard deviation ~1), so
the classes overlap and the MLE exists (no separation).
"""

from __future__ import annotations

import numpy as np

SEED = 20240607


def _design(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    X = np.empty((n, p), dtype=np.float64)
    X[:, 0] = 1.0
    X[:, 1:] = rng.standard_normal((n, p - 1))
    return X


def _coef(rng: np.random.Generator, p: int) -> np.ndarray:
    # var(eta) = sum(beta[1:]^2) = 1 - intercept stays moderate
    beta = rng.standard_normal(p) / np.sqrt(max(p - 1, 1))
    beta[0] = 0.25
    return beta


def logistic(n: int, p: int, seed: int = SEED):
    rng = np.random.default_rng(seed)
    X = _design(rng, n, p)
    beta = _coef(rng, p)
    prob = 1.0 / (1.0 + np.exp(-(X @ beta)))
    y = (rng.random(n) < prob).astype(np.float64)
    return X, y, beta


def poisson(n: int, p: int, seed: int = SEED + 1):
    rng = np.random.default_rng(seed)
    X = _design(rng, n, p)
    beta = 0.5 * _coef(rng, p)  # var(eta) = 0.25: counts mostly 0..6
    y = rng.poisson(np.exp(X @ beta)).astype(np.float64)
    return X, y, beta


def least_squares(n: int, p: int, seed: int = SEED + 2):
    rng = np.random.default_rng(seed)
    X = _design(rng, n, p)
    beta = _coef(rng, p)
    y = X @ beta + rng.standard_normal(n)
    return X, y, beta


def many_logistic(m: int, n: int, p: int, seed: int = SEED + 3):
    """``m`` independent logistic data sets: X (m, n, p), y (m, n)."""
    rng = np.random.default_rng(seed)
    X = np.empty((m, n, p), dtype=np.float64)
    X[:, :, 0] = 1.0
    X[:, :, 1:] = rng.standard_normal((m, n, p - 1))
    beta = rng.standard_normal((m, p)) * 0.5 / np.sqrt(p - 1)
    beta[:, 0] = 0.25
    eta = np.einsum("mnp,mp->mn", X, beta)
    y = (rng.random((m, n)) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    return X, y, beta
