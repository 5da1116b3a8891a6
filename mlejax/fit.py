"""The wiring: checks -> objective -> solver -> inference -> FitResult."""

from __future__ import annotations

import functools
import inspect
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from mlejax import _buckets, _checks, closed_form, inference, objective
from mlejax import families as fam
from mlejax.result import FitResult
from mlejax.solvers import lbfgs, newton, optax_loop
from mlejax.solvers.glm_newton import glm_newton

__all__ = [
    "fit",
    "ols",
    "fit_likelihood",
    "ConvergenceWarning",
    "PerfectSeparationWarning",
    "STUDENT_T_DF_MAX",
]

#: StudentT degrees of freedom are capped here; reaching it means "use Gaussian".
STUDENT_T_DF_MAX = 1000.0
#: a row whose fitted log-probability exceeds -SEPARATION_TOL is fitted perfectly
SEPARATION_TOL = 1e-11
_DISCRETE = (
    fam.Bernoulli,
    fam.Binomial,
    fam.Categorical,
    fam.Poisson,
    fam.NegativeBinomial,
)
_CONVEX = (fam.Bernoulli, fam.Binomial, fam.Categorical, fam.Poisson)


class ConvergenceWarning(UserWarning):
    """The solver stopped before meeting its tolerance."""


class PerfectSeparationWarning(UserWarning):
    """Some observations are predicted perfectly: the MLE does not exist."""


# ----------------------------------------------------------------------------
# host-side preparation
# ----------------------------------------------------------------------------
def _names_of(X):
    cols = getattr(X, "columns", None)
    return tuple(str(c) for c in cols) if cols is not None else None


def _as_array(name, a, dtype=None):
    if a is None:
        return None
    if hasattr(a, "to_numpy"):
        a = a.to_numpy()
    if isinstance(a, jax.core.Tracer | jax.Array):
        arr = a
    else:
        _checks.warn_x64_truncation(
            name, np.asarray(a) if not isinstance(a, np.ndarray) else a
        )
        arr = np.asarray(a)
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind in "fc" else jnp.result_type(float)
    if isinstance(arr, np.ndarray):
        return _to_device(arr, jax.dtypes.canonicalize_dtype(dtype))
    return jnp.asarray(arr, dtype)


def _to_device(arr: np.ndarray, dtype) -> jax.Array:
    """A NumPy array on the default device, without a copy where possible.

    A C-contiguous array of the right dtype in 64-byte aligned memory is used
    in place on the CPU (JAX arrays are immutable and the fit has finished
    with it before ``fit`` returns); otherwise it is copied once
    (``device_put`` copies faster than ``jnp.asarray``, which matters for a
    large ``X``).
    """
    if arr.dtype != dtype or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    try:
        return jax.device_put(arr, may_alias=True)
    except TypeError:  # a JAX without may_alias
        return jax.device_put(arr)


