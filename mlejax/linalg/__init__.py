"""Accurate least squares and rank: the reference every Gaussian fit meets.

:func:`lstsq_core` solves ``min ||y - X b||`` by

1. exact column equilibration (each column scaled by a power of two, so the
   scaling itself rounds nothing: ``mlejax._math.pow2_scale``),
2. Householder QR of the equilibrated design (:mod:`.householder`),
3. iterative refinement: residuals ``r = y - X b`` accumulated with error-free
   transformations (TwoProduct/TwoSum, i.e. Ogita-Rump-Oishi ``Dot2``, about
   twice the working precision), then ``b += R^{-1} Q^T r``.

Tall designs (``n >= TALL_MIN_ROWS`` and ``n >= TALL_MIN_RATIO * p``, a static
choice by shape) take a faster path with the same accuracy target
(:mod:`.tall`): the Gram matrix of the equilibrated design in one blocked
pass, its Cholesky factor, then corrected semi-normal equations, refined in
working precision while an error estimate says that is good to
``TALL_REL_TOL`` and with Dot2 residuals otherwise; designs too
ill-conditioned for the Cholesky factor take ``R`` from a Householder QR
instead (decided at run time by ``lax.cond``). Both paths read the data by row
blocks (:mod:`.blocks`).

Rank is judged on the host, scale-free, on an equilibrated factor ``R``
(:mod:`.rank`): a badly scaled but full-rank design is accepted, a numerically
rank-deficient one (``|R_kk| < RANK_RTOL * max|R_jj|`` after pivoting) is a
``ValueError`` naming the collinear columns.

References:
  NIST StRD linear regression, https://www.itl.nist.gov/div898/strd/
  Ogita, Rump & Oishi (2005), Accurate sum and dot product, SIAM J. Sci. Comput.
  Björck (1996), Numerical Methods for Least Squares Problems, sec. 2.9.
"""

from mlejax.linalg.lstsq import TALL_MIN_RATIO, TALL_MIN_ROWS, lstsq_core
from mlejax.linalg.parts import (
    ROUTE_HOUSEHOLDER,
    ROUTE_TALL,
    ROUTE_TALL_ACCURATE,
    ROUTE_TALL_QR,
    LstsqParts,
)
from mlejax.linalg.rank import (
    RANK_RTOL,
    check_rank,
    collinear_columns,
    pow2_column_scales,
    rank_deficient,
    rank_error,
)
from mlejax.linalg.tall import (
    TALL_COV_KAPPA2_EPS,
    TALL_MAX_ACC_SWEEPS,
    TALL_MAX_KAPPA2_EPS,
    TALL_REL_TOL,
)

__all__ = [
    "rank_deficient",
    "LstsqParts",
    "lstsq_core",
    "collinear_columns",
    "rank_error",
    "check_rank",
    "pow2_column_scales",
    "RANK_RTOL",
    "ROUTE_HOUSEHOLDER",
    "ROUTE_TALL",
    "ROUTE_TALL_ACCURATE",
    "ROUTE_TALL_QR",
    "TALL_MIN_ROWS",
    "TALL_MIN_RATIO",
    "TALL_MAX_KAPPA2_EPS",
    "TALL_COV_KAPPA2_EPS",
    "TALL_REL_TOL",
    "TALL_MAX_ACC_SWEEPS",
]
