"""Gaussian by accurate least squares (the Newton step of a Gaussian is exact)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from mlejax import linalg
from mlejax.engines import EngineResult
from mlejax.objective import GLMData
from mlejax.status import Status


def fit(family, data: GLMData) -> EngineResult:
    """OLS convention: ``cov = RSS / (n - p) (X'WX)^-1``; ``scale`` the MLE.

    Precision weights ``v`` (``y_i ~ N(mu_i, scale^2 / v_i)``): weighted least
    squares with ``W = w v`` (``w`` frequency weights, ``n = sum w``), as R's
    ``lm(weights=)``; the log-likelihood gains ``sum(w log v) / 2``.
    """
    X, y, w, offset, _, v = data
    n, p = X.shape
    nobs = jnp.sum(w)
    if v is not None:
        log_v = 0.5 * jnp.sum(jnp.where(w > 0, w * jnp.log(v), 0.0))
        w = w * v
    sw = jnp.sqrt(w)
    # y is scaled by a power of two (exact) so that residuals of y ~ 1e-160 do
    # not underflow nor those of y ~ 1e160 overflow when squared
    top = jnp.max(jnp.where(w > 0, jnp.abs(y - offset), 0.0))
    _, e = jnp.frexp(jnp.where(jnp.isfinite(top) & (top > 0), top, 1.0))
    s = jnp.ldexp(jnp.ones((), X.dtype), e)
    parts = linalg.lstsq_core(X, (y - offset) / s, sw)
    # An exact fit leaves residuals at the rounding level of y: call that zero.
    tiny = (
        nobs * jnp.finfo(X.dtype).eps * jnp.max(jnp.abs(sw * (y - offset) / s))
    ) ** 2
    rss = jnp.where(parts.rss <= tiny, 0.0, parts.rss)  # in units of s^2
    sigma = jnp.sqrt(rss / nobs) * s
    s2 = rss / (nobs - p)
    cov = (s2 * s) * s * parts.xtx_inv
    loglik = jnp.where(
        rss > 0,
        -0.5
        * nobs
        * (math.log(2 * math.pi) + jnp.log(rss / nobs) + 2 * jnp.log(s) + 1),
        jnp.inf,
    )
    if v is not None:
        loglik = loglik + log_v
    # exact fit: stderr 0 (cov is 0 up to rounding)
    stderr = jnp.where(sigma > 0, jnp.sqrt(s2 * jnp.diag(parts.xtx_inv)) * s, 0.0)
    # NaN/inf in X or y (possible only under the caller's jit/vmap), or a
    # singular X there: the solve is not finite, and that is no convergence
    finite = jnp.all(jnp.isfinite(parts.beta)) & jnp.isfinite(parts.rss)
    finite = finite & jnp.all(jnp.isfinite(stderr))
    # rank, judged in the trace too (eagerly, fit() names the columns on the host)
    singular = linalg.rank_deficient(parts.r_eq)
    return EngineResult(
        params=parts.beta * s,
        extra={"scale": sigma},
        extra_stderr={"scale": sigma / jnp.sqrt(2.0 * nobs)},
        cov=cov,
        stderr=stderr,
        loglik=loglik,
        n_iter=jnp.asarray(1),
        converged=finite & ~singular,
        status=jnp.where(
            singular,
            int(Status.RANK_DEFICIENT),
            jnp.where(finite, int(Status.CONVERGED), int(Status.NON_FINITE)),
        ),
        trace=jnp.full((1,), -loglik),
        r_eq=parts.r_eq,
    )
