"""Solvers see a scalar function of a flat parameter vector, never a family."""

from mlejax.solvers.first_order import lbfgs, optax_loop
from mlejax.solvers.newton import NewtonResult, newton

__all__ = ["NewtonResult", "newton", "lbfgs", "optax_loop"]

#: reason codes stored in ``FitResult.status``
STATUS = {
    0: "converged",
    1: "max_iter reached",
    2: "line search could not decrease the objective",
    3: "non-finite objective",
    4: "separation: estimates diverge",
    5: "parameter at its bound",
}
