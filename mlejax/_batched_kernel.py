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

from mlejax import _native
from mlejax._math import exp_nonpos
from mlejax.solvers.newton import stop_status
from mlejax.status import Status

#: Armijo halvings before the line search fails (as newton_loop)
MAX_HALVINGS = 40
#: a fit with a row of margin ``(2y - 1) eta`` at least this large (the
#: general path flags separation at ``log p > -1e-11``, a margin of about
#: 25.3) is refitted by the general path, which decides
SEPARATION_MARGIN = 20.0


def _rowsums(*rows):
    """``(C, k)`` sums over the last axis of ``k`` arrays ``(C, n)``.

    As one batched matrix-vector product with at least two rows: XLA:CPU
    sends a row reduction (sum or max) of this shape to a library (YNNPACK)
    call that cost 20-40 us a call inside the chunk loop, where the product
    costs 2.
    """
    A = jnp.stack(rows if len(rows) > 1 else rows * 2, 1)
    return jnp.einsum("ckn,cn->ck", A, jnp.ones_like(rows[0]))[:, : len(rows)]


def _psum(a):
    """Sum over the last (small, static) axis, unrolled (see :func:`_rowsums`)."""
    return sum((a[..., i] for i in range(1, a.shape[-1])), a[..., 0])


def _pmax(a):
    out = a[..., 0]
    for i in range(1, a.shape[-1]):
        out = jnp.maximum(out, a[..., i])
    return out


def _pairs(p):
    """The ``(i, j)``, ``i <= j``, of a packed upper triangle, in order."""
    return list(zip(*(a.tolist() for a in np.triu_indices(p)), strict=True))


def _to_matrix(Hp, p):
    """Packed upper triangle ``(C, q)`` -> symmetric ``(C, p, p)``.

    Built from static slices: an index array here is an XLA gather, which
    XLA:CPU runs element by element.
    """
    pos = {ij: k for k, ij in enumerate(_pairs(p))}
    cols = [Hp[:, pos[min(i, j), max(i, j)]] for i in range(p) for j in range(p)]
    return jnp.stack(cols, -1).reshape(Hp.shape[0], p, p)


def _chol_step(Hp, g, p):
    """``H^-1 g`` for a chunk by an unrolled Cholesky of the packed ``H``.

    Every operation is on ``(C,)`` vectors, so the whole solve is a few
    fused elementwise kernels instead of a batched LAPACK call per fit.
    A non-positive pivot makes it NaN (as the general path's direction).
    """
    pos = {ij: k for k, ij in enumerate(_pairs(p))}
    L = [[None] * p for _ in range(p)]
    for j in range(p):
        acc = Hp[:, pos[j, j]] - sum((L[j][k] * L[j][k] for k in range(j)), 0.0)
        L[j][j] = jnp.sqrt(jnp.where(acc > 0, acc, jnp.nan))
        for i in range(j + 1, p):
            acc = Hp[:, pos[j, i]] - sum((L[i][k] * L[j][k] for k in range(j)), 0.0)
            L[i][j] = acc / L[j][j]
    z = [None] * p
    for i in range(p):
        z[i] = (g[:, i] - sum((L[i][k] * z[k] for k in range(i)), 0.0)) / L[i][i]
    x = [None] * p
    for i in reversed(range(p)):
        x[i] = (z[i] - sum((L[k][i] * x[k] for k in range(i + 1, p)), 0.0)) / L[i][i]
    return jnp.stack(x, -1)


