"""``fit_likelihood(..., linear=...)``: per-row terms of linear predictors.

A log-likelihood declared as ``linear={key: i}`` is a sum over rows of terms
``f(eta_i, theta_rest, row_i)`` in the linear predictors
``eta = data[i] @ params[key]`` (one per declared leaf; a ``(p, m)`` leaf gives
``m`` of them) and the remaining, few, parameters. Its derivatives then come
from exact per-row derivatives in ``(eta_i, theta_rest)`` (autodiff of the
user's own ``loglik`` evaluated on one row) contracted with the design
matrices, as :func:`mlejax.objective.make_glm` does for the built-in families:
the coefficient block is the Gram matrix ``X' diag(h) X`` formed in one pass
over row blocks, and a line search along ``d`` costs one ``X d`` and
elementwise work on ``eta``.

The per-row term is the user's ``loglik`` itself, called on a one-row slice
of every data array whose leading axis has the design matrices' length ``n``
(other arrays are passed whole), with each declared design matrix replaced by
the ``(1, 1)`` matrix ``[[1]]`` and its coefficient leaf by ``eta_i`` shaped
``(1,)`` (or ``(1, m)``), so that ``data[i] @ params[key]`` is ``eta_i``. For a ``loglik`` that keeps the declaration this is exact; one that
does not (a term in the coefficients outside ``X @ beta``, a term not summed
over rows) is caught, on concrete inputs, by :func:`check_declaration`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlejax.objective import BLOCK, CHEAP_GRAM_P

__all__ = [
    "LinearLayout",
    "check_declaration",
    "check_linear",
    "layout",
    "make_rows",
    "row_leaves",
    "subsample_start",
]


def check_linear(linear: Any, params: Any, data: tuple) -> tuple:
    """Validate ``linear=`` and return it as a static tuple of ``(key, index)``.

    Raises a ``ValueError`` naming ``linear``, the bad value and the fix.
    """
    fix = (
        "pass linear={key: i} mapping each coefficient leaf params[key] to the "
        "index i of its design matrix in *data (the loglik uses them only as "
        "data[i] @ params[key])"
    )
    if not isinstance(linear, Mapping) or not linear:
        raise ValueError(f"linear must be a non-empty dict, got {linear!r}; {fix}.")
    if isinstance(params, Mapping):
        keys_ok = list(params.keys())
    elif isinstance(params, list | tuple) and not hasattr(params, "_fields"):
        keys_ok = list(range(len(params)))
    else:
        raise ValueError(
            f"linear needs init_params to be a dict (or a list/tuple) whose entries "
            f"linear names, got {type(params).__name__}; {fix}."
        )
    n = None
    out = []
    for key, i in linear.items():
        if key not in keys_ok:
            raise ValueError(
                f"linear names the parameter {key!r}, which init_params does not "
                f"have (its entries: {keys_ok}); {fix}."
            )
        leaf = params[key]
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise ValueError(
                f"linear[{key!r}] must be an int index into *data, got {i!r}; {fix}."
            )
        i = int(i)
        if not 0 <= i < len(data):
            raise ValueError(
                f"linear[{key!r}] = {i} is not an index into the {len(data)} data "
                f"arrays; {fix}."
            )
        X = data[i]
        if np.ndim(X) != 2:
            raise ValueError(
                f"linear[{key!r}] = {i}: data[{i}] must be a 2-D design matrix "
                f"(n, p), it has shape {np.shape(X)}; {fix}."
            )
        if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(leaf)) is False:
            raise ValueError(
                f"linear[{key!r}]: params[{key!r}] must be one array, not a "
                f"{type(leaf).__name__}; {fix}."
            )
        shape = np.shape(leaf)
        if len(shape) not in (1, 2) or shape[0] != np.shape(X)[1]:
            raise ValueError(
                f"linear[{key!r}] = {i}: params[{key!r}] has shape {shape}, which "
                f"must be (p,) or (p, m) with p = {np.shape(X)[1]} (the columns of "
                f"data[{i}]); {fix}."
            )
        if n is None:
            n = np.shape(X)[0]
        elif np.shape(X)[0] != n:
            raise ValueError(
                f"linear[{key!r}] = {i}: data[{i}] has {np.shape(X)[0]} rows, the "
                f"other design matrices {n}; every design matrix needs the same rows."
            )
        out.append((key, i))
    return tuple(out)


class LinearLayout(NamedTuple):
    """Where the coefficients sit in ``ravel_pytree(params)`` order (static)."""

    perm: np.ndarray  # z = theta[perm]: eta columns' coefficients first, then the rest
    inv: np.ndarray  # theta = z[inv]
    col_mat: tuple  # data index of each eta column's design matrix
    col_p: tuple  # coefficients of each eta column
    first: np.ndarray  # theta index of each eta column's first coefficient (row 0)
    rest: np.ndarray  # theta indices of the other parameters
    nb: int  # coefficients in all
    q: int  # eta columns


def layout(spec: tuple, params: Any) -> LinearLayout:
    """The static index maps between the raveled parameters and ``z``."""
    paths, _ = jax.tree_util.tree_flatten_with_path(params)
    off, offsets = 0, {}
    for path, leaf in paths:
        size = int(np.size(leaf))
        k0 = path[0]
        top = getattr(k0, "key", getattr(k0, "idx", None))
        if len(path) == 1:
            offsets[top] = (off, np.shape(leaf))
        off += size
    k = off
    coef, col_mat, col_p, first = [], [], [], []
    for key, i in spec:
        o, shape = offsets[key]
        p = shape[0]
        m = 1 if len(shape) == 1 else shape[1]
        for a in range(m):
            idx = o + np.arange(p) * m + a
            coef.append(idx)
            col_mat.append(i)
            col_p.append(p)
            first.append(idx[0])
    lin = np.concatenate(coef)
    rest = np.setdiff1d(np.arange(k), lin)
    perm = np.concatenate([lin, rest]).astype(np.int32)
    inv = np.argsort(perm).astype(np.int32)
    return LinearLayout(
        perm,
        inv,
        tuple(col_mat),
        tuple(col_p),
        np.asarray(first, np.int32),
        rest.astype(np.int32),
        int(lin.size),
        len(col_mat),
    )


class RowsObjective(NamedTuple):
    """A :class:`mlejax.solvers.NewtonProblem` over ``z`` plus what inference needs."""

    evaluate: Callable  # (z, hess) -> (g, H | None, eta)
    value_at: Callable  # (eta, z) -> f
    eta: Callable  # z -> eta (n, q)
    lin: Callable  # d[:nb] -> change of eta
    nb: int
    cheap_hessian: bool
    value: Callable  # z -> f
    scores: Callable  # z -> per-row scores of loglik (n, k) in theta order


def row_leaves(spec: tuple, data: tuple) -> tuple:
    """Per data entry: None for a design matrix, else a tree of bools (row leaf:
    leading axis of the design matrices' length ``n``)."""
    mats = {i for _, i in spec}
    n = np.shape(data[spec[0][1]])[0]

    def leading_n(a):
        return np.ndim(a) > 0 and np.shape(a)[0] == n

    return tuple(
        None if j in mats else jax.tree_util.tree_map(leading_n, d)
        for j, d in enumerate(data)
    )


def make_rows(
    loglik: Callable,
    spec: tuple,
    params: Any,
    data: tuple,
    penalty_nll=None,
    is_row: tuple | None = None,
) -> tuple[RowsObjective, LinearLayout]:
    """The NLL of ``z = theta[perm]`` from per-row derivatives (see the module).

    ``penalty_nll``: ``None`` or a function of the raveled parameters added to
    the NLL (a ridge term, a negative log prior), differentiated densely.
    ``is_row``: :func:`row_leaves` of the full data (for a subsample).
    """
    lay = layout(spec, params)
    flat0, unravel = ravel_pytree(params)
    k = flat0.shape[0]
    nb, q = lay.nb, lay.q
    mats = {i: data[i] for _, i in spec}
    n = next(iter(mats.values())).shape[0]
    dtype = flat0.dtype

    # the rows: every data leaf with leading axis n (design matrices aside);
    # ``rows`` is data with the design matrices dropped, vmapped over axis 0
    # where a leaf is a row leaf and passed whole otherwise.
    if is_row is None:
        is_row = row_leaves(spec, data)
    axes = tuple(
        None if r is None else jax.tree_util.tree_map(lambda b: 0 if b else None, r)
        for r in is_row
    )
    # one row's loglik sees each design matrix as the (1, 1) matrix [[1]] and
    # each coefficient leaf as its (1,) or (1, m) row of eta: X @ beta = eta_i
    inv = jnp.asarray(lay.inv)
    one = {i: jnp.ones((1, 1), X.dtype) for i, X in mats.items()}
    lin_keys = [key for key, _ in spec]
    col_of = {}
    c = 0
    for key, _ in spec:
        shape = np.shape(params[key])
        m = 1 if len(shape) == 1 else shape[1]
        col_of[key] = (c, m, len(shape))
        c += m
    if isinstance(params, Mapping):
        params_rest = {key: v for key, v in params.items() if key not in lin_keys}
    else:
        params_rest = [None if j in lin_keys else v for j, v in enumerate(params)]
    _, unravel_rest = ravel_pytree(params_rest)

    def rows_of(sl):
        return tuple(
            None
            if r is None
            else jax.tree_util.tree_map(lambda a, b: sl(a) if b else a, data[j], r)
            for j, r in enumerate(is_row)
        )

    def params_at(e, r):
        """The parameters one row sees: eta rows for the coefficient leaves."""
        out = unravel_rest(r)
        vals = {}
        for key in lin_keys:
            c0, m, nd = col_of[key]
            vals[key] = e[c0 : c0 + m].reshape((1,) if nd == 1 else (1, m))
        if isinstance(params, Mapping):
            return type(params)({key: vals.get(key, out.get(key)) for key in params})
        seq = [vals[j] if j in vals else out[j] for j in range(len(params))]
        return type(params)(seq)

    def row_nll(zi, row):
        """-loglik of one row at ``zi = [eta_i (q,), theta_rest]``."""
        args = [
            one[j].astype(zi.dtype)
            if r is None
            else jax.tree_util.tree_map(lambda a, b: a[None] if b else a, row[j], r)
            for j, r in enumerate(is_row)
        ]
        return -jnp.sum(loglik(params_at(zi[:q], zi[q:]), *args))

    def vmap_rows(fn, zr, rows):
        return jax.vmap(fn, in_axes=(0, axes))(zr, rows)

    def eta_cols(Xs_of, beta_z):
        cols, o = [], 0
        for c in range(q):
            p = lay.col_p[c]
            cols.append(Xs_of(lay.col_mat[c]) @ beta_z[o : o + p])
            o += p
        return jnp.stack(cols, axis=1)

    def lin(d):
        return eta_cols(lambda i: mats[i], d)

    def eta(z):
        return lin(z[:nb])

    def zrows(e, z):
        return jnp.concatenate(
            [e, jnp.broadcast_to(z[nb:], (e.shape[0], k - nb))], axis=1
        )

    def pen(z):
        return 0.0 if penalty_nll is None else penalty_nll(z[inv])

    def value_at(e, z):
        v = vmap_rows(row_nll, zrows(e, z), rows_of(lambda a: a))
        return jnp.sum(v) + pen(z)

    def value(z):
        return value_at(eta(z), z)

    gr = jax.grad(row_nll)

    def gh(zi, row):  # the per-row gradient once, as the aux of its Jacobian
        def g2(z):
            g = gr(z, row)
            return g, g

        H, g = jax.jacfwd(g2, has_aux=True)(zi)
        return g, H

    def block(Xb, rows, wb, z, hess):
        e = eta_cols(lambda i: Xb[i], z[:nb])
        zr = zrows(e, z)
        if hess:
            gi, Hi = vmap_rows(gh, zr, rows)
            Hi = jnp.where(wb[:, None, None] > 0, Hi, 0.0)
        else:
            gi, Hi = vmap_rows(gr, zr, rows), None
        gi = jnp.where(wb[:, None] > 0, gi, 0.0)
        g_u = jnp.sum(gi[:, q:], axis=0)
        g_b, H_rows = [], []
        for c in range(q):
            Xc = Xb[lay.col_mat[c]]
            if not hess:
                g_b.append(Xc.T @ gi[:, c])
                continue
            parts = [Xb[lay.col_mat[c2]] * Hi[:, c, c2][:, None] for c2 in range(q)]
            C = Xc.T @ jnp.concatenate(parts + [gi[:, c : c + 1], Hi[:, c, q:]], 1)
            g_b.append(C[:, nb])
            H_rows.append(jnp.concatenate([C[:, :nb], C[:, nb + 1 :]], 1))
        g = jnp.concatenate(g_b + [g_u])
        if not hess:
            return g, None, e
        H_u = jnp.concatenate(
            [hr[:, nb:].T for hr in H_rows] + [jnp.sum(Hi[:, q:, q:], axis=0)], 1
        )
        H = jnp.concatenate([jnp.concatenate(H_rows, 0), H_u], 0)
        return g, H, e

    def add_pen(z, g, H):
        if penalty_nll is None:
            return g, H
        g = g + jax.grad(pen)(z)
        return g, (None if H is None else H + jax.hessian(pen)(z))

    def evaluate(z, hess):
        if n < 2 * BLOCK:
            g, H, e = block(mats, rows_of(lambda a: a), jnp.ones(n, dtype), z, hess)
            return (*add_pen(z, g, H), e)
        n_blocks = -(-n // BLOCK)
        idx = jnp.arange(BLOCK)

        def body(b, carry):
            g, H, e = carry
            start = jnp.minimum(b * BLOCK, n - BLOCK)
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, start, BLOCK)  # noqa: E731
            wb = jnp.where(start + idx >= b * BLOCK, 1.0, 0.0).astype(dtype)
            Xb = {i: sl(X) for i, X in mats.items()}
            gb, Hb, eb = block(Xb, rows_of(sl), wb, z, hess)
            e = jax.lax.dynamic_update_slice_in_dim(e, eb, start, 0)
            return g + gb, (H + Hb) if hess else H, e

        init = (
            jnp.zeros(k, dtype),
            jnp.zeros((k, k) if hess else (), dtype),
            jnp.zeros((n, q), dtype),
        )
        g, H, e = jax.lax.fori_loop(0, n_blocks, body, init)
        g, H = add_pen(z, g, H if hess else None)
        return g, H, e

    def scores(z):
        e = eta(z)
        gi = vmap_rows(gr, zrows(e, z), rows_of(lambda a: a))
        cols = [mats[lay.col_mat[c]] * gi[:, c : c + 1] for c in range(q)]
        S = -jnp.concatenate(cols + [gi[:, q:]], axis=1)
        return S[:, inv]

    cheap = (nb <= CHEAP_GRAM_P and q == 1) or n < 2 * BLOCK
    obj = RowsObjective(evaluate, value_at, eta, lin, nb, cheap, value, scores)
    return obj, lay


#: Newton on a strided subsample first when n is at least this large
SUBSAMPLE_MIN_ROWS = 32_768
#: rows of that subsample (about)
SUBSAMPLE_ROWS = 8_192


def subsample_start(loglik, spec: tuple, params: Any, data: tuple, z0):
    """Warm start from the MLE on every k-th row (static k), if it is sound.

    Returns ``(z, H, ok)``: the subsample's Hessian scaled by the ratio of the
    row counts approximates the full data's, so the first full-data Newton
    steps need only the score (chord steps, :func:`mlejax.solvers.newton_loop`).
    Rejected (``ok`` False: ``z0`` returned, no Hessian) if the subsample fit
    did not converge or is not finite.
    """
    is_row = row_leaves(spec, data)
    n = np.shape(data[spec[0][1]])[0]
    k = n // SUBSAMPLE_ROWS
    sub = tuple(
        d[::k]
        if r is None
        else jax.tree_util.tree_map(lambda a, b: a[::k] if b else a, d, r)
        for d, r in zip(data, is_row, strict=True)
    )
    from mlejax.solvers import newton_loop

    obj, _ = make_rows(loglik, spec, params, sub, is_row=is_row)
    out = newton_loop(obj, z0, tol=1e-6, max_iter=30)
    scale = n / np.shape(sub[spec[0][1]])[0]
    ok = out.converged & jnp.all(jnp.isfinite(out.x)) & jnp.all(jnp.isfinite(out.H))
    return jnp.where(ok, out.x, z0), jnp.where(ok, out.H * scale, 0.0), ok


@functools.partial(jax.jit, static_argnames=("loglik", "spec"))
def _both_values(params, data, *, loglik, spec):
    flat0, unravel = ravel_pytree(params)
    lay = layout(spec, params)
    j = jnp.arange(flat0.shape[0], dtype=flat0.dtype)
    flat = flat0 + 1e-2 * (1.0 + jnp.abs(flat0)) * jnp.sin(1.0 + j)
    generic = jnp.sum(loglik(unravel(flat), *data))
    obj, _ = make_rows(loglik, spec, params, data)
    return generic, -obj.value(flat[jnp.asarray(lay.perm)])


#: declarations already checked, by (loglik, spec, shapes): once per compiled fit
_CHECKED: set = set()


def check_declaration(loglik, spec: tuple, params: Any, data: tuple) -> None:
    """On concrete inputs: the declared row form must give ``loglik``'s value.

    Compared at a point near ``params`` (a deterministic perturbation, so a
    coefficient term outside ``X @ beta`` that vanishes at a zero start still
    shows), once per ``loglik``, declaration and shapes; raises a
    ``ValueError`` naming ``linear`` when they differ.
    """
    shapes = jax.tree_util.tree_map(
        lambda a: (np.shape(a), jnp.result_type(a)), (params, data)
    )
    try:
        key = (loglik, spec, str(jax.tree_util.tree_structure(shapes)), str(shapes))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CHECKED:
        return
    try:
        a, b = (float(v) for v in _both_values(params, data, loglik=loglik, spec=spec))
    except (IndexError, TypeError, ValueError) as exc:
        jax.eval_shape(loglik, params, *data)  # loglik's own error, if it has one
        raise ValueError(
            f"linear={dict(spec)!r}: loglik fails on one row in the declared form "
            f"(each design matrix as [[1]], each declared leaf as that row's eta): "
            f"{exc}. With linear=, loglik must use data[i] and params[key] only as "
            f"data[i] @ params[key], row by row; drop linear= otherwise."
        ) from exc
    if np.isfinite(a) and np.isfinite(b) and abs(a - b) > 1e-6 * max(abs(a), 1.0):
        raise ValueError(
            f"linear={dict(spec)!r} does not describe loglik: summed over rows in "
            f"the declared form it gives {b!r} near init_params, loglik itself "
            f"{a!r}. With linear=, loglik must be a sum of per-row terms that use "
            f"each params[key] only through data[i] @ params[key] (no penalty or "
            f"prior term; pass those as penalty=); drop linear= otherwise."
        )
    if key is not None and np.isfinite(a) and np.isfinite(b):
        _CHECKED.add(key)
