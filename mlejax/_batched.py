"""Batched small fits: the vmap rule of ``mj.fit`` for many small logistic fits.

``jax.vmap(mj.fit)`` (and ``mj.fit_groups``, a vmap of it) reaches
:func:`batched_fit` through a ``jax.custom_batching.custom_vmap`` rule when
the batch is one the kernel serves (at least ``MIN_BATCH`` fits and
:func:`eligible`, decided when traced:
canonical Bernoulli, Newton, no penalty, no clusters, ``cov_type``
nonrobust/HC0/HC1, at most ``MAX_P`` columns, fewer than ``2 * BLOCK``
rows, or ``NATIVE_MAX_ROWS`` where the native loop serves); anything else
is the plain ``vmap`` of the general fit. The kernel
(:mod:`mlejax._batched_kernel`) runs the general path's Newton loop and
post-processing, so every ``FitResult`` field is the general path's up to
rounding: on CPU in float64 as one native call on the whole batch, fit by
fit (:mod:`mlejax._native`); otherwise in XLA on chunks of ``CHUNK`` fits
that stay in cache, one chunk after another (``lax.map``).

Failure is data: members the kernel does not vouch for (not converged,
invalid data, rank deficiency, the iteration cap, a row near separation) are
refitted by the general vmapped path, and only those: under a scalar
``lax.cond`` a host callback runs it on the failed members (their number
rounded up to a power of two) and scatters the results back. A batch then
equals the per-fit loop of ``mj.fit`` member by member, and a batch without
failures runs (and compiles) no general code.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mlejax import _native, objective
from mlejax._batched_kernel import chunk_kernel
from mlejax.engines.glm import SUBSAMPLE_MIN_ROWS
from mlejax.families import Bernoulli
from mlejax.result import FitResult

#: fits per chunk (a chunk's X, its pairwise products and the loop state stay
#: in L2; chunks of 1000 lost almost all the gain in the prototype)
CHUNK = 32
#: at most this many columns per fit (the pairwise products grow as p**2;
#: the native library is built for each of them)
MAX_P = _native.MAX_P
#: rows per fit up to which the native loop serves: the general path starts
#: from 0 below this (from a subsample fit above), so n_iter is the same
NATIVE_MAX_ROWS = SUBSAMPLE_MIN_ROWS
#: batches of fewer fits take the plain vmap of the general fit: the kernel
#: pays off in run time only for many fits, and costs a compile of its own
MIN_BATCH = 64
#: how many batches took the fast path (traces, not calls; for the tests)
TRACE_COUNT = {"fast": 0, "general": 0}


def eligible(
    family, solver, max_iter, cov, n: int, p: int, args_ok: bool, max_rows=None
) -> bool:
    """Whether the batched kernel serves this vmapped fit (decided when traced):
    fewer than ``max_rows`` rows (default: the XLA formulation's ``2 * BLOCK``)."""
    cov_type = cov[0]
    info = cov[2] if len(cov) > 2 else "observed"
    return (
        args_ok
        and type(family) is Bernoulli
        and family.default_link
        and solver == "newton"
        and cov_type in ("nonrobust", "HC0", "HC1")
        and info == "observed"
        and 1 <= p <= MAX_P
        and p < n < (max_rows or 2 * objective.BLOCK)
    )


def fast_factory(args, in_batched, st, unit_weights: bool = False, size=None):
    """The kernel for a chunk of these arguments, or None where it does not serve."""
    data, pearson, tol, groups, penalty = args
    X = data.X
    shape = X.shape[1:] if in_batched[0].X else X.shape
    plain = (
        groups is None
        and penalty is None
        and data.trials is None
        and data.var_weights is None
        and len(shape) == 2
    )
    n, p = shape if len(shape) == 2 else (0, 0)
    max_rows = NATIVE_MAX_ROWS if _native.available(X.dtype, p) else None
    if not eligible(
        st["family"], st["solver"], st["max_iter"], st["cov"], n, p, plain, max_rows
    ):
        return None
    family, cov = st["family"], st["cov"]

    def chunk(data, pearson, tol, groups, penalty):  # a chunk of C fits
        X, y, w, offset = data[:4]
        out, vouch = chunk_kernel(
            X,
            y,
            w,
            offset,
            tol,
            max_iter=st["max_iter"],
            cov_type=cov[0],
            unit_weights=unit_weights,
            size=size,
        )
        res = FitResult(
            extra={},
            extra_stderr={},
            family=family.name,
            solver="newton",
            family_obj=family,
            dispersion=None,
            objective=None,
            **out,
        )
        robust = {"n_groups": None} if cov[0] != "nonrobust" else {}
        return (res.replace(cov_type=cov[0], **robust), None), vouch

    return chunk


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


def chunk_size(m: int) -> int:
    """``CHUNK``, or the divisor of ``m`` nearest to it within a factor 1.5
    (then the batch is reshaped into chunks, never copied to pad it)."""
    if m <= CHUNK:
        return m
    divisors = [c for c in range(2 * CHUNK // 3, 3 * CHUNK // 2 + 1) if m % c == 0]
    return min(divisors, key=lambda c: abs(c - CHUNK)) if divisors else CHUNK


def batched_fit(chunk_fast, one_general, args, m: int, batched=None, whole=False):
    """``chunk_fast`` over ``m`` members in cache-sized chunks, with the
    general path for the members it does not converge on.

    ``args``: leaves batched along axis 0 (size ``m``) where ``batched``
    (a matching tree of bools; all, if None) says so; the others are shared
    by every member (the per-fit ones and zeros of absent weights and
    offsets), broadcast to a chunk inside the loop, never to the batch.
    ``chunk_fast``: a chunk of ``args`` -> ``(FitResult, r_eq)`` of the
    chunk; ``one_general``: the same for one member. ``whole``: one call of
    ``chunk_fast`` on the whole batch, the shared leaves with a leading axis
    of 1 (the native kernel, which takes one fit after another).
    """
    if batched is None:
        batched = jax.tree_util.tree_map(lambda _: True, args)
    leaves, tree = jax.tree_util.tree_flatten(args)
    flags = jax.tree_util.tree_leaves(batched)
    if whole:
        full = [a if b else a[None] for a, b in zip(leaves, flags, strict=True)]
        return _with_refit(
            chunk_fast(jax.tree_util.tree_unflatten(tree, full)),
            one_general,
            tree,
            flags,
            leaves,
        )
    c = chunk_size(m)
    n_chunks = -(-m // c)
    if n_chunks * c == m:  # a reshape: no copy of the batch
        order = None
    else:  # pad with copies of the first members (well-posed, dropped below)
        order = jnp.arange(n_chunks * c) % m

    def chunk_of(a):
        if order is not None:
            a = jnp.take(a, order, axis=0)
        return a.reshape(n_chunks, c, *a.shape[1:])

    xs = [chunk_of(a) for a, b in zip(leaves, flags, strict=True) if b]

    def run(xs):
        it = iter(xs)
        full = [
            next(it) if b else jnp.broadcast_to(a, (c, *a.shape))
            for a, b in zip(leaves, flags, strict=True)
        ]
        return chunk_fast(jax.tree_util.tree_unflatten(tree, full))

    out = jax.lax.map(run, xs)
    out = jax.tree_util.tree_map(
        lambda a: a.reshape(n_chunks * c, *a.shape[2:])[:m], out
    )
    return _with_refit(out, one_general, tree, flags, leaves)


def _with_refit(out, one_general, tree, flags, leaves):
    """The kernel's ``((res, None), vouch)`` with the members it does not
    vouch for refitted by the general path."""
    (res, _), vouch = out
    out = (res, None)
    failed = ~vouch
    shapes = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out
    )

    def refit(out):
        # On the host, and compiled only when a batch has a failure: the
        # general path on the failed members (their number rounded up to a
        # power of two, so few sizes are compiled), scattered back.
        return jax.pure_callback(
            functools.partial(_host_refit, one_general, tuple(flags), tree),
            shapes,
            out,
            failed,
            leaves,
            vmap_method="sequential",
        )

    return jax.lax.cond(jnp.any(failed), refit, lambda o: o, out)


def _host_refit(one_general, flags, tree, out, failed, leaves):
    failed = np.asarray(failed)
    idx = np.flatnonzero(failed)
    if not idx.size:  # (a vmap of this rule runs every branch)
        return jax.tree_util.tree_map(np.asarray, out)
    size = 1 << int(np.ceil(np.log2(idx.size)))
    take = np.concatenate([idx, np.full(size - idx.size, idx[0])])
    sub = [
        np.asarray(a)[take]
        if b
        else np.broadcast_to(np.asarray(a), (size, *np.shape(a)))
        for a, b in zip(leaves, flags, strict=True)
    ]
    sub_args = jax.tree_util.tree_unflatten(tree, sub)
    sub = _general_jit(one_general)(sub_args)
    sub = jax.device_get(sub)

    def put(a, b):
        a = np.array(a)
        a[idx] = np.asarray(b)[: idx.size]
        return a

    return jax.tree_util.tree_map(put, out, sub)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _fast_jit(general_fn, statics, unit_weights, flags, m, args):
    # jitted: an eager jax.vmap(mj.fit) is one compiled call, as before.
    # flags: which leaves of args are batched (size m along axis 0)
    batched = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(args), flags)
    X = args[0].X  # one native call, fit by fit, where it serves
    whole = _native.available(X.dtype, X.shape[-1])
    size = m if whole else None
    fast = fast_factory(args, batched, dict(statics), unit_weights, size)
    one = _one_general(general_fn, statics)
    return batched_fit(lambda a: fast(*a), one, args, m, batched, whole)


@functools.cache
def _one_general(general_fn, statics):
    return lambda args: general_fn(*args, **dict(statics))


@functools.cache
def _general_jit(one_general):
    return jax.jit(jax.vmap(one_general))


@functools.cache
def vmappable(general_fn, statics, unit_weights: bool = False):
    """A ``custom_vmap`` of ``general_fn(*args)`` whose rule is the kernel."""
    from jax.custom_batching import custom_vmap

    @custom_vmap
    def f(*args):
        return general_fn(*args, **dict(statics))

    @f.def_vmap
    def rule(axis_size, in_batched, *args):
        st = dict(statics)
        fast = None
        if axis_size >= MIN_BATCH:
            fast = fast_factory(args, in_batched, st, unit_weights)
        if fast is None:
            TRACE_COUNT["general"] += 1
            axes = jax.tree_util.tree_map(lambda b: 0 if b else None, list(in_batched))
            out = jax.vmap(lambda *a: general_fn(*a, **st), in_axes=tuple(axes))(*args)
        else:
            TRACE_COUNT["fast"] += 1

            flags = tuple(jax.tree_util.tree_leaves(list(in_batched)))
            out = _fast_jit(
                general_fn, statics, unit_weights, flags, axis_size, list(args)
            )
        batched = jax.tree_util.tree_map(lambda _: True, out)
        return out, batched

    return f