def _inverse(H):
    """:func:`mlejax.inference.inverse_information` for a chunk: one
    equilibrated Cholesky; NaN when not positive definite or numerically
    singular."""
    C, p, _ = H.shape
    diag = jnp.diagonal(H, axis1=-2, axis2=-1)
    dd = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), jnp.nan)
    L = jnp.linalg.cholesky(H * dd[:, :, None] * dd[:, None, :])
    eye = jnp.broadcast_to(jnp.eye(p, dtype=H.dtype), (C, p, p))
    sol = jax.scipy.linalg.cho_solve((L, True), eye)
    eps = jnp.finfo(H.dtype).eps
    piv = -_pmax(-jnp.diagonal(L, axis1=-2, axis2=-1))
    tiny = piv**2 <= 64 * p * eps
    inv = sol * dd[:, :, None] * dd[:, None, :]
    return jnp.where(tiny[:, None, None], jnp.nan, inv)


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
        return _rowsums(w0 * jnp.log1p(e))[:, 0]
    return jnp.log(jnp.prod(jnp.where(w0 > 0, 1.0 + e, 1.0), -1))


def _nll_rows(eta, w0, wy):
    # w (-log p) = w (log1p(exp(-|eta|)) + max(eta, 0)) - w y eta
    return w0 * (jnp.log1p(jnp.exp(-jnp.abs(eta))) + jnp.maximum(eta, 0.0)) - wy * eta


def _moments(eta, e, y, w0):
    """``(w0 (mu - y), w0 mu (1 - mu))`` from ``e = exp(-|eta|)``, no
    cancellation: ``mu (1 - mu) = e / (1 + e)**2``."""
    inv = 1.0 / (1.0 + e)
    mu = jnp.where(eta >= 0, 1.0, e) * inv
    return w0 * (mu - y), w0 * (e * inv * inv)


def chunk_kernel(
    X,
    y,
    w,
    offset,
    tol,
    *,
    max_iter: int,
    cov_type: str,
    unit_weights: bool = False,
    size: int | None = None,
):
    """Canonical Bernoulli fits of a chunk: ``X (C, n, p)``, the rest ``(C, n)``.

    The Newton loop of :func:`mlejax.solvers.newton.newton_loop` (start at
    0, a fresh Hessian every pass, Armijo halving after one re-measure),
    with what :mod:`mlejax.engines.glm` and :func:`mlejax.fit._fit_core`
    compute after it. On CPU in float64 the loop is the native kernel
    (:mod:`mlejax._native`), fit by fit, and ``size`` fits may come with
    any argument shared (a leading axis of 1); otherwise it is
    :func:`_xla_loop`. The pass that stops a fit leaves its packed Hessian,
    and the covariance and robust covariance are computed once after the
    loop from it. Returns ``(fields, ok)``: a dict of ``(C, ...)`` fields
    and whether each fit is one this kernel vouches for (converged, no row
    near separation, valid data); the others go to the general path.
    """
    p = X.shape[-1]
    int_t = jnp.asarray(0).dtype  # the general path's n_iter / status dtype
    robust = cov_type in ("HC0", "HC1")
    if _native.available(X.dtype, p):
        C = size if size is not None else X.shape[0]
        s, st = _native.logit_newton(X, y, w, offset, tol, C, max_iter, robust)
        s["n_iter"], s["status"] = s["n_iter"].astype(int_t), s["status"].astype(int_t)
    else:
        s, st = _xla_loop(X, y, w, offset, tol, max_iter, unit_weights, robust, int_t)
    # the covariance from the stopping pass's Hessian (at the final x); the
    # summaries give the convergence, separation and deviances
    cov = s["cov"]
    se = jnp.sqrt(jnp.diagonal(cov, axis1=-2, axis2=-1))
    loglik = -s["f"]  # the NLL at the last accepted point (rounding apart,
    # the general path's fresh X @ beta)
    status = s["status"]
    pd = jnp.isfinite(_psum(se))
    status = jnp.where(
        (status == Status.CONVERGED) & ~pd, int(Status.RANK_DEFICIENT), status
    )
    # diagnostics.input_ok
    nobs = st["nobs"]
    ok = st["ok"] & (nobs > 0) & (st["npos"] >= p)
    converged = (status == Status.CONVERGED) & ok
    # A row whose margin exceeds SEPARATION_MARGIN is near (or past) the
    # separation threshold: such fits, like every failure, are left to the
    # general path, which decides.
    vouch = converged & ~st["near_sep"]
    aic = -2.0 * loglik + 2.0 * p
    bic = -2.0 * loglik + p * jnp.log(nobs)
    deviance = jnp.where(jnp.isfinite(loglik), -2.0 * loglik, 0.0)
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
        null_deviance=st["null_dev"],
    )
    if robust:
        c = s["rcov"]
        if cov_type == "HC1":
            c = c * (nobs / (nobs - p))[:, None, None]
        out["cov"] = c
        out["stderr"] = jnp.sqrt(jnp.diagonal(c, axis1=-2, axis2=-1))
    return out, vouch


