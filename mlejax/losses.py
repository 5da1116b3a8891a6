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

Shapes are checked, not broadcast: ``input`` and ``target`` must have the same
shape (``softmax_cross_entropy``: ``(n, K)`` and ``(n,)``), else a ``ValueError``
says how to reshape. PyTorch only warns for ``mse_loss``/``l1_loss`` and then
broadcasts, so ``(3,)`` against ``(3, 1)`` silently averages 9 pairs.

>>> import jax.numpy as jnp
>>> from mlejax import losses
>>> float(losses.mse(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])))
2.5
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from mlejax import _math

__all__ = [
    "mse",
    "bce_with_logits",
    "softmax_cross_entropy",
    "poisson_nll",
    "l1",
    "LOSSES",
]


def _check_same_shape(fn: str, x: ArrayLike, y: ArrayLike) -> None:
    """Raise unless ``input`` and ``target`` have identical shapes (jit-safe)."""
    a, b = np.shape(x), np.shape(y)
    if a != b:
        raise ValueError(
            f"{fn}: input has shape {a} but target has shape {b}; losses do not "
            f"broadcast. Reshape target to {a} (or input to {b})."
        )


def _check_class_shapes(fn: str, x: ArrayLike, y: ArrayLike) -> None:
    """Raise unless ``input`` is ``(n, K)`` and ``target`` ``(n,)`` (jit-safe)."""
    a, b = np.shape(x), np.shape(y)
    if len(a) != 2:
        raise ValueError(
            f"{fn}: input must be logits of shape (n, K); got shape {a}. "
            "For a single example pass input[None, :] and target[None]."
        )
    if b != a[:1]:
        hint = " (one-hot? pass target.argmax(-1))" if b == a else ""
        raise ValueError(
            f"{fn}: input has shape {a}, so target must be integer labels of shape "
            f"{a[:1]}; got shape {b}{hint}. Reshape target to {a[:1]}."
        )


def mse(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002 - torch's name
    """Mean squared error: ``mean((input - target)**2)`` (``F.mse_loss``).

    Args:
      input: predictions, any shape.
      target: same shape as ``input``.

    Returns:
      Scalar mean over all elements.

    Raises:
      ValueError: if the shapes differ (no broadcasting).
    """
    _check_same_shape("mse", input, target)
    d = jnp.asarray(input) - jnp.asarray(target)
    return jnp.mean(d * d)


def bce_with_logits(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean binary cross-entropy from logits: ``mean(softplus(z) - y*z)``.

    Args:
      input: logits z, any shape; finite results even for ``|z| ~ 1e3``.
      target: labels (or probabilities) in [0, 1], same shape as ``input``.

    Returns:
      Scalar, as ``F.binary_cross_entropy_with_logits`` with ``reduction="mean"``.

    Raises:
      ValueError: if the shapes differ (no broadcasting).
    """
    _check_same_shape("bce_with_logits", input, target)
    z, y = jnp.asarray(input), jnp.asarray(target)
    # y*softplus(-z) + (1-y)*softplus(z) == softplus(z) - y*z, but without the
    # cancellation of two large terms (y=1, z=30 keeps full relative accuracy).
    sp, sn = _math.softplus_pair(z)
    return jnp.mean(y * sn + (1.0 - y) * sp)


def softmax_cross_entropy(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean cross-entropy: ``mean(logsumexp(z_i) - z_i[y_i])`` (``F.cross_entropy``).

    Args:
      input: logits of shape ``(n, K)``.
      target: integer class labels of shape ``(n,)`` in ``0..K-1``.

    Returns:
      Scalar mean over the n rows.

    Raises:
      ValueError: unless input is ``(n, K)`` and target ``(n,)``.
    """
    _check_class_shapes("softmax_cross_entropy", input, target)
    return -jnp.mean(_math.log_softmax_at(jnp.asarray(input), jnp.asarray(target)))


def poisson_nll(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean Poisson NLL from log-rates: ``mean(exp(x) - y*x)``.

    As ``F.poisson_nll_loss(log_input=True, full=False)``: the ``log(y!)`` term
    of the true negative log-likelihood is left out (it does not depend on x).

    Args:
      input: log-rates x, any shape.
      target: counts y, same shape as ``input``.

    Returns:
      Scalar mean over all elements.

    Raises:
      ValueError: if the shapes differ (no broadcasting).
    """
    _check_same_shape("poisson_nll", input, target)
    x, y = jnp.asarray(input), jnp.asarray(target)
    return jnp.mean(jnp.exp(x) - y * x)


def l1(input: ArrayLike, target: ArrayLike) -> jax.Array:  # noqa: A002
    """Mean absolute error: ``mean(|input - target|)`` (``F.l1_loss``).

    Written as ``sign(d) * d`` so that, as in PyTorch, the gradient at a zero
    residual is 0 rather than ``jax.grad(jnp.abs)(0.) == 1``.

    Args:
      input: predictions, any shape.
      target: same shape as ``input``.

    Returns:
      Scalar mean over all elements.

    Raises:
      ValueError: if the shapes differ (no broadcasting).
    """
    _check_same_shape("l1", input, target)
    return jnp.mean(_math.abs0(jnp.asarray(input) - jnp.asarray(target)))


#: name -> loss function, the values of ``family.loss_name``.
LOSSES = {
    "mse": mse,
    "bce_with_logits": bce_with_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
    "poisson_nll": poisson_nll,
    "l1": l1,
}
