"""Row-block plumbing: fold a function over row blocks of ``X`` without copying it.

Every pass of the least-squares paths over the data is a :func:`fold_rows`
of a per-block step; :func:`gram_add` accumulates ``B'B`` a block at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

#: the carry of a fold: any pytree of arrays
Carry = Any


def block_rows(n: int, p: int, budget: int = 2**18) -> int:
    """Rows per block: a power of two, about ``budget`` elements (``n`` if fewer)."""
    rows = 2 ** max(0, int(math.floor(math.log2(max(1, budget // max(p, 1))))))
    return int(min(n, 8192, max(256, rows)))


def fold_rows(
    fn: Callable[..., Carry],
    carry: Carry,
    arrays: tuple[jax.Array, ...],
    block: int,
) -> Carry:
    """Fold ``fn(carry, start, valid, *row_blocks)`` over row blocks of ``arrays``.

    A ``fori_loop`` of dynamic slices: no copy or padding of ``X``. When
    ``block`` does not divide ``n`` the last block is the last ``block`` rows,
    overlapping the one before; ``valid`` (or ``None`` when every row is new)
    masks the rows already seen. One block shape, so ``fn`` is traced once.
    """
    n = arrays[0].shape[0]
    nb = -(-n // block)
    ragged = n % block != 0

    def body(i: jax.Array, c: Carry) -> Carry:
        start = jnp.minimum(i * block, n - block)
        valid = (start + jnp.arange(block)) >= i * block if ragged else None
        blocks = (lax.dynamic_slice_in_dim(a, start, block) for a in arrays)
        return fn(c, start, valid, *blocks)

    return lax.fori_loop(0, nb, body, carry)


def block_inputs(
    Xb: jax.Array, yb: jax.Array, swb: jax.Array | None, valid: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """Weighted rows of one block, rows already seen zeroed."""
    if valid is not None:
        m = valid.astype(Xb.dtype)
        swb = m if swb is None else swb * m
    if swb is None:
        return Xb, yb
    return Xb * swb[:, None], yb * swb


def put_rows(r: jax.Array, rb: jax.Array, start: jax.Array) -> jax.Array:
    """Write a block of rows into a carried vector (write-only: updated in place).

    Rows the overlapping last block shares with the one before are written
    twice with the same values (computed from the same inputs), so no mask.
    """
    return lax.dynamic_update_slice_in_dim(r, rb, start, 0)


def gram_panels_init(p: int, dt: jnp.dtype) -> tuple[jax.Array, ...]:
    """Zero accumulators for :func:`gram_add` (two row panels when ``p >= 32``)."""
    q = p // 2 if p >= 32 else p
    return (jnp.zeros((q, p), dt),) + (
        (jnp.zeros((p - q, p - q), dt),) if q < p else ()
    )


def gram_add(panels: tuple[jax.Array, ...], B: jax.Array) -> tuple[jax.Array, ...]:
    """Add ``B'B`` into the panels: its upper rows ``[:q, :]`` and ``[q:, q:]``.

    The symmetric block ``[q:, :q]`` is skipped: 3/4 of a full product (XLA
    has no SYRK), on the block transposed in cache so each panel is a
    contiguous slice. About 15% faster than ``B'B`` at p = 100.
    """
    q = panels[0].shape[0]
    Bt = B.T
    nt = (((1,), (1,)), ((), ()))
    out = (panels[0] + lax.dot_general(Bt[:q], Bt, nt),)
    if len(panels) > 1:
        out += (panels[1] + lax.dot_general(Bt[q:], Bt[q:], nt),)
    return out


def gram_full(panels: tuple[jax.Array, ...]) -> jax.Array:
    """The full symmetric ``(p, p)`` Gram from the panels of :func:`gram_add`."""
    top = panels[0]
    if len(panels) == 1:
        return top
    q = top.shape[0]
    bottom = jnp.concatenate([top[:, q:].T, panels[1]], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


#: rows per block of :func:`weighted_grams` (the robust covariance's pass)
GRAM_BLOCK = 1024


def weighted_grams(X, a, b):
    """``(X' diag(a) X, X' diag(b) X)`` in one pass over row blocks of ``X``.

    One ``(block, k) x (block, 2k)`` product per block, the block in cache: no
    ``(n, k)`` temporary (at ``n = 10^6`` each costs more in page faults than
    the product itself).
    """
    n, k = X.shape
    if n < 2 * GRAM_BLOCK:
        C = X.T @ jnp.concatenate([X * a[:, None], X * b[:, None]], axis=1)
        return C[:, :k], C[:, k:]
    n_blocks = -(-n // GRAM_BLOCK)
    rows = jnp.arange(GRAM_BLOCK)

    def body(i, C):
        start = jnp.minimum(i * GRAM_BLOCK, n - GRAM_BLOCK)
        sl = lambda z: jax.lax.dynamic_slice_in_dim(z, start, GRAM_BLOCK)  # noqa: E731
        new = start + rows >= i * GRAM_BLOCK  # the clamped last block
        xb = sl(X)
        ab, bb = jnp.where(new, sl(a), 0.0), jnp.where(new, sl(b), 0.0)
        return C + xb.T @ jnp.concatenate([xb * ab[:, None], xb * bb[:, None]], 1)

    C = jax.lax.fori_loop(0, n_blocks, body, jnp.zeros((k, 2 * k), X.dtype))
    return C[:, :k], C[:, k:]
