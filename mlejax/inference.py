"""Inverse information -> covariance, standard errors, information criteria."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def inverse_information(info: jax.Array) -> jax.Array:
    """Inverse of a symmetric positive-definite information matrix.

    Equilibrated Cholesky: ``D (D I D)^{-1} D`` with ``D = diag(I)^{-1/2}``, so
    parameters on very different scales lose no accuracy. Not positive
    definite (an undetermined or saddle point) gives NaN, never a
    finite-looking answer.
    """
    diag = jnp.diag(info)
    d = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
    L = jnp.linalg.cholesky(info * d[:, None] * d[None, :])
    eye = jnp.eye(info.shape[0], dtype=info.dtype)
    inv = jax.scipy.linalg.cho_solve((L, True), eye)
    return inv * d[:, None] * d[None, :]


def information_criteria(loglik, k, nobs):
    """``(aic, bic) = (-2 l + 2 k, -2 l + k log n)``."""
    return -2.0 * loglik + 2.0 * k, -2.0 * loglik + k * jnp.log(nobs)


def stderr_from_cov(cov: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.diag(cov))
