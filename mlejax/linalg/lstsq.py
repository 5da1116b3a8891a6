"""The jittable least-squares entry point: chooses the path by shape."""

from __future__ import annotations

import jax

from mlejax.linalg.householder import householder_lstsq
from mlejax.linalg.parts import LstsqParts
from mlejax.linalg.tall import tall_lstsq

#: ``method="auto"`` takes the tall path when ``n >= TALL_MIN_ROWS`` and
#: ``n >= TALL_MIN_RATIO * p`` (a static, shape-based choice).
TALL_MIN_ROWS = 4096
TALL_MIN_RATIO = 8


def lstsq_core(
    X: jax.Array,
    y: jax.Array,
    sqrt_w: jax.Array | None = None,
    n_refine: int = 3,
    method: str = "auto",
) -> LstsqParts:
    """Jittable accurate least squares of ``sqrt_w*y`` on ``sqrt_w*X``.

    Args:
      X: design, shape ``(n, p)``.
      y: response, shape ``(n,)``.
      sqrt_w: square roots of the row weights, shape ``(n,)``, or ``None``.
      n_refine: (static) refinement sweeps of the Householder path; on the tall
        path ``0`` asks for the factorisation only (no accurate sweeps).
      method: (static) ``"householder"`` (any shape), ``"tall"`` (Gram +
        Cholesky + refinement; ``R`` from a Householder QR instead, at run
        time, when the equilibrated design is too ill-conditioned for that), or
        ``"auto"``: ``"tall"`` when ``n >= TALL_MIN_ROWS`` and
        ``n >= TALL_MIN_RATIO * p``.

    Returns:
      :class:`LstsqParts`.

    Raises:
      ValueError: for an unknown ``method``.
    """
    n, p = X.shape
    if method == "auto":
        tall = n >= TALL_MIN_ROWS and n >= TALL_MIN_RATIO * p
        method = "tall" if tall else "householder"
    if method == "householder":
        return householder_lstsq(X, y, sqrt_w, n_refine)
    if method == "tall":
        return tall_lstsq(X, y, sqrt_w, n_refine)
    raise ValueError(f"method must be 'auto', 'householder' or 'tall'; got {method!r}.")
