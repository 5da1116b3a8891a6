"""The root finder behind profile-likelihood intervals (see :mod:`mlejax.profile`).

Each endpoint of a profile interval is one ``lax.while_loop``: a safeguarded
Newton iteration on the signed root ``r(b)`` of the likelihood-ratio statistic,
each step a warm-started refit of the other parameters; all endpoints are
batched by ``vmap``. Shared by :func:`mlejax.profile_ci` and
:func:`mlejax.profile_ci_likelihood`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
