"""``fit_groups``: one fit per group of a data set, groups of different sizes.

The everyday form of "thousands of fits" is one model per group (per gene, per
store, per neuron), and the groups have different sizes. :func:`fit_groups`

1. checks the whole data set once on the host (shapes, finiteness, support,
   weights: the checks of :func:`mlejax.fit`);
2. pads every group to a shape bucket (:func:`mlejax._buckets.bucket_size`)
   with rows of frequency weight 0, which contribute exactly nothing (their
   terms in the log-likelihood, score and information are multiplied by 0;
   ``nobs`` is the sum of the weights);
3. fits all the groups of a bucket with one ``jax.vmap`` of the traced
   :func:`mlejax.fit`: one compiled function per bucket, reused for every
   call of that bucket (a bucket with many groups runs in several calls of at
   most ``rows_per_call`` rows);
4. diagnoses on the host only the groups the fits flagged (separation named
   by the linear program of :func:`mlejax.diagnostics.separating_columns`,
   rank deficiency by a pivoted QR of the group's rows): host checks cost per
   group, so the groups that converged are not revisited.

A group that cannot be fitted (fewer rows of positive weight than
parameters, separation, a rank-deficient design) is flagged in its own row
(``converged=False`` and a reason); it never sinks the batch.

Example (not run as a doctest: each bucket compiles a fit)::

    res = mj.fit_groups(X, y, mj.families.Bernoulli(), groups=df["store"])
    res.table()        # group, term, estimate, stderr, converged, reason
    res["store_17"]    # one group's FitResult
"""

from __future__ import annotations

import warnings
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from mlejax import _buckets, _prepare, diagnostics, linalg
from mlejax import fit as _fit
from mlejax._group_result import GroupFits, _short_reasons
from mlejax.families import Family
from mlejax.result import FitResult
from mlejax.status import ConvergenceWarning, Status

__all__ = ["fit_groups", "GroupFits", "group_codes", "compiled_count", "ROWS_PER_CALL"]

#: at most this many rows (groups x bucket size) go into one compiled call; a
#: bucket with more groups runs in several calls of the same compiled fit.
#: 2**17 puts at least 64 groups of up to 2,048 rows in a call, the batched
#: kernel's minimum (mlejax._batched.MIN_BATCH): at 2**15 the buckets of
#: 1,024 rows and more took the general vmapped path.
ROWS_PER_CALL = 1 << 17


# -- the compiled batch: one vmap of the traced fit per bucket ----------------
def _fit_batch(X, y, weights, offset, trials, cluster, tol, *, family, opts):
    solver, max_iter, cov_type = opts

    def one(X, y, weights, offset, trials, cluster):
        return _fit.fit(
            X,
            y,
            family,
            solver=solver,
            weights=weights,
            offset=offset,
            trials=trials,
            tol=tol,
            max_iter=max_iter,
            cov_type=cov_type,
            groups=cluster,
        )

    return jax.vmap(one)(X, y, weights, offset, trials, cluster)


_batch_jit = jax.jit(_fit_batch, static_argnames=("family", "opts"))
try:  # small batches: LLVM optimisation costs more time than it saves
    _batch_jit_quick = jax.jit(
        _fit_batch,
        static_argnames=("family", "opts"),
        compiler_options={"xla_backend_optimization_level": 0},
    )
except TypeError:  # a JAX without per-function compiler options
    _batch_jit_quick = _batch_jit


def compiled_count() -> int:
    """How many batched fits have been compiled in this process so far.

    One per (bucket size, batch size, family, options, dtype): a call of
    :func:`fit_groups` adds at most one per bucket it uses, none when the
    same shapes were fitted before.
    """
    jits = {id(f): f for f in (_batch_jit, _batch_jit_quick)}.values()
    return sum(f._cache_size() for f in jits)


