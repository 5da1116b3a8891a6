"""Exact power-of-two column scaling for designs with columns of extreme size.

A column beyond about 1e+-154 has squares (its information) outside the
float64 range. Multiplying it by a power of two is exact, and the fit of
``X * s`` is the fit of ``X`` with coefficients (and their standard errors)
multiplied by ``s``; the eager ``fit`` path uses this.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mlejax import linalg
from mlejax.result import FitResult

__all__ = ["column_scales", "unscale"]


#: columns whose largest entry (in the first rows) lies outside 2^+-SCALE_EXP are
#: fitted after an exact power-of-two rescaling: beyond about 1e+-154 their
#: squares (the information) leave the float64 range.
SCALE_EXP = 100
_SCALE_ROWS = 4096


def column_scales(X) -> jax.Array | None:
    """Powers of two for columns of extreme magnitude, or None (the usual case).

    Judged on the first rows only (no pass over a large X); the scale need not
    be precise, only a power of two that brings the column near 1.
    """
    head = np.asarray(X[:_SCALE_ROWS])
    s = linalg.pow2_column_scales(head)
    e = np.abs(np.frexp(s)[1] - 1)
    if not (e > SCALE_EXP).any() or not np.isfinite(s).all():
        return None
    s = np.where(e > SCALE_EXP, s, 1.0).astype(head.dtype)
    return jnp.asarray(s)


def unscale(res: FitResult, s: jax.Array) -> FitResult:
    """The fit of ``X`` from the fit of ``X * s``: coefficients times ``s``."""
    sp = s.reshape((-1,) + (1,) * (jnp.ndim(res.params) - 1))
    flat = jnp.broadcast_to(sp, jnp.shape(res.params)).ravel()
    return res.replace(
        params=res.params * sp,
        stderr=res.stderr * sp,
        cov=res.cov * flat[:, None] * flat[None, :],
    )
