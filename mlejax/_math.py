"""Private numerics, each written once: stable log-likelihood pieces and exact sums.

* :func:`softplus_pair`, :func:`log_softmax_at`, :func:`abs0`: the stable
  forms the losses and the families share.
* :func:`pow2_scale`, :func:`pow2_from_norms`: column equilibration by powers
  of two (the scaling itself rounds nothing).
* :func:`exp_nonpos`: ``exp(x)`` for ``x <= 0`` in float64 as one vectorised
  polynomial (XLA:CPU's float64 ``exp`` is latency-bound, ~1.5x slower).
* Error-free transformations (:func:`split`, :func:`two_sum`) and what is
  built from them: :func:`tree_sum2` (sums in about twice the working
  precision), :func:`dd_residual_rows` and :func:`dd_cross_rows` (Ogita-Rump-
  Oishi ``Dot2`` with exact half-products, immune to FMA contraction).

References:
  Ogita, Rump & Oishi (2005), Accurate sum and dot product, SIAM J. Sci. Comput.
  Dekker (1971), A floating-point technique for extending the available precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

__all__ = [
    "softplus_pair",
    "log_softmax_at",
    "abs0",
    "pow2_scale",
    "pow2_from_norms",
    "split",
    "two_sum",
    "tree_sum2",
    "dd_residual_rows",
    "dd_cross_rows",
    "exp_nonpos",
]


# -- stable pieces of log-likelihoods -----------------------------------------
@jax.custom_jvp
def softplus_pair(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(softplus(x), softplus(-x))`` from one ``log1p(exp(-|x|))``.

    Both are ``max(+-x, 0) + log1p(exp(-|x|))``: the same values as
    ``jax.nn.softplus`` (no cancellation, no overflow), at half the cost of
    two calls (the float64 logarithm dominates in XLA on CPU). The derivative
    rule keeps the kinks of ``max`` and ``abs`` out of ``grad`` (exact
    ``sigmoid`` at ``x = 0`` too) and is itself differentiable.
    """
    a = jnp.log1p(jnp.exp(-jnp.abs(x)))
    return jnp.maximum(x, 0.0) + a, jnp.maximum(-x, 0.0) + a


@softplus_pair.defjvp
def _softplus_pair_jvp(
    primals: tuple[jax.Array], tangents: tuple[jax.Array]
) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    (x,), (t,) = primals, tangents
    return softplus_pair(x), (jax.nn.sigmoid(x) * t, -jax.nn.sigmoid(-x) * t)


