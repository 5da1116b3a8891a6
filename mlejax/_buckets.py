"""Shape buckets for ``mj.fit(..., buckets=True)``: pad rows with weight 0.

A row with frequency weight 0 contributes nothing to a fit (its terms in the
NLL, score and information are multiplied by 0; ``nobs`` is the sum of the
weights), so appending such rows changes no result while the compiled fit,
specialised on ``n``, is shared by every ``n`` in the same bucket. The buckets
are ``m * 2**e`` with ``m`` in 8..15: eight sizes per doubling, at most 12.5%
padding (for ``n >= 8``; smaller ``n`` all share the bucket 8).
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["bucket_size", "pad_rows", "paddable"]


def bucket_size(n: int, per_doubling: int = 8) -> int:
    """The smallest ``m * 2**e >= n`` with ``m`` in 8..15 and ``e >= 0``.

    ``per_doubling`` (1, 2, 4 or 8) sets the number of sizes per doubling:
    ``m`` in ``per_doubling..2*per_doubling-1`` above 8 (at most
    ``100 / per_doubling`` % padding); every ``n <= 8`` gets 8.

    >>> [bucket_size(n) for n in (1, 8, 9, 17, 100, 1000)]
    [8, 8, 9, 18, 104, 1024]
    >>> [bucket_size(n, per_doubling=2) for n in (9, 13, 17, 100, 1000)]
    [12, 16, 24, 128, 1024]
    """
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"bucket_size: n must be >= 1; got {n}.")
    if per_doubling not in (1, 2, 4, 8):
        raise ValueError(
            f"bucket_size: per_doubling must be 1, 2, 4 or 8; got {per_doubling!r}."
        )
    if n <= 8:
        return 8
    # per_doubling * 2**e < n <= 2 * per_doubling * 2**e
    e = (n - 1).bit_length() - per_doubling.bit_length()
    return -(-n // (1 << e)) << e


def paddable(*arrays) -> bool:
    """Whether the (non-None) arrays are concrete and each on one device.

    Tracers (the caller's ``jit``/``vmap``) are left alone, and so are arrays
    sharded over several devices or not fully addressable (padding would
    change their layout).
    """
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, jax.core.Tracer) or not isinstance(a, jax.Array):
            return False
        if not a.is_fully_addressable or len(a.sharding.device_set) != 1:
            return False
    return True


def pad_rows(X, y, weights, offset, trials, family, n_to: int):
    """Append ``n_to - n`` rows of weight 0 (device arrays, dtypes kept).

    Padding rows have ``X = 0``, ``weights = 0``, ``offset = 0``, ``y =``
    ``family.pad_value()`` and, for Binomial, ``trials = 0``. Arrays on the CPU are
    padded on the host (no compilation); others by a small jitted function.
    """
    n = X.shape[0]
    if n_to < n:
        raise ValueError(f"pad_rows: n_to = {n_to} is below n = {n}.")
    if n_to == n:
        return X, y, weights, offset, trials
    fill_y = family.pad_value()
    k = n_to - n
    arrays = (X, y, weights, offset, trials)
    if all(a is None or _on_cpu(a) for a in arrays):
        fills = (0.0, fill_y, 0.0, 0.0, 0.0)
        return tuple(
            None if a is None else _host_pad(a, k, v)
            for a, v in zip(arrays, fills, strict=True)
        )
    return _device_pad(X, y, weights, offset, trials, fill_y, k=k)


def _on_cpu(a) -> bool:
    return all(d.platform == "cpu" for d in a.sharding.device_set)


def _host_pad(a: jax.Array, k: int, value: float) -> jax.Array:
    h = np.asarray(a)  # a view of a CPU buffer
    out = np.empty((h.shape[0] + k, *h.shape[1:]), h.dtype)
    out[: h.shape[0]] = h
    out[h.shape[0] :] = value
    try:
        return jax.device_put(out, a.sharding, may_alias=True)
    except TypeError:  # a JAX without may_alias
        return jax.device_put(out, a.sharding)


@functools.partial(jax.jit, static_argnames=("k",))
def _device_pad(X, y, weights, offset, trials, fill_y, *, k):
    def pad(a, value):
        tail = jnp.full((k, *a.shape[1:]), value, a.dtype)
        return jnp.concatenate([a, tail], axis=0)

    return (
        pad(X, 0.0),
        pad(y, fill_y),
        pad(weights, 0.0),
        pad(offset, 0.0),
        None if trials is None else pad(trials, 0.0),
    )