def _xla_loop(X, y, w, offset, tol, max_iter, unit, robust, int_t):
    """The Newton loop in XLA: every fit of the chunk in lockstep, and every
    pass over the chunk's data inside one ``while_loop``. A pass is kept lean
    (XLA:CPU pays per operation at this size): the gradient and the packed
    Hessian as two small batched products, an unrolled Cholesky for the
    step, the mean's ``exp`` shared with the line search's value. Returns
    the final state and the summaries :func:`_row_stats`."""
    # the chunk as its own buffer: a transpose reading through lax.map's
    # slice is compiled as a strided gather, twice as slow
    X, y, w, offset = jax.lax.optimization_barrier((X, y, w, offset))
    C, n, p = X.shape
    dtype = X.dtype
    eps = jnp.finfo(dtype).eps
    Xt = jnp.swapaxes(X, 1, 2)  # (C, p, n)
    # (C, q, n) pairwise column products in _pairs order, as p broadcast
    # blocks of static slices (an index array is a gather; one slice per
    # product is q kernels)
    P = jnp.concatenate([Xt[:, i : i + 1] * Xt[:, i:] for i in range(p)], 1)
    pos = w > 0
    w0 = jnp.where(pos, w, 0.0)
    wy = jnp.where(pos, w * y, 0.0)

    def matvec(A, v):  # (C, k, n) x (C, n) -> (C, k)
        return jnp.einsum("ckn,cn->ck", A, v)

    Wrows = jnp.stack([w0, wy], 1)  # (C, 2, n)
    gy = matvec(Xt, wy)  # (C, p): sum(wy eta) is tracked, not summed per pass

    def value_e(eta, lin):
        """The NLL at ``eta`` and ``e = exp(-|eta|)`` (reused for the mean);
        ``lin = sum(wy eta)``, tracked by the caller."""
        e = exp_nonpos(-jnp.abs(eta))
        # sum(w0 max(eta, 0)) as a two-row batched matvec (see _rowsums)
        pos_part = matvec(Wrows, jnp.maximum(eta, 0.0))[:, 0]
        return _sum_log1p(w0, e, unit) + pos_part - lin, e

    lin0 = matvec(Wrows, offset)[:, 1]
    f0, e0 = value_e(offset, lin0)  # x = 0: eta = offset
    falses = jnp.zeros(C, bool)
    init = dict(
        x=jnp.zeros((C, p), dtype),
        eta=offset,
        e=e0,
        f=f0,
        lin=lin0,
        H=jnp.zeros((C, P.shape[1]), dtype),
        rel=jnp.full(C, jnp.inf, dtype),
        tiny=falses,
        ls_fail=falses,
        bad=falses,
        n_iter=jnp.zeros(C, int_t),
        done=falses,
        status=jnp.full(C, int(Status.MAX_ITER), int_t),
        # (pass, fit): every fit still active at pass k has n_iter == k, so a
        # pass writes one row, not a select over the whole (fit, pass) array
        trace=jnp.full((max_iter + 1, C), jnp.nan, dtype),
        k=jnp.zeros((), jnp.int32),
    )

    def body(s):
        act = ~s["done"]
        eta, e = s["eta"], s["e"]
        wr, wh = _moments(eta, e, y, w0)
        g = matvec(Xt, wr)
        Hp = matvec(P, wh)
        n_iter = s["n_iter"]
        conv = (n_iter > 0) & (((s["rel"] <= tol) & ~s["ls_fail"]) | s["tiny"])
        conv = conv & ~s["bad"]
        stop = conv | s["ls_fail"] | s["bad"] | (n_iter >= max_iter)
        f = s["f"]
        nonfinite = ~jnp.isfinite(f) | ~jnp.isfinite(_psum(g)) | s["bad"]
        status = stop_status(conv, nonfinite, s["ls_fail"]).astype(int_t)
        done = stop | nonfinite
        row = jax.lax.dynamic_index_in_dim(s["trace"], s["k"], keepdims=False)
        trace = jax.lax.dynamic_update_index_in_dim(
            s["trace"], jnp.where(act, f, row), s["k"], 0
        )
        step = act & ~done
        d = _chol_step(Hp, g, p)
        # the Newton step (for every member; kept where `step`)
        d_ok = jnp.isfinite(_psum(d))
        d = jnp.where(d_ok[:, None], d, 0.0)
        slope = _psum(g * d)
        Xd = jnp.einsum("cp,cpn->cn", d, Xt)
        slack = 256 * eps * jnp.abs(f)

        def armijo(t, f_new, f_ref):
            return (f_new <= f_ref - 1e-4 * t * slope + slack) & jnp.isfinite(f_new)

        one = jnp.ones(C, dtype)
        lin, dy = s["lin"], _psum(d * gy)  # sum(wy Xd)
        f1, e1 = value_e(eta - Xd, lin - dy)

        def ls_cond(c):
            t, f_new, j, f_ref, _, _ = c
            return jnp.any(step & ~armijo(t, f_new, f_ref) & (j < MAX_HALVINGS))

        def ls_body(c):
            t, f_new, j, f_ref, measured, e_new = c
            live = step & ~armijo(t, f_new, f_ref) & (j < MAX_HALVINGS)
            t_try = jnp.where(measured, 0.5 * t, t)
            tm = jnp.where(measured, t_try, 0.0)
            v, ev = value_e(eta - tm[:, None] * Xd, lin - tm * dy)
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
        rel = _pmax(jnp.abs(x_new - x) / (1.0 + jnp.abs(x)))
        tiny = d_ok & (0.5 * jnp.abs(slope) <= 64 * eps * (1.0 + jnp.abs(f)))
        return dict(
            x=x_new,
            eta=jnp.where(moved[:, None], eta - t[:, None] * Xd, eta),
            e=jnp.where(moved[:, None], e_new, e),
            f=jnp.where(moved, f_new, f),
            lin=jnp.where(moved, lin - t * dy, lin),
            H=jnp.where(act[:, None], Hp, s["H"]),
            rel=jnp.where(step, rel, s["rel"]),
            tiny=jnp.where(step, tiny, s["tiny"]),
            ls_fail=jnp.where(step, ~ls_ok, s["ls_fail"]),
            bad=jnp.where(step, ~d_ok, s["bad"]),
            n_iter=jnp.where(step, n_iter + 1, n_iter),
            done=s["done"] | done,
            status=jnp.where(act, status, s["status"]),
            trace=trace,
            k=s["k"] + 1,
        )

    s = jax.lax.while_loop(lambda s: ~jnp.all(s["done"]), body, init)
    s["trace"] = s["trace"].T
    st = _row_stats(Xt, y, w, offset, s["eta"], f0)
    st["null_dev"] = _null_deviance(st, y, w, offset)
    # after the loop, once: the stopping pass's Hessian is at the final x
    s["cov"] = _inverse(_to_matrix(s["H"], p))
    if robust:
        wr, _ = _moments(s["eta"], s["e"], y, w0)
        # w0 r^2 with r = mu - y: (w0 r)^2 / w0 on the positive-weight rows
        meat = matvec(P, jnp.where(pos, wr * wr / jnp.where(pos, w0, 1.0), 0.0))
        s["rcov"] = s["cov"] @ _to_matrix(meat, p) @ s["cov"]
    return s, st