def log_softmax_at(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``log_softmax(logits)[..., label]`` to full relative accuracy.

    Computed as ``-softplus(logsumexp_{k != label} z_k - z_label)``, so the
    log-probability of a dominant class (``~ -1e-13`` at a logit gap of 30)
    keeps its relative accuracy, which ``z - logsumexp(z)`` loses.

    Args:
      logits: shape ``(..., K)``.
      labels: integer class labels of shape ``(...)`` in ``0..K-1``.

    Returns:
      Shape ``(...)``.
    """
    k = logits.shape[-1]
    is_label = jax.nn.one_hot(labels.astype(jnp.int32), k, dtype=jnp.bool_)
    z_label = jnp.sum(jnp.where(is_label, logits, 0.0), axis=-1)
    others = logsumexp(logits, axis=-1, where=~is_label)
    return -jax.nn.softplus(others - z_label)


def abs0(d: jax.Array) -> jax.Array:
    """``|d|`` with derivative ``sign(d)``: 0 at ``d == 0``, as in PyTorch.

    ``jax.grad(jnp.abs)(0.0)`` is 1; here it is 0, so a zero residual pulls
    neither way.
    """
    return jax.lax.stop_gradient(jnp.sign(d)) * d


# -- power-of-two equilibration -----------------------------------------------
def pow2_from_norms(norms: jax.Array) -> jax.Array:
    """Powers of two ``2^-round(log2 norms)``: 1 where a norm is 0 or NaN.

    ``ldexp`` is exact; ``exp2`` may be evaluated as ``exp(x log 2)`` and round.
    """
    e = jnp.where(norms > 0, jnp.round(jnp.log2(jnp.where(norms > 0, norms, 1.0))), 0.0)
    return jnp.ldexp(jnp.ones((), norms.dtype), (-e).astype(jnp.int32))


def pow2_scale(X: jax.Array) -> jax.Array:
    """Per-column powers of two close to ``1/||x_j||`` (1 for zero columns).

    ``X * pow2_scale(X)[None, :]`` has columns of norm in ``[1/sqrt2, sqrt2]``
    and, barring underflow, rounds nothing: it changes exponents only.
    """
    return pow2_from_norms(jnp.sqrt(jnp.sum(X * X, axis=0)))


# -- error-free transformations (no FMA needed: Veltkamp/Dekker splitting) ----
def split(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Dekker split ``a = hi + lo`` into halves of at most 26 (float64) bits.

    ``hi`` is ``a`` rounded to nearest at half its mantissa by
    ``lax.reduce_precision`` (bit arithmetic), not by Veltkamp's
    ``c - (c - a)``, which a compiler that contracts to FMA silently breaks.
    The product of two halves is exact.
    """
    finfo = jnp.finfo(a.dtype)
    half = (finfo.nmant + 1) // 2 - 1  # 25 explicit bits for float64, 11 for float32
    hi = jax.lax.reduce_precision(a, exponent_bits=finfo.nexp, mantissa_bits=half)
    return hi, a - hi


def two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Knuth's TwoSum: ``s = fl(a + b)`` and its rounding error, ``a + b = s + err``."""
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def tree_sum2(
    terms: jax.Array, axis: int, radix: int = 8
) -> tuple[jax.Array, jax.Array]:
    """Sums of ``terms (m, k)`` along ``axis`` as ``(s, e)``, in ~2x the precision.

    Each level cascades TwoSum over ``radix`` contiguous slabs of whole rows
    (``axis=0``) or of column ranges (``axis=1``), so every operation is a
    vectorised add, and the rounding errors travel along in ``e`` (error
    ``~eps^2 sum|terms|``). Fewer, wider levels than a binary tree of strided
    slices: 2-3x faster to compile and to run. (A ``lax.scan`` formulation was
    measured to lose the error-free property on XLA:CPU.)
    """

    def slab(a: jax.Array, lo: int, hi: int) -> jax.Array:
        return a[lo:hi] if axis == 0 else a[:, lo:hi]

    errs = jnp.zeros_like(terms)
    while terms.shape[axis] > 1:
        m = terms.shape[axis]
        k = min(radix, m)
        h = -(-m // k)
        if h * k != m:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (0, h * k - m)
            terms, errs = jnp.pad(terms, pad), jnp.pad(errs, pad)
        s, err = slab(terms, 0, h), slab(errs, 0, h)
        for j in range(1, k):
            s, e = two_sum(s, slab(terms, j * h, (j + 1) * h))
            err = err + slab(errs, j * h, (j + 1) * h) + e
        terms, errs = s, err
    return (terms[0], errs[0]) if axis == 0 else (terms[:, 0], errs[:, 0])


def dd_residual_rows(
    consts: jax.Array, ah: jax.Array, al: jax.Array, zh: jax.Array, zl: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``sum(consts, 1) + (ah + al) @ (zh + zl)`` by Dot2, as a pair ``(hi, lo)``.

    ``consts`` is ``(m, k)``, constants for the ``m`` rows; ``(ah, al)`` and
    ``(zh, zl)`` are :func:`split` halves, so the four half-products are exact
    (26 x 26 bits) and a compiler that contracts multiply-adds cannot change them.
    """
    terms = jnp.concatenate(
        [
            consts,
            ah * zh[None, :],
            ah * zl[None, :],
            al * zh[None, :],
            al * zl[None, :],
        ],
        axis=1,
    )
    s, e = tree_sum2(terms, 1)
    hi = s + e
    return hi, e - (hi - s)


def dd_cross_rows(
    ah: jax.Array, al: jax.Array, r: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``A' r`` over the rows of a block by Dot2 (exact half-products) as ``(s, e)``.

    ``(ah, al)`` are the :func:`split` halves of ``A (m, p)``; ``r`` is ``(m,)``.
    """
    rh, rl = split(r)
    rh, rl = rh[:, None], rl[:, None]
    return tree_sum2(jnp.concatenate([ah * rh, ah * rl, al * rh, al * rl]), 0)


def quick_jit(fn, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` compiled at LLVM optimisation level 0.

    For small or elementwise work, where LLVM's optimisation costs more
    compile time than it saves run time; a JAX without per-function compiler
    options gets the plain ``jax.jit``.
    """
    try:
        return jax.jit(
            fn, compiler_options={"xla_backend_optimization_level": 0}, **jit_kwargs
        )
    except TypeError:  # a JAX without per-function compiler options
        return jax.jit(fn, **jit_kwargs)


# -- a vectorised exp ---------------------------------------------------------
_LOG2E = 1.4426950408889634
#: ln 2 split so that ``k * _LN2_HI`` is exact for ``|k| < 2**11``
#: (fdlibm's ``ln2HI``/``ln2LO``)
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: 1.5 * 2**52: an integer-valued float64 ``k`` plus this has ``k`` in its low bits
_MAGIC = 6755399441055744.0
#: 1 / i! for i = 0..13: the Taylor polynomial of exp on |r| <= ln2 / 2
#: (truncation below 4e-18 relative)
_INV_FACT = tuple(
    1.0 / float(np.prod(np.arange(1, i + 1, dtype=np.float64))) for i in range(14)
)


def exp_nonpos(x: jax.Array) -> jax.Array:
    """``exp(x)`` for ``x <= 0`` (``-inf`` gives 0, NaN gives NaN); float64 only.

    Cody-Waite reduction ``x = k ln2 + r``, ``|r| <= ln2 / 2``, the degree-13
    Taylor polynomial of ``exp(r)`` by Estrin's scheme (depth 4 instead of
    Horner's 13: XLA:CPU's own float64 ``exp`` is bound by that latency),
    and ``2**k`` built in the exponent bits, in two factors so that a
    subnormal result is rounded once. Within 2 ulp of the true value wherever
    that is a normal number (``tests/test_math.py`` against mpmath); where it
    is subnormal, XLA:CPU flushes it to zero, as it does its own ``exp``'s.
    Other dtypes get ``jnp.exp``.
    """
    if x.dtype != jnp.float64:
        return jnp.exp(x)
    c = _INV_FACT
    xc = jnp.maximum(x, -746.0)
    kf = lax.round(xc * _LOG2E, lax.RoundingMethod.TO_NEAREST_EVEN)
    # XLA folds (y + M) - M to y, so k is read from the bits of kf + M, not
    # rounded by the magic constant itself
    k = lax.bitcast_convert_type(kf + _MAGIC, jnp.int64) - 0x4338000000000000
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    q = [c[i] + c[i + 1] * r for i in range(0, 14, 2)]
    u0 = (q[0] + q[1] * r2) + (q[2] + q[3] * r2) * r4
    u1 = (q[4] + q[5] * r2) + q[6] * r4
    poly = u0 + u1 * (r4 * r4)
    k1 = k >> 1
    s1 = lax.bitcast_convert_type((k1 + 1023) << 52, jnp.float64)
    s2 = lax.bitcast_convert_type((k - k1 + 1023) << 52, jnp.float64)
    out = (poly * s1) * s2
    return jnp.where(x < -746.0, 0.0, jnp.where(jnp.isnan(x), x, out))
