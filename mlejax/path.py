"""``fit_path``: a regularisation path, warm-started, in one compiled ``lax.scan``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlejax import _prepare, penalties
from mlejax.engines import glm, penalized
from mlejax.families import Family
from mlejax.fit import _fit_core
from mlejax.objective import GLMData
from mlejax.result import FitResult

__all__ = ["fit_path"]


def _path_core(
    X, y, weights, offset, trials, tol, penalty, alphas, *, family, solver, max_iter
):
    data = GLMData(X, y, weights, offset, trials)
    pearson = jnp.asarray(_prepare.check_dispersion(None, family) == "pearson")
    p = X.shape[1]
    nb = p * family.eta_dim
    start = glm.start_values(family, data, p)
    project = glm.extra_projection(family, nb)
    if project is not None:
        start = project(start)

    def step(theta, a):
        res, *_ = _fit_core(
            data,
            pearson,
            tol,
            None,
            penalty.with_alpha(a),
            theta,
            family=family,
            solver=solver,
            max_iter=max_iter,
            traced=False,
            cov=("nonrobust", None),
        )
        nxt = penalized.theta_of(family, res.params, res.extra)
        nxt = jnp.where(jnp.all(jnp.isfinite(nxt)), nxt, start)
        return nxt, res

    _, res = jax.lax.scan(step, start, alphas)
    return res


_path_jit = jax.jit(_path_core, static_argnames=("family", "solver", "max_iter"))


def fit_path(
    X: ArrayLike,
    y: ArrayLike,
    family: Family,
    penalty: penalties.Penalty,
    alphas: ArrayLike,
    *,
    solver: str = "newton",
    weights: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    trials: ArrayLike | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> FitResult:
    """Penalised fits along decreasing ``alphas``, each warm-started from the last.

    One compiled call: a ``lax.scan`` over ``alphas`` of the fit
    ``mj.fit(X, y, family, penalty=penalty.with_alpha(a), ...)`` (so each entry
    equals that individual fit to the solver tolerance), the previous
    solution as the start of the next (as glmnet and glum do). ``penalty``
    gives the kind, ``l1_ratio`` and ``weights``; its own ``alpha`` is ignored.

    Args:
      X, y, family, solver, weights, offset, trials, tol, max_iter: as :func:`mlejax.fit`.
      penalty: ``mj.penalties.Ridge``/``Lasso``/``ElasticNet``.
      alphas: ``(L,)`` non-increasing, non-negative penalty strengths.

    Returns:
      A batched ``FitResult`` with leading axis ``L`` (``res[i]`` is the fit at
      ``alphas[i]``; ``res.params`` is ``(L, p)``).

    Example (``alphas`` from strong to weak; ``res.params[i]`` at ``alphas[i]``)::

        res = mj.fit_path(X, y, mj.families.Bernoulli(), mj.penalties.Lasso(1.0),
                          np.geomspace(100.0, 0.1, 30))
        support = np.asarray(res.params) != 0          # (30, p)
    """
    if not isinstance(penalty, penalties.Penalty):
        raise ValueError(
            f"penalty must be mj.penalties.Ridge, Lasso or ElasticNet; got {penalty!r}."
        )
    a = np.asarray(alphas, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-D array; got shape {a.shape}.")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alphas must be finite and >= 0; got {a.tolist()}.")
    if np.any(np.diff(a) > 0):
        raise ValueError(
            "alphas must be non-increasing (the path warm-starts from strong to weak "
            f"penalties); got {a.tolist()}. Pass np.sort(alphas)[::-1]."
        )
    _prepare.check_solver(solver)
    _prepare.check_tol_max_iter(tol, max_iter)
    X, y, weights, offset, trials, names = _prepare.prepare(
        X, y, family, weights, offset, trials
    )
    penalties.check_penalty(penalty, solver, p=X.shape[1], family=family)
    res = _path_jit(
        X,
        y,
        weights,
        offset,
        trials,
        jnp.asarray(tol, X.dtype),
        penalty,
        jnp.asarray(a, X.dtype),
        family=family,
        solver=solver,
        max_iter=max_iter,
    )
    return res.replace(names=names)