def _prepare(X, y, family, weights, offset, trials):
    if not isinstance(family, fam.Family):
        raise TypeError(
            f"family must be an mlejax family such as mj.families.Bernoulli(); got {family!r}."
        )
    names = _names_of(X)
    for nm, a in (("X", X), ("y", y), ("weights", weights), ("offset", offset),
                  ("trials", trials)):
        _checks.require_real_dtype(nm, a)
    host_checked = set()
    for nm, a in (("X", X), ("weights", weights), ("offset", offset)):
        if isinstance(a, np.ndarray) and a.dtype.kind in "fc":
            _checks.require_finite(nm, a)  # on the host copy: no device round trip
            host_checked.add(nm)
    X = _as_array("X", X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be 2-D (n, p); got shape {X.shape}. Use X[:, None] for one column."
        )
    dtype = X.dtype
    y = _as_array("y", y, dtype)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (n,); got shape {y.shape}.")
    weights = _as_array("weights", weights, dtype)
    offset = _as_array("offset", offset, dtype)
    trials = _as_array("trials", trials, dtype)
    for nm, a in (("weights", weights), ("offset", offset), ("trials", trials)):
        if a is not None and a.ndim != 1:
            raise ValueError(f"{nm} must be 1-D (n,); got shape {a.shape}.")
    _checks.require_same_length(
        f"{family.name} fit", X=X, y=y, weights=weights, offset=offset, trials=trials
    )
    n, p = X.shape
    if n == 0:
        raise ValueError("the dataset is empty (n = 0 rows); nothing to fit.")
    if p == 0:
        raise ValueError(
            "X has no columns (p = 0); add at least an intercept (mj.add_constant)."
        )
    for nm, a in (("X", X), ("weights", weights), ("offset", offset)):
        if nm not in host_checked:
            _checks.require_finite(nm, a)
    if isinstance(family, fam.Binomial) and trials is None:
        raise ValueError("Binomial: trials= is required (number of trials per row).")
    if trials is not None and not isinstance(family, fam.Binomial):
        raise ValueError(f"trials= is only for Binomial, not {family.name}.")
    family.check_y(y, trials=trials) if isinstance(
        family, fam.Binomial
    ) else family.check_y(y)
    wc = _checks.concrete(weights)
    if wc is not None and (wc < 0).any():
        i = int(np.flatnonzero(wc < 0)[0])
        raise ValueError(
            f"weights must be non-negative frequency weights; weights[{i}] = {wc[i].item()!r}."
        )
    nobs = n if wc is None else float(wc.sum())
    k = p * family.eta_dim + len(family.extra_names)
    if wc is not None or not isinstance(X, jax.core.Tracer):
        n_eff = nobs if wc is None else float((wc > 0).sum())
        if n_eff < k:
            raise ValueError(
                f"more parameters ({k}) than observations with positive weight ({n_eff:g}); "
                "the model is not identified."
            )
    if weights is None:
        weights = jnp.ones(n, dtype)
    if offset is None:
        offset = jnp.zeros(n, dtype)
    Xc = _checks.concrete(X) if n * p * p <= 2e8 else None
    if Xc is not None and wc is not None:
        Xc = Xc[wc > 0]
    if Xc is not None:
        _check_rank(Xc, names)
    return X, y, weights, offset, trials, names


def _check_rank(Xc: np.ndarray, names) -> None:
    """Scale-free rank check (pivoted QR after column equilibration), host side."""
    Xc = np.asarray(Xc, np.float64)
    p = Xc.shape[1]
    if Xc.shape[0] < p:
        return
    R = np.linalg.qr(Xc, mode="r")[:p]
    cols = closed_form.collinear_columns(R, names)
    if cols is not None:
        raise closed_form.rank_error(cols, p)


# ----------------------------------------------------------------------------
# the traceable cores
# ----------------------------------------------------------------------------
def _solver_name(solver) -> str:
    if isinstance(solver, str):
        return solver
    return "optax"


def _check_solver(solver, family):
    if isinstance(solver, str):
        if solver not in ("newton", "lbfgs"):
            raise ValueError(
                f"solver must be 'newton', 'lbfgs' or an optax.GradientTransformation; got {solver!r}."
            )
    elif not isinstance(solver, optax.GradientTransformation):
        raise TypeError(
            "solver must be 'newton', 'lbfgs' or an optax.GradientTransformation; "
            f"got {type(solver).__name__}."
        )


def _check_tol_max_iter(tol, max_iter) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer):
        raise TypeError(f"max_iter must be an int (static); got {max_iter!r}.")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1; got {max_iter}.")
    t = _checks.concrete(tol)
    if t is not None and (np.ndim(t) != 0 or not np.isfinite(t) or t <= 0):
        raise ValueError(f"tol must be a positive finite scalar; got {tol!r}.")


def _start(family, data: objective.GLMData, p: int):
    """Starting coefficients (regression of a working response) and log extras."""
    X, y, w, offset, trials = data
    m = family.eta_dim
    dtype = X.dtype
    if isinstance(family, fam.Categorical | fam.Bernoulli):
        beta0 = jnp.zeros(p * m, dtype)
        mu0 = None
    else:
        z = family.working_response(y, trials) - offset
        beta0 = _quick_lstsq(X, z, w)
        mu0 = family.mean(X @ beta0 + offset)
    if not family.extra_names:
        return jnp.concatenate([beta0, jnp.zeros(0, dtype)])
    # Frequency-weighted moments: zero-weight rows (buckets=True padding) and
    # replicated rows give the start of the unpadded / replicated data.
    if "w" in inspect.signature(family.init_extra).parameters:
        ex = family.init_extra(y, mu0, w=w)
    else:  # a user family with the older init_extra(y, mu)
        ex = family.init_extra(y, mu0)
    u0 = jnp.log(jnp.stack([jnp.asarray(ex[k], dtype) for k in family.extra_names]))
    u0 = jnp.where(jnp.isfinite(u0), u0, 0.0)
    return jnp.concatenate([beta0, u0])


