"""Special functions and small helpers of the built-in families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

#: above this r = 1/alpha the NegativeBinomial uses Stirling's series
_NB_STIRLING_R = 100.0


def _stirling_tail(z: jax.Array) -> jax.Array:
    """``lgamma(z) - [(z - 1/2) log z - z + log(2 pi)/2]`` for large ``z``."""
    w = 1.0 / (z * z)
    return (1 / 12 - w * (1 / 360 - w / 1260)) / z


def _n_dtype(y) -> tuple[int, jnp.dtype]:
    return jnp.shape(y)[0], jnp.result_type(jnp.asarray(y), float)


def _wmean(x: jax.Array, w) -> jax.Array:
    """Mean of ``x`` over rows, frequency-weighted by ``w`` when given.

    Rows with weight 0 contribute exactly nothing (not even a non-finite ``x``).
    """
    if w is None:
        return jnp.mean(x)
    return jnp.sum(jnp.where(w > 0, w * x, 0.0)) / jnp.sum(w)


def _lgamma_half_step(x: jax.Array) -> jax.Array:
    """``lgamma(x + 1/2) - lgamma(x)``, without cancellation for large x.

    The difference of two ``lgamma`` values of size ``x log x`` loses about
    ``eps * x log x`` (1e-9 at x = 1e6, everything at x = 1e17); above x = 20 the
    asymptotic series ``log(x)/2 - 1/(8x) + 1/(192x^3) - ...`` (five terms,
    relative error < 1e-18 there) is used instead.
    """
    big = x > 20.0
    xb = jnp.where(big, x, 20.0)  # keeps the branch not taken finite
    w = 1.0 / (xb * xb)
    poly = 1 / 8 - w * (1 / 192 - w * (1 / 640 - w * (17 / 14336 - w * (31 / 18432))))
    return jnp.where(big, 0.5 * jnp.log(xb) - poly / xb, gammaln(x + 0.5) - gammaln(x))
