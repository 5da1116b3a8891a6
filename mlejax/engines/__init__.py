"""Engines: one traced fit of a regression likelihood each, a typed result.

* :mod:`~mlejax.engines.glm`: Newton over row blocks (or a first-order solver)
  on :func:`mlejax.objective.make_glm`, for every family;
* :mod:`~mlejax.engines.lstsq`: Gaussian with ``solver="newton"``: the
  accurate least-squares solve of :func:`mlejax.ols`;
* :mod:`~mlejax.engines.lad`: Laplace with ``solver="newton"``: exact LAD;
* :mod:`~mlejax.engines.penalized`: any ``penalty=`` (MAP): Newton for
  Ridge, proximal Newton with coordinate descent for Lasso/ElasticNet;
* :mod:`~mlejax.engines.likelihood`: ``fit_likelihood`` over any pytree.

A family picks its Newton engine with ``Family.newton_engine``; every engine
gets its covariance from :mod:`mlejax.inference`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class EngineResult(NamedTuple):
    """What an engine returns (inside the trace); ``fit`` makes a FitResult."""

    params: jax.Array
    extra: dict
    extra_stderr: dict
    cov: jax.Array
    stderr: jax.Array
    loglik: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    status: jax.Array
    trace: jax.Array
    #: equilibrated R factor for the host-side rank check (lstsq), else None
    r_eq: jax.Array | None = None
    #: penalised fits: the minimised -loglik + penalty (else None)
    objective: jax.Array | None = None
    #: Hessian of the NLL in ``[vec(beta), log(extra)]`` at the optimum (the
    #: glm engine's, reused by :mod:`mlejax.implicit`), else None
    hess: jax.Array | None = None
    #: LAD basis rows of the optimal vertex (the lad engine), else None
    basis: jax.Array | None = None


def run(
    family,
    data,
    solver,
    tol,
    max_iter: int,
    penalty=None,
    theta0=None,
    information: str = "observed",
) -> tuple[EngineResult, str]:
    """The engine for ``family`` and ``solver``, and the solver's reported name.

    ``information="expected"`` matters to the ``glm`` engine only: least
    squares (Gaussian identity) has expected = observed information, and
    exact LAD (Laplace) uses the expected information anyway.
    """
    from mlejax.engines import glm, lad, lstsq, penalized

    if penalty is not None:  # MAP: Newton / proximal Newton for every smooth family
        eng = penalized.fit(family, data, solver, tol, max_iter, penalty, theta0)
        if penalty.kind == "l1":
            return eng, "prox-newton-cd"
        return eng, solver if isinstance(solver, str) else "optax"

    if solver == "newton" and family.newton_engine == "lstsq":
        return lstsq.fit(family, data), "qr"
    if solver == "newton" and family.newton_engine == "lad":
        return lad.fit(family, data, tol, max_iter), "irls-lad"
    name = solver if isinstance(solver, str) else "optax"
    return glm.fit(family, data, solver, tol, max_iter, information), name