def _quick_lstsq(X, z, w):
    """Weighted normal equations in equilibrated form (starting values only)."""
    d = closed_form.pow2_scale(X)
    A = X * d[None, :]
    G = A.T @ (A * w[:, None])
    G = G + 1e-10 * jnp.trace(G) / G.shape[0] * jnp.eye(G.shape[0], dtype=G.dtype)
    L = jnp.linalg.cholesky(G)
    b = jax.scipy.linalg.cho_solve((L, True), A.T @ (w * z))
    return jnp.where(jnp.isfinite(b), b, 0.0) * d


def _gaussian_core(family, data):
    X, y, w, offset, _ = data
    n, p = X.shape
    parts = closed_form.lstsq_core(X, y - offset, jnp.sqrt(w))
    nobs = jnp.sum(w)
    # An exact fit leaves residuals at the rounding level of y: call that zero.
    tiny = (nobs * jnp.finfo(X.dtype).eps * jnp.max(jnp.abs(jnp.sqrt(w) * y))) ** 2
    rss = jnp.where(parts.rss <= tiny, 0.0, parts.rss)
    sigma = jnp.sqrt(rss / nobs)
    s2 = rss / (nobs - p)
    cov = s2 * parts.xtx_inv
    loglik = jnp.where(
        rss > 0,
        -0.5 * nobs * (math.log(2 * math.pi) + jnp.log(rss / nobs) + 1.0),
        jnp.inf,
    )
    one = jnp.asarray(1)
    return dict(
        params=parts.beta,
        extra={"scale": sigma},
        extra_stderr={"scale": sigma / jnp.sqrt(2.0 * nobs)},
        cov=cov,
        loglik=loglik,
        n_iter=one,
        converged=jnp.asarray(True),
        status=jnp.asarray(0),
        trace=jnp.full((1,), -loglik),
        r_eq=parts.r_eq,
    )


