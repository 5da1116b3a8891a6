"""Classic mean losses, exactly as PyTorch's ``torch.nn.functional`` defines them.

All are called ``(input, target)`` and return the mean over every element
(PyTorch's ``reduction="mean"``). Conventions that differ elsewhere:

* ``mse`` has no 1/2; Optax's ``l2_loss`` is ``0.5 * (x - y)**2``, so
  ``mse == 2 * optax.l2_loss(x, y).mean()`` (``optax.squared_error`` has no 1/2).
* ``poisson_nll`` is ``poisson_nll_loss(log_input=True, full=False)``:
  ``mean(exp(x) - y*x)``, without ``log(y!)``. PyTorch's ``full=True`` adds a
  Stirling approximation of ``log(y!)`` (only for y > 1), not the exact term.
  Optax has no Poisson loss.
* ``l1``'s gradient at a zero residual is 0, as in PyTorch (``jax.grad(jnp.abs)(0.)``
  is 1). Optax has no L1 loss.
* ``softmax_cross_entropy`` takes integer labels like ``cross_entropy``; it equals
  ``optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()``.
* ``bce_with_logits`` equals ``optax.sigmoid_binary_cross_entropy(x, y).mean()``.

>>> import jax.numpy as jnp
>>> from mlejax import losses
>>> float(losses.mse(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
2.5
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike


@jax.custom_jvp
def _softplus_pair(x):
    """``(softplus(x), softplus(-x))`` from one ``log1p(exp(-|x|))``.

    Both are ``max(+-x, 0) + log1p(exp(-|x|))``: the same values as
    ``jax.nn.softplus`` (no cancellation, no overflow), at half the cost of
    two calls (the float64 logarithm dominates in XLA on CPU). The derivative
    rule keeps the kinks of ``max`` and ``abs`` out of ``grad`` (exact
    ``sigmoid`` at ``x = 0`` too) and is itself differentiable.
    """
    a = jnp.log1p(jnp.exp(-jnp.abs(x)))
    return jnp.maximum(x, 0.0) + a, jnp.maximum(-x, 0.0) + a


@_softplus_pair.defjvp
def _softplus_pair_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus_pair(x), (jax.nn.sigmoid(x) * t, -jax.nn.sigmoid(-x) * t)

__all__ = [
    "mse",
    "bce_with_logits",
    "softmax_cross_entropy",
    "poisson_nll",
    "l1",
    "LOSSES",
]


def mse(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002 - torch's name
    """Mean squared error: ``mean((input - target)**2)`` (``F.mse_loss``).

    Args:
      input: predictions, any shape.
      target: same shape as ``input``.

    Returns:
      Scalar mean over all elements.
    """
    d = jnp.asarray(input) - jnp.asarray(target)
    return jnp.mean(d * d)


def bce_with_logits(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean binary cross-entropy from logits: ``mean(softplus(z) - y*z)``.

    Args:
      input: logits z, any shape; finite results even for ``|z| ~ 1e3``.
      target: labels (or probabilities) in [0, 1], same shape.

    Returns:
      Scalar, as ``F.binary_cross_entropy_with_logits`` with ``reduction="mean"``.
    """
    z, y = jnp.asarray(input), jnp.asarray(target)
    # y*softplus(-z) + (1-y)*softplus(z) == softplus(z) - y*z, but without the
    # cancellation of two large terms (y=1, z=30 keeps full relative accuracy).
    sp, sn = _softplus_pair(z)
    return jnp.mean(y * sn + (1.0 - y) * sp)


def softmax_cross_entropy(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean cross-entropy: ``mean(logsumexp(z_i) - z_i[y_i])`` (``F.cross_entropy``).

    Args:
      input: logits of shape ``(n, K)``.
      target: integer class labels of shape ``(n,)`` in ``0..K-1``.

    Returns:
      Scalar mean over the n rows.
    """
    return -jnp.mean(_log_softmax_at(jnp.asarray(input), jnp.asarray(target)))


def _log_softmax_at(logits: jax.Array, labels: jax.Array) -> jax.Array:
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


def poisson_nll(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean Poisson NLL from log-rates: ``mean(exp(x) - y*x)``.

    As ``F.poisson_nll_loss(log_input=True, full=False)``: the ``log(y!)`` term
    of the true negative log-likelihood is left out (it does not depend on x).

    Args:
      input: log-rates x, any shape.
      target: counts y, same shape.

    Returns:
      Scalar mean over all elements.
    """
    x, y = jnp.asarray(input), jnp.asarray(target)
    return jnp.mean(jnp.exp(x) - y * x)


def l1(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean absolute error: ``mean(|input - target|)`` (``F.l1_loss``).

    Written as ``sign(d) * d`` so that, as in PyTorch, the gradient at a zero
    residual is 0 rather than ``jax.grad(jnp.abs)(0.) == 1``.

    Args:
      input: predictions, any shape.
      target: same shape.

    Returns:
      Scalar mean over all elements.
    """
    return jnp.mean(_abs(jnp.asarray(input) - jnp.asarray(target)))


def _abs(d: jax.Array) -> jax.Array:
    """``|d|`` with derivative ``sign(d)``: 0 at ``d == 0``, as in PyTorch."""
    return jax.lax.stop_gradient(jnp.sign(d)) * d


#: name -> loss function, the values of ``family.loss_name``.
LOSSES = {
    "mse": mse,
    "bce_with_logits": bce_with_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
    "poisson_nll": poisson_nll,
    "l1": l1,
}
