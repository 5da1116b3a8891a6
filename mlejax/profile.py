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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlejax import objective
from mlejax.engines import glm as _glm
from mlejax.solvers import NewtonProblem, newton_loop
from mlejax.status import ConvergenceWarning, Status

__all__ = ["ProfileCI", "profile_ci", "profile_ci_full", "profile_ci_traced"]

#: endpoint reason codes (``ProfileCI.status``)
CONVERGED, FLAT, BOUNDARY, MAX_ITER, NON_FINITE = 0, 1, 2, 3, 4
REASONS = {
    CONVERGED: "converged",
    FLAT: (
        "the profile log-likelihood levels off above the cutoff: the endpoint is "
        "infinite (separation, or a likelihood flat in this parameter)"
    ),
    BOUNDARY: (
        "the log-likelihood stops being finite before the profile reaches the "
        "cutoff (a boundary of the parameter space): the endpoint is infinite"
    ),
    MAX_ITER: "the endpoint search did not converge (max_iter): NaN",
    NON_FINITE: "the refit at the endpoint failed (non-finite): NaN",
}
#: outer (endpoint) iterations
OUTER_MAX_ITER = 100
#: an expansion that moves r less than this fraction of the way counts as flat
FLAT_PROGRESS = 0.01
#: that many such expansions in a row: the profile is flat
FLAT_HITS = 3
#: halvings towards the last finite point before calling it a boundary
BOUNDARY_HALVINGS = 50


class ProfileCI(NamedTuple):
    """Profile intervals with diagnostics (:func:`profile_ci_full`).

    ``ci``: ``(k, 2)`` endpoints; ``status``: ``(k, 2)`` reason codes (0
    converged, 1 flat -> infinite, 2 boundary -> infinite, 3 max_iter -> NaN,
    4 non-finite refit -> NaN); ``reason``: the words, nested lists;
    ``estimate``: the MLE; ``n_iter``: outer iterations per endpoint.
    """

    ci: jax.Array
    status: np.ndarray
    reason: list
    estimate: jax.Array
    n_iter: np.ndarray


def _check_alpha(alpha) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}.") from None
    if not 0.0 < a < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1; got {alpha!r}.")
    return a


def _index_map(j, k):
    """Free-coordinate positions in the full vector (coordinate j left out)."""
    i = jnp.arange(k - 1)
    return i + (i >= j)


def _expand(free, b, j, k):
    full = jnp.zeros((k,), free.dtype).at[_index_map(j, k)].set(free)
    return full.at[j].set(b)


class _State(NamedTuple):
    b: jax.Array
    r: jax.Array
    dr: jax.Array
    free: jax.Array
    a: jax.Array  # the nearest point known not to reach the target
    a_r: jax.Array
    c: jax.Array  # a point known to reach it (once bracketed)
    bracketed: jax.Array
    c_real: jax.Array  # c is a point where r reached the target (not a failure)
    capped: jax.Array  # the last step was a capped expansion
    flat_hits: jax.Array
    halvings: jax.Array
    it: jax.Array
    status: jax.Array
    done: jax.Array