def _row_stats(Xt, y, w, offset, eta, f0):
    """The per-fit summaries of the data and the final ``eta`` that the
    native kernel returns as ``stats`` (:data:`mlejax._native.STATS`)."""
    C, p, n = Xt.shape
    pos = w > 0
    sgn = jnp.where(pos, 2.0 * y - 1.0, 0.0)  # the separation margin's sign
    ok = jnp.all(jnp.isfinite(offset), -1)
    ok = ok & jnp.all(jnp.isfinite(w) & (w >= 0), -1)
    ok = ok & jnp.all(jnp.where(pos, (y == 0) | (y == 1), True), -1)
    # one-hot of the first positive-weight row (argmax: no scan)
    first = jnp.arange(n)[None, :] == jnp.argmax(pos, -1)[:, None]
    row0 = jnp.einsum("cpn,cn->cp", Xt, first.astype(Xt.dtype))[:, :, None]
    same = jnp.all(jnp.where(pos[:, None, :], Xt == row0, True), -1)
    w0 = jnp.where(pos, w, 0.0)
    wy, wo = jnp.where(pos, w * y, 0.0), jnp.where(pos, w * offset, 0.0)
    sums = _rowsums(w, pos.astype(w.dtype), w0, wy, wo).T
    return dict(
        zip(("nobs", "npos", "sw", "swy", "swo"), sums, strict=True),
        f0=f0,
        ok=ok,
        near_sep=jnp.any(sgn * eta >= SEPARATION_MARGIN, -1),
        has_const=jnp.any(same & (row0[..., 0] != 0), -1),
        no_off=jnp.all(jnp.where(pos, offset == 0, True), -1),
    )


