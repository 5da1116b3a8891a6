"""The chunk kernel of :mod:`mlejax._batched`: canonical Bernoulli Newton fits
of a chunk of ``C`` small designs, every fit in lockstep in one ``while_loop``.

Each design is laid out ``(p, n)``; the Gram matrix is one matrix-vector
product of the ``p (p + 1) / 2`` pairwise column products with the weights;
``exp(-|eta|)`` of the accepted line-search point serves the next mean;
without ``weights`` ``sum log1p(e)`` is one ``log`` of a product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mlejax.solvers.newton import stop_status
from mlejax.status import Status

#: Armijo halvings before the line search fails (as newton_loop)
MAX_HALVINGS = 40
#: a fit with a row of margin ``(2y - 1) eta`` at least this large (the
#: general path flags separation at ``log p > -1e-11``, a margin of about
#: 25.3) is refitted by the general path, which decides
SEPARATION_MARGIN = 20.0


def _to_matrix(Hp, p):
    """Packed upper triangle ``(C, q)`` -> symmetric ``(C, p, p)``."""
    iu, ju = np.triu_indices(p)
    idx = np.zeros((p, p), dtype=np.int32)
    idx[iu, ju] = np.arange(iu.size)
    idx[ju, iu] = np.arange(iu.size)
    return Hp[:, idx]


def _solve_both(H, g):
    """``(H^-1, H^-1 g)`` by one equilibrated Cholesky, for a chunk.

    ``H^-1`` is :func:`mlejax.inference.inverse_information` (NaN when not
    positive definite or numerically singular); ``H^-1 g`` is
    :func:`mlejax.solvers.newton.newton_direction` for a convex problem
    (a diagonal of zero makes it non-finite, as there).
    """
    C, p, _ = H.shape
    diag = jnp.diagonal(H, axis1=-2, axis2=-1)
    dd = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
    L = jnp.linalg.cholesky(H * dd[:, :, None] * dd[:, None, :])
    eye = jnp.broadcast_to(jnp.eye(p, dtype=H.dtype), (C, p, p))
    rhs = jnp.concatenate([eye, (g * dd)[:, :, None]], axis=-1)
    sol = jax.scipy.linalg.cho_solve((L, True), rhs)
    eps = jnp.finfo(H.dtype).eps
    piv = jnp.min(jnp.diagonal(L, axis1=-2, axis2=-1), -1)
    tiny = piv**2 <= 64 * p * eps
    inv = sol[:, :, :p] * dd[:, :, None] * dd[:, None, :]
    inv = jnp.where(tiny[:, None, None], jnp.nan, inv)
    return inv, sol[:, :, p] * dd


#: rows up to which ``sum log1p(e)`` is ``log prod (1 + e)`` (each factor is
#: at most 2: no overflow below 1024 rows); the product's rounding costs at
#: most ``n eps`` in the sum, far below the Newton loop's Armijo allowance
PROD_ROWS = 1000


def _sum_log1p(w0, e, unit: bool):
    """``sum_i w0_i log1p(e_i)`` over the last axis, ``e`` in ``[0, 1]``.

    ``unit`` (static): every weight is 1 (the caller passed no weights);
    then one logarithm of a product per fit instead of one ``log1p`` per row.
    """
    n = e.shape[-1]
    # each factor is at most 2: below the dtype's overflow (float32: 2**128)
    limit = PROD_ROWS if jnp.finfo(e.dtype).maxexp > 1000 else 120
    if not unit or n > limit:
        return jnp.sum(w0 * jnp.log1p(e), -1)
    return jnp.log(jnp.prod(jnp.where(w0 > 0, 1.0 + e, 1.0), -1))


def _nll_rows(eta, w0, wy):
    # w (-log p) = w (log1p(exp(-|eta|)) + max(eta, 0)) - w y eta
    return w0 * (jnp.log1p(jnp.exp(-jnp.abs(eta))) + jnp.maximum(eta, 0.0)) - wy * eta


def chunk_kernel(
    X, y, w, offset, tol, *, max_iter: int, cov_type: str, unit_weights: bool = False
):
    """Canonical Bernoulli fits of a chunk: ``X (C, n, p)``, the rest ``(C, n)``.

    The Newton loop of :func:`mlejax.solvers.newton.newton_loop` (start at
    0, a fresh Hessian every pass, Armijo halving after one re-measure),
    with what :mod:`mlejax.engines.glm` and :func:`mlejax.fit._fit_core`
    compute after it; every fit of the chunk in lockstep, and every pass over
    the chunk's data inside one ``while_loop`` (the pass that stops a fit
    leaves its covariance, robust covariance and separation margin in the
    state). Returns ``(fields, ok)``: a dict of ``(C, ...)`` fields and
    whether each fit is one this kernel vouches for (converged, no row near
    separation, valid data); the others go to the general path.
    """
    C, n, p = X.shape
    dtype = X.dtype
    eps = jnp.finfo(dtype).eps
    int_t = jnp.asarray(0).dtype  # the general path's n_iter / status dtype
    Xt = jnp.swapaxes(X, 1, 2)  # (C, p, n)
    iu, ju = np.triu_indices(p)
    P = Xt[:, iu] * Xt[:, ju]  # (C, q, n) pairwise column products
    pos = w > 0
    w0 = jnp.where(pos, w, 0.0)
    wy = jnp.where(pos, w * y, 0.0)
    unit = unit_weights  # static: weights all 1 (none given)
    sgn = jnp.where(pos, 2.0 * y - 1.0, 0.0)  # the separation margin's sign
    robust = cov_type in ("HC0", "HC1")

    Wrows = jnp.stack([w0, wy], 1)  # (C, 2, n)

    def value_e(eta):
        """The NLL at ``eta`` and ``e = exp(-|eta|)`` (reused for the mean)."""
        e = jnp.exp(-jnp.abs(eta))
        # sum(w0 max(eta, 0) - wy eta) as one small batched matmul: XLA:CPU
        # sends a fused multiply-reduce of this shape to a library (YNNPACK)
        # call that cost ~50 us for 25 x 200 here, a quarter of the iteration
        V = jnp.stack([jnp.maximum(eta, 0.0), eta], -1)  # (C, n, 2)
        M = jnp.einsum("ckn,cnj->ckj", Wrows, V)
        return _sum_log1p(w0, e, unit) + M[:, 0, 0] - M[:, 1, 1], e

    def value(eta):
        return value_e(eta)[0]

    def matvec(A, v):  # (C, k, n) x (C, n) -> (C, k)
        return jnp.einsum("ckn,cn->ck", A, v)

    f0, e0 = value_e(offset)  # x = 0: eta = offset
    falses = jnp.zeros(C, bool)
    init = dict(
        x=jnp.zeros((C, p), dtype),
        eta=offset,
        e=e0,
        f=f0,
        g=jnp.zeros((C, p), dtype),
        cov=jnp.zeros((C, p, p), dtype),
        rcov=jnp.zeros((C, p, p) if robust else (C,), dtype),
        margin=jnp.zeros(C, dtype),
        rel=jnp.full(C, jnp.inf, dtype),
        tiny=falses,
        ls_fail=falses,
        bad=falses,
        n_iter=jnp.zeros(C, int_t),
        done=falses,
        status=jnp.full(C, int(Status.MAX_ITER), int_t),
        trace=jnp.full((C, max_iter + 1), jnp.nan, dtype),
    )
    steps = jnp.arange(max_iter + 1)

    def upd(new, old, m):
        return jnp.where(m.reshape(m.shape + (1,) * (new.ndim - 1)), new, old)

    def body(s):
        act = ~s["done"]
        eta, e = s["eta"], s["e"]
        mu = jnp.where(eta >= 0, 1.0, e) / (1.0 + e)  # sigmoid(eta)
        r = mu - y
        g = matvec(Xt, w0 * r)
        Hp = matvec(P, w0 * (mu * (1.0 - mu)))
        n_iter = s["n_iter"]
        conv = (n_iter > 0) & (((s["rel"] <= tol) & ~s["ls_fail"]) | s["tiny"])
        conv = conv & ~s["bad"]
        stop = conv | s["ls_fail"] | s["bad"] | (n_iter >= max_iter)
        f = s["f"]
        nonfinite = ~jnp.isfinite(f) | ~jnp.all(jnp.isfinite(g), -1) | s["bad"]
        status = stop_status(conv, nonfinite, s["ls_fail"]).astype(int_t)
        done = stop | nonfinite
        trace = jnp.where(
            act[:, None] & (steps[None, :] == n_iter[:, None]), f[:, None], s["trace"]
        )
        step = act & ~done
        cov, d = _solve_both(_to_matrix(Hp, p), g)
        margin = jnp.max(sgn * eta, -1)
        if robust:
            M = _to_matrix(matvec(P, w0 * (r * r)), p)
            rcov = cov @ M @ cov
        else:
            rcov = s["rcov"]
        # the Newton step (for every member; kept where `step`)
        d_ok = jnp.all(jnp.isfinite(d), -1)
        d = jnp.where(d_ok[:, None], d, 0.0)
        slope = jnp.sum(g * d, -1)
        Xd = jnp.einsum("cp,cpn->cn", d, Xt)
        slack = 256 * eps * jnp.abs(f)

        def armijo(t, f_new, f_ref):
            return (f_new <= f_ref - 1e-4 * t * slope + slack) & jnp.isfinite(f_new)

        one = jnp.ones(C, dtype)
        f1, e1 = value_e(eta - Xd)

        def ls_cond(c):
            t, f_new, j, f_ref, _, _ = c
            return jnp.any(step & ~armijo(t, f_new, f_ref) & (j < MAX_HALVINGS))

        def ls_body(c):
            t, f_new, j, f_ref, measured, e_new = c
            live = step & ~armijo(t, f_new, f_ref) & (j < MAX_HALVINGS)
            t_try = jnp.where(measured, 0.5 * t, t)
            v, ev = value_e(eta - jnp.where(measured, t_try, 0.0)[:, None] * Xd)
            halve = live & measured
            remeasure = live & ~measured
            return (
                jnp.where(halve, t_try, t),
                jnp.where(halve, v, f_new),
                jnp.where(halve, j + 1, j),
                jnp.where(remeasure, v, f_ref),
                measured | live,
                jnp.where(halve[:, None], ev, e_new),
            )

        t, f_new, j, f_ref, _, e_new = jax.lax.while_loop(
            ls_cond, ls_body, (one, f1, jnp.zeros(C, jnp.int32), f, falses, e1)
        )
        ls_ok = (j < MAX_HALVINGS) | armijo(t, f_new, f_ref)
        x = s["x"]
        moved = step & ls_ok
        x_new = jnp.where(moved[:, None], x - t[:, None] * d, x)
        rel = jnp.max(jnp.abs(x_new - x) / (1.0 + jnp.abs(x)), -1)
        tiny = d_ok & (0.5 * jnp.abs(slope) <= 64 * eps * (1.0 + jnp.abs(f)))
        return dict(
            x=x_new,
            eta=jnp.where(moved[:, None], eta - t[:, None] * Xd, eta),
            e=jnp.where(moved[:, None], e_new, e),
            f=jnp.where(moved, f_new, f),
            g=upd(g, s["g"], act),
            cov=upd(cov, s["cov"], act),
            rcov=upd(rcov, s["rcov"], act),
            margin=upd(margin, s["margin"], act),
            rel=upd(rel, s["rel"], step),
            tiny=upd(tiny, s["tiny"], step),
            ls_fail=upd(~ls_ok, s["ls_fail"], step),
            bad=upd(~d_ok, s["bad"], step),
            n_iter=jnp.where(step, n_iter + 1, n_iter),
            done=s["done"] | done,
            status=upd(status, s["status"], act),
            trace=trace,
        )

    s = jax.lax.while_loop(lambda s: ~jnp.all(s["done"]), body, init)
    cov = s["cov"]
    se = jnp.sqrt(jnp.diagonal(cov, axis1=-2, axis2=-1))
    loglik = -s["f"]  # the NLL at the last accepted point (rounding apart,
    # the general path's fresh X @ beta)
    status = s["status"]
    pd = jnp.all(jnp.isfinite(se), -1)
    status = jnp.where(
        (status == Status.CONVERGED) & ~pd, int(Status.RANK_DEFICIENT), status
    )
    # diagnostics.input_ok
    ok = jnp.all(jnp.isfinite(offset), -1)
    ok = ok & jnp.all(jnp.isfinite(w) & (w >= 0), -1) & (jnp.sum(w, -1) > 0)
    ok = ok & (jnp.sum(pos, -1) >= p)
    ok = ok & jnp.all(jnp.where(pos, (y == 0) | (y == 1), True), -1)
    converged = (status == Status.CONVERGED) & ok
    # A row whose margin exceeds SEPARATION_MARGIN is near (or past) the
    # separation threshold: such fits, like every failure, are left to the
    # general path, which decides.
    vouch = converged & (s["margin"] < SEPARATION_MARGIN)
    nobs = jnp.sum(w, -1)
    aic = -2.0 * loglik + 2.0 * p
    bic = -2.0 * loglik + p * jnp.log(nobs)
    deviance = jnp.where(jnp.isfinite(loglik), -2.0 * loglik, 0.0)
    null_dev = _null_deviance(Xt, w, offset, pos, w0, wy, f0)
    out = dict(
        params=s["x"],
        stderr=se,
        cov=cov,
        loglik=loglik,
        n_iter=s["n_iter"],
        converged=converged,
        aic=aic,
        bic=bic,
        nobs=nobs,
        status=status,
        trace=s["trace"],
        deviance=deviance,
        null_deviance=null_dev,
    )
    if robust:
        c = s["rcov"]
        if cov_type == "HC1":
            c = c * (nobs / (nobs - p))[:, None, None]
        out["cov"] = c
        out["stderr"] = jnp.sqrt(jnp.diagonal(c, axis1=-2, axis2=-1))
    return out, vouch


def _null_deviance(Xt, w, offset, pos, w0, wy, f0):
    """:func:`mlejax.inference.deviances`' null deviance, for a chunk.

    No constant column: the offset alone (``f0``). A constant column and no
    offset on the positive-weight rows: the intercept is ``logit(ybar)``
    exactly (closed form). Otherwise the general path's safeguarded scalar
    Newton, run only when some fit of the chunk needs it.
    """
    C, p, n = Xt.shape
    # one-hot of the first positive-weight row (argmax: no scan)
    first = jnp.arange(n)[None, :] == jnp.argmax(pos, -1)[:, None]
    row0 = jnp.sum(jnp.where(first[:, None, :], Xt, 0.0), -1)[:, :, None]
    same = jnp.all(jnp.where(pos[:, None, :], Xt == row0, True), -1)
    has_const = jnp.any(same & (row0[..., 0] != 0), -1)
    sw, swy = jnp.sum(w0, -1), jnp.sum(wy, -1)
    ybar = swy / sw
    c0 = jnp.log(ybar) - jnp.log1p(-ybar)  # logit
    mean_off = jnp.sum(jnp.where(pos, w * offset, 0.0), -1) / jnp.sum(w, -1)
    c0 = jnp.where(jnp.isfinite(c0), c0 - mean_off, 0.0)
    no_off = jnp.all(jnp.where(pos, offset == 0, True), -1)
    closed = 2.0 * (sw * (jnp.log1p(jnp.exp(-jnp.abs(c0))) + jnp.maximum(c0, 0.0)))
    closed = closed - 2.0 * c0 * swy
    need = has_const & ~no_off

    def f(c):
        return jnp.sum(_nll_rows(offset + c[:, None], w0, wy), -1)

    def newton(_):
        def cond(carry):
            _, _, _, k, done = carry
            return jnp.any((k < 30) & ~done & need)

        def body(carry):
            c, t, fc, k, done = carry
            live = (k < 30) & ~done & need
            mu = jax.nn.sigmoid(offset + c[:, None])
            g = jnp.sum(w0 * mu - wy, -1)
            h = jnp.sum(w0 * (mu * (1.0 - mu)), -1)
            d = -g / jnp.where(h > 0, h, jnp.abs(g) + 1.0)
            cn = c + t * d
            fn = f(cn)
            ok = jnp.isfinite(fn) & (fn <= fc)
            small = jnp.abs(t * d) <= 1e-12 * (1.0 + jnp.abs(c))
            return (
                jnp.where(live & ok, cn, c),
                jnp.where(live, jnp.where(ok, jnp.minimum(1.0, 2.0 * t), 0.25 * t), t),
                jnp.where(live & ok, fn, fc),
                jnp.where(live, k + 1, k),
                jnp.where(live, small | ~jnp.isfinite(d), done),
            )

        init = (c0, jnp.ones_like(c0), f(c0), jnp.zeros(C, jnp.int32), ~need)
        c = jax.lax.while_loop(cond, body, init)[0]
        return 2.0 * f(c)

    iterated = jax.lax.cond(jnp.any(need), newton, lambda _: closed, None)
    return jnp.where(has_const, jnp.where(need, iterated, closed), 2.0 * f0)
