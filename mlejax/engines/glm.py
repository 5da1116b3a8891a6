"""Every family by Newton on the row-block objective, or by a first-order solver.

Start values come from the family's contract (``working_response``, ``mean``,
``init_extra``); for ``n >= SUBSAMPLE_MIN_ROWS`` Newton starts from the fit on a
strided subsample, whose scaled Hessian drives the first steps. After the
solve, the information comes from :mod:`mlejax.inference` (observed, or the
family's expected information when its log-likelihood is not smooth), and
the fit is checked for separation (discrete families) and for extras at
their bounds (``Family.extra_bounds``), and a singular or indefinite
information (``RANK_DEFICIENT``/``NOT_MAXIMUM``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mlejax import _math, inference, objective
from mlejax.engines import EngineResult
from mlejax.objective import GLMData
from mlejax.solvers import lbfgs, newton_loop, optax_loop
from mlejax.solvers.newton import newton_direction
from mlejax.status import Status

#: a row whose fitted log-probability exceeds -SEPARATION_TOL is fitted perfectly
SEPARATION_TOL = 1e-11
#: the same for first-order solvers, which stop earlier on the way to infinity
SEPARATION_TOL_FIRST_ORDER = 1e-6
#: first-order fits: the Newton decrement g'H^-1 g / 2 (the predicted gain in
#: log-likelihood, scale-free) must be below this at the returned point
#: (float32: rounding allows no less)
DECREMENT_TOL = 1e-6
#: ... and in float64 below this times the number of observations: a score
#: ``g_j`` of about 1e-6 of ``sum_i |s_ij|`` (the per-observation scores), the
#: stationarity that Newton's fits meet by far. 1e-6 alone allowed 1e-4, where
#: L-BFGS' gradient test is fooled by a tiny column (its gradient is tiny too).
DECREMENT_TOL_PER_OBS = 1e-12
#: Newton on a strided subsample first when n is at least this large
SUBSAMPLE_MIN_ROWS = 131_072
#: rows of that subsample (about)
SUBSAMPLE_ROWS = 32_768


def quick_lstsq(X: jax.Array, z: jax.Array, w: jax.Array) -> jax.Array:
    """Weighted normal equations in equilibrated form (starting values only)."""
    d = _math.pow2_scale(X)
    A = X * d[None, :]
    G = A.T @ (A * w[:, None])
    G = G + 1e-10 * jnp.trace(G) / G.shape[0] * jnp.eye(G.shape[0], dtype=G.dtype)
    L = jnp.linalg.cholesky(G)
    b = jax.scipy.linalg.cho_solve((L, True), A.T @ (w * z))
    return jnp.where(jnp.isfinite(b), b, 0.0) * d


def _data_kw(trials) -> dict:
    return {} if trials is None else {"trials": trials}


def start_values(family, data: GLMData, p: int) -> jax.Array:
    """Starting ``theta``: a regression of the working response, log extras."""
    X, y, w, offset, trials = data[:5]
    if data.var_weights is not None:  # precision-weighted start
        w = w * data.var_weights
    nb = p * family.eta_dim
    dtype = X.dtype
    z = family.working_response(y, **_data_kw(trials))
    if z is None:  # start at eta = 0
        beta0, mu0 = jnp.zeros(nb, dtype), None
    else:
        beta0 = quick_lstsq(X, jnp.where(jnp.isfinite(z), z, 0.0) - offset, w)
        beta0 = _inside_start(family, data, beta0)
        mu0 = family.mean(X @ beta0 + offset)
    if not family.extra_names:
        return beta0
    # Frequency-weighted moments: zero-weight rows (buckets=True padding) and
    # replicated rows give the start of the unpadded / replicated data.
    ex = family.init_extra(y, mu0, w=w)
    u0 = jnp.log(jnp.stack([jnp.asarray(ex[k], dtype) for k in family.extra_names]))
    u0 = jnp.where(jnp.isfinite(u0), u0, 0.0)
    return jnp.concatenate([beta0, u0])


def _inside_start(family, data: GLMData, beta0: jax.Array) -> jax.Array:
    """Pull a start whose means leave the link's valid range back inside.

    Links with a finite edge (``Family.valid_eta``): the least-squares start
    is shrunk towards the intercept-only fit ``link(mean y)`` (when ``X`` has
    a constant column) by halving, as R's ``glm.fit`` halves a step that
    leaves the valid range; the largest valid fraction is kept.
    """
    X, y, w, offset, trials = data[:5]
    eta1 = X @ beta0 + offset
    if family.valid_eta(eta1) is None:
        return beta0
    pos = w > 0
    row0 = X[jnp.argmax(pos)]
    same = jnp.all(jnp.where(pos[:, None], X == row0[None, :], True), axis=0)
    const = same & (row0 != 0)
    j = jnp.argmax(const)
    c0 = family.linkfun(family.null_mean(y, w, **_data_kw(trials)))
    c0 = jnp.where(jnp.isfinite(c0), c0, 0.0)
    beta_int = jnp.zeros_like(beta0).at[j].set(jnp.where(const[j], c0 / row0[j], 0.0))
    eta0 = X @ beta_int + offset
    fracs = 0.5 ** jnp.arange(12, dtype=X.dtype)
    fracs = jnp.concatenate([fracs, jnp.zeros(1, X.dtype)])

    def ok(t):
        v = family.valid_eta(eta0 + t * (eta1 - eta0))
        return jnp.all(jnp.where(pos, v, True))

    good = jax.vmap(ok)(fracs)
    t = fracs[jnp.argmax(good)]  # the first (largest) valid fraction, else 1
    t = jnp.where(jnp.any(good), t, 1.0)
    return beta_int + t * (beta0 - beta_int)


def separated(family, data: GLMData, obj, theta, tol=SEPARATION_TOL) -> jax.Array:
    """Whether some positive-weight row is predicted with probability ~1."""
    if not family.can_separate:
        return jnp.asarray(False)
    X, y, w, offset, trials = data[:5]
    beta, extra = obj.unpack(theta)
    logp = family.separation_log_prob(y, obj.eta(theta), **extra, **_data_kw(trials))
    return jnp.any((w > 0) & (logp > -tol))


def extra_projection(family, nb: int):
    """Keep the log extras inside ``log(extra_bounds)`` (None when unbounded)."""
    clamps = []
    for i, k in enumerate(family.extra_names):
        lo, hi = family.extra_bounds.get(k, (0.0, math.inf))
        if lo > 0 or math.isfinite(hi):
            lo_u = math.log(lo) if lo > 0 else -math.inf
            hi_u = math.log(hi) if math.isfinite(hi) else math.inf
            clamps.append((nb + i, lo_u, hi_u))
    if not clamps:
        return None

    def project(theta):
        for i, lo_u, hi_u in clamps:
            theta = theta.at[i].set(jnp.clip(theta[i], lo_u, hi_u))
        return theta

    return project


def subsample_start(family, data: GLMData, convex: bool, project):
    """Warm start from the MLE on every k-th row (static k), if it is sound.

    Returns ``(theta, H, ok)``: the subsample's Hessian, scaled by the ratio of
    the weight totals, approximates the full data's (to about
    ``sqrt(p / rows)``), so Newton's first steps on the full data need only
    the score. The subsample fit is rejected (``ok`` False) if it did not
    converge, is not finite, or predicts some subsample row perfectly (a
    separated subsample says nothing about the full data); its own start
    values are returned then.
    """
    X, y, w, offset, trials, v = data
    k = X.shape[0] // SUBSAMPLE_ROWS
    sub = GLMData(
        X[::k],
        y[::k],
        w[::k],
        offset[::k],
        None if trials is None else trials[::k],
        None if v is None else v[::k],
    )
    obj = objective.make_glm(family, sub)
    theta0 = start_values(family, sub, X.shape[1])  # a full-data one costs a Gram
    if project is not None:
        theta0 = project(theta0)
    out = newton_loop(
        obj, theta0, tol=1e-6, max_iter=30, convex=convex, project=project
    )
    ok = out.converged & jnp.all(jnp.isfinite(out.x))
    ok = ok & ~separated(family, sub, obj, out.x)
    scale = jnp.sum(w) / jnp.sum(sub.weights)
    ok = ok & jnp.all(jnp.isfinite(out.H)) & jnp.isfinite(scale)
    return jnp.where(ok, out.x, theta0), jnp.where(ok, out.H * scale, 0.0), ok


def fit(
    family, data: GLMData, solver, tol, max_iter: int, information: str = "observed"
) -> EngineResult:
    """Maximum likelihood over ``theta = [vec(beta), log(extra)]``.

    ``information``: ``"observed"`` (the exact Hessian) or ``"expected"``
    (Fisher: :func:`mlejax.inference.expected_glm_information`) for the
    covariance.
    """
    X, y, w, offset, trials = data[:5]
    n, p = X.shape
    m, nb, q = objective.n_params(family, p)
    obj = objective.make_glm(family, data)
    project = extra_projection(family, nb)
    convex = family.convex
    nobs = jnp.sum(w)
    if solver == "newton":
        if n >= SUBSAMPLE_MIN_ROWS:
            theta0, H0, H0_ok = subsample_start(family, data, convex, project)
        else:
            theta0, H0, H0_ok = start_values(family, data, p), None, None
        if project is not None:  # moment starts can lie beyond a bound
            theta0 = project(theta0)
        out = newton_loop(
            obj,
            theta0,
            tol=tol,
            max_iter=max_iter,
            convex=convex,
            project=project,
            H0=H0,
            H0_ok=H0_ok,
        )
        trace, g, H = out.trace, out.g, out.H
    else:
        # First-order solvers work on the mean NLL, so learning rates do not scale with n.
        # Bounded extras: the solver moves freely, the objective sees the
        # projection (flat beyond a bound), and the projected point is returned.
        proj = project or (lambda th: th)
        mean_nll = lambda th: obj.value(proj(th)) / nobs  # noqa: E731
        theta0 = proj(start_values(family, data, p))
        if solver == "lbfgs":
            out = lbfgs(mean_nll, theta0, tol=tol, max_iter=max_iter)
        else:
            out = optax_loop(mean_nll, theta0, solver, tol=tol, max_iter=max_iter)
        out = out._replace(x=proj(out.x))
        trace = out.trace * nobs
        g, H, _ = obj.evaluate(out.x, True)
        # The solver's gradient test is not scale-free (a column scaled by 1e8
        # passes it far from the optimum): require the Newton decrement too.
        if family.smooth:
            step = newton_direction(g, H, convex)
            dec_tol = (
                DECREMENT_TOL
                if jnp.finfo(g.dtype).bits < 64
                else DECREMENT_TOL_PER_OBS * nobs
            )
            short = ~(0.5 * jnp.dot(g, step) <= dec_tol)
            short = (out.status == Status.CONVERGED) & short
        else:
            # A kinked log-likelihood (Laplace: |y - eta|) has no gradient at its
            # maximum and no useful Hessian: a first-order stop (a small step,
            # a failed line search, the iteration cap) certifies nothing, and
            # which of them comes first is a matter of rounding (eager vs
            # vmapped). Every ordinary stop is reported as NOT_MAXIMUM, the
            # same in every transform; use solver="newton" (exact LAD).
            short = (
                (out.status == Status.CONVERGED)
                | (out.status == Status.MAX_ITER)
                | (out.status == Status.LINE_SEARCH)
            )
        out = out._replace(status=jnp.where(short, int(Status.NOT_MAXIMUM), out.status))
    theta = out.x
    if family.smooth:
        info = inference.natural_hessian(H, g, theta, nb)
        if information == "expected":
            info = inference.expected_glm_information(family, data, obj, theta, info)
    else:  # e.g. Laplace: the observed Hessian says nothing; expected information
        info = inference.natural_hessian(
            obj.expected_information(theta), jnp.zeros_like(g), theta, nb
        )
    cov_scale = nobs / (nobs - p) if family.ols_convention else 1.0
    inf = inference.from_information(info, nb, cov_scale)
    beta, extra = obj.unpack(theta)
    # The reported log-likelihood from a fresh X @ beta (one pass).
    eta_end = obj.eta(theta)
    loglik = -obj.value_at(eta_end, theta)
    status = out.status
    # A singular or indefinite information at the end: no (interior) maximum.
    pd = jnp.all(jnp.isfinite(inf.stderr)) & jnp.all(jnp.isfinite(inf.extra_stderr))
    bad_info = Status.RANK_DEFICIENT if convex else Status.NOT_MAXIMUM
    status = jnp.where((status == Status.CONVERGED) & ~pd, int(bad_info), status)
    # boundaries, most specific last
    status = jnp.where(family.at_bound(y, w, extra), int(Status.BOUND), status)
    sep_tol = SEPARATION_TOL if solver == "newton" else SEPARATION_TOL_FIRST_ORDER
    sep = separated(family, data, obj, theta, sep_tol)
    status = jnp.where(sep, int(Status.SEPARATION), status)
    status = jnp.where(family.empty_class(y, w), int(Status.EMPTY_CLASS), status)
    # a mean outside (or on the edge of) its link's range: no interior MLE
    out_of_range = family.mean_out_of_range(eta_end, w > 0)
    if out_of_range is not None:
        status = jnp.where(out_of_range, int(Status.INVALID_MEAN), status)
    converged = status == Status.CONVERGED
    return EngineResult(
        params=beta,
        extra=extra,
        extra_stderr=dict(zip(family.extra_names, inf.extra_stderr, strict=True)),
        cov=inf.cov,
        stderr=inf.stderr.reshape(jnp.shape(beta)),
        loglik=loglik,
        n_iter=out.n_iter,
        converged=converged,
        status=status,
        trace=trace,
        hess=H,
    )
