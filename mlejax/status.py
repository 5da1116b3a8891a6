"""Why a fit stopped: one table of reason codes, and the warnings mlejax raises.

Every solver and :func:`mlejax.fit` report a :class:`Status` (an ``IntEnum``,
stored as an integer array in ``FitResult.status`` so that it passes through
``jit``/``vmap``); ``FitResult.reason`` turns it back into words.

>>> from mlejax.status import Status, reason
>>> int(Status.SEPARATION), reason(4)
(4, 'separation: estimates diverge')
"""

from __future__ import annotations

import enum

__all__ = [
    "Status",
    "reason",
    "ConvergenceWarning",
    "PerfectSeparationWarning",
]


class Status(enum.IntEnum):
    """Reason codes stored in ``FitResult.status`` (0 is success)."""

    CONVERGED = 0
    MAX_ITER = 1
    LINE_SEARCH = 2
    NON_FINITE = 3
    SEPARATION = 4
    BOUND = 5
    INVALID_INPUT = 6
    RANK_DEFICIENT = 7
    NOT_MAXIMUM = 8
    EMPTY_CLASS = 9
    INVALID_MEAN = 10

    @property
    def reason(self) -> str:
        return _REASONS[self]


_REASONS = {
    Status.CONVERGED: "converged",
    Status.MAX_ITER: "max_iter reached",
    Status.LINE_SEARCH: "line search could not decrease the objective",
    Status.NON_FINITE: "non-finite objective, gradient or Newton step",
    Status.SEPARATION: "separation: estimates diverge",
    Status.BOUND: "a parameter at the boundary of its space (see the warning)",
    Status.INVALID_INPUT: (
        "invalid input under jit/vmap (non-finite data, y outside the support "
        "or negative weights)"
    ),
    Status.RANK_DEFICIENT: (
        "information matrix singular at the optimum: rank-deficient design "
        "(collinear, zero or all-zero-weight columns)"
    ),
    Status.NOT_MAXIMUM: (
        "not a maximum: the Hessian of the log-likelihood is not negative "
        "definite there (a saddle, a minimum or a flat direction), or a "
        "first-order solver stopped where Newton still predicts a gain"
    ),
    Status.EMPTY_CLASS: "a class of y has no observations: its coefficients diverge",
    Status.INVALID_MEAN: (
        "fitted means outside (or on the edge of) the valid range of the link "
        "(e.g. a Poisson identity-link mean <= 0, a binomial log-link mean >= 1): "
        "no interior MLE; use the canonical link or other covariates"
    ),
}


def reason(code: int) -> str:
    """The words for a status code (``"unknown status N"`` if it is not one)."""
    try:
        return Status(int(code)).reason
    except ValueError:
        return f"unknown status {int(code)}"


class ConvergenceWarning(UserWarning):
    """The solver stopped before meeting its tolerance."""


class PerfectSeparationWarning(UserWarning):
    """Some observations are predicted perfectly: the MLE does not exist."""