def _endpoint(inner, j, side, bh, se, llhat, free0, z, tol):
    """One endpoint: root of ``r(b) = side * z`` for coordinate ``j``.

    ``inner(b, free_init, j) -> (free, lp, dlp, ok)``: the profile point, the
    profile log-likelihood, its derivative in ``b`` and whether all is finite.
    """
    dtype = free0.dtype
    target = side * z
    d0 = jnp.where(jnp.isfinite(se) & (se > 0), z * se, 1.0 + jnp.abs(bh))

    def evaluate(b, free_init):
        free, lp, dlp, ok = inner(b, free_init, j)
        dev = jnp.maximum(2.0 * (llhat - lp), 0.0)
        r = jnp.sign(b - bh) * jnp.sqrt(dev)
        dr = -dlp / r
        ok = ok & jnp.isfinite(r)
        return jnp.where(ok, free, free_init), r, dr, ok

    b0 = bh + side * d0
    zero = jnp.zeros((), dtype)
    # the state holds the point to evaluate next: one traced refit per loop
    f = jnp.asarray(False)
    s0 = _State(b0, zero, zero, free0, bh, zero, b0, f, f, f, 0, 0, 0, MAX_ITER, f)
    s0 = jax.tree_util.tree_map(jnp.asarray, s0)

    def body(s: _State):
        free, r, dr, ok = evaluate(s.b, s.free)
        hit = ok & (side * (r - target) >= 0)
        # converged: r at the target, or the bracket below the tolerance
        close = ok & (jnp.abs(r - target) <= tol * (1.0 + z))
        # a failed refit inside a bracket shrinks it from the far side
        c = jnp.where(hit | (~ok & s.bracketed), s.b, s.c)
        bracketed = s.bracketed | hit
        # progress of the last expansion (flatness test), before a moves
        moved = side * (r - s.a_r)
        flat_step = (
            ok & ~hit & s.capped & (moved < FLAT_PROGRESS * (target - s.a_r) * side)
        )
        flat_hits = jnp.where(
            ok & ~hit, jnp.where(flat_step, s.flat_hits + 1, 0), s.flat_hits
        )
        a = jnp.where(ok & ~hit, s.b, s.a)
        a_r = jnp.where(ok & ~hit, r, s.a_r)
        width = jnp.abs(c - a)
        c_real = jnp.where(hit, True, jnp.where(~ok & s.bracketed, False, s.c_real))
        tiny = bracketed & (width <= tol * (1.0 + jnp.abs(c)))
        narrow = tiny & c_real
        halvings = jnp.where(ok, 0, s.halvings + 1)
        flat = ~bracketed & (flat_hits >= FLAT_HITS)
        boundary = ~bracketed & (halvings >= BOUNDARY_HALVINGS)
        failed = (bracketed & (halvings >= BOUNDARY_HALVINGS)) | (tiny & ~c_real)
        status = jnp.select(
            [close | narrow, flat, boundary, failed],
            [CONVERGED, FLAT, BOUNDARY, NON_FINITE],
            MAX_ITER,
        )
        done = close | narrow | flat | boundary | failed | (s.it + 1 >= OUTER_MAX_ITER)
        # the next point
        newton = s.b + (target - r) / dr
        newton_ok = ok & jnp.isfinite(newton)
        lo, hi = jnp.minimum(a, c), jnp.maximum(a, c)
        inside = newton_ok & (newton > lo) & (newton < hi)
        b_br = jnp.where(inside, newton, 0.5 * (a + c))
        cap = 4.0 * (jnp.abs(a - bh) + d0)
        step = side * (newton - s.b)
        forward = newton_ok & (step > 0) & (step <= cap)
        b_ex = jnp.where(forward, newton, a + side * cap)
        b_nf = 0.5 * (a + s.b)  # back towards the last finite point
        b_next = jnp.where(~ok & ~bracketed, b_nf, jnp.where(bracketed, b_br, b_ex))
        return _State(
            b=jnp.where(done, s.b, b_next),
            r=r,
            dr=dr,
            free=free,
            a=a,
            a_r=a_r,
            c=c,
            bracketed=bracketed,
            c_real=c_real,
            capped=ok & ~bracketed & ~forward,
            flat_hits=flat_hits,
            halvings=halvings,
            it=s.it + 1,
            status=status,
            done=done,
        )

    out = jax.lax.while_loop(lambda s: ~s.done, body, s0)
    inf = jnp.asarray(jnp.inf, dtype)
    value = jnp.where(
        out.status == CONVERGED,
        out.b,
        jnp.where((out.status == FLAT) | (out.status == BOUNDARY), side * inf, jnp.nan),
    )
    return value, out.status, out.it


def _batched(inner, idx, theta_hat, se, llhat, z, tol):
    """All ``2 len(idx)`` endpoints in one vmapped loop."""
    k = theta_hat.shape[0]

    def one(j, side):
        free0 = theta_hat[_index_map(j, k)]
        return _endpoint(inner, j, side, theta_hat[j], se[j], llhat, free0, z, tol)

    jj = jnp.repeat(idx, 2)
    sides = jnp.tile(jnp.asarray([-1.0, 1.0], theta_hat.dtype), idx.shape[0])
    v, st, it = jax.vmap(one)(jj, sides)
    m = idx.shape[0]
    return v.reshape(m, 2), st.reshape(m, 2), it.reshape(m, 2)


# ---------------------------------------------------------------------------
# regression models of mj.fit
# ---------------------------------------------------------------------------
def _quick_jit(fn, static):
    try:
        return jax.jit(
            fn,
            static_argnames=static,
            compiler_options={"xla_backend_optimization_level": 0},
        )
    except TypeError:  # a JAX without per-function compiler options
        return jax.jit(fn, static_argnames=static)


#: from this many matrix entries (n * k) on, refits are chord iterations with
#: the MLE's Hessian (see _glm_profile_core)
CHORD_MIN_SIZE = 2**18
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


_glm_profile = _quick_jit(_glm_profile_core, ("family", "max_iter", "chord"))
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
    data = objective.GLMData(
        Xa,
        host(y, 0.0),
        host(fit_kwargs.get("weights"), 1.0),
        host(_offset(fit_kwargs), 0.0),
        None if trials is None else host(trials, 0.0),
    )
    ex = [np.log(np.asarray(res.extra[k], dtype)) for k in family.extra_names]
    theta_hat = np.concatenate([beta, np.stack(ex)]) if ex else beta
    se = np.ones_like(theta_hat)
    se[: beta.shape[0]] = np.ravel(np.asarray(res.stderr))
    nbeta = beta.shape[0]
    row_names = res._row_names(nbeta) if res.names is not None else None
    idx = _which(params, nbeta, row_names)
    z = float(stats.norm.ppf(1 - alpha / 2))
    large = Xa.size >= LARGE_SIZE
    ci, st, it = (_glm_profile_large if large else _glm_profile)(
        data,
        theta_hat,
        se,
        idx,
        np.asarray(z, dtype),
        np.asarray(fit_kwargs.get("tol", 1e-10), dtype),
        family=family,
        max_iter=int(fit_kwargs.get("max_iter", 100)),
        chord=bool(Xa.size >= CHORD_MIN_SIZE and family.convex),
    )
    return _finish(ci, st, it, beta[idx], full_output, "profile_ci")


def _offset(kw):
    off, expo = kw.get("offset"), kw.get("exposure")
    if expo is None:
        return off
    lo = np.log(np.asarray(expo, dtype=float))
    return lo if off is None else np.asarray(off, dtype=float) + lo
