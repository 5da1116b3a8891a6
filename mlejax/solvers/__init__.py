"""Solvers see a problem over a flat parameter vector, never a family.

``newton`` (one loop, two plug-ins: a dense ``(f, g, H)`` or the structured
regression objective), ``lbfgs`` and ``optax_loop`` (first order), ``lad``
(exact least absolute deviations). Reason codes: :mod:`mlejax.status`.
"""

from mlejax.solvers.first_order import FirstOrderResult, lbfgs, optax_loop
from mlejax.solvers.newton import (
    NewtonProblem,
    NewtonResult,
    dense_problem,
    newton,
    newton_loop,
)

__all__ = [
    "FirstOrderResult",
    "NewtonProblem",
    "NewtonResult",
    "dense_problem",
    "newton",
    "newton_loop",
    "lbfgs",
    "optax_loop",
]