def _laplace_core(family, data, tol, max_iter):
    """Exact least absolute deviations: IRLS warm start, then simplex pivots.

    The Laplace MLE of the location is the weighted LAD fit ``argmin_b sum_i
    w_i |y_i - offset_i - x_i b|``. At most 5 (and at most ``max_iter``) IRLS
    steps with continuation (weights ``w_i / max(|r_i|, delta)``, ``delta``
    shrinking 10x per step) give a warm start; from the
    basis of its ``p`` smallest-residual independent rows, Barrodale-Roberts
    simplex pivots (:func:`mlejax.solvers.lad.lad`: exact line searches along
    the edges of the LAD linear program, lexicographic anti-cycling rule) reach
    the exact optimum: a vertex ``X_S b = y_S`` with the subgradient
    certificate ``|v_i| <= w_i``, ``X_S' v = -sum_{i not in S} w_i sign(r_i)
    x_i``. ``converged`` means that certificate holds; the pivot cap is
    ``max_iter + 10 p`` (static). ``n_iter`` counts IRLS steps plus pivots;
    ``trace`` holds the mean NLL (at the final scale) of the least-squares
    start, of each IRLS step, then of the final vertex. ``tol`` is not
    used (the end point is an exact vertex). scale ``b = sum_i w_i |r_i| /
    sum_i w_i`` (its MLE); ``cov = b^2 (X'WX)^{-1}``.
    """
    from mlejax.solvers.lad import lad as lad_solver

    X, y, w, offset, _ = data
    n, p = X.shape
    yo = y - offset
    dtype = X.dtype
    beta0 = closed_form.lstsq_core(X, yo, jnp.sqrt(w), n_refine=1).beta
    obj = lambda b: jnp.sum(w * jnp.abs(yo - X @ b))  # noqa: E731
    scale0 = obj(beta0) / jnp.sum(w)
    n_irls = min(max_iter, 5)  # a warm start only: the pivots do the rest

    def cond(c):
        b, delta, k, trace = c
        return (k < n_irls) & (scale0 > 0)

    def body(c):
        b, delta, k, trace = c
        r = yo - X @ b
        b_new = _quick_lstsq(X, yo, w / jnp.maximum(jnp.abs(r), delta))
        b_new = jnp.where(obj(b_new) <= obj(b), b_new, b)
        return b_new, delta * 0.1, k + 1, trace.at[k + 1].set(obj(b_new))

    trace0 = jnp.full((max_iter + 1,), jnp.nan, dtype).at[0].set(obj(beta0))
    init = (
        beta0,
        jnp.maximum(scale0 * 1e-2, jnp.finfo(dtype).tiny),
        jnp.asarray(0),
        trace0,
    )
    b_irls, _, k, trace = jax.lax.while_loop(cond, body, init)
    out = lad_solver(X, yo, w, b_irls, max_pivots=max_iter + 10 * p)
    exact_fit = scale0 == 0
    b = jnp.where(exact_fit, beta0, out.beta)
    done = exact_fit | out.certified
    nobs = jnp.sum(w)
    f = jnp.where(exact_fit | out.exact_fit, 0.0, out.objective)
    bscale = f / nobs
    trace = jnp.where(
        exact_fit, trace, trace.at[jnp.minimum(k + 1, max_iter)].set(out.objective)
    )
    xtx_inv = closed_form.lstsq_core(X, yo, jnp.sqrt(w), n_refine=0).xtx_inv
    loglik = jnp.where(bscale > 0, -nobs * (jnp.log(2.0 * bscale) + 1.0), jnp.inf)
    return dict(
        params=b,
        extra={"scale": bscale},
        extra_stderr={"scale": bscale / jnp.sqrt(nobs)},
        cov=bscale**2 * xtx_inv,
        loglik=loglik,
        n_iter=k + jnp.where(exact_fit, 0, out.n_pivots),
        converged=done,
        status=jnp.where(done, 0, 1),
        # mean NLL per iterate at the final scale (its last entry is -loglik/nobs)
        trace=trace / (nobs * jnp.where(bscale > 0, bscale, 1.0))
        + jnp.log(2.0 * bscale),
        r_eq=None,
    )


#: Newton on a strided subsample first when n is at least this large
SUBSAMPLE_MIN_ROWS = 131_072
#: rows of that subsample (about)
SUBSAMPLE_ROWS = 32_768


def _subsample_start(family, data, theta0, convex, project):
    """Warm start from the MLE on every k-th row (static k), if it is sound.

    Returns ``(theta, H, ok)``: the subsample's Hessian, scaled by the ratio of
    the weight totals, approximates the full data's (to about
    ``sqrt(p / rows)``), so Newton's first steps on the full data need only
    the score. The subsample fit is rejected (``ok`` False, ``theta0`` kept)
    if it did not converge, is not finite, or predicts some subsample row
    perfectly (a separated subsample says nothing about the full data).
    ``theta0=None``: start the subsample fit from start values computed on the
    subsample itself (and return those if it is rejected).
    """
    X, y, w, offset, trials = data
    k = X.shape[0] // SUBSAMPLE_ROWS
    sub = objective.GLMData(
        X[::k], y[::k], w[::k], offset[::k], None if trials is None else trials[::k]
    )
    obj = objective.make_glm(family, sub, log_extra=True)
    if theta0 is None:  # start values from the subsample too (a full-data
        theta0 = _start(family, sub, X.shape[1])  # regression costs a Gram)
    out = glm_newton(
        obj, theta0, tol=1e-6, max_iter=30, convex=convex, project=project
    )
    ok = out.converged & jnp.all(jnp.isfinite(out.x))
    if isinstance(family, _DISCRETE):
        beta, extra = obj.unpack(out.x)
        eta = sub.X @ beta + (sub.offset[:, None] if family.eta_has_axis else sub.offset)
        kw = dict(extra)
        if trials is not None:
            kw["trials"] = sub.trials
        logp = family._log_prob(sub.y, eta, **kw)
        ok = ok & ~jnp.any((sub.weights > 0) & (logp > -SEPARATION_TOL))
    scale = jnp.sum(w) / jnp.sum(sub.weights)
    ok = ok & jnp.all(jnp.isfinite(out.H)) & jnp.isfinite(scale)
    return jnp.where(ok, out.x, theta0), jnp.where(ok, out.H * scale, 0.0), ok


