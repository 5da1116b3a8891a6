"""All profile endpoints of a large GLM fit as one batched iteration.

The per-endpoint path (:mod:`mlejax._profile_core`) nests a refit of the free
parameters inside a root search on the fixed one, so each endpoint makes tens
of passes over ``X``. Here the two are one iteration, and every pass serves
all ``2m`` endpoints at once.

Endpoint ``e`` (coordinate ``j``, side ``s``) solves the ``k`` equations

    g_f(theta) = 0      (the other parameters re-maximised)
    r(theta_j) = s z    (the signed root of the LR statistic at the cutoff)

by chord steps with the MLE's Hessian ``H`` (``Sigma = H^-1``). Each pass
forms ``eta = X Theta`` for the MLE and all endpoints (one GEMM over row
blocks), the log-likelihood differences to the MLE row by row (so the
``~z^2/2`` drop is not lost in a sum of size ``n``) and the scores
``G = X' R`` (one GEMM). Every endpoint's reduced solve comes from ``Sigma``
alone: with ``u = g`` with its ``j``-th entry zeroed,

    H_ff^-1 g_f  = (Sigma u - Sigma_:j (Sigma u)_j / Sigma_jj)_f
    -H_ff^-1 H_fj = Sigma_fj / Sigma_jj

so one ``(k, k) x (k, 2m)`` product replaces ``2m`` factorisations. The
quadratic model with ``H`` gives the profile value and slope at the current
``theta_j`` (``lp ~ l + g_f' H_ff^-1 g_f / 2``, ``lp' ~ -g_j - (Sigma u)_j /
Sigma_jj``: exact once ``g_f = 0``, the envelope theorem), a Newton step on
``r`` moves ``theta_j`` and the free parameters follow along the profile
path. Started from the Wald endpoint ``theta_hat + s z Sigma_:j /
sqrt(Sigma_jj)``, the error contracts by about ``||H^-1 (H(theta) - H)||``
per pass, a few hundredths at large ``n``: four to six passes reach the
tolerance.

An endpoint is converged when the whole step (free parameters and
``theta_j``) is below ``tol`` relative to ``1 + |theta|``, the solver's rule.
One that does not contract, leaves its side, or meets a non-finite value is
marked failed, and :func:`mlejax.profile.profile_ci` hands its parameter to
the safeguarded per-endpoint search (which finds the infinite endpoints of
separation and boundaries and gives their reasons).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mlejax import objective
from mlejax._math import quick_jit

#: rows per block of the batched pass (eta block ``(BLOCK, 2m + 1)`` in cache)
BLOCK = 1024
#: consecutive rows whose ``q`` are multiplied before one logarithm (logit pass)
CHUNK = 16
#: passes before an endpoint that is not done is handed to the exact search
MAX_PASSES = 40
#: the error bound ``rho / (1 - rho) |step|`` is used only for a contraction
#: at least this strong (else the step itself must be below ``tol``)
RHO_MAX = 0.1
#: from this pass on, a step that shrinks by less than this factor: not contracting
STALL_AFTER, STALL_RATIO = 4, 0.9


def eligible(family, data) -> bool:
    """Families the batched path serves: one linear predictor, no extras, convex."""
    if family.extra_names or family.eta_has_axis or not family.convex:
        return False
    _, v = objective.split_var_weights(family, data.weights, data.var_weights)
    return v is None


def _canonical(family):
    """``(y, trials, eta) -> (log p kernel, d/deta)`` for the canonical links.

    One ``exp`` (and for the logit one ``log1p``) per entry: the pass's
    elementwise work, which the generic autodiff of ``log_prob_kernel`` does
    about twice over.
    """
    from mlejax.families import Bernoulli, Binomial, Poisson

    if not getattr(family, "default_link", False):
        return None
    if type(family) in (Bernoulli, Binomial):  # exactly (a subclass may differ)
        binom = type(family) is Binomial

        def logit(y, t, eta):
            a = jnp.exp(-jnp.abs(eta))
            sp = jnp.maximum(eta, 0.0) + jnp.log1p(a)  # softplus(eta)
            mu = jnp.where(eta >= 0, 1.0, a) / (1.0 + a)
            n = t if binom else 1.0
            return y * eta - n * sp, y - n * mu

        return logit
    if type(family) is Poisson:

        def log(y, t, eta):
            mu = jnp.exp(eta)
            return y * eta - mu, y - mu

        return log
    return None


def _pass(X, y, w, off, trials, family, Theta, logit=None):
    """``(D, G)`` for ``Theta = [theta_hat, theta_1 .. theta_M]`` (``(k, M + 1)``).

    ``D[e] = l(theta_e) - l(theta_hat)`` summed row by row, ``G[:, e]`` the
    NLL gradient at ``theta_e``; row blocks, eta never formed in full.

    ``logit = (mu_hat, X' y)``: Bernoulli, logit link, weights 0 or 1. Then
    with ``delta = X (theta_e - theta_hat)`` (a product of differences: no
    cancellation) and ``q = 1 + mu_hat (e^delta - 1)``, the row's
    log-likelihood change is ``y delta - log q`` and its mean ``mu_hat
    e^delta / q``: one ``exp`` and one division per entry, and the logarithms
    are taken of products of ``CHUNK`` consecutive ``q`` (``sum log q = log
    prod q``; a product that over- or underflows makes the pass non-finite,
    and the endpoint goes to the search). ``sum y delta = (X' y) . (theta_e
    - theta_hat)``.
    """
    n, k = X.shape
    M = Theta.shape[1] - 1
    theta_hat = Theta[:, 0]
    dT = Theta[:, 1:] - theta_hat[:, None]

    canonical = _canonical(family)

    def block_logit(xb, yb, wb, mb):
        d = xb @ dT
        keep = (wb > 0)[:, None]
        e = jnp.exp(d)
        q = 1.0 + mb[:, None] * (e - 1.0)
        dl = jnp.where(keep, yb[:, None] - mb[:, None] * e / q, 0.0)
        Q = jnp.where(keep, q, 1.0)
        pad = -Q.shape[0] % CHUNK
        if pad:
            Q = jnp.concatenate([Q, jnp.ones((pad, M), Q.dtype)])
        logq = jnp.log(jnp.prod(Q.reshape(-1, CHUNK, M), axis=1))
        return -jnp.sum(logq, axis=0), -(xb.T @ dl)

    def block(xb, yb, wb, ob, tb):
        if logit is not None:
            return block_logit(xb, yb, wb, ob)
        eta = xb @ Theta + ob[:, None]
        keep = (wb > 0)[:, None]
        ww = jnp.where(keep, wb[:, None], 0.0)
        if canonical is not None:
            ll, dl = canonical(yb[:, None], tb[:, None], eta)
        else:
            kw = {} if trials is None else {"trials": tb[:, None]}

            def kern(e):
                return family.log_prob_kernel(yb[:, None], e, **kw)

            ll, vjp = jax.vjp(kern, eta)
            (dl,) = vjp(jnp.ones_like(ll))
        diff = jnp.where(keep, ww * (ll[:, 1:] - ll[:, :1]), 0.0)
        dl = jnp.where(keep, ww * dl, 0.0)[:, 1:]
        return jnp.sum(diff, axis=0), -(xb.T @ dl)

    tt = jnp.zeros_like(y) if trials is None else trials
    if logit is not None:  # the rows' mu_hat travel in the offset's place
        off, yx = logit
    if n < 2 * BLOCK:
        D, G = block(X, y, w, off, tt)
    else:
        D, G = _blocks(block, X, y, w, off, tt, M)
    return (D + yx @ dT, G) if logit is not None else (D, G)


def _blocks(block, X, y, w, off, tt, M):
    n, k = X.shape
    n_blocks = -(-n // BLOCK)
    rows = jnp.arange(BLOCK)

    def body(i, carry):
        D, G = carry
        start = jnp.minimum(i * BLOCK, n - BLOCK)
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, start, BLOCK)  # noqa: E731
        # the clamped last block counts only the rows the others did not
        wb = jnp.where(start + rows >= i * BLOCK, sl(w), 0.0)
        d, g = block(sl(X), sl(y), wb, sl(off), sl(tt))
        return D + d, G + g

    init = (jnp.zeros((M,), X.dtype), jnp.zeros((k, M), X.dtype))
    return jax.lax.fori_loop(0, n_blocks, body, init)


def unit_logit(family, data) -> bool:
    """The logit pass applies: Bernoulli, logit link, weights all 0 or 1 (host)."""
    from mlejax.families import Bernoulli

    if type(family) is not Bernoulli or not family.default_link:
        return False
    if data.var_weights is not None:
        return False
    w = np.asarray(data.weights)
    return bool(np.all((w == 0) | (w == 1)))


def batched_core(
    data,
    theta_hat,
    idx,
    z,
    tol,
    Sigma=None,
    *,
    family,
    max_passes=MAX_PASSES,
    logit=False,
):
    """Endpoints ``(m, 2)``, done ``(m, 2)`` and passes ``(m, 2)`` for ``idx``.

    ``done`` false: the endpoint was not solved here (value undefined).
    ``Sigma``: the inverse Hessian at the MLE, e.g. the fit's model-based
    covariance (it sets only the chord steps, not the roots); ``None``: one
    Gram pass computes it. ``logit``: the data satisfy :func:`unit_logit`
    (static).
    """
    X = jnp.asarray(data.X)
    w, _ = objective.split_var_weights(family, data.weights, data.var_weights)
    y, off, trials = data.y, data.offset, data.trials
    k = theta_hat.shape[0]
    if Sigma is None:
        obj = objective.make_glm(family, data)
        _, H, _ = obj.evaluate(theta_hat, True)
        L = jnp.linalg.cholesky(H)
        Sigma = jax.scipy.linalg.cho_solve((L, True), jnp.eye(k, dtype=H.dtype))
    Sigma = 0.5 * (Sigma + Sigma.T)

    aux = None
    if logit:
        mu_hat = jax.nn.sigmoid(X @ theta_hat + off)
        aux = (mu_hat, X.T @ jnp.where(w > 0, y, 0.0))

    m = idx.shape[0]
    J = jnp.repeat(idx, 2)
    side = jnp.tile(jnp.asarray([-1.0, 1.0], X.dtype), m)
    M = J.shape[0]
    cols = jnp.arange(M)
    Sjj = Sigma[J, J]
    sd = jnp.sqrt(Sjj)
    Scol = Sigma[:, J]
    bh = theta_hat[J]
    target = side * z
    onehot = jnp.arange(k)[:, None] == J[None, :]
    T0 = theta_hat[:, None] + Scol * (target / sd)[None, :]

    def body(c):
        T, done, failed, err_prev, n_it, it = c
        D, G = _pass(
            X,
            y,
            w,
            off,
            trials,
            family,
            jnp.concatenate([theta_hat[:, None], T], 1),
            aux,
        )
        U = jnp.where(onehot, 0.0, G)
        S = Sigma @ U
        sj = S[J, cols]
        Wm = S - Scol * (sj / Sjj)[None, :]
        dl = D + 0.5 * jnp.sum(U * Wm, axis=0)  # lp - l_hat, quadratic model
        b = T[J, cols]
        r = jnp.sign(b - bh) * jnp.sqrt(jnp.maximum(-2.0 * dl, 0.0))
        dlp = -(G[J, cols] + sj / Sjj)
        dr = -dlp / r
        db = (target - r) / dr
        step = -Wm + Scol * (db / Sjj)[None, :]
        err = jnp.max(jnp.abs(step) / (1.0 + jnp.abs(T)), axis=0)
        ok = (
            jnp.isfinite(err)
            & (jnp.sign(b - bh) == side)
            & (dl < 0)
            & (dr > 0)
            & (jnp.abs(db) <= z * sd)
        )
        # a contraction rho (observed over the last two steps) leaves the new
        # point within rho / (1 - rho) of this step from the root
        rho = err / err_prev
        bound = jnp.where((it >= 1) & (rho <= RHO_MAX), err * rho / (1.0 - rho), err)
        conv = ok & (bound <= tol)
        stall = (it >= STALL_AFTER) & (err > STALL_RATIO * err_prev)
        active = ~done & ~failed
        give_up = active & ~conv & (~ok | stall | (it + 1 >= max_passes))
        move = active & ok
        T = jnp.where(move[None, :], T + step, T)
        return (
            T,
            done | (active & conv),
            failed | give_up,
            jnp.where(active, err, err_prev),
            jnp.where(active, it + 1, n_it),
            it + 1,
        )

    def cond(c):
        _, done, failed, *_ = c
        return jnp.any(~done & ~failed)

    inf = jnp.full((M,), jnp.inf, X.dtype)
    f = jnp.zeros((M,), bool)
    init = (T0, f, f, inf, jnp.zeros((M,), jnp.int32), jnp.asarray(0, jnp.int32))
    T, done, _, _, n_it, _ = jax.lax.while_loop(cond, body, init)
    ends = T[J, cols]
    return ends.reshape(m, 2), done.reshape(m, 2), n_it.reshape(m, 2)


batched_profile = jax.jit(
    batched_core, static_argnames=("family", "max_passes", "logit")
)


#: small problems: compile time dominates, LLVM's optimisation passes do not pay
batched_profile_quick = quick_jit(
    batched_core, static_argnames=("family", "max_passes", "logit")
)
