"""Information -> covariance -> standard errors, the same for every path.

Every engine hands this layer an information matrix over all estimated
parameters (coefficients first, then the extras on their natural scale) and
gets back the covariance, the standard errors and the information criteria.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Inference(NamedTuple):
    cov: jax.Array  # covariance of the coefficients (nb x nb)
    stderr: jax.Array  # standard errors of the coefficients (nb,)
    extra_stderr: jax.Array  # standard errors of the extras (q,)


def inverse_information(info: jax.Array) -> jax.Array:
    """Inverse of a symmetric positive-definite information matrix.

    Equilibrated Cholesky: ``D (D I D)^{-1} D`` with ``D = diag(I)^{-1/2}``, so
    parameters on very different scales lose no accuracy. Not positive
    definite (an undetermined or saddle point) gives NaN, never a
    finite-looking answer; so does a numerically singular one (the smallest
    pivot of the equilibrated Cholesky at the rounding level).
    """
    diag = jnp.diag(info)
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
    L = jnp.linalg.cholesky(info * d[:, None] * d[None, :])
    k = info.shape[0]
    # Numerically singular (an exact collinearity leaves a pivot at the
    # rounding level, not always a failed Cholesky): NaN as well.
    tiny = jnp.min(jnp.diag(L)) ** 2 <= 64 * k * jnp.finfo(info.dtype).eps
    eye = jnp.eye(k, dtype=info.dtype)
    inv = jax.scipy.linalg.cho_solve((L, True), eye)
    return jnp.where(tiny, jnp.nan, inv * d[:, None] * d[None, :])


def natural_hessian(H: jax.Array, g: jax.Array, theta: jax.Array, nb: int) -> jax.Array:
    """Hessian in ``(beta, e)`` from the one in ``(beta, u = log e)`` (exact).

    ``g`` is the gradient in ``(beta, u)``; pass zeros for an expected
    information (the score has expectation zero).
    """
    q = theta.shape[0] - nb
    if not q:
        return H
    e = jnp.exp(theta[nb:])
    J = jnp.concatenate([jnp.ones(nb, H.dtype), 1.0 / e])
    Hn = H * J[:, None] * J[None, :]
    corr = jnp.concatenate([jnp.zeros(nb, H.dtype), g[nb:] / e**2])
    return Hn - jnp.diag(corr)


def from_information(info: jax.Array, nb: int, cov_scale=1.0) -> Inference:
    """Covariance and standard errors from the information over ``(beta, extra)``.

    ``cov_scale`` multiplies the coefficient covariance (Gaussian's OLS
    convention ``n / (n - p)``); the extras' standard errors are not scaled.
    """
    cov_full = inverse_information(info)
    se_full = jnp.sqrt(jnp.diag(cov_full))
    cov = cov_full[:nb, :nb] * cov_scale
    return Inference(cov, jnp.sqrt(jnp.diag(cov)), se_full[nb:])


def information_criteria(loglik, k, nobs):
    """``(aic, bic) = (-2 l + 2 k, -2 l + k log n)``."""
    return -2.0 * loglik + 2.0 * k, -2.0 * loglik + k * jnp.log(nobs)