def _natural_hessian(H, g, theta, nb, q):
    """Hessian in ``(beta, e)`` from the one in ``(beta, u = log e)`` (exact)."""
    if not q:
        return H
    e = jnp.exp(theta[nb:])
    J = jnp.concatenate([jnp.ones(nb, H.dtype), 1.0 / e])
    Hn = H * J[:, None] * J[None, :]
    corr = jnp.concatenate([jnp.zeros(nb, H.dtype), g[nb:] / e**2])
    return Hn - jnp.diag(corr)


def _glm_core(family, data, solver, tol, max_iter):
    X, y, w, offset, trials = data
    n, p = X.shape
    m, nb, q = objective.n_params(family, p)
    obj = objective.make_glm(family, data, log_extra=True)
    big = solver == "newton" and n >= SUBSAMPLE_MIN_ROWS
    theta0 = None if big else _start(family, data, p)
    project = None
    if isinstance(family, fam.StudentT) and family.df is None:
        cap = math.log(STUDENT_T_DF_MAX)
        project = lambda th: th.at[-1].set(jnp.minimum(th[-1], cap))  # noqa: E731
    convex = isinstance(family, _CONVEX)
    nobs = jnp.sum(w)
    if solver == "newton":
        H0 = H0_ok = None
        if big:
            theta0, H0, H0_ok = _subsample_start(family, data, None, convex, project)
        out = glm_newton(
            obj,
            theta0,
            tol=tol,
            max_iter=max_iter,
            convex=convex,
            project=project,
            H0=H0,
            H0_ok=H0_ok,
        )
        trace = out.trace
        info = _natural_hessian(out.H, out.g, out.x, nb, q)
    else:
        # First-order solvers work on the mean NLL, so learning rates do not scale with n.
        value = objective.make(family, data, log_extra=True).value
        mean_nll = lambda th: value(th) / nobs  # noqa: E731
        if solver == "lbfgs":
            out = lbfgs(mean_nll, theta0, tol=tol, max_iter=max_iter)
        else:
            out = optax_loop(mean_nll, theta0, solver, tol=tol, max_iter=max_iter)
        trace = out.trace * nobs
        g_, H_, _ = obj.evaluate(out.x, True)
        info = _natural_hessian(H_, g_, out.x, nb, q)
    theta = out.x
    status, converged = out.status, out.converged
    beta, extra = obj.unpack(theta)
    cov_full = inference.inverse_information(info)
    se_full = jnp.sqrt(jnp.diag(cov_full))
    # The reported log-likelihood from a fresh X @ beta (one pass).
    eta = X @ beta + (offset[:, None] if family.eta_has_axis else offset)
    loglik = -obj.value_at(eta, theta)
    if isinstance(family, _DISCRETE):
        kw = dict(extra)
        if trials is not None:
            kw["trials"] = trials
        logp = family._log_prob(y, eta, **kw)
        separated = jnp.any((w > 0) & (logp > -SEPARATION_TOL))
        status = jnp.where(separated, 4, status)
        converged = converged & ~separated
    if project is not None:
        at_bound = extra["df"] >= STUDENT_T_DF_MAX * (1 - 1e-9)
        status = jnp.where(at_bound, 5, status)
        converged = converged & ~at_bound
    return dict(
        params=beta,
        extra=extra,
        extra_stderr={k: se_full[nb + i] for i, k in enumerate(family.extra_names)},
        cov=cov_full[:nb, :nb],
        loglik=loglik,
        n_iter=out.n_iter,
        converged=converged,
        status=status,
        trace=trace,
        r_eq=None,
    )


