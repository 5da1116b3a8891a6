"""Profile-likelihood confidence intervals, solved exactly and batched.

For parameter ``j`` the profile log-likelihood ``lp(b)`` fixes ``theta_j = b``
and re-maximises every other parameter; the interval inverts the signed root
of the likelihood-ratio statistic

    r(b) = sign(b - b_hat) * sqrt(2 * (ll_hat - lp(b)))

at ``r(b) = -z`` and ``r(b) = +z``, ``z = Phi^{-1}(1 - alpha / 2)`` (as R's
``confint`` for ``glm`` with MASS's ``profile``, but each endpoint is a root
found to the solver's tolerance, not read off a spline through a grid).

Each endpoint is one ``lax.while_loop``: a safeguarded Newton iteration on
``r`` whose derivative comes free from the refit (by the envelope theorem
``lp'(b)`` is the score of the fixed coordinate at the profile point, so
``r' = -lp' / r``), each step a Newton refit of the other parameters
warm-started from the previous one. Until a root is bracketed the step is
capped at four times the distance already covered; once bracketed, a Newton
step that leaves the bracket is replaced by bisection. All ``2k`` endpoints
run in one compiled, vmapped call.

Where the profile never reaches the cutoff the endpoint is ``-inf``/``+inf``
and its reason says why: the profile flattens out above the cutoff (three
four-fold expansions with under 1% progress each: separation, or a likelihood
that levels off), or the parameter space ends first (the log-likelihood
stops being finite: a boundary). An endpoint that does not converge is NaN.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from mlejax import _profile_batched as _pbatch
from mlejax import objective
from mlejax._math import quick_jit
from mlejax.engines import glm as _glm
from mlejax.solvers import NewtonProblem, newton_loop
from mlejax.status import ConvergenceWarning, Status

__all__ = ["ProfileCI", "profile_ci", "profile_ci_full", "profile_ci_traced"]

from mlejax._profile_core import (  # noqa: F401  (re-exported)
    BOUNDARY,
    BOUNDARY_HALVINGS,
    CONVERGED,
    FLAT,
    FLAT_HITS,
    FLAT_PROGRESS,
    MAX_ITER,
    NON_FINITE,
    OUTER_MAX_ITER,
    REASONS,
    ProfileCI,
    _batched,
    _check_alpha,
    _endpoint,
    _expand,
    _index_map,
    _State,
)

#: from this many matrix entries (n * k) on, refits are chord iterations with
#: the MLE's Hessian (see _glm_profile_core)
CHORD_MIN_SIZE = 2**18
#: from this many matrix entries (n * k) on, all endpoints of a convex GLM
#: without extra parameters are first solved together (mlejax._profile_batched)
BATCHED_MIN_SIZE = 2**18
#: from this size on the profile is compiled with LLVM's optimisation passes
LARGE_SIZE = 2**18


def _glm_profile_core(
    data, theta_hat, se, idx, z, tol, *, family, max_iter, chord=False
):
    obj = objective.make_glm(family, data)
    k = theta_hat.shape[0]
    nb = obj.nb
    project = _glm.extra_projection(family, nb)
    llhat = -obj.value(theta_hat)

    if chord:
        # Large n: the Hessian of the free block barely changes over the few
        # standard errors an interval spans, so each refit iterates
        #   free <- free - H_free(theta_hat)^-1 g_free(free)
        # (one Cholesky per coordinate, outside the loop) to the same
        # tolerance: only scores (X' r: a GEMM across the vmapped endpoints),
        # never a per-endpoint Gram matrix X' W X.
        _, H_hat, _ = obj.evaluate(theta_hat, True)

        def inner(b, free_init, j):
            m = _index_map(j, k)
            full = lambda f: _expand(f, b, j, k)  # noqa: E731
            L = jnp.linalg.cholesky(H_hat[m][:, m])

            def cond(c):
                _, step, it = c
                return (step > tol) & (it < max_iter)

            def body(c):
                x, _, it = c
                g, _, _ = obj.evaluate(full(x), False)
                d = jax.scipy.linalg.cho_solve((L, True), g[m])
                d = jnp.where(jnp.isfinite(d), d, jnp.nan)
                step = jnp.max(jnp.abs(d) / (1.0 + jnp.abs(x)))
                return x - d, jnp.where(jnp.isfinite(step), step, 0.0), it + 1

            big = jnp.asarray(jnp.inf, free_init.dtype)
            x, step, it = jax.lax.while_loop(cond, body, (free_init, big, 0))
            th = full(x)
            g, _, _ = obj.evaluate(th, False)
            lp = -obj.value(th)
            ok = (
                jnp.all(jnp.isfinite(x))
                & (step <= tol)
                & jnp.isfinite(lp)
                & jnp.isfinite(g[j])
            )
            return x, lp, -g[j], ok

        return _batched(inner, idx, theta_hat, se, llhat, z, tol)

    def inner(b, free_init, j):
        m = _index_map(j, k)
        full = lambda f: _expand(f, b, j, k)  # noqa: E731

        def evaluate(free, hess):
            g, H, eta = obj.evaluate(full(free), True)
            return g[m], H[m][:, m], eta

        def proj(free):
            return free if project is None else project(full(free))[m]

        problem = NewtonProblem(
            evaluate=evaluate,
            value_at=lambda eta, free: obj.value_at(eta, full(free)),
            eta=lambda free: obj.eta(full(free)),
            lin=lambda d: obj.lin(_expand(d, 0.0, j, k)[:nb]),
            nb=k - 1,
            cheap_hessian=True,
        )
        out = newton_loop(
            problem,
            proj(free_init),
            tol=tol,
            max_iter=max_iter,
            convex=family.convex,
            project=None if project is None else proj,
        )
        th = full(out.x)
        g, _, _ = obj.evaluate(th, False)
        lp = -obj.value(th)
        ok = (out.status != Status.NON_FINITE) & jnp.isfinite(lp) & jnp.isfinite(g[j])
        return out.x, lp, -g[j], ok

    return _batched(inner, idx, theta_hat, se, llhat, z, tol)


_glm_profile = quick_jit(
    _glm_profile_core, static_argnames=("family", "max_iter", "chord")
)
# large problems: LLVM's optimisation pays (elementwise passes over n rows)
_glm_profile_large = jax.jit(
    _glm_profile_core, static_argnames=("family", "max_iter", "chord")
)


def profile_ci_traced(
    X,
    y,
    family,
    params,
    stderr,
    idx,
    *,
    alpha=0.05,
    weights=None,
    offset=None,
    tol=1e-10,
    max_iter=100,
):
    """Profile intervals from a fit's ``params``/``stderr``, traceable (``jit``/``vmap``).

    The engine of :func:`profile_ci` for callers that already hold the MLE:
    under ``jax.vmap`` over ``y``, ``params`` and ``stderr`` it profiles a
    whole batch of fits (a Monte Carlo study) in one compiled call. For
    families without extra parameters (Bernoulli, Binomial without trials,
    Poisson); ``idx`` (a static tuple of coefficient indices) says which
    intervals. Returns ``(ci (m, 2), status (m, 2))`` with the codes of
    :class:`ProfileCI` (no warning: the status is data).
    """
    from scipy import stats

    if family.extra_names or not family.smooth or family.eta_has_axis:
        raise ValueError(
            f"profile_ci_traced: family {family.name} has extra parameters or is "
            "not a smooth single-predictor family; use profile_ci."
        )
    alpha = _check_alpha(alpha)
    X = jnp.asarray(X)
    n, dtype = X.shape[0], X.dtype
    w = jnp.ones(n, dtype) if weights is None else jnp.asarray(weights, dtype)
    off = jnp.zeros(n, dtype) if offset is None else jnp.asarray(offset, dtype)
    data = objective.GLMData(X, jnp.asarray(y, dtype), w, off, None)
    z = jnp.asarray(stats.norm.ppf(1 - alpha / 2), dtype)
    ci, st, _ = _glm_profile_core(
        data,
        jnp.asarray(params, dtype),
        jnp.asarray(stderr, dtype),
        jnp.asarray(idx),
        z,
        jnp.asarray(tol, dtype),
        family=family,
        max_iter=max_iter,
    )
    return ci, st


def _which(params, k: int, names) -> np.ndarray:
    if params is None:
        return np.arange(k)
    items = [params] if isinstance(params, int | str | np.integer) else list(params)
    out = []
    for it in items:
        if isinstance(it, str):
            if names is None or it not in names:
                raise ValueError(f"params: unknown coefficient name {it!r}.")
            out.append(list(names).index(it))
        else:
            i = int(it)
            if not -k <= i < k:
                raise ValueError(
                    f"params: index {i} out of range for {k} coefficients."
                )
            out.append(i % k)
    return np.asarray(out, dtype=int)


def _finish(ci, status, it, estimate, full_output: bool, what: str):
    status, it = np.asarray(status), np.asarray(it)
    reason = [[REASONS[int(c)] for c in row] for row in status]
    bad = sorted({int(c) for c in status.ravel()} - {CONVERGED})
    if bad:
        warnings.warn(
            f"{what}: some endpoints are not finite roots: "
            + "; ".join(REASONS[c] for c in bad),
            ConvergenceWarning,
            stacklevel=3,
        )
    if full_output:
        return ProfileCI(ci, status, reason, estimate, it)
    return ci


def profile_ci_full(X, y, family, alpha=0.05, params=None, **fit_kwargs) -> ProfileCI:
    """:func:`profile_ci` with diagnostics: a :class:`ProfileCI`."""
    return _profile_ci(X, y, family, alpha, params, True, fit_kwargs)


def profile_ci(X, y, family, alpha=0.05, params=None, **fit_kwargs) -> jax.Array:
    """Profile-likelihood intervals for the coefficients of ``mj.fit``.

    Args:
      X, y, family: as for :func:`mlejax.fit`.
      alpha: ``1 - alpha`` intervals (two-sided, normal cutoff as R's
        ``confint``); strictly between 0 and 1.
      params: which coefficients (indices into the flattened ``params``, or
        names with pandas ``X``); all by default.
      **fit_kwargs: passed to ``mj.fit`` (``weights``, ``offset``,
        ``trials``, ``exposure``..., ``tol``, ``max_iter``); ``tol`` also sets
        the endpoint tolerance. Only ``solver="newton"``.

    Returns:
      ``(k, 2)`` array of endpoints: each a root of the signed root LR
      statistic to the tolerance, with extra parameters (scale, shape, ...)
      re-maximised too (for Gaussian and Gamma this is the exact LR interval;
      R's ``profile.glm`` instead holds the dispersion at its estimate and uses
      an F cutoff). ``-inf``/``+inf`` where the profile never reaches the
      cutoff (separation, a boundary), NaN where the search failed; both warn
      and :func:`profile_ci_full` gives the reasons.

    Raises:
      ValueError: ``alpha`` outside (0, 1), a non-smooth family (Laplace), and
        whatever ``mj.fit`` raises.
    """
    return _profile_ci(X, y, family, alpha, params, False, fit_kwargs)


def _profile_ci(X, y, family, alpha, params, full_output, fit_kwargs):
    from scipy import stats

    from mlejax.fit import fit

    alpha = _check_alpha(alpha)
    if fit_kwargs.get("solver", "newton") != "newton":
        raise ValueError("profile_ci: only solver='newton' is supported.")
    if not family.smooth:
        raise ValueError(
            f"profile_ci: {family.name}'s log-likelihood is not smooth; profile "
            "intervals need Newton refits."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation is handled endpoint by endpoint
        res = fit(X, y, family, **fit_kwargs)
    # host-side (NumPy) set-up: eager JAX ops would each compile
    beta = np.ravel(np.asarray(res.params))
    dtype = beta.dtype
    n = np.shape(y)[0]

    def host(a, default):
        if a is None:
            return np.full(n, default, dtype)
        a = a.to_numpy() if hasattr(a, "to_numpy") else np.asarray(a)
        return np.asarray(a, dtype)

    Xa = host(X, 0.0)
    trials = fit_kwargs.get("trials")
    vw = fit_kwargs.get("var_weights")
    wts = host(fit_kwargs.get("weights"), 1.0)
    if vw is not None:  # precision 0: the row is left out (as in fit)
        vw = host(vw, 1.0)
        wts, vw = np.where(vw > 0, wts, 0.0), np.where(vw > 0, vw, 1.0)
    data = objective.GLMData(
        Xa,
        host(y, 0.0),
        wts,
        host(_offset(fit_kwargs), 0.0),
        None if trials is None else host(trials, 0.0),
        vw,
    )
    ex = [np.log(np.asarray(res.extra[k], dtype)) for k in family.extra_names]
    theta_hat = np.concatenate([beta, np.stack(ex)]) if ex else beta
    se = np.ones_like(theta_hat)
    se[: beta.shape[0]] = np.ravel(np.asarray(res.stderr))
    nbeta = beta.shape[0]
    row_names = res._row_names(nbeta) if res.names is not None else None
    idx = _which(params, nbeta, row_names)
    z = float(stats.norm.ppf(1 - alpha / 2))
    tol = np.asarray(fit_kwargs.get("tol", 1e-10), dtype)
    zz = np.asarray(z, dtype)
    ci = np.full((idx.shape[0], 2), np.nan, dtype)
    st = np.full((idx.shape[0], 2), MAX_ITER, np.int32)
    it = np.zeros((idx.shape[0], 2), np.int32)
    rest = np.arange(idx.shape[0])
    if Xa.size >= BATCHED_MIN_SIZE and _pbatch.eligible(family, data):
        # all endpoints in one chord iteration (see mlejax._profile_batched);
        # a parameter with an endpoint it does not solve goes to the search
        run = (
            _pbatch.batched_profile
            if Xa.size >= LARGE_SIZE
            else _pbatch.batched_profile_quick
        )
        logit = _pbatch.unit_logit(family, data)
        # the fit's model-based covariance is H^-1 (no dispersion factor):
        # the chord matrix without another Gram pass
        cov = np.asarray(res.cov, dtype)
        phi = 1.0 if res.dispersion is None else float(np.asarray(res.dispersion))
        fit_cov = res.cov_type == "nonrobust" and phi == 1.0
        fit_cov = fit_cov and cov.shape == (nbeta, nbeta) and np.isfinite(cov).all()
        e, done, n_it = run(
            data,
            theta_hat,
            idx,
            zz,
            tol,
            cov if fit_cov else None,
            family=family,
            logit=logit,
        )
        solved = np.asarray(done).all(axis=1)
        ci[solved] = np.asarray(e)[solved]
        st[solved] = CONVERGED
        it[solved] = np.asarray(n_it)[solved]
        rest = np.flatnonzero(~solved)
    if rest.size:
        large = Xa.size >= LARGE_SIZE
        c2, s2, i2 = (_glm_profile_large if large else _glm_profile)(
            data,
            theta_hat,
            se,
            idx[rest],
            zz,
            tol,
            family=family,
            max_iter=int(fit_kwargs.get("max_iter", 100)),
            chord=bool(Xa.size >= CHORD_MIN_SIZE and family.convex),
        )
        ci[rest], st[rest], it[rest] = np.asarray(c2), np.asarray(s2), np.asarray(i2)
    return _finish(jnp.asarray(ci), st, it, beta[idx], full_output, "profile_ci")


def _offset(kw):
    off, expo = kw.get("offset"), kw.get("exposure")
    if expo is None:
        return off
    lo = np.log(np.asarray(expo, dtype=float))
    return lo if off is None else np.asarray(off, dtype=float) + lo
