"""One shared NumPy log-likelihood per family, computed from coefficients.

Every method's final log-likelihood (mlejax's included) is recomputed here from
its coefficients, so all are compared the same way. All constants are included.
Sums use ``math.fsum`` on blocks of pairwise NumPy sums, which is accurate far
beyond the 1e-8 relative agreement that is checked.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

_BLOCK = 1 << 16


def _accurate_sum(v: np.ndarray) -> float:
    v = np.ravel(v)
    return math.fsum(float(np.sum(v[i : i + _BLOCK])) for i in range(0, v.size, _BLOCK))


def bernoulli(X: np.ndarray, y: np.ndarray, beta) -> float:
    """sum_i y_i eta_i - log(1 + exp(eta_i))."""
    eta = X @ np.asarray(beta, dtype=np.float64)
    return _accurate_sum(y * eta - np.logaddexp(0.0, eta))


def poisson(X: np.ndarray, y: np.ndarray, beta) -> float:
    """sum_i y_i eta_i - exp(eta_i) - log(y_i!)."""
    eta = X @ np.asarray(beta, dtype=np.float64)
    return _accurate_sum(y * eta - np.exp(eta) - gammaln(y + 1.0))


def gaussian(X: np.ndarray, y: np.ndarray, beta) -> float:
    """Profile log-likelihood at the MLE scale sigma^2 = RSS / n."""
    r = y - X @ np.asarray(beta, dtype=np.float64)
    n = y.shape[0]
    rss = _accurate_sum(r * r)
    return -0.5 * n * (math.log(2.0 * math.pi * rss / n) + 1.0)


def rel_diff(a: float, b: float) -> float:
    """|a - b| / max(|b|, tiny); inf when either is not finite."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-300)
