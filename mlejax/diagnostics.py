"""Diagnostics on the host: separation named by a linear program, warnings.

Inside the trace the engines flag what they can (``Status``); here, for a
concrete fit, :func:`post_check` names the separating columns (or clears a
confident but genuine fit) and raises the warnings.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from mlejax import linalg
from mlejax.status import ConvergenceWarning, PerfectSeparationWarning, Status

__all__ = ["post_check", "separating_columns", "input_ok"]


def input_ok(family, data) -> object:
    """Traced: the data a host check would have accepted (for jit/vmap input).

    Offset, weights and precision weights finite, both weights non-negative,
    with at least as many
    positive-weight rows as parameters,
    and every positive-weight ``y`` in the family's support. O(n), no pass over
    ``X``: a non-finite ``X`` makes the score non-finite, which every engine
    reports (``NON_FINITE``).
    """
    X, y, w, offset, trials = data[:5]
    kw = {} if trials is None else {"trials": trials}
    ok = jnp.all(jnp.isfinite(offset))
    ok = ok & jnp.all(jnp.isfinite(w) & (w >= 0)) & (jnp.sum(w) > 0)
    k = X.shape[1] * family.eta_dim + len(family.extra_names)
    ok = ok & (jnp.sum(w > 0) >= k)  # identifiable: enough positive-weight rows
    v = getattr(data, "var_weights", None)
    if v is not None:  # precision weights: finite, non-negative, some positive
        ok = ok & jnp.all(jnp.isfinite(v) & (v >= 0)) & jnp.any(v > 0)
    return ok & jnp.all(jnp.where(w > 0, family.in_support(y, **kw), True))


def post_check(res, X, y, family, weights, trials, names):
    """Warn about (and for separation, name) what went wrong in a concrete fit.

    A singular information or a non-finite fit first gets the host rank check
    at any size (it costs nothing on a good fit): a rank-deficient design is a
    ``ValueError`` naming the collinear columns.
    """
    status = int(res.status)
    if status in (Status.RANK_DEFICIENT, Status.NOT_MAXIMUM, Status.NON_FINITE):
        Xn = np.asarray(X, np.float64)[np.asarray(weights) > 0]
        linalg.check_rank(Xn, names)
    signs = None
    if status == Status.SEPARATION:
        yn = np.asarray(y, np.float64)
        tn = None if trials is None else np.asarray(trials, np.float64)
        signs = family.separation_signs(yn, **({} if tn is None else {"trials": tn}))
    if signs is not None:
        cols = separating_columns(X, weights, signs, names)
        if cols is None:  # a confident but genuine fit: no separating direction exists
            ok = bool(jnp.isfinite(res.loglik)) and bool(
                np.all(np.isfinite(np.asarray(res.stderr)))
            )
            code = Status.CONVERGED if ok else Status.NON_FINITE
            res = res.replace(status=jnp.asarray(int(code)), converged=jnp.asarray(ok))
        else:
            warnings.warn(
                f"{family.name}: perfect or quasi-complete separation: the MLE does not "
                f"exist (coefficients diverge along columns {cols}). converged=False.",
                PerfectSeparationWarning,
                stacklevel=4,
            )
            return res
    elif status == Status.SEPARATION:
        warnings.warn(
            f"{family.name}: some observations are predicted with probability 1 "
            "(separation); the MLE does not exist. converged=False.",
            PerfectSeparationWarning,
            stacklevel=4,
        )
    elif status == Status.BOUND:
        warnings.warn(family.bound_message(res.extra), ConvergenceWarning, stacklevel=4)
    elif status == Status.EMPTY_CLASS:
        yn = np.asarray(y)[np.asarray(weights) > 0]
        empty = sorted(set(range(family.eta_dim + 1)) - set(yn.astype(int).tolist()))
        warnings.warn(
            f"{family.name}: class(es) {empty} never occur in y (with positive "
            "weight): their coefficients diverge. Drop the class or merge it. "
            "converged=False.",
            ConvergenceWarning,
            stacklevel=4,
        )
    elif not bool(res.converged):
        warnings.warn(
            f"{family.name} fit did not converge ({res.reason}) in {int(res.n_iter)} "
            "iterations; the last iterate is returned. Raise max_iter or check the data.",
            ConvergenceWarning,
            stacklevel=4,
        )
    return res


def separating_columns(X, weights, signs: np.ndarray, names) -> list[str] | None:
    """Host LP: a direction b with s_i x_i.b >= 0 that predicts rows perfectly.

    ``signs`` (``Family.separation_signs``): +1 where y is at the top of its
    support, -1 at the bottom, 0 inside. Returns the names of the columns of a
    sparse separating direction, or None when there is none.
    """
    from scipy.optimize import linprog

    Xn = np.asarray(X, np.float64)
    wn = np.asarray(weights) > 0
    Xn, s = Xn[wn], np.asarray(signs, np.float64)[wn]
    scale = np.abs(Xn).max(axis=0)
    scale[scale == 0] = 1.0
    A = Xn / scale
    ineq, eq = s != 0, s == 0
    res = linprog(
        c=-(s[ineq, None] * A[ineq]).sum(axis=0),
        A_ub=-(s[ineq, None] * A[ineq]) if ineq.any() else None,
        b_ub=np.zeros(ineq.sum()) if ineq.any() else None,
        A_eq=A[eq] if eq.any() else None,
        b_eq=np.zeros(eq.sum()) if eq.any() else None,
        bounds=[(-1, 1)] * A.shape[1],
        method="highs",
    )
    if res.status != 0 or -res.fun <= 1e-7 * max(1.0, np.abs(A).sum() / A.shape[1]):
        return None
    b = res.x
    # The maximiser above uses every column it can (|b_j| hits its box). Name a
    # sparse separating direction instead: min ||b||_1 over the same cone with
    # the separation normalised to 1 (b = u - v, u, v >= 0).
    p = A.shape[1]
    G = s[ineq, None] * A[ineq]
    sparse = linprog(
        c=np.ones(2 * p),
        A_ub=np.vstack([-np.hstack([G, -G]), -np.hstack([G.sum(0), -G.sum(0)])[None]]),
        b_ub=np.r_[np.zeros(G.shape[0]), -1.0],
        A_eq=np.hstack([A[eq], -A[eq]]) if eq.any() else None,
        b_eq=np.zeros(eq.sum()) if eq.any() else None,
        bounds=[(0, None)] * (2 * p),
        method="highs",
    )
    if sparse.status == 0:
        b = sparse.x[:p] - sparse.x[p:]
    names = list(names) if names is not None else [f"x{j}" for j in range(p)]
    return [names[j] for j in np.flatnonzero(np.abs(b) > 1e-6 * np.abs(b).max())]