def _fit_core(X, y, weights, offset, trials, tol, *, family, solver, max_iter):
    data = objective.GLMData(X, y, weights, offset, trials)
    if isinstance(family, fam.Gaussian) and solver == "newton":
        core = _gaussian_core(family, data)
    elif isinstance(family, fam.Laplace) and solver == "newton":
        core = _laplace_core(family, data, tol, max_iter)
    else:
        core = _glm_core(family, data, solver, tol, max_iter)
        if isinstance(family, fam.Gaussian):  # OLS convention: sigma^2 = RSS/(n-p)
            nobs_ = jnp.sum(weights)
            core["cov"] = core["cov"] * nobs_ / (nobs_ - X.shape[1])
    r_eq = core.pop("r_eq")
    nobs = jnp.sum(weights)
    k = X.shape[1] * family.eta_dim + len(family.extra_names)
    aic, bic = inference.information_criteria(core["loglik"], k, nobs)
    stderr = jnp.sqrt(jnp.diag(core["cov"])).reshape(jnp.shape(core["params"]))
    if isinstance(family, fam.Gaussian):
        # exact fit: stderr 0 (cov is 0 up to rounding)
        stderr = jnp.where(core["extra"]["scale"] > 0, stderr, 0.0)
    res = FitResult(
        aic=aic,
        bic=bic,
        nobs=nobs,
        stderr=stderr,
        family=family.name,
        solver=_solver_name(solver)
        if not (isinstance(family, fam.Gaussian | fam.Laplace) and solver == "newton")
        else ("qr" if isinstance(family, fam.Gaussian) else "irls-lad"),
        **core,
    )
    return res, r_eq


_FIT_STATIC = ("family", "solver", "max_iter")
_fit_jit = jax.jit(_fit_core, static_argnames=_FIT_STATIC)

#: up to this many elements of X (n * p) a fit is compiled with LLVM's
#: optimisation off: that halves XLA's compile time (about 1 s -> 0.5 s on a
#: laptop-class CPU), which dominates a small fit, and costs at most a few
#: milliseconds of run time there.
QUICK_COMPILE_SIZE = 1 << 17


def _quick_compiled(fn, static):
    try:
        return jax.jit(
            fn,
            static_argnames=static,
            compiler_options={"xla_backend_optimization_level": 0},
        )
    except TypeError:  # a JAX without per-function compiler options
        return jax.jit(fn, static_argnames=static)


_fit_jit_quick = _quick_compiled(_fit_core, _FIT_STATIC)


def _fit_compiled(X):
    """The jitted fit for this design's size (see QUICK_COMPILE_SIZE).

    Under the caller's ``jit``/``vmap`` the caller's compiler options apply
    (JAX accepts them only on the outermost ``jit``).
    """
    n, p = X.shape
    if isinstance(X, jax.core.Tracer) or n * p > QUICK_COMPILE_SIZE:
        return _fit_jit
    return _fit_jit_quick


def fit(
    X,
    y,
    family: fam.Family,
    *,
    solver="newton",
    weights=None,
    offset=None,
    trials=None,
    tol=1e-10,
    max_iter: int = 100,
    buckets: bool = False,
) -> FitResult:
    """Maximum-likelihood fit of a regression ``eta = X @ params + offset``.

    Args:
      X: design ``(n, p)`` (NumPy, JAX or pandas; no intercept is added: use
        ``mj.add_constant``).
      y: response ``(n,)`` in the family's support.
      family: an ``mj.families`` instance.
      solver: ``"newton"`` (damped Newton with Armijo line search and exact
        Hessian; Gaussian is solved by :func:`ols`; Laplace by exact LAD: IRLS
        and simplex pivots to a certified vertex), ``"lbfgs"`` (Optax L-BFGS, stops when
        ``max|grad| <= tol * max(1, |f|)`` on the mean NLL), or any
        ``optax.GradientTransformation`` run for ``max_iter`` steps on the mean NLL
        (build it once and reuse it: a fresh transform recompiles).
      weights: frequency weights ``(n,)`` (same as replicating rows).
      offset: added to eta, e.g. ``log(exposure)``.
      trials: Binomial numbers of trials.
      tol: Newton: relative step ``max|d_i|/(1+|theta_i|)``; L-BFGS/Optax: gradient.
      max_iter: iteration cap (static).
      buckets: pad ``n`` up to the next shape bucket (``m * 2**e``, ``m`` in
        8..15: at most 12.5% more rows for ``n >= 8``) with rows of frequency
        weight 0 (``X = 0``, ``offset = 0``, ``y`` in the support, Binomial
        ``trials = 0``), after the checks. Zero-weight rows contribute exactly
        nothing, so the result is the fit of the given rows (``nobs`` and the
        information criteria included), while every ``n`` in a bucket shares
        one compiled fit. Inputs under the caller's ``jit``/``vmap`` (tracers)
        and arrays sharded over several devices are not padded.

    Returns:
      FitResult. ``converged=False`` (plus a warning when not traced) on
      non-convergence, separation or a StudentT df at its bound.

    Raises:
      ValueError: bad shapes, non-finite values, y outside the support, negative
        weights, more parameters than observations, a rank-deficient X.
    """
    _check_solver(solver, family)
    _check_tol_max_iter(tol, max_iter)
    if not isinstance(buckets, bool | np.bool_):
        raise TypeError(f"buckets must be True or False; got {buckets!r}.")
    X, y, weights, offset, trials, names = _prepare(
        X, y, family, weights, offset, trials
    )
    tol = jnp.asarray(tol, X.dtype)
    data = (X, y, weights, offset, trials)
    if buckets and _buckets.paddable(*data):
        # after _prepare: checks and the rank test saw only the given rows
        data = _buckets.pad_rows(*data, family, _buckets.bucket_size(X.shape[0]))
    res, r_eq = _fit_compiled(data[0])(
        *data,
        tol,
        family=family,
        solver=solver,
        max_iter=max_iter,
    )
    res = res.replace(names=names)
    if _checks.concrete(res.converged) is not None and np.ndim(res.converged) == 0:
        if r_eq is not None:
            cols = closed_form.collinear_columns(r_eq, names)
            if cols is not None:
                raise closed_form.rank_error(cols, X.shape[1])
        res = _post_check(res, X, y, family, weights, trials, names)
    return res


