"""What every least-squares path returns, and how it names the path it took."""

from __future__ import annotations

from typing import NamedTuple

import jax

#: ``LstsqParts.route``: Householder QR (chosen by shape); the tall path with
#: working-precision sweeps only; the tall path that also needed the accurate
#: sweeps; the tall path with ``R`` from a Householder QR (decided at run time:
#: too ill-conditioned for the Cholesky factor of the Gram).
ROUTE_HOUSEHOLDER, ROUTE_TALL, ROUTE_TALL_ACCURATE, ROUTE_TALL_QR = 0, 1, 2, 3


class LstsqParts(NamedTuple):
    """What the jitted least-squares core returns."""

    beta: jax.Array  # (p,)
    resid: jax.Array  # (n,) weighted residuals sqrt(w) * (y - offset - X beta)
    rss: jax.Array  # scalar, accurately summed
    xtx_inv: jax.Array  # (p, p) (X' W X)^{-1}
    r_eq: jax.Array  # (p, p) R of the equilibrated design (for rank checks)
    route: jax.Array | int = 0  # ROUTE_*: which path produced the answer


def unscaled_inverse_gram(r_inv: jax.Array, d: jax.Array) -> jax.Array:
    """``(X'X)^{-1} = D R^{-1} R^{-T} D`` from ``R^{-1}`` of ``A = X D = QR``."""
    return (d[:, None] * (r_inv @ r_inv.T)) * d[None, :]