# -- group labels -------------------------------------------------------------
def group_codes(groups, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, codes)``: the distinct labels and each row's index into them.

    ``groups``: ``(n,)`` integers, strings or any sortable labels (NumPy,
    lists, pandas Series), or a pandas categorical (its category order is
    kept; unused categories are dropped). Labels are otherwise sorted.

    Raises:
      ValueError: wrong shape or length, or a missing label (NaN/None).
    """
    if groups is None:
        raise ValueError(
            "fit_groups: groups= is required: one group label per row of X "
            "(integers, strings or a pandas categorical)."
        )
    cat = getattr(groups, "cat", groups)  # a pandas Series of dtype category
    if hasattr(cat, "codes") and hasattr(cat, "categories"):
        codes = np.asarray(cat.codes).astype(np.int64)
        _check_group_shape(codes, n)
        if (codes < 0).any():
            _missing_label(int(np.flatnonzero(codes < 0)[0]))
        used = np.unique(codes)
        return np.asarray(cat.categories)[used], np.searchsorted(used, codes)
    if hasattr(groups, "to_numpy"):
        groups = groups.to_numpy()
    g = np.asarray(groups)
    _check_group_shape(g, n)
    if g.dtype.kind == "f":
        bad = np.isnan(g)
    elif g.dtype.kind == "O":
        bad = np.array([v is None or (isinstance(v, float) and v != v) for v in g])
    else:
        bad = np.zeros(n, bool)
    if bad.any():
        _missing_label(int(np.flatnonzero(bad)[0]))
    try:
        labels, codes = np.unique(g, return_inverse=True)
    except TypeError as e:
        raise ValueError(
            f"fit_groups: group labels must be mutually sortable (all numbers or "
            f"all strings); got {e}."
        ) from None
    return labels, codes.reshape(-1)


def _check_group_shape(g: np.ndarray, n: int) -> None:
    if g.shape != (n,):
        raise ValueError(
            f"fit_groups: groups must have shape ({n},), one label per row of X; "
            f"got shape {g.shape}."
        )


def _missing_label(i: int):
    raise ValueError(
        f"fit_groups: groups has a missing label (NaN/None) at row {i}; drop "
        "those rows or give them a group of their own."
    )


# -- the batched result -------------------------------------------------------
# -- the fit ------------------------------------------------------------------
def fit_groups(
    X: ArrayLike,
    y: ArrayLike,
    family: Family,
    *,
    groups: ArrayLike,
    weights: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    trials: ArrayLike | None = None,
    solver: str | optax.GradientTransformation = "newton",
    tol: float = 1e-10,
    max_iter: int = 100,
    cov_type: str = "nonrobust",
    cluster: ArrayLike | None = None,
    per_doubling: int = 2,
    rows_per_call: int = ROWS_PER_CALL,
) -> GroupFits:
    """One maximum-likelihood fit per group, groups of any sizes, few compiles.

    Every group ``g`` gets the fit ``mj.fit(X[rows_g], y[rows_g], family,
    ...)`` of its own rows (same answer: padding rows have weight 0). Groups
    are padded to shape buckets ``m * 2**e`` rows (``per_doubling`` sizes per
    doubling: 2 gives sizes 8, 12, 16, 24, 32, 48, …, at most 50% padding;
    8 gives the finer buckets of ``mj.fit(..., buckets=True)``, at most 12.5%
    padding but four times the compiles), and all groups of a bucket are
    fitted by one compiled ``jax.vmap`` of the fit.

    Args:
      X, y, family: as :func:`mlejax.fit`, all groups stacked (any row order).
      groups: ``(n,)`` group labels: integers, strings, or a pandas
        categorical (its category order is kept).
      weights, offset, trials, solver, tol, max_iter, cov_type: as
        :func:`mlejax.fit`, per row or shared.
      cluster: ``(n,)`` (or ``(n, 2)``) cluster labels for
        ``cov_type="cluster"`` (clusters within each group's fit).
      per_doubling: bucket sizes per doubling of ``n`` (1, 2, 4 or 8): fewer
        means fewer compilations and more padding.
      rows_per_call: most rows (groups x bucket size) per compiled call; a
        bigger bucket runs in several calls of the same compiled fit (its
        last call filled up with copies of a group, discarded).

    Returns:
      :class:`GroupFits`: ``res[label]`` (a ``FitResult``), ``res.groups``,
      ``res.table()``, and the batched fields (``res.params`` of shape
      ``(G, p)``, ``res.converged``, …) in the order of ``res.groups``.
      Groups with fewer rows of positive weight than parameters are not
      fitted (NaN estimates, ``Status.INVALID_INPUT``); flagged groups get a
      host diagnosis in their ``reason``; one ``ConvergenceWarning`` counts
      the groups that did not converge.

    Raises:
      ValueError: the checks of :func:`mlejax.fit` on the whole data set
        (shapes, non-finite values, ``y`` outside the support, negative
        weights, a rank-deficient X overall), ``groups`` of the wrong shape
        or with missing labels, or no group with enough rows.
    """
    _prepare.check_solver(solver)
    _prepare.check_tol_max_iter(tol, max_iter)
    _prepare.check_cov_type(cov_type, getattr(family, "smooth", True))
    if per_doubling not in (1, 2, 4, 8):
        raise ValueError(f"per_doubling must be 1, 2, 4 or 8; got {per_doubling!r}.")
    if isinstance(rows_per_call, bool) or not isinstance(rows_per_call, int):
        raise TypeError(f"rows_per_call must be an int; got {rows_per_call!r}.")
    raw = (X, y, weights, offset, trials, groups, cluster)
    if _prepare.is_traced(*raw):
        raise TypeError(
            "fit_groups takes concrete data (it sorts rows into groups on the "
            "host); under jit/vmap, pad the groups yourself and jax.vmap(mj.fit)."
        )
    X, y, weights, offset, trials, names = _prepare.prepare(
        X, y, family, weights, offset, trials
    )
    n, p = X.shape
    labels, codes = group_codes(groups, n)
    cl = None
    if (cov_type == "cluster") != (cluster is not None):
        raise ValueError(
            "fit_groups: cluster= (cluster labels, one per row) goes with "
            f"cov_type='cluster' and only with it; got cov_type={cov_type!r} and "
            f"cluster={'None' if cluster is None else 'labels'}."
        )
    if cluster is not None:
        cl = np.asarray(_prepare.prepare_groups(cov_type, cluster, n)[0])
    host = {
        "X": np.asarray(X),
        "y": np.asarray(y),
        "weights": np.asarray(weights),
        "offset": np.asarray(offset),
        "trials": None if trials is None else np.asarray(trials),
        "cluster": cl,
    }
    G = len(labels)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=G)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_pos = np.bincount(codes, weights=host["weights"] > 0, minlength=G)
    k = p * family.eta_dim + len(family.extra_names)
    fittable = n_pos >= k
    if not fittable.any():
        raise ValueError(
            f"fit_groups: every group has fewer rows of positive weight than "
            f"parameters ({k}); the largest has {int(n_pos.max())}. Merge groups "
            "or use fewer columns."
        )
    bucket_of = np.array(
        [_buckets.bucket_size(int(s), per_doubling) for s in sizes], dtype=np.int64
    )
    opts = (solver, max_iter, cov_type)
    tol_arr = jnp.asarray(tol, X.dtype)
    parts, counts = [], {}
    for b in np.unique(bucket_of[fittable]):
        members = np.flatnonzero(fittable & (bucket_of == b))
        counts[int(b)] = len(members)
        batch = min(_buckets.bucket_size(len(members)), max(1, rows_per_call // b))
        fn = (
            _batch_jit_quick if batch * b * p <= _fit.QUICK_COMPILE_SIZE else _batch_jit
        )
        for lo in range(0, len(members), batch):
            chunk = members[lo : lo + batch]
            filled = np.resize(chunk, batch)  # last call: copies of its groups
            arrays = _gather(host, family, order, starts[filled], sizes[filled], int(b))
            res = fn(*arrays, tol_arr, family=family, opts=opts)
            m = len(chunk)
            res = jax.tree_util.tree_map(lambda a, m=m: np.asarray(a)[:m], res)
            parts.append((chunk, res))
    fits = _assemble(parts, G, names)
    fits, notes = _diagnose(fits, family, host, order, starts, sizes, n_pos, k, names)
    fits = jax.tree_util.tree_map(jnp.asarray, fits)  # results are JAX arrays
    conv = np.asarray(fits.converged)
    if not conv.all():
        why = Counter(np.asarray(_short_reasons(fits.status, notes))[~conv].tolist())
        top = "; ".join(f"{r}: {m}" for r, m in why.most_common(3))
        warnings.warn(
            f"fit_groups: {int((~conv).sum())} of {G} groups did not converge "
            f"({top}); res.table() says why per group (converged=False).",
            ConvergenceWarning,
            stacklevel=2,
        )
    return GroupFits(fits, labels, tuple(notes), sizes, dict(sorted(counts.items())))


def _gather(host, family, order, starts, sizes, b):
    """The ``(batch, b, ...)`` arrays of some groups, padded with weight-0 rows."""
    batch = len(starts)
    slot = np.repeat(np.arange(batch), sizes)
    pos = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    src = order[np.repeat(starts, sizes) + pos]
    fills = {
        "X": 0.0,
        "y": family.pad_value(),
        "weights": 0.0,
        "offset": 0.0,
        "trials": 0.0,
        "cluster": 0,
    }
    out = []
    for name, value in fills.items():
        a = host[name]
        if a is None:
            out.append(None)
            continue
        dest = np.full((batch, b, *a.shape[1:]), value, a.dtype)
        dest[slot, pos] = a[src]
        out.append(dest)
    return out


def _assemble(parts, G: int, names) -> FitResult:
    """One batched FitResult in group order; unfitted groups NaN / INVALID_INPUT."""
    treedef = jax.tree_util.tree_structure(parts[0][1])
    leaves_parts = [jax.tree_util.tree_leaves(res) for _, res in parts]
    out = []
    for j, first in enumerate(leaves_parts[0]):
        if first.dtype == bool:
            fill = False
        elif np.issubdtype(first.dtype, np.integer):
            fill = 0
        else:
            fill = np.nan
        a = np.full((G, *first.shape[1:]), fill, first.dtype)
        for (idx, _), leaves in zip(parts, leaves_parts, strict=True):
            a[idx] = leaves[j]
        out.append(a)
    fits = jax.tree_util.tree_unflatten(treedef, out)
    fitted = np.zeros(G, bool)
    for idx, _ in parts:
        fitted[idx] = True
    codes = np.asarray(fits.status)
    status = np.where(fitted, codes, int(Status.INVALID_INPUT)).astype(codes.dtype)
    return fits.replace(names=names, status=status)


def _diagnose(fits, family, host, order, starts, sizes, n_pos, k, names):
    """Host diagnosis of the flagged groups only; ``(fits, notes)``."""
    status = np.array(fits.status)
    conv = np.array(fits.converged)
    notes: list[str | None] = [None] * len(status)
    for g in np.flatnonzero(~conv):
        if n_pos[g] < k:
            notes[g] = (
                f"not fitted: {int(n_pos[g])} rows of positive weight for {k} "
                "parameters (not identified)"
            )
            continue
        rows = order[starts[g] : starts[g] + sizes[g]]
        Xg, yg, wg = host["X"][rows], host["y"][rows], host["weights"][rows]
        tg = None if host["trials"] is None else host["trials"][rows]
        code = int(status[g])
        if code == Status.SEPARATION:
            kw = {} if tg is None else {"trials": np.asarray(tg, np.float64)}
            signs = family.separation_signs(np.asarray(yg, np.float64), **kw)
            if signs is None:
                continue
            cols = diagnostics.separating_columns(Xg, wg, signs, names)
            if cols is None:  # confident but genuine: no separating direction
                ok = np.isfinite(fits.loglik[g]) and np.all(
                    np.isfinite(np.asarray(fits.stderr[g]))
                )
                status[g] = int(Status.CONVERGED if ok else Status.NON_FINITE)
                conv[g] = ok
            else:
                notes[g] = f"separation: estimates diverge along columns {cols}"
        elif code in (Status.RANK_DEFICIENT, Status.NOT_MAXIMUM, Status.NON_FINITE):
            Xn = np.asarray(Xg, np.float64)[wg > 0]
            if Xn.shape[0] >= Xn.shape[1]:
                cols = linalg.collinear_columns(np.linalg.qr(Xn, mode="r"), names)
                if cols is not None:
                    status[g] = int(Status.RANK_DEFICIENT)
                    notes[g] = f"rank-deficient in this group: columns {cols} collinear"
        elif code == Status.EMPTY_CLASS:
            present = set(np.asarray(yg)[wg > 0].astype(int).tolist())
            empty = sorted(set(range(family.eta_dim + 1)) - present)
            notes[g] = f"class(es) {empty} never occur in this group"
        elif code == Status.BOUND:
            extra = {key: v[g] for key, v in fits.extra.items()}
            notes[g] = family.bound_message(extra)
    return fits.replace(status=status.astype(fits.status.dtype), converged=conv), notes