def _post_check(res, X, y, family, weights, trials, names):
    status = int(res.status)
    if status == 4 and not isinstance(family, fam.Categorical):
        cols = _separating_columns(X, y, family, weights, trials, names)
        if cols is None:  # a confident but genuine fit: no separating direction exists
            ok = bool(jnp.isfinite(res.loglik))
            res = res.replace(
                status=jnp.asarray(0 if ok else 1), converged=jnp.asarray(ok)
            )
        else:
            warnings.warn(
                f"{family.name}: perfect or quasi-complete separation: the MLE does not "
                f"exist (coefficients diverge along columns {cols}). converged=False.",
                PerfectSeparationWarning,
                stacklevel=3,
            )
            return res
    if status == 4 and isinstance(family, fam.Categorical):
        warnings.warn(
            "Categorical: some observations are predicted with probability 1 "
            "(separation); the MLE does not exist. converged=False.",
            PerfectSeparationWarning,
            stacklevel=3,
        )
    elif status == 5:
        warnings.warn(
            f"StudentT: df reached its bound {STUDENT_T_DF_MAX:g}; the noise looks "
            "Gaussian: fit mj.families.Gaussian() instead. converged=False.",
            ConvergenceWarning,
            stacklevel=3,
        )
    elif not bool(res.converged):
        warnings.warn(
            f"{family.name} fit did not converge ({res.reason}) in {int(res.n_iter)} "
            "iterations; the last iterate is returned. Raise max_iter or check the data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return res


def _separating_columns(X, y, family, weights, trials, names):
    """Host LP: a direction b with s_i x_i.b >= 0 that predicts rows perfectly."""
    from scipy.optimize import linprog

    Xn = np.asarray(X, np.float64)
    yn = np.asarray(y, np.float64)
    wn = np.asarray(weights) > 0
    Xn, yn = Xn[wn], yn[wn]
    if isinstance(family, fam.Bernoulli | fam.Binomial):
        top = 1.0 if trials is None else np.asarray(trials, np.float64)[wn]
        s = np.where(yn <= 0, -1.0, np.where(yn >= top, 1.0, 0.0))
    else:  # counts: zeros can be driven to mean 0
        s = np.where(yn <= 0, -1.0, 0.0)
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


def ols(X, y) -> FitResult:
    """Least squares to near the float64 limit (see :mod:`mlejax.closed_form`).

    Same ``FitResult`` fields as ``fit(X, y, Gaussian())``: ``stderr`` uses
    ``sigma^2 = RSS / (n - p)``, ``extra["scale"]`` is the MLE ``sqrt(RSS / n)``.

    >>> import numpy as np, mlejax as mj
    >>> X = mj.add_constant(np.arange(5.0))
    >>> y = 1.0 + 2.0 * np.arange(5.0) + [0, 0.1, -0.1, 0, 0]
    >>> [round(float(b), 12) for b in mj.ols(X, y).params]  # by hand: 1.02, 1.99
    [1.02, 1.99]
    """
    return fit(X, y, fam.Gaussian())


# ----------------------------------------------------------------------------
# any likelihood
# ----------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("loglik", "solver", "max_iter", "n_obs"))
def _fit_likelihood_jit(init_params, data, tol, *, loglik, solver, max_iter, n_obs):
    flat0, unravel = ravel_pytree(init_params)

    def nll(theta):
        return -loglik(unravel(theta), *data)

    if solver == "newton":

        def vgh(theta):
            f, g = jax.value_and_grad(nll)(theta)
            return f, g, jax.hessian(nll)(theta)

        out = newton(nll, vgh, flat0, tol=tol, max_iter=max_iter)
    elif solver == "lbfgs":
        out = lbfgs(lambda t: nll(t) / n_obs, flat0, tol=tol, max_iter=max_iter)
    else:
        out = optax_loop(
            lambda t: nll(t) / n_obs, flat0, solver, tol=tol, max_iter=max_iter
        )
    theta = out.x
    info = jax.hessian(nll)(theta)
    cov = inference.inverse_information(info)
    se = jnp.sqrt(jnp.diag(cov))
    ll = -nll(theta)
    k = flat0.shape[0]
    aic, bic = inference.information_criteria(ll, k, jnp.asarray(n_obs, flat0.dtype))
    trace = out.trace if solver == "newton" else out.trace * n_obs
    return FitResult(
        params=unravel(theta),
        extra={},
        extra_stderr={},
        stderr=unravel(se),
        cov=cov,
        loglik=ll,
        n_iter=out.n_iter,
        converged=out.converged,
        aic=aic,
        bic=bic,
        nobs=jnp.asarray(n_obs, flat0.dtype),
        status=out.status,
        trace=trace,
        family="custom",
        solver=_solver_name(solver),
    )


def fit_likelihood(
    loglik,
    init_params,
    *data,
    solver="newton",
    tol=1e-10,
    max_iter: int = 200,
    n_obs=None,
) -> FitResult:
    """Maximise any total log-likelihood ``loglik(params, *data)`` over a pytree.

    Gradients and the Hessian are exact (autodiff); standard errors are the
    square roots of the inverse observed information, shaped like
    ``init_params``; ``cov`` is over ``ravel_pytree`` order. ``aic``/``bic``
    count every parameter, with ``n`` the leading length of ``data[0]`` (or
    ``n_obs``). Pass the same ``loglik`` function object to reuse the compiled fit.

    >>> import jax.numpy as jnp, mlejax as mj
    >>> x = jnp.array([0.5, 1.5, 2.5, 3.5])
    >>> ll = lambda th, x: jnp.sum(-jnp.exp(th["log_rate"]) * x + th["log_rate"])
    >>> res = mj.fit_likelihood(ll, {"log_rate": jnp.array(0.0)}, x)
    >>> round(float(jnp.exp(res.params["log_rate"])), 6)   # 1 / mean(x)
    0.5
    """
    _check_solver(solver, None)
    _check_tol_max_iter(tol, max_iter)
    flat0, _ = ravel_pytree(init_params)
    if n_obs is None:
        n_obs = int(np.shape(data[0])[0]) if data and np.ndim(data[0]) > 0 else 1
    for i, d in enumerate(data):
        _checks.require_finite(f"data[{i}]", d)
    dtype = (
        flat0.dtype
        if jnp.issubdtype(flat0.dtype, jnp.floating)
        else jnp.result_type(float)
    )
    init_params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), init_params)
    res = _fit_likelihood_jit(
        init_params,
        tuple(data),
        jnp.asarray(tol, dtype),
        loglik=loglik,
        solver=solver,
        max_iter=max_iter,
        n_obs=n_obs,
    )
    if _checks.concrete(res.converged) is not None and np.ndim(res.converged) == 0:
        if not bool(res.converged):
            warnings.warn(
                f"fit_likelihood did not converge ({res.reason}) in {int(res.n_iter)} "
                "iterations; the last iterate is returned.",
                ConvergenceWarning,
                stacklevel=2,
            )
    return res
