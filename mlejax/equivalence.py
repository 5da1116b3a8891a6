"""Every classic loss is an affine function of a negative log-likelihood.

For a family with a classic loss (``family.loss_name``) and n observations,

    NLL(eta) = -sum_i log p(y_i | eta_i) = a * n * loss(input(eta), y) + b,

with ``a > 0`` and ``b`` free of ``eta`` (they depend on the extra parameters
and, for Poisson, on y through ``sum log(y!)``):

=============  ======================  ===============  ======================
family         loss                    a                b
=============  ======================  ===============  ======================
Gaussian       mse                     1 / (2 sigma^2)  (n/2) log(2 pi sigma^2)
Bernoulli      bce_with_logits         1                0
Categorical    softmax_cross_entropy   1                0  (input = [0, eta])
Poisson        poisson_nll             1                sum log(y_i!)
Laplace        l1                      1 / b            n log(2 b)
=============  ======================  ===============  ======================

So the gradients are proportional too: ``dNLL/deta = a * n * dloss/deta`` and,
with ``eta = X @ beta``, ``dNLL/dbeta = a * n * dloss/dbeta``; minimisers coincide.

>>> import jax.numpy as jnp
>>> import mlejax as mj
>>> y, eta = jnp.array([0.5, -1.0]), jnp.array([0.0, 0.0])
>>> a, b = mj.equivalence.affine_constants(mj.families.Gaussian(), y, scale=2.0)
>>> float(a)
0.125
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from mlejax import families as fam
from mlejax.losses import LOSSES

__all__ = ["affine_constants", "loss_input", "nll", "loss", "compare"]


def loss_input(family: fam.Family, eta: jax.Array) -> jax.Array:
    """The loss's ``input`` for linear predictor ``eta``: eta, or logits [0, eta]."""
    return family.loss_input(eta)


def nll(family: fam.Family, y: ArrayLike, eta: ArrayLike, **extra) -> jax.Array:
    """Total negative log-likelihood ``-sum log p(y | eta)``."""
    return -jnp.sum(family.log_prob(y, eta, **extra))


def loss(family: fam.Family, y: ArrayLike, eta: ArrayLike) -> jax.Array:
    """The family's classic mean loss at ``eta``."""
    if family.loss_name is None:
        raise ValueError(f"{family.name} has no classic machine-learning loss.")
    return LOSSES[family.loss_name](loss_input(family, eta), y)


def affine_constants(
    family: fam.Family, y: ArrayLike, **extra
) -> tuple[jax.Array, jax.Array]:
    """Constants ``(a, b)`` with ``NLL = a * n * loss + b`` for this family.

    Args:
      family: Gaussian, Bernoulli, Categorical, Poisson or Laplace.
      y: the observations, shape ``(n,)``.
      **extra: ``scale`` for Gaussian (sigma) and Laplace (b).

    Returns:
      ``(a, b)`` as JAX scalars.

    Raises:
      ValueError: for a family without a classic loss.
    """
    return family.loss_constants(jnp.asarray(y), **extra)


def compare(
    family: fam.Family, X: ArrayLike, y: ArrayLike, beta: ArrayLike, **extra
) -> dict[str, jax.Array]:
    """Check the identity numerically at ``eta = X @ beta``.

    Returns the absolute deviations of the value, of the gradient in eta and of
    the gradient in beta between the NLL and ``a * n * loss + b``, next to the
    scale of each quantity (so a relative deviation is one division away).
    """
    X, y, beta = jnp.asarray(X), jnp.asarray(y), jnp.asarray(beta)
    a, b = affine_constants(family, y, **extra)
    n = y.shape[0]

    def f_nll(eta):
        return -jnp.sum(family.log_prob_rows(y.astype(eta.dtype), eta, **extra))

    def f_loss(eta):
        return a * n * loss(family, y, eta) + b

    eta = X @ beta
    g_nll, g_loss = jax.grad(f_nll)(eta), jax.grad(f_loss)(eta)
    gb_nll = jax.grad(lambda bb: f_nll(X @ bb))(beta)
    gb_loss = jax.grad(lambda bb: f_loss(X @ bb))(beta)
    return {
        "a": a,
        "b": b,
        "nll": f_nll(eta),
        "value_dev": jnp.abs(f_nll(eta) - f_loss(eta)),
        "grad_eta_dev": jnp.max(jnp.abs(g_nll - g_loss)),
        "grad_eta_scale": jnp.max(jnp.abs(g_nll)),
        "grad_beta_dev": jnp.max(jnp.abs(gb_nll - gb_loss)),
        "grad_beta_scale": jnp.max(jnp.abs(gb_nll)),
    }
