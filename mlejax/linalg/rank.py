"""Host-side rank diagnosis, judged scale-free on an equilibrated factor ``R``.

A badly scaled but full-rank design is accepted; a numerically rank-deficient
one (``|R_kk| < RANK_RTOL * max|R_jj|`` after equilibration and pivoting) is
a ``ValueError`` naming a set of collinear columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

#: relative size of a pivoted diagonal of the equilibrated R below which the
#: design counts as rank-deficient (equilibrated condition number above 1e11).
RANK_RTOL = 1e-11


def collinear_columns(
    r_eq: ArrayLike, names: Sequence[str] | None = None, rtol: float = RANK_RTOL
) -> list[str] | None:
    """Names of a collinear set of columns from an R factor of the design (host side).

    ``R``'s columns are re-equilibrated (they have the norms of the design's
    columns), then factored again by pivoted QR.

    Returns:
      ``None`` when the design is numerically full rank. Otherwise the columns
      that take part in one exact linear dependency (a null vector of R); all
      columns if R is not finite; the zero columns if there are any.
    """
    R = np.asarray(r_eq, dtype=np.float64)
    p = R.shape[1]
    names = list(names) if names is not None else [f"x{j}" for j in range(p)]
    if not np.isfinite(R).all():
        return names
    norms = np.linalg.norm(R, axis=0)
    if (norms == 0).any():
        return [names[j] for j in np.flatnonzero(norms == 0)]
    _, R2, piv = scipy.linalg.qr(R / norms, pivoting=True)
    diag = np.abs(np.diag(R2))
    rank = int(np.sum(diag > rtol * diag[0]))
    if rank == p:
        return None
    # Null vector for the first dependent column: R11 c = R12[:, 0].
    c = scipy.linalg.solve_triangular(R2[:rank, :rank], R2[:rank, rank])
    v = np.zeros(p)
    v[piv[:rank]] = -c
    v[piv[rank]] = 1.0
    involved = np.flatnonzero(np.abs(v) > 1e-8 * np.abs(v).max())
    return [names[j] for j in sorted(involved)]


def pow2_column_scales(X: np.ndarray) -> np.ndarray:
    """Per-column powers of two near ``1/max|x_j|`` (1 for zero columns), host side.

    Multiplying by them is exact (exponents only, barring underflow), so a fit
    of ``X * s`` is the fit of ``X`` with coefficients divided by ``s``.
    """
    m = np.max(np.abs(X), axis=0, initial=0.0) if X.shape[0] else np.zeros(X.shape[1])
    ok = np.isfinite(m) & (m > 0)
    _, e = np.frexp(np.where(ok, m, 1.0))
    return np.ldexp(np.ones_like(m, dtype=np.float64), np.where(ok, -e + 1, 0)).astype(
        X.dtype if X.dtype.kind == "f" else np.float64
    )


def rank_error(cols: list[str], p: int) -> ValueError:
    """The error for a rank-deficient design: which columns, and the fix."""
    return ValueError(
        "X is rank-deficient (judged after column equilibration): columns "
        f"{cols} are collinear (of {p}); drop one of them or reparametrise."
    )


def check_rank(Xc: np.ndarray, names: Sequence[str] | None) -> None:
    """Raise :func:`rank_error` if the concrete design ``Xc`` is rank-deficient.

    Scale-free (pivoted QR after column equilibration, see
    :func:`collinear_columns`), on the host, in float64. A design with fewer
    rows than columns is left alone (the caller reports that separately).

    Raises:
      ValueError: naming the collinear columns.
    """
    Xc = np.asarray(Xc, np.float64)
    p = Xc.shape[1]
    if Xc.shape[0] < p:
        return
    # powers of two first (exact): R's column norms of a column beyond 1e+-154
    # would overflow or underflow when squared
    R = np.linalg.qr(Xc * pow2_column_scales(Xc), mode="r")[:p]
    cols = collinear_columns(R, names)
    if cols is not None:
        raise rank_error(cols, p)


def rank_deficient(r_eq: jax.Array, rtol: float = RANK_RTOL) -> jax.Array:
    """Traced twin of :func:`collinear_columns`: whether R is numerically singular.

    The columns of ``R`` are re-equilibrated; the design is rank deficient when
    the smallest singular value is at most ``rtol`` times the largest (or R is
    not finite, or a column is zero). For fits under the caller's jit/vmap,
    where the host check cannot run.
    """
    norms = jnp.linalg.norm(r_eq, axis=0)
    ok = jnp.all(jnp.isfinite(r_eq)) & jnp.all(norms > 0)
    A = r_eq / jnp.where(norms > 0, norms, 1.0)[None, :]
    s = jnp.linalg.svd(jnp.where(ok, A, 0.0), compute_uv=False)
    return ~ok | (s[-1] <= rtol * s[0])