def _null_deviance(st, y, w, offset):
    """:func:`mlejax.inference.deviances`' null deviance, for a chunk, from
    the summaries ``st`` (:data:`mlejax._native.STATS`).

    No constant column: the offset alone (``f0``). A constant column and no
    offset on the positive-weight rows: the intercept is ``logit(ybar)``
    exactly (closed form). Otherwise the general path's safeguarded scalar
    Newton, run only when some fit of the chunk needs it.
    """
    C = st["sw"].shape[0]
    sw, swy, has_const = st["sw"], st["swy"], st["has_const"]
    ybar = swy / sw
    c0 = jnp.log(ybar) - jnp.log1p(-ybar)  # logit
    mean_off = st["swo"] / st["nobs"]
    c0 = jnp.where(jnp.isfinite(c0), c0 - mean_off, 0.0)
    closed = 2.0 * (sw * (jnp.log1p(jnp.exp(-jnp.abs(c0))) + jnp.maximum(c0, 0.0)))
    closed = closed - 2.0 * c0 * swy
    need = has_const & ~st["no_off"]

    def newton(_):
        # the data at the chunk's size (here only: any may be shared)
        pos = jnp.broadcast_to(w > 0, (C, w.shape[-1]))
        w0 = jnp.where(pos, w, 0.0)
        wy = jnp.where(pos, w * y, 0.0)
        off = jnp.broadcast_to(offset, pos.shape)

        def f(c):
            return _rowsums(_nll_rows(off + c[:, None], w0, wy))[:, 0]

        def cond(carry):
            _, _, _, k, done = carry
            return jnp.any((k < 30) & ~done & need)

        def body(carry):
            c, t, fc, k, done = carry
            live = (k < 30) & ~done & need
            mu = jax.nn.sigmoid(off + c[:, None])
            g, h = _rowsums(w0 * mu - wy, w0 * (mu * (1.0 - mu))).T
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
    return jnp.where(has_const, jnp.where(need, iterated, closed), 2.0 * st["f0"])
